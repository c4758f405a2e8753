// The write-ahead log: segment files, group commit, replay and damage
// classification (docs/format/wal.md). Byte layouts live in record.ts; this
// module does the file I/O.
//
// Durability contract: append() resolves only after the bytes of its record
// were written and fdatasync returned. Torn tails (never acked) are truncated
// on open; anything else that is damaged may have been acked, so it is never
// truncated: open fails, or (explicitly) quarantines a copy and reports it.

import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { assert } from "../core/assert.js";
import { syncDir, writeFully } from "./file-io.js";
import { BadInputError, CorruptionError, OverloadError, TooLargeError, UnavailableError } from "../core/errors.js";
import { DEFAULT_LIMITS } from "../core/limits.js";
import {
  FRAME_HEADER_BYTES,
  FRAME_PAYLOAD_BYTES_LIMIT,
  RECORD_TYPE_MAX,
  SEGMENT_HEADER_BYTES,
  encodeFrame,
  encodeSegmentHeader,
  scanSegment,
  type DamageKind,
  type ScannedRecord,
} from "./record.js";

export const SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
export const RECORD_BYTES_MAX_DEFAULT = 48 * 1024 * 1024;
export const PENDING_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;
export const GROUP_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Records written by one writev call at most (Linux IOV_MAX is 1024). */
export const GROUP_RECORDS_MAX = 1024;
export const QUARANTINE_DIR = "quarantine";

const SEGMENT_NAME = /^([0-9]{8})\.seg$/;

export function segmentFileName(segment: number): string {
  assert(Number.isInteger(segment) && segment >= 1 && segment <= 99_999_999, `segment number ${segment} out of range`);
  return `${String(segment).padStart(8, "0")}.seg`;
}

/** Where a record was written: offset of its frame in the segment file and the frame's total bytes. */
export interface WalPosition {
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
}

/** A segment file as Wal.segmentFiles() lists it. */
export interface WalSegmentFile {
  readonly segment: number;
  readonly path: string;
  /** Bytes from the start of the file that hold only complete, durable frames. */
  readonly bytes: number;
  /** The segment appends go to. */
  readonly current: boolean;
}

/** The segment number a segment file name (`00000042.seg`) carries, or null for another name. */
export function segmentNumberOf(fileName: string): number | null {
  const m = SEGMENT_NAME.exec(fileName);
  return m === null ? null : Number(m[1]);
}

export interface ReplayRecord extends WalPosition {
  readonly type: number;
  /** A view into the segment image read for replay; copy it to keep it beyond the record's handling. */
  readonly payload: Uint8Array;
}

export type WalFindingKind = "torn_tail" | DamageKind | "missing_segment";

export interface WalFinding {
  /** "torn_tail" (never acked, truncated away) or a kind of corruption. */
  readonly kind: WalFindingKind;
  readonly file: string; // path of the segment file
  readonly segment: number;
  readonly offset: number; // byte offset in the file where the damage starts
  readonly length: number; // bytes
  readonly detail: string;
  /** What open() did about it. */
  readonly action: "truncated" | "quarantined" | "reported";
  /** Copy of the damaged bytes, when one was written. */
  readonly quarantineFile: string | null;
}

export function isCorruption(f: WalFinding): boolean {
  return f.kind !== "torn_tail";
}

export interface WalFaults {
  /** Called before each group write; throw to simulate a failed write. */
  beforeWrite?: (segment: number, offset: number, bytes: number) => void;
  /** Called before each fdatasync; throw to simulate a failed fsync. */
  beforeSync?: (segment: number) => void;
}

