// A batch is the unit of ingest, durability and provenance: one write request,
// one WAL record, one receipt. Its canonical encoding (docs/format/batch.md)
// is deterministic, so its SHA-256 names its content on every node.

import { assert } from "./assert.js";
import { ByteReader, ByteWriter } from "./bytes.js";
import { BadInputError, ConflictError, TooLargeError, type ConflictingPoint, type InputLocation } from "./errors.js";
import { sha256, toHex } from "./hash.js";
import { seriesKey, type Labels } from "./labels.js";
import { SampleColumns } from "./sample-columns.js";
import { asBuffer, bytesKey, encodeLabelSection, type InternedSeries, type SeriesInternCache } from "./series-intern.js";
import type { Limits } from "./limits.js";

export type Origin = "original" | "inferred";
export const ORIGIN_CODE: Readonly<Record<Origin, number>> = Object.freeze({ original: 0, inferred: 1 });
export const ORIGIN_BY_CODE: readonly Origin[] = ["original", "inferred"];

export { MS_ABS_MAX_FOR_NS } from "./sample-columns.js";

export interface BatchSeries {
  readonly key: string; // canonical series key (labels.ts)
  readonly labels: Labels;
  /** When known: the label section of the canonical encoding (series-intern.ts), which encodeBatch then copies instead of encoding the labels again. */
  readonly labelBytes?: Uint8Array;
  readonly timestampsNs: BigInt64Array; // strictly increasing
  readonly values: Float64Array;
}

export interface Batch {
  readonly shardId: number;
  readonly origin: Origin;
  /** For inferred batches: canonical JSON describing the method and source points; null otherwise. */
  readonly inference: string | null;
  readonly series: readonly BatchSeries[]; // sorted by key, keys unique
  readonly sampleCount: number;
}

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
function bitsOf(v: number): bigint {
  f64[0] = v;
  return u64[0]!;
}

/** Two sample values are the same point value iff their IEEE-754 bits are equal (NaN payloads, -0 and all). */
export function sameValue(a: number, b: number): boolean {
  if (a === b) return a !== 0 || Object.is(a, b);
  if (a !== a && b !== b) return bitsOf(a) === bitsOf(b);
  return false;
}

interface PendingSeries {
  readonly index: number;
  readonly key: string;
  readonly labels: Labels;
  readonly labelBytes: Uint8Array | undefined;
  /** Its samples' positions in the columns: [first, last], `count` of them. */
  first: number;
  last: number;
  count: number;
  /** Every sample of it came right after its previous one in the columns: they are columns[first, first + count). */
  contiguous: boolean;
  /** Its timestamps strictly increase in the order given. */
  increasing: boolean;
}

/** Same series and timestamp twice in one request with different values. */
export interface InRequestConflicts {
  count: number;
  /** The first CONFLICTS_LISTED_MAX of them. */
  listed: ConflictingPoint[];
}

/** In-request conflicts listed at most (the count goes on). */
export const CONFLICTS_LISTED_MAX = 100;

/**
 * Collects samples from a parser, enforcing per-request limits as they are
 * reached, then builds the canonical batch. Labels passed in must already be
 * canonical (labels.ts canonicalLabels). Samples go into one set of columns
 * for the whole request (sample-columns.ts); build() sorts the series and lays
 * their samples out in one pair of arrays, each series a view of it.
 */
export class BatchBuilder {
  private readonly byKey = new Map<string, PendingSeries>();
  private readonly pending: PendingSeries[] = [];
  private readonly cols = new SampleColumns();
  // The series of the last addSample: parsers add a series' samples one after another.
  private last: PendingSeries | null = null;

  constructor(private readonly limits: Pick<Limits, "seriesPerBatchMax" | "samplesPerBatchMax">) {}

  get sampleCount(): number {
    return this.cols.length;
  }
  get seriesCount(): number {
    return this.byKey.size;
  }

  /** Returns the series' key; use with addSample for many samples of one series. */
  series(labels: Labels, loc: InputLocation = {}): string {
    return this.register(seriesKey(labels), labels, undefined, loc);
  }

  /** series() for an interned series: its key and encoding are already known. */
  interned(s: InternedSeries, loc: InputLocation = {}): string {
    return this.register(s.key, s.labels, s.labelBytes, loc);
  }

  private register(key: string, labels: Labels, labelBytes: Uint8Array | undefined, loc: InputLocation): string {
    if (!this.byKey.has(key)) {
      if (this.byKey.size >= this.limits.seriesPerBatchMax)
        throw new TooLargeError("number of series in one request", this.limits.seriesPerBatchMax, loc);
      const p: PendingSeries = { index: this.pending.length, key, labels, labelBytes, first: -1, last: -1, count: 0, contiguous: true, increasing: true };
      this.byKey.set(key, p);
      this.pending.push(p);
    }
    return key;
  }

