// The two databases under test: how to start each, wait for it, flush it to
// its final on-disk form and measure its footprint.

import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { HttpClient, delay, excerpt, waitReady } from "./http.js";
import { ManagedProcess, freePort, startProcess } from "./procs.js";

/** Polls /health until the started database answers; on failure stops it and says why, with its log tail. */
async function connectWhenReady(name: string, proc: ManagedProcess, port: number, clientSockets: number): Promise<{ client: HttpClient; startupMs: number }> {
  const client = new HttpClient(`http://127.0.0.1:${port}`, clientSockets);
  try {
    const startupMs = await waitReady(client, "/health", 60_000, () => (proc.hasExited ? proc.exitDescription : null));
    return { client, startupMs };
  } catch (e) {
    client.close();
    await proc.stop();
    throw new Error(`${name} on port ${port}: ${(e as Error).message}\n${proc.logTail()}`);
  }
}

export type DbKind = "hq" | "vm";

export interface DiskUsage {
  /** Sum of regular file sizes (apparent bytes) under the data dir. */
  bytes: number;
  /** Allocated bytes (st_blocks * 512), for reference. */
  allocatedBytes: number;
  files: number;
  /** Apparent bytes per top-level entry of the data dir. */
  byTopLevel: Record<string, number>;
}

export interface FlushReport {
  seconds: number;
  details: Record<string, unknown>;
}

export interface DbRun {
  readonly kind: DbKind;
  readonly label: string;
  readonly client: HttpClient;
  readonly proc: ManagedProcess;
  readonly dataDir: string;
  readonly startupMs: number;
  /** Top-level entries of the data dir that hold the samples themselves (VM data/, HQ-TS blocks/). */
  readonly sampleDirs: readonly string[];
  flush(data: { minTs: number; maxTs: number }): Promise<FlushReport>;
  disk(): DiskUsage;
  /** DB-specific integrity checks after flush; returns warning lines. */
  checkStored(samples: number): Promise<{ details: Record<string, unknown>; warnings: string[] }>;
  stop(): Promise<void>;
}

export interface DbDriver {
  readonly kind: DbKind;
  readonly label: string;
  version(): string;
  start(dataDir: string, logPath: string, clientSockets: number): Promise<DbRun>;
}

// ---- disk usage --------------------------------------------------------------

export function diskUsage(dir: string): DiskUsage {
  const byTopLevel: Record<string, number> = {};
  let bytes = 0;
  let allocatedBytes = 0;
  let files = 0;
  const walk = (path: string, top: string): void => {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return; // removed while we walked (a merge finishing): the next poll sees the new state
    }
    if (st.isDirectory()) {
      let entries: string[];
      try {
        entries = readdirSync(path);
      } catch {
        return;
      }
      for (const e of entries) walk(join(path, e), top === "" ? e : top);
    } else if (st.isFile()) {
      bytes += st.size;
      allocatedBytes += st.blocks * 512;
      files++;
      const key = top === "" ? "." : top;
      byTopLevel[key] = (byTopLevel[key] ?? 0) + st.size;
    }
  };
  walk(dir, "");
  return { bytes, allocatedBytes, files, byTopLevel };
}

/**
 * Polls until `quiet()` holds and the data dir's size is unchanged over
 * `stablePolls` consecutive polls; throws after deadlineMs.
 */
async function waitSettled(dir: string, quiet: () => Promise<boolean>, deadlineMs: number, pollMs = 250, stablePolls = 4): Promise<{ waitedMs: number; polls: number }> {
  const t0 = performance.now();
  let last = -1;
  let stable = 0;
  let polls = 0;
  while (performance.now() - t0 < deadlineMs) {
    polls++;
    const q = await quiet();
    const size = diskUsage(dir).bytes;
    if (q && size === last) stable++;
    else stable = 0;
    last = size;
    if (stable >= stablePolls) return { waitedMs: performance.now() - t0, polls };
    await delay(pollMs);
  }
  throw new Error(`data dir ${dir} did not settle within ${deadlineMs} ms`);
}

function monthsBetween(minTs: number, maxTs: number): string[] {
  const out: string[] = [];
  const d = new Date(Date.UTC(new Date(minTs).getUTCFullYear(), new Date(minTs).getUTCMonth(), 1));
  while (d.getTime() <= maxTs) {
    out.push(`${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, "0")}`);
    d.setUTCMonth(d.getUTCMonth() + 1);
  }
  return out;
}

