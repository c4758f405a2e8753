// The batch archive: the canonical bytes of every batch, kept so that a stored
// point can be proven to come from a batch whose SHA-256 is in the Merkle log.
// Storage blocks keep points, not batch bytes, so without this file the leaf
// digests could not be re-derived. Format and recovery: docs/format/archive.md.
//
// Durability contract: put() only buffers; the bytes are on disk once a later
// sync() resolved (write + fdatasync). So a crash can only tear records that
// no sync() ever acknowledged, at the end of the last segment: open() cuts
// those off. Damage anywhere else may hit acknowledged bytes; it is never cut
// (that would delete everything after it), only skipped and reported in
// damaged(), so the caller refetches those batches from a replica and put()s
// them anew. Bad bytes never make open() throw: the node must keep running.

import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import * as path from "node:path";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { assert } from "../core/assert.js";
import { BATCH_ID_BYTES_MAX } from "../core/batch.js";
import { syncDir, writeFully } from "../wal/file-io.js";
import { ByteWriter } from "../core/bytes.js";
import { BadInputError, ConflictError, CorruptionError, OverloadError, TooLargeError, UnavailableError } from "../core/errors.js";
import { crc32c, sha256, toHex } from "../core/hash.js";

// ---------------------------------------------------------------- format

/** "HQA1" read as a little-endian u32. */
export const ARCHIVE_MAGIC = 0x31415148;
const MAGIC_BYTES = Buffer.from("HQA1", "latin1");
/** magic, crc32c, bodyLength. */
export const ARCHIVE_RECORD_HEADER_BYTES = 12;
export const ARCHIVE_BATCH_ID_BYTES_MAX = BATCH_ID_BYTES_MAX;
export const ARCHIVE_RAW_BYTES_MAX = 64 * 1024 * 1024;
const DIGEST_BYTES = 32;
/** Largest body a reader accepts: the id (with a 2-byte uvarint), digest, rawLength, codec and a stored payload. */
export const ARCHIVE_BODY_BYTES_LIMIT = 2 + ARCHIVE_BATCH_ID_BYTES_MAX + DIGEST_BYTES + 4 + 1 + ARCHIVE_RAW_BYTES_MAX;
/** Smallest body: a 1-byte id, its 1-byte length, digest, rawLength, codec, no payload. */
const BODY_BYTES_MIN = 1 + 1 + DIGEST_BYTES + 4 + 1;

export const CODEC_STORED = 0;
export const CODEC_DEFLATE_RAW = 1;

export const ARCHIVE_SEGMENT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
export const ARCHIVE_PENDING_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Buffers handed to one writev (Linux IOV_MAX is 1024). */
const WRITEV_BUFFERS_MAX = 1024;
const SEGMENT_SEQ_MAX = 99_999_999;

const SEGMENT_NAME = /^archive-([0-9]{8})\.hqa$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function archiveSegmentName(seq: number): string {
  assert(Number.isInteger(seq) && seq >= 1 && seq <= SEGMENT_SEQ_MAX, `archive segment number ${seq} out of range`);
  return `archive-${String(seq).padStart(8, "0")}.hqa`;
}

const utf8e = new TextEncoder();
const utf8d = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** One archive record (docs/format/archive.md), the payload deflated when that saves at least 10%. */
export function encodeArchiveRecord(batchId: string, digest: Uint8Array, raw: Uint8Array): Uint8Array {
  assert(digest.length === DIGEST_BYTES, `a SHA-256 digest is ${DIGEST_BYTES} bytes, got ${digest.length}`);
  assert(raw.length <= ARCHIVE_RAW_BYTES_MAX, "the caller checked the raw size limit");
  const deflated = raw.length === 0 ? null : deflateRawSync(raw);
  // Below a 10% saving, inflating on every read costs more than the disk it saves.
  const useDeflate = deflated !== null && deflated.length * 10 <= raw.length * 9;
  const payload = useDeflate ? deflated : raw;
  const prefix = new ByteWriter(2 + ARCHIVE_BATCH_ID_BYTES_MAX + DIGEST_BYTES + 5).str(batchId).bytes(digest).u32(raw.length).u8(useDeflate ? CODEC_DEFLATE_RAW : CODEC_STORED).finish();
  const bodyBytes = prefix.length + payload.length;
  assert(bodyBytes >= BODY_BYTES_MIN && bodyBytes <= ARCHIVE_BODY_BYTES_LIMIT, `archive record body of ${bodyBytes} bytes is outside the format's bounds`);
  const rec = new Uint8Array(ARCHIVE_RECORD_HEADER_BYTES + bodyBytes);
  rec.set(prefix, ARCHIVE_RECORD_HEADER_BYTES);
  rec.set(payload, ARCHIVE_RECORD_HEADER_BYTES + prefix.length);
  const view = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  view.setUint32(0, ARCHIVE_MAGIC, true);
  view.setUint32(8, bodyBytes, true);
  view.setUint32(4, crc32c(rec.subarray(8)), true);
  return rec;
}

