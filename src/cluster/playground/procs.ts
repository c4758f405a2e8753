// Process handling of the playground: detached children with their output in
// log files, liveness by pid (a zombie or a reused pid does not count),
// stopping by pid with a deadline, and health polling with a deadline.

import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Starts a process in its own session (detached) with stdout and stderr
 * appended to `logFile`, so it outlives the command that started it.
 * Returns its pid.
 */
export function spawnDetached(cmd: string, args: readonly string[], logFile: string, env?: NodeJS.ProcessEnv): number {
  const fd = openSync(logFile, "a");
  try {
    const child = spawn(cmd, [...args], { detached: true, stdio: ["ignore", fd, fd], env: env ?? process.env });
    child.on("error", () => undefined); // reported through the pid check / health wait
    child.unref();
    if (child.pid === undefined) throw new Error(`cannot start ${cmd} (is it installed and on PATH?)`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Whether pid is a live (not zombie) process whose command line contains `marker` (guards against pid reuse). */
export function isAlive(pid: number | null | undefined, marker?: string): boolean {
  if (pid === null || pid === undefined || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return false;
    if (marker !== undefined) {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (!cmdline.includes(marker)) return false;
    }
  } catch {
    // no /proc (not Linux): kill(pid, 0) is all we have
  }
  return true;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Sends `signal` to pid (only if it is alive and matches marker) and waits
 * until it is gone; after deadlineMs sends SIGKILL and waits again.
 * Returns false if the process was not running.
 */
export async function stopPid(pid: number | null | undefined, marker: string | undefined, signal: NodeJS.Signals = "SIGTERM", deadlineMs = 10_000): Promise<boolean> {
  if (!isAlive(pid, marker)) return false;
  try {
    process.kill(pid!, signal);
  } catch {
    return false;
  }
  const until = Date.now() + deadlineMs;
  while (isAlive(pid, marker)) {
    if (Date.now() > until && signal !== "SIGKILL") {
      try {
        process.kill(pid!, "SIGKILL");
      } catch {
        // already gone
      }
      signal = "SIGKILL";
    }
    if (Date.now() > until + 5000) throw new Error(`process ${pid} did not exit after SIGKILL`);
    await sleep(50);
  }
  return true;
}

/** Whether 127.0.0.1:port can be bound now. */
export function portFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

export interface HealthResult {
  ok: boolean;
  detail: string;
}

/** GET url/health once: etcd answers {"health":"true"}, a node 200. */
export async function checkHealth(baseUrl: string, kind: "etcd" | "node", timeoutMs = 1000): Promise<HealthResult> {
  try {
    const res = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.text()).trim();
    const ok = res.status === 200 && (kind === "node" || /"health":\s*"true"/.test(body));
    return { ok, detail: `HTTP ${res.status} ${body.slice(0, 200)}` };
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    return { ok: false, detail: cause ?? (e as Error).message };
  }
}

/**
 * Polls health until OK or the deadline; fails early if the process died.
 * Returns null when healthy, else a description of why not.
 */
export async function waitHealthy(baseUrl: string, kind: "etcd" | "node", pid: number, marker: string, deadlineMs: number): Promise<string | null> {
  const until = Date.now() + deadlineMs;
  let last = "no answer yet";
  for (let delay = 50; ; delay = Math.min(250, delay * 2)) {
    const h = await checkHealth(baseUrl, kind);
    if (h.ok) return null;
    last = h.detail;
    if (!isAlive(pid, marker)) return `process ${pid} exited (last health: ${last})`;
    if (Date.now() > until) return `not healthy after ${deadlineMs} ms (last: ${last})`;
    await sleep(delay);
  }
}

/** The last `bytes` of a log file ("" if missing). */
export function logTail(file: string, bytes = 4000): string {
  try {
    const s = readFileSync(file, "utf8");
    return s.slice(-bytes);
  } catch {
    return "";
  }
}

export interface ReplicationProbe {
  /** running (and rebuilt: it votes and takes writes), rebuilding, joining (no shard map yet), opening, stopped, failed; or down/unknown. */
  state: string;
  ready: boolean;
  /** The raw `replication` object of GET /hq/v1/cluster, or the error. */
  detail: string;
}

/** Replication state as a word: "running" only once rebuilt; a running replica still rebuilding from its peers is "rebuilding". */
export function replicationState(r: { state?: unknown; rebuilding?: unknown } | undefined): string {
  if (r === undefined || typeof r.state !== "string") return "unknown";
  if (r.state === "running" && r.rebuilding !== false) return "rebuilding";
  return r.state;
}

/** GET url/hq/v1/cluster once: a node is ready for writes when replication.state is "running" and it is not rebuilding. */
export async function checkReplication(baseUrl: string, timeoutMs = 2000): Promise<ReplicationProbe> {
  try {
    const res = await fetch(`${baseUrl}/hq/v1/cluster`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as { mode?: string; replication?: { state?: unknown; rebuilding?: unknown } };
    if (body.mode === "standalone") return { state: "standalone", ready: true, detail: "standalone node" };
    const state = res.status === 200 ? replicationState(body.replication) : "unknown";
    return { state, ready: state === "running", detail: `HTTP ${res.status} ${JSON.stringify(body.replication ?? null).slice(0, 300)}` };
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    return { state: "down", ready: false, detail: cause ?? (e as Error).message };
  }
}

/**
 * Polls a node's replication until it runs and has rebuilt (the node takes writes only then), or the deadline;
 * fails early if the process died or its replication failed. Returns null when ready, else why not.
 */
export async function waitReplicationReady(baseUrl: string, pid: number, marker: string, deadlineMs: number): Promise<string | null> {
  const until = Date.now() + deadlineMs;
  let last: ReplicationProbe = { state: "unknown", ready: false, detail: "no answer yet" };
  for (let delay = 50; ; delay = Math.min(250, delay * 2)) {
    last = await checkReplication(baseUrl);
    if (last.ready) return null;
    if (!isAlive(pid, marker)) return `process ${pid} exited (last replication state: ${last.state}, ${last.detail})`;
    if (last.state === "failed" || last.state === "stopped") return `replication ${last.state}: ${last.detail}`;
    if (Date.now() > until) {
      const why =
        last.state === "joining"
          ? " (no shard map naming it yet: is etcd up with a quorum?)"
          : last.state === "rebuilding"
            ? " (a replica rebuilding needs an answer from every peer of its shard: are they all up?)"
            : "";
      return `replication not ready after ${deadlineMs} ms: state ${last.state}${why}; last: ${last.detail}`;
    }
    await sleep(delay);
  }
}
