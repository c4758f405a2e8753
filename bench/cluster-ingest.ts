// Cluster vs standalone ingest, side by side in one run, on the same generated
// data: a standalone `hqts node`, and the 3-node replicated playground
// (`hqts cluster up --nodes 3`) written through all 3 nodes round-robin and
// through one node. For each target:
//   (a) maximum ingest throughput: K closed-loop HTTP writers POST batches of B
//       samples to /api/v1/import (JSON lines, one Idempotency-Key per request)
//       for --seconds after a --warmup;
//   (b) an open-loop run at --open-fraction (50 %) of that maximum: requests
//       are sent on a fixed schedule whatever the answers do, and each ack
//       latency is measured from the request's *scheduled* send time, so a slow
//       answer cannot hide the requests queued behind it (no coordinated
//       omission).
// Then every point stored on every node is counted via /api/v1/export and
// compared with the acked samples (lost / extra / duplicated).
//
//   npx tsc -p . && node --import tsx bench/cluster-ingest.ts [options]
//
//   --batch-samples B   samples per request (default 1000)
//   --writers K         concurrent writers in the max-throughput phase (default 8)
//   --seconds S         max-throughput measuring window (default 15)
//   --warmup S          closed-loop warm-up before it, not counted (default 3)
//   --open-seconds S    open-loop run (default 20)
//   --open-fraction F   open-loop rate as a fraction of the measured max (default 0.5)
//   --series N          distinct series (default 1000)
//   --only LIST         comma list of standalone,cluster-rr,cluster-one,cluster-rr-noprov
//                       (default the first three; cluster-rr-noprov = cluster-rr with --provenance off:
//                       no batch archive, signed receipts or Merkle log, for their cost)
//
// Each cluster mode gets a fresh playground (so all targets start on an empty
// database and receive byte-identical request bodies in the same order), and
// the playground helper's cleanup stops its processes by pid; the standalone
// node is started and stopped by pid (bench/lib/procs.ts).

import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { HttpClient, delay, excerpt, waitReady } from "./lib/http.js";
import { countStored as countStoredExport, ExportStatusError, type StoredCount } from "./lib/stored-count.js";
import { freePort, startProcess, stopAll as stopAllProcs, type ManagedProcess } from "./lib/procs.js";
import { startPlayground, waitReplicationReady, type Playground } from "../test/helpers/playground.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CLI_MAIN = join(repoRoot, "dist", "src", "cli", "main.js");

const { values: args } = parseArgs({
  options: {
    "batch-samples": { type: "string", default: "1000" },
    writers: { type: "string", default: "8" },
    seconds: { type: "string", default: "15" },
    warmup: { type: "string", default: "3" },
    "open-seconds": { type: "string", default: "20" },
    "open-fraction": { type: "string", default: "0.5" },
    series: { type: "string", default: "1000" },
    only: { type: "string", default: "standalone,cluster-rr,cluster-one" },
  },
});

