// The 3-node playground (`hqts cluster up --nodes 3`: 3 etcd members + 3
// nodes, replication factor 3) run from a given CLI build, as
// test/helpers/playground.ts runs it from dist/ (whose port picking and
// cluster.json reading it reuses). Stopped by pid: SIGTERM to `cluster up`,
// which stops its nodes and etcd members, then SIGKILL to any of them still
// running (each pid checked against its command line, against pid reuse),
// then the directory is removed.

import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, pickBase, readClusterFile, type Entry } from "../../test/helpers/playground.js";
import { delay } from "./http.js";

export interface BenchPlayground {
  readonly dir: string;
  readonly up: ChildProcess;
  nodes(): Entry[];
  output(): string;
  /** Stops everything it started and removes its directory. */
  cleanup(): Promise<void>;
  /** Synchronous last resort at exit: SIGKILL to every pid it knows. */
  killNow(): void;
}

/** alive(pid), and its command line contains `marker`. */
function ours(pid: number | null, marker: string): pid is number {
  if (!alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(marker);
  } catch {
    return false;
  }
}

function ownPids(dir: string): number[] {
  try {
    return readClusterFile(dir).nodes.flatMap((n) => [
      ...(ours(n.pid, `--data ${n.dataDir} `) ? [n.pid] : []),
      ...(ours(n.etcd.pid, `--data-dir=${n.etcd.dataDir} `) ? [n.etcd.pid] : []),
    ]);
  } catch {
    return []; // no cluster.json yet
  }
}

export async function startBenchPlayground(cliMain: string, readyTimeoutMs: number): Promise<BenchPlayground> {
  const dir = await mkdtemp(join(tmpdir(), "hqts-playground-"));
  const base = await pickBase();
  let out = "";
  const up = spawn(process.execPath, [cliMain, "cluster", "up", "--nodes", "3", "--dir", dir, "--base-port", String(base)], { stdio: ["ignore", "pipe", "pipe"] });
  up.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  up.stderr.setEncoding("utf8").on("data", (s: string) => (out += s));
  const upRunning = (): boolean => up.exitCode === null && up.signalCode === null;
  let cleaned = false;
  const pg: BenchPlayground = {
    dir,
    up,
    nodes: () => readClusterFile(dir).nodes,
    output: () => out,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      if (upRunning()) up.kill("SIGTERM");
      // `cluster up` stops its nodes (SIGTERM, their own deadline) and etcd members; wait for that, then SIGKILL what is left.
      const deadline = performance.now() + 45_000;
      while ((upRunning() || ownPids(dir).length > 0) && performance.now() < deadline) await delay(100);
      if (upRunning()) up.kill("SIGKILL");
      const left = ownPids(dir);
      for (const p of left) process.kill(p, "SIGKILL");
      const killDeadline = performance.now() + 15_000;
      while ((left.some((p) => alive(p)) || upRunning()) && performance.now() < killDeadline) await delay(50);
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
    killNow() {
      if (cleaned) return;
      if (upRunning()) up.kill("SIGKILL");
      for (const p of ownPids(dir)) process.kill(p, "SIGKILL");
    },
  };
  const deadline = performance.now() + readyTimeoutMs;
  while (!out.includes("Ctrl-C stops everything")) {
    if (!upRunning() || performance.now() > deadline) {
      const why = upRunning() ? "not ready in time" : "exited early";
      const text = out;
      await pg.cleanup();
      throw new Error(`cluster up ${why}:\n${text}`);
    }
    await delay(100);
  }
  return pg;
}
