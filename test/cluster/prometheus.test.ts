// Prometheus compatibility with a real Prometheus (Debian's `prometheus`, 2.42)
// scraping real exporters (Debian's `prometheus-node-exporter`, and
// Prometheus's own /metrics) every second and remote-writing to a playground
// node: everything it sends is stored, and the same PromQL queries give the
// same answers from HQ-TS and from Prometheus's own storage.
//
// Prometheus 2.42's range windows are closed on the left, 3.x's (ours) open:
// queries are compared at evaluation times where no sample lies on a window's
// left edge (checked against the raw samples), where the two agree. A second
// 2.42/3.x difference: rate/increase extrapolate differently for a series that
// starts inside the window (3.x applies the 110% threshold before clamping at
// the counter's zero point, 2.42 after), so the windows compared start after
// every series began (Prometheus runs 45 s before the times compared).

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { startPlayground, type Playground } from "../helpers/playground.js";

const PROMETHEUS = "/usr/bin/prometheus";
const NODE_EXPORTER = "/usr/bin/prometheus-node-exporter";

let pg: Playground | null = null;
const procs: ChildProcess[] = [];
let scratch: string | null = null;
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => (p.exitCode !== null || p.signalCode !== null ? null : new Promise((r) => p.once("exit", r)))));
  await pg?.cleanup();
  if (scratch !== null) await rm(scratch, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function start(cmd: string, args: string[]): ChildProcess {
  const p = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  p.stderr!.setEncoding("utf8").on("data", (s: string) => (err = (err + s).slice(-4000)));
  (p as ChildProcess & { lastErr: () => string }).lastErr = () => err;
  procs.push(p);
  return p;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  await exited;
}

interface PromAnswer {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }[] };
  error?: string;
}

async function query(base: string, q: string, tS: number): Promise<PromAnswer> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}&time=${tS}`, { signal: AbortSignal.timeout(30_000) });
  const body = (await res.json()) as PromAnswer;
  assert.equal(body.status, "success", `${base} ${q} @${tS}: ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