  private seriesFor(key: string, loc: InputLocation): PendingSeries {
    const last = this.last;
    const s = last !== null && last.key === key ? last : this.byKey.get(key);
    assert(s !== undefined, "a sample added to a series not registered with series()");
    if (this.cols.length >= this.limits.samplesPerBatchMax)
      throw new TooLargeError("number of samples in one request", this.limits.samplesPerBatchMax, loc);
    this.last = s;
    return s;
  }

  private placed(s: PendingSeries, i: number): void {
    if (s.count === 0) s.first = i;
    else {
      if (i !== s.last + 1) s.contiguous = false;
      if (!this.cols.before(s.last, i)) s.increasing = false;
    }
    s.last = i;
    s.count++;
  }

  addSample(key: string, timestampNs: bigint, value: number, loc: InputLocation = {}): void {
    const s = this.seriesFor(key, loc);
    this.placed(s, this.cols.push(s.index, timestampNs, value));
  }

  /** addSample() with the timestamp in ms (a safe integer with |ms| <= MS_ABS_MAX_FOR_NS; see SampleColumns.pushMs). */
  addSampleMs(key: string, timestampMs: number, value: number, loc: InputLocation = {}): void {
    const s = this.seriesFor(key, loc);
    this.placed(s, this.cols.pushMs(s.index, timestampMs, value));
  }

  add(labels: Labels, timestampNs: bigint, value: number, loc: InputLocation = {}): void {
    this.addSample(this.series(labels, loc), timestampNs, value, loc);
  }

  /**
   * The canonical batch. Two different values for one (series, timestamp) refuse the request (ConflictError),
   * unless `keepFirst` is given: then the first in the request is kept and the others are counted there.
   */
  build(opts: { shardId?: number; origin?: Origin; inference?: string | null; keepFirst?: InRequestConflicts } = {}): Batch {
    const cols = this.cols;
    if (cols.length === 0) throw new BadInputError("the request holds no samples");
    const order = this.pending.filter((p) => p.count > 0).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const outTs = new BigInt64Array(cols.length);
    const outWords = new Uint32Array(outTs.buffer);
    const outVs = new Float64Array(cols.length);
    const series: BatchSeries[] = [];
    const conflicts: InRequestConflicts = opts.keepFirst ?? { count: 0, listed: [] };
    const conflictsBefore = conflicts.count;
    let off = 0;
    for (const p of order) {
      const start = off;
      if (p.contiguous && p.increasing) {
        // The common case (one scrape or import line per series): already canonical, copied word by word.
        for (let i = p.first; i < p.first + p.count; i++, off++) {
          outWords[2 * off] = cols.words[2 * i]!;
          outWords[2 * off + 1] = cols.words[2 * i + 1]!;
          outVs[off] = cols.vs[i]!;
        }
      } else {
        const idx: number[] = [];
        for (let i = p.first; i <= p.last; i++) if (cols.series[i] === p.index) idx.push(i);
        // Stable by position, so the first occurrence of a timestamp in the request is the one kept.
        idx.sort((a, b) => (cols.before(a, b) ? -1 : cols.before(b, a) ? 1 : a - b));
        for (const i of idx) {
          if (off > start && outWords[2 * off - 2] === cols.words[2 * i] && outWords[2 * off - 1] === cols.words[2 * i + 1]) {
            const prev = outVs[off - 1]!;
            if (!sameValue(prev, cols.vs[i]!)) {
              conflicts.count++;
              if (conflicts.listed.length < CONFLICTS_LISTED_MAX)
                conflicts.listed.push({ series: p.key, timestampNs: cols.ts[i]!.toString(), storedValue: prev, offeredValue: cols.vs[i]! });
            }
            continue; // an identical repeat within one request is one point
          }
          outWords[2 * off] = cols.words[2 * i]!;
          outWords[2 * off + 1] = cols.words[2 * i + 1]!;
          outVs[off] = cols.vs[i]!;
          off++;
        }
      }
      series.push({ key: p.key, labels: p.labels, labelBytes: p.labelBytes, timestampsNs: outTs.subarray(start, off), values: outVs.subarray(start, off) });
    }
    const found = conflicts.count - conflictsBefore;
    if (found > 0 && opts.keepFirst === undefined) throw new ConflictError(`the request holds ${found} points with two different values`, conflicts.listed);
    return { shardId: opts.shardId ?? 0, origin: opts.origin ?? "original", inference: opts.inference ?? null, series, sampleCount: off };
  }
}

const MAGIC = 0x31425148; // "HQB1" little-endian
const VERSION = 1;

/** Canonical bytes of a batch (docs/format/batch.md). */
export function encodeBatch(b: Batch): Uint8Array {
  const w = new ByteWriter(64 + b.sampleCount * 16 + b.series.length * 64);
  w.u32(MAGIC).u8(VERSION).u8(ORIGIN_CODE[b.origin]).u32(b.shardId);
  w.str(b.inference ?? "");
  w.uvarint(b.series.length);
  for (const s of b.series) {
    if (s.labelBytes !== undefined) w.bytes(s.labelBytes);
    else encodeLabelSection(s.labels, w);
    w.uvarint(s.timestampsNs.length);
    for (let i = 0; i < s.timestampsNs.length; i++) w.i64(s.timestampsNs[i]!).f64(s.values[i]!);
  }
  return w.finish();
}

