// An exact cache of per-window point digests for one window size (the one anti-entropy asks for every minute), so
// that comparing replicas costs O(windows) when little changed instead of a scan of every stored point
// (docs/format/point-digest.md, "Cache").
//
// The cache knows nothing of how points are stored: the engine gives it a scan (the digests of the visible points in
// a time range, per window) and tells it where visibility changed. Its invariant, once built:
//
//   every window holding a visible point is in `clean` or in `dirty`, and every window in `clean` and not in `dirty`
//   holds exactly the digest of its visible points.
//
// So a window outside both holds nothing (no scan needed to know it), and invalidating is forgetting: a window is
// marked dirty and recomputed, alone, the next time it is asked for.

import { assert } from "../core/assert.js";
import type { WindowDigest } from "./engine-api.js";
import type { DigestSum } from "./point-digest.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";

/** The visible points of one window: their digest and the time span they cover (to serve a clipped window). */
export interface WindowScan {
  sum: DigestSum;
  minNs: bigint;
  maxNs: bigint;
}

/** The digests of the visible points in [loNs, hiNs] (inclusive), per window index k; windows with none absent. */
export type WindowScanFn = (loNs: bigint, hiNs: bigint) => Map<bigint, WindowScan>;

interface Entry {
  readonly count: number;
  readonly hash: bigint;
  readonly minNs: bigint;
  readonly maxNs: bigint;
}

/**
 * Dirty windows of one request are recomputed one contiguous run at a time (a scan per run: every series, that
 * range only). Past this many runs one scan over the span from the first to the last is cheaper than a scan per run
 * (backfill that touched windows all over the range).
 */
export const DIGEST_RECOMPUTE_RUNS_MAX = 64;


export class DigestWindowCache {
  /** False until the first request scans everything; until then there is nothing to invalidate. */
  private built = false;
  /** Window index → digest of its visible points (count > 0). Possibly stale for windows also in `dirty`. */
  private readonly clean = new Map<bigint, Entry>();
  /** Windows whose digest is unknown: they may hold visible points, or none any more. */
  private readonly dirty = new Set<bigint>();
  /** The keys of `clean`, sorted; null when a window was added or removed since. */
  private sortedKeys: bigint[] | null = null;
  /** [lo, hi) of the last window marked dirty by touch(): consecutive points of one series mostly share a window. */
  private touchedLoNs = 0n;
  private touchedHiNs = 0n;
  /** Statistics for tests and measurements: windows recomputed, and scans run, since construction. */
  readonly counters = { windowsRecomputed: 0, scans: 0, clippedScans: 0 };

  constructor(readonly windowNs: bigint) {
    assert(windowNs > 0n, "a digest window is positive");
  }

  /** Visibility may have changed at timestamp t. */
  touch(t: bigint): void {
    if (!this.built) return;
    if (t >= this.touchedLoNs && t < this.touchedHiNs) return;
    const k = floorDiv(t, this.windowNs);
    this.dirty.add(k);
    this.touchedLoNs = k * this.windowNs;
    this.touchedHiNs = this.touchedLoNs + this.windowNs;
  }

  /**
   * Visible points may have disappeared anywhere in [minNs, maxNs] (a block dropped), none appeared: only windows
   * holding visible points can change, and those are known, so the cost is that of the windows in the range.
   */
  forgetRange(minNs: bigint, maxNs: bigint): void {
    if (!this.built || minNs > maxNs) return;
    const k0 = floorDiv(minNs, this.windowNs);
    const k1 = floorDiv(maxNs, this.windowNs);
    const keys = this.keys();
    for (let i = lowerBound(keys, k0); i < keys.length && keys[i]! <= k1; i++) this.dirty.add(keys[i]!);
  }

  /** Forgets everything: the next request scans all points again. */
  reset(): void {
    this.built = false;
    this.clean.clear();
    this.dirty.clear();
    this.sortedKeys = null;
    this.resetTouched();
  }