const num = (name: string, v: string | undefined, int: boolean): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (int && !Number.isInteger(n))) throw new Error(`--${name}: expected a positive ${int ? "integer" : "number"}, got ${String(v)}`);
  return n;
};
const B = num("batch-samples", args["batch-samples"], true);
const K = num("writers", args.writers, true);
const SECONDS = num("seconds", args.seconds, false);
const WARMUP = num("warmup", args.warmup, false);
const OPEN_SECONDS = num("open-seconds", args["open-seconds"], false);
const OPEN_FRACTION = num("open-fraction", args["open-fraction"], false);
const S = num("series", args.series, true);
if (B > 1_000_000) throw new Error("--batch-samples: HQ-TS refuses more than 1,000,000 samples per request");
type TargetName = "standalone" | "cluster-rr" | "cluster-one" | "cluster-rr-noprov";
const TARGETS: TargetName[] = ["standalone", "cluster-rr", "cluster-one", "cluster-rr-noprov"];
const only = (args.only ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
for (const o of only) if (!TARGETS.includes(o as TargetName)) throw new Error(`--only: unknown target ${o} (${TARGETS.join(", ")})`);

const REQUEST_TIMEOUT_MS = 30_000;
const START_MS = Date.UTC(2026, 10, 24, 0, 0, 0);
const SLOT_MS = 1000;
const JOB = "clusterbench";
const RUN_TAG = `clb${Date.now().toString(36)}`;

// ---- data ----------------------------------------------------------------------
// Request k holds the global samples g = k*B .. k*B+B-1; sample g belongs to
// series g % S at time slot floor(g / S). So every request is a slice of
// successive "scrapes" of all S series, timestamps only increase, and no two
// requests hold the same (series, timestamp). Request k's bytes depend on k only.

const seriesPrefix: string[] = [];
for (let s = 0; s < S; s++) {
  const metric = { __name__: `clb_metric_${s % 10}`, job: JOB, instance: `host-${String(Math.floor(s / 10)).padStart(4, "0")}:9100`, series: String(s) };
  seriesPrefix.push(`{"metric":${JSON.stringify(metric)},"values":[`);
}

function buildBody(k: number): Buffer {
  const first = k * B;
  const end = first + B;
  const perSeries = new Map<number, { v: number[]; t: number[] }>();
  const order: number[] = [];
  for (let g = first; g < end; g++) {
    const s = g % S;
    const slot = Math.floor(g / S);
    let e = perSeries.get(s);
    if (e === undefined) {
      e = { v: [], t: [] };
      perSeries.set(s, e);
      order.push(s);
    }
    // A bounded walk, two decimals: (slot*7 + s*13) mod 10000 / 100.
    e.v.push(((slot * 7 + s * 13) % 10_000) / 100);
    e.t.push(START_MS + slot * SLOT_MS);
  }
  const lines: string[] = [];
  for (const s of order) {
    const e = perSeries.get(s)!;
    lines.push(`${seriesPrefix[s]}${e.v.join(",")}],"timestamps":[${e.t.join(",")}]}`);
  }
  return Buffer.from(lines.join("\n") + "\n", "utf8");
}

// ---- the write client --------------------------------------------------------------

interface Sent {
  k: number;
  url: number; // index into the target's clients
  body: Buffer;
  key: string;
}

interface Outcome {
  ok: boolean;
  status: number | "error";
  /** Samples the receipt says were stored (0 unless ok). */
  samples: number;
  detail?: string;
  retryAfterS?: number;
}

const retryable = (o: Outcome): boolean => o.status === "error" || o.status === 429 || o.status === 503;

async function post(client: HttpClient, body: Buffer, key: string): Promise<Outcome> {
  try {
    const r = await client.send("POST", "/api/v1/import", body, { "Idempotency-Key": key }, REQUEST_TIMEOUT_MS);
    if (r.status !== 200) {
      const ra = Number(r.headers["retry-after"]);
      return { ok: false, status: r.status, samples: 0, detail: excerpt(r.body, 200), retryAfterS: Number.isFinite(ra) && ra > 0 ? ra : undefined };
    }
    let samples = B;
    try {
      const rc = JSON.parse(r.body.toString("utf8")) as { samples?: unknown; duplicate?: unknown };
      if (typeof rc.samples === "number") samples = rc.samples;
      if (rc.duplicate === true) return { ok: true, status: 200, samples, detail: "duplicate" };
    } catch {
      // keep B
    }
    return { ok: true, status: 200, samples };
  } catch (e) {
    return { ok: false, status: "error", samples: 0, detail: (e as Error).message };
  }
}

const pct = (sorted: readonly number[], p: number): number => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!);

interface Target {
  name: TargetName;
  label: string;
  clients: HttpClient[];
  urls: string[];
  /** Nodes whose stored points are counted at the end (every node of the cluster). */
  checkUrls: string[];
  /** Requests that were not acked, for the final resolution. */
  failed: Sent[];
  ackedSamples: number;
  ackedRequests: number;
  duplicates: number;
  errorsLogged: number;
  nextK: number;
  rr: number;
}

function pickClient(t: Target): number {
  const i = t.rr % t.clients.length;
  t.rr++;
  return i;
}

const MAX_ATTEMPTS = 20;

interface Delivery {
  acked: boolean;
  samples: number;
  /** Failed attempts (429, 503, dropped connection, ...) before the ack or the give-up. */
  errors: number;
}

/**
 * Sends one request until it is acked: a retryable answer (429, 503, dropped
 * connection) is retried with the same Idempotency-Key after Retry-After
 * (default 1 s, at most 2 s), through the next node in the rotation, as a
 * client would; every failed attempt counts as an error. A request still not
 * acked after MAX_ATTEMPTS, or refused for good, is kept for resolveFailed().
 */
