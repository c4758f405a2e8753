// How complete a series is over a window (docs/gaps.md, "Completeness").
// Pure: no I/O, no clock.
//
// Slot arithmetic, for the half-open window [startNs, endNs) of length W and
// the expected interval I:
//   expectedSlots = floor(W / I)
//   original, inferred = the points in [startNs, endNs) by origin
//   missingSlots = max(0, expectedSlots - original - inferred)
// A regular series (one point per I, any phase) has floor(W/I) or
// ceil(W/I) points in such a window, exactly W/I when W is a multiple of I;
// flooring means an extra point at an edge never shows as a missing slot.
// Under jitter a point near an edge may fall either side: ±1 slot.

import { assert } from "../core/assert.js";
import { ORIGIN_CODE } from "../core/batch.js";

export interface Completeness {
  /** floor((endNs - startNs) / intervalNs). */
  readonly expectedSlots: number;
  /** Original points in [startNs, endNs). */
  readonly original: number;
  /** Inferred points in [startNs, endNs). */
  readonly inferred: number;
  /** max(0, expectedSlots - original - inferred). */
  readonly missingSlots: number;
}

/** The first index whose timestamp is >= tNs (timestamps ascending). */
function lowerBound(timestampsNs: BigInt64Array | readonly bigint[], tNs: bigint): number {
  let lo = 0;
  let hi = timestampsNs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (timestampsNs[mid]! < tNs) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Completeness of one series over [startNs, endNs): `timestampsNs` strictly
 * increasing, `origins[i]` the origin code of point i (core/batch.ts
 * ORIGIN_CODE: 0 original, 1 inferred), as a read returns them.
 */
export function completeness(
  timestampsNs: BigInt64Array | readonly bigint[],
  origins: Uint8Array,
  startNs: bigint,
  endNs: bigint,
  intervalNs: bigint,
): Completeness {
  assert(intervalNs > 0n, "completeness: intervalNs must be positive");
  assert(endNs >= startNs, "completeness: endNs must not be before startNs");
  assert(origins.length === timestampsNs.length, "completeness: one origin per timestamp");
  const expected = (endNs - startNs) / intervalNs; // bigint division: floor, both non-negative
  assert(expected <= BigInt(Number.MAX_SAFE_INTEGER), "completeness: expected slots beyond 2^53");
  const expectedSlots = Number(expected);

  const first = lowerBound(timestampsNs, startNs);
  const last = lowerBound(timestampsNs, endNs); // exclusive
  let original = 0;
  let inferred = 0;
  for (let i = first; i < last; i++) {
    if (i > first) assert(timestampsNs[i]! > timestampsNs[i - 1]!, "completeness: timestamps must be strictly increasing");
    const o = origins[i]!;
    if (o === ORIGIN_CODE.original) original++;
    else {
      assert(o === ORIGIN_CODE.inferred, "completeness: unknown origin code");
      inferred++;
    }
  }
  assert(original + inferred === last - first, "completeness: every point in the window counted once");
  const missingSlots = Math.max(0, expectedSlots - original - inferred);
  return { expectedSlots, original, inferred, missingSlots };
}
