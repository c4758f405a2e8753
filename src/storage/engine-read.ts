// Reads: a series' visible points in a time range, merged from its block chunks and its head samples (one point per
// timestamp, an original over an inferred one), and the label queries over the series that have data in a range.
// Block chunks are verified as they load into the chunk cache (BlockSet.chunk); what is returned may be views of it.

import { ORIGIN_CODE } from "../core/batch.js";
import { TooLargeError } from "../core/errors.js";
import type { Labels } from "../core/labels.js";
import type { BlockSet } from "./block-set.js";
import type { MatcherSets, SelectedSeries, SelectOptions } from "./engine-api.js";
import type { Head } from "./engine-head.js";
import type { SeriesState } from "./engine-state.js";

export function select(head: Head, blocks: BlockSet, sets: MatcherSets, o: SelectOptions): SelectedSeries[] {
  const out: SelectedSeries[] = [];
  let total = 0;
  for (const s of head.candidates(sets)) {
    const r = readSeries(head, blocks, s, o.startNs, o.endNs, o.includeInferred);
    if (r === null) continue;
    if (out.length >= o.seriesMax) throw new TooLargeError("number of series in one read", o.seriesMax);
    total += r.timestampsNs.length;
    if (total > o.samplesMax) throw new TooLargeError("number of samples in one read", o.samplesMax);
    out.push(r);
  }
  return out;
}

export function seriesLabels(head: Head, sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number): Labels[] {
  const out: Labels[] = [];
  for (const s of head.candidates(sets)) {
    if (!hasDataIn(head, s, startNs, endNs)) continue;
    if (out.length >= seriesMax) throw new TooLargeError("number of series in one read", seriesMax);
    out.push(s.labels);
  }
  return out;
}

