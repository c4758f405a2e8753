// The three targets of bench/write-shapes.ts, started one at a time on a fresh
// data dir: VictoriaMetrics single node, a standalone `hqts node`, and the
// 3-node HQ-TS playground (replication factor 3). Each says which processes are
// its own (for the CPU figures), how to flush it and where its data is; each is
// stopped by pid (procs.ts for the first two; for the cluster, lib/playground.ts
// by `cluster up`'s pid and the pids in its cluster.json). Both HQ-TS targets
// run the run's private copy of the build (lib/hq-build.ts).

import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { waitReplicationReady } from "../../test/helpers/playground.js";
import type { ProcGroup } from "./cpu.js";
import type { HqBuild } from "./hq-build.js";
import { startBenchPlayground, type BenchPlayground } from "./playground.js";
import { diskUsage, HqtsDriver, VictoriaMetricsDriver, type DbRun, type DiskUsage } from "./dbs.js";
import { delay, excerpt, HttpClient } from "./http.js";

export type TargetName = "vm" | "standalone" | "cluster";
export const TARGET_NAMES: readonly TargetName[] = ["vm", "standalone", "cluster"];

export interface Replica {
  /** "vm", "standalone", "n1", ... */
  name: string;
  url: string;
  dataDir: string;
}

export interface FlushOutcome {
  seconds: number;
  details: Record<string, unknown>;
}

export interface Target {
  readonly name: TargetName;
  readonly kind: "vm" | "hq";
  readonly label: string;
  /** Write URLs, in round-robin order (one for vm and standalone, the 3 nodes for the cluster). */
  readonly urls: readonly string[];
  readonly replicas: readonly Replica[];
  readonly startupMs: number;
  /** The target's processes by group: the database itself; for the cluster also its etcd members and `cluster up`. */
  procGroups(): ProcGroup[];
  /** Names of the groups that are the database proper (the rest is the cluster's support: etcd, supervisor). */
  readonly dbGroup: string;
  /** To the final on-disk form (VM: force_flush + force_merge; HQ-TS: /hq/v1/admin/flush on every node), then wait for the data dirs to settle. */
  flushForDisk(data: { minTs: number; maxTs: number }): Promise<FlushOutcome>;
  /** The flush the flush shape triggers mid-run: one request per node, concurrently (VM: /internal/force_flush). */
  triggerFlush(): Promise<FlushOutcome>;
  /** Makes everything written visible to reads (VM: force_flush; HQ-TS: already is). */
  makeSearchable(): Promise<void>;
  /** Log files of the target's processes (copied out for the cluster). */
  logFiles(): { name: string; path: string }[];
  stop(): Promise<void>;
  /** Synchronous last resort at process exit: SIGKILL to every process of the target. */
  killNow(): void;
}

const SETTLE_DEADLINE_MS = 600_000;

/** Polls until every dir's size is unchanged over `stablePolls` polls `pollMs` apart (and `quiet()` holds); throws after the deadline. */
export async function waitDirsSettled(dirs: readonly string[], quiet: () => Promise<boolean> = () => Promise.resolve(true), pollMs = 250, stablePolls = 4): Promise<number> {
  const t0 = performance.now();
  let last = "";
  let stable = 0;
  while (performance.now() - t0 < SETTLE_DEADLINE_MS) {
    const q = await quiet();
    const sizes = dirs.map((d) => diskUsage(d).bytes).join(",");
    if (q && sizes === last) stable++;
    else stable = 0;
    last = sizes;
    if (stable >= stablePolls) return performance.now() - t0;
    await delay(pollMs);
  }
  throw new Error(`data dirs did not settle within ${SETTLE_DEADLINE_MS} ms: ${dirs.join(", ")}`);
}

