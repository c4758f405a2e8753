// `hqts chaos campaign`: a long run of random faults under continuous writes
// against a running playground (`hqts cluster up --fault-proxy`). The schedule
// (fault kinds, targets, timings) is drawn up front from a seeded PRNG, so the
// same seed gives the same schedule: kill-node, kill-etcd, delay, partition,
// corrupt-wal. At most one node is down (or cut off) at a time, never two
// faults on one node at once. Then heal everything, wait for convergence, and
// check durability and window digests on every node. docs/chaos.md, "Campaign".

import { readFileSync } from "node:fs";
import { readClusterFile, type ClusterFile, type NodeEntry } from "../cluster/playground/layout.js";
import { startNode, stopNode } from "../cluster/playground/playground.js";
import { mulberry32 } from "../core/prng.js";
import { checkDurability, waitConverged, type DurabilityReport } from "./checker.js";
import { envOf, faultControl, fetchJson, flipByte, heal, newestSegment, runId, type ScenarioContext } from "./scenarios.js";
import { LoggingWriter, type WriterStats } from "./writer.js";

export const FAULT_KINDS = ["kill-node", "kill-etcd", "delay", "partition", "corrupt-wal"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults that take a node (or its etcd member, or its inbound links) away: one at a time. */
const DISRUPTIVE: ReadonlySet<FaultKind> = new Set(["kill-node", "kill-etcd", "partition", "corrupt-wal"]);

export interface PlannedFault {
  n: number;
  kind: FaultKind;
  /** Planned start, ms after the campaign start. */
  atMs: number;
  /** The node it hits (every node for a delay on all links). */
  nodes: string[];
  /** delay and partition: link patterns of the fault proxy ("*" = every link, "n1->*" = what n1 sends, ...). */
  links?: string[];
  /** kill-node / kill-etcd / partition / delay: how long the fault lasts before the restart or heal. */
  durationMs: number;
  /** delay: the delay and jitter. */
  delayMs?: number;
  jitterMs?: number;
  /** corrupt-wal: where in the middle third of the newest segment (0..1 of the third). */
  offsetFraction?: number;
}

/** mulberry32 (core/prng.ts): the campaign's schedule comes from it. */
export const prng = mulberry32;

/** Planning estimate of how long a restart takes beyond the fault's own duration (the run enforces it for real). */
const RESTART_ESTIMATE_MS: Record<FaultKind, number> = { "kill-node": 4000, "kill-etcd": 2000, delay: 0, partition: 0, "corrupt-wal": 5000 };

/**
 * The schedule for a run of `seconds` over the given node ids: a fault every 2-6 s, kinds weighted
 * (delay 30%, partition 20%, kill-node 20%, kill-etcd 15%, corrupt-wal 15%); a disruptive fault only when
 * no other one is planned to be on, and never on a node another fault is planned to hold.
 */
export function planCampaign(seed: number, seconds: number, nodeIds: string[]): PlannedFault[] {
  const rnd = prng(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const endMs = seconds * 1000;
  const busyUntil = new Map<string, number>(nodeIds.map((id) => [id, 0]));
  let disruptiveUntil = 0;
  const out: PlannedFault[] = [];
  for (let t = 2000 + int(0, 2000); t < endMs; t += int(2000, 6000)) {
    const free = nodeIds.filter((id) => busyUntil.get(id)! <= t);
    if (free.length === 0) continue;
    const r = rnd();
    let kind: FaultKind = r < 0.3 ? "delay" : r < 0.5 ? "partition" : r < 0.7 ? "kill-node" : r < 0.85 ? "kill-etcd" : "corrupt-wal";
    if (DISRUPTIVE.has(kind) && disruptiveUntil > t) kind = "delay";
    const f: PlannedFault = { n: out.length + 1, kind, atMs: t, nodes: [], durationMs: 0 };
    switch (kind) {
      case "kill-node":
      case "kill-etcd":
        f.nodes = [pick(free)];
        f.durationMs = int(1000, 5000);
        break;
      case "corrupt-wal":
        f.nodes = [pick(free)];
        f.durationMs = 0;
        f.offsetFraction = Math.round(rnd() * 1000) / 1000;
        break;
      case "partition": {
        const id = pick(free);
        f.nodes = [id];
        // Both ways for node traffic; etcd's links exist per destination only, so its member is cut inbound.
        f.links = [`${id}->*`, `*->${id}`, `*->etcd-${id}`];
        f.durationMs = int(2000, 5000);
        break;
      }
      case "delay": {
        f.delayMs = int(50, 500);
        f.jitterMs = int(0, Math.floor(f.delayMs / 5));
        f.durationMs = int(2000, 5000);
        if (free.length === nodeIds.length && rnd() < 0.25) {
          f.nodes = [...nodeIds];
          f.links = ["*"];
        } else {
          const id = pick(free);
          f.nodes = [id];
          const others = nodeIds.filter((o) => o !== id);
          f.links = [pick([`*->${id}`, `${id}->*`, `${id}->${pick(others)}`, `*->etcd-${id}`])];
        }
        break;
      }
    }
    const until = t + f.durationMs + RESTART_ESTIMATE_MS[kind] + 500;
    for (const id of f.nodes) busyUntil.set(id, until);
    if (DISRUPTIVE.has(kind)) disruptiveUntil = until;
    out.push(f);
  }
  return out;
}

export function describeFault(f: PlannedFault): string {
  const at = `t+${(f.atMs / 1000).toFixed(1)}s`;
  switch (f.kind) {
    case "kill-node":
      return `#${f.n} ${at} kill-node ${f.nodes[0]}, restart after ${f.durationMs} ms`;
    case "kill-etcd":
      return `#${f.n} ${at} kill-etcd etcd-${f.nodes[0]}, restart after ${f.durationMs} ms`;
    case "corrupt-wal":
      return `#${f.n} ${at} corrupt-wal ${f.nodes[0]} (byte at ${f.offsetFraction} of the middle third of the newest segment)`;
    case "partition":
      return `#${f.n} ${at} partition ${f.links!.join(" + ")} for ${f.durationMs} ms`;
    case "delay":
      return `#${f.n} ${at} delay ${f.links!.join(",")} ${f.delayMs}±${f.jitterMs} ms for ${f.durationMs} ms`;
  }
}

export interface FaultOutcome {
  n: number;
  kind: FaultKind;
  target: string;
  plannedAtMs: number;
  startedAtMs: number;
  endedAtMs: number;
  ok: boolean;
  error?: string;
}

export interface CampaignReport {
  seed: number;
  seconds: number;
  schedule: string[];
  faultsPlanned: number;
  faultsInjected: number;
  faultsFailed: number;
  /** Planned faults that never started: the run ended while they waited for the faults before them. */
  faultsNotStarted: number;
  faultsByKind: Record<FaultKind, number>;
  faultErrors: string[];
  writers: WriterStats[];
  ackedBatches: number;
  ackedPoints: number;
  unknownBatches: number;
  refusedBatches: number;
  retries: number;
  longestFailoverMs: number;
  healMs: number;
  healError?: string;
  converged: boolean;
  convergeMs: number;
  lost: number;
  duplicates: number;
  wrongValues: number;
  extrasNotAllowed: number;
  durabilityOk: boolean;
  problems: string[];
  digestsEqual: boolean;
  digestNote?: string;
  /** The Merkle log: one checkpoint on every node holding every acked batch. */
  log: LogCheck;
  verdict: "PASS" | "FAIL";
  exitCode: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Our process (its command line carries `marker`), alive and not a zombie. */
function isOurs(pid: number | null, marker: string): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3) === "Z") return false;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(marker);
  } catch {
    return false;
  }
}

