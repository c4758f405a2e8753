// A batch is the unit of ingest, durability and provenance: one write request,
// one WAL record, one receipt. Its canonical encoding (docs/format/batch.md)
// is deterministic, so its SHA-256 names its content on every node.

import { assert } from "./assert.js";
import { ByteReader, ByteWriter } from "./bytes.js";
import { BadInputError, ConflictError, TooLargeError, type ConflictingPoint, type InputLocation } from "./errors.js";
import { sha256, toHex } from "./hash.js";
import { seriesKey, type Labels } from "./labels.js";
import type { Limits } from "./limits.js";

export type Origin = "original" | "inferred";
export const ORIGIN_CODE: Readonly<Record<Origin, number>> = Object.freeze({ original: 0, inferred: 1 });
export const ORIGIN_BY_CODE: readonly Origin[] = ["original", "inferred"];

export interface BatchSeries {
  readonly key: string; // canonical series key (labels.ts)
  readonly labels: Labels;
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
  labels: Labels;
  ts: bigint[];
  vs: number[];
}

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
    const key = seriesKey(labels);
    if (!this.byKey.has(key)) {
      if (this.byKey.size >= this.limits.seriesPerBatchMax)
        throw new TooLargeError("number of series in one request", this.limits.seriesPerBatchMax, loc);
      this.byKey.set(key, { labels, ts: [], vs: [] });
    }
    return key;
  }

  addSample(key: string, timestampNs: bigint, value: number, loc: InputLocation = {}): void {
    const s = this.byKey.get(key);
    assert(s !== undefined, "addSample on a series not registered with series()");
    if (this.samples >= this.limits.samplesPerBatchMax)
      throw new TooLargeError("number of samples in one request", this.limits.samplesPerBatchMax, loc);
    s.ts.push(timestampNs);
    s.vs.push(value);
    this.samples++;
  }

  add(labels: Labels, timestampNs: bigint, value: number, loc: InputLocation = {}): void {
    this.addSample(this.series(labels, loc), timestampNs, value, loc);
  }

  build(opts: { shardId?: number; origin?: Origin; inference?: string | null } = {}): Batch {
    if (this.samples === 0) throw new BadInputError("the request holds no samples");
    const keys = [...this.byKey.keys()].sort();
    const series: BatchSeries[] = [];
    const conflicts: ConflictingPoint[] = [];
    let total = 0;
    for (const key of keys) {
      const p = this.byKey.get(key)!;
      if (strictlyIncreasing(p.ts)) {
        // The common case (one scrape or import line per series): already canonical, copy straight.
        total += p.ts.length;
        series.push({ key, labels: p.labels, timestampsNs: BigInt64Array.from(p.ts), values: Float64Array.from(p.vs) });
        continue;
      }
      const order = p.ts.map((_, i) => i);
      order.sort((a, b) => (p.ts[a]! < p.ts[b]! ? -1 : p.ts[a]! > p.ts[b]! ? 1 : a - b));
      const ts: bigint[] = [];
      const vs: number[] = [];
      for (const i of order) {
        const t = p.ts[i]!;
        const v = p.vs[i]!;
        if (ts.length > 0 && ts[ts.length - 1] === t) {
          const prev = vs[vs.length - 1]!;
          if (!sameValue(prev, v) && conflicts.length < 100)
            conflicts.push({ series: key, timestampNs: t.toString(), storedValue: prev, offeredValue: v });
          continue; // an identical repeat within one request is one point
        }
        ts.push(t);
        vs.push(v);
      }
      total += ts.length;
      series.push({ key, labels: p.labels, timestampsNs: BigInt64Array.from(ts), values: Float64Array.from(vs) });
    }
    if (conflicts.length > 0)
      throw new ConflictError(`the request holds ${conflicts.length === 100 ? "100 or more" : conflicts.length} points with two different values`, conflicts);
    return { shardId: opts.shardId ?? 0, origin: opts.origin ?? "original", inference: opts.inference ?? null, series, sampleCount: total };
  }
}

function strictlyIncreasing(ts: readonly bigint[]): boolean {
  for (let i = 1; i < ts.length; i++) if (ts[i - 1]! >= ts[i]!) return false;
  return true;
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
    w.uvarint(s.labels.length);
    for (const [n, v] of s.labels) w.str(n).str(v);
    w.uvarint(s.timestampsNs.length);
    for (let i = 0; i < s.timestampsNs.length; i++) w.i64(s.timestampsNs[i]!).f64(s.values[i]!);
  }
  return w.finish();
}

export function decodeBatch(bytes: Uint8Array, source = "batch"): Batch {
  const r = new ByteReader(bytes, source);
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
    const nl = r.uvarint();
    const labels: [string, string][] = [];
    for (let j = 0; j < nl; j++) labels.push([r.str(), r.str()]);
    const ns = r.uvarint();
    const ts = new BigInt64Array(ns);
    const vs = new Float64Array(ns);
    for (let j = 0; j < ns; j++) {
      ts[j] = r.i64();
      vs[j] = r.f64();
    }
    total += ns;
    series.push({ key: seriesKey(labels), labels, timestampsNs: ts, values: vs });
  }
  if (r.remaining !== 0) throw new BadInputError(`${source}: ${r.remaining} trailing bytes`, { offset: r.offset });
  return { shardId, origin, inference: inf === "" ? null : inf, series, sampleCount: total };
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