async function sendUntilAcked(t: Target, sent: Sent, statuses: Record<string, number>): Promise<Delivery> {
  let errors = 0;
  let url = sent.url;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const o = await post(t.clients[url]!, sent.body, sent.key);
    statuses[String(o.status)] = (statuses[String(o.status)] ?? 0) + 1;
    if (o.ok) {
      t.ackedSamples += o.samples;
      t.ackedRequests++;
      if (o.detail === "duplicate") t.duplicates++;
      return { acked: true, samples: o.samples, errors };
    }
    errors++;
    t.errorsLogged++;
    if (t.errorsLogged <= 3) console.log(`  ${t.name}: request ${sent.k} attempt ${attempt + 1} -> ${String(o.status)} ${o.detail ?? ""}`);
    if (!retryable(o)) break;
    await delay(Math.min(o.retryAfterS ?? 1, 2) * 1000);
    url = pickClient(t);
  }
  t.failed.push(sent);
  return { acked: false, samples: 0, errors };
}

interface ClosedResult {
  seconds: number;
  requests: number;
  /** Requests that needed more than one attempt. */
  retriedRequests: number;
  ackedSamples: number;
  samplesPerSec: number;
  /** Failed attempts (each retried with the same key). */
  errors: number;
  statuses: Record<string, number>;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

/** K writers, each sends its next request as soon as the previous one is answered, until durationS has passed. */
async function closedLoop(t: Target, durationS: number): Promise<ClosedResult> {
  const statuses: Record<string, number> = {};
  const lat: number[] = [];
  let acked = 0;
  let errors = 0;
  let requests = 0;
  let retried = 0;
  const t0 = performance.now();
  const stopAt = t0 + durationS * 1000;
  let lastEnd = t0;
  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const k = t.nextK++;
      const sent: Sent = { k, url: pickClient(t), body: buildBody(k), key: `${RUN_TAG}-${t.name}-${k}` };
      const s = performance.now();
      const d = await sendUntilAcked(t, sent, statuses);
      const e = performance.now();
      lastEnd = Math.max(lastEnd, e);
      if (d.acked) lat.push(e - s);
      requests++;
      acked += d.samples;
      errors += d.errors;
      if (d.errors > 0) retried++;
    }
  };
  await Promise.all(Array.from({ length: K }, () => worker()));
  const seconds = (lastEnd - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { seconds, requests, retriedRequests: retried, ackedSamples: acked, samplesPerSec: acked / seconds, errors, statuses, latencyP50Ms: pct(lat, 50), latencyP99Ms: pct(lat, 99) };
}

interface OpenResult {
  targetSamplesPerSec: number;
  targetRequestsPerSec: number;
  seconds: number;
  requests: number;
  ackedSamples: number;
  achievedSamplesPerSec: number;
  /** Failed attempts (each retried with the same key after Retry-After). */
  errors: number;
  retriedRequests: number;
  /** Requests given up on within the run (re-sent by resolveFailed afterwards). */
  unackedRequests: number;
  statuses: Record<string, number>;
  /** Ack latency from the scheduled send time to the final ack (retries included), ms. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** From the actual send (service time), for comparison. */
  serviceP50Ms: number;
  serviceP99Ms: number;
  /** Worst lag of the client behind its own schedule, ms (large = the client was the bottleneck). */
  maxSendLagMs: number;
}