/** SIGKILLs node id's etcd member only (its recorded pid, checked against its data dir); waits until it is gone. */
async function killEtcdMember(dir: string, id: string): Promise<void> {
  const n = readClusterFile(dir).nodes.find((x) => x.id === id);
  if (n === undefined) throw new Error(`no node ${id}`);
  const marker = `--data-dir=${n.etcd.dataDir} `;
  if (!isOurs(n.etcd.pid, marker)) throw new Error(`etcd member ${n.etcd.name} is not running`);
  process.kill(n.etcd.pid!, "SIGKILL");
  const until = Date.now() + 10_000;
  while (isOurs(n.etcd.pid, marker)) {
    if (Date.now() > until) throw new Error(`etcd member ${n.etcd.name} (pid ${n.etcd.pid}) still alive 10 s after SIGKILL`);
    await sleep(20);
  }
}

async function putLink(ctl: string, name: string, change: Record<string, unknown>): Promise<void> {
  const a = await fetchJson(`${ctl}/links/${encodeURIComponent(name)}`, { method: "PUT", body: JSON.stringify(change), headers: { "Content-Type": "application/json" } });
  if (a.status !== 200) throw new Error(`PUT /links/${name} answered ${a.status}: ${a.text.slice(0, 150)}`);
}

async function inject(ctx: ScenarioContext, ctl: string | null, f: PlannedFault): Promise<void> {
  const env = envOf(ctx);
  const id = f.nodes[0]!;
  switch (f.kind) {
    case "kill-node":
      await stopNode(env, { dir: ctx.dir, id, signal: "KILL" });
      await sleep(f.durationMs);
      await startNode(env, { dir: ctx.dir, id });
      return;
    case "kill-etcd":
      await killEtcdMember(ctx.dir, id);
      await sleep(f.durationMs);
      await startNode(env, { dir: ctx.dir, id }); // starts the etcd member; the node runs on
      return;
    case "corrupt-wal": {
      const n: NodeEntry = readClusterFile(ctx.dir).nodes.find((x) => x.id === id)!;
      await stopNode(env, { dir: ctx.dir, id, signal: "KILL" });
      try {
        const seg = await newestSegment(n.walDir);
        if (seg === null || seg.size <= 3) throw new Error(`no WAL segment to corrupt in ${n.walDir}`);
        const third = Math.max(1, Math.floor(seg.size / 3));
        const offset = Math.min(seg.size - 1, Math.floor(seg.size / 3) + Math.floor(f.offsetFraction! * (third - 1)));
        await flipByte(seg.path, offset);
        ctx.log(`campaign #${f.n}: flipped byte ${offset} of ${seg.path} (${seg.size} bytes)`);
      } finally {
        await startNode(env, { dir: ctx.dir, id });
      }
      return;
    }
    case "partition":
    case "delay": {
      if (ctl === null) throw new Error("needs `cluster up --fault-proxy`");
      const names = f.links!;
      const on = f.kind === "partition" ? { partitioned: true } : { delayMs: f.delayMs, jitterMs: f.jitterMs };
      const off = f.kind === "partition" ? { partitioned: false } : { delayMs: 0, jitterMs: 0 };
      try {
        for (const name of names) await putLink(ctl, name, on);
        await sleep(f.durationMs);
      } finally {
        for (const name of names) await putLink(ctl, name, off).catch((e: Error) => ctx.log(`campaign #${f.n}: undo on ${name}: ${e.message}`));
      }
      return;
    }
  }
}

