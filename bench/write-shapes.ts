// Write shapes: HQ-TS's write path beside VictoriaMetrics single node, on the
// same request bodies (built once, in memory, before any database starts), from
// the same client, in one run. Targets, one after another on fresh data dirs:
// VictoriaMetrics single node, a standalone `hqts node`, and the 3-node HQ-TS
// playground (RF=3, requests round-robin over the nodes). Shapes:
//
//   remote-write  Prometheus remote write 1.0: 16,000 series x 40 scrapes, 2,000 series x 1 sample per request, 8 in flight
//   iot           Influx line protocol, 10 lines of one device per request (20 samples), 32 clients for ~20 s;
//                 the cluster also open-loop at half its max request rate
//   bulk          VictoriaMetrics JSON lines, 10,000 samples per request, 4 clients
//   disk          1,000,000 samples (5,000 series x 200, remote-write bodies), flushed; bytes/sample per replica
//   flush         open-loop IoT load at a fixed rate; write latency p99 steady vs while /hq/v1/admin/flush runs
//
// For every shape and target: wall time, samples/s, CPU seconds of every process
// of the target from /proc/<pid>/stat over the measured window, CPU-s per million
// samples, the load generator's own CPU, then the stored sample count checked
// against what was acked (via /api/v1/export on every replica).
//
//   npm run bench -- write [options]           (or: npm run bench -- --shape iot ...)
//   node --import tsx bench/write-shapes.ts [options]
//
// Options: bench/README.md, "Write shapes".

import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cpuDelta, cpuSnapshot, clockTicks, machineCpu, machineDelta, otherProcesses, type MachineCpu } from "./lib/cpu.js";
import type { DiskUsage } from "./lib/dbs.js";
import { snapshotBuild, type HqBuild } from "./lib/hq-build.js";
import { delay } from "./lib/http.js";
import { stopAll } from "./lib/procs.js";
import { bulkPrefix, bulkWorkload, iotWorkload, remoteWriteWorkload, type Workload } from "./lib/shape-data.js";
import { closedLoop, openLoop, Sender, summarize, type ClosedResult, type LatencySummary, type OpenRecord, type OpenResult } from "./lib/shape-load.js";
import { checkStored, type StoredCheck } from "./lib/stored-count.js";
import {
  cleanupPlayground,
  removeDir,
  replicaDisk,
  scanLog,
  startCluster,
  startStandalone,
  startVm,
  TARGET_NAMES,
  versions,
  type FlushOutcome,
  type LogIssues,
  type Target,
  type TargetName,
} from "./lib/targets.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

type ShapeName = "remote-write" | "iot" | "bulk" | "disk" | "flush";
const SHAPES: readonly ShapeName[] = ["remote-write", "iot", "bulk", "disk", "flush"];

// ---- options -------------------------------------------------------------------------

const { values: args } = parseArgs({
  options: {
    shape: { type: "string", default: "all" },
    targets: { type: "string", default: "vm,standalone,cluster" },
    seed: { type: "string", default: "1" },
    "rw-series": { type: "string", default: "16000" },
    "rw-scrapes": { type: "string", default: "40" },
    "rw-per-request": { type: "string", default: "2000" },
    "rw-inflight": { type: "string", default: "8" },
    "iot-devices": { type: "string", default: "2000" },
    "iot-clients": { type: "string", default: "32" },
    "iot-seconds": { type: "string", default: "20" },
    "iot-requests": { type: "string", default: "320000" },
    "iot-open-seconds": { type: "string", default: "15" },
    "iot-open-fraction": { type: "string", default: "0.5" },
    "bulk-samples": { type: "string", default: "2000000" },
    "bulk-clients": { type: "string", default: "4" },
    "disk-series": { type: "string", default: "5000" },
    "disk-samples": { type: "string", default: "200" },
    "flush-rate": { type: "string", default: "100" },
    "flush-warmup": { type: "string", default: "3" },
    "flush-steady": { type: "string", default: "10" },
    "flush-tail": { type: "string", default: "3" },
    "flush-preload": { type: "string", default: "1000000" },
    "idle-seconds": { type: "string", default: "2" },
    "keep-data": { type: "boolean", default: false },
    // Another checkout whose dist/ (built) runs as HQ-TS, for before/after figures; under this repository, so that its
    // packages resolve from this node_modules (e.g. a `git worktree add bench/out/before <commit>`, then tsc there).
    "hq-root": { type: "string" },
  },
  strict: true,
});

function num(name: keyof typeof args, opts: { int?: boolean; min?: number } = {}): number {
  const raw = args[name];
  const n = Number(raw);
  const ok = Number.isFinite(n) && (opts.min !== undefined ? n >= opts.min : n > 0) && (opts.int !== true || Number.isInteger(n));
  if (!ok) throw new Error(`--${name}: expected ${opts.int === true ? "an integer" : "a number"} ${opts.min !== undefined ? `>= ${opts.min}` : "> 0"}, got ${String(raw)}`);
  return n;
}