export function labelNames(head: Head, sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[] {
  const names = new Set<string>();
  for (const s of scope(head, sets, startNs, endNs)) for (const [n] of s.labels) names.add(n);
  return [...names].sort();
}

export function labelValues(head: Head, name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[] {
  const values = new Set<string>();
  for (const s of scope(head, sets, startNs, endNs)) for (const [n, v] of s.labels) if (n === name) values.add(v);
  return [...values].sort();
}

function scope(head: Head, sets: MatcherSets | null, startNs: bigint, endNs: bigint): SeriesState[] {
  const pool = sets === null ? [...head.series.values()] : head.candidates(sets);
  return pool.filter((s) => hasDataIn(head, s, startNs, endNs));
}

/** A visible head sample or a block chunk in [startNs, endNs] (chunks are not opened: their range is enough). */
function hasDataIn(head: Head, s: SeriesState, startNs: bigint, endNs: bigint): boolean {
  const h = s.head;
  if (h.length > 0) {
    const i = h.lowerBound(startNs);
    for (let j = i; j < h.length && h.timestampsNs[j]! <= endNs; j++) if (head.visible(h, j)) return true;
  }
  return s.blocks.some((b) => b.entry.chunks.some((c) => c.maxTimeNs >= startNs && c.minTimeNs <= endNs));
}

/** The visible points of one series in [startNs, endNs]; null when there are none. */
export function readSeries(head: Head, blocks: BlockSet, s: SeriesState, startNs: bigint, endNs: bigint, includeInferred: boolean): SelectedSeries | null {
  const batchIds: string[] = [];
  const idIndex = new Map<string, number>();
  const ref = (id: string): number => {
    let k = idIndex.get(id);
    if (k === undefined) {
      k = batchIds.length;
      batchIds.push(id);
      idIndex.set(id, k);
    }
    return k;
  };
  const segs: Segment[] = [];
  for (const b of s.blocks) {
    // Chunks are in time order and do not overlap: a block whose chunks of this series miss the range is skipped
    // without visiting them (a one-window digest scan visits every series' every block).
    const cs = b.entry.chunks;
    if (cs.length === 0 || cs[cs.length - 1]!.maxTimeNs < startNs || cs[0]!.minTimeNs > endNs) continue;
    const table = b.reader.batches();
    const local = new Map<number, number>();
    for (const c of b.entry.chunks) {
      if (c.maxTimeNs < startNs || c.minTimeNs > endNs) continue;
      const d = blocks.chunk(b, c);
      const lo = lowerBoundFrom(d.timestampsNs, startNs);
      const hi = upperBoundArr(d.timestampsNs, endNs);
      if (lo >= hi) continue;
      const n = hi - lo;
      const r0 = d.batchRefs[lo]!;
      let oneBatch = true;
      for (let i = lo + 1; i < hi && oneBatch; i++) oneBatch = d.batchRefs[i] === r0;
      let refs: Uint32Array;
      if (oneBatch) {
        // The common case (a series' samples come from one import line, one batch): no per-sample mapping, and
        // for the series' first batch a shared array of zeros instead of a new (off-heap) one per chunk.
        let k = local.get(r0);
        if (k === undefined) local.set(r0, (k = ref(table[r0]!.batchId)));
        refs = k === 0 && n <= ZERO_REFS.length ? ZERO_REFS.subarray(0, n) : new Uint32Array(n).fill(k);
      } else {
        refs = new Uint32Array(n);
        let prevR = -1;
        let k = 0;
        for (let i = lo; i < hi; i++) {
          const r = d.batchRefs[i]!;
          // Batch refs come in runs (one import line is one batch): look up only when the run changes.
          if (r !== prevR) {
            const known = local.get(r);
            k = known ?? ref(table[r]!.batchId);
            if (known === undefined) local.set(r, k);
            prevR = r;
          }
          refs[i - lo] = k;
        }
      }
      const whole = lo === 0 && hi === d.timestampsNs.length;
      segs.push(
        whole
          ? { ts: d.timestampsNs, vs: d.values, os: d.origins, refs }
          : { ts: d.timestampsNs.subarray(lo, hi), vs: d.values.subarray(lo, hi), os: d.origins.subarray(lo, hi), refs },
      );
    }
  }
  const h = s.head;
  if (h.length > 0) {
    const lo = h.lowerBound(startNs);
    const hi = h.lowerBound(endNs + 1n);
    if (lo < hi) {
      // Visible samples come in runs of one batch (a batch's samples of a series are contiguous in time): each run
      // is copied with typed-array set(), not sample by sample (a per-sample bigint read boxes one on the heap).
      const runs: [number, number, number][] = [];
      let n = 0;
      for (let i = lo; i < hi; ) {
        const r = h.batchRefs[i]!;
        let j = i + 1;
        while (j < hi && h.batchRefs[j] === r) j++;
        if (head.visible(h, i)) {
          runs.push([i, j, r]);
          n += j - i;
        }
        i = j;
      }
      if (n > 0) {
        const seg: Segment = { ts: new BigInt64Array(n), vs: new Float64Array(n), os: new Uint8Array(n), refs: new Uint32Array(n) };
        const local = new Map<number, number>();
        let k = 0;
        for (const [a, b, r] of runs) {
          let m = local.get(r);
          if (m === undefined) local.set(r, (m = ref(head.table[r]!.batchId)));
          seg.ts.set(h.timestampsNs.subarray(a, b), k);
          seg.vs.set(h.values.subarray(a, b), k);
          seg.os.set(h.origins.subarray(a, b), k);
          seg.refs.fill(m, k, k + b - a);
          k += b - a;
        }
        segs.push(seg);
      }
    }
  }
  const merged = mergeSegments(segs);
  const out = includeInferred ? merged : filterOriginal(merged);
  if (out.ts.length === 0) return null;
  return { key: s.key, labels: s.labels, timestampsNs: out.ts, values: out.vs, origins: out.os, batchRefs: out.refs, batchIds };
}

/** A run of samples of one series from one source (a block chunk or the head), sorted by time. */
interface Segment {
  ts: BigInt64Array;
  vs: Float64Array;
  os: Uint8Array;
  refs: Uint32Array;
}

/**
 * Merges segments into one time-ordered run with one point per timestamp; where
 * sources disagree on origin, the original wins. Sources that do not overlap
 * (the common case: a block's chunks, then the head) are concatenated.
 */
function mergeSegments(segs: Segment[]): Segment {
  if (segs.length === 1) return segs[0]!;
  const empty = { ts: new BigInt64Array(0), vs: new Float64Array(0), os: new Uint8Array(0), refs: new Uint32Array(0) };
  if (segs.length === 0) return empty;
  segs.sort((a, b) => (a.ts[0]! < b.ts[0]! ? -1 : a.ts[0]! > b.ts[0]! ? 1 : 0));
  let disjoint = true;
  for (let i = 1; i < segs.length; i++) if (segs[i]!.ts[0]! <= segs[i - 1]!.ts[segs[i - 1]!.ts.length - 1]!) disjoint = false;
  const total = segs.reduce((a, g) => a + g.ts.length, 0);
  const out = { ts: new BigInt64Array(total), vs: new Float64Array(total), os: new Uint8Array(total), refs: new Uint32Array(total) };
  if (disjoint) {
    let at = 0;
    for (const g of segs) {
      out.ts.set(g.ts, at);
      out.vs.set(g.vs, at);
      out.os.set(g.os, at);
      out.refs.set(g.refs, at);
      at += g.ts.length;
    }
    return out;
  }
  // Overlapping sources (backfill after a flush): a k-way merge by position.
  const pos = new Array<number>(segs.length).fill(0);
  let n = 0;
  while (true) {
    let best = -1;
    for (let j = 0; j < segs.length; j++) {
      const g = segs[j]!;
      if (pos[j]! >= g.ts.length) continue;
      if (best < 0) best = j;
      else {
        const a = g.ts[pos[j]!]!;
        const b = segs[best]!.ts[pos[best]!]!;
        if (a < b || (a === b && g.os[pos[j]!]! < segs[best]!.os[pos[best]!]!)) best = j;
      }
    }
    if (best < 0) break;
    const g = segs[best]!;
    const i = pos[best]!;
    const t = g.ts[i]!;
    out.ts[n] = t;
    out.vs[n] = g.vs[i]!;
    out.os[n] = g.os[i]!;
    out.refs[n] = g.refs[i]!;
    n++;
    // Skip the same timestamp in every source: the point taken (original first) is the one.
    for (let j = 0; j < segs.length; j++) while (pos[j]! < segs[j]!.ts.length && segs[j]!.ts[pos[j]!] === t) pos[j]!++;
  }
  return { ts: out.ts.subarray(0, n), vs: out.vs.subarray(0, n), os: out.os.subarray(0, n), refs: out.refs.subarray(0, n) };
}

function filterOriginal(g: Segment): Segment {
  let n = 0;
  for (let i = 0; i < g.os.length; i++) if (g.os[i] === ORIGIN_CODE.original) n++;
  if (n === g.os.length) return g;
  const out = { ts: new BigInt64Array(n), vs: new Float64Array(n), os: new Uint8Array(n), refs: new Uint32Array(n) };
  let k = 0;
  for (let i = 0; i < g.os.length; i++) {
    if (g.os[i] !== ORIGIN_CODE.original) continue;
    out.ts[k] = g.ts[i]!;
    out.vs[k] = g.vs[i]!;
    out.os[k] = g.os[i]!;
    out.refs[k] = g.refs[i]!;
    k++;
  }
  return out;
}

function upperBoundArr(a: BigInt64Array, t: bigint): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index >= from with a[index] >= t (a sorted). */
export function lowerBoundFrom(a: BigInt64Array, t: bigint, from = 0): number {
  let lo = from;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Shared, never written: the batch refs of a read whose samples all come from the series' first batch. */
const ZERO_REFS = new Uint32Array(1 << 16);