async function digestsOf(urls: string[]): Promise<string[]> {
  return Promise.all(
    urls.map(async (u) => {
      const a = await fetchJson(
        `${u}/hq/v1/internal/read`,
        {
          method: "POST",
          body: JSON.stringify({ op: "digestWindows", startNs: "-9223372036854775808", endNs: "9223372036854775807", windowNs: "3600000000000" }),
          headers: { "Content-Type": "application/json" },
        },
        60_000,
      );
      if (a.status !== 200) throw new Error(`digestWindows on ${u} answered ${a.status}: ${a.text.slice(0, 150)}`);
      return a.text;
    }),
  );
}

export interface LogCheck {
  /** Every node's ledger at one signed checkpoint holding every acked batch. */
  ok: boolean;
  size: number;
  /** Acked batches not in that checkpoint (up to the check's deadline). */
  missing: number;
  elapsedMs: number;
  note?: string;
}

/**
 * The Merkle log after the faults (docs/provenance.md): polls until every node holds the same checkpoint and every
 * acked batch is included in it (the sequencer may have moved, and batches committed late are cut late).
 */
export async function checkLog(urls: readonly string[], ackedIds: readonly string[], timeoutMs: number): Promise<LogCheck> {
  const t0 = performance.now();
  const until = Date.now() + timeoutMs;
  let last: LogCheck = { ok: false, size: 0, missing: ackedIds.length, elapsedMs: 0 };
  for (;;) {
    try {
      const cps = await Promise.all(urls.map((u) => fetchJson(`${u}/hq/v1/proof/checkpoint`)));
      const bad = cps.findIndex((c) => c.status !== 200);
      if (bad >= 0) throw new Error(`${urls[bad]}/hq/v1/proof/checkpoint answered ${cps[bad]!.status}: ${cps[bad]!.text.slice(0, 120)}`);
      const heads = cps.map((c) => c.body as { size: number; root: string });
      const size = heads[0]!.size;
      if (heads.some((h) => h.size !== size || h.root !== heads[0]!.root)) throw new Error(`nodes at different checkpoints: ${heads.map((h) => h.size).join(", ")}`);
      let missing = 0;
      for (let i = 0; i < ackedIds.length; i += 256) {
        const a = await fetchJson(`${urls[0]}/hq/v1/proof/batches`, { method: "POST", body: JSON.stringify({ ids: ackedIds.slice(i, i + 256), size, bytes: false }), headers: { "Content-Type": "application/json" } }, 30_000);
        if (a.status !== 200) throw new Error(`proof/batches answered ${a.status}: ${a.text.slice(0, 120)}`);
        missing += (a.body as { batches: { status: string }[] }).batches.filter((b) => b.status !== "included").length;
      }
      last = { ok: missing === 0, size, missing, elapsedMs: Math.round(performance.now() - t0) };
    } catch (e) {
      last = { ...last, ok: false, elapsedMs: Math.round(performance.now() - t0), note: (e as Error).message };
    }
    if (last.ok || Date.now() > until) return last;
    await sleep(1000);
  }
}

