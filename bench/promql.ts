// Typical dashboard PromQL queries (query_range over the whole data span,
// ~240 points), HQ-TS beside Prometheus 2.42 and VictoriaMetrics on the same
// data, one database at a time, each on a fresh data dir and a free port.
// See bench/README.md ("PromQL queries beside Prometheus and VictoriaMetrics").
//
//   node --import tsx bench/promql.ts [--dataset real|synthetic|both] [--series N] [--samples S]
//        [--runs R] [--warmup W] [--budget SEC] [--only hq,prom,vm] [--file PATH] [--keep-data] [--query Q ...]
//
// Build HQ-TS first (npx tsc -p .): the node runs as `node dist/src/cli/main.js node`.

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gunzipSync } from "node:zlib";
import { body as remoteWriteBody, HEADERS as RW_HEADERS, type Ts } from "../test/helpers/remote-write.js";
import { RequestPacker } from "./lib/dataset.js";
import { vmBinary } from "./lib/dbs.js";
import { HttpClient, excerpt, waitReady } from "./lib/http.js";
import { Prng } from "./lib/prng.js";
import { freePort, installCleanupHandlers, runMain, startProcess, type ManagedProcess } from "./lib/procs.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const { values: args } = parseArgs({
  options: {
    dataset: { type: "string", default: "both" },
    file: { type: "string" },
    series: { type: "string", default: "100000" },
    samples: { type: "string", default: "30" },
    seed: { type: "string", default: "1" },
    runs: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    budget: { type: "string", default: "120" },
    only: { type: "string", default: "hq,prom,vm" },
    "keep-data": { type: "boolean", default: false },
    query: { type: "string", multiple: true },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});
if (args.help) {
  console.log("usage: node --import tsx bench/promql.ts [--dataset real|synthetic|both] [--series N] [--samples S] [--runs R] [--warmup W] [--budget SEC] [--only hq,prom,vm] [--file PATH] [--keep-data]");
  process.exit(0);
}