function list<T extends string>(name: string, raw: string | undefined, all: readonly T[]): T[] {
  const items = (raw ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.includes("all")) return [...all];
  for (const i of items) if (!all.includes(i as T)) throw new Error(`--${name}: unknown value "${i}" (one of ${all.join(", ")}, or all)`);
  if (items.length === 0) throw new Error(`--${name}: empty`);
  return all.filter((x) => items.includes(x));
}

const opt = {
  shapes: list("shape", args.shape, SHAPES),
  targets: list("targets", args.targets, TARGET_NAMES),
  seed: num("seed", { int: true, min: 0 }),
  rwSeries: num("rw-series", { int: true }),
  rwScrapes: num("rw-scrapes", { int: true }),
  rwPerRequest: num("rw-per-request", { int: true }),
  rwInflight: num("rw-inflight", { int: true }),
  iotDevices: num("iot-devices", { int: true }),
  iotClients: num("iot-clients", { int: true }),
  iotSeconds: num("iot-seconds"),
  iotRequests: num("iot-requests", { int: true }),
  iotOpenSeconds: num("iot-open-seconds", { min: 0 }),
  iotOpenFraction: num("iot-open-fraction"),
  bulkSamples: num("bulk-samples", { int: true }),
  bulkClients: num("bulk-clients", { int: true }),
  diskSeries: num("disk-series", { int: true }),
  diskSamples: num("disk-samples", { int: true }),
  flushRate: num("flush-rate"),
  flushWarmup: num("flush-warmup", { min: 0 }),
  flushSteady: num("flush-steady"),
  flushTail: num("flush-tail", { min: 0 }),
  flushPreload: num("flush-preload", { int: true, min: 0 }),
  idleSeconds: num("idle-seconds", { min: 0 }),
  keepData: args["keep-data"] === true,
};
if (opt.flushPreload % 10_000 !== 0) throw new Error("--flush-preload: a multiple of 10,000 (bulk requests of 10,000 samples)");
if (opt.bulkSamples % 10_000 !== 0) throw new Error("--bulk-samples: a multiple of 10,000");

// ---- results -------------------------------------------------------------------------

interface CpuFigures {
  windowS: number;
  /** CPU seconds per process group over the window. */
  byGroup: Record<string, number>;
  /** The database processes proper (VM, the node, the 3 nodes). */
  db: number;
  /** Everything else of the target (etcd members, `cluster up`). */
  support: number;
  total: number;
  /** The harness (load generator) itself, process.cpuUsage(). */
  loadgen: number;
  /** The whole machine over the window (/proc/stat), CPU seconds over all cores. */
  machine: MachineCpu;
  /** Busy CPU of the machine not spent by the target or the load generator: other processes, kernel threads, interrupts. */
  others: number;
  /** The other processes that used the most of it (their own CPU time in the window). */
  othersTop: { pid: number; comm: string; cpuS: number }[];
  /** Part of `others` not in any process running at the end: processes that came and went, interrupts. */
  othersGone: number;
  pids: Record<string, number[]>;
}

interface ReplicaDisk {
  name: string;
  before: DiskUsage;
  after: DiskUsage;
  bytesPerSample: number;
}

interface FlushFigures {
  ratePerSec: number;
  flushStartS: number;
  flushS: number;
  flush: FlushOutcome;
  steady: LatencySummary;
  inFlush: LatencySummary;
  /** In-flush p99 / steady p99. */
  p99Ratio: number;
  open: Omit<OpenResult, "records">;
  preload?: Omit<ClosedResult, "stats"> & { statuses: Record<string, number> };
}

interface RunResult {
  shape: ShapeName;
  target: TargetName;
  label?: string;
  ok: boolean;
  error?: string;
  startupS?: number;
  /** CPU seconds per second of the target's processes at rest, just before the shape's load (--idle-seconds). */
  idleCpuPerS?: number;
  replicas: number;
  requests?: number;
  samples?: number;
  wallS?: number;
  samplesPerSec?: number;
  latency?: LatencySummary;
  statuses?: Record<string, number>;
  retries?: number;
  resets?: number;
  cpu?: CpuFigures;
  cpuPerMSamples?: number;
  cpuPerMSamplesPerReplica?: number;
  timeLimited?: boolean;
  iotOpen?: Omit<OpenResult, "records"> & { cpu: CpuFigures };
  disk?: { flush: FlushOutcome; replicas: ReplicaDisk[] };
  flush?: FlushFigures;
  stored?: StoredCheck[];
  logs?: LogIssues[];
}

// ---- measuring -----------------------------------------------------------------------

