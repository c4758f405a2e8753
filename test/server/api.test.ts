// Read API shapes, health, metrics, routing, admin, graceful shutdown and
// restart, against REAL node processes.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";
import { exportSeries, http } from "../helpers/http.js";

let node: NodeProc;

const SEED = [
  { metric: { __name__: "api_up", job: "node", instance: "a:9100" }, values: [1, 1, 0], timestamps: [1700000000000, 1700000060000, 1700000120000] },
  { metric: { __name__: "api_up", job: "node", instance: "b:9100" }, values: [1], timestamps: [1700000000000] },
  { metric: { __name__: "api_up", job: "push", instance: "c" }, values: [0], timestamps: [1700000000000] },
  { metric: { __name__: "api_temp", room: "kitchen" }, values: [20.5], timestamps: [1700000000000] },
];

before(async () => {
  node = await startNode();
  const a = await http(`${node.url}/api/v1/import`, { body: SEED.map((l) => JSON.stringify(l)).join("\n") + "\n" });
  assert.equal(a.status, 200, a.text);
});
after(async () => {
  await stopAll();
});

describe("Prometheus metadata API", () => {
  test("/api/v1/series: GET and POST form, Prometheus shape", async () => {
    const a = await http(`${node.url}/api/v1/series?match[]=${encodeURIComponent('api_up{job="node"}')}`);
    assert.equal(a.status, 200);
    assert.match(a.headers.get("content-type") ?? "", /application\/json/);
    const body = a.json() as { status: string; data: Record<string, string>[] };
    assert.equal(body.status, "success");
    assert.deepEqual(
      body.data.sort((x, y) => (x["instance"]! < y["instance"]! ? -1 : 1)),
      [
        { __name__: "api_up", instance: "a:9100", job: "node" },
        { __name__: "api_up", instance: "b:9100", job: "node" },
      ],
    );
    const p = await http(`${node.url}/api/v1/series`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams([
        ["match[]", 'api_up{job="push"}'],
        ["match[]", "api_temp"],
      ]).toString(),
    });
    assert.equal(p.status, 200, p.text);
    assert.equal((p.json() as { data: unknown[] }).data.length, 2, "match[] sets are ORed");
  });

  test("/api/v1/series needs match[]", async () => {
    const a = await http(`${node.url}/api/v1/series`);
    assert.equal(a.status, 400);
    assert.deepEqual(Object.keys(a.json() as object).filter((k) => ["status", "errorType", "error"].includes(k)).sort(), ["error", "errorType", "status"]);
    assert.equal((a.json() as { errorType: string }).errorType, "bad_data");
  });

  test("/api/v1/labels and /api/v1/label/<name>/values", async () => {
    const l = await http(`${node.url}/api/v1/labels`);
    assert.equal(l.status, 200);
    const names = (l.json() as { status: string; data: string[] }).data;
    for (const n of ["__name__", "instance", "job", "room"]) assert.ok(names.includes(n), n);
    const lm = await http(`${node.url}/api/v1/labels?match[]=api_temp`);
    assert.deepEqual((lm.json() as { data: string[] }).data, ["__name__", "room"]);

    const v = await http(`${node.url}/api/v1/label/job/values`);
    assert.deepEqual(v.json(), { status: "success", data: ["node", "push"] });
    const names2 = await http(`${node.url}/api/v1/label/__name__/values`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "match[]=" + encodeURIComponent('{job=~"n.*"}'),
    });
    assert.deepEqual(names2.json(), { status: "success", data: ["api_up"] });
    const none = await http(`${node.url}/api/v1/label/nosuchlabel/values`);
    assert.deepEqual(none.json(), { status: "success", data: [] });
  });

  test("a bad selector → 400 bad_data naming the column", async () => {
    const a = await http(`${node.url}/api/v1/export?match[]=${encodeURIComponent('api_up{job="node"')}`);
    assert.equal(a.status, 400);
    const e = a.json() as { errorType: string; error: string; column: number };
    assert.equal(e.errorType, "bad_data");
    assert.match(e.error, /column/);
    const b = await http(`${node.url}/api/v1/export?match[]=${encodeURIComponent('{job=~".*"}')}`);
    assert.equal(b.status, 400, "a selector matching everything is refused, like Prometheus");
  });
});

describe("/api/v1/export", () => {
  test("time range: Unix seconds and RFC 3339, inclusive", async () => {
    const a = await exportSeries(node.url, 'api_up{instance="a:9100"}', { start: "1700000060", end: "2023-11-14T22:15:20Z" });
    assert.deepEqual(a[0]!.timestamps, [1700000060000, 1700000120000]);
    const b = await exportSeries(node.url, 'api_up{instance="a:9100"}', { start: "1700000000.001", end: "1700000060.000" });
    assert.deepEqual(b[0]!.timestamps, [1700000060000]);
    const c = await exportSeries(node.url, 'api_up{instance="a:9100"}', { start: "1800000000" });
    assert.deepEqual(c, [], "series without samples in range are left out");
  });

  test("inferred=include|exclude, POST form", async () => {
    const inc = await exportSeries(node.url, "api_temp", { inferred: "include" });
    const exc = await exportSeries(node.url, "api_temp", { inferred: "exclude" });
    assert.deepEqual(inc, exc, "no inferred points were written");
    const bad = await http(`${node.url}/api/v1/export?match[]=api_temp&inferred=maybe`);
    assert.equal(bad.status, 400);
    const p = await http(`${node.url}/api/v1/export`, {
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "match[]=api_temp",
    });
    assert.equal(p.status, 200);
    const line = JSON.parse(p.text.trim()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(line), ["metric", "values", "timestamps", "timestamps_ns", "origins", "batches"]);
  });
});