// ---- Prometheus text format, just enough to read VM's own /metrics -----------

export function parseMetricsText(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    if (sp < 0) continue;
    const v = Number(line.slice(sp + 1));
    if (!Number.isNaN(v)) m.set(line.slice(0, sp), v);
  }
  return m;
}

function sumMetric(m: Map<string, number>, name: string): number {
  let s = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) s += v;
  return s;
}

// ---- VictoriaMetrics ------------------------------------------------------------

export function vmBinary(): string {
  for (const p of (process.env["PATH"] ?? "").split(":")) {
    const c = join(p, "victoria-metrics");
    if (p !== "" && existsSync(c)) return c;
  }
  if (existsSync("/usr/bin/victoria-metrics")) return "/usr/bin/victoria-metrics";
  throw new Error("victoria-metrics not found (bench/run.sh installs it with apt-get install -y victoria-metrics)");
}

export class VictoriaMetricsDriver implements DbDriver {
  readonly kind = "vm" as const;
  readonly label = "VictoriaMetrics";

  version(): string {
    let v = "";
    try {
      v = execFileSync(vmBinary(), ["-version"], { encoding: "utf8", timeout: 10_000 }).trim();
    } catch {
      v = "";
    }
    if (v !== "") return v;
    // The Debian build prints nothing for -version (no ldflags); ask dpkg.
    try {
      const deb = execFileSync("dpkg-query", ["-W", "-f=${Version}", "victoria-metrics"], { encoding: "utf8", timeout: 10_000 }).trim();
      if (deb !== "") return `${deb} (Debian package; -version printed nothing)`;
    } catch {
      // not a Debian system
    }
    return "unknown (-version printed nothing)";
  }

  async start(dataDir: string, logPath: string, clientSockets: number): Promise<DbRun> {
    const port = await freePort();
    const args = [
      `-storageDataPath=${dataDir}`,
      `-httpListenAddr=127.0.0.1:${port}`,
      "-retentionPeriod=100y",
      "-search.disableCache",
      "-loggerLevel=ERROR",
    ];
    const proc = startProcess("victoria-metrics", vmBinary(), args, logPath, process.cwd());
    const { client, startupMs } = await connectWhenReady("VictoriaMetrics", proc, port, clientSockets);
    const metrics = async (): Promise<Map<string, number>> => {
      const r = await client.get("/metrics", 30_000);
      if (r.status !== 200) throw new Error(`VictoriaMetrics /metrics: HTTP ${r.status}`);
      return parseMetricsText(r.body.toString("utf8"));
    };
    return {
      kind: this.kind,
      label: this.label,
      client,
      proc,
      dataDir,
      startupMs,
      sampleDirs: ["data"],
      async flush(data): Promise<FlushReport> {
        const t0 = performance.now();
        const ff = await client.get("/internal/force_flush", 120_000);
        if (ff.status !== 200) throw new Error(`VictoriaMetrics force_flush: HTTP ${ff.status} ${excerpt(ff.body)}`);
        const months = monthsBetween(data.minTs, data.maxTs);
        for (const m of months) {
          const r = await client.get(`/internal/force_merge?partition_prefix=${m}`, 120_000);
          if (r.status !== 200) throw new Error(`VictoriaMetrics force_merge ${m}: HTTP ${r.status} ${excerpt(r.body)}`);
        }
        // force_merge runs in the background: wait for no active (forced)
        // merges, no pending rows, and a data dir whose size stopped moving.
        let sawForceMerge = false;
        const settled = await waitSettled(
          dataDir,
          async () => {
            const m = await metrics();
            const force = sumMetric(m, "vm_active_force_merges");
            if (force > 0) sawForceMerge = true;
            return force === 0 && sumMetric(m, "vm_active_merges") === 0 && sumMetric(m, "vm_pending_rows") === 0;
          },
          600_000,
        );
        return { seconds: (performance.now() - t0) / 1000, details: { partitions: months, settleWaitMs: Math.round(settled.waitedMs), polls: settled.polls, sawActiveForceMerge: sawForceMerge } };
      },
      disk: () => diskUsage(dataDir),
      async checkStored(samples: number) {
        const m = await metrics();
        const stored = sumMetric(m, "vm_rows{type=\"storage/big\"}") + sumMetric(m, "vm_rows{type=\"storage/small\"}");
        const added = sumMetric(m, "vm_rows_added_to_storage_total");
        const ignored = sumMetric(m, "vm_rows_ignored_total");
        const invalid = sumMetric(m, "vm_rows_invalid_total");
        const warnings: string[] = [];
        if (added !== samples) warnings.push(`VictoriaMetrics added ${added} rows to storage, ${samples} samples were sent`);
        if (stored !== samples) warnings.push(`VictoriaMetrics holds ${stored} rows in its parts after the merge, ${samples} samples were sent`);
        if (ignored > 0 || invalid > 0) warnings.push(`VictoriaMetrics ignored ${ignored} and rejected ${invalid} rows (vm_rows_ignored_total / vm_rows_invalid_total)`);
        return { details: { rowsAddedToStorage: added, rowsInParts: stored, rowsIgnored: ignored, rowsInvalid: invalid, activeMerges: sumMetric(m, "vm_active_merges") }, warnings };
      },
      async stop() {
        client.close();
        await proc.stop(30_000);
      },
    };
  }
}