async function hqFlush(url: string): Promise<unknown> {
  const c = new HttpClient(url);
  try {
    const r = await c.send("POST", "/hq/v1/admin/flush", Buffer.alloc(0), {}, 600_000);
    if (r.status < 200 || r.status >= 300) throw new Error(`POST ${url}/hq/v1/admin/flush: HTTP ${r.status} ${excerpt(r.body)}`);
    try {
      return JSON.parse(r.body.toString("utf8")) as unknown;
    } catch {
      return excerpt(r.body, 2000);
    }
  } finally {
    c.close();
  }
}

// ---- VictoriaMetrics and standalone HQ-TS: bench/lib/dbs.ts's drivers ----------------

function fromDbRun(name: "vm" | "standalone", run: DbRun): Target {
  const url = run.client.baseUrl;
  const replica: Replica = { name, url, dataDir: run.dataDir };
  const groupName = name === "vm" ? "victoria-metrics" : "hqts node";
  return {
    name,
    kind: run.kind,
    label: `${run.label}${name === "standalone" ? " standalone" : " single node"} (pid ${run.proc.pid})`,
    urls: [url],
    replicas: [replica],
    startupMs: run.startupMs,
    dbGroup: groupName,
    procGroups: () => [{ name: groupName, pids: [run.proc.pid] }],
    async flushForDisk(data) {
      const r = await run.flush(data);
      return { seconds: r.seconds, details: r.details };
    },
    async triggerFlush() {
      const t0 = performance.now();
      if (name === "vm") {
        const r = await run.client.get("/internal/force_flush", 120_000);
        if (r.status !== 200) throw new Error(`VictoriaMetrics force_flush: HTTP ${r.status} ${excerpt(r.body)}`);
        return { seconds: (performance.now() - t0) / 1000, details: {} };
      }
      const answer = await hqFlush(url);
      return { seconds: (performance.now() - t0) / 1000, details: { answer } };
    },
    async makeSearchable() {
      if (name !== "vm") return;
      const r = await run.client.get("/internal/force_flush", 120_000);
      if (r.status !== 200) throw new Error(`VictoriaMetrics force_flush: HTTP ${r.status} ${excerpt(r.body)}`);
    },
    logFiles: () => [{ name: groupName, path: run.proc.logPath }],
    stop: () => run.stop(),
    killNow: () => run.proc.killNow(),
  };
}

export async function startVm(dataDir: string, logPath: string): Promise<Target> {
  return fromDbRun("vm", await new VictoriaMetricsDriver().start(dataDir, logPath, 1));
}

export async function startStandalone(repoRoot: string, build: HqBuild, dataDir: string, logPath: string): Promise<Target> {
  return fromDbRun("standalone", await new HqtsDriver(repoRoot, build.wrapper).start(dataDir, logPath, 1));
}

export function versions(repoRoot: string): { vm: string; hq: string } {
  return { vm: new VictoriaMetricsDriver().version(), hq: new HqtsDriver(repoRoot).version() };
}

// ---- the 3-node playground --------------------------------------------------------

let activePlayground: BenchPlayground | null = null;

/** Stops the running playground, if any (for the harness's signal handlers). */
export async function cleanupPlayground(): Promise<void> {
  const pg = activePlayground;
  activePlayground = null;
  if (pg !== null) await pg.cleanup();
}