/** Fixed schedule: request i is due at t0 + i/rate, sent then whatever is still outstanding. */
async function openLoop(t: Target, samplesPerSec: number, durationS: number): Promise<OpenResult> {
  const rate = samplesPerSec / B;
  const n = Math.max(1, Math.floor(rate * durationS));
  // Bodies built beforehand, so building them costs nothing on the schedule.
  const plan: Sent[] = [];
  for (let i = 0; i < n; i++) {
    const k = t.nextK++;
    plan.push({ k, url: pickClient(t), body: buildBody(k), key: `${RUN_TAG}-${t.name}-${k}` });
  }
  const statuses: Record<string, number> = {};
  const lat: number[] = [];
  const service: number[] = [];
  let acked = 0;
  let errors = 0;
  let retried = 0;
  let unacked = 0;
  let maxLag = 0;
  const inflight: Promise<void>[] = [];
  const t0 = performance.now() + 20;
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await delay(wait);
    const sent = plan[i]!;
    const s = performance.now();
    maxLag = Math.max(maxLag, s - due);
    // A timer may fire a fraction of a ms early: then count from the actual send.
    const from = Math.min(due, s);
    inflight.push(
      sendUntilAcked(t, sent, statuses).then((d) => {
        const e = performance.now();
        if (d.acked) {
          lat.push(e - from);
          service.push(e - s);
        } else unacked++;
        acked += d.samples;
        errors += d.errors;
        if (d.errors > 0) retried++;
      }),
    );
  }
  await Promise.all(inflight);
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  service.sort((a, b) => a - b);
  return {
    targetSamplesPerSec: samplesPerSec,
    targetRequestsPerSec: rate,
    seconds,
    requests: n,
    ackedSamples: acked,
    achievedSamplesPerSec: acked / seconds,
    errors,
    retriedRequests: retried,
    unackedRequests: unacked,
    statuses,
    p50Ms: pct(lat, 50),
    p90Ms: pct(lat, 90),
    p99Ms: pct(lat, 99),
    maxMs: lat[lat.length - 1] ?? Number.NaN,
    serviceP50Ms: pct(service, 50),
    serviceP99Ms: pct(service, 99),
    maxSendLagMs: maxLag,
  };
}

/** Failed requests may still have been stored (a 503 leaves the batch to recovery): re-send each with its own key until it is acked, so the acked set is exact. */
async function resolveFailed(t: Target): Promise<{ retried: number; resolved: number; unresolved: number }> {
  const todo = t.failed.splice(0);
  let resolved = 0;
  let unresolved = 0;
  for (const sent of todo) {
    let done = false;
    for (let attempt = 0; attempt < 20 && !done; attempt++) {
      const o = await post(t.clients[(sent.url + attempt) % t.clients.length]!, sent.body, sent.key);
      if (o.ok) {
        t.ackedSamples += o.samples;
        t.ackedRequests++;
        done = true;
      } else if (typeof o.status === "number" && o.status >= 400 && o.status < 500 && o.status !== 429) {
        console.log(`  ${t.name}: request ${sent.k} refused for good on retry: ${o.status} ${o.detail ?? ""}`);
        break;
      } else await delay(500);
    }
    if (done) resolved++;
    else unresolved++;
  }
  return { retried: todo.length, resolved, unresolved };
}

// ---- stored-point check --------------------------------------------------------------

/** What one node holds of the bench's series (its own replica: `consistency=local`). */
type Stored = StoredCount;

/** The bench's series on one node; local: that node's own replica (a cluster node's default export merges a majority). */
function countStored(url: string, local = true): Promise<Stored> {
  return countStoredExport(url, `{job="${JOB}"}`, null, local);
}

async function countStoredRetrying(url: string, deadline: number): Promise<Stored> {
  let local = true;
  for (;;) {
    try {
      return await countStored(url, local);
    } catch (e) {
      if (e instanceof ExportStatusError && e.status === 400 && local) {
        local = false;
        continue;
      }
      if (performance.now() > deadline) throw e;
      console.log(`  (${(e as Error).message}; asking again)`);
      await delay(1000);
    }
  }
}

/** Counts on every node until each holds exactly the acked points (catch-up may lag a little), or 30 s pass. */
async function checkStored(urls: readonly string[], acked: number): Promise<{ perNode: (Stored & { lost: number; extra: number })[]; waitedMs: number }> {
  const t0 = performance.now();
  for (;;) {
    const per = await Promise.all(urls.map((u) => countStoredRetrying(u, t0 + 60_000)));
    const perNode = per.map((p) => ({ ...p, lost: Math.max(0, acked - p.points), extra: Math.max(0, p.points - acked) }));
    if (perNode.every((p) => p.points === acked && p.duplicated === 0) || performance.now() - t0 > 30_000) return { perNode, waitedMs: performance.now() - t0 };
    await delay(500);
  }
}

// ---- targets ---------------------------------------------------------------------------

interface TargetResult {
  name: TargetName;
  label: string;
  nodes: string[];
  warmup: ClosedResult;
  max: ClosedResult;
  open: OpenResult;
  resolution: { retried: number; resolved: number; unresolved: number };
  ackedSamples: number;
  ackedRequests: number;
  duplicateReceipts: number;
  stored: { perNode: (Stored & { lost: number; extra: number })[]; waitedMs: number };
  startupMs: number;
}