function posInt(name: string, v: string | undefined, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: expected an integer >= ${min}, got ${String(v)}`);
  return n;
}
const RUNS = posInt("runs", args.runs);
const WARMUP = posInt("warmup", args.warmup, 0);
const BUDGET_MS = posInt("budget", args.budget) * 1000;
type Kind = "hq" | "prom" | "vm";
const KINDS: Kind[] = ["hq", "prom", "vm"];
const LABEL: Record<Kind, string> = { hq: "HQ-TS", prom: "Prometheus", vm: "VictoriaMetrics" };
const only = new Set((args.only ?? "").split(",").map((s) => s.trim()).filter((s) => s !== ""));
for (const k of only) if (!KINDS.includes(k as Kind)) throw new Error(`--only: comma list of hq, prom, vm; got ${k}`);
const systems = KINDS.filter((k) => only.has(k));
const datasetNames = args.dataset === "both" || args.dataset === "all" ? ["real", "synthetic"] : [args.dataset ?? ""];
for (const d of datasetNames) if (d !== "real" && d !== "synthetic") throw new Error(`--dataset: real, synthetic or both; got ${d}`);

const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const outDir = join(repoRoot, "bench", "out", `promql-${stamp}`);
mkdirSync(outDir, { recursive: true });
const log = (msg: string): void => {
  process.stderr.write(`[promql ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

// ---- data ---------------------------------------------------------------------

interface Series {
  labels: Record<string, string>;
  values: number[];
  timestamps: number[];
}
interface Data {
  name: string;
  description: string;
  series: Series[];
  samples: number;
  minTs: number;
  maxTs: number;
  /** /api/v1/import bodies (JSON lines, <= 50k samples each), for HQ-TS and VictoriaMetrics. */
  importBodies: Buffer[];
  /** Remote-write bodies (<= 10k samples each), in time order, for Prometheus. */
  rwBodies: Uint8Array[];
  /** The queries timed (--query replaces the built-in list). */
  queries: string[];
}

const IMPORT_MAX_SAMPLES = 50_000;
const RW_MAX_SAMPLES = 10_000;

function jsonValue(v: unknown): number {
  if (typeof v === "number") return v;
  if (v === "NaN") return Number.NaN;
  if (v === "+Inf" || v === "Inf") return Number.POSITIVE_INFINITY;
  if (v === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(v);
}

/**
 * Remote-write requests in time order: windows of `windowMs` across all series
 * (every series' samples of window k go before any of window k+1), each request
 * at most RW_MAX_SAMPLES samples, so Prometheus's head only ever appends.
 */
function buildRemoteWrite(series: Series[], minTs: number, maxTs: number, windowMs: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const cursor = new Array<number>(series.length).fill(0);
  const labelPairs = series.map((s) => Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) as [string, string][]);
  let pending: Ts[] = [];
  let pendingSamples = 0;
  const cut = (): void => {
    if (pending.length === 0) return;
    out.push(remoteWriteBody(pending));
    pending = [];
    pendingSamples = 0;
  };
  for (let w = minTs; w <= maxTs; w += windowMs) {
    const wEnd = w + windowMs;
    for (let i = 0; i < series.length; i++) {
      const s = series[i] as Series;
      let c = cursor[i] as number;
      while (c < s.timestamps.length && (s.timestamps[c] as number) < wEnd) {
        const room = RW_MAX_SAMPLES - pendingSamples;
        const samples: [number, number][] = [];
        while (c < s.timestamps.length && (s.timestamps[c] as number) < wEnd && samples.length < room) {
          samples.push([s.values[c] as number, s.timestamps[c] as number]);
          c++;
        }
        pending.push({ labels: labelPairs[i] as [string, string][], samples });
        pendingSamples += samples.length;
        if (pendingSamples >= RW_MAX_SAMPLES) cut();
      }
      cursor[i] = c;
    }
    cut(); // a request never spans two windows
  }
  return out;
}

function finishData(name: string, description: string, series: Series[], lines: string[], windowMs: number, queries: string[]): Data {
  const packer = new RequestPacker(IMPORT_MAX_SAMPLES);
  let samples = 0;
  let minTs = Number.POSITIVE_INFINITY;
  let maxTs = Number.NEGATIVE_INFINITY;
  series.forEach((s, i) => {
    packer.add(lines[i] as string, s.timestamps.length);
    samples += s.timestamps.length;
    const a = s.timestamps[0];
    const b = s.timestamps[s.timestamps.length - 1];
    if (a !== undefined && a < minTs) minTs = a;
    if (b !== undefined && b > maxTs) maxTs = b;
  });
  packer.finish();
  const rwBodies = buildRemoteWrite(series, minTs, maxTs, windowMs);
  return { name, description, series, samples, minTs, maxTs, importBodies: packer.requests, rwBodies, queries };
}

function loadReal(): Data {
  const candidates = args.file !== undefined ? [resolve(args.file)] : [join(repoRoot, "..", "shared", "data", "node-exporter-1s-55min.jsonl.gz"), "/work/shared/data/node-exporter-1s-55min.jsonl.gz"];
  const path = candidates.find((c) => existsSync(c));
  if (path === undefined) throw new Error(`real data not found (tried ${candidates.join(", ")})`);
  const raw = readFileSync(path);
  const text = (path.endsWith(".gz") ? gunzipSync(raw) : raw).toString("utf8");
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const series: Series[] = lines.map((l) => {
    const o = JSON.parse(l) as { metric: Record<string, string>; values: unknown[]; timestamps: number[] };
    return { labels: o.metric, values: o.values.map(jsonValue), timestamps: o.timestamps };
  });
  const names = new Set(series.map((s) => s.labels["__name__"]));
  const want: [string, string[]][] = [
    ["rate(node_cpu_seconds_total[1m])", ["node_cpu_seconds_total"]],
    ["sum by (mode) (rate(node_cpu_seconds_total[1m]))", ["node_cpu_seconds_total"]],
    ["node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", ["node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"]],
    ["topk(5, rate(node_network_receive_bytes_total[1m]))", ["node_network_receive_bytes_total"]],
    ["avg_over_time(node_load1[5m])", ["node_load1"]],
    ["count by (job) (up)", ["up"]],
    ["histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[1m])))", ["prometheus_http_request_duration_seconds_bucket"]],
    ["sum by (job) (rate(process_cpu_seconds_total[1m]))", ["process_cpu_seconds_total"]],
  ];
  // Keep only queries whose metrics exist in the file (so another file still works).
  const queries = want.filter(([, ms]) => ms.every((m) => names.has(m))).map(([q]) => q);
  return finishData("real", `${path}: ${series.length} series`, series, lines, 60_000, queries);
}

const HANDLERS = ["/api/users", "/api/orders", "/api/items", "/login"];
const CODES: [string, number][] = [["200", 0.95], ["404", 0.04], ["500", 0.01]];
const LES = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];

/**
 * Synthetic: per instance 10 `bench_latency_seconds_bucket{le}` series (a full
 * histogram, first) then 12 `bench_requests_total{handler,code}` counters; the
 * last instance is cut after its histogram, so every histogram is complete.
 * Integer counter values (exact in every system), 15 s interval, a per-instance
 * phase, the last sample about 10 minutes before now.
 */
function buildSynthetic(nSeries: number, nSamples: number, seed: number): Data {
  const rng = new Prng(seed);
  const step = 15_000;
  const end = Math.floor((Date.now() - 10 * 60_000) / step) * step;
  const series: Series[] = [];
  const lines: string[] = [];
  const push = (labels: Record<string, string>, values: number[], timestamps: number[]): void => {
    series.push({ labels, values, timestamps });
    lines.push(`{"metric":${JSON.stringify(labels)},"values":${JSON.stringify(values)},"timestamps":${JSON.stringify(timestamps)}}`);
  };
  for (let inst = 0; series.length < nSeries; inst++) {
    const job = inst % 3 === 0 ? "web" : "api";
    const instance = `host-${String(inst).padStart(5, "0")}:9100`;
    const phase = (inst * 997) % step;
    const ts = Array.from({ length: nSamples }, (_, j) => end - (nSamples - 1 - j) * step + phase - step);
    // Histogram: per scrape, k requests with lognormal-ish latency; cumulative buckets.
    const bounds = LES.map((le) => (le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le)));
    const counts = bounds.map(() => 0);
    const base = rng.int(0, 100_000);
    const bucketVals: number[][] = bounds.map(() => []);
    const median = 0.02 + rng.float() * 0.2;
    for (let j = 0; j < nSamples; j++) {
      const k = rng.int(5, 40);
      for (let r = 0; r < k; r++) {
        const lat = median * Math.exp(rng.normal() * 0.8);
        for (let b = 0; b < bounds.length; b++) if (lat <= (bounds[b] as number)) counts[b] = (counts[b] as number) + 1;
      }
      for (let b = 0; b < bounds.length; b++) (bucketVals[b] as number[]).push(base + (counts[b] as number));
    }
    // The +Inf bucket holds every request; lower buckets hold the ones that fit, plus a shared base.
    for (let b = 0; b < LES.length && series.length < nSeries; b++) push({ __name__: "bench_latency_seconds_bucket", job, instance, le: LES[b] as string }, bucketVals[b] as number[], ts);
    for (const handler of HANDLERS) {
      for (const [code, share] of CODES) {
        if (series.length >= nSeries) break;
        let v = rng.int(0, 1_000_000);
        const rps = rng.float() * 20 * share;
        const vals: number[] = [];
        for (let j = 0; j < nSamples; j++) {
          v += Math.max(0, Math.round(rps * 15 * (0.7 + 0.6 * rng.float())));
          vals.push(v);
        }
        push({ __name__: "bench_requests_total", job, instance, handler, code }, vals, ts);
      }
    }
  }
  const queries = [
    "sum(rate(bench_requests_total[5m]))",
    "sum by (code) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "topk(10, sum by (instance) (rate(bench_requests_total[5m])))",
    "count(bench_requests_total)",
  ];
  // One request per timestamp step of all series (window = the scrape interval).
  return finishData("synthetic", `${series.length} series x ${nSamples} samples at 15 s (seed ${seed})`, series, lines, step, queries);
}

