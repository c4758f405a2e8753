// The acceptance scenarios of the chaos harness, each against a running
// 3-node playground (`hqts cluster up --dir DIR`): kill-leader, corrupt-wal,
// delay, replay, gap. Every scenario runs under a live LoggingWriter (its own
// writer name, so earlier runs' series are ignored) and ends the same way:
// heal (every node running, every link fault off), wait until every node
// holds every acked point (waitConverged), and check durability on every
// node alone (checkDurability). `tour` runs the five in order and prints one
// table. docs/chaos.md, "Scenarios and the tour".

import { open, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Writable } from "node:stream";
import { readClusterFile, type ClusterFile, type NodeEntry } from "../cluster/playground/layout.js";
import { startNode, status, stopNode, type PlaygroundEnv } from "../cluster/playground/playground.js";
import { checkDurability, waitConverged, type DurabilityReport } from "./checker.js";
import { LoggingWriter, type LedgerBatch, type LoggingWriterOptions, type WriterLedger } from "./writer.js";
import type { GapView } from "../server/gap-routes.js";

export const SCENARIOS = ["kill-leader", "corrupt-wal", "delay", "replay", "gap"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** The acceptance table (DEVELOPERS.md): what each scenario expects. */
export const EXPECTED: Record<ScenarioName, string> = {
  "kill-leader": "retryable error; retry succeeds on another node within 2 s",
  "corrupt-wal": "checksum mismatch detected; repaired from replicas; nothing lost",
  delay: "writes still commit, with higher latency; nothing lost",
  replay: "one stored point; the idempotency key wins",
  gap: "gap found; filled points inferred, never original",
};

/** The label set the gap scenario writes under: a gap rule must match it (interval 10s, a fill policy). */
export const GAP_JOB = "chaos-gap";

export interface ScenarioContext {
  /** The playground directory (DIR/cluster.json). */
  dir: string;
  log: (line: string) => void;
  /** The compiled CLI the playground restarts nodes with; default dist/src/cli/main.js beside this file. */
  cliMain?: string;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  expected: string;
  observed: string;
  pass: boolean;
  /** The scenario could not run here (delay without `cluster up --fault-proxy`); pass is false. */
  skipped?: boolean;
  figures: Record<string, unknown>;
}

// ---------------------------------------------------------------- helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const S = 1_000_000_000n;

export function envOf(ctx: ScenarioContext): PlaygroundEnv {
  let buf = "";
  const out = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      buf += chunk.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        ctx.log(`  playground: ${buf.slice(0, nl)}`);
        buf = buf.slice(nl + 1);
      }
      cb();
    },
  });
  return { cliMain: ctx.cliMain ?? fileURLToPath(new URL("../cli/main.js", import.meta.url)), out, readyTimeoutMs: 60_000 };
}

export const runId = (): string => Date.now().toString(36) + Math.floor(Math.random() * 1296).toString(36);

export function faultControl(c: ClusterFile): string | null {
  // Read loosely: files written before `cluster up --fault-proxy` have no such field.
  const ctl = (c as unknown as { faultProxy?: { control?: unknown } | null }).faultProxy?.control;
  return typeof ctl === "string" && ctl !== "" ? ctl.replace(/\/+$/, "") : null;
}

export async function fetchJson(url: string, init: RequestInit = {}, timeoutMs = 10_000): Promise<{ status: number; body: unknown; text: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, text };
}

/** Writes one batch with its idempotency key, retrying retryable failures over the given nodes until a deadline. */
async function writeRetrying(urls: string[], body: string, key: string, deadlineMs = 30_000, first = 0): Promise<{ status: number; body: unknown; text: string; via: string }> {
  const until = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    const url = urls[(first + attempt) % urls.length]!;
    let a: { status: number; body: unknown; text: string };
    try {
      a = await fetchJson(`${url}/api/v2/write?precision=ns`, { method: "POST", body, headers: { "Idempotency-Key": key, Accept: "application/json", "Content-Type": "text/plain" } }, 15_000);
    } catch (e) {
      a = { status: 0, body: null, text: (e as Error).message };
    }
    if (a.status === 200 || a.status === 204) return { ...a, via: url };
    const retryable = a.status === 0 || a.status === 429 || a.status >= 500;
    if (!retryable || Date.now() > until) return { ...a, via: url };
    await sleep(Math.min(500, 20 * 2 ** Math.min(attempt, 5)));
  }
}

