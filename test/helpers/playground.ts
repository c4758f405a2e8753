// Starts a real playground (`hqts cluster up`: 3 etcd members + 3 nodes) for a
// test on ports it picks, and stops every process it started, by pid.

import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI_MAIN } from "./node-proc.js";

export interface Entry {
  id: string;
  http: string;
  pid: number | null;
  dataDir: string;
  walDir: string;
  etcd: { name: string; clientUrl: string; peerUrl: string; advertisePeerUrl?: string; pid: number | null; dataDir: string };
  advertise?: string;
}

export const readClusterFile = (dir: string): { nodes: Entry[]; nodeArgs?: string[] } =>
  JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as { nodes: Entry[]; nodeArgs?: string[] };

/** alive(pid), and its command line still contains `marker` (a pid reused by another process is not ours). */
function ours(pid: number | null, marker: string): boolean {
  if (!alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(marker);
  } catch {
    return false;
  }
}

/** True while the pid runs and is not a zombie. */
export function alive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    return st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

const portFree = (p: number): Promise<boolean> =>
  new Promise((r) => {
    const s = createServer();
    s.once("error", () => r(false));
    s.listen(p, "127.0.0.1", () => s.close(() => r(true)));
  });

/**
 * A base port B with B..B+22 free (the playground's scheme: B+i, B+10+i, B+20+i); with `faultProxy` also the
 * proxies' B+30+i, B+40+i and the control port B+50.
 */
/**
 * Where a playground's fixed ports may go: outside the kernel's ephemeral range, which every outgoing connection
 * (peer traffic, etcd clients) draws from, so a port found free cannot be taken by one before the node binds it.
 * The span leaves room for the highest offset a base uses (about 90).
 */
function fixedPortSpan(): [number, number] {
  let ephemeral: [number, number] = [32_768, 60_999]; // Linux's default
  try {
    const [a, b] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (Number.isInteger(a) && Number.isInteger(b)) ephemeral = [a!, b!];
  } catch {
    // not Linux: keep the default
  }
  if (ephemeral[0] - 100 > 20_000) return [20_000, ephemeral[0] - 100];
  return [ephemeral[1] + 1, 65_400];
}

export async function pickBase(faultProxy = false): Promise<number> {
  const offsets = faultProxy ? [0, 10, 20, 40] : [0, 10, 20];
  for (let tries = 0; tries < 50; tries++) {
    const [lo, hi] = fixedPortSpan();
    const base = lo + Math.floor(Math.random() * (hi - lo));
    let ok = true;
    for (let i = 0; i < 3 && ok; i++) for (const off of offsets) if (!(await portFree(base + off + i))) ok = false;
    if (ok && faultProxy && !(await portFree(base + 50))) ok = false;
    // The node-pair links "nI->nJ": B + 60 + 10i + j (docs/playground.md).
    for (let i = 0; i < 3 && ok && faultProxy; i++) for (let j = 0; j < 3 && ok; j++) if (i !== j && !(await portFree(base + 60 + 10 * i + j))) ok = false;
    if (ok) return base;
  }
  throw new Error("no free port range found");
}

export async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })).status === 200;
  } catch {
    return false;
  }
}

/** `hqts ARGS` as a child process, without blocking the test's event loop; killed after timeoutMs. */
export function cliAsync(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export const cli = (...args: string[]): SpawnSyncReturns<string> => spawnSync(process.execPath, [CLI_MAIN, ...args], { encoding: "utf8", timeout: 45_000 });

export interface Playground {
  readonly dir: string;
  readonly base: number;
  readonly up: ChildProcess;
  output(): string;
  nodes(): Entry[];
  /** SIGTERM to `cluster up`; resolves with its exit code. */
  stop(): Promise<number | null>;
  /** Kills whatever the playground still runs (by the pids in cluster.json) and removes its directory. */
  cleanup(): Promise<void>;
}

export interface PlaygroundOptions {
  /** How long `cluster up` may take to report ready (default 40 s). */
  readyTimeoutMs?: number;
  /** Extra flags for every node (`cluster up --node-args`), e.g. ["--head-samples-max", "100"]. */
  nodeArgs?: string[];
  /** `cluster up --fault-proxy`: node-to-node and etcd peer traffic through link proxies (hqts cluster fault|heal). */
  faultProxy?: boolean;
}

/**
 * `hqts cluster up` on a fresh directory and ports it picks; resolves once `up` reports ready, which is after every
 * node's replication runs (so a first write is not answered 503). A number is the old positional readyTimeoutMs.
 */
export async function startPlayground(options: PlaygroundOptions | number = {}): Promise<Playground> {
  const opts: PlaygroundOptions = typeof options === "number" ? { readyTimeoutMs: options } : options;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 40_000;
  const dir = await mkdtemp(join(tmpdir(), "hqts-playground-"));
  const base = await pickBase(opts.faultProxy === true);
  let out = "";
  const args = [CLI_MAIN, "cluster", "up", "--nodes", "3", "--dir", dir, "--base-port", String(base)];
  if (opts.nodeArgs !== undefined && opts.nodeArgs.length > 0) args.push("--node-args", opts.nodeArgs.join(" "));
  if (opts.faultProxy === true) args.push("--fault-proxy");
  const up = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  up.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  up.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
  const exited = new Promise<number | null>((r) => up.once("exit", (code) => r(code)));
  const pg: Playground = {
    dir,
    base,
    up,
    output: () => out,
    nodes: () => readClusterFile(dir).nodes,
    async stop() {
      if (up.exitCode === null) up.kill("SIGTERM");
      return exited;
    },
    async cleanup() {
      if (up.exitCode === null) up.kill("SIGTERM");
      const killed: number[] = [];
      try {
        // By pid, if it still names its data dir: a test may kill a process behind cluster.json's back (and its pid be reused).
        for (const n of readClusterFile(dir).nodes)
          for (const [p, marker] of [[n.pid, `--data ${n.dataDir} `], [n.etcd.pid, `--data-dir=${n.etcd.dataDir} `]] as const)
            if (ours(p, marker)) {
              process.kill(p!, "SIGKILL");
              killed.push(p!);
            }
      } catch {
        // no cluster.json yet
      }
      // Wait until they are gone (and `up` has exited) before removing the directory they write into.
      const deadline = Date.now() + 15_000;
      const upRunning = (): boolean => up.exitCode === null && up.signalCode === null;
      while ((killed.some((p) => alive(p)) || upRunning()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (upRunning()) up.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
  const deadline = Date.now() + readyTimeoutMs;
  while (!out.includes("Ctrl-C stops everything")) {
    if (up.exitCode !== null || Date.now() > deadline) {
      await pg.cleanup();
      throw new Error(`cluster up ${up.exitCode !== null ? "exited early" : "not ready in time"}:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return pg;
}

/**
 * Polls every node's /hq/v1/cluster until its replication runs and has rebuilt (a fresh replica votes only then).
 * `cluster up` and `cluster start-node` wait for this themselves now, so after them it returns at the first poll;
 * it stays for nodes restarted some other way, and as a cheap check.
 */
export async function waitReplicationReady(urls: readonly string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(
      urls.map(async (u) => {
        try {
          const c = (await (await fetch(`${u}/hq/v1/cluster`, { signal: AbortSignal.timeout(2000) })).json()) as { replication?: { state?: string; rebuilding?: boolean } };
          return c.replication?.state === "running" && c.replication.rebuilding === false;
        } catch {
          return false;
        }
      }),
    );
    if (states.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error(`replication not ready on every node after ${timeoutMs} ms: ${states.join(", ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