/**
 * Decodes canonical bytes. With `intern`, a series whose label section was
 * seen before (the same bytes) is taken from the cache: no UTF-8 decoding and
 * no key building; new ones are added. The cache must be filled only by this
 * function (its keys are canonical label sections).
 */
export function decodeBatch(bytes: Uint8Array, source = "batch", intern?: SeriesInternCache): Batch {
  const r = new ByteReader(bytes, source);
  const buf = intern === undefined ? null : asBuffer(bytes);
  const magic = r.u32();
  if (magic !== MAGIC) throw new BadInputError(`${source}: not a batch (bad magic)`, { offset: 0 });
  const version = r.u8();
  if (version !== VERSION) throw new BadInputError(`${source}: unsupported batch version ${version}`, { offset: 4 });
  const origin = ORIGIN_BY_CODE[r.u8()];
  if (origin === undefined) throw new BadInputError(`${source}: bad origin`, { offset: 5 });
  const shardId = r.u32();
  const inf = r.str();
  const n = r.uvarint();
  const series: BatchSeries[] = [];
  let total = 0;
  // Every series' samples go into one pair of columns (each series a view of them), copied as 32-bit words: no
  // BigInt per timestamp and no typed arrays per series. A sample takes 16 bytes, so the rest of the input bounds them.
  const samplesMax = Math.floor(r.remaining / 16);
  const colTs = new BigInt64Array(samplesMax);
  const colVs = new Float64Array(samplesMax);
  const tsWords = new Uint32Array(colTs.buffer);
  const vsWords = new Uint32Array(colVs.buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) {
    const at = r.offset;
    let s: InternedSeries | undefined;
    if (buf !== null) {
      // The section's end is not known before it is walked: walk it without decoding text, then look it up.
      const nl = r.uvarint();
      for (let j = 0; j < 2 * nl; j++) r.skipLenBytes();
      const raw = bytesKey(buf, at, r.offset);
      s = intern!.get(raw);
      if (s === undefined) {
        r.offset = at;
        s = readLabelSection(r, bytes, at);
        intern!.set(raw, s);
      }
    } else s = readLabelSection(r, bytes, at);
    const ns = r.uvarint();
    const from = r.offset;
    r.skip(ns * 16); // bounds-checked: a truncated batch is a CorruptionError naming the offset
    assert(total + ns <= samplesMax, "the samples fit the columns the input bounds");
    for (let j = 0, o = from, k = 2 * total; j < ns; j++, o += 16, k += 2) {
      tsWords[k] = view.getUint32(o, true);
      tsWords[k + 1] = view.getUint32(o + 4, true);
      vsWords[k] = view.getUint32(o + 8, true);
      vsWords[k + 1] = view.getUint32(o + 12, true);
    }
    series.push({ key: s.key, labels: s.labels, labelBytes: s.labelBytes, timestampsNs: colTs.subarray(total, total + ns), values: colVs.subarray(total, total + ns) });
    total += ns;
  }
  if (r.remaining !== 0) throw new BadInputError(`${source}: ${r.remaining} trailing bytes`, { offset: r.offset });
  return { shardId, origin, inference: inf === "" ? null : inf, series, sampleCount: total };
}

function readLabelSection(r: ByteReader, bytes: Uint8Array, at: number): InternedSeries {
  const nl = r.uvarint();
  const labels: [string, string][] = [];
  for (let j = 0; j < nl; j++) labels.push([r.str(), r.str()]);
  // A copy: an interned series outlives the batch bytes it came from.
  return { key: seriesKey(labels), labels, labelBytes: bytes.slice(at, r.offset) };
}

export function batchDigest(encoded: Uint8Array): string {
  return toHex(sha256(encoded));
}

/** A batch's canonical bytes and their digest: computed once per write, then passed down the write path. */
export interface EncodedBatch {
  readonly bytes: Uint8Array;
  readonly sha256: string; // hex
}

export function encodeWithDigest(b: Batch): EncodedBatch {
  const bytes = encodeBatch(b);
  return { bytes, sha256: batchDigest(bytes) };
}

const BATCH_ID = /^[\x21-\x7e]+$/;
/** Every stored batch id (an Idempotency-Key, a digest, a partial write's id) is at most this long (docs/format/batch.md). */
export const BATCH_ID_BYTES_MAX = 128;

/** The batch id: the Idempotency-Key when given (validated), else the content digest. */
export function resolveBatchId(idempotencyKey: string | null | undefined, digestHex: string, maxBytes: number): string {
  if (idempotencyKey === null || idempotencyKey === undefined || idempotencyKey === "") return digestHex;
  if (idempotencyKey.length > maxBytes) throw new TooLargeError("Idempotency-Key length", maxBytes, { field: "Idempotency-Key" });
  if (!BATCH_ID.test(idempotencyKey))
    throw new BadInputError("Idempotency-Key must be printable ASCII without spaces", { field: "Idempotency-Key" });
  return idempotencyKey;
}
