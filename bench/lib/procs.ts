// Child processes started by the harness: each in its own process group (so a
// wrapper script and the node or Go process behind it stop together), stopped
// by pid with SIGTERM and, after a deadline, SIGKILL; also on error, SIGINT
// and SIGTERM of the harness.

import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";

export class ManagedProcess {
  private exited = false;
  private exitInfo = "";
  private readonly exitPromise: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    this.exitPromise = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exited = true;
        this.exitInfo = signal !== null ? `signal ${signal}` : `exit code ${String(code)}`;
        resolve();
      });
    });
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`${this.name}: no pid`);
    return pid;
  }

  get hasExited(): boolean {
    return this.exited;
  }

  get exitDescription(): string {
    return this.exitInfo;
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  private signalGroup(sig: NodeJS.Signals): void {
    if (this.exited) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone
      }
    }
  }

  /** SIGTERM, wait up to graceMs for exit, then SIGKILL. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exited) return;
    this.signalGroup("SIGTERM");
    const timedOut = await Promise.race([
      this.exitPromise.then(() => false),
      new Promise<boolean>((r) => {
        const t = setTimeout(() => r(true), graceMs);
        t.unref();
      }),
    ]);
    if (timedOut) {
      console.warn(`warning: ${this.name} (pid ${this.pid}) did not stop within ${graceMs} ms of SIGTERM; sending SIGKILL`);
      this.signalGroup("SIGKILL");
      await this.exitPromise;
    }
    running.delete(this);
  }

  /** Synchronous last resort at process exit. */
  killNow(): void {
    this.signalGroup("SIGKILL");
  }
}

const running = new Set<ManagedProcess>();

export function startProcess(name: string, cmd: string, args: string[], logPath: string, cwd: string): ManagedProcess {
  const fd = openSync(logPath, "a");
  try {
    const child = spawn(cmd, args, { cwd, detached: true, stdio: ["ignore", fd, fd] });
    const p = new ManagedProcess(name, child, logPath);
    child.once("error", (e) => console.error(`${name}: failed to start ${cmd}: ${e.message}`));
    if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
    running.add(p);
    child.once("exit", () => running.delete(p));
    return p;
  } finally {
    closeSync(fd);
  }
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

/** Runs a harness's main: stops every child it started, then exits with main's code (2 if main threw). */
export function runMain(main: () => Promise<number>): void {
  main()
    .then(async (code) => {
      await stopAll();
      process.exit(code);
    })
    .catch(async (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      await stopAll();
      process.exit(2);
    });
}

let handlersInstalled = false;
/** On SIGINT/SIGTERM stop every child, then exit; at exit SIGKILL any left. */
export function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${sig}: stopping ${running.size} database process(es)...`);
    void stopAll().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", () => {
    for (const p of running) p.killNow();
  });
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error("could not read the bound port"));
        return;
      }
      const port = addr.port;
      srv.close(() => resolve(port));
    });
  });
}