interface Export {
  metric: Record<string, string>;
  values: (number | string)[];
  timestamps_ns: string[];
  origins?: string[];
}

async function exportOf(url: string, match: string, local = true): Promise<Export[]> {
  const p = new URLSearchParams();
  p.append("match[]", match);
  if (local) p.set("consistency", "local");
  const a = await fetchJson(`${url}/api/v1/export?${p.toString()}`, {}, 30_000);
  if (a.status !== 200) throw new Error(`export from ${url} answered ${a.status}: ${a.text.slice(0, 200)}`);
  return a.text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Export);
}

async function healLinks(c: ClusterFile): Promise<string | null> {
  const ctl = faultControl(c);
  if (ctl === null) return null;
  const a = await fetchJson(`${ctl}/heal`, { method: "POST" });
  return a.status === 200 ? null : `POST /heal answered ${a.status}: ${a.text.slice(0, 200)}`;
}

/** Heal: every link fault off, every node (and etcd member) the playground lists started again. */
export async function heal(ctx: ScenarioContext): Promise<void> {
  const c = readClusterFile(ctx.dir);
  const err = await healLinks(c).catch((e: Error) => e.message);
  if (err !== null) ctx.log(`heal: ${err}`);
  const st = await status({ dir: ctx.dir });
  for (const n of st.nodes)
    if (!n.alive || !n.etcd.alive || !n.healthy) {
      ctx.log(`heal: starting ${n.id}`);
      await startNode(envOf(ctx), { dir: ctx.dir, id: n.id });
    }
}

/** A LoggingWriter with the scenario's defaults, and the batch timings the scenarios measure with. */
class Run {
  readonly writer: LoggingWriter;
  readonly timings: { batch: LedgerBatch; startMs: number; endMs: number }[] = [];
  readonly name: string;

  constructor(
    scenario: ScenarioName,
    endpoints: string[],
    extra: Partial<LoggingWriterOptions> = {},
  ) {
    this.name = `${scenario}-${runId()}`;
    this.writer = new LoggingWriter({
      endpoints,
      writer: this.name,
      seed: Date.now() % 1_000_000,
      rotateEveryBatch: true,
      intervalMs: 20,
      ...extra,
      onBatch: (batch, t) => this.timings.push({ batch, ...t }),
    });
  }

  acked(): number {
    return this.timings.filter((t) => t.batch.outcome === "acked").length;
  }

  async waitAcked(n: number, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.acked() < n) {
      if (Date.now() > until) return false;
      await sleep(20);
    }
    return true;
  }
}

interface Ending {
  converged: boolean;
  convergeMs: number;
  report: DurabilityReport;
  lost: number;
  duplicates: number;
  wrong: number;
  extrasNotAllowed: number;
  ledger: WriterLedger;
}

/** Stops the writer, heals, waits until every node holds every acked point, checks every node. */
async function finish(ctx: ScenarioContext, run: Run): Promise<Ending> {
  const ledger = await run.writer.stop();
  await heal(ctx);
  const nodes = readClusterFile(ctx.dir).nodes.map((n) => n.http);
  const conv = await waitConverged(nodes, [ledger], { timeoutMs: 60_000, pollMs: 250, ignoreForeignWriters: true });
  const report = conv.converged ? await checkDurability(nodes, [ledger], { ignoreForeignWriters: true }) : conv.last;
  const sum = (k: "lost" | "duplicates" | "wrongValues" | "extrasNotAllowed"): number => report.nodes.reduce((a, n) => a + n[k], 0);
  const e: Ending = {
    converged: conv.converged,
    convergeMs: Math.round(conv.elapsedMs),
    report,
    lost: sum("lost"),
    duplicates: sum("duplicates"),
    wrong: sum("wrongValues"),
    extrasNotAllowed: sum("extrasNotAllowed"),
    ledger,
  };
  ctx.log(
    `${run.name}: ${report.ledger.ackedBatches} batches acked, ${report.ledger.unknownBatches} unknown, ${report.ledger.refusedBatches} refused; ` +
      `converged ${conv.converged} in ${e.convergeMs} ms; lost ${e.lost}, duplicates ${e.duplicates}, wrong ${e.wrong}, extras not allowed ${e.extrasNotAllowed}` +
      (report.ok ? "" : `; problems: ${report.problems.join("; ")}`),
  );
  return e;
}