export type ArchiveDamageReason =
  | "truncated" // the record runs past the end of its file
  | "bad_magic" // the bytes do not start a record
  | "bad_length" // bodyLength outside the format's bounds
  | "crc_mismatch"
  | "bad_body" // the CRC matches but the body does not parse (a writer bug or a CRC collision)
  | "torn_tail" // a complete record failing its CRC at the end of the last segment: cut off at open
  | "inflate_failed"
  | "length_mismatch" // the payload inflates to another length than rawLength
  | "digest_mismatch" // the bytes do not hash to the stored digest
  | "id_mismatch" // the record at the indexed offset names another batch
  | "unreadable"; // the file is missing or shorter than the index says

interface ParsedRecord {
  readonly batchId: string;
  readonly digest: Uint8Array;
  readonly rawBytes: number;
  readonly codec: number;
  /** Offsets into the image the record was parsed from. */
  readonly payloadStart: number;
  readonly recordBytes: number;
}

type ParseResult = { ok: true; rec: ParsedRecord } | { ok: false; reason: ArchiveDamageReason; detail: string };

/** Parses the record at `at`, checking everything but the payload's inflation and digest. */
function parseRecord(image: Uint8Array, at: number): ParseResult {
  const left = image.length - at;
  if (left < ARCHIVE_RECORD_HEADER_BYTES) {
    const have = image.subarray(at, at + Math.min(left, MAGIC_BYTES.length));
    if (have.every((b, i) => b === MAGIC_BYTES[i])) return { ok: false, reason: "truncated", detail: `${left} bytes, shorter than a record header` };
    return { ok: false, reason: "bad_magic", detail: `${left} stray bytes` };
  }
  const view = new DataView(image.buffer, image.byteOffset + at, left);
  if (view.getUint32(0, true) !== ARCHIVE_MAGIC) return { ok: false, reason: "bad_magic", detail: "no record magic" };
  const bodyBytes = view.getUint32(8, true);
  if (bodyBytes < BODY_BYTES_MIN || bodyBytes > ARCHIVE_BODY_BYTES_LIMIT) return { ok: false, reason: "bad_length", detail: `bodyLength ${bodyBytes} outside ${BODY_BYTES_MIN}..${ARCHIVE_BODY_BYTES_LIMIT}` };
  const recordBytes = ARCHIVE_RECORD_HEADER_BYTES + bodyBytes;
  if (recordBytes > left) return { ok: false, reason: "truncated", detail: `record of ${recordBytes} bytes, ${left} left in the file` };
  const crc = crc32c(image.subarray(at + 8, at + recordBytes));
  if (crc !== view.getUint32(4, true)) return { ok: false, reason: "crc_mismatch", detail: `crc32c ${crc.toString(16)}, stored ${view.getUint32(4, true).toString(16)}` };
  const body = parseBody(image, at, recordBytes);
  if (typeof body === "string") return { ok: false, reason: "bad_body", detail: body };
  return { ok: true, rec: body };
}

