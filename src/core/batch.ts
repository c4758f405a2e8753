// A batch is the unit of ingest, durability and provenance: one write request,
// one WAL record, one receipt. Its canonical encoding (docs/format/batch.md)
// is deterministic, so its SHA-256 names its content on every node.

import { assert } from "./assert.js";
import { ByteReader, ByteWriter } from "./bytes.js";
import { BadInputError, ConflictError, TooLargeError, type ConflictingPoint, type InputLocation } from "./errors.js";
import { sha256, toHex } from "./hash.js";
import { seriesKey, type Labels } from "./labels.js";
import { asBuffer, bytesKey, encodeLabelSection, type InternedSeries, type SeriesInternCache } from "./series-intern.js";
import type { Limits } from "./limits.js";

export type Origin = "original" | "inferred";
export const ORIGIN_CODE: Readonly<Record<Origin, number>> = Object.freeze({ original: 0, inferred: 1 });
export const ORIGIN_BY_CODE: readonly Origin[] = ["original", "inferred"];

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

// Timestamps are written through 32-bit words of the BigInt64Array's buffer, in the platform's byte order.
assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "HQ-TS assumes a little-endian platform");

/** The largest |ms| whose ns fit int64: 2^63 / 10^6, rounded down. */
export const MS_ABS_MAX_FOR_NS = 9_223_372_036_854;

/**
 * A growable run of samples in typed arrays. Typed, not `number[]`: V8 may
 * canonicalise a NaN stored in a plain array of doubles, which would lose a
 * stale marker's payload (docs/format/batch.md); a Float64Array keeps the bits.
 * Timestamps given in milliseconds are converted to int64 nanoseconds without
 * a BigInt (senders like Prometheus give one per sample).
 */
export class SampleList {
  ts: BigInt64Array;
  vs: Float64Array;
  // The words of `ts`: words[2i] low, words[2i+1] high (little-endian).
  private words: Uint32Array;
  length = 0;
  increasing = true;
  // The last timestamp's words, for the order check without reading a BigInt back.
  private lastHi = 0;
  private lastLo = 0;

  constructor(capacity = 1) {
    this.ts = new BigInt64Array(capacity);
    this.vs = new Float64Array(capacity);
    this.words = new Uint32Array(this.ts.buffer);
  }

  push(t: bigint, v: number): void {
    const i = this.slot();
    this.ts[i] = t;
    this.vs[i] = v;
    this.settle(i);
  }

  /** push() of `ms` milliseconds (a safe integer with |ms| <= MS_ABS_MAX_FOR_NS), stored as ms * 10^6 ns, exactly. */
  pushMs(ms: number, v: number): void {
    assert(Number.isSafeInteger(ms) && Math.abs(ms) <= MS_ABS_MAX_FOR_NS, `pushMs: ${ms} ms is out of the int64 ns range`);
    const i = this.slot();
    // |ms| < 2^44: split it at 2^22 so that every product and sum below stays an exact integer under 2^53.
    const m = Math.abs(ms);
    const a = Math.floor(m / 4194304);
    const A = a * 1_000_000;
    const B = (m - a * 4194304) * 1_000_000;
    let lo = (A % 1024) * 4194304 + (B % 4294967296);
    let hi = Math.floor(A / 1024) + Math.floor(B / 4294967296) + Math.floor(lo / 4294967296);
    lo %= 4294967296;
    if (ms < 0) {
      // Two's complement of the 64-bit magnitude.
      lo = (~lo + 1) >>> 0;
      hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    }
    this.words[2 * i] = lo;
    this.words[2 * i + 1] = hi;
    this.vs[i] = v;
    this.settle(i);
  }

  private slot(): number {
    if (this.length === this.ts.length) {
      const ts = new BigInt64Array(this.length * 2);
      ts.set(this.ts);
      const vs = new Float64Array(this.length * 2);
      vs.set(this.vs);
      this.ts = ts;
      this.vs = vs;
      this.words = new Uint32Array(ts.buffer);
    }
    return this.length;
  }

  private settle(i: number): void {
    const hi = this.words[2 * i + 1]! | 0;
    const lo = this.words[2 * i]!;
    if (i > 0 && (this.lastHi > hi || (this.lastHi === hi && this.lastLo >= lo))) this.increasing = false;
    this.lastHi = hi;
    this.lastLo = lo;
    this.length++;
  }
}

interface PendingSeries {
  labels: Labels;
  labelBytes: Uint8Array | undefined;
  samples: SampleList;
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
 * canonical (labels.ts canonicalLabels).
 */
export class BatchBuilder {
  private readonly byKey = new Map<string, PendingSeries>();
  private samples = 0;

  constructor(private readonly limits: Pick<Limits, "seriesPerBatchMax" | "samplesPerBatchMax">) {}

