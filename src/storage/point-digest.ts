// Order-independent digests of stored points (docs/format/point-digest.md).
// Two replicas holding the same points agree on the digest however the points
// are split among head and blocks, and whatever order they are visited in:
// the digest of a set is the sum mod 2^64 of a 64-bit hash of each point.
//
// The per-point hash runs over every stored point, so it avoids BigInt: 64-bit
// words are (hi, lo) pairs of u32 read through Uint32Array views of the
// columns, and the 64x64 multiply of murmur3's fmix64 is built from 32-bit
// pieces. pointHash() is the BigInt reference the fast path is tested against.

import { assert } from "../core/assert.js";

const TWO32 = 4294967296;
const M64 = (1n << 64n) - 1n;

// fmix64 multipliers (murmur3) and the per-origin seed constant (2^64 / golden ratio, as in splitmix64).
const C1 = 0xff51afd7ed558ccdn;
const C2 = 0xc4ceb9fe1a85ec53n;
const GOLDEN = 0x9e3779b97f4a7c15n;
const C1_HI = Number(C1 >> 32n);
const C1_LO = Number(C1 & 0xffffffffn);
const C2_HI = Number(C2 >> 32n);
const C2_LO = Number(C2 & 0xffffffffn);

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;

/** Origin codes the hash knows (core/batch.ts ORIGIN_CODE): 0 original, 1 inferred. */
export const DIGEST_ORIGINS = 2;

// The fast path reads int64 and float64 columns as pairs of u32, low word first.
assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "point digests need a little-endian host");

// ---- reference (BigInt): the definition -------------------------------------------------

/** FNV-1a 64 of `bytes`. */
export function fnv1a64(bytes: Uint8Array): bigint {
  let h = FNV_OFFSET;
  for (const b of bytes) h = ((h ^ BigInt(b)) * FNV_PRIME) & M64;
  return h;
}

/** murmur3's 64-bit finalizer: a bijection on u64 with full avalanche. */
export function fmix64(k: bigint): bigint {
  k &= M64;
  k ^= k >> 33n;
  k = (k * C1) & M64;
  k ^= k >> 33n;
  k = (k * C2) & M64;
  k ^= k >> 33n;
  return k;
}

/** The per-series, per-origin seed: fmix64(FNV-1a 64(UTF-8 key) XOR GOLDEN·(origin + 1) mod 2^64). */
export function seriesSeed(key: string, origin: number): bigint {
  assert(Number.isInteger(origin) && origin >= 0 && origin < DIGEST_ORIGINS, `origin code ${origin}`);
  return fmix64(fnv1a64(Buffer.from(key, "utf8")) ^ ((GOLDEN * BigInt(origin + 1)) & M64));
}

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

/** The hash of one point: fmix64(fmix64(seed XOR u64(t)) XOR bits(value)). Slow; the spec the fast path must match. */
export function pointHash(key: string, timestampNs: bigint, value: number, origin: number): bigint {
  f64[0] = value;
  return fmix64(fmix64(seriesSeed(key, origin) ^ BigInt.asUintN(64, timestampNs)) ^ u64[0]!);
}

// ---- fast path ------------------------------------------------------------------------------

export interface Digest {
  count: number;
  hash: bigint; // u64
}

/**
 * A running digest: a point count and the sum of point hashes mod 2^64, kept as two doubles that hold the sums of
 * the low and high u32 halves unreduced (exact below 2^53, so reduced every SUM_RUN_MAX points).
 */
export class DigestSum {
  count = 0;
  private lo = 0;
  private hi = 0;

  /** Adds one point's hash (the slow path: tests, tools). */
  addHash(h: bigint): void {
    assert(h >= 0n && h <= M64, "a point hash is a u64");
    this.lo += Number(h & 0xffffffffn);
    this.hi += Number(h >> 32n);
    this.count++;
    this.reduce();
  }

  /** Adds another digest: the digest of the union of two disjoint sets. */
  addDigest(d: DigestSum): void {
    this.lo += d.lo;
    this.hi += d.hi;
    this.count += d.count;
    this.reduce();
  }

  /** Internal to the fast path: adds unreduced sums of `n` point hashes. */
  addHalves(lo: number, hi: number, n: number): void {
    this.lo += lo;
    this.hi += hi;
    this.count += n;
    this.reduce();
  }

  private reduce(): void {
    const carry = Math.floor(this.lo / TWO32);
    this.lo -= carry * TWO32;
    this.hi = (this.hi + carry) % TWO32;
  }

  get hash(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  digest(): Digest {
    return { count: this.count, hash: this.hash };
  }
}

/** Points summed before the halves are reduced: each adds < 2^32, so 2^20 of them stay far below 2^53. */
const SUM_RUN_MAX = 1 << 20;

/**
 * A series' seeds for the fast path: [lo, hi] of seriesSeed(key, 0), then of seriesSeed(key, 1). Computing them costs
 * BigInt work per key byte; a caller digesting a series often (the engine's window scans) keeps them.
 */
export function seriesSeeds(key: string): Uint32Array {
  const seeds = new Uint32Array(2 * DIGEST_ORIGINS);
  for (let o = 0; o < DIGEST_ORIGINS; o++) {
    const s = seriesSeed(key, o);
    seeds[2 * o] = Number(s & 0xffffffffn);
    seeds[2 * o + 1] = Number(s >> 32n);
  }
  return seeds;
}

const NO_WORDS = new Uint32Array(0);

/**
 * The point hash of one series, its seeds computed once (or given, from seriesSeeds(key)): hashes runs of a series'
 * columns with no BigInt and no allocation per point.
 */
export class SeriesHasher {
  /** [lo, hi] of the seed for origin 0, then for origin 1. */
  private readonly seeds: Uint32Array;

