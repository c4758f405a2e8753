// The in-memory head of one series: samples not yet cut into a block, kept
// sorted by time in growable typed arrays. Appends in time order are O(1);
// out-of-order inserts (backfill, replays) shift by binary search.

import { assert } from "../core/assert.js";

const INITIAL_CAPACITY = 16;

export class HeadSeries {
  timestampsNs: BigInt64Array;
  values: Float64Array;
  origins: Uint8Array;
  /** Index into the engine's head batch table. */
  batchRefs: Uint32Array;
  length = 0;

  constructor(capacity = INITIAL_CAPACITY) {
    this.timestampsNs = new BigInt64Array(capacity);
    this.values = new Float64Array(capacity);
    this.origins = new Uint8Array(capacity);
    this.batchRefs = new Uint32Array(capacity);
  }

  get minTimeNs(): bigint {
    assert(this.length > 0, "minTimeNs of an empty head series");
    return this.timestampsNs[0]!;
  }
  get maxTimeNs(): bigint {
    assert(this.length > 0, "maxTimeNs of an empty head series");
    return this.timestampsNs[this.length - 1]!;
  }

  /** Index of the sample at t, or -(insertion point) - 1. */
  find(t: bigint): number {
    const ts = this.timestampsNs;
    if (this.length === 0 || t > ts[this.length - 1]!) return -this.length - 1;
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = ts[mid]!;
      if (v < t) lo = mid + 1;
      else if (v > t) hi = mid - 1;
      else return mid;
    }
    return -lo - 1;
  }

  /** First index with timestamp >= t. */
  lowerBound(t: bigint): number {
    const i = this.find(t);
    return i >= 0 ? i : -i - 1;
  }

  private grow(): void {
    const cap = this.timestampsNs.length * 2;
    const ts = new BigInt64Array(cap);
    ts.set(this.timestampsNs);
    const vs = new Float64Array(cap);
    vs.set(this.values);
    const os = new Uint8Array(cap);
    os.set(this.origins);
    const bs = new Uint32Array(cap);
    bs.set(this.batchRefs);
    this.timestampsNs = ts;
    this.values = vs;
    this.origins = os;
    this.batchRefs = bs;
  }

  /** Inserts at the position find() reported (pos = -(r) - 1). */
  insertAt(pos: number, t: bigint, v: number, origin: number, batchRef: number): void {
    assert(pos >= 0 && pos <= this.length, "insert position out of range");
    assert(pos === 0 || this.timestampsNs[pos - 1]! < t, "insert breaks time order (left)");
    assert(pos === this.length || this.timestampsNs[pos]! > t, "insert breaks time order (right)");
    if (this.length === this.timestampsNs.length) this.grow();
    if (pos < this.length) {
      this.timestampsNs.copyWithin(pos + 1, pos, this.length);
      this.values.copyWithin(pos + 1, pos, this.length);
      this.origins.copyWithin(pos + 1, pos, this.length);
      this.batchRefs.copyWithin(pos + 1, pos, this.length);
    }
    this.timestampsNs[pos] = t;
    this.values[pos] = v;
    this.origins[pos] = origin;
    this.batchRefs[pos] = batchRef;
    this.length++;
  }

  replaceAt(i: number, v: number, origin: number, batchRef: number): void {
    assert(i >= 0 && i < this.length, "replace index out of range");
    this.values[i] = v;
    this.origins[i] = origin;
    this.batchRefs[i] = batchRef;
  }

  /** Removes every sample for which drop(index) is true; returns how many went. */
  removeWhere(drop: (i: number) => boolean): number {
    let w = 0;
    for (let r = 0; r < this.length; r++) {
      if (drop(r)) continue;
      if (w !== r) {
        this.timestampsNs[w] = this.timestampsNs[r]!;
        this.values[w] = this.values[r]!;
        this.origins[w] = this.origins[r]!;
        this.batchRefs[w] = this.batchRefs[r]!;
      }
      w++;
    }
    const removed = this.length - w;
    this.length = w;
    return removed;
  }
}
