// Starts a REAL `hqts node` process (the compiled CLI in dist/) on a free
// port with a fresh data directory, waits for /health, and stops it by pid.
// Tests run from dist/ (npx tsc -p . && node --test dist/test/...), so the CLI
// is resolved as <repoRoot>/dist/src/cli/main.js from this file's location.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest ancestor of this file holding package.json and src/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "src"))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot find the repository root above ${fileURLToPath(import.meta.url)}`);
}

export const CLI_MAIN = join(repoRoot(), "dist", "src", "cli", "main.js");

/** A free TCP port: bind port 0, read it, close. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

export interface NodeProc {
  readonly url: string;
  readonly pid: number;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Everything the process wrote on stderr (its JSON log) so far. */
  stderr(): string;
  stdout(): string;
  kill(signal?: NodeJS.Signals): void;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait up to timeoutMs, then SIGKILL; removes the data dir unless keepData. */
  stop(opts?: { timeoutMs?: number; keepData?: boolean }): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  /** Extra CLI flags, e.g. ["--max-body-bytes", "1048576"]. */
  args?: string[];
  /** Reuse a data directory (restart tests); default: a new temporary one. */
  dataDir?: string;
  /** How long to wait for /health to answer 200. */
  readyTimeoutMs?: number;
}

const started = new Set<NodeProc>();

/** Stops every node started by this test file that is still running (use in after()). */
export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((p) => p.stop().catch(() => undefined)));
}

export async function startNode(opts: StartOptions = {}): Promise<NodeProc> {
  if (!existsSync(CLI_MAIN)) throw new Error(`${CLI_MAIN} is missing: build first (npx tsc -p .)`);
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), "hqts-test-")));
  const ownsData = opts.dataDir === undefined;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [CLI_MAIN, "node", "--data", dataDir, "--http", `127.0.0.1:${port}`, "--log-level", "info", ...(opts.args ?? [])], {
    stdio: ["ignore", "pipe", "pipe"],
    cwd: resolve(repoRoot()),
  });
  let err = "";
  let out = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    err += s;
    if (err.length > 4_000_000) err = err.slice(-2_000_000);
  });
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  let gone = false;
  void exit.then(() => (gone = true));

  const proc: NodeProc = {
    url,
    pid: child.pid!,
    dataDir,
    child,
    stderr: () => err,
    stdout: () => out,
    kill: (signal = "SIGTERM") => {
      if (!gone) process.kill(child.pid!, signal);
    },
    exited: () => exit,
    async stop(o = {}) {
      if (!gone) {
        process.kill(child.pid!, "SIGTERM");
        const timer = setTimeout(() => {
          if (!gone) process.kill(child.pid!, "SIGKILL");
        }, o.timeoutMs ?? 10_000);
        await exit;
        clearTimeout(timer);
      }
      started.delete(proc);
      if (ownsData && o.keepData !== true) await rm(dataDir, { recursive: true, force: true });
      return exit;
    },
  };
  started.add(proc);

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
  let last = "no answer yet";
  for (let delay = 10; ; delay = Math.min(200, delay * 2)) {
    if (gone) {
      await proc.stop();
      throw new Error(`hqts node exited before it was ready (${JSON.stringify(await exit)}); stderr:\n${err.slice(-4000)}`);
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      last = `HTTP ${res.status} ${await res.text()}`;
      if (res.status === 200) return proc;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`hqts node not ready after ${opts.readyTimeoutMs ?? 20_000} ms (last: ${last}); stderr:\n${err.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}