  constructor(
    readonly key: string,
    seeds?: Uint32Array,
  ) {
    assert(seeds === undefined || seeds.length === 2 * DIGEST_ORIGINS, "series seeds: one u64 per origin");
    this.seeds = seeds ?? seriesSeeds(key);
  }

  // u32 views of the columns last hashed: a series cut into many windows is hashed by many calls on the same columns.
  private tsSeen: BigInt64Array | null = null;
  private vsSeen: Float64Array | null = null;
  private t32: Uint32Array = NO_WORDS;
  private v32: Uint32Array = NO_WORDS;

  /** Adds points [from, to) of the columns (one series, any order) to `sum`. */
  addPoints(sum: DigestSum, ts: BigInt64Array, vs: Float64Array, os: Uint8Array, from = 0, to = ts.length): void {
    assert(vs.length === ts.length && os.length === ts.length, "digest: columns differ in length");
    assert(from >= 0 && from <= to && to <= ts.length, "digest: range out of bounds");
    if (ts !== this.tsSeen || vs !== this.vsSeen) {
      // Views over the same bytes: element 2i is the low word of element i (little-endian, checked at load).
      this.t32 = new Uint32Array(ts.buffer, ts.byteOffset, ts.length * 2);
      this.v32 = new Uint32Array(vs.buffer, vs.byteOffset, vs.length * 2);
      this.tsSeen = ts;
      this.vsSeen = vs;
    }
    const t32 = this.t32;
    const v32 = this.v32;
    const seeds = this.seeds;
    for (let at = from; at < to; at += SUM_RUN_MAX) {
      const end = Math.min(to, at + SUM_RUN_MAX);
      let lo = 0;
      let hi = 0;
      for (let i = at; i < end; i++) {
        const o = os[i]!;
        if (o >= DIGEST_ORIGINS) assert(false, `digest: origin code ${o}`);
        // a = fmix64(seed ^ t)
        let xl = (seeds[2 * o]! ^ t32[2 * i]!) >>> 0;
        let xh = (seeds[2 * o + 1]! ^ t32[2 * i + 1]!) >>> 0;
        xl = (xl ^ (xh >>> 1)) >>> 0;
        let pl = Math.imul(xl, C1_LO) >>> 0;
        let ph = (Math.round((xl * C1_LO - pl) / TWO32) + Math.imul(xh, C1_LO) + Math.imul(xl, C1_HI)) >>> 0;
        pl = (pl ^ (ph >>> 1)) >>> 0;
        xl = Math.imul(pl, C2_LO) >>> 0;
        xh = (Math.round((pl * C2_LO - xl) / TWO32) + Math.imul(ph, C2_LO) + Math.imul(pl, C2_HI)) >>> 0;
        xl = (xl ^ (xh >>> 1)) >>> 0;
        // h = fmix64(a ^ bits(v))
        xl = (xl ^ v32[2 * i]!) >>> 0;
        xh = (xh ^ v32[2 * i + 1]!) >>> 0;
        xl = (xl ^ (xh >>> 1)) >>> 0;
        pl = Math.imul(xl, C1_LO) >>> 0;
        ph = (Math.round((xl * C1_LO - pl) / TWO32) + Math.imul(xh, C1_LO) + Math.imul(xl, C1_HI)) >>> 0;
        pl = (pl ^ (ph >>> 1)) >>> 0;
        xl = Math.imul(pl, C2_LO) >>> 0;
        xh = (Math.round((pl * C2_LO - xl) / TWO32) + Math.imul(ph, C2_LO) + Math.imul(pl, C2_HI)) >>> 0;
        xl = (xl ^ (xh >>> 1)) >>> 0;
        lo += xl;
        hi += xh;
      }
      sum.addHalves(lo, hi, end - at);
    }
  }
}

export interface DigestPoint {
  key: string;
  timestampNs: bigint;
  value: number;
  origin: number;
}

/** The digest of a set of points given one by one (tests, tools): one SeriesHasher per key. */
export function digestPoints(points: Iterable<DigestPoint>): Digest {
  const sum = new DigestSum();
  const hashers = new Map<string, SeriesHasher>();
  const ts = new BigInt64Array(1);
  const vs = new Float64Array(1);
  const os = new Uint8Array(1);
  for (const p of points) {
    let h = hashers.get(p.key);
    if (h === undefined) hashers.set(p.key, (h = new SeriesHasher(p.key)));
    ts[0] = p.timestampNs;
    vs[0] = p.value;
    os[0] = p.origin;
    h.addPoints(sum, ts, vs, os);
  }
  return sum.digest();
}