/** Polls the node's /hq/v1/cluster until its replication runs and is not rebuilding (a full member again). */
async function waitReady(url: string, timeoutMs: number): Promise<string | null> {
  const until = Date.now() + timeoutMs;
  let last = "no answer";
  for (;;) {
    try {
      const a = await fetchJson(`${url}/hq/v1/cluster`, {}, 2_000);
      const r = (a.body as { replication?: { state?: string; rebuilding?: boolean } } | null)?.replication;
      if (r?.state === "running" && r.rebuilding === false) return null;
      last = `state ${String(r?.state)}, rebuilding ${String(r?.rebuilding)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > until) return `${url} not ready ${timeoutMs / 1000} s after the fault: ${last}`;
    await sleep(200);
  }
}

export interface CampaignOptions {
  seconds: number;
  seed: number;
}

/** Runs the campaign; answers the report (exitCode 1 on any loss, duplicate, wrong value, non-convergence or digest mismatch). */
export async function runCampaign(ctx: ScenarioContext, opts: CampaignOptions): Promise<CampaignReport> {
  const c: ClusterFile = readClusterFile(ctx.dir);
  const ids = c.nodes.map((n) => n.id);
  const urls = c.nodes.map((n) => n.http);
  const ctl = faultControl(c);
  const plan = planCampaign(opts.seed, opts.seconds, ids).filter((f) => ctl !== null || (f.kind !== "delay" && f.kind !== "partition"));
  ctx.log(`campaign: seed ${opts.seed}, ${opts.seconds} s, ${plan.length} faults planned${ctl === null ? " (no fault proxies: no delay or partition)" : ""}:`);
  for (const f of plan) ctx.log(`  ${describeFault(f)}`);

  const tag = runId();
  const writers = ["a", "b"].map(
    (w, i) =>
      new LoggingWriter({
        endpoints: i === 0 ? urls : [...urls.slice(1), urls[0]!],
        writer: `campaign-${opts.seed}-${tag}-${w}`,
        seed: (opts.seed * 2 + i) % 1_000_000,
        rotateEveryBatch: true,
        intervalMs: 20,
        requestTimeoutMs: 5_000,
        batchDeadlineMs: 30_000,
      }),
  );
  for (const w of writers) w.start();

  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const outcomes: FaultOutcome[] = [];
  const nodeBusy = new Map<string, Promise<void>>(ids.map((id) => [id, Promise.resolve()]));
  let disruptive: Promise<void> = Promise.resolve();
  const running: Promise<void>[] = [];
  let skipped = 0;
  for (const f of plan) {
    const wait = f.atMs - now();
    if (wait > 0) await sleep(wait);
    if (now() >= opts.seconds * 1000) break;
    // Never two faults on one node, never two nodes out at once: wait for the faults this one must follow.
    const before = [...f.nodes.map((id) => nodeBusy.get(id)!), ...(DISRUPTIVE.has(f.kind) ? [disruptive] : [])];
    const p = (async () => {
      await Promise.all(before);
      if (now() >= opts.seconds * 1000) {
        ctx.log(`campaign: #${f.n} ${f.kind} not started: the run ended while it waited for the faults before it`);
        skipped++;
        return;
      }
      const startedAtMs = now();
      const o: FaultOutcome = { n: f.n, kind: f.kind, target: f.links?.join(",") ?? f.nodes.join(","), plannedAtMs: f.atMs, startedAtMs: Math.round(startedAtMs), endedAtMs: 0, ok: true };
      ctx.log(`campaign: start ${describeFault(f)} (at t+${(startedAtMs / 1000).toFixed(1)}s)`);
      try {
        await inject(ctx, ctl, f);
      } catch (e) {
        o.ok = false;
        o.error = `#${f.n} ${f.kind} ${o.target}: ${(e as Error).message.split("\n")[0]!.slice(0, 200)}`;
        ctx.log(`campaign: ${o.error}`);
      }
      // A restarted node counts as down until it is a full member again (replication running, not rebuilding).
      if (f.kind === "kill-node" || f.kind === "corrupt-wal" || f.kind === "kill-etcd") {
        const url = urls[ids.indexOf(f.nodes[0]!)]!;
        const w = await waitReady(url, 120_000);
        if (w !== null) {
          ctx.log(`campaign: #${f.n}: ${w}`);
          if (o.ok) {
            o.ok = false;
            o.error = `#${f.n} ${f.kind} ${o.target}: ${w}`;
          }
        }
      }
      o.endedAtMs = Math.round(now());
      outcomes.push(o);
    })();
    for (const id of f.nodes) nodeBusy.set(id, p);
    if (DISRUPTIVE.has(f.kind)) disruptive = p;
    running.push(p);
  }
  const remaining = opts.seconds * 1000 - now();
  if (remaining > 0) await sleep(remaining);
  await Promise.all(running);
  ctx.log(`campaign: ${outcomes.length} faults done at t+${(now() / 1000).toFixed(1)}s; stopping the writers`);

  const ledgers = await Promise.all(writers.map((w) => w.stop()));
  const stats = writers.map((w) => w.stats());
  const h0 = performance.now();
  let healError: string | undefined;
  try {
    await heal(ctx);
  } catch (e) {
    // A node that will not come ready is what the checks below should report on, not a reason to skip them.
    healError = (e as Error).message.split("\n")[0]!.slice(0, 300);
    ctx.log(`campaign: heal: ${healError}`);
  }
  const healMs = Math.round(performance.now() - h0);
  const conv = await waitConverged(urls, ledgers, { timeoutMs: 60_000, pollMs: 250, ignoreForeignWriters: true });
  const report: DurabilityReport = conv.converged ? await checkDurability(urls, ledgers, { ignoreForeignWriters: true }) : conv.last;
  const sum = (k: "lost" | "duplicates" | "wrongValues" | "extrasNotAllowed"): number => report.nodes.reduce((a, n) => a + n[k], 0);

  // Every node's window digests the same (polled: a replica may still be applying the last commits).
  let digestsEqual = false;
  let digestNote: string | undefined;
  const dUntil = Date.now() + 30_000;
  for (;;) {
    try {
      const ds = await digestsOf(urls);
      digestsEqual = ds.every((d) => d === ds[0]);
      digestNote = undefined;
    } catch (e) {
      digestNote = (e as Error).message;
    }
    if (digestsEqual || Date.now() > dUntil) break;
    await sleep(500);
  }

  const ackedIds = ledgers.flatMap((l) => l.batches.flatMap((b) => (b.outcome === "acked" && b.receipt !== undefined ? [b.receipt.batchId] : [])));
  const log = await checkLog(urls, ackedIds, 60_000);

  const byKind = Object.fromEntries(FAULT_KINDS.map((k) => [k, outcomes.filter((o) => o.kind === k && o.ok).length])) as Record<FaultKind, number>;
  const failed = outcomes.filter((o) => !o.ok);
  const lost = sum("lost");
  const duplicates = sum("duplicates");
  const wrongValues = sum("wrongValues");
  const pass = conv.converged && lost === 0 && duplicates === 0 && wrongValues === 0 && report.ok && digestsEqual && log.ok;
  const r: CampaignReport = {
    seed: opts.seed,
    seconds: opts.seconds,
    schedule: plan.map(describeFault),
    faultsPlanned: plan.length,
    faultsInjected: outcomes.length - failed.length,
    faultsFailed: failed.length,
    faultsNotStarted: skipped,
    faultsByKind: byKind,
    faultErrors: failed.map((o) => o.error!),
    writers: stats,
    ackedBatches: stats.reduce((a, s) => a + s.ackedBatches, 0),
    ackedPoints: stats.reduce((a, s) => a + s.ackedPoints, 0),
    unknownBatches: stats.reduce((a, s) => a + s.unknownBatches, 0),
    refusedBatches: stats.reduce((a, s) => a + s.refusedBatches, 0),
    retries: stats.reduce((a, s) => a + s.retries, 0),
    longestFailoverMs: Math.round(Math.max(...stats.map((s) => s.longestFailoverMs))),
    healMs,
    ...(healError !== undefined ? { healError } : {}),
    converged: conv.converged,
    convergeMs: Math.round(conv.elapsedMs),
    lost,
    duplicates,
    wrongValues,
    extrasNotAllowed: sum("extrasNotAllowed"),
    durabilityOk: report.ok,
    problems: report.problems,
    digestsEqual,
    ...(digestNote !== undefined ? { digestNote } : {}),
    log,
    verdict: pass ? "PASS" : "FAIL",
    exitCode: pass ? 0 : 1,
  };
  return r;
}

