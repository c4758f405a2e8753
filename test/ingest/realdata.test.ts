// The shared recordings of real Prometheus data (see ../shared/data/README.md).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, it } from "node:test";
import { repoRoot } from "../helpers/node-proc.js";
import { gunzipSync } from "node:zlib";
import { parseVmJson } from "../../src/ingest/vmjson.js";
import { LIMITS } from "./util.js";

const DATA = resolve(repoRoot(), "../shared/data");
const load = (name: string) => gunzipSync(readFileSync(resolve(DATA, name)));

let nodeExporter: Uint8Array | undefined;
const loadNodeExporter = () => (nodeExporter ??= load("node-exporter-1s-55min.jsonl.gz"));

describe("real data", () => {
  it("prometheus-summaries-with-nan: 36 series, 119,376 samples, NaN kept", () => {
    const batch = parseVmJson(load("prometheus-summaries-with-nan.jsonl.gz"), { limits: LIMITS });
    assert.equal(batch.series.length, 36);
    assert.equal(batch.sampleCount, 119_376);
    let nan = 0;
    for (const s of batch.series) for (const v of s.values) if (Number.isNaN(v)) nan++;
    assert.ok(nan > 2000, `only ${nan} NaN values`);
    for (const s of batch.series) for (const t of s.timestampsNs) assert.equal(t % 1_000_000n, 0n);
  });

  it("node-exporter-1s-55min: 881 series, 2,856,850 samples", () => {
    const batch = parseVmJson(loadNodeExporter(), { limits: { ...LIMITS, samplesPerBatchMax: 4_000_000 } });
    assert.equal(batch.series.length, 881);
    assert.equal(batch.sampleCount, 2_856_850);
    for (const s of batch.series) for (const v of s.values) assert.ok(Number.isFinite(v));
  });

  it("the default sample limit refuses the whole large file rather than part of it", () => {
    assert.throws(() => parseVmJson(loadNodeExporter(), { limits: LIMITS }), { name: "TooLargeError" });
  });
});