// ---- the three databases ---------------------------------------------------------

interface Running {
  kind: Kind;
  proc: ManagedProcess;
  client: HttpClient;
  startupMs: number;
  stop(): Promise<void>;
}

async function startSystem(kind: Kind, dataDir: string, logPath: string): Promise<Running> {
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort();
  let proc: ManagedProcess;
  let readyPath = "/health";
  if (kind === "hq") {
    const main = join(repoRoot, "dist", "src", "cli", "main.js");
    if (!existsSync(main)) throw new Error(`${main} missing: build with npx tsc -p .`);
    const extra = process.env["PROMQL_HQ_NODE_ARGS"]?.split(" ").filter((s) => s !== "") ?? [];
    proc = startProcess("hqts", process.execPath, [...extra, main, "node", "--data", dataDir, "--http", `127.0.0.1:${port}`], logPath, repoRoot);
  } else if (kind === "prom") {
    const cfg = join(dataDir, "..", `prometheus-${port}.yml`);
    writeFileSync(cfg, "global:\n  scrape_interval: 15s\nscrape_configs: []\n");
    proc = startProcess(
      "prometheus",
      "/usr/bin/prometheus",
      [`--config.file=${cfg}`, `--storage.tsdb.path=${dataDir}`, `--web.listen-address=127.0.0.1:${port}`, "--web.enable-remote-write-receiver", "--log.level=warn"],
      logPath,
      dataDir,
    );
    readyPath = "/-/ready";
  } else {
    proc = startProcess("victoria-metrics", vmBinary(), [`-storageDataPath=${dataDir}`, `-httpListenAddr=127.0.0.1:${port}`, "-retentionPeriod=100y", "-search.disableCache", "-loggerLevel=ERROR"], logPath, repoRoot);
  }
  const client = new HttpClient(`http://127.0.0.1:${port}`, 1);
  let startupMs: number;
  try {
    startupMs = await waitReady(client, readyPath, 60_000, () => (proc.hasExited ? proc.exitDescription : null));
  } catch (e) {
    client.close();
    await proc.stop();
    throw new Error(`${LABEL[kind]}: ${(e as Error).message}\n${proc.logTail()}`);
  }
  return {
    kind,
    proc,
    client,
    startupMs,
    async stop() {
      client.close();
      await proc.stop(30_000);
    },
  };
}