async function measure(t: Target, startupMs: number): Promise<TargetResult> {
  console.log(`\n== ${t.label}: warm-up ${WARMUP} s, max throughput over ${SECONDS} s with ${K} writers x ${B} samples`);
  const warm = await closedLoop(t, WARMUP);
  console.log(`  warm-up: ${fmtRate(warm.samplesPerSec)} samples/s, ${warm.errors} failed attempts`);
  const max = await closedLoop(t, SECONDS);
  console.log(`  max: ${fmtRate(max.samplesPerSec)} samples/s (${(max.requests / max.seconds).toFixed(1)} req/s, closed-loop p50 ${max.latencyP50Ms.toFixed(1)} ms, p99 ${max.latencyP99Ms.toFixed(1)} ms), ${max.errors} failed attempts (${max.retriedRequests} of ${max.requests} requests retried) ${JSON.stringify(max.statuses)}`);
  if (!(max.samplesPerSec > 0)) throw new Error(`${t.label}: nothing acked in the max-throughput phase`);
  const openRate = max.samplesPerSec * OPEN_FRACTION;
  console.log(`  open loop at ${(OPEN_FRACTION * 100).toFixed(0)} % = ${fmtRate(openRate)} samples/s (${(openRate / B).toFixed(2)} req/s) for ${OPEN_SECONDS} s`);
  const open = await openLoop(t, openRate, OPEN_SECONDS);
  console.log(`  open: achieved ${fmtRate(open.achievedSamplesPerSec)} samples/s, ack latency p50 ${open.p50Ms.toFixed(1)} p90 ${open.p90Ms.toFixed(1)} p99 ${open.p99Ms.toFixed(1)} max ${open.maxMs.toFixed(1)} ms, ${open.errors} failed attempts (${open.retriedRequests} of ${open.requests} requests retried, ${open.unackedRequests} unacked), client lag max ${open.maxSendLagMs.toFixed(1)} ms ${JSON.stringify(open.statuses)}`);
  const resolution = await resolveFailed(t);
  if (resolution.retried > 0) console.log(`  re-sent ${resolution.retried} failed requests with their keys: ${resolution.resolved} acked, ${resolution.unresolved} not`);
  const stored = await checkStored(t.checkUrls, t.ackedSamples);
  for (const p of stored.perNode) console.log(`  stored on ${p.url}: ${p.points} points in ${p.series} series; acked ${t.ackedSamples}; lost ${p.lost}, extra ${p.extra}, duplicated ${p.duplicated}`);
  return {
    name: t.name,
    label: t.label,
    nodes: t.urls,
    warmup: warm,
    max,
    open,
    resolution,
    ackedSamples: t.ackedSamples,
    ackedRequests: t.ackedRequests,
    duplicateReceipts: t.duplicates,
    stored,
    startupMs,
  };
}

function newTarget(name: TargetName, label: string, urls: string[], checkUrls: string[]): Target {
  // Enough sockets that the open loop never queues inside the client.
  return { name, label, urls, checkUrls, clients: urls.map((u) => new HttpClient(u, 512)), failed: [], ackedSamples: 0, ackedRequests: 0, duplicates: 0, errorsLogged: 0, nextK: 0, rr: 0 };
}

