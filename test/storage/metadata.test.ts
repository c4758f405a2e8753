// The metric metadata store: what /api/v1/metadata answers, its limits, and
// its file (saved on close, read back on open, set aside when damaged).

import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pino } from "pino";
import type { MetricMetadata } from "../../src/core/metadata.js";
import { DEFAULT_METADATA_LIMITS, mergeMetadata, MetadataStore, type MetadataLimits } from "../../src/storage/metadata.js";
import { tempDirs } from "../helpers/temp-dirs.js";

const tempDir = tempDirs("hqts-metadata-");
const fileIn = async (): Promise<string> => join(await tempDir(), "metadata.hqm");

const log = pino({ level: "silent" });
const m = (metric: string, type: MetricMetadata["type"], help: string, unit = ""): MetricMetadata => ({ metric, type, help, unit });
const open = (file: string, limits: Partial<MetadataLimits> = {}): Promise<MetadataStore> => MetadataStore.open(file, { ...DEFAULT_METADATA_LIMITS, ...limits }, log);

describe("metric metadata store", () => {
  it("answers as Prometheus's /api/v1/metadata: per metric, distinct entries, most recently seen first; metric, limit, limit_per_metric", async () => {
    const s = await open(await fileIn());
    assert.equal(s.put([m("up", "gauge", "Whether the target is up."), m("http_requests_total", "counter", "Requests.")], 1000), 2);
    assert.equal(s.put([m("up", "gauge", "Whether the target is up.")], 2000), 0, "the same entry again changes nothing");
    assert.equal(s.put([m("http_requests_total", "counter", "All HTTP requests.")], 3000), 1, "another sender's text is a second entry");
    assert.deepEqual(s.query(null, -1, -1), {
      http_requests_total: [
        { type: "counter", help: "All HTTP requests.", unit: "" },
        { type: "counter", help: "Requests.", unit: "" },
      ],
      up: [{ type: "gauge", help: "Whether the target is up.", unit: "" }],
    });
    assert.deepEqual(Object.keys(s.query(null, 1, -1)), ["http_requests_total"]);
    assert.deepEqual(s.query(null, 0, -1), {});
    assert.deepEqual(s.query("http_requests_total", -1, 1), { http_requests_total: [{ type: "counter", help: "All HTTP requests.", unit: "" }] });
    assert.deepEqual(s.query("nope", -1, -1), {});
    await s.close();
  });

  it("keeps within its limits: families, entries per family, help bytes", async () => {
    const s = await open(await fileIn(), { metricsMax: 2, entriesPerMetricMax: 2, helpBytesMax: 5 });
    s.put([m("a", "gauge", "1"), m("b", "gauge", "1")]);
    s.put([m("a", "gauge", "2")]); // a is now the most recently seen
    s.put([m("c", "gauge", "1")]); // b, the least recently seen, goes
    assert.deepEqual(Object.keys(s.query(null, -1, -1)), ["a", "c"]);
    s.put([m("a", "gauge", "3")]);
    assert.deepEqual(
      s.query("a", -1, -1).a!.map((e) => e.help),
      ["3", "2"],
      "two entries kept, the oldest dropped",
    );
    s.put([m("c", "gauge", "h\u00e9ll\u00f6 world")]);
    assert.equal(s.query("c", -1, 1).c![0]!.help, "h\u00e9ll", "cut to 5 bytes at a character boundary");
    assert.equal(s.size, 2);
    await s.close();
  });

  it("survives a restart: saved on close, read back on open", async () => {
    const file = await fileIn();
    const s = await open(file);
    s.put([m("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", "seconds"), m("up", "gauge", "up")]);
    await s.close();
    const again = await open(file);
    assert.deepEqual(again.query("node_cpu_seconds_total", -1, -1), { node_cpu_seconds_total: [{ type: "counter", help: "Seconds the CPUs spent in each mode.", unit: "seconds" }] });
    assert.equal(again.size, 2);
    await again.close();
  });

  it("a damaged file is set aside and the store starts empty (the node keeps running)", async () => {
    const file = await fileIn();
    const s = await open(file);
    s.put([m("up", "gauge", "up")]);
    await s.close();
    const text = await readFile(file, "utf8");
    await writeFile(file, text.replace('"up"', '"uq"'));
    const damaged = await open(file);
    assert.equal(damaged.size, 0, "a checksum mismatch is not read");
    const names = await readdir(join(file, ".."));
    assert.ok(
      names.some((n) => n.startsWith("metadata.hqm.corrupt-")),
      `set aside: ${names.join(", ")}`,
    );
    damaged.put([m("up", "gauge", "up")]);
    await damaged.close();
    assert.equal((await open(file)).size, 1, "and a new file is written");
  });

  it("merges replicas' answers: distinct entries, sorted metrics, limits applied after the merge", () => {
    const a = { up: [{ type: "gauge" as const, help: "x", unit: "" }], b: [{ type: "counter" as const, help: "y", unit: "" }] };
    const b = { up: [{ type: "gauge" as const, help: "x", unit: "" }, { type: "gauge" as const, help: "z", unit: "" }] };
    assert.deepEqual(mergeMetadata([a, b], -1, -1), {
      b: [{ type: "counter", help: "y", unit: "" }],
      up: [
        { type: "gauge", help: "x", unit: "" },
        { type: "gauge", help: "z", unit: "" },
      ],
    });
    assert.deepEqual(Object.keys(mergeMetadata([a, b], 1, -1)), ["b"]);
    assert.equal(mergeMetadata([a, b], -1, 1).up!.length, 1);
  });
});