async function measured<T>(t: Target, fn: () => Promise<T>): Promise<{ value: T; cpu: CpuFigures }> {
  const groups = t.procGroups();
  const before = cpuSnapshot(groups);
  const m0 = machineCpu();
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const windowS = (performance.now() - t0) / 1000;
  const self = process.cpuUsage(self0);
  const machine = machineDelta(m0, machineCpu());
  const after = cpuSnapshot(groups);
  const byGroup = cpuDelta(before, after);
  const total = Object.values(byGroup).reduce((a, b) => a + b, 0);
  const db = byGroup[t.dbGroup] ?? 0;
  const loadgen = (self.user + self.system) / 1e6;
  const others = Math.max(0, machine.busy - total - loadgen);
  const ours = new Set([process.pid, ...Object.values(after.pids).flat(), ...Object.values(before.pids).flat()]);
  const o = otherProcesses(before, after, ours);
  const othersTop = o.top.filter((p) => p.cpuS >= 0.05);
  const othersGone = Math.max(0, others - o.totalS);
  return { value, cpu: { windowS, byGroup, db, support: total - db, total, loadgen, machine, others, othersTop, othersGone, pids: after.pids } };
}

function withCpu(r: RunResult, samples: number, cpu: CpuFigures): void {
  r.cpu = cpu;
  r.cpuPerMSamples = samples > 0 ? cpu.total / (samples / 1e6) : Number.NaN;
  r.cpuPerMSamplesPerReplica = r.cpuPerMSamples / r.replicas;
}

function fromClosed(r: RunResult, c: ClosedResult): void {
  r.requests = c.requests;
  r.samples = c.samples;
  r.wallS = c.wallS;
  r.samplesPerSec = c.samplesPerSec;
  r.latency = c.latency;
  r.statuses = c.stats.statuses;
  r.retries = c.stats.retries;
  r.resets = c.stats.resets;
  r.timeLimited = c.timeLimited;
}

const log = (s: string): void => console.log(s);
const fmtInt = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : Math.round(x).toLocaleString("en-US"));
const f1 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(1));
const f2 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(2));
const f3 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(3));
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : undefined);
const mb = (b: number): string => `${(b / 1e6).toFixed(2)} MB`;
const stripRecords = (o: OpenResult): Omit<OpenResult, "records"> => {
  const { records: _records, ...rest } = o;
  return rest;
};

/** Verifies each selector's stored count on every replica (cluster: each node's own replica). */
async function verify(t: Target, checks: { selector: string; expected: number; range: { minTs: number; maxTs: number } }[]): Promise<StoredCheck[]> {
  await t.makeSearchable();
  const out: StoredCheck[] = [];
  for (const c of checks) {
    const res = await checkStored(t.replicas, c.selector, c.range, c.expected, t.name === "cluster");
    out.push(res);
    for (const p of res.perReplica)
      log(`  stored ${c.selector} on ${p.name}: ${fmtInt(p.points)} points in ${fmtInt(p.series)} series, expected ${fmtInt(c.expected)}${p.missing > 0 ? `, MISSING ${fmtInt(p.missing)}` : ""}${p.extra > 0 ? `, EXTRA ${fmtInt(p.extra)}` : ""}${p.duplicated > 0 ? `, DUPLICATED ${fmtInt(p.duplicated)}` : ""}`);
  }
  return out;
}

/** More than 10 % of the machine's cores busy outside the target and the load generator over the window. */
const busyElsewhere = (c: CpuFigures): boolean => c.others > 0.1 * cpus().length * c.windowS;

function cpuLine(c: CpuFigures, samples: number): string {
  const parts = Object.entries(c.byGroup).map(([k, v]) => `${k} ${v.toFixed(2)}`);
  const m = c.machine;
  return (
    `CPU-s over ${c.windowS.toFixed(1)} s: ${parts.join(", ")} (total ${c.total.toFixed(2)}, ${f2(c.total / (samples / 1e6))} per M samples); load generator ${c.loadgen.toFixed(2)}; ` +
    `machine: busy ${m.busy.toFixed(1)} (of which others ${c.others.toFixed(1)}), idle ${m.idle.toFixed(1)}, iowait ${m.iowait.toFixed(1)}, steal ${m.steal.toFixed(1)}` +
    (busyElsewhere(c) ? ` -- WARNING: the machine was busy elsewhere, the figures are disturbed (${[...c.othersTop.map((p) => `${p.comm} ${p.pid} ${p.cpuS.toFixed(1)} s`), `processes gone by the end and interrupts ${c.othersGone.toFixed(1)} s`].join(", ")})` : "")
  );
}

// ---- the shapes ----------------------------------------------------------------------

interface Data {
  rw?: Workload;
  iot?: Workload;
  bulk?: Workload;
  disk?: Workload;
}