function durabilityFigures(e: Ending, run: Run): Record<string, unknown> {
  const st = run.writer.stats();
  return {
    writer: run.name,
    batches: st.batches,
    ackedBatches: st.ackedBatches,
    ackedPoints: st.ackedPoints,
    retries: st.retries,
    unknownBatches: st.unknownBatches,
    refusedBatches: st.refusedBatches,
    longestFailoverMs: Math.round(st.longestFailoverMs),
    converged: e.converged,
    convergeMs: e.convergeMs,
    lost: e.lost,
    duplicates: e.duplicates,
    wrongValues: e.wrong,
    extrasNotAllowed: e.extrasNotAllowed,
    durabilityOk: e.report.ok,
    problems: e.report.problems,
  };
}

const durableText = (e: Ending): string =>
  e.report.ok ? `0 lost, 0 dup on ${e.report.nodes.length} nodes` : `NOT durable: ${e.report.problems.slice(0, 3).join("; ")}${e.converged ? "" : " (did not converge in 60 s)"}`;

const urlsOf = (c: ClusterFile): string[] => c.nodes.map((n) => n.http);

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

// ---------------------------------------------------------------- kill-leader

/** SIGKILL the node the client writes through, the one beside etcd's leader (and that etcd member), mid-write. */
export async function killLeader(ctx: ScenarioContext): Promise<ScenarioResult> {
  const scenario: ScenarioName = "kill-leader";
  const c = readClusterFile(ctx.dir);
  let leader: string | null = null;
  for (let i = 0; i < 50 && leader === null; i++) {
    leader = (await status({ dir: ctx.dir })).etcdLeader;
    if (leader === null) await sleep(200);
  }
  const victim = c.nodes.find((n) => n.etcd.name === leader);
  if (victim === undefined) return { scenario, expected: EXPECTED[scenario], observed: `no etcd leader found (${String(leader)})`, pass: false, figures: {} };
  const others = c.nodes.filter((n) => n !== victim).map((n) => n.http);
  ctx.log(`kill-leader: etcd leader ${leader}, victim ${victim.id} (${victim.http})`);
  // Through the victim only until it fails; then the writer moves to the others (on failures only).
  const run = new Run(scenario, [victim.http, ...others], { rotateEveryBatch: false });
  run.writer.start();
  const warmed = await run.waitAcked(30, 30_000);
  const ackedBefore = run.acked();
  const beforeElsewhere = run.timings.filter((t) => t.batch.outcome === "acked" && t.batch.ackedBy !== victim.http).length;
  const killAt = performance.now();
  await stopNode(envOf(ctx), { dir: ctx.dir, id: victim.id, signal: "KILL" });
  const killedMs = performance.now() - killAt;
  // The first ack after the kill through another node.
  const until = Date.now() + 15_000;
  let next: (typeof run.timings)[number] | undefined;
  while ((next = run.timings.find((t) => t.endMs > killAt && t.batch.outcome === "acked" && t.batch.ackedBy !== victim.http)) === undefined && Date.now() < until) await sleep(10);
  const failoverMs = next === undefined ? null : Math.round(next.endMs - killAt);
  const afterKill = run.timings.filter((t) => t.endMs > killAt);
  const errors = [...new Set(afterKill.filter((t) => t.batch.error !== undefined).map((t) => t.batch.error!.replace(/^https?:\/\/\S+: /, "").slice(0, 120)))];
  const nonRetryable = run.timings.filter((t) => t.batch.outcome === "refused").length;
  const unknownAtKill = afterKill.filter((t) => t.batch.outcome === "unknown").length;
  await sleep(1500); // keep writing through the survivors
  ctx.log(`kill-leader: failover ${String(failoverMs)} ms; restarting ${victim.id}`);
  await startNode(envOf(ctx), { dir: ctx.dir, id: victim.id });
  await sleep(1000);
  const e = await finish(ctx, run);
  const retried = afterKill.some((t) => t.batch.attempts > 1);
  const pass = warmed && failoverMs !== null && failoverMs <= 2000 && nonRetryable === 0 && unknownAtKill === 0 && e.report.ok;
  const observed =
    failoverMs === null
      ? `no ack through another node within 15 s of the kill; ${durableText(e)}`
      : `retry acked by another node ${failoverMs} ms after the kill (${retried ? "retryable errors only" : "no error seen"}${nonRetryable > 0 ? `, ${nonRetryable} NON-retryable` : ""}); ${durableText(e)}`;
  return {
    scenario,
    expected: EXPECTED[scenario],
    observed,
    pass,
    figures: {
      etcdLeader: leader,
      victim: victim.id,
      ackedBeforeKill: ackedBefore,
      ackedBeforeKillElsewhere: beforeElsewhere,
      killTookMs: Math.round(killedMs),
      failoverMs,
      failoverLimitMs: 2000,
      errorsAfterKill: errors,
      nonRetryableBatches: nonRetryable,
      unknownBatchesAfterKill: unknownAtKill,
      ...durabilityFigures(e, run),
    },
  };
}