describe("operations", () => {
  test("/health", async () => {
    const a = await http(`${node.url}/health`);
    assert.equal(a.status, 200);
    assert.equal((a.json() as { status: string }).status, "ok");
  });

  test("/metrics is Prometheus text format with engine, http and process metrics", async () => {
    const a = await http(`${node.url}/metrics`);
    assert.equal(a.status, 200);
    assert.match(a.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const names = new Set<string>();
    for (const line of a.text.split("\n")) {
      if (line === "") continue;
      if (line.startsWith("#")) {
        assert.match(line, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*/, line);
        continue;
      }
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)( -?[0-9]+)?$/.exec(line);
      assert.ok(m, `not a text-format sample line: ${line}`);
      names.add(m[1]!);
    }
    for (const n of ["hqts_samples_ingested_total", "hqts_http_requests_total", "hqts_http_request_duration_seconds_bucket", "hqts_ingest_samples_total", "process_cpu_seconds_total"])
      assert.ok(names.has(n), `missing ${n}`);
    assert.match(a.text, /hqts_http_requests_total\{route="\/api\/v1\/import",method="POST",code="200"\} [1-9]/);
  });

  test("unknown route 404, wrong method 405, both in the error shape", async () => {
    const a = await http(`${node.url}/no/such/thing`);
    assert.equal(a.status, 404);
    assert.equal((a.json() as { status: string; code: string }).code, "not_found");
    const b = await http(`${node.url}/api/v1/import`, { method: "GET" });
    assert.equal(b.status, 405);
    assert.match(b.headers.get("allow") ?? "", /POST/);
    assert.equal((b.json() as { status: string }).status, "error");
  });

  test("/hq/v1/admin/flush and /hq/v1/status", async () => {
    const before = (await http(`${node.url}/hq/v1/status`)).json() as { seriesCount: number; headSamples: number };
    assert.ok(before.seriesCount >= 4);
    const f = await http(`${node.url}/hq/v1/admin/flush`, { method: "POST" });
    assert.equal(f.status, 200, f.text);
    const fr = f.json() as { blockPath: string | null; series: number; samples: number };
    assert.ok("blockPath" in fr && typeof fr.samples === "number");
    const afterFlush = (await http(`${node.url}/hq/v1/status`)).json() as { headSamples: number; blockCount: number };
    assert.equal(afterFlush.headSamples, 0);
    assert.ok(afterFlush.blockCount >= 1);
    const got = await exportSeries(node.url, 'api_up{instance="a:9100"}');
    assert.deepEqual(got[0]!.values, [1, 1, 0], "data reads the same from blocks");
  });
});

describe("lifecycle", () => {
  test("SIGTERM: exits 0; a restart on the same data serves the same data", async () => {
    const n = await startNode();
    const w = await http(`${n.url}/write?receipt=1`, { body: "life,k=v x=1.25 1700000000000000007\n" });
    assert.equal(w.status, 200);
    const before = await exportSeries(n.url, "life_x");
    const exit = await n.stop({ keepData: true });
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(n.stderr(), /stopped cleanly/);

    const again = await startNode({ dataDir: n.dataDir });
    try {
      assert.deepEqual(await exportSeries(again.url, "life_x"), before);
      const dup = await http(`${again.url}/write?receipt=1`, { body: "life,k=v x=1.25 1700000000000000007\n" });
      assert.equal((dup.json() as { duplicate: boolean }).duplicate, true, "the batch id survives the restart");
    } finally {
      await again.stop();
      const { rm } = await import("node:fs/promises");
      await rm(n.dataDir, { recursive: true, force: true });
    }
  });

  test("in-flight requests finish during a graceful shutdown", async () => {
    const n = await startNode();
    const line = (i: number): string => `inflight,k=v x=${i} ${1700000000000000000n + BigInt(i) * 1000n}`;
    // Several writes sent, then SIGTERM at once: every request that got an answer got a complete one.
    const writes = Array.from({ length: 10 }, (_, j) =>
      http(`${n.url}/write?receipt=1`, { body: Array.from({ length: 2000 }, (_, i) => line(j * 2000 + i)).join("\n") + "\n" }).then(
        (a) => a.status,
        () => "refused" as const,
      ),
    );
    await new Promise((r) => setImmediate(r));
    n.kill("SIGTERM");
    const statuses = await Promise.all(writes);
    for (const s of statuses) assert.ok(s === 200 || s === 503 || s === "refused", `unexpected ${String(s)}`);
    assert.deepEqual(await n.exited(), { code: 0, signal: null });
    await n.stop();
  });
});