export async function startCluster(build: HqBuild, logCopyDir: string): Promise<Target> {
  const t0 = performance.now();
  const pg = await startBenchPlayground(build.cliMain, 90_000);
  activePlayground = pg;
  try {
    const nodes = pg.nodes();
    const urls = nodes.map((n) => n.http);
    await waitReplicationReady(urls, 60_000);
    const startupMs = performance.now() - t0;
    const pids = (f: (n: (typeof nodes)[number]) => number | null, what: string): number[] =>
      nodes.map((n) => {
        const p = f(n);
        if (p === null) throw new Error(`playground: no pid for ${what} of ${n.id} in cluster.json`);
        return p;
      });
    const nodePids = pids((n) => n.pid, "the node");
    const etcdPids = pids((n) => n.etcd.pid, "the etcd member");
    const upPid = pg.up.pid;
    const replicas: Replica[] = nodes.map((n) => ({ name: n.id, url: n.http, dataDir: n.dataDir }));
    const logDir = join(pg.dir, "logs");
    const logFiles = (): { name: string; path: string }[] => (existsSync(logDir) ? readdirSync(logDir).map((f) => ({ name: f.replace(/\.log$/, ""), path: join(logDir, f) })) : []);
    return {
      name: "cluster",
      kind: "hq",
      label: `HQ-TS 3-node cluster, RF=3, round-robin (nodes ${nodes.map((n) => `${n.id} pid ${n.pid}`).join(", ")})`,
      urls,
      replicas,
      startupMs,
      dbGroup: "hqts nodes",
      procGroups: () => [
        { name: "hqts nodes", pids: nodePids },
        { name: "etcd", pids: etcdPids },
        ...(upPid !== undefined ? [{ name: "cluster up", pids: [upPid] }] : []),
      ],
      async flushForDisk() {
        const t = performance.now();
        const answers = await Promise.all(urls.map((u) => hqFlush(u)));
        const settleMs = await waitDirsSettled(replicas.map((r) => r.dataDir));
        return { seconds: (performance.now() - t) / 1000, details: { answers, settleWaitMs: Math.round(settleMs) } };
      },
      async triggerFlush() {
        const t = performance.now();
        const answers = await Promise.all(urls.map((u) => hqFlush(u)));
        return { seconds: (performance.now() - t) / 1000, details: { answers } };
      },
      makeSearchable: () => Promise.resolve(),
      logFiles,
      async stop() {
        // Keep the logs: the playground's directory goes with the cleanup.
        mkdirSync(logCopyDir, { recursive: true });
        for (const f of logFiles()) copyFileSync(f.path, join(logCopyDir, `${f.name}.log`));
        await cleanupPlayground();
      },
      killNow: () => pg.killNow(),
    };
  } catch (e) {
    await cleanupPlayground();
    throw e;
  }
}

// ---- helpers used by the harness -------------------------------------------------

export function replicaDisk(r: Replica): DiskUsage {
  return diskUsage(r.dataDir);
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

export interface LogIssues {
  file: string;
  warnings: number;
  errors: number;
  /** Up to 8 distinct messages (level >= warn, or any non-JSON line), with counts. */
  samples: { level: string; msg: string; count: number }[];
}

/** Counts pino warn/error lines (HQ-TS) or any line (VictoriaMetrics runs with -loggerLevel=ERROR; etcd's own levels). */
export function scanLog(name: string, path: string): LogIssues {
  const out: LogIssues = { file: name, warnings: 0, errors: 0, samples: [] };
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return out;
  }
  const seen = new Map<string, { level: string; msg: string; count: number }>();
  const note = (level: string, msg: string): void => {
    const key = `${level} ${msg}`;
    const e = seen.get(key);
    if (e !== undefined) e.count++;
    else if (seen.size < 8) seen.set(key, { level, msg, count: 1 });
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let level = "";
    let msg = line.slice(0, 200);
    if (line.startsWith("{")) {
      try {
        const o = JSON.parse(line) as { level?: unknown; msg?: unknown; err?: { message?: unknown } };
        if (typeof o.level === "number") level = o.level >= 50 ? "error" : o.level >= 40 ? "warn" : "";
        else if (typeof o.level === "string") level = ["error", "fatal", "panic"].includes(o.level) ? "error" : o.level === "warn" ? "warn" : "";
        msg = `${typeof o.msg === "string" ? o.msg : ""}${typeof o.err?.message === "string" ? `: ${o.err.message}` : ""}`.slice(0, 200);
      } catch {
        level = "error";
      }
    } else if (/\berror\b|panic|fatal/i.test(line)) level = "error";
    else if (/\bwarn/i.test(line)) level = "warn";
    if (level === "error") out.errors++;
    else if (level === "warn") out.warnings++;
    else continue;
    note(level, msg);
  }
  out.samples = [...seen.values()];
  return out;
}