// ---------------------------------------------------------------- corrupt-wal

interface RepairJson {
  id: string;
  kind: string;
  trigger: string;
  outcome: string;
  fromPeer?: string | null;
  where?: { file?: string; offset?: number; length?: number };
  detail?: string;
}

async function repairsOf(url: string): Promise<RepairJson[]> {
  const a = await fetchJson(`${url}/hq/v1/repairs?limit=10000`);
  if (a.status !== 200) throw new Error(`${url}/hq/v1/repairs answered ${a.status}: ${a.text.slice(0, 200)}`);
  return (a.body as { data: RepairJson[] }).data;
}

/** Flips the bits of one byte in place. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const fh = await open(path, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0x5a;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/** The newest WAL segment with some records in it (a freshly rolled one may hold only its header). */
export async function newestSegment(walDir: string): Promise<{ path: string; size: number } | null> {
  let names: string[];
  try {
    names = (await readdir(walDir)).filter((n) => n.endsWith(".seg")).sort();
  } catch {
    return null;
  }
  const segs = await Promise.all(names.map(async (n) => ({ path: join(walDir, n), size: (await stat(join(walDir, n))).size })));
  for (let i = segs.length - 1; i >= 0; i--) if (segs[i]!.size >= 4096) return segs[i]!;
  return segs.reduce<{ path: string; size: number } | null>((a, s) => (a === null || s.size > a.size ? s : a), null);
}

