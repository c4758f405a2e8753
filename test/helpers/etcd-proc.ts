// Starts REAL etcd members (Debian's /usr/bin/etcd) on free loopback ports in
// a temporary directory: one member, or a 3-member cluster. Waits for
// /health and stops them by pid.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./node-proc.js";

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  pid(): number;
  log(): string;
  kill(signal?: NodeJS.Signals): void;
  /** Resolves once the process is gone. */
  exited(): Promise<void>;
  /** Starts the member again on its kept data dir (initial-cluster-state existing). */
  restart(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  readonly endpoints: string[];
  readonly dir: string;
  /** SIGTERM every member, SIGKILL after a deadline; removes the temp dir. */
  stop(): Promise<void>;
}

const clusters = new Set<EtcdCluster>();

export async function stopAllEtcd(): Promise<void> {
  await Promise.all([...clusters].map((c) => c.stop().catch(() => undefined)));
}

async function waitHealthy(url: string, isGone: () => boolean, log: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (isGone()) throw new Error(`etcd at ${url} exited before it was healthy; log:\n${log().slice(-3000)}`);
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      const body = await res.text();
      last = `${res.status} ${body}`;
      if (res.status === 200 && /"health":\s*"true"/.test(body)) return;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etcd at ${url} not healthy after ${timeoutMs} ms (last: ${last}); log:\n${log().slice(-3000)}`);
}

/** Starts `size` etcd members (1 or 3) with the playground's tuning (heartbeat 500 ms, election 2500 ms). */
export async function startEtcd(opts: { size?: number; readyTimeoutMs?: number } = {}): Promise<EtcdCluster> {
  const size = opts.size ?? 1;
  const dir = await mkdtemp(join(tmpdir(), "hqts-etcd-"));
  const specs: { name: string; clientUrl: string; peerUrl: string; dataDir: string }[] = [];
  for (let i = 0; i < size; i++) {
    const [c, p] = [await freePort(), await freePort()];
    specs.push({ name: `e${i + 1}`, clientUrl: `http://127.0.0.1:${c}`, peerUrl: `http://127.0.0.1:${p}`, dataDir: join(dir, `e${i + 1}`) });
  }
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(",");
  const stoppers: (() => Promise<void>)[] = [];
  const members: EtcdMember[] = specs.map((s) => {
    let child: ChildProcess | null = null;
    let out = "";
    let gone = true;
    let exit: Promise<void> = Promise.resolve();
    const launch = (state: "new" | "existing"): void => {
      child = spawn(
        "etcd",
        [
          `--name=${s.name}`,
          `--data-dir=${s.dataDir}`,
          `--listen-client-urls=${s.clientUrl}`,
          `--advertise-client-urls=${s.clientUrl}`,
          `--listen-peer-urls=${s.peerUrl}`,
          `--initial-advertise-peer-urls=${s.peerUrl}`,
          `--initial-cluster=${initialCluster}`,
          `--initial-cluster-state=${state}`,
          "--initial-cluster-token=hqts-test",
          "--heartbeat-interval=500",
          "--election-timeout=2500",
          "--logger=zap",
          "--log-outputs=stderr",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      gone = false;
      const onData = (d: Buffer): void => {
        out += d.toString("utf8");
        if (out.length > 2_000_000) out = out.slice(-1_000_000);
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      exit = new Promise((r) => child!.once("exit", () => ((gone = true), r())));
    };
    launch("new");
    const m: EtcdMember = {
      ...s,
      pid: () => child?.pid ?? -1,
      log: () => out,
      kill: (signal = "SIGKILL") => {
        if (!gone && child) process.kill(child.pid!, signal);
      },
      exited: () => exit,
      restart: async () => {
        if (!gone) throw new Error(`${s.name} is still running`);
        launch("existing");
        await waitHealthy(s.clientUrl, () => gone, () => out, opts.readyTimeoutMs ?? 20_000);
      },
    };
    stoppers.push(async () => {
      if (gone || !child) return;
      process.kill(child.pid!, "SIGTERM");
      const t = setTimeout(() => {
        if (!gone) process.kill(child!.pid!, "SIGKILL");
      }, 5000);
      await exit;
      clearTimeout(t);
    });
    return m;
  });
  const cluster: EtcdCluster = {
    members,
    endpoints: specs.map((s) => s.clientUrl),
    dir,
    async stop() {
      await Promise.all(stoppers.map((f) => f()));
      clusters.delete(cluster);
      await rm(dir, { recursive: true, force: true });
    },
  };
  clusters.add(cluster);
  try {
    await Promise.all(members.map((m) => waitHealthy(m.clientUrl, () => false, () => m.log(), opts.readyTimeoutMs ?? 20_000)));
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
