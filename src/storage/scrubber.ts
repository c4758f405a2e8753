// Background scrub: re-reads every file of this node (WAL segments and blocks) at a bounded rate and checks every
// checksum in it, so that damage at rest (bit rot, a bad sector, a file deleted underneath the node) is found while
// the other replicas still hold the data, not when a read or a restart trips over it.
//
// The scrubber only finds. What to do is the host's: a WAL finding → Engine.rewriteWal() (the head in memory is
// intact), a block finding → Engine.detachBlock() and a repair of its range from the peers. The host's callback is
// awaited before the scrub goes on, so a repair completes before the next file (and the next pass) is read.
//
// Reads go through the page cache (Node has no O_DIRECT): a file written moments ago is checked in memory; once
// evicted, every pass reads it from the device.

import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { basename } from "node:path";
import { setTimeout as sleepTimer } from "node:timers/promises";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { assert } from "../core/assert.js";
import { scanSegment } from "../wal/record.js";
import { segmentNumberOf } from "../wal/wal.js";
import { verifyBlockFileSteps, type VerifyResult } from "./block-io.js";
import type { ScrubTarget } from "./engine-api.js";

export const SCRUB_BYTES_PER_SECOND_DEFAULT = 8 * 1024 * 1024;
/** A pass starts at most this often: a small store is not re-read back to back (the rate would allow it). */
export const SCRUB_PASS_INTERVAL_MS_DEFAULT = 60_000;
/** Bytes of a WAL segment read per call: the granularity of pacing (blocks are paced per object). */
export const SCRUB_READ_BYTES_MAX_DEFAULT = 1024 * 1024;
/**
 * The pacer sleeps only once it is this far ahead of the rate: a block is read one object (a few KiB) at a time and a
 * sleep per object would cost a timer each (and timers are not finer than ~1 ms). Allows bursts of rate × 20 ms.
 */
export const SCRUB_SLEEP_MIN_MS = 20;
/** After an unexpected error in a pass, the loop waits this long before the next one. */
const SCRUB_ERROR_BACKOFF_MS = 10_000;

export type ScrubKind = "wal" | "block";

export interface ScrubFinding {
  kind: ScrubKind;
  path: string;
  /** Byte range of the damage in the file (the whole expected size for a missing or short file). */
  offset: number;
  length: number;
  detail: string;
  /** When it was found: ms since the Unix epoch, by the scrubber's clock. */
  detectedAt: number;
}

/** What the scrubber reads: Engine implements it. Asked again before reporting, so files gone meanwhile are skipped. */
export interface ScrubSource {
  scrubTargets(): ScrubTarget[];
}

/** Time, injectable so tests run without real sleeps. */
export interface ScrubClock {
  nowMs(): number;
  /** Resolves after `ms`, or early once `signal` aborts (it must not reject). */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const SYSTEM_CLOCK: ScrubClock = {
  nowMs: () => Date.now(),
  // Unref'd: a scrub waiting for its next read never keeps the process alive.
  sleep: (ms, signal) => sleepTimer(ms, undefined, { signal, ref: false }).catch(() => undefined),
};

export interface ScrubberOptions {
  engine: ScrubSource;
  log: Logger;
  metrics: Registry;
  /** Bytes read per second at most, over any interval, plus one read (an object or readBytesMax) and a 20 ms burst. */
  bytesPerSecond?: number;
  /** Least time from the start of a background pass to the start of the next. */
  passIntervalMs?: number;
  readBytesMax?: number;
  clock?: ScrubClock;
  /** Called for each finding of a background pass, and awaited before the scrub goes on. */
  onFinding?: (f: ScrubFinding) => void | Promise<void>;
}

export interface ScrubStats {
  bytesTotal: Record<ScrubKind, number>;
  findingsTotal: Record<ScrubKind, number>;
  passesTotal: number;
  /** Seconds since the Unix epoch when the last complete pass ended; null before the first. */
  lastPassTimestampSeconds: number | null;
  running: boolean;
  bytesPerSecond: number;
}

/** A target checked: its findings, or "gone" (it was deleted or detached meanwhile: nothing to report). */
type Checked = ScrubFinding[] | "gone";

export class Scrubber {
  private readonly engine: ScrubSource;
  private readonly log: Logger;
  private readonly clock: ScrubClock;
  private readonly onFinding: (f: ScrubFinding) => void | Promise<void>;
  readonly bytesPerSecond: number;
  private readonly passIntervalMs: number;
  private readonly readBytesMax: number;
  private readonly m;
  private readonly totals = { bytes: { wal: 0, block: 0 }, findings: { wal: 0, block: 0 }, passes: 0, lastPassSeconds: null as number | null };
  /** Pacing (GCRA): the clock time at which the bytes read so far are paid for at the configured rate. */
  private paidUntilMs = 0;
  private loop: Promise<void> | null = null;
  private stopping = false;
  private abort = new AbortController();