/** Corrupt one disk's WAL: a byte flipped in the middle third of the newest segment while the node is down. */
export async function corruptWal(ctx: ScenarioContext): Promise<ScenarioResult> {
  const scenario: ScenarioName = "corrupt-wal";
  const c = readClusterFile(ctx.dir);
  const victim: NodeEntry = c.nodes[c.nodes.length - 1]!;
  const run = new Run(scenario, urlsOf(c));
  run.writer.start();
  await run.waitAcked(30, 30_000);
  const before = new Set((await repairsOf(victim.http)).map((r) => r.id));
  await stopNode(envOf(ctx), { dir: ctx.dir, id: victim.id, signal: "KILL" });
  const seg = await newestSegment(victim.walDir);
  let flipped: { file: string; offset: number; size: number } | null = null;
  if (seg !== null && seg.size > 3) {
    const offset = Math.floor(seg.size / 3) + Math.floor(Math.random() * Math.max(1, Math.floor(seg.size / 3)));
    await flipByte(seg.path, offset);
    flipped = { file: seg.path, offset, size: seg.size };
    ctx.log(`corrupt-wal: ${victim.id} killed; flipped byte ${offset} of ${seg.path} (${seg.size} bytes)`);
  } else ctx.log(`corrupt-wal: no WAL segment in ${victim.walDir}`);
  await startNode(envOf(ctx), { dir: ctx.dir, id: victim.id });
  // The damage is found at open and repaired from the peers.
  let found: RepairJson | undefined;
  let fresh: RepairJson[] = [];
  const until = Date.now() + 60_000;
  while (flipped !== null && Date.now() < until) {
    fresh = (await repairsOf(victim.http).catch(() => [] as RepairJson[])).filter((r) => !before.has(r.id));
    found = fresh.find((r) => r.kind === "wal-damage" && r.outcome === "repaired");
    if (found !== undefined || fresh.some((r) => r.kind === "wal-damage" && r.outcome === "failed")) break;
    await sleep(250);
  }
  const e = await finish(ctx, run);
  const pass = flipped !== null && found !== undefined && e.report.ok;
  const walRecords = fresh.filter((r) => r.kind === "wal-damage").map((r) => `${r.trigger}/${r.outcome}`);
  const observed =
    flipped === null
      ? `no WAL segment to corrupt in ${victim.walDir}`
      : found === undefined
        ? `flipped byte ${flipped.offset}/${flipped.size}; no wal-damage repaired record on ${victim.id} within 60 s (${walRecords.join(", ") || "none"}); ${durableText(e)}`
        : `${(found.detail ?? "damage").split(":")[0]} found (at ${found.trigger}), repaired from ${found.fromPeer ?? "replicas"} on ${victim.id}; ${durableText(e)}`;
  return {
    scenario,
    expected: EXPECTED[scenario],
    observed,
    pass,
    figures: { victim: victim.id, flipped, repair: found ?? null, newRepairs: fresh.map((r) => `${r.kind}/${r.trigger}/${r.outcome}`), ...durabilityFigures(e, run) },
  };
}

// ---------------------------------------------------------------- delay

/** 500 ms on every link, both ways, while the writer runs ~15 s. Needs `cluster up --fault-proxy`. */
export async function delay(ctx: ScenarioContext, opts: { delayMs?: number; durationMs?: number } = {}): Promise<ScenarioResult> {
  const scenario: ScenarioName = "delay";
  const delayMs = opts.delayMs ?? 500;
  const durationMs = opts.durationMs ?? 15_000;
  const c = readClusterFile(ctx.dir);
  const ctl = faultControl(c);
  if (ctl === null) return { scenario, expected: EXPECTED[scenario], observed: "needs `cluster up --fault-proxy`", pass: false, skipped: true, figures: {} };
  const run = new Run(scenario, urlsOf(c), { requestTimeoutMs: 10_000, batchDeadlineMs: 30_000, intervalMs: 50 });
  run.writer.start();
  await run.waitAcked(10, 30_000);
  const baseline = run.timings.filter((t) => t.batch.outcome === "acked").map((t) => t.endMs - t.startMs);
  const list = await fetchJson(`${ctl}/links`);
  const names = ((list.body as { links?: { name: string }[] } | null)?.links ?? []).map((l) => l.name);
  const setErrors: string[] = [];
  const t0 = performance.now();
  for (const name of names) {
    const a = await fetchJson(`${ctl}/links/${encodeURIComponent(name)}`, { method: "PUT", body: JSON.stringify({ delayMs }), headers: { "Content-Type": "application/json" } });
    if (a.status !== 200) setErrors.push(`${name}: ${a.status} ${a.text.slice(0, 100)}`);
  }
  ctx.log(`delay: ${delayMs} ms on ${names.length} links (${names.join(", ")}), both ways, for ${durationMs / 1000} s`);
  await sleep(durationMs);
  const t1 = performance.now();
  const healErr = await healLinks(c);
  // Acks of batches sent while the delay was on.
  const during = run.timings.filter((t) => t.batch.outcome === "acked" && t.startMs >= t0 && t.startMs < t1).map((t) => t.endMs - t.startMs);
  const e = await finish(ctx, run);
  const p50 = Math.round(quantile(during, 0.5));
  const max = Math.round(Math.max(...during, 0));
  const pass = names.length > 0 && setErrors.length === 0 && healErr === null && during.length > 0 && e.report.ok;
  const observed =
    names.length === 0 || setErrors.length > 0
      ? `could not set the delay: ${setErrors.join("; ") || "no links"}`
      : during.length === 0
        ? `no write acked during ${durationMs / 1000} s of ${delayMs} ms delay; ${durableText(e)}`
        : `${during.length} batches acked under ${delayMs} ms delay, latency p50 ${p50} ms, max ${max} ms (before: p50 ${Math.round(quantile(baseline, 0.5))} ms); ${durableText(e)}`;
  return {
    scenario,
    expected: EXPECTED[scenario],
    observed,
    pass,
    figures: {
      links: names,
      delayMs,
      durationMs,
      ackedDuringDelay: during.length,
      latencyBeforeP50Ms: Math.round(quantile(baseline, 0.5)),
      latencyP50Ms: p50,
      latencyMaxMs: max,
      healError: healErr,
      ...durabilityFigures(e, run),
    },
  };
}

