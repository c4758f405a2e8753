// Digests of the visible points (docs/format/point-digest.md), which anti-entropy compares between replicas. They go
// through readSeries, so block chunks are checksum-verified as they load and a point is what a read would return:
// committed only, one per (series, timestamp), an original over an inferred one, inferred points included.

import { BadInputError } from "../core/errors.js";
import type { BlockSet } from "./block-set.js";
import { floorDiv, type DigestWindowCache, type WindowScan } from "./digest-cache.js";
import type { SeriesDigest, WindowDigest } from "./engine-api.js";
import type { Head } from "./engine-head.js";
import { lowerBoundFrom, readSeries } from "./engine-read.js";
import { byKey } from "./engine-state.js";
import { DigestSum, SeriesHasher, seriesSeeds } from "./point-digest.js";

/**
 * The window size whose digests are cached (DigestWindowCache): the one anti-entropy compares with every peer every
 * minute. Other sizes are computed by scanning every point, each call.
 */
export const DIGEST_WINDOW_NS = 3_600_000_000_000n;

/**
 * Per aligned window [k·windowNs, (k+1)·windowNs) intersecting [startNs, endNs]: count and digest of the visible
 * points in the window and in [startNs, endNs]; windows with no point are omitted; sorted by startNs.
 *
 * For DIGEST_WINDOW_NS the windows come from the cache: the first call scans every point, later ones recompute only
 * the windows whose visibility changed since (each by a scan of that window only), so a call over all data costs
 * O(windows) when nothing changed. The result is the scan's in every case.
 */
export function digestWindows(head: Head, blocks: BlockSet, cache: DigestWindowCache, startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[] {
  if (windowNs <= 0n) throw new BadInputError(`a digest window must be positive (got ${windowNs} ns)`, { field: "windowNs" });
  if (startNs > endNs) return [];
  if (windowNs === DIGEST_WINDOW_NS) return cache.get(startNs, endNs, (lo, hi) => scanWindows(head, blocks, lo, hi, windowNs));
  return digestWindowsScan(head, blocks, startNs, endNs, windowNs);
}

/** digestWindows by a scan of every point in the range, whatever the window size (tests compare the cache with it). */
export function digestWindowsScan(head: Head, blocks: BlockSet, startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[] {
  if (windowNs <= 0n) throw new BadInputError(`a digest window must be positive (got ${windowNs} ns)`, { field: "windowNs" });
  if (startNs > endNs) return [];
  return [...scanWindows(head, blocks, startNs, endNs, windowNs)]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, w]) => ({ startNs: k * windowNs, count: w.sum.count, hash: w.sum.hash }));
}

/** The visible points of [startNs, endNs] per window: digest and the span they cover. */
function scanWindows(head: Head, blocks: BlockSet, startNs: bigint, endNs: bigint, windowNs: bigint): Map<bigint, WindowScan> {
  const out = new Map<bigint, WindowScan>();
  for (const s of head.series.values()) {
    const r = readSeries(head, blocks, s, startNs, endNs, true);
    if (r === null) continue;
    const hasher = new SeriesHasher(s.key, (s.digestSeeds ??= seriesSeeds(s.key)));
    const ts = r.timestampsNs;
    // Per window, not per point: one division and one binary search per window the series has points in.
    for (let i = 0; i < ts.length; ) {
      const k = floorDiv(ts[i]!, windowNs);
      const j = lowerBoundFrom(ts, (k + 1n) * windowNs, i + 1);
      let w = out.get(k);
      if (w === undefined) out.set(k, (w = { sum: new DigestSum(), minNs: ts[i]!, maxNs: ts[j - 1]! }));
      else {
        if (ts[i]! < w.minNs) w.minNs = ts[i]!;
        if (ts[j - 1]! > w.maxNs) w.maxNs = ts[j - 1]!;
      }
      hasher.addPoints(w.sum, ts, r.values, r.origins, i, j);
      i = j;
    }
  }
  return out;
}

/** Per series with visible points in [startNs, endNs] (inclusive): count and digest; sorted by key. */
export function digestSeries(head: Head, blocks: BlockSet, startNs: bigint, endNs: bigint): SeriesDigest[] {
  const out: SeriesDigest[] = [];
  if (startNs > endNs) return out;
  for (const s of [...head.series.values()].sort(byKey)) {
    const r = readSeries(head, blocks, s, startNs, endNs, true);
    if (r === null) continue;
    const sum = new DigestSum();
    new SeriesHasher(s.key, (s.digestSeeds ??= seriesSeeds(s.key))).addPoints(sum, r.timestampsNs, r.values, r.origins);
    out.push({ key: s.key, count: sum.count, hash: sum.hash });
  }
  return out;
}