export interface WalOptions {
  /** A segment never grows beyond this (header included). Default 64 MiB. */
  segmentBytesMax?: number;
  /** Largest payload accepted by append(); larger ones get TooLargeError. Default 48 MiB. */
  recordBytesMax?: number;
  /** Appends not yet acked at once; beyond it append() rejects with OverloadError. Default core/limits. */
  pendingWritesMax?: number;
  /** Bytes of appends not yet acked at once (one record is always admitted into an empty queue). Default 256 MiB. */
  pendingBytesMax?: number;
  /** Bytes written by one group commit at most. Default 64 MiB. */
  groupBytesMax?: number;
  /** fdatasync before acking. Default true; false only to measure what fsync costs. */
  fsync?: boolean;
  /** Called after each group commit: fdatasync duration (0 when fsync is off), bytes and records written. */
  onFsync?: (durationMs: number, bytes: number, records: number) => void;
  /** What open() does when it finds corruption (not a torn tail). Default "fail". */
  onCorruption?: "fail" | "quarantine";
  /** Fault injection for tests and simulation. */
  faults?: WalFaults;
}

interface ResolvedOptions {
  segmentBytesMax: number;
  recordBytesMax: number;
  pendingWritesMax: number;
  pendingBytesMax: number;
  groupBytesMax: number;
  fsync: boolean;
  onFsync: ((durationMs: number, bytes: number, records: number) => void) | null;
  onCorruption: "fail" | "quarantine";
  faults: WalFaults;
}

function positiveInt(name: string, v: number | undefined, dflt: number, max: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1 || x > max) throw new BadInputError(`WAL option ${name} must be an integer in 1..${max}, got ${String(v)}`, { field: name });
  return x;
}

function resolveOptions(o: WalOptions): ResolvedOptions {
  const segmentBytesMax = positiveInt("segmentBytesMax", o.segmentBytesMax, SEGMENT_BYTES_MAX_DEFAULT, 2 ** 32);
  const recordBytesMax = positiveInt("recordBytesMax", o.recordBytesMax, Math.min(RECORD_BYTES_MAX_DEFAULT, segmentBytesMax - SEGMENT_HEADER_BYTES - FRAME_HEADER_BYTES), FRAME_PAYLOAD_BYTES_LIMIT);
  if (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + recordBytesMax > segmentBytesMax)
    throw new BadInputError(`WAL recordBytesMax ${recordBytesMax} does not fit in a segment of ${segmentBytesMax} bytes`, { field: "recordBytesMax" });
  const onCorruption = o.onCorruption ?? "fail";
  if (onCorruption !== "fail" && onCorruption !== "quarantine") throw new BadInputError(`WAL option onCorruption must be "fail" or "quarantine"`, { field: "onCorruption" });
  return {
    segmentBytesMax,
    recordBytesMax,
    pendingWritesMax: positiveInt("pendingWritesMax", o.pendingWritesMax, DEFAULT_LIMITS.pendingWritesMax, 2 ** 30),
    pendingBytesMax: positiveInt("pendingBytesMax", o.pendingBytesMax, PENDING_BYTES_MAX_DEFAULT, 2 ** 40),
    groupBytesMax: positiveInt("groupBytesMax", o.groupBytesMax, GROUP_BYTES_MAX_DEFAULT, 2 ** 40),
    fsync: o.fsync ?? true,
    onFsync: o.onFsync ?? null,
    onCorruption,
    faults: o.faults ?? {},
  };
}

function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

interface Pending {
  readonly seq: number; // append order
  readonly frame: Uint8Array;
  readonly resolve: (p: WalPosition) => void;
  readonly reject: (e: Error) => void;
}

/** A segment as seen by open(): what replay will read and how many records it must find. */
interface ReplaySegment {
  readonly segment: number;
  readonly file: string;
  readonly bytes: number;
  readonly records: number;
}

export interface WalOpenResult {
  readonly wal: Wal;
  /** Every finding, in file order: torn tail and corruption. */
  readonly findings: readonly WalFinding[];
  /** Valid records replay() will yield. */
  readonly recordCount: number;
  /**
   * All valid records, in order, one segment image in memory at a time.
   * Consume it before removing segments. Damaged records are never yielded.
   */
  replay(): AsyncGenerator<ReplayRecord>;
  /** replay() collected in an array (all payloads in memory). */
  readAll(): Promise<ReplayRecord[]>;
}

