// The expected interval of a series, learned from its recent history
// (docs/gaps.md, "Learning the interval"). Pure: no I/O, no clock.
//
// Method: take the last N positive deltas between consecutive timestamps,
// sum each adjacent pair of them (a two-step delta, t[i+2] - t[i]), and take
// the lower median of those sums, halved. Why a median: it ignores the
// gaps themselves (a few huge deltas) where a mean is dragged up by them; why
// not the minimum: under ±20% jitter the minimum delta is 0.6× the interval
// and would make every ordinary 1.4× delta look like a gap; why two steps: a
// two-step delta is 2I ± 0.4I whatever the jitter pattern, so any order
// statistic of them, halved, lies in [0.8I, 1.2I] — even for jitter that
// alternates early/late, where one-step deltas are 0.6I, 1.4I, 0.6I, … and
// their median can be 0.6I.

import { assert } from "../core/assert.js";

/** How many of the most recent positive deltas are used (N). */
export const LEARN_DELTAS_MAX_DEFAULT = 64;
/** Fewer positive deltas than this (K) and nothing is learned: null. */
export const LEARN_DELTAS_MIN_DEFAULT = 8;

export interface LearnIntervalOptions {
  /** N: the most recent positive deltas used. Default 64. */
  deltasMax?: number;
  /** K: fewer positive deltas → null. Default 8, at least 2. */
  deltasMin?: number;
}

/**
 * The expected interval in ns learned from `timestampsNs` (ascending; repeats
 * and any non-positive delta are skipped), or null when the history holds
 * fewer than `deltasMin` positive deltas. Deterministic: the same history
 * gives the same interval on every node.
 */
export function learnIntervalNs(timestampsNs: BigInt64Array | readonly bigint[], opts: LearnIntervalOptions = {}): bigint | null {
  const deltasMax = opts.deltasMax ?? LEARN_DELTAS_MAX_DEFAULT;
  const deltasMin = opts.deltasMin ?? LEARN_DELTAS_MIN_DEFAULT;
  assert(Number.isSafeInteger(deltasMin) && deltasMin >= 2, "learnIntervalNs: deltasMin must be an integer >= 2");
  assert(Number.isSafeInteger(deltasMax) && deltasMax >= deltasMin, "learnIntervalNs: deltasMax must be an integer >= deltasMin");

  // Walk back from the newest point: the recent history is what counts.
  const deltasNs: bigint[] = [];
  for (let i = timestampsNs.length - 1; i >= 1 && deltasNs.length < deltasMax; i--) {
    const deltaNs = timestampsNs[i]! - timestampsNs[i - 1]!;
    if (deltaNs > 0n) deltasNs.push(deltaNs);
  }
  if (deltasNs.length < deltasMin) return null;

  const pairSumsNs: bigint[] = [];
  for (let i = 1; i < deltasNs.length; i++) pairSumsNs.push(deltasNs[i - 1]! + deltasNs[i]!);
  assert(pairSumsNs.length === deltasNs.length - 1 && pairSumsNs.length >= 1, "learnIntervalNs: one pair sum per adjacent delta pair");
  const intervalNs = lowerMedian(pairSumsNs) / 2n;
  // A two-step delta is at least 2 ns, so the halved median is at least 1 ns.
  assert(intervalNs > 0n, "learnIntervalNs: the learned interval is positive");
  return intervalNs;
}

/** The element at index floor((n - 1) / 2) of the sorted values: an observed value, no averaging. */
export function lowerMedian(values: readonly bigint[]): bigint {
  assert(values.length > 0, "lowerMedian of no values");
  const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}
