// The samples of a request being parsed, in shared growable columns: timestamp (int64 ns), value, and the series each
// belongs to. One set of columns per request, not arrays per series: a remote-write request holds thousands of series
// with one sample each, and allocating typed arrays per series was most of the garbage of a write.
//
// Typed columns, not `number[]`: V8 may canonicalise a NaN stored in a plain array of doubles, which would lose a
// stale marker's payload (docs/format/batch.md); a Float64Array keeps the bits. Timestamps given in milliseconds are
// converted to nanoseconds through the 32-bit words of the timestamp column, without a BigInt per sample.

import { assert } from "./assert.js";

// Timestamps are written through 32-bit words of the BigInt64Array's buffer, in the platform's byte order.
assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "HQ-TS assumes a little-endian platform");

/** The largest |ms| whose ns fit int64: 2^63 / 10^6, rounded down. */
export const MS_ABS_MAX_FOR_NS = 9_223_372_036_854;

export class SampleColumns {
  ts: BigInt64Array;
  /** The words of `ts`: words[2i] low, words[2i+1] high (little-endian). */
  words: Uint32Array;
  vs: Float64Array;
  /** The series (the caller's index) of each sample. */
  series: Int32Array;
  length = 0;

  constructor(capacity = 64) {
    this.ts = new BigInt64Array(capacity);
    this.words = new Uint32Array(this.ts.buffer);
    this.vs = new Float64Array(capacity);
    this.series = new Int32Array(capacity);
  }

  push(series: number, t: bigint, v: number): number {
    const i = this.slot();
    this.ts[i] = t;
    this.vs[i] = v;
    this.series[i] = series;
    return i;
  }

  /** push() of `ms` milliseconds (a safe integer with |ms| <= MS_ABS_MAX_FOR_NS), stored as ms * 10^6 ns, exactly. */
  pushMs(series: number, ms: number, v: number): number {
    // The message only on failure: a template string per sample would be garbage on the hottest loop.
    if (!(Number.isSafeInteger(ms) && Math.abs(ms) <= MS_ABS_MAX_FOR_NS)) assert(false, `pushMs: ${ms} ms is out of the int64 ns range`);
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
    this.series[i] = series;
    return i;
  }

  /** Whether sample i's timestamp is before sample j's, compared by words (no BigInt read back). */
  before(i: number, j: number): boolean {
    const hi = this.words[2 * i + 1]! | 0;
    const hj = this.words[2 * j + 1]! | 0;
    return hi < hj || (hi === hj && this.words[2 * i]! < this.words[2 * j]!);
  }

  private slot(): number {
    if (this.length === this.ts.length) {
      const n = this.length * 2;
      const ts = new BigInt64Array(n);
      ts.set(this.ts);
      const vs = new Float64Array(n);
      vs.set(this.vs);
      const series = new Int32Array(n);
      series.set(this.series);
      this.ts = ts;
      this.words = new Uint32Array(ts.buffer);
      this.vs = vs;
      this.series = series;
    }
    return this.length++;
  }
}