async function poll<T>(what: string, timeoutMs: number, f: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const v = await f();
      if (v !== null) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    assert.ok(Date.now() < deadline, `${what}: not within ${timeoutMs} ms ${last}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const key = (m: Record<string, string>): string => JSON.stringify(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : 1)));

/** Raw samples of every series a selector selects in the 60 s before tS, as Prometheus answers a range vector. */
async function rawSamples(base: string, selector: string, tS: number): Promise<Map<string, [number, string][]>> {
  const a = await query(base, `${selector}[60s]`, tS);
  return new Map(a.data.result.map((s) => [key(s.metric), s.values!]));
}

function sameNumber(a: string, b: string): boolean {
  if (a === b) return true;
  const x = Number(a);
  const y = Number(b);
  if (Number.isNaN(x) && Number.isNaN(y)) return true;
  return Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x), Math.abs(y));
}

const haveBinaries = existsSync(PROMETHEUS) && existsSync(NODE_EXPORTER);

test("a real Prometheus remote-writes to HQ-TS: all stored, and PromQL answers as Prometheus does", { timeout: 300_000 }, async (t) => {
  assert.ok(haveBinaries, `${PROMETHEUS} and ${NODE_EXPORTER} are installed (scripts/test.sh asks setup.sh for Debian's prometheus and prometheus-node-exporter)`);
  scratch = await mkdtemp(join(tmpdir(), "hqts-prom-"));
  pg = await startPlayground();
  const node = pg.nodes()[0]!.http;
  const exporterPort = await freePort();
  const promPort = await freePort();
  const prom = `http://127.0.0.1:${promPort}`;
  start(NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${exporterPort}`, "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo", "--collector.loadavg", "--collector.stat", "--collector.netdev", "--collector.filesystem"]);
  const config = join(scratch, "prometheus.yml");
  await writeFile(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: node",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${exporterPort}"]`,
      "  - job_name: prometheus",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${promPort}"]`,
      "remote_write:",
      `  - url: ${node}/api/v1/write`,
      "    queue_config:",
      "      batch_send_deadline: 1s",
      "    metadata_config:",
      "      send_interval: 2s",
      "",
    ].join("\n"),
  );
  const p = start(PROMETHEUS, [`--config.file=${config}`, `--storage.tsdb.path=${join(scratch, "tsdb")}`, `--web.listen-address=127.0.0.1:${promPort}`]);

  // 45 s of scrapes; then everything up to `cut` - 5 s must be equal on both sides, and queries are compared at
  // times before that, so that data still arriving does not matter.
  await poll("Prometheus scraping both targets", 60_000, async () => {
    const a = await query(prom, "count(up == 1)", Date.now() / 1000);
    return Number(a.data.result[0]?.value?.[1] ?? 0) === 2 ? true : null;
  });
  await new Promise((r) => setTimeout(r, 45_000)); // the data to compare accumulates: real time, not synchronisation
  const cut = Date.now() / 1000;
  // Everything Prometheus has up to `cut`, read back from its own storage, is what HQ-TS must hold.
  const selector = '{job=~"node|prometheus"}';
  const evalTimes: number[] = [];
  const ref = await rawSamples(prom, selector, cut - 5);
  const theirs = await poll("HQ-TS holding every sample Prometheus stored (remote write caught up)", 60_000, async () => {
    const ours = await rawSamples(node, selector, cut - 5);
    let missing = 0;
    for (const [k, vs] of ref) {
      const o = new Map((ours.get(k) ?? []).map(([tt, v]) => [tt, v]));
      for (const [tt, v] of vs) if (!o.has(tt) || !sameNumber(o.get(tt)!, v)) missing++;
    }
    t.diagnostic(`remote write: ${ref.size} series, ${[...ref.values()].reduce((a, v) => a + v.length, 0)} samples at Prometheus, ${missing} not (yet) equal at HQ-TS`);
    return missing === 0 ? ours : null;
  });
  assert.ok(ref.size >= 50, `series compared: ${ref.size}`);
  assert.ok(theirs.size >= ref.size);

  // Evaluation times with no sample on a 10 s or 30 s window's left edge (2.42 is left-closed, 3.x left-open).
  const sampleTimes = new Set([...ref.values()].flatMap((vs) => vs.map(([tt]) => Math.round(tt * 1000))));
  for (let tS = Math.floor(cut) - 8; evalTimes.length < 3 && tS > cut - 20; tS -= 1.37) {
    const tMs = Math.round(tS * 1000);
    if ([10_000, 30_000].every((w) => !sampleTimes.has(tMs - w))) evalTimes.push(tMs / 1000);
  }
  assert.equal(evalTimes.length, 3);
  const queries = [
    'up{job="node"}',
    "rate(node_cpu_seconds_total[10s])",
    "sum by (mode) (rate(node_cpu_seconds_total[10s]))",
    "avg_over_time(node_load1[30s])",
    "max_over_time(node_memory_MemAvailable_bytes[30s]) - min_over_time(node_memory_MemAvailable_bytes[30s])",
    "increase(prometheus_http_requests_total[30s])",
    "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[30s])))",
    "topk(3, rate(node_network_receive_bytes_total[10s]))",
    "count by (job) ({__name__=~\".+\"})",
    "node_filesystem_avail_bytes / node_filesystem_size_bytes",
    "deriv(process_resident_memory_bytes[30s])",
    "sum(rate(prometheus_tsdb_head_samples_appended_total[10s])) + 0 * scalar(up{job=\"node\"})",
  ];
  let compared = 0;
  for (const tS of evalTimes) {
    for (const q of queries) {
      const [a, b] = await Promise.all([query(prom, q, tS), query(node, q, tS)]);
      assert.equal(b.data.resultType, a.data.resultType, q);
      const pa = new Map(a.data.result.map((s) => [key(s.metric), s.value![1]]));
      const pb = new Map(b.data.result.map((s) => [key(s.metric), s.value![1]]));
      assert.deepEqual([...pb.keys()].sort(), [...pa.keys()].sort(), `${q} @${tS}: the same series`);
      for (const [k, v] of pa) assert.ok(sameNumber(pb.get(k)!, v), `${q} @${tS} ${k}: Prometheus ${v}, HQ-TS ${pb.get(k)}`);
      compared += pa.size;
    }
  }
  t.diagnostic(`${queries.length} queries at ${evalTimes.length} times: ${compared} values equal`);
  assert.ok(compared > 100, `values compared: ${compared}`);

  // Metric metadata: what Prometheus knows of its targets' metrics travels with remote write (metadata_config), and
  // HQ-TS's /api/v1/metadata answers the same type, help and unit for every metric.
  type Meta = Record<string, { type: string; help: string; unit: string }[]>;
  const metadata = async (base: string): Promise<Meta> => {
    const res = await fetch(`${base}/api/v1/metadata`, { signal: AbortSignal.timeout(30_000) });
    assert.equal(res.status, 200, base);
    return ((await res.json()) as { data: Meta }).data;
  };
  const canon = (entries: { type: string; help: string; unit: string }[] | undefined): string =>
    JSON.stringify((entries ?? []).map((e) => [e.type, e.help, e.unit]).sort());
  const theirMeta = await metadata(prom);
  assert.ok(Object.keys(theirMeta).length >= 50, `metrics with metadata at Prometheus: ${Object.keys(theirMeta).length}`);
  assert.equal(canon(theirMeta["node_cpu_seconds_total"]), canon([{ type: "counter", help: "Seconds the CPUs spent in each mode.", unit: "" }]));
  await poll("HQ-TS answering Prometheus's metric metadata", 60_000, async () => {
    const ours = await metadata(node);
    const differing = Object.keys(theirMeta).filter((m) => canon(ours[m]) !== canon(theirMeta[m]));
    t.diagnostic(`metadata: ${Object.keys(theirMeta).length} metrics at Prometheus, ${differing.length} not (yet) equal at HQ-TS`);
    return differing.length === 0 ? true : null;
  });
  await stop(p);
  assert.equal(await pg.stop(), 0, pg.output());
});