interface LoadResult {
  seconds: number;
  requests: number;
  samplesPerSec: number;
  /** VictoriaMetrics: the /internal/force_flush call after the import (not in `seconds`). */
  flushSeconds?: number;
}

async function loadInto(r: Running, d: Data): Promise<LoadResult> {
  const t0 = performance.now();
  let n = 0;
  if (r.kind === "prom") {
    for (const b of d.rwBodies) {
      const res = await r.client.send("POST", "/api/v1/write", Buffer.from(b.buffer, b.byteOffset, b.byteLength), { ...RW_HEADERS });
      if (res.status < 200 || res.status >= 300) throw new Error(`Prometheus remote write ${n + 1}/${d.rwBodies.length}: HTTP ${res.status} ${excerpt(res.body)}`);
      n++;
    }
  } else {
    for (const b of d.importBodies) {
      const res = await r.client.send("POST", "/api/v1/import", b);
      if (res.status < 200 || res.status >= 300) throw new Error(`${LABEL[r.kind]} import ${n + 1}/${d.importBodies.length}: HTTP ${res.status} ${excerpt(res.body)}`);
      n++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const out: LoadResult = { seconds, requests: n, samplesPerSec: d.samples / seconds };
  if (r.kind === "vm") {
    const t1 = performance.now();
    const ff = await r.client.get("/internal/force_flush", 120_000);
    if (ff.status !== 200) throw new Error(`VictoriaMetrics force_flush: HTTP ${ff.status}`);
    out.flushSeconds = (performance.now() - t1) / 1000;
  }
  return out;
}

// ---- queries ----------------------------------------------------------------------

interface PromSeries {
  metric: Record<string, string>;
  values?: [number, string][];
  value?: [number, string];
}
interface PromAnswer {
  status: string;
  data?: { resultType: string; result: PromSeries[] };
  error?: string;
  errorType?: string;
}

function queryPath(kind: Kind, endpoint: string, params: Record<string, string>): string {
  const p = new URLSearchParams(params);
  if (kind === "vm") p.set("nocache", "1");
  return `${endpoint}?${p.toString()}`;
}

async function promQuery(r: Running, endpoint: string, params: Record<string, string>): Promise<{ ms: number; answer: PromAnswer; bytes: number }> {
  const t0 = performance.now();
  const res = await r.client.get(queryPath(r.kind, endpoint, params), 600_000);
  const ms = performance.now() - t0;
  let answer: PromAnswer;
  try {
    answer = JSON.parse(res.body.toString("utf8")) as PromAnswer;
  } catch {
    throw new Error(`HTTP ${res.status}: ${excerpt(res.body)}`);
  }
  if (res.status !== 200 || answer.status !== "success") throw new Error(`HTTP ${res.status}: ${answer.errorType ?? ""} ${answer.error ?? excerpt(res.body)}`);
  return { ms, answer, bytes: res.body.length };
}

interface Window {
  start: number;
  end: number;
  step: number;
  points: number;
}

/** query_range over the whole span, integer-second step giving ~240 points, start/end on step multiples. */
function rangeWindow(d: Data): Window {
  const lo = d.minTs / 1000;
  const hi = d.maxTs / 1000;
  const step = Math.max(1, Math.round((hi - lo) / 240));
  const start = Math.ceil(lo / step) * step;
  const end = Math.floor(hi / step) * step;
  return { start, end, step, points: Math.floor((end - start) / step) + 1 };
}

interface Counts {
  series: number;
  samples: number;
  ms: number;
}

/**
 * Series and samples each system holds: per metric name sent, count_over_time
 * over a window wider than the data (one query per name, since the function
 * drops the name and different names can share their other labels).
 */
async function countStored(r: Running, d: Data): Promise<Counts> {
  const t = Math.ceil(d.maxTs / 1000) + 1;
  const w = Math.ceil((d.maxTs - d.minTs) / 1000) + 120;
  const names = [...new Set(d.series.map((s) => s.labels["__name__"] ?? ""))].sort();
  const t0 = performance.now();
  let series = 0;
  let samples = 0;
  for (const name of names) {
    const { answer } = await promQuery(r, "/api/v1/query", { query: `count_over_time({__name__=${JSON.stringify(name)}}[${w}s])`, time: String(t) });
    for (const s of answer.data?.result ?? []) {
      series++;
      samples += Number(s.value?.[1] ?? 0);
    }
  }
  return { series, samples, ms: performance.now() - t0 };
}

interface QueryTiming {
  query: string;
  runs: number;
  p50Ms?: number;
  p90Ms?: number;
  minMs?: number;
  maxMs?: number;
  resultSeries?: number;
  resultPoints?: number;
  answerBytes?: number;
  error?: string;
  answer?: PromSeries[];
}

function nearestRank(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

async function timeQuery(r: Running, q: string, w: Window): Promise<QueryTiming> {
  const params = { query: q, start: String(w.start), end: String(w.end), step: String(w.step) };
  const out: QueryTiming = { query: q, runs: 0 };
  try {
    let last: PromAnswer | undefined;
    const t0 = performance.now();
    for (let i = 0; i < WARMUP; i++) last = (await promQuery(r, "/api/v1/query_range", params)).answer;
    const lat: number[] = [];
    let bytes = 0;
    for (let i = 0; i < RUNS; i++) {
      const res = await promQuery(r, "/api/v1/query_range", params);
      lat.push(res.ms);
      last = res.answer;
      bytes = res.bytes;
      if (lat.length >= 3 && performance.now() - t0 > BUDGET_MS) break;
    }
    lat.sort((a, b) => a - b);
    const result = last?.data?.result ?? [];
    Object.assign(out, {
      runs: lat.length,
      p50Ms: nearestRank(lat, 50),
      p90Ms: nearestRank(lat, 90),
      minMs: lat[0],
      maxMs: lat[lat.length - 1],
      resultSeries: result.length,
      resultPoints: result.reduce((n, s) => n + (s.values?.length ?? 0), 0),
      answerBytes: bytes,
      answer: result,
    });
  } catch (e) {
    out.error = (e as Error).message.slice(0, 500);
  }
  return out;
}

// ---- comparing answers --------------------------------------------------------------

function seriesKey(m: Record<string, string>): string {
  return JSON.stringify(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function sameValue(a: number, b: number): boolean {
  if (Number.isNaN(a) && Number.isNaN(b)) return true;
  if (a === b) return true;
  return Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(a), Math.abs(b));
}

interface Agreement {
  seriesA: number;
  seriesB: number;
  /** Series keys present in both. */
  commonSeries: number;
  /** Points (series, timestamp) present in either answer. */
  points: number;
  /** Points present in both with values within 1e-6 relative. */
  equalPoints: number;
  equalShare: number;
}

function compareAnswers(a: PromSeries[], b: PromSeries[]): Agreement {
  const index = (r: PromSeries[]): Map<string, Map<number, number>> => {
    const m = new Map<string, Map<number, number>>();
    for (const s of r) m.set(seriesKey(s.metric), new Map((s.values ?? []).map(([t, v]) => [Math.round(t * 1000), Number(v)])));
    return m;
  };
  const A = index(a);
  const B = index(b);
  let points = 0;
  let equal = 0;
  let common = 0;
  for (const [k, pa] of A) {
    const pb = B.get(k);
    if (pb === undefined) {
      points += pa.size;
      continue;
    }
    common++;
    for (const [t, v] of pa) {
      points++;
      const w = pb.get(t);
      if (w !== undefined && sameValue(v, w)) equal++;
    }
    for (const t of pb.keys()) if (!pa.has(t)) points++;
  }
  for (const [k, pb] of B) if (!A.has(k)) points += pb.size;
  return { seriesA: a.length, seriesB: b.length, commonSeries: common, points, equalPoints: equal, equalShare: points === 0 ? 1 : equal / points };
}

const WINDOWED = /\b(rate|irate|increase|delta|idelta|deriv|[a-z]+_over_time|resets|changes)\s*\(/;

function verdict(q: string, other: Kind, ag: Agreement | undefined): string {
  if (ag === undefined) return "n/a";
  const pct = `${(100 * ag.equalShare).toFixed(1)}% equal`;
  const seriesNote = ag.seriesA !== ag.seriesB ? `, series ${ag.seriesA} vs ${ag.seriesB}` : ag.commonSeries !== ag.seriesA ? `, labels differ on ${ag.seriesA - ag.commonSeries} series` : "";
  if (ag.equalShare === 1 && seriesNote === "") return "agree";
  if (other === "vm" && WINDOWED.test(q)) return `differs (VictoriaMetrics semantics; ${pct}${seriesNote})`;
  if (other === "prom" && WINDOWED.test(q)) return `${pct} (window edges: left-closed in 2.42${seriesNote})`;
  return `${pct}${seriesNote}`;
}

// ---- report --------------------------------------------------------------------------

function fmt(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return "-";
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}
function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !(b > 0)) return "-";
  return `${(a / b).toFixed(2)}x`;
}

function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r, i) => {
    const line = r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join(" | ");
    return i === 0 ? `${line}\n${widths.map((w) => "-".repeat(w)).join("-|-")}` : line;
  }).join("\n");
}