export class Wal {
  private readonly sizes = new Map<number, number>(); // segment -> bytes on disk
  private handle: FileHandle;
  private current: number;
  private writeOffset: number;
  /**
   * Bytes of the current segment known durable (fdatasync returned, or written when fsync is off): what a reader of
   * the file may check as complete (a scrubber). Frames past it may be half-written; never past writeOffset.
   */
  private durableOffset: number;
  private readonly queue: Pending[] = [];
  private appendSeq = 0; // seq of the last append admitted
  /** rotate() barriers: seq of the last append that belongs before each pending rotation, ascending. */
  private readonly barriers: number[] = [];
  private unacked = 0; // queued + being written
  private unackedBytes = 0;
  private serial: Promise<void> = Promise.resolve();
  private flushScheduled = false;
  private failure: Error | null = null;
  private closing = false;

  private constructor(
    readonly dir: string,
    private readonly opts: ResolvedOptions,
    handle: FileHandle,
    current: number,
    writeOffset: number,
    sizes: Map<number, number>,
  ) {
    this.handle = handle;
    this.current = current;
    this.writeOffset = writeOffset;
    this.durableOffset = writeOffset;
    for (const [k, v] of sizes) this.sizes.set(k, v);
    assert(this.sizes.get(current) === writeOffset, "the current segment's size is where appends continue");
  }

  // -------------------------------------------------------------------------
  // Opening and replay