async function closedShape(t: Target, r: RunResult, w: Workload, concurrency: number, seconds?: number): Promise<ClosedResult> {
  const sender = new Sender(t.urls, concurrency);
  try {
    const { value, cpu } = await measured(t, () => closedLoop(sender, w.requests, { concurrency, ...(seconds !== undefined ? { seconds } : {}) }));
    fromClosed(r, value);
    withCpu(r, value.samples, cpu);
    log(`  ${fmtInt(value.requests)} requests, ${fmtInt(value.samples)} samples in ${value.wallS.toFixed(2)} s: ${fmtInt(value.samplesPerSec)} samples/s (${f1(value.requestsPerSec)} req/s), latency p50 ${f1(value.latency.p50Ms)} p99 ${f1(value.latency.p99Ms)} ms, ${value.stats.retries} retries, ${value.stats.resets} resets ${JSON.stringify(value.stats.statuses)}`);
    log(`  ${cpuLine(cpu, value.samples)}`);
    return value;
  } finally {
    sender.close();
  }
}

async function shapeRemoteWrite(t: Target, r: RunResult, w: Workload): Promise<void> {
  const c = await closedShape(t, r, w, opt.rwInflight);
  r.stored = await verify(t, [{ selector: w.selector, expected: c.samples, range: w }]);
}

async function shapeBulk(t: Target, r: RunResult, w: Workload): Promise<void> {
  const c = await closedShape(t, r, w, opt.bulkClients);
  r.stored = await verify(t, [{ selector: w.selector, expected: c.samples, range: w }]);
}

async function shapeIot(t: Target, r: RunResult, w: Workload): Promise<void> {
  const c = await closedShape(t, r, w, opt.iotClients, opt.iotSeconds);
  if (!c.timeLimited) log(`  (the pool of ${fmtInt(w.requests.length)} requests ran out before ${opt.iotSeconds} s: raise --iot-requests)`);
  let acked = c.samples;
  if (t.name === "cluster" && opt.iotOpenSeconds > 0) {
    const rate = c.requestsPerSec * opt.iotOpenFraction;
    log(`  open loop at ${(opt.iotOpenFraction * 100).toFixed(0)} % of the max: ${f1(rate)} req/s (${fmtInt(rate * 20)} samples/s) for ${opt.iotOpenSeconds} s`);
    const sender = new Sender(t.urls, 512);
    try {
      const { value, cpu } = await measured(t, () => openLoop(sender, w.requests, { ratePerSec: rate, first: c.nextIndex, keepGoing: (ms) => ms < opt.iotOpenSeconds * 1000 }));
      acked += value.samples;
      r.iotOpen = { ...stripRecords(value), cpu };
      log(`  open: ${fmtInt(value.requests)} requests, ${fmtInt(value.samplesPerSec)} samples/s, ack latency from the scheduled send p50 ${f1(value.latency.p50Ms)} p99 ${f1(value.latency.p99Ms)} max ${f1(value.latency.maxMs)} ms (service p99 ${f1(value.service.p99Ms)} ms), ${value.stats.retries} retries, ${value.stats.resets} resets, sender lag max ${f1(value.maxSendLagMs)} ms`);
      log(`  open: ${cpuLine(cpu, value.samples)}`);
    } finally {
      sender.close();
    }
  }
  r.stored = await verify(t, [{ selector: w.selector, expected: acked, range: w }]);
}

async function shapeDisk(t: Target, r: RunResult, w: Workload): Promise<void> {
  const c = await closedShape(t, r, w, opt.rwInflight);
  const before = t.replicas.map((x) => replicaDisk(x));
  log(`  flushing (${t.kind === "vm" ? "force_flush + force_merge" : "POST /hq/v1/admin/flush on every node"}), then waiting for the data dirs to settle`);
  const flush = await t.flushForDisk(w);
  const replicas: ReplicaDisk[] = t.replicas.map((x, i) => {
    const after = replicaDisk(x);
    return { name: x.name, before: before[i]!, after, bytesPerSample: after.bytes / c.samples };
  });
  r.disk = { flush, replicas };
  for (const d of replicas) log(`  ${d.name}: ${mb(d.after.bytes)} = ${f3(d.bytesPerSample)} B/sample after the flush (${mb(d.before.bytes)} before); ${breakdown(d.after, c.samples)}`);
  r.stored = await verify(t, [{ selector: w.selector, expected: c.samples, range: w }]);
}