interface SystemResult {
  kind: Kind;
  label: string;
  startupMs?: number;
  load?: LoadResult;
  counts?: Counts;
  countsOk?: boolean;
  queries: QueryTiming[];
  error?: string;
  logFile: string;
}

// ---- main ------------------------------------------------------------------------------

async function runDataset(d: Data): Promise<Record<string, unknown>> {
  const w = rangeWindow(d);
  log(`${d.name}: ${d.series.length} series, ${d.samples.toLocaleString("en-US")} samples, ${new Date(d.minTs).toISOString()} .. ${new Date(d.maxTs).toISOString()}; ${d.importBodies.length} import bodies, ${d.rwBodies.length} remote-write bodies; range step ${w.step}s, ${w.points} points`);
  const results: SystemResult[] = [];
  for (const kind of systems) {
    const res: SystemResult = { kind, label: LABEL[kind], queries: [], logFile: join(outDir, `${d.name}-${kind}.log`) };
    results.push(res);
    const dataDir = join(outDir, `${d.name}-${kind}-data`);
    let r: Running | undefined;
    try {
      r = await startSystem(kind, dataDir, res.logFile);
      res.startupMs = r.startupMs;
      log(`${LABEL[kind]} up (pid ${r.proc.pid}, ${r.client.baseUrl}); loading`);
      res.load = await loadInto(r, d);
      log(`${LABEL[kind]}: loaded in ${res.load.seconds.toFixed(2)} s (${Math.round(res.load.samplesPerSec).toLocaleString("en-US")} samples/s, ${res.load.requests} requests)${res.load.flushSeconds !== undefined ? `, force_flush ${res.load.flushSeconds.toFixed(2)} s` : ""}`);
      res.counts = await countStored(r, d);
      res.countsOk = res.counts.series === d.series.length && res.counts.samples === d.samples;
      log(`${LABEL[kind]}: holds ${res.counts.series} series, ${res.counts.samples} samples (sent ${d.series.length}, ${d.samples})${res.countsOk ? "" : " MISMATCH"}`);
      if (!res.countsOk) throw new Error(`${LABEL[kind]} holds ${res.counts.series} series / ${res.counts.samples} samples, ${d.series.length} / ${d.samples} were sent: not timing queries`);
      for (const q of d.queries) {
        const t = await timeQuery(r, q, w);
        res.queries.push(t);
        if (t.error !== undefined) log(`${LABEL[kind]}: ${q}: ERROR ${t.error}`);
        else log(`${LABEL[kind]}: ${q}: p50 ${fmt(t.p50Ms)} ms p90 ${fmt(t.p90Ms)} ms (${t.runs} runs), ${t.resultSeries} series, ${t.resultPoints} points`);
        if (process.env["PROMQL_DEBUG"] === "1") log(JSON.stringify(t.answer).slice(0, 1500));
      }
    } catch (e) {
      res.error = (e as Error).message;
      log(`${LABEL[kind]} FAILED: ${res.error.split("\n")[0] ?? ""}`);
    } finally {
      if (r !== undefined) {
        await r.stop();
        log(`${LABEL[kind]} stopped`);
      }
      if (!args["keep-data"]) rmSync(dataDir, { recursive: true, force: true });
    }
  }
  const by = (k: Kind): SystemResult | undefined => results.find((x) => x.kind === k);
  const rows: string[][] = [["query", "HQ-TS p50/p90 ms", "Prom p50/p90 ms", "VM p50/p90 ms", "HQ/Prom", "HQ/VM", "HQ vs Prom", "HQ vs VM"]];
  const perQuery: Record<string, unknown>[] = [];
  for (const q of d.queries) {
    const t = (k: Kind): QueryTiming | undefined => by(k)?.queries.find((x) => x.query === q);
    const hq = t("hq");
    const cell = (x: QueryTiming | undefined): string => (x === undefined ? "-" : x.error !== undefined ? "ERROR" : `${fmt(x.p50Ms)} / ${fmt(x.p90Ms)}`);
    const agree = (k: Kind): Agreement | undefined => (hq?.answer !== undefined && t(k)?.answer !== undefined ? compareAnswers(hq.answer, t(k)?.answer ?? []) : undefined);
    const agProm = agree("prom");
    const agVm = agree("vm");
    const agPromVm = t("prom")?.answer !== undefined && t("vm")?.answer !== undefined ? compareAnswers(t("prom")?.answer ?? [], t("vm")?.answer ?? []) : undefined;
    rows.push([q, cell(hq), cell(t("prom")), cell(t("vm")), ratio(hq?.p50Ms, t("prom")?.p50Ms), ratio(hq?.p50Ms, t("vm")?.p50Ms), verdict(q, "prom", agProm), verdict(q, "vm", agVm)]);
    perQuery.push({ query: q, hqVsProm: agProm, hqVsVm: agVm, promVsVm: agPromVm, verdictProm: verdict(q, "prom", agProm), verdictVm: verdict(q, "vm", agVm) });
  }
  const loadRows: string[][] = [["system", "load s", "samples/s", "requests", "series held", "samples held", "count check"]];
  for (const r of results) {
    loadRows.push([r.label, r.load !== undefined ? `${r.load.seconds.toFixed(2)}${r.load.flushSeconds !== undefined ? ` (+${r.load.flushSeconds.toFixed(2)} flush)` : ""}` : "-", r.load !== undefined ? Math.round(r.load.samplesPerSec).toLocaleString("en-US") : "-", String(r.load?.requests ?? "-"), String(r.counts?.series ?? "-"), String(r.counts?.samples ?? "-"), r.countsOk === undefined ? (r.error !== undefined ? "FAILED" : "-") : r.countsOk ? "ok" : "MISMATCH"]);
  }
  console.log(`\n## ${d.name}: ${d.description}; ${d.samples.toLocaleString("en-US")} samples; query_range ${new Date(w.start * 1000).toISOString()} .. ${new Date(w.end * 1000).toISOString()} step ${w.step}s (${w.points} points); ${RUNS} timed runs after ${WARMUP} warm-ups\n`);
  console.log(table(rows));
  console.log("");
  console.log(table(loadRows));
  for (const r of results) if (r.error !== undefined) console.log(`\n${r.label} error: ${r.error}`);
  return {
    name: d.name,
    description: d.description,
    series: d.series.length,
    samples: d.samples,
    firstTimestamp: new Date(d.minTs).toISOString(),
    lastTimestamp: new Date(d.maxTs).toISOString(),
    importBodies: d.importBodies.length,
    remoteWriteBodies: d.rwBodies.length,
    window: w,
    systems: results.map((r) => ({ ...r, queries: r.queries.map(({ answer: _answer, ...rest }) => rest) })),
    agreement: perQuery,
    table: table(rows),
  };
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const env = { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "", loadAverageAtStart: loadavg() };
  if ((env.loadAverageAtStart[0] ?? 0) > 0.5 * env.cpus) log(`WARNING: load average ${(env.loadAverageAtStart[0] ?? 0).toFixed(2)} on ${env.cpus} cores: the machine is busy, figures are noisy`);
  const out: Record<string, unknown>[] = [];
  for (const name of datasetNames) {
    const t0 = performance.now();
    log(`preparing ${name}`);
    const d = name === "real" ? loadReal() : buildSynthetic(posInt("series", args.series), posInt("samples", args.samples, 2), posInt("seed", args.seed, 0));
    log(`${name} prepared in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (args.query !== undefined && args.query.length > 0) d.queries = args.query;
    out.push(await runDataset(d));
  }
  const file = join(outDir, "summary.json");
  writeFileSync(file, JSON.stringify({ startedAt: stamp, environment: { ...env, loadAverageAtEnd: loadavg() }, options: args, datasets: out }, null, 2) + "\n");
  console.log(`\nsummary: ${file}\nlogs: ${outDir}`);
  const failed = out.some((d) => (d["systems"] as SystemResult[]).some((s) => s.error !== undefined));
  return failed ? 1 : 0;
}

runMain(main);