  get sampleCount(): number {
    return this.samples;
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
      this.byKey.set(key, { labels, labelBytes, samples: new SampleList() });
    }
    return key;
  }

  addSample(key: string, timestampNs: bigint, value: number, loc: InputLocation = {}): void {
    const s = this.byKey.get(key);
    assert(s !== undefined, "addSample on a series not registered with series()");
    if (this.samples >= this.limits.samplesPerBatchMax)
      throw new TooLargeError("number of samples in one request", this.limits.samplesPerBatchMax, loc);
    s.samples.push(timestampNs, value);
    this.samples++;
  }

  /** addSample() with the timestamp in ms (see SampleList.pushMs). */
  addSampleMs(key: string, timestampMs: number, value: number, loc: InputLocation = {}): void {
    const s = this.byKey.get(key);
    assert(s !== undefined, "addSampleMs on a series not registered with series()");
    if (this.samples >= this.limits.samplesPerBatchMax)
      throw new TooLargeError("number of samples in one request", this.limits.samplesPerBatchMax, loc);
    s.samples.pushMs(timestampMs, value);
    this.samples++;
  }

  add(labels: Labels, timestampNs: bigint, value: number, loc: InputLocation = {}): void {
    this.addSample(this.series(labels, loc), timestampNs, value, loc);
  }

  /**
   * The canonical batch. Two different values for one (series, timestamp) refuse the request (ConflictError),
   * unless `keepFirst` is given: then the first in the request is kept and the others are counted there.
   */
  build(opts: { shardId?: number; origin?: Origin; inference?: string | null; keepFirst?: InRequestConflicts } = {}): Batch {
    if (this.samples === 0) throw new BadInputError("the request holds no samples");
    const keys = [...this.byKey.keys()].sort();
    const series: BatchSeries[] = [];
    const conflicts: InRequestConflicts = opts.keepFirst ?? { count: 0, listed: [] };
    const conflictsBefore = conflicts.count;
    let total = 0;
    for (const key of keys) {
      const p = this.byKey.get(key)!;
      const { ts, vs, length } = p.samples;
      if (p.samples.increasing) {
        // The common case (one scrape or import line per series): already canonical, copy straight.
        total += length;
        series.push({ key, labels: p.labels, labelBytes: p.labelBytes, timestampsNs: ts.slice(0, length), values: vs.slice(0, length) });
        continue;
      }
      // Stable by position, so the first occurrence of a timestamp in the request is the one kept.
      const order = Array.from({ length }, (_, i) => i);
      order.sort((a, b) => (ts[a]! < ts[b]! ? -1 : ts[a]! > ts[b]! ? 1 : a - b));
      const outT = new BigInt64Array(length);
      const outV = new Float64Array(length);
      let n = 0;
      for (const i of order) {
        const t = ts[i]!;
        if (n > 0 && outT[n - 1] === t) {
          const prev = outV[n - 1]!;
          if (!sameValue(prev, vs[i]!)) {
            conflicts.count++;
            if (conflicts.listed.length < CONFLICTS_LISTED_MAX)
              conflicts.listed.push({ series: key, timestampNs: t.toString(), storedValue: prev, offeredValue: vs[i]! });
          }
          continue; // an identical repeat within one request is one point
        }
        outT[n] = t;
        outV[n] = vs[i]!;
        n++;
      }
      total += n;
      series.push({ key, labels: p.labels, labelBytes: p.labelBytes, timestampsNs: outT.slice(0, n), values: outV.slice(0, n) });
    }
    const found = conflicts.count - conflictsBefore;
    if (found > 0 && opts.keepFirst === undefined)
      throw new ConflictError(`the request holds ${found} points with two different values`, conflicts.listed);
    return { shardId: opts.shardId ?? 0, origin: opts.origin ?? "original", inference: opts.inference ?? null, series, sampleCount: total };
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
  for (let i = 0; i < n; i++) {
    const at = r.offset;
    let s: InternedSeries | undefined;
    if (buf !== null) {
      // The section's end is not known before it is walked: walk it without decoding text, then look it up.
      const nl = r.uvarint();
      for (let j = 0; j < 2 * nl; j++) r.lenBytes();
      const raw = bytesKey(buf, at, r.offset);
      s = intern!.get(raw);
      if (s === undefined) {
        r.offset = at;
        s = readLabelSection(r, bytes, at);
        intern!.set(raw, s);
      }
    } else s = readLabelSection(r, bytes, at);
    const ns = r.uvarint();
    const ts = new BigInt64Array(ns);
    const vs = new Float64Array(ns);
    for (let j = 0; j < ns; j++) {
      ts[j] = r.i64();
      vs[j] = r.f64();
    }
    total += ns;
    series.push({ key: s.key, labels: s.labels, labelBytes: s.labelBytes, timestampsNs: ts, values: vs });
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