function breakdown(d: DiskUsage, samples: number): string {
  return Object.entries(d.byTopLevel)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${f3(v / samples)}`)
    .join(", ");
}

async function shapeFlush(t: Target, r: RunResult, iot: Workload, bulk: Workload): Promise<void> {
  const checks: { selector: string; expected: number; range: { minTs: number; maxTs: number } }[] = [];
  let preload: ClosedResult | undefined;
  if (opt.flushPreload > 0) {
    const n = opt.flushPreload / 10_000;
    log(`  preload (not measured): ${fmtInt(opt.flushPreload)} samples of the bulk shape, ${opt.bulkClients} clients, so the flush has a head to write`);
    const s = new Sender(t.urls, opt.bulkClients);
    try {
      preload = await closedLoop(s, bulk.requests, { concurrency: opt.bulkClients, end: n });
    } finally {
      s.close();
    }
    checks.push({ selector: bulk.selector, expected: preload.samples, range: bulk });
  }
  const flushAtMs = (opt.flushWarmup + opt.flushSteady) * 1000;
  const hardStopMs = flushAtMs + 300_000;
  // Set from the open loop's ticks and the flush's completion.
  const fl: { base: number; startMs: number | null; endMs: number | null; promise: Promise<FlushOutcome> | null; error: Error | null } = { base: 0, startMs: null, endMs: null, promise: null, error: null };
  log(`  open loop at ${opt.flushRate} req/s (${fmtInt(opt.flushRate * 20)} samples/s): warm-up ${opt.flushWarmup} s, steady window ${opt.flushSteady} s, then the flush, then ${opt.flushTail} s`);
  const sender = new Sender(t.urls, 512);
  let open: OpenResult;
  let cpu: CpuFigures;
  try {
    ({ value: open, cpu } = await measured(t, () =>
      openLoop(sender, iot.requests, {
        ratePerSec: opt.flushRate,
        first: 0,
        onTick: (ms) => {
          if (fl.base === 0) fl.base = performance.now() - ms;
          if (fl.promise === null && ms >= flushAtMs) {
            fl.startMs = ms;
            fl.promise = t.triggerFlush().then(
              (f) => {
                fl.endMs = performance.now() - fl.base;
                return f;
              },
              (e: unknown) => {
                fl.endMs = performance.now() - fl.base;
                fl.error = e as Error;
                return { seconds: Number.NaN, details: {} };
              },
            );
          }
        },
        keepGoing: (ms) => (fl.endMs === null ? ms < hardStopMs : ms < fl.endMs + opt.flushTail * 1000),
      }),
    ));
  } finally {
    sender.close();
  }
  if (fl.promise === null) throw new Error("the flush was never triggered (the open loop ended before its time; raise --iot-requests)");
  const flush = await fl.promise;
  if (fl.error !== null) throw fl.error;
  const fs = fl.startMs ?? 0;
  const fe = fl.endMs ?? fs;
  const steadyFrom = opt.flushWarmup * 1000;
  const recs = open.records;
  const start = (x: OpenRecord): number => Math.min(x.dueMs, x.sentMs);
  const steady = recs.filter((x) => x.dueMs >= steadyFrom && x.dueMs < flushAtMs && x.ackMs < fs).map((x) => x.latencyMs);
  const inFlush = recs.filter((x) => start(x) < fe && x.ackMs > fs).map((x) => x.latencyMs);
  const st = summarize(steady);
  const inf = summarize(inFlush);
  r.flush = { ratePerSec: opt.flushRate, flushStartS: fs / 1000, flushS: (fe - fs) / 1000, flush, steady: st, inFlush: inf, p99Ratio: inf.p99Ms / st.p99Ms, open: stripRecords(open) };
  if (preload !== undefined) {
    const { stats, ...p } = preload;
    r.flush.preload = { ...p, statuses: stats.statuses };
  }
  r.requests = open.requests;
  r.samples = open.samples;
  r.wallS = open.wallS;
  r.samplesPerSec = open.samplesPerSec;
  r.latency = open.latency;
  r.statuses = open.stats.statuses;
  r.retries = open.stats.retries;
  r.resets = open.stats.resets;
  withCpu(r, open.samples, cpu);
  log(`  flush ran ${f2((fe - fs) / 1000)} s from t=${f1(fs / 1000)} s; steady p50 ${f1(st.p50Ms)} p99 ${f1(st.p99Ms)} ms (${st.n} requests); in flight during the flush p50 ${f1(inf.p50Ms)} p99 ${f1(inf.p99Ms)} max ${f1(inf.maxMs)} ms (${inf.n} requests): ratio ${f2(r.flush.p99Ratio)}; sender lag max ${f1(open.maxSendLagMs)} ms, ${open.stats.retries} retries, ${open.stats.resets} resets`);
  log(`  ${cpuLine(cpu, open.samples)}`);
  checks.push({ selector: iot.selector, expected: open.samples, range: iot });
  r.stored = await verify(t, checks);
}

// ---- one shape on one target ---------------------------------------------------------

async function runOne(shape: ShapeName, name: TargetName, data: Data, outDir: string, build: HqBuild): Promise<RunResult> {
  const dir = join(outDir, `${shape}-${name}`);
  mkdirSync(dir, { recursive: true });
  const r: RunResult = { shape, target: name, ok: false, replicas: name === "cluster" ? 3 : 1 };
  log(`\n== ${shape} / ${name}`);
  let t: Target | null = null;
  const dataDir = join(dir, "data");
  current = null;
  try {
    const t0 = performance.now();
    t =
      name === "vm"
        ? await startVm(dataDir, join(dir, "victoria-metrics.log"))
        : name === "standalone"
          ? await startStandalone(repoRoot, build, dataDir, join(dir, "hqts.log"))
          : await startCluster(build, join(dir, "logs"));
    current = t;
    r.label = t.label;
    r.startupS = (performance.now() - t0) / 1000;
    log(`  ${t.label}, ready in ${f1(r.startupS)} s`);
    if (opt.idleSeconds > 0) {
      // A measuring window (the target's CPU at rest), not a wait for anything.
      const { cpu } = await measured(t, () => delay(opt.idleSeconds * 1000));
      r.idleCpuPerS = cpu.total / cpu.windowS;
      log(`  at rest: ${f2(r.idleCpuPerS)} CPU-s/s over ${f1(cpu.windowS)} s (${Object.entries(cpu.byGroup).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")})`);
    }
    switch (shape) {
      case "remote-write":
        await shapeRemoteWrite(t, r, data.rw!);
        break;
      case "iot":
        await shapeIot(t, r, data.iot!);
        break;
      case "bulk":
        await shapeBulk(t, r, data.bulk!);
        break;
      case "disk":
        await shapeDisk(t, r, data.disk!);
        break;
      case "flush":
        await shapeFlush(t, r, data.iot!, data.bulk!);
        break;
    }
    r.ok = (r.stored ?? []).every((s) => s.ok);
    if (!r.ok) r.error = "stored sample count differs from what was acked";
  } catch (e) {
    r.ok = false;
    r.error = (e as Error).message;
    log(`  FAILED: ${(e as Error).stack ?? String(e)}`);
  } finally {
    if (t !== null) {
      r.logs = t.logFiles().map((f) => scanLog(f.name, f.path));
      // etcd's warnings at start (simple token, peer streams) are routine: only its errors are shown.
      for (const l of r.logs) if (l.errors > 0 || (l.warnings > 0 && !l.file.startsWith("etcd"))) log(`  log ${l.file}: ${l.errors} error and ${l.warnings} warning lines; ${l.samples.map((s) => `[${s.level} x${s.count}] ${s.msg}`).join(" | ")}`);
      await t.stop();
      current = null;
    }
    if (!opt.keepData) await removeDir(dataDir);
  }
  return r;
}