/** The body of a record whose bounds are known; a string says why it does not parse. */
function parseBody(image: Uint8Array, at: number, recordBytes: number): ParsedRecord | string {
  const end = at + recordBytes;
  let p = at + ARCHIVE_RECORD_HEADER_BYTES;
  let idBytes = 0;
  for (let shift = 0; ; shift += 7) {
    if (p >= end || shift > 7) return "bad batch id length";
    const b = image[p++]!;
    idBytes += (b & 0x7f) << shift;
    if (b < 0x80) break;
  }
  if (idBytes < 1 || idBytes > ARCHIVE_BATCH_ID_BYTES_MAX) return `batch id of ${idBytes} bytes`;
  if (p + idBytes + DIGEST_BYTES + 5 > end) return "body shorter than its fields";
  let batchId: string;
  try {
    batchId = utf8d.decode(image.subarray(p, p + idBytes));
  } catch {
    return "batch id is not UTF-8";
  }
  p += idBytes;
  const digest = image.subarray(p, p + DIGEST_BYTES);
  p += DIGEST_BYTES;
  const rawBytes = new DataView(image.buffer, image.byteOffset + p, 4).getUint32(0, true);
  p += 4;
  const codec = image[p++]!;
  if (rawBytes > ARCHIVE_RAW_BYTES_MAX) return `rawLength ${rawBytes} above ${ARCHIVE_RAW_BYTES_MAX}`;
  if (codec !== CODEC_STORED && codec !== CODEC_DEFLATE_RAW) return `unknown codec ${codec}`;
  if (codec === CODEC_STORED && end - p !== rawBytes) return `stored payload of ${end - p} bytes, rawLength ${rawBytes}`;
  return { batchId, digest, rawBytes, codec, payloadStart: p, recordBytes };
}

/** The batch id a damaged record seems to name, or null: best effort, the id bytes may be damaged too. */
function guessBatchId(image: Uint8Array, at: number, end: number): string | null {
  if (end - at < ARCHIVE_RECORD_HEADER_BYTES + 2) return null;
  const view = new DataView(image.buffer, image.byteOffset + at, end - at);
  if (view.getUint32(0, true) !== ARCHIVE_MAGIC) return null;
  const n = image[at + ARCHIVE_RECORD_HEADER_BYTES]!;
  if (n < 1 || n > 0x7f || at + ARCHIVE_RECORD_HEADER_BYTES + 1 + n > end) return null; // ids of 128 bytes (2-byte length) are not guessed
  try {
    return utf8d.decode(image.subarray(at + ARCHIVE_RECORD_HEADER_BYTES + 1, at + ARCHIVE_RECORD_HEADER_BYTES + 1 + n));
  } catch {
    return null;
  }
}

/** Length of the record at `at` if its header looks sane and it fits before `end`; null otherwise. */
function plausibleLength(image: Uint8Array, at: number, end: number): number | null {
  if (end - at < ARCHIVE_RECORD_HEADER_BYTES) return null;
  const view = new DataView(image.buffer, image.byteOffset + at, ARCHIVE_RECORD_HEADER_BYTES);
  if (view.getUint32(0, true) !== ARCHIVE_MAGIC) return null;
  const body = view.getUint32(8, true);
  if (body < BODY_BYTES_MIN || body > ARCHIVE_BODY_BYTES_LIMIT || at + ARCHIVE_RECORD_HEADER_BYTES + body > end) return null;
  return ARCHIVE_RECORD_HEADER_BYTES + body;
}

/**
 * Where the next valid record after damage at `at` starts, or null. The damaged record's own length is tried first:
 * a search for the magic could stop inside its payload, which holds client-chosen bytes when stored uncompressed.
 */
function resync(image: Uint8Array, at: number): number | null {
  const len = plausibleLength(image, at, image.length);
  if (len !== null && at + len < image.length && parseRecord(image, at + len).ok) return at + len;
  const buf = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  for (let p = buf.indexOf(MAGIC_BYTES, at + 1); p !== -1; p = buf.indexOf(MAGIC_BYTES, p + 1)) if (parseRecord(image, p).ok) return p;
  return null;
}

// ---------------------------------------------------------------- the archive

export interface ArchiveLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface BatchArchiveOptions {
  /** Warnings about damage found and torn tails cut. */
  log?: ArchiveLogger;
  /** A new segment starts when a record would take the current one past this (a larger record gets a segment of its own). Default 64 MiB. */
  segmentBytesMax?: number;
  /** Bytes of records put but not yet synced; beyond it put() throws OverloadError (an empty buffer always takes one). Default 64 MiB. */
  pendingBytesMax?: number;
}

export interface ArchiveDamage {
  /** The batch the damaged record names; null when unreadable. Best effort: the id bytes may be damaged too. */
  readonly batchId: string | null;
  readonly file: string;
  readonly offset: number;
  readonly reason: ArchiveDamageReason;
}

export interface ArchiveStats {
  /** Batches held (synced or pending). */
  batches: number;
  segments: number;
  /** Bytes of all segment files, as written by this process (pending records excluded). */
  bytesOnDisk: number;
  /** Canonical bytes of the batches held. */
  rawBytes: number;
}