let standaloneProc: ManagedProcess | null = null;
let playground: Playground | null = null;
let stopping = false;
async function stopEverything(): Promise<void> {
  if (standaloneProc !== null) await standaloneProc.stop(30_000);
  standaloneProc = null;
  await stopAllProcs();
  if (playground !== null) await playground.cleanup();
  playground = null;
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${sig}: stopping every process this run started...`);
    void stopEverything().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  });
}

async function runStandalone(outDir: string): Promise<TargetResult> {
  const dataDir = await mkdtemp(join(tmpdir(), "hqts-bench-standalone-"));
  try {
    const port = await freePort();
    const logPath = join(outDir, "standalone.log");
    const t0 = performance.now();
    standaloneProc = startProcess("hqts-standalone", process.execPath, [CLI_MAIN, "node", "--data", dataDir, "--http", `127.0.0.1:${port}`], logPath, repoRoot);
    const url = `http://127.0.0.1:${port}`;
    const probe = new HttpClient(url);
    try {
      const proc = standaloneProc;
      await waitReady(probe, "/health", 60_000, () => (proc.hasExited ? proc.exitDescription : null));
    } finally {
      probe.close();
    }
    const startupMs = performance.now() - t0;
    const t = newTarget("standalone", `standalone node (pid ${standaloneProc.pid})`, [url], [url]);
    try {
      return await measure(t, startupMs);
    } finally {
      for (const c of t.clients) c.close();
    }
  } finally {
    if (standaloneProc !== null) await standaloneProc.stop(30_000);
    standaloneProc = null;
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function runCluster(name: "cluster-rr" | "cluster-one" | "cluster-rr-noprov"): Promise<TargetResult> {
  const t0 = performance.now();
  playground = await startPlayground({ readyTimeoutMs: 60_000, ...(name === "cluster-rr-noprov" ? { nodeArgs: ["--provenance", "off"] } : {}) });
  try {
    const urls = playground.nodes().map((n) => n.http);
    await waitReplicationReady(urls, 60_000);
    const startupMs = performance.now() - t0;
    const pids = playground.nodes().map((n) => `${n.id} ${String(n.pid)}`).join(", ");
    const label =
      name === "cluster-one"
        ? `3-node cluster, all writes through ${playground.nodes()[0]!.id} (${pids})`
        : `3-node cluster, round-robin over 3 nodes${name === "cluster-rr-noprov" ? ", --provenance off" : ""} (${pids})`;
    // The loss check covers every node, also when all writes go through one.
    const t = newTarget(name, label, name === "cluster-one" ? [urls[0]!] : urls, urls);
    try {
      return await measure(t, startupMs);
    } finally {
      for (const c of t.clients) c.close();
    }
  } finally {
    await playground.cleanup();
    playground = null;
  }
}

// ---- report ---------------------------------------------------------------------------

function fmtRate(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-";
}
const f1 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(1));
const f2 = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(2));
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ")).join("\n");
}