// ---------------------------------------------------------------- replay

interface ReceiptJson {
  batchId?: string;
  sha256?: string;
  duplicate?: boolean;
}

/** The same write (one Idempotency-Key) 100 times through every node, 50 sequentially then 50 concurrently. */
export async function replay(ctx: ScenarioContext): Promise<ScenarioResult> {
  const scenario: ScenarioName = "replay";
  const c = readClusterFile(ctx.dir);
  const urls = urlsOf(c);
  const run = new Run(scenario, urls);
  run.writer.start();
  const id = runId();
  const key = `chaos-replay-${id}`;
  const tNs = BigInt(Date.now()) * 1_000_000n;
  const body = `chaos_replay,run=${id} v=42 ${tNs}`;
  const receipts: ReceiptJson[] = [];
  const failures: string[] = [];
  const take = (a: { status: number; body: unknown; text: string }): void => {
    if (a.status === 200) receipts.push(a.body as ReceiptJson);
    else failures.push(`${a.status} ${a.text.slice(0, 120)}`);
  };
  for (let i = 0; i < 50; i++) take(await writeRetrying(urls, body, key, 30_000, i));
  for (const a of await Promise.all(Array.from({ length: 50 }, (_, i) => writeRetrying(urls, body, key, 30_000, i)))) take(a);
  const ids = new Set(receipts.map((r) => `${String(r.batchId)}/${String(r.sha256)}`));
  const duplicates = receipts.filter((r) => r.duplicate === true).length;
  // Exactly one point on every node alone, polled with a deadline (replicas commit as the COMMIT reaches them).
  const match = `{__name__="chaos_replay_v",run="${id}"}`;
  let counts: (number | string)[] = [];
  const until = Date.now() + 20_000;
  for (;;) {
    counts = await Promise.all(urls.map(async (u) => (await exportOf(u, match).catch((e: Error) => [e.message])).reduce<number | string>((a, l) => (typeof l === "string" ? l : typeof a === "number" ? a + l.values.length : a), 0)));
    if (counts.every((n) => n === 1) || Date.now() > until) break;
    await sleep(200);
  }
  const e = await finish(ctx, run);
  const onePoint = counts.every((n) => n === 1);
  const pass = receipts.length === 100 && ids.size === 1 && onePoint && e.report.ok;
  const observed = `${receipts.length}/100 acked, ${ids.size} distinct batchId/sha256 (${duplicates} marked duplicate); points per node: ${counts.join(", ")}; ${durableText(e)}`;
  return {
    scenario,
    expected: EXPECTED[scenario],
    observed,
    pass,
    figures: { key, receipts: receipts.length, distinctReceipts: ids.size, duplicateReceipts: duplicates, failures: failures.slice(0, 5), pointsPerNode: counts, ...durabilityFigures(e, run) },
  };
}

// ---------------------------------------------------------------- gap

type GapJson = GapView;