  constructor(o: ScrubberOptions) {
    this.engine = o.engine;
    this.log = o.log;
    this.clock = o.clock ?? SYSTEM_CLOCK;
    this.onFinding = o.onFinding ?? (() => undefined);
    this.bytesPerSecond = o.bytesPerSecond ?? SCRUB_BYTES_PER_SECOND_DEFAULT;
    this.passIntervalMs = o.passIntervalMs ?? SCRUB_PASS_INTERVAL_MS_DEFAULT;
    this.readBytesMax = o.readBytesMax ?? SCRUB_READ_BYTES_MAX_DEFAULT;
    assert(Number.isFinite(this.bytesPerSecond) && this.bytesPerSecond > 0, `scrub rate ${this.bytesPerSecond} bytes/s`);
    assert(Number.isFinite(this.passIntervalMs) && this.passIntervalMs >= 0, `scrub pass interval ${this.passIntervalMs} ms`);
    assert(Number.isSafeInteger(this.readBytesMax) && this.readBytesMax >= 4096, `scrub read size ${this.readBytesMax} bytes`);
    const registers = [o.metrics];
    this.m = {
      bytes: new Counter({ name: "hqts_scrub_bytes_total", help: "Bytes re-read and checked by the scrubber, by file kind.", labelNames: ["kind"], registers }),
      findings: new Counter({ name: "hqts_scrub_findings_total", help: "Damaged ranges (or missing files) found by the scrubber, by file kind.", labelNames: ["kind"], registers }),
      passes: new Counter({ name: "hqts_scrub_passes_total", help: "Complete scrub passes over every WAL segment and block.", registers }),
      lastPass: new Gauge({ name: "hqts_scrub_last_pass_timestamp_seconds", help: "When the last complete scrub pass ended (Unix seconds).", registers }),
    };
    for (const kind of ["wal", "block"] as const) {
      this.m.bytes.inc({ kind }, 0);
      this.m.findings.inc({ kind }, 0);
    }
  }

  /** Starts the background loop: pass after pass at the configured rate, until stop(). */
  start(): void {
    if (this.loop !== null) return;
    this.stopping = false;
    this.abort = new AbortController();
    this.loop = this.run();
  }

  /** Ends the background loop promptly (a sleep is cut short); resolves once it ended. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    const loop = this.loop;
    this.loop = null;
    await loop;
  }

  /**
   * One full pass at full speed (no pacing), independent of the background loop: the host right after open, and
   * tests. Returns the findings; onFinding is not called for them (the caller has them).
   */
  async scrubNow(): Promise<ScrubFinding[]> {
    const out: ScrubFinding[] = [];
    await this.pass(false, (f) => {
      out.push(f);
    });
    return out;
  }

  stats(): ScrubStats {
    return {
      bytesTotal: { ...this.totals.bytes },
      findingsTotal: { ...this.totals.findings },
      passesTotal: this.totals.passes,
      lastPassTimestampSeconds: this.totals.lastPassSeconds,
      running: this.loop !== null,
      bytesPerSecond: this.bytesPerSecond,
    };
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const startedMs = this.clock.nowMs();
      let waitMs: number;
      try {
        await this.pass(true, (f) => this.report(f));
        waitMs = this.passIntervalMs - (this.clock.nowMs() - startedMs);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, "scrub pass failed; retrying later");
        waitMs = Math.max(this.passIntervalMs, SCRUB_ERROR_BACKOFF_MS);
      }
      if (!this.stopping && waitMs > 0) await this.clock.sleep(waitMs, this.abort.signal);
      // A pass over nothing (or an injected clock that never waits) must not turn the loop into a microtask spin.
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private async report(f: ScrubFinding): Promise<void> {
    try {
      await this.onFinding(f);
    } catch (err) {
      // The host's handling failed; the damage is still there and the next pass finds it again.
      this.log.error({ path: f.path, err: (err as Error).message }, "scrub finding handler failed");
    }
  }

  /** One pass over the targets as listed at its start; `paced` keeps it under the rate. */
  private async pass(paced: boolean, found: (f: ScrubFinding) => void | Promise<void>): Promise<void> {
    for (const t of this.engine.scrubTargets()) {
      if (paced && this.stopping) return;
      const checked = t.kind === "wal" ? await this.checkWal(t, paced) : await this.checkBlock(t, paced);
      if (checked === "gone" || checked.length === 0) continue;
      // A file flushed away, expired or detached while it was read: what it held is elsewhere (or already handled).
      if (!this.stillTarget(t)) continue;
      for (const f of checked) {
        this.totals.findings[f.kind]++;
        this.m.findings.inc({ kind: f.kind });
        this.log.error({ ...f }, "scrub: damage found");
        await found(f);
      }
    }
    if (paced && this.stopping) return;
    this.totals.passes++;
    this.totals.lastPassSeconds = this.clock.nowMs() / 1000;
    this.m.passes.inc();
    this.m.lastPass.set(this.totals.lastPassSeconds);
  }