// ---- HQ-TS ----------------------------------------------------------------------

export class HqtsDriver implements DbDriver {
  readonly kind = "hq" as const;
  readonly label = "HQ-TS";

  constructor(
    private readonly repoRoot: string,
    private readonly override?: string,
  ) {}

  /** The command that runs the CLI: --hq-bin, else ./bin/hqts, else node dist/src/cli/main.js. */
  command(): { cmd: string; pre: string[] } {
    if (this.override !== undefined) return { cmd: this.override, pre: [] };
    const bin = join(this.repoRoot, "bin", "hqts");
    if (existsSync(bin)) return { cmd: bin, pre: [] };
    const main = join(this.repoRoot, "dist", "src", "cli", "main.js");
    if (existsSync(main)) return { cmd: process.execPath, pre: [main] };
    throw new Error(`HQ-TS CLI not found: neither ${bin} nor ${main} exists (build with npx tsc -p tsconfig.json)`);
  }

  version(): string {
    let v = "unknown";
    try {
      const pkg = JSON.parse(readFileSync(join(this.repoRoot, "package.json"), "utf8")) as { version?: unknown };
      if (typeof pkg.version === "string") v = pkg.version;
    } catch {
      // leave unknown
    }
    try {
      const rev = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: this.repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
      const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], { cwd: this.repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() !== "";
      v += ` (git ${rev}${dirty ? ", src/ modified" : ""})`;
    } catch {
      // not a git checkout
    }
    return v;
  }

  async start(dataDir: string, logPath: string, clientSockets: number): Promise<DbRun> {
    const { cmd, pre } = this.command();
    const port = await freePort();
    const proc = startProcess("hqts", cmd, [...pre, "node", "--data", dataDir, "--http", `127.0.0.1:${port}`], logPath, this.repoRoot);
    const { client, startupMs } = await connectWhenReady("HQ-TS", proc, port, clientSockets);
    return {
      kind: this.kind,
      label: this.label,
      client,
      proc,
      dataDir,
      startupMs,
      sampleDirs: ["blocks"],
      async flush(): Promise<FlushReport> {
        const t0 = performance.now();
        const r = await client.send("POST", "/hq/v1/admin/flush", Buffer.alloc(0), {}, 600_000);
        if (r.status < 200 || r.status >= 300) throw new Error(`HQ-TS flush: HTTP ${r.status} ${excerpt(r.body)}`);
        let answer: unknown = excerpt(r.body, 2000);
        try {
          answer = JSON.parse(r.body.toString("utf8"));
        } catch {
          // keep the text
        }
        // The flush answers once the head is in a block; wait for anything in
        // the background (WAL removal, compaction) to leave the dir still.
        const settled = await waitSettled(dataDir, () => Promise.resolve(true), 300_000);
        return { seconds: (performance.now() - t0) / 1000, details: { answer, settleWaitMs: Math.round(settled.waitedMs) } };
      },
      disk: () => diskUsage(dataDir),
      checkStored: () => Promise.resolve({ details: {}, warnings: [] }),
      async stop() {
        client.close();
        await proc.stop(30_000);
      },
    };
  }
}