/** A 10 s series with a 6-hour hole, under {job="chaos-gap"}: the gap job finds it and fills it with inferred points. */
export async function gap(ctx: ScenarioContext, opts: { fillDeadlineMs?: number } = {}): Promise<ScenarioResult> {
  const scenario: ScenarioName = "gap";
  const c = readClusterFile(ctx.dir);
  const urls = urlsOf(c);
  const run = new Run(scenario, urls);
  run.writer.start();
  const id = runId();
  const STEP = 10n * S;
  const now = ((BigInt(Date.now()) * 1_000_000n) / S) * S;
  const t0 = now - 10n * 3600n * S;
  const holeStart = t0 + 359n * STEP; // the last point before the hole
  const holeEnd = t0 + 7n * 3600n * S; // the first point after it
  const value = (tt: bigint): number => Number((tt - t0) / STEP) * 0.5;
  const lineOf = (tt: bigint): string => `chaos_gap,job=${GAP_JOB},run=${id} v=${value(tt)} ${tt}`;
  const before: string[] = [];
  for (let tt = t0; tt <= holeStart; tt += STEP) before.push(lineOf(tt));
  const afterLines: string[] = [];
  for (let tt = holeEnd; tt <= now; tt += STEP) afterLines.push(lineOf(tt));
  const originals = before.length + afterLines.length;
  const expectedSlots = Number((holeEnd - holeStart) / STEP) - 1;
  const w1 = await writeRetrying(urls, before.join("\n"), `chaos-gap-${id}-a`);
  const w2 = await writeRetrying(urls, afterLines.join("\n"), `chaos-gap-${id}-b`, 30_000, 1);
  const match = `{__name__="chaos_gap_v",run="${id}"}`;
  let gaps: GapJson[] = [];
  let filled: GapJson | undefined;
  let gapError: string | null = null;
  const until = Date.now() + (opts.fillDeadlineMs ?? 30_000);
  if (w1.status === 200 && w2.status === 200)
    for (;;) {
      try {
        const a = await fetchJson(`${urls[0]!}/hq/v1/gaps?${new URLSearchParams({ "match[]": match }).toString()}`);
        if (a.status !== 200) throw new Error(`/hq/v1/gaps answered ${a.status}: ${a.text.slice(0, 200)}`);
        gaps = ((a.body as { data: GapJson[] }).data ?? []).filter((g) => g.state !== "stale");
        gapError = null;
      } catch (e) {
        gapError = (e as Error).message;
      }
      filled = gaps.find((g) => g.startNs === holeStart.toString() && g.endNs === holeEnd.toString() && g.state === "filled");
      if (filled !== undefined || Date.now() > until) break;
      await sleep(250);
    }
  // Every node alone: the filled slots inferred, on the slots inside the hole; every written point original.
  const perNode: { node: string; inferred: number; original: number; other: number; misplaced: number }[] = [];
  if (filled !== undefined) {
    const deadline = Date.now() + 20_000;
    for (const u of urls)
      for (;;) {
        const ls = await exportOf(u, match).catch(() => [] as Export[]);
        const r = { node: u, inferred: 0, original: 0, other: 0, misplaced: 0 };
        for (const l of ls)
          l.timestamps_ns.forEach((t, i) => {
            const o = l.origins?.[i];
            const tt = BigInt(t);
            const inHole = tt > holeStart && tt < holeEnd;
            if (o === "inferred") {
              r.inferred++;
              if (!inHole || (tt - holeStart) % STEP !== 0n) r.misplaced++;
            } else if (o === "original") {
              r.original++;
              if (inHole) r.misplaced++;
            } else r.other++;
          });
        if ((r.inferred === expectedSlots && r.original === originals) || Date.now() > deadline) {
          perNode.push(r);
          break;
        }
        await sleep(250);
      }
  }
  const e = await finish(ctx, run);
  const exportOk = perNode.length === urls.length && perNode.every((r) => r.inferred === expectedSlots && r.original === originals && r.other === 0 && r.misplaced === 0);
  const pass = filled !== undefined && filled.inferredPoints === expectedSlots && exportOk && e.report.ok;
  let observed: string;
  if (w1.status !== 200 || w2.status !== 200) observed = `could not write the series: ${w1.status} ${w2.status} ${(w1.status !== 200 ? w1 : w2).text.slice(0, 150)}`;
  else if (filled === undefined) {
    const same = gaps.find((g) => g.startNs === holeStart.toString() && g.endNs === holeEnd.toString());
    observed =
      same !== undefined
        ? `gap recorded (state ${same.state}) but not filled in ${(opts.fillDeadlineMs ?? 30_000) / 1000} s: does a gap rule with a fill policy match {job="${GAP_JOB}"}?`
        : gaps.length > 0
          ? `gaps found, none exactly [last point before, first point after] the hole: ${gaps.map((g) => `${g.startNs}..${String(g.endNs)} ${g.state}`).join(", ")}`
          : `no gap recorded in ${(opts.fillDeadlineMs ?? 30_000) / 1000} s${gapError !== null ? ` (${gapError})` : ""}: is the gap job on, with a rule matching {job="${GAP_JOB}"}, interval 10s?`;
  } else
    observed = `6 h gap found exactly, filled (${filled.method ?? "?"}, ${filled.inferredPoints}/${expectedSlots} slots); export: ${
      exportOk
        ? `${expectedSlots} inferred + ${originals} original on each of ${perNode.length} nodes`
        : perNode.map((r) => `${r.inferred} inferred + ${r.original} original${r.misplaced + r.other > 0 ? ` (${r.misplaced} misplaced, ${r.other} unmarked)` : ""}`).join(", ") +
          ` (want ${expectedSlots} + ${originals} on every node)`
    }; ${durableText(e)}`;
  return {
    scenario,
    expected: EXPECTED[scenario],
    observed,
    pass,
    figures: {
      series: match,
      holeStartNs: holeStart.toString(),
      holeEndNs: holeEnd.toString(),
      expectedSlots,
      originals,
      gap: filled ?? null,
      gapsSeen: gaps.map((g) => ({ state: g.state, startNs: g.startNs, endNs: g.endNs, inferredPoints: g.inferredPoints })),
      perNode,
      ...durabilityFigures(e, run),
    },
  };
}