  /**
   * Opens (creating if needed) the WAL in `dir`, scans every segment and
   * classifies damage. A torn tail in the last segment is truncated. With
   * onCorruption "fail" (default), any corruption throws CorruptionError
   * before a single byte is modified; with "quarantine", damaged ranges are
   * copied to dir/quarantine/ and reported, and appends go to a fresh segment
   * if the last one is damaged.
   */
  static async open(dir: string, options: WalOptions = {}): Promise<WalOpenResult> {
    const opts = resolveOptions(options);
    await fs.mkdir(dir, { recursive: true });
    const numbers: number[] = [];
    for (const name of await fs.readdir(dir)) {
      const m = SEGMENT_NAME.exec(name);
      if (m !== null && Number(m[1]) >= 1) numbers.push(Number(m[1]));
    }
    numbers.sort((a, b) => a - b);

    const findings: WalFinding[] = [];
    const damagedBytes = new Map<WalFinding, Uint8Array>(); // copies to quarantine
    const replaySegments: ReplaySegment[] = [];
    const sizes = new Map<number, number>();
    let torn: { finding: WalFinding; segment: number; validEnd: number; bytes: Uint8Array } | null = null;
    let lastSegmentCorrupt = false;

    for (let i = 0; i < numbers.length; i++) {
      const seg = numbers[i]!;
      const file = path.join(dir, segmentFileName(seg));
      const isLast = i === numbers.length - 1;
      if (i > 0 && seg !== numbers[i - 1]! + 1) {
        const first = numbers[i - 1]! + 1;
        findings.push({
          kind: "missing_segment",
          file: path.join(dir, segmentFileName(first)),
          segment: first,
          offset: 0,
          length: 0,
          detail: first === seg - 1 ? `segment ${first} is missing` : `segments ${first}..${seg - 1} are missing`,
          action: "reported",
          quarantineFile: null,
        });
      }
      const image = new Uint8Array(await fs.readFile(file));
      let records = 0;
      const scan = scanSegment(image, seg, () => {
        records++;
      });
      let corrupt = false;
      for (const d of scan.damage) {
        const f: WalFinding = { kind: d.kind, file, segment: seg, offset: d.offset, length: d.length, detail: d.detail, action: "reported", quarantineFile: null };
        findings.push(f);
        corrupt = true;
        if (opts.onCorruption === "quarantine") damagedBytes.set(f, image.slice(d.offset, d.offset + d.length));
      }
      let replayBytes = image.length;
      if (scan.tail !== null) {
        const t = scan.tail;
        if (isLast) {
          const f: WalFinding = { kind: "torn_tail", file, segment: seg, offset: t.offset, length: t.length, detail: `${t.kind}: ${t.detail}`, action: "truncated", quarantineFile: null };
          findings.push(f);
          torn = { finding: f, segment: seg, validEnd: scan.validEnd, bytes: image.slice(t.offset) };
          replayBytes = scan.validEnd;
        } else {
          const f: WalFinding = { kind: t.kind, file, segment: seg, offset: t.offset, length: t.length, detail: `${t.detail} (not the last segment)`, action: "reported", quarantineFile: null };
          findings.push(f);
          corrupt = true;
          if (opts.onCorruption === "quarantine") damagedBytes.set(f, image.slice(t.offset));
        }
      }
      if (isLast) lastSegmentCorrupt = corrupt;
      sizes.set(seg, image.length);
      replaySegments.push({ segment: seg, file, bytes: replayBytes, records });
    }

    const corruption = findings.filter(isCorruption);
    if (corruption.length > 0 && opts.onCorruption === "fail") {
      const first = corruption[0]!;
      throw new CorruptionError(
        `WAL ${first.kind} (${first.detail}), ${first.length} bytes; ${corruption.length} damaged range(s) in all. Nothing was modified; repair from replicas or reopen with onCorruption "quarantine"`,
        first.file,
        first.offset,
        { details: { findings: corruption } },
      );
    }

    // From here on the directory may be modified.
    const qdir = path.join(dir, QUARANTINE_DIR);
    const quarantined = new Map<WalFinding, string>();
    const saveCopy = async (f: WalFinding, bytes: Uint8Array, ext: string): Promise<void> => {
      await fs.mkdir(qdir, { recursive: true });
      const qfile = path.join(qdir, `${segmentFileName(f.segment).replace(/\.seg$/, "")}-${f.offset}.${ext}`);
      const h = await fs.open(qfile, "w");
      try {
        await writeFully(h, [bytes], 0);
        await h.sync();
      } finally {
        await h.close();
      }
      quarantined.set(f, qfile);
    };
    for (const [f, bytes] of damagedBytes) if (bytes.length > 0) await saveCopy(f, bytes, "bad");
    if (torn !== null && !isAllZero(torn.bytes)) await saveCopy(torn.finding, torn.bytes, "torn");
    if (quarantined.size > 0) await syncDir(qdir);

    const final = findings.map((f): WalFinding => {
      const q = quarantined.get(f);
      if (q !== undefined) return { ...f, action: f.kind === "torn_tail" ? "truncated" : "quarantined", quarantineFile: q };
      if (damagedBytes.has(f)) return { ...f, action: "quarantined" };
      return f;
    });

    // Open (or create) the segment appends go to.
    let handle: FileHandle;
    let current: number;
    let writeOffset: number;
    if (numbers.length === 0) {
      current = 1;
      handle = await Wal.createSegment(dir, current, opts.fsync);
      writeOffset = SEGMENT_HEADER_BYTES;
    } else {
      current = numbers[numbers.length - 1]!;
      const file = path.join(dir, segmentFileName(current));
      handle = await fs.open(file, "r+");
      try {
        writeOffset = sizes.get(current)!;
        if (torn !== null) {
          assert(torn.segment === current, "a torn tail is only ever in the last segment");
          if (torn.validEnd < SEGMENT_HEADER_BYTES) {
            // The header itself was torn (crash while creating the segment): no record was ever in it.
            assert(torn.validEnd === 0 && torn.finding.offset === 0, "a torn header means an empty segment");
            await handle.truncate(0);
            await writeFully(handle, [encodeSegmentHeader(current)], 0);
            writeOffset = SEGMENT_HEADER_BYTES;
          } else {
            await handle.truncate(torn.validEnd);
            writeOffset = torn.validEnd;
          }
          await handle.sync();
        }
        const st = await handle.stat();
        assert(st.size === writeOffset, `segment ${current} is ${st.size} bytes after open, expected ${writeOffset}`);
      } catch (e) {
        await handle.close();
        throw e;
      }
      sizes.set(current, writeOffset);
    }
    sizes.set(current, writeOffset);
    const wal = new Wal(dir, opts, handle, current, writeOffset, sizes);
    if (lastSegmentCorrupt) await wal.rotate(); // new appends never land in a damaged segment

    let recordCount = 0;
    for (const s of replaySegments) recordCount += s.records;
    const replay = async function* (): AsyncGenerator<ReplayRecord> {
      for (const s of replaySegments) {
        if (s.records === 0) continue;
        const h = await fs.open(s.file, "r");
        let image: Uint8Array;
        try {
          image = new Uint8Array(s.bytes);
          let got = 0;
          while (got < s.bytes) {
            const n = (await h.read(image, got, s.bytes - got, got)).bytesRead;
            if (n === 0) break;
            got += n;
          }
          if (got < s.bytes) throw new CorruptionError(`segment shrank since open: ${got} of ${s.bytes} bytes`, s.file, got);
        } finally {
          await h.close();
        }
        const found: ScannedRecord[] = [];
        scanSegment(image, s.segment, (r) => found.push(r));
        if (found.length !== s.records)
          throw new CorruptionError(`segment changed since open: ${found.length} valid records, ${s.records} at open`, s.file, 0);
        for (const r of found) yield { type: r.type, payload: r.payload, segment: s.segment, offset: r.offset, length: r.frameBytes };
      }
    };
    const readAll = async (): Promise<ReplayRecord[]> => {
      const out: ReplayRecord[] = [];
      for await (const r of replay()) out.push(r);
      return out;
    };
    return { wal, findings: final, recordCount, replay, readAll };
  }