async function main(): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const outDir = join(repoRoot, "bench", "out", `cluster-ingest-${stamp}`);
  mkdirSync(outDir, { recursive: true });
  const load0 = loadavg();
  console.log(`cluster-ingest: ${S} series, ${B} samples/request, ${K} writers, warm-up ${WARMUP} s, max window ${SECONDS} s, open loop ${OPEN_SECONDS} s at ${OPEN_FRACTION * 100} % of max`);
  console.log(`machine: ${cpus().length} cores, load average ${load0.map((x) => x.toFixed(2)).join(" ")}; the load generator runs in this process on the same machine`);
  const probeBody = buildBody(0);
  console.log(`request body: ${probeBody.length} bytes (${(probeBody.length / B).toFixed(1)} B/sample), /api/v1/import JSON lines, one Idempotency-Key each`);
  const results: TargetResult[] = [];
  const failures: { name: string; error: string }[] = [];
  const wanted = TARGETS.filter((x) => only.includes(x));
  for (const name of wanted) {
    try {
      results.push(name === "standalone" ? await runStandalone(outDir) : await runCluster(name));
    } catch (e) {
      console.log(`\n${name} FAILED: ${(e as Error).stack ?? String(e)}`);
      failures.push({ name, error: (e as Error).message });
    }
  }

  const rows: string[][] = [["target", "max samples/s", "max req/s", "max errs", "open samples/s", "open req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "open errs", "acked", "stored min..max", "lost"]];
  for (const r of results) {
    const pts = r.stored.perNode.map((p) => p.points);
    rows.push([
      r.name,
      fmtRate(r.max.samplesPerSec),
      f1(r.max.requests / r.max.seconds),
      String(r.max.errors + r.warmup.errors),
      fmtRate(r.open.achievedSamplesPerSec),
      f2(r.open.targetRequestsPerSec),
      f1(r.open.p50Ms),
      f1(r.open.p90Ms),
      f1(r.open.p99Ms),
      f1(r.open.maxMs),
      String(r.open.errors),
      String(r.ackedSamples),
      `${Math.min(...pts)}..${Math.max(...pts)}`,
      String(Math.max(...r.stored.perNode.map((p) => p.lost + p.extra + p.duplicated))),
    ]);
  }
  console.log(`\n${table(rows)}`);
  console.log(`(errs = failed attempts (429/503/dropped), each retried with the same Idempotency-Key after Retry-After; open-loop latency: from each request's scheduled send time to its final ack, retries included; "lost" = worst node's lost + extra + duplicated points vs acked)`);

  const base = results.find((r) => r.name === "standalone");
  const ratios: Record<string, { throughput?: number; p50?: number; p99?: number }> = {};
  if (base !== undefined) {
    const rr: string[][] = [["cluster / standalone", "throughput", "p50 latency", "p99 latency"]];
    for (const r of results) {
      if (r.name === "standalone") continue;
      const x = { throughput: ratio(r.max.samplesPerSec, base.max.samplesPerSec), p50: ratio(r.open.p50Ms, base.open.p50Ms), p99: ratio(r.open.p99Ms, base.open.p99Ms) };
      ratios[r.name] = x;
      rr.push([r.name, f2(x.throughput), f2(x.p50), f2(x.p99)]);
    }
    if (rr.length > 1) console.log(`\n${table(rr)}`);
  }
  const lossLines = results.filter((r) => r.name !== "standalone").flatMap((r) => r.stored.perNode.map((p) => `${r.name} ${p.url}: stored ${p.points}, acked ${r.ackedSamples}, lost ${p.lost}, extra ${p.extra}, duplicated ${p.duplicated}`));
  if (lossLines.length > 0) console.log(`\nstored-point check (cluster nodes, via /api/v1/export):\n  ${lossLines.join("\n  ")}`);
  const load1 = loadavg();
  if (load0[0]! > cpus().length / 2) console.log(`WARNING: load average was ${load0[0]!.toFixed(2)} at the start (> half the cores): the figures are noisy`);

  const summary = {
    bench: "cluster-ingest",
    params: { series: S, batchSamples: B, writers: K, warmupS: WARMUP, seconds: SECONDS, openSeconds: OPEN_SECONDS, openFraction: OPEN_FRACTION },
    machine: { cores: cpus().length, loadavgStart: load0, loadavgEnd: load1 },
    results: results.map((r) => ({
      name: r.name,
      nodes: r.nodes,
      startupMs: Math.round(r.startupMs),
      maxSamplesPerSec: Math.round(r.max.samplesPerSec),
      maxRequestsPerSec: +(r.max.requests / r.max.seconds).toFixed(2),
      maxErrors: r.max.errors,
      maxRequests: r.max.requests,
      maxRetriedRequests: r.max.retriedRequests,
      maxStatuses: r.max.statuses,
      warmupErrors: r.warmup.errors,
      maxClosedLoopP50Ms: +r.max.latencyP50Ms.toFixed(2),
      maxClosedLoopP99Ms: +r.max.latencyP99Ms.toFixed(2),
      openTargetSamplesPerSec: Math.round(r.open.targetSamplesPerSec),
      openAchievedSamplesPerSec: Math.round(r.open.achievedSamplesPerSec),
      openRequests: r.open.requests,
      openP50Ms: +r.open.p50Ms.toFixed(2),
      openP90Ms: +r.open.p90Ms.toFixed(2),
      openP99Ms: +r.open.p99Ms.toFixed(2),
      openMaxMs: +r.open.maxMs.toFixed(2),
      openServiceP50Ms: +r.open.serviceP50Ms.toFixed(2),
      openServiceP99Ms: +r.open.serviceP99Ms.toFixed(2),
      openMaxSendLagMs: +r.open.maxSendLagMs.toFixed(2),
      openErrors: r.open.errors,
      openRetriedRequests: r.open.retriedRequests,
      openUnackedRequests: r.open.unackedRequests,
      openStatuses: r.open.statuses,
      resentAfterFailure: r.resolution,
      ackedSamples: r.ackedSamples,
      ackedRequests: r.ackedRequests,
      duplicateReceipts: r.duplicateReceipts,
      stored: r.stored.perNode.map((p) => ({ url: p.url, points: p.points, series: p.series, lost: p.lost, extra: p.extra, duplicated: p.duplicated })),
    })),
    ratiosVsStandalone: ratios,
    failures,
  };
  writeFileSync(join(outDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  console.log(`\n(summary also in ${join(outDir, "summary.json")}; standalone log in ${outDir})`);
  console.log(JSON.stringify(summary));
  const anyLoss = results.some((r) => r.stored.perNode.some((p) => p.lost + p.extra + p.duplicated > 0));
  process.exitCode = failures.length > 0 || anyLoss ? 1 : 0;
}

try {
  await main();
} finally {
  await stopEverything();
}