// ---- tables --------------------------------------------------------------------------

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ")).join("\n");
}

const storedCell = (r: RunResult): string => (r.stored === undefined ? "-" : r.stored.every((s) => s.ok) ? "ok" : "MISMATCH");

function printShape(shape: ShapeName, results: RunResult[], data: Data): void {
  const vm = results.find((r) => r.target === "vm" && r.ok);
  const w = shape === "remote-write" ? data.rw : shape === "iot" ? data.iot : shape === "bulk" ? data.bulk : shape === "disk" ? data.disk : data.iot;
  log(`\n#### ${shape}: ${w?.description ?? ""}`);
  const rows: string[][] = [
    ["target", "requests", "samples", "wall s", "samples/s", "p50 ms", "p99 ms", "retries", "resets", "idle CPU/s", "CPU-s db", "CPU-s etcd+up", "CPU-s total", "CPU-s/M", "CPU-s/M/replica", "loadgen CPU-s", "others CPU-s", "thr HQ/VM", "CPU/M HQ/VM", "CPU/M/repl HQ/VM", "stored"],
  ];
  for (const r of results) {
    if (!r.ok && r.cpu === undefined) {
      rows.push([r.target, "FAILED", ...Array.from({ length: 19 }, () => "-")]);
      continue;
    }
    const hq = r.target !== "vm";
    rows.push([
      r.target,
      fmtInt(r.requests),
      fmtInt(r.samples),
      f2(r.wallS),
      fmtInt(r.samplesPerSec),
      f1(r.latency?.p50Ms),
      f1(r.latency?.p99Ms),
      String(r.retries ?? "-"),
      String(r.resets ?? "-"),
      f2(r.idleCpuPerS),
      f2(r.cpu?.db),
      r.target === "cluster" ? f2(r.cpu?.support) : "-",
      f2(r.cpu?.total),
      f2(r.cpuPerMSamples),
      f2(r.cpuPerMSamplesPerReplica),
      f2(r.cpu?.loadgen),
      `${f2(r.cpu?.others)}${r.cpu !== undefined && busyElsewhere(r.cpu) ? "!" : ""}`,
      hq ? f2(ratio(r.samplesPerSec, vm?.samplesPerSec)) : "-",
      hq ? f2(ratio(r.cpuPerMSamples, vm?.cpuPerMSamples)) : "-",
      hq ? f2(ratio(r.cpuPerMSamplesPerReplica, vm?.cpuPerMSamplesPerReplica)) : "-",
      storedCell(r),
    ]);
  }
  log(table(rows));
  log(
    `(latency: ${shape === "flush" ? "open loop, from each request's scheduled send to its ack" : "closed loop, from each request's first send to its ack"}; retries: answers 429/503 re-sent after Retry-After; resets: reused keep-alive sockets reset before an answer, re-sent; ` +
      "idle CPU/s: CPU-s per second of the target at rest before the load; CPU: /proc/<pid>/stat utime+stime (+ reaped children) of every process of the target over the measured window, " +
      "db = the database processes, etcd+up = the cluster's etcd members and `cluster up`; CPU-s/M: total per million samples acked; /replica: divided by the replicas holding the data (cluster: 3); " +
      "others: machine-wide busy CPU (/proc/stat) outside the target and the load generator, '!' when above 10 % of the cores: something else ran, the figures are disturbed; " +
      "thr HQ/VM: samples/s ratio; CPU/M HQ/VM: CPU per sample ratio)",
  );

  if (shape === "iot") {
    for (const r of results)
      if (r.iotOpen !== undefined)
        log(
          `${r.target} open loop at ${f1(r.iotOpen.ratePerSec)} req/s (${(opt.iotOpenFraction * 100).toFixed(0)} % of its max, ${fmtInt(r.iotOpen.samplesPerSec)} samples/s) for ${opt.iotOpenSeconds} s: ack latency from the scheduled send p50 ${f1(r.iotOpen.latency.p50Ms)} ms, p99 ${f1(r.iotOpen.latency.p99Ms)} ms, max ${f1(r.iotOpen.latency.maxMs)} ms (${r.iotOpen.requests} requests, ${r.iotOpen.stats.retries} retries; CPU-s total ${f2(r.iotOpen.cpu.total)})`,
        );
  }
  if (shape === "disk") {
    const d: string[][] = [["replica", "data dir bytes", "B/sample", "HQ/VM", "before flush B/sample", "flush+settle s", "by top-level dir (B/sample)"]];
    const vmBps = vm?.disk?.replicas[0]?.bytesPerSample;
    for (const r of results)
      for (const x of r.disk?.replicas ?? [])
        d.push([
          r.target === "cluster" ? `cluster ${x.name}` : r.target,
          fmtInt(x.after.bytes),
          f3(x.bytesPerSample),
          r.target === "vm" ? "-" : f2(ratio(x.bytesPerSample, vmBps)),
          f3(x.before.bytes / (r.samples ?? Number.NaN)),
          f1(r.disk?.flush.seconds),
          breakdown(x.after, r.samples ?? Number.NaN),
        ]);
    log(`\n${table(d)}`);
    log("(whole data dir per replica, apparent file sizes; cluster: each node's own dir, etcd's excluded)");
  }
  if (shape === "flush") {
    const f: string[][] = [["target", "rate req/s", "flush trigger", "flush s", "steady n", "steady p50", "steady p99", "in-flush n", "in-flush p50", "in-flush p99", "in-flush max", "p99 flush/steady", "CPU-s total"]];
    for (const r of results)
      if (r.flush !== undefined)
        f.push([
          r.target,
          f1(r.flush.ratePerSec),
          r.target === "vm" ? "/internal/force_flush" : r.target === "cluster" ? "admin/flush x3" : "admin/flush",
          f2(r.flush.flushS),
          String(r.flush.steady.n),
          f1(r.flush.steady.p50Ms),
          f1(r.flush.steady.p99Ms),
          String(r.flush.inFlush.n),
          f1(r.flush.inFlush.p50Ms),
          f1(r.flush.inFlush.p99Ms),
          f1(r.flush.inFlush.maxMs),
          f2(r.flush.p99Ratio),
          f2(r.cpu?.total),
        ]);
    log(`\n${table(f)}`);
    log(`(open loop; latency in ms from each request's scheduled send to its ack; steady: sent ${opt.flushWarmup}-${opt.flushWarmup + opt.flushSteady} s, acked before the flush; in-flush: in flight at any time while the flush ran; preload ${fmtInt(opt.flushPreload)} samples before)`);
  }
  for (const r of results) if (!r.ok) log(`${r.target}: ${r.error ?? "failed"}`);
}