// ---------------------------------------------------------------- tour

export const RUNNERS: Record<ScenarioName, (ctx: ScenarioContext) => Promise<ScenarioResult>> = {
  "kill-leader": killLeader,
  "corrupt-wal": corruptWal,
  delay: (ctx) => delay(ctx),
  replay,
  gap: (ctx) => gap(ctx),
};

export const resultWord = (r: ScenarioResult): "PASS" | "FAIL" | "SKIP" => (r.pass ? "PASS" : r.skipped === true ? "SKIP" : "FAIL");

/** Runs one scenario; an exception becomes a FAIL row (and the playground is healed for the next one). */
export async function runScenario(name: ScenarioName, ctx: ScenarioContext): Promise<ScenarioResult> {
  const t0 = performance.now();
  ctx.log(`== ${name}`);
  try {
    const r = await RUNNERS[name](ctx);
    r.figures["elapsedMs"] = Math.round(performance.now() - t0);
    ctx.log(`== ${name}: ${resultWord(r)}: ${r.observed}`);
    return r;
  } catch (e) {
    ctx.log(`== ${name}: error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    await heal(ctx).catch((h: Error) => ctx.log(`heal after the error failed: ${h.message}`));
    return { scenario: name, expected: EXPECTED[name], observed: `error: ${(e as Error).message ?? String(e)}`.slice(0, 500), pass: false, figures: { elapsedMs: Math.round(performance.now() - t0) } };
  }
}

/** SCENARIO | EXPECTED | OBSERVED | RESULT. */
export function formatTable(rs: ScenarioResult[]): string {
  const rows = [["SCENARIO", "EXPECTED", "OBSERVED", "RESULT"], ...rs.map((r) => [r.scenario, r.expected, r.observed, resultWord(r)])];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => [r[0]!.padEnd(widths[0]!), r[1]!.padEnd(widths[1]!), r[2]!.padEnd(widths[2]!), r[3]!].join(" | ")).join("\n") + "\n";
}

/**
 * The five scenarios in order; answers the results and the exit status (1 when any FAILed; SKIP, the delay
 * scenario without fault proxies, does not fail the tour).
 */
export async function tour(dir: string, log: (line: string) => void = () => {}, cliMain?: string): Promise<{ results: ScenarioResult[]; exitCode: number }> {
  const results: ScenarioResult[] = [];
  for (const name of SCENARIOS) results.push(await runScenario(name, { dir, log, ...(cliMain !== undefined ? { cliMain } : {}) }));
  return { results, exitCode: results.some((r) => resultWord(r) === "FAIL") ? 1 : 0 };
}