  private stillTarget(t: ScrubTarget): boolean {
    return this.engine.scrubTargets().some((x) => x.kind === t.kind && x.path === t.path);
  }

  private finding(t: ScrubTarget, offset: number, length: number, detail: string): ScrubFinding {
    return { kind: t.kind, path: t.path, offset, length, detail, detectedAt: this.clock.nowMs() };
  }

  /** A file that cannot be opened: gone with its target (not a finding), or missing underneath the node. */
  private missing(t: ScrubTarget, err: unknown): Checked {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    return this.stillTarget(t) ? [this.finding(t, 0, t.sizeBytes, "file missing")] : "gone";
  }

  /** Counts bytes read and, when paced, sleeps until they are paid for at the configured rate. */
  private async account(kind: ScrubKind, bytes: number, paced: boolean): Promise<void> {
    this.totals.bytes[kind] += bytes;
    this.m.bytes.inc({ kind }, bytes);
    if (!paced) return;
    const now = this.clock.nowMs();
    this.paidUntilMs = Math.max(this.paidUntilMs, now) + (bytes * 1000) / this.bytesPerSecond;
    const aheadMs = this.paidUntilMs - now;
    if (aheadMs >= SCRUB_SLEEP_MIN_MS && !this.stopping) await this.clock.sleep(aheadMs, this.abort.signal);
  }

  /**
   * A WAL segment up to the length listed (the active one's durable length: a group being written past it is not
   * damage), every frame's CRC32C and the header. Every range that is not a valid frame is damage: the listed length
   * ends on a frame boundary, so there is no torn tail to excuse here.
   */
  private async checkWal(t: ScrubTarget, paced: boolean): Promise<Checked> {
    const segment = segmentNumberOf(basename(t.path));
    assert(segment !== null, `a WAL scrub target that is not a segment file: ${t.path}`);
    let fh: FileHandle;
    try {
      fh = await open(t.path, "r");
    } catch (err) {
      return this.missing(t, err);
    }
    const image = new Uint8Array(t.sizeBytes);
    let got = 0;
    const out: ScrubFinding[] = [];
    try {
      while (got < t.sizeBytes) {
        if (paced && this.stopping) return "gone";
        const want = Math.min(this.readBytesMax, t.sizeBytes - got);
        let n: number;
        try {
          n = (await fh.read(image, got, want, got)).bytesRead;
        } catch (err) {
          // A media error is what scrubbing is for: the rest of the file cannot be vouched for.
          out.push(this.finding(t, got, t.sizeBytes - got, `read error: ${(err as Error).message}`));
          return out;
        }
        if (n === 0) break;
        got += n;
        await this.account("wal", n, paced);
      }
    } finally {
      await fh.close();
    }
    if (got < t.sizeBytes) out.push(this.finding(t, got, t.sizeBytes - got, `file ends at byte ${got}, ${t.sizeBytes} bytes were written and synced`));
    const scan = scanSegment(image.subarray(0, got), segment);
    for (const d of scan.damage) out.push(this.finding(t, d.offset, d.length, `${d.kind}: ${d.detail}`));
    if (scan.tail !== null) out.push(this.finding(t, scan.tail.offset, scan.tail.length, `${scan.tail.kind}: ${scan.tail.detail} (before the durable end)`));
    return out;
  }

  /** A block: structure, every object's CRC32C and SHA-256, decode, layout tiling, Merkle root (verifyBlockFile). */
  private async checkBlock(t: ScrubTarget, paced: boolean): Promise<Checked> {
    const steps = verifyBlockFileSteps(t.path);
    try {
      for (;;) {
        if (paced && this.stopping) return "gone";
        let r: IteratorResult<number, VerifyResult>;
        try {
          r = steps.next();
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") return this.missing(t, err);
          if (typeof (err as NodeJS.ErrnoException).code !== "string") throw err;
          return [this.finding(t, 0, t.sizeBytes, `read error: ${(err as Error).message}`)];
        }
        if (r.done === true) return r.value.findings.map((f) => this.finding(t, f.offset, f.length, f.what));
        await this.account("block", r.value, paced);
      }
    } finally {
      // Closes the file when the loop left early (stop, ENOENT); a no-op on a finished generator.
      steps.return({ ok: true, findings: [] });
    }
  }
}