  /** The windows of [startNs, endNs] as Engine.digestWindows returns them, identical to a scan of every point. */
  get(startNs: bigint, endNs: bigint, scan: WindowScanFn): WindowDigest[] {
    if (startNs > endNs) return [];
    const w = this.windowNs;
    if (!this.built) {
      this.counters.scans++;
      const all = scan(INT64_MIN, INT64_MAX);
      this.clean.clear();
      this.dirty.clear();
      for (const [k, e] of all) this.setClean(k, e);
      this.sortedKeys = null;
      this.built = true;
      this.counters.windowsRecomputed += all.size;
    }
    const kS = floorDiv(startNs, w);
    const kE = floorDiv(endNs, w);
    this.recompute(kS, kE, scan);
    const out: WindowDigest[] = [];
    const keys = this.keys();
    for (let i = lowerBound(keys, kS); i < keys.length && keys[i]! <= kE; i++) {
      const k = keys[i]!;
      const e = this.clean.get(k)!;
      assert(!this.dirty.has(k), "a window served from the cache was recomputed first");
      const lo = k * w;
      const hi = lo + w - 1n;
      // A window the range clips is served from the cache when its points all lie in the range anyway.
      if ((lo < startNs && e.minNs < startNs) || (hi > endNs && e.maxNs > endNs)) {
        this.counters.clippedScans++;
        const part = scan(lo > startNs ? lo : startNs, hi < endNs ? hi : endNs).get(k);
        if (part !== undefined && part.sum.count > 0) out.push({ startNs: lo, count: part.sum.count, hash: part.sum.hash });
        continue;
      }
      out.push({ startNs: lo, count: e.count, hash: e.hash });
    }
    return out;
  }

  /** Recomputes the dirty windows in [kS, kE]. */
  private recompute(kS: bigint, kE: bigint, scan: WindowScanFn): void {
    const due = [...this.dirty].filter((k) => k >= kS && k <= kE).sort(compareBig);
    if (due.length === 0) return;
    const runs: [bigint, bigint][] = [];
    for (const k of due) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last[1] + 1n === k) last[1] = k;
      else runs.push([k, k]);
    }
    const spans = runs.length > DIGEST_RECOMPUTE_RUNS_MAX ? [[runs[0]![0], runs[runs.length - 1]![1]] as [bigint, bigint]] : runs;
    const w = this.windowNs;
    for (const [k0, k1] of spans) {
      this.counters.scans++;
      const got = scan(k0 * w, (k1 + 1n) * w - 1n);
      // Only after the scan succeeded (it throws on a damaged chunk): the windows stay dirty otherwise.
      for (const k of due) {
        if (k < k0 || k > k1) continue;
        const e = got.get(k);
        if (e !== undefined && e.sum.count > 0) this.setClean(k, e);
        else if (this.clean.delete(k)) this.sortedKeys = null;
        this.dirty.delete(k);
        this.counters.windowsRecomputed++;
      }
    }
    // touch() skips points in the last window it marked; that window may be clean now.
    this.resetTouched();
  }

  private setClean(k: bigint, e: WindowScan): void {
    if (!this.clean.has(k)) this.sortedKeys = null;
    this.clean.set(k, { count: e.sum.count, hash: e.sum.hash, minNs: e.minNs, maxNs: e.maxNs });
  }

  private keys(): bigint[] {
    this.sortedKeys ??= [...this.clean.keys()].sort(compareBig);
    return this.sortedKeys;
  }

  private resetTouched(): void {
    this.touchedLoNs = 0n;
    this.touchedHiNs = 0n;
  }

  /** Windows cached and windows dirty (tests, measurements). */
  size(): { clean: number; dirty: number } {
    return { clean: this.clean.size, dirty: this.dirty.size };
  }
}

/** ⌊t / w⌋ for w > 0, negative t included. */
export function floorDiv(t: bigint, w: bigint): bigint {
  const q = t / w;
  return q * w > t ? q - 1n : q;
}

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function lowerBound(a: readonly bigint[], k: bigint): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