  /** Creates a segment: exclusive create, header, fsync of file and directory. */
  private static async createSegment(dir: string, segment: number, fsync: boolean): Promise<FileHandle> {
    const h = await fs.open(path.join(dir, segmentFileName(segment)), "wx+");
    try {
      await writeFully(h, [encodeSegmentHeader(segment)], 0);
      if (fsync) await h.sync();
      await syncDir(dir);
    } catch (e) {
      await h.close().catch(() => undefined);
      throw e;
    }
    return h;
  }

  // -------------------------------------------------------------------------
  // Appending (group commit)

  /**
   * Queues a record; resolves with its position once it is written and
   * fdatasync returned. Rejects at once with TooLargeError (payload above
   * recordBytesMax), OverloadError (too many or too many bytes unacked) or
   * UnavailableError (closed, or failed earlier).
   */
  append(type: number, payload: Uint8Array): Promise<WalPosition> {
    assert(Number.isInteger(type) && type >= 0 && type <= RECORD_TYPE_MAX, `record type ${type} is not a u8`);
    if (this.failure !== null) return Promise.reject(this.failedError());
    if (this.closing) return Promise.reject(new UnavailableError("the WAL is closed"));
    if (payload.length > this.opts.recordBytesMax) return Promise.reject(new TooLargeError("WAL record payload bytes", this.opts.recordBytesMax));
    const frameLen = FRAME_HEADER_BYTES + payload.length;
    if (this.unacked >= this.opts.pendingWritesMax)
      return Promise.reject(new OverloadError(`the WAL has ${this.unacked} writes waiting (limit ${this.opts.pendingWritesMax})`));
    if (this.unacked > 0 && this.unackedBytes + frameLen > this.opts.pendingBytesMax)
      return Promise.reject(new OverloadError(`the WAL has ${this.unackedBytes} bytes waiting (limit ${this.opts.pendingBytesMax})`));
    const frame = encodeFrame(type, payload);
    return new Promise<WalPosition>((resolve, reject) => {
      this.queue.push({ seq: ++this.appendSeq, frame, resolve, reject });
      this.unacked++;
      this.unackedBytes += frame.length;
      this.scheduleFlush();
    });
  }