interface Entry {
  readonly sha256Hex: string;
  readonly rawBytes: number;
  /** Still in memory (put, not yet synced): the encoded record; null once on disk. */
  readonly record: Uint8Array | null;
  readonly seq: number;
  readonly offset: number;
  readonly recordBytes: number;
}

interface Queued {
  readonly batchId: string;
  readonly entry: Entry;
}

function optionInt(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isSafeInteger(n) || n < 1 || n > 2 ** 40) throw new BadInputError(`archive option ${name} must be an integer in 1..${2 ** 40}, got ${String(v)}`, { field: name });
  return n;
}

const NULL_LOG: ArchiveLogger = { warn: () => undefined, info: () => undefined };

export class BatchArchive {
  private readonly index = new Map<string, Entry>();
  /** seq → bytes of the segment file as far as this process knows (written records included). */
  private readonly segmentBytes = new Map<number, number>();
  private readonly damage: ArchiveDamage[] = [];
  private rawBytesHeld = 0;
  private queue: Queued[] = [];
  private pendingBytesNow = 0;
  private handle: FileHandle | null = null;
  private current = 0; // seq appends go to; 0 before the first segment exists
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private failure: Error | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly dir: string,
    private readonly log: ArchiveLogger,
    private readonly segmentBytesMax: number,
    private readonly pendingBytesMax: number,
  ) {}

  /** Opens (creating if missing) the archive in `dir` and rebuilds the index from every segment. Never throws on damaged bytes. */
  static async open(dir: string, opts: BatchArchiveOptions = {}): Promise<BatchArchive> {
    const a = new BatchArchive(dir, opts.log ?? NULL_LOG, optionInt("segmentBytesMax", opts.segmentBytesMax, ARCHIVE_SEGMENT_BYTES_MAX_DEFAULT), optionInt("pendingBytesMax", opts.pendingBytesMax, ARCHIVE_PENDING_BYTES_MAX_DEFAULT));
    const existed = await fs.stat(dir).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return false;
        throw e;
      },
    );
    await fs.mkdir(dir, { recursive: true });
    // Without it a crash could lose the directory entry and with it every segment synced into it.
    if (!existed) await syncDir(path.dirname(path.resolve(dir)));
    const seqs: number[] = [];
    for (const name of await fs.readdir(dir)) {
      const m = SEGMENT_NAME.exec(name);
      if (m !== null && Number(m[1]) >= 1) seqs.push(Number(m[1]));
    }
    seqs.sort((x, y) => x - y);
    for (let i = 0; i < seqs.length; i++) await a.scanSegment(seqs[i]!, i === seqs.length - 1);
    a.current = seqs.length === 0 ? 0 : seqs[seqs.length - 1]!;
    return a;
  }

  private fileOf(seq: number): string {
    return path.join(this.dir, archiveSegmentName(seq));
  }

  private noteDamage(d: ArchiveDamage, detail: string): void {
    this.damage.push(d);
    this.log.warn({ ...d, detail }, "batch archive: damaged record skipped; the batch must be fetched again");
  }

  /** Indexes every valid record of one segment; cuts a torn tail off the last one. */
  private async scanSegment(seq: number, isLast: boolean): Promise<void> {
    const file = this.fileOf(seq);
    const image = new Uint8Array(await fs.readFile(file));
    let at = 0;
    let validEnd = image.length;
    while (at < image.length) {
      const r = parseRecord(image, at);
      if (r.ok) {
        this.indexRecord(r.rec, seq, at, file);
        at += r.rec.recordBytes;
        continue;
      }
      const next = resync(image, at);
      const end = next ?? image.length;
      if (next === null && isLast) {
        // Nothing valid follows: a write no sync() acknowledged, unless a complete record flipped a bit. Cutting it
        // loses nothing promised in the first case; in the second the id is still reported so the batch is refetched.
        validEnd = at;
        const len = plausibleLength(image, at, end);
        const id = len === null ? null : guessBatchId(image, at, at + len);
        if (id !== null && r.reason === "crc_mismatch" && !this.index.has(id)) this.noteDamage({ batchId: id, file, offset: at, reason: "torn_tail" }, r.detail);
        this.log.warn({ file, offset: at, bytes: image.length - at, reason: r.reason, detail: r.detail }, "batch archive: torn tail of the last segment cut off");
        break;
      }
      // Damage that may hold acknowledged records: skip it, never cut it. Each record in the range that still shows
      // its length is reported, so as many batches as can be named get refetched.
      // resync() returns the first valid record after `at`, so none of the records walked here is valid.
      let p = at;
      let bad: ParseResult = r;
      while (p < end && !bad.ok) {
        const len = plausibleLength(image, p, end);
        if (len === null && p !== at) break;
        this.noteDamage({ batchId: len === null ? null : guessBatchId(image, p, p + len), file, offset: p, reason: bad.reason }, bad.detail);
        if (len === null) break;
        p += len;
        bad = p < end ? parseRecord(image, p) : bad;
      }
      at = end;
    }
    if (validEnd < image.length) {
      const h = await fs.open(file, "r+");
      try {
        await h.truncate(validEnd);
        // Appends will follow the cut; unsynced, the old tail could reappear under them after a power loss.
        await h.sync();
      } finally {
        await h.close();
      }
    }
    this.segmentBytes.set(seq, validEnd);
  }

  private indexRecord(rec: ParsedRecord, seq: number, offset: number, file: string): void {
    const sha256Hex = toHex(rec.digest);
    const prev = this.index.get(rec.batchId);
    if (prev !== undefined) {
      // put() refuses a second digest for an id, so two differing valid records mean a bug or a hand-edited file.
      if (prev.sha256Hex !== sha256Hex) this.log.warn({ batchId: rec.batchId, file, offset, stored: prev.sha256Hex, later: sha256Hex }, "batch archive: two records of one batch id with different digests; the later one wins");
      this.rawBytesHeld -= prev.rawBytes;
    }
    this.index.set(rec.batchId, { sha256Hex, rawBytes: rec.rawBytes, record: null, seq, offset, recordBytes: rec.recordBytes });
    this.rawBytesHeld += rec.rawBytes;
  }

  // -------------------------------------------------------------- writing

  /**
   * Buffers the canonical bytes of a batch; sync() makes them durable. A no-op when the batch is already held with
   * this digest; ConflictError when it is held with another. `bytes` is copied (compressed) at once.
   */
  put(batchId: string, sha256Hex: string, bytes: Uint8Array): void {
    if (this.failure !== null) throw this.failedError();
    if (this.closing !== null) throw new UnavailableError("the batch archive is closed");
    if (batchId.length === 0) throw new BadInputError("an archived batch needs a non-empty batch id", { field: "batchId" });
    const idBytes = utf8e.encode(batchId).length;
    if (idBytes > ARCHIVE_BATCH_ID_BYTES_MAX) throw new TooLargeError("archived batch id bytes", ARCHIVE_BATCH_ID_BYTES_MAX, { field: "batchId" });
    if (bytes.length > ARCHIVE_RAW_BYTES_MAX) throw new TooLargeError("archived batch bytes", ARCHIVE_RAW_BYTES_MAX, { field: "bytes" });
    assert(SHA256_HEX.test(sha256Hex), `batch digest "${sha256Hex}" is not 64 lowercase hex digits`);
    const held = this.index.get(batchId);
    if (held !== undefined) {
      if (held.sha256Hex === sha256Hex) return;
      throw new ConflictError(`batch ${batchId} is archived with digest ${held.sha256Hex}, not ${sha256Hex}`, [], { batchId, storedSha256: held.sha256Hex, offeredSha256: sha256Hex });
    }
    // Checked after the held case: a WAL replay offers every batch again, and re-hashing those would be wasted.
    const digest = sha256(bytes);
    assert(toHex(digest) === sha256Hex, `batch ${batchId}: bytes hash to ${toHex(digest)}, the caller claims ${sha256Hex}`);
    // Refused before compressing: under overload the CPU is better spent draining.
    if (this.pendingBytesNow > 0 && this.pendingBytesNow >= this.pendingBytesMax)
      throw new OverloadError(`the batch archive has ${this.pendingBytesNow} bytes waiting for sync (limit ${this.pendingBytesMax})`);
    const record = encodeArchiveRecord(batchId, digest, bytes);
    if (this.pendingBytesNow > 0 && this.pendingBytesNow + record.length > this.pendingBytesMax)
      throw new OverloadError(`the batch archive has ${this.pendingBytesNow} bytes waiting for sync (limit ${this.pendingBytesMax})`);
    const entry: Entry = { sha256Hex, rawBytes: bytes.length, record, seq: 0, offset: 0, recordBytes: record.length };
    this.index.set(batchId, entry);
    this.rawBytesHeld += bytes.length;
    this.queue.push({ batchId, entry });
    this.pendingBytesNow += record.length;
  }

  /**
   * Writes and fdatasyncs every record put so far. Concurrent calls share one write and fsync; a put made while one
   * runs goes to the next. After a failed write or fsync the archive refuses everything until reopened.
   */
  sync(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failedError());
    if (this.next !== null) return this.next;
    if (this.queue.length === 0) return this.running ?? Promise.resolve();
    if (this.running === null) {
      this.running = this.startFlush();
      return this.running;
    }
    this.next = this.running
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        if (this.failure !== null) throw this.failedError();
        assert(this.running === null, "one flush at a time");
        this.running = this.startFlush();
        return this.running;
      });
    return this.next;
  }

  private startFlush(): Promise<void> {
    const group = this.queue;
    this.queue = [];
    const p: Promise<void> = this.flush(group).finally(() => {
      if (this.running === p) this.running = null;
    });
    return p;
  }

  private failedError(): Error {
    return new UnavailableError(`the batch archive in ${this.dir} failed and refuses writes until reopened: ${this.failure?.message ?? ""}`, 1, { cause: this.failure });
  }

  private async flush(group: readonly Queued[]): Promise<void> {
    try {
      let i = 0;
      while (i < group.length) {
        const size = this.current === 0 ? 0 : this.segmentBytes.get(this.current)!;
        const full = size > 0 && size + group[i]!.entry.recordBytes > this.segmentBytesMax;
        if (this.handle === null || full) await this.useSegment(this.current === 0 || full);
        // Collect what fits this segment; the first record always fits (a fresh segment takes one of any size).
        const start = i;
        let bytes = 0;
        const at = this.segmentBytes.get(this.current)!;
        while (i < group.length && i - start < WRITEV_BUFFERS_MAX) {
          const len = group[i]!.entry.recordBytes;
          if (i > start && at + bytes + len > this.segmentBytesMax) break;
          bytes += len;
          i++;
        }
        const chunk = group.slice(start, i);
        await writeFully(
          this.handle!,
          chunk.map((q) => q.entry.record!),
          at,
        );
        this.segmentBytes.set(this.current, at + bytes);
        // Sync before the next segment is created or the chunk is acknowledged; one fsync per segment touched
        // would need the older handle kept open, and groups rarely span segments.
        await this.handle!.datasync();
        let offset = at;
        for (const q of chunk) {
          if (this.index.get(q.batchId) === q.entry) this.index.set(q.batchId, { ...q.entry, record: null, seq: this.current, offset });
          offset += q.entry.recordBytes;
          this.pendingBytesNow -= q.entry.recordBytes;
        }
        assert(offset === at + bytes && this.pendingBytesNow >= 0, "offsets cover exactly the bytes written");
      }
    } catch (e) {
      // fsyncgate: after a failed fsync the kernel may have dropped the dirty pages, so a retry on this descriptor could
      // report success for bytes not on disk. Refuse until a reopen re-reads what really is there.
      this.failure = e instanceof Error ? e : new Error(String(e));
      throw this.failedError();
    }
  }

  /** Opens the last segment for appending (it survived open(), so it may already hold records), or starts the next one. */
  private async useSegment(startNew: boolean): Promise<void> {
    assert(startNew || (this.handle === null && this.current > 0), "only an existing segment without a handle is reopened");
    if (!startNew) {
      this.handle = await fs.open(this.fileOf(this.current), "r+");
      return;
    }
    if (this.handle !== null) {
      await this.handle.close();
      this.handle = null;
    }
    const seq = this.current + 1;
    assert(seq <= SEGMENT_SEQ_MAX, "archive segment numbers are exhausted");
    const h = await fs.open(this.fileOf(seq), "wx");
    try {
      // The name must be durable before records in the file are acknowledged.
      await syncDir(this.dir);
    } catch (e) {
      await h.close().catch(() => undefined);
      throw e;
    }
    this.handle = h;
    this.current = seq;
    this.segmentBytes.set(seq, 0);
  }

  /** True when every batch put so far is on disk (fdatasync returned). */
  durable(): boolean {
    return this.queue.length === 0 && this.running === null && this.pendingBytesNow === 0;
  }

  /** Encoded bytes of records put but not yet synced. */
  get pendingBytes(): number {
    return this.pendingBytesNow;
  }

  /** Syncs, then closes. Further puts and syncs are refused; get() keeps working from the index. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    const synced = this.failure === null ? this.sync() : Promise.resolve();
    this.closing = synced.finally(async () => {
      const h = this.handle;
      this.handle = null;
      if (h !== null) await h.close();
    });
    return this.closing;
  }

  // -------------------------------------------------------------- reading

  has(batchId: string): boolean {
    return this.index.has(batchId);
  }

  /** Every batch id held, synced or pending, in no particular order. */
  ids(): IterableIterator<string> {
    return this.index.keys();
  }

  /**
   * The canonical bytes of a batch, null when it is not held. Checks the record's CRC and the SHA-256 of the
   * inflated bytes; damage throws CorruptionError, is listed in damaged() and drops the batch, so has() is false and
   * a put() of the refetched batch stores it anew.
   */
  async get(batchId: string): Promise<Uint8Array | null> {
    const entry = this.index.get(batchId);
    if (entry === undefined) return null;
    const file = entry.record !== null ? "(memory: not yet synced)" : this.fileOf(entry.seq);
    let image: Uint8Array;
    let at: number;
    if (entry.record !== null) {
      image = entry.record;
      at = 0;
    } else {
      image = new Uint8Array(entry.recordBytes);
      at = 0;
      let got = 0;
      try {
        const h = await fs.open(file, "r");
        try {
          while (got < entry.recordBytes) {
            const n = (await h.read(image, got, entry.recordBytes - got, entry.offset + got)).bytesRead;
            if (n === 0) break;
            got += n;
          }
        } finally {
          await h.close();
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
      if (got < entry.recordBytes) return this.corrupt(batchId, entry, file, entry.offset, "unreadable", `${got} of ${entry.recordBytes} bytes readable`);
    }
    const r = parseRecord(image, at);
    if (!r.ok) return this.corrupt(batchId, entry, file, entry.offset, r.reason, r.detail);
    const rec = r.rec;
    if (rec.batchId !== batchId || rec.recordBytes !== entry.recordBytes) return this.corrupt(batchId, entry, file, entry.offset, "id_mismatch", `the record names ${rec.batchId}`);
    const payload = image.subarray(rec.payloadStart, at + rec.recordBytes);
    let raw: Uint8Array;
    if (rec.codec === CODEC_STORED) raw = payload.slice();
    else {
      try {
        // The bound keeps a damaged stream from inflating into gigabytes.
        raw = new Uint8Array(inflateRawSync(payload, { maxOutputLength: Math.max(1, rec.rawBytes) }));
      } catch (e) {
        return this.corrupt(batchId, entry, file, entry.offset, "inflate_failed", (e as Error).message);
      }
    }
    if (raw.length !== rec.rawBytes) return this.corrupt(batchId, entry, file, entry.offset, "length_mismatch", `${raw.length} bytes, rawLength ${rec.rawBytes}`);
    const got = toHex(sha256(raw));
    if (got !== toHex(rec.digest) || got !== entry.sha256Hex) return this.corrupt(batchId, entry, file, entry.offset, "digest_mismatch", `bytes hash to ${got}, expected ${entry.sha256Hex}`);
    return raw;
  }

  private corrupt(batchId: string, entry: Entry, file: string, offset: number, reason: ArchiveDamageReason, detail: string): never {
    // A pending record stays queued and is written anyway (the next open finds it damaged again); the index forgets it.
    if (this.index.get(batchId) === entry) {
      this.index.delete(batchId);
      this.rawBytesHeld -= entry.rawBytes;
      assert(this.rawBytesHeld >= 0, "raw byte count never goes negative");
    }
    this.noteDamage({ batchId, file, offset, reason }, detail);
    throw new CorruptionError(`archived batch ${batchId}: ${reason} (${detail})`, file, offset, { details: { batchId, reason } });
  }

  /** Damaged records whose batch is not held by a valid record: the batches to fetch again. */
  damaged(): ArchiveDamage[] {
    return this.damage.filter((d) => d.batchId === null || !this.index.has(d.batchId));
  }

  stats(): ArchiveStats {
    let bytesOnDisk = 0;
    for (const v of this.segmentBytes.values()) bytesOnDisk += v;
    return { batches: this.index.size, segments: this.segmentBytes.size, bytesOnDisk, rawBytes: this.rawBytesHeld };
  }
}