export function formatCampaign(r: CampaignReport): string {
  const kinds = FAULT_KINDS.map((k) => `${k} ${r.faultsByKind[k]}`).join(", ");
  return [
    `campaign seed ${r.seed}, ${r.seconds} s`,
    `faults injected   ${r.faultsInjected} of ${r.faultsPlanned} planned (${kinds})${r.faultsFailed > 0 ? `; ${r.faultsFailed} failed to inject` : ""}`,
    `writes acked      ${r.ackedBatches} batches / ${r.ackedPoints} points (${r.retries} retries, ${r.refusedBatches} refused)`,
    `unknown outcomes  ${r.unknownBatches} batches`,
    `longest failover  ${r.longestFailoverMs} ms`,
    `heal              ${r.healMs} ms`,
    `converged         ${r.converged} in ${r.convergeMs} ms`,
    `acked points lost ${r.lost}`,
    `duplicates        ${r.duplicates}`,
    `wrong values      ${r.wrongValues}`,
    `digests equal     ${r.digestsEqual}${r.digestNote !== undefined ? ` (${r.digestNote})` : ""}`,
    `merkle log        ${r.log.ok ? `every acked batch in checkpoint ${r.log.size} on every node (${r.log.elapsedMs} ms)` : `NOT OK: ${r.log.missing} acked batches missing${r.log.note !== undefined ? ` (${r.log.note})` : ""}`}`,
    ...(r.problems.length > 0 ? [`problems          ${r.problems.slice(0, 5).join("; ")}`] : []),
    ...(r.faultErrors.length > 0 ? [`fault errors      ${r.faultErrors.slice(0, 5).join("; ")}`] : []),
    `verdict           ${r.verdict}`,
    "",
  ].join("\n");
}
