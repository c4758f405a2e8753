// The Prometheus query API against a real node process: /api/v1/query and
// /api/v1/query_range answer in Prometheus's shapes (GET and POST), parse
// errors are 400 bad_data naming the position, step and time parameters are
// checked, buildinfo and metadata answer in shape.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { http } from "../helpers/http.js";
import { startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";

let node: NodeProc;
const T0_S = 1_700_000_000;

before(async () => {
  node = await startNode();
  // reqs_total{job="a"} 0, 10, 20, ... every 10 s for 5 minutes; {job="b"} twice as fast.
  const lines: string[] = [];
  for (const [job, f] of [["a", 1], ["b", 2]] as const) {
    const ts = Array.from({ length: 31 }, (_, i) => (T0_S + i * 10) * 1000);
    lines.push(JSON.stringify({ metric: { __name__: "reqs_total", job }, values: ts.map((_, i) => i * 10 * f), timestamps: ts }));
  }
  const a = await http(`${node.url}/api/v1/import`, { body: lines.join("\n") });
  assert.equal(a.status, 200, a.text);
});
after(async () => {
  await stopAll();
});

interface Answer<T> {
  status: string;
  data: T;
  warnings?: string[];
  errorType?: string;
  error?: string;
}

async function get<T>(path: string): Promise<{ code: number; body: Answer<T> }> {
  const a = await http(`${node.url}${path}`);
  return { code: a.status, body: JSON.parse(a.text) as Answer<T> };
}

const q = (s: string): string => encodeURIComponent(s);

describe("Prometheus query API", () => {
  test("instant query: vector with metric and [time, \"value\"]", async () => {
    const r = await get<{ resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${q("rate(reqs_total[1m])")}&time=${T0_S + 200}`);
    assert.equal(r.code, 200);
    assert.equal(r.body.status, "success");
    assert.equal(r.body.data.resultType, "vector");
    const byJob = new Map(r.body.data.result.map((s) => [s.metric["job"], s]));
    assert.deepEqual(byJob.get("a")!.metric, { job: "a" }, "rate drops the metric name");
    assert.deepEqual(byJob.get("a")!.value, [T0_S + 200, "1"]);
    assert.deepEqual(byJob.get("b")!.value, [T0_S + 200, "2"]);
  });

  test("scalar and string results", async () => {
    const s = await get<{ resultType: string; result: [number, string] }>(`/api/v1/query?query=${q("1 + 2 * 3")}&time=${T0_S}`);
    assert.deepEqual(s.body.data, { resultType: "scalar", result: [T0_S, "7"] });
    const str = await get<{ resultType: string; result: [number, string] }>(`/api/v1/query?query=${q('"hello"')}&time=${T0_S}`);
    assert.deepEqual(str.body.data, { resultType: "string", result: [T0_S, "hello"] });
  });

  test("range query: matrix, step-aligned points, POST form works the same", async () => {
    const path = `query=${q("sum(reqs_total)")}&start=${T0_S}&end=${T0_S + 60}&step=30s`;
    const r = await get<{ resultType: string; result: { metric: Record<string, string>; values: [number, string][] }[] }>(`/api/v1/query_range?${path}`);
    assert.equal(r.code, 200);
    assert.deepEqual(r.body.data, { resultType: "matrix", result: [{ metric: {}, values: [[T0_S, "0"], [T0_S + 30, "90"], [T0_S + 60, "180"]] }] });
    const p = await http(`${node.url}/api/v1/query_range`, { method: "POST", body: path, headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.equal(p.status, 200);
    assert.deepEqual((JSON.parse(p.text) as Answer<unknown>).data, r.body.data);
  });

  test("errors: 400 bad_data naming the position; missing or bad parameters named", async () => {
    const e = await get<unknown>(`/api/v1/query?query=${q("sum(rate(reqs_total[1m])")}`);
    assert.equal(e.code, 400);
    assert.equal(e.body.status, "error");
    assert.equal(e.body.errorType, "bad_data");
    assert.match(e.body.error!, /^1:\d+: parse error/);
    const none = await get<unknown>(`/api/v1/query`);
    assert.equal(none.code, 400);
    assert.match(none.body.error!, /query is required/);
    const step = await get<unknown>(`/api/v1/query_range?query=up&start=${T0_S}&end=${T0_S + 60}&step=0`);
    assert.equal(step.code, 400);
    assert.match(step.body.error!, /step/);
    const order = await get<unknown>(`/api/v1/query_range?query=up&start=${T0_S + 60}&end=${T0_S}&step=10`);
    assert.equal(order.code, 400);
    const time = await get<unknown>(`/api/v1/query?query=up&time=yesterday`);
    assert.equal(time.code, 400);
    assert.match(time.body.error!, /time/);
    const many = await get<unknown>(`/api/v1/query_range?query=up&start=0&end=${T0_S}&step=1`);
    assert.equal(many.code, 400);
    assert.equal(many.body.errorType, "bad_data");
    assert.match(many.body.error!, /11,000 points/);
  });

  test("evaluation errors are 422 execution, as Prometheus answers them", async () => {
    // Both sides match on nothing: two series on the left for one on the right is many-to-one without group_left.
    const e = await get<unknown>(`/api/v1/query?query=${q("reqs_total + on() vector(1)")}&time=${T0_S + 100}`);
    assert.equal(e.code, 422, JSON.stringify(e.body));
    assert.equal(e.body.errorType, "execution");
    assert.match(e.body.error!, /many-to-one matching must be explicit|group_left/);
  });

  test("query limits: --query-max-samples and --query-timeout answer in Prometheus's shapes", async () => {
    const small = await startNode({ args: ["--query-max-samples", "20"] });
    const lines = Array.from({ length: 3 }, (_, j) => JSON.stringify({ metric: { __name__: "m", j: String(j) }, values: Array.from({ length: 30 }, (_, i) => i), timestamps: Array.from({ length: 30 }, (_, i) => (T0_S + i) * 1000) }));
    assert.equal((await http(`${small.url}/api/v1/import`, { body: lines.join("\n") })).status, 200);
    const a = await http(`${small.url}/api/v1/query?query=${q("sum(count_over_time(m[1m]))")}&time=${T0_S + 30}`);
    assert.equal(a.status, 422, a.text);
    const body = JSON.parse(a.text) as Answer<unknown>;
    assert.equal(body.errorType, "execution");
    assert.match(body.error!, /too many samples|samples/);
    // Within the limit, the same node answers.
    const b = await http(`${small.url}/api/v1/query?query=${q("count_over_time(m{j=\"0\"}[10s])")}&time=${T0_S + 30}`);
    assert.equal(b.status, 200, b.text);
  });

  test("buildinfo, metadata and exemplars answer in Prometheus's shape", async () => {
    const b = await get<{ version: string }>(`/api/v1/status/buildinfo`);
    assert.equal(b.code, 200);
    assert.match(b.body.data.version, /^\d+\.\d+\.\d+$/);
    const m = await get<Record<string, unknown>>(`/api/v1/metadata`);
    assert.deepEqual(m.body, { status: "success", data: {} });
    const x = await get<unknown[]>(`/api/v1/query_exemplars?query=up&start=${T0_S}&end=${T0_S + 60}`);
    assert.deepEqual(x.body, { status: "success", data: [] });
  });
});

test("an answer computed from inferred points says so in warnings; inferred=exclude leaves them out", { timeout: 120_000 }, async () => {
  const { mkdtemp, rm, writeFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "hqts-query-gaps-"));
  try {
    const rules = join(dir, "rules.json");
    await writeFile(rules, JSON.stringify({ rules: [{ match: '{job="sensor"}', interval: "10s", policy: "linear", maxFill: "24h" }] }));
    const n = await startNode({ args: ["--gap-rules", rules, "--gap-scan-interval", "1s"] });
    // 10 s samples over the last 20 minutes with a 5-minute hole in the middle.
    const endS = Math.floor(Date.now() / 1000) - 30;
    const ts: number[] = [];
    for (let s = endS - 1200; s <= endS; s += 10) if (s < endS - 900 || s > endS - 600) ts.push(s * 1000);
    const a = await http(`${n.url}/api/v1/import`, { body: JSON.stringify({ metric: { __name__: "temp", job: "sensor" }, values: ts.map(() => 20), timestamps: ts }) });
    assert.equal(a.status, 200, a.text);
    const path = `/api/v1/query?query=${q("count_over_time(temp[30m])")}&time=${endS}`;
    const deadline = Date.now() + 60_000;
    let withInferred: Answer<{ result: { value: [number, string] }[] }>;
    for (;;) {
      withInferred = JSON.parse((await http(`${n.url}${path}`)).text) as typeof withInferred;
      if ((withInferred.warnings ?? []).some((w) => /inferred/.test(w))) break;
      assert.ok(Date.now() < deadline, `no inferred-points warning within 60 s: ${JSON.stringify(withInferred)}`);
      await new Promise((r) => setTimeout(r, 500)); // the gap job's next scan
    }
    const without = JSON.parse((await http(`${n.url}${path}&inferred=exclude`)).text) as typeof withInferred;
    assert.equal(without.warnings, undefined, JSON.stringify(without.warnings));
    assert.equal(Number(without.data.result[0]!.value[1]), ts.length, "only the original points");
    assert.ok(Number(withInferred.data.result[0]!.value[1]) > ts.length, "the filled points counted");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a long query neither blocks the node nor outlives --query-timeout: health answers meanwhile, the query ends 503 timeout", { timeout: 180_000 }, async () => {
  const n = await startNode({ args: ["--query-timeout", "3s"] });
  // 2,000 series × 120 samples: a range query over 11,000 steps of a subquery (each step re-reads 300 inner points
  // per series) takes far longer than 3 s here.
  const lines: string[] = [];
  for (let j = 0; j < 2000; j++)
    lines.push(JSON.stringify({ metric: { __name__: "busy_total", j: String(j) }, values: Array.from({ length: 120 }, (_, i) => i * j), timestamps: Array.from({ length: 120 }, (_, i) => (T0_S + i * 10) * 1000) }));
  for (let i = 0; i < lines.length; i += 500) assert.equal((await http(`${n.url}/api/v1/import`, { body: lines.slice(i, i + 500).join("\n") })).status, 200);
  let queryDone = false;
  const query = http(`${n.url}/api/v1/query_range?query=${q("sum(quantile_over_time(0.5, rate(busy_total[1m])[5m:1s]))")}&start=${T0_S}&end=${T0_S + 1199}&step=0.11`).then((a) => {
    queryDone = true;
    return a;
  });
  // While it runs, the node still answers.
  let healthyDuring = false;
  while (!queryDone) {
    const h = await http(`${n.url}/health`);
    if (h.status === 200 && !queryDone) healthyDuring = true;
    if (healthyDuring) break;
  }
  const a = await query;
  assert.ok(healthyDuring, `a health check was answered while the query ran (query: ${a.status} ${a.text.slice(0, 200)})`);
  assert.equal(a.status, 503, a.text.slice(0, 300));
  const body = JSON.parse(a.text) as Answer<unknown>;
  assert.equal(body.errorType, "timeout");
});