// ---- main ----------------------------------------------------------------------------

/** The target running now, for the cleanup at exit. */
let current: Target | null = null;
let stopping = false;
async function stopEverything(): Promise<void> {
  await stopAll();
  await cleanupPlayground();
}
function stopAndExit(why: string, code: number): void {
  if (stopping) return;
  stopping = true;
  console.error(`\n${why}: stopping every process this run started...`);
  void stopEverything().finally(() => process.exit(code));
}
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => stopAndExit(sig, sig === "SIGINT" ? 130 : 143));
process.on("uncaughtException", (e) => {
  console.error(e.stack ?? String(e));
  stopAndExit("uncaught exception", 2);
});
process.on("unhandledRejection", (e) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  stopAndExit("unhandled rejection", 2);
});
process.on("exit", () => current?.killNow());

async function main(): Promise<number> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const outDir = join(repoRoot, "bench", "out", `write-shapes-${stamp}`);
  mkdirSync(outDir, { recursive: true });
  const load0 = loadavg();
  const hqRoot = args["hq-root"] !== undefined ? resolve(args["hq-root"]) : repoRoot;
  const v = versions(hqRoot);
  log(`write-shapes: shapes ${opt.shapes.join(", ")}; targets ${opt.targets.join(", ")} (one at a time, each on a fresh data dir)`);
  log(`machine: ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, load average ${load0.map((x) => x.toFixed(2)).join(" ")}; CLK_TCK ${clockTicks()}; the load generator runs in this process on the same machine`);
  // Every HQ-TS process of this run runs this copy of dist/, whatever happens to dist/ meanwhile.
  const build = snapshotBuild(hqRoot, join(outDir, "hqts-build"));
  log(`VictoriaMetrics ${v.vm}; HQ-TS ${v.hq}, dist/ built ${build.builtAt}, copied to ${join(outDir, "hqts-build")} for this run`);
  if (load0[0]! > cpus().length / 2) log(`WARNING: load average ${load0[0]!.toFixed(2)} at the start (> half the cores): the figures will be noisy`);

  // All bodies first, before any database starts. Data starts a day ago, on the hour.
  const startMs = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 86_400_000;
  const need = new Set(opt.shapes);
  const data: Data = {};
  if (need.has("remote-write")) data.rw = remoteWriteWorkload("remote-write", { series: opt.rwSeries, scrapes: opt.rwScrapes, perRequest: opt.rwPerRequest, intervalMs: 15_000, startMs, seed: opt.seed });
  if (need.has("iot") || need.has("flush")) data.iot = iotWorkload({ devices: opt.iotDevices, requests: opt.iotRequests, startMs, seed: opt.seed + 1 });
  if (need.has("bulk") || need.has("flush")) data.bulk = bulkWorkload({ samples: Math.max(opt.bulkSamples, opt.flushPreload), series: 10_000, startMs, seed: opt.seed + 2 });
  if (need.has("disk")) data.disk = remoteWriteWorkload("disk", { series: opt.diskSeries, scrapes: opt.diskSamples, perRequest: Math.min(opt.diskSeries, 2500), intervalMs: 15_000, startMs, seed: opt.seed + 3 });
  for (const w of Object.values(data) as Workload[])
    log(`data ${w.name}: ${fmtInt(w.requests.length)} requests, ${fmtInt(w.samples)} samples, ${fmtInt(w.series)} series, ${mb(w.bodyBytes)} of bodies (${f1(w.bodyBytes / w.samples)} B/sample), built in ${f1(w.buildSeconds)} s; ${w.description}`);
  // The bulk shape sends only --bulk-samples of the bulk bodies (the rest, if any, is the flush preload's).
  const bulkForShape = data.bulk !== undefined ? bulkPrefix(data.bulk, opt.bulkSamples) : undefined;

  const all: RunResult[] = [];
  for (const shape of opt.shapes) {
    const results: RunResult[] = [];
    for (const target of opt.targets) {
      const shapeData = shape === "bulk" && bulkForShape !== undefined ? { ...data, bulk: bulkForShape } : data;
      results.push(await runOne(shape, target, shapeData, outDir, build));
    }
    printShape(shape, results, shape === "bulk" && bulkForShape !== undefined ? { ...data, bulk: bulkForShape } : data);
    all.push(...results);
  }

  const load1 = loadavg();
  const summary = {
    bench: "write-shapes",
    startedAt: stamp,
    options: opt,
    machine: { cores: cpus().length, memBytes: totalmem(), loadavgStart: load0, loadavgEnd: load1, clkTck: clockTicks() },
    versions: { ...v, hqBuiltAt: build.builtAt },
    data: Object.fromEntries(
      Object.entries(data).map(([k, w]) => [k, { name: w.name, description: w.description, requests: w.requests.length, samples: w.samples, series: w.series, bodyBytes: w.bodyBytes, minTs: w.minTs, maxTs: w.maxTs, selector: w.selector, buildSeconds: w.buildSeconds }]),
    ),
    results: all,
  };
  if (!opt.keepData) await removeDir(join(outDir, "hqts-build"));
  const jsonPath = join(repoRoot, "bench", "out", `write-shapes-${stamp}.json`);
  writeFileSync(jsonPath, JSON.stringify(summary, null, 2) + "\n");
  log(`\nresults: ${jsonPath}; logs: ${outDir}`);
  const failed = all.filter((r) => !r.ok);
  if (failed.length > 0) log(`FAILED: ${failed.map((r) => `${r.shape}/${r.target}`).join(", ")}`);
  return failed.length > 0 ? 1 : 0;
}

let code = 2;
try {
  code = await main();
} catch (e) {
  console.error((e as Error).stack ?? String(e));
  code = 2;
} finally {
  await stopEverything();
}
process.exit(code);