  private failedError(): Error {
    return new UnavailableError(`the WAL in ${this.dir} failed and refuses writes until reopened: ${this.failure?.message ?? ""}`, 1, { cause: this.failure });
  }

  /** Runs an I/O operation after every one before it; the chain itself never rejects. */
  private enqueueOp<T>(op: () => Promise<T>): Promise<T> {
    const p = this.serial.then(op);
    this.serial = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    void this.enqueueOp(async () => {
      this.flushScheduled = false;
      await this.flushGroup();
    });
  }

  private settle(p: Pending): void {
    this.unacked--;
    this.unackedBytes -= p.frame.length;
    assert(this.unacked >= 0 && this.unackedBytes >= 0, "unacked counters never go negative");
  }

  /** Marks the WAL failed and rejects every waiting append. Never retries on this file handle. */
  private fail(cause: unknown, group: readonly Pending[]): void {
    const e = cause instanceof Error ? cause : new Error(String(cause));
    if (this.failure === null) this.failure = e;
    const err = this.failedError();
    for (const p of [...group, ...this.queue.splice(0)]) {
      this.settle(p);
      p.reject(err);
    }
  }

  /** Writes one group: as many queued records as fit the segment and group limits, one write, one fdatasync. */
  private async flushGroup(): Promise<void> {
    if (this.queue.length === 0) return;
    if (this.failure !== null) {
      this.fail(this.failure, []);
      return;
    }
    // Appends made after a rotate() call wait for that rotation (it reschedules the flush).
    const barrier = this.barriers[0] ?? Number.POSITIVE_INFINITY;
    if (this.queue[0]!.seq > barrier) return;
    if (this.writeOffset + this.queue[0]!.frame.length > this.opts.segmentBytesMax) {
      try {
        await this.rotateNow();
      } catch (e) {
        this.fail(e, []);
        return;
      }
    }
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && n < GROUP_RECORDS_MAX && this.queue[n]!.seq <= barrier) {
      const len = this.queue[n]!.frame.length;
      if (this.writeOffset + bytes + len > this.opts.segmentBytesMax) break;
      if (n > 0 && bytes + len > this.opts.groupBytesMax) break;
      bytes += len;
      n++;
    }
    assert(n >= 1, "a fresh segment holds at least one record of the largest size");
    const group = this.queue.splice(0, n);
    const segment = this.current;
    const offset = this.writeOffset;
    let durationMs = 0;
    try {
      this.opts.faults.beforeWrite?.(segment, offset, bytes);
      await writeFully(
        this.handle,
        group.map((p) => p.frame),
        offset,
      );
      this.writeOffset += bytes;
      this.sizes.set(segment, this.writeOffset);
      if (this.opts.fsync) {
        this.opts.faults.beforeSync?.(segment);
        const t0 = performance.now();
        await this.handle.datasync();
        durationMs = performance.now() - t0;
      }
      this.durableOffset = this.writeOffset;
    } catch (e) {
      this.fail(e, group);
      return;
    }
    assert(this.writeOffset <= this.opts.segmentBytesMax, "a segment never exceeds segmentBytesMax");
    let at = offset;
    for (const p of group) {
      this.settle(p);
      p.resolve({ segment, offset: at, length: p.frame.length });
      at += p.frame.length;
    }
    assert(at === this.writeOffset, "positions cover exactly the bytes written");
    if (this.opts.onFsync !== null) {
      try {
        this.opts.onFsync(durationMs, bytes, n);
      } catch {
        // A metrics callback must not affect durability.
      }
    }
    if (this.queue.length > 0) this.scheduleFlush();
  }

  /** Writes every queued append with seq <= upToSeq. */
  private async drainQueue(upToSeq = Number.POSITIVE_INFINITY): Promise<void> {
    while (this.queue.length > 0 && this.queue[0]!.seq <= upToSeq && this.failure === null) await this.flushGroup();
    if (this.failure !== null && this.queue.length > 0) this.fail(this.failure, []);
  }

  private async rotateNow(): Promise<number> {
    const next = this.current + 1;
    const h = await Wal.createSegment(this.dir, next, this.opts.fsync);
    const old = this.handle;
    this.handle = h;
    this.current = next;
    this.writeOffset = SEGMENT_HEADER_BYTES;
    // createSegment synced the header (when fsync is on).
    this.durableOffset = SEGMENT_HEADER_BYTES;
    this.sizes.set(next, SEGMENT_HEADER_BYTES);
    await old.close();
    return next;
  }

  // -------------------------------------------------------------------------
  // Segment management

  /**
   * Closes the current segment and starts the next; returns its number.
   * A barrier: appends made before the call land in older segments, appends
   * made after it in the new one or later.
   */
  rotate(): Promise<number> {
    if (this.closing) return Promise.reject(new UnavailableError("the WAL is closed"));
    if (this.failure !== null) return Promise.reject(this.failedError());
    const barrier = this.appendSeq;
    assert(this.barriers.length === 0 || this.barriers[this.barriers.length - 1]! <= barrier, "barriers ascend");
    this.barriers.push(barrier);
    return this.enqueueOp(async () => {
      try {
        await this.drainQueue(barrier);
        if (this.failure !== null) throw this.failedError();
        try {
          return await this.rotateNow();
        } catch (e) {
          this.fail(e, []);
          throw this.failedError();
        }
      } finally {
        assert(this.barriers[0] === barrier, "rotations run in call order");
        this.barriers.shift();
        if (this.queue.length > 0) this.scheduleFlush();
      }
    });
  }

  /** Segment numbers on disk, ascending. */
  segments(): number[] {
    return [...this.sizes.keys()].sort((a, b) => a - b);
  }

  currentSegment(): number {
    return this.current;
  }

  /**
   * Every segment file with the bytes a reader may check: a closed segment's whole size, the current segment's
   * durable length (a group being written past it is not damage). Ascending by segment.
   */
  segmentFiles(): WalSegmentFile[] {
    return this.segments().map((segment) => ({
      segment,
      path: path.join(this.dir, segmentFileName(segment)),
      bytes: segment === this.current ? this.durableOffset : this.sizes.get(segment)!,
      current: segment === this.current,
    }));
  }

  /** Bytes of all segments (as written by this process; unacked bytes included while a write is in flight). */
  sizeBytes(): number {
    let total = 0;
    for (const v of this.sizes.values()) total += v;
    return total;
  }

  /** Deletes every segment numbered below `segment` (never the current one). */
  removeSegmentsBefore(segment: number): Promise<void> {
    assert(Number.isInteger(segment) && segment >= 1, `segment ${segment} is not a segment number`);
    return this.enqueueOp(async () => {
      assert(segment <= this.current, `removeSegmentsBefore(${segment}) would delete the current segment ${this.current}; rotate() first`);
      const doomed = this.segments().filter((s) => s < segment);
      for (const s of doomed) {
        await fs.rm(path.join(this.dir, segmentFileName(s)), { force: true });
        this.sizes.delete(s);
      }
      if (doomed.length > 0) await syncDir(this.dir);
    });
  }

  /** True once a write or fsync failed; every append rejects from then on. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Stops accepting appends, waits for the queued ones to be written and acked, closes the file. */
  close(): Promise<void> {
    if (this.closing) return this.serial;
    this.closing = true;
    return this.enqueueOp(async () => {
      assert(this.barriers.length === 0, "every rotation queued before close() has run");
      await this.drainQueue();
      await this.handle.close();
    });
  }
}
