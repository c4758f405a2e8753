// Gap detection over one series' original points (docs/gaps.md, "Gaps").
// Pure: no I/O, no clock (the caller passes "now").
//
// A gap is a delta between consecutive points larger than factor × interval
// (factor 2 by default). Under ±20% jitter every timestamp is within 0.2I of
// its slot, so a delta between neighbours is at most 1.4I: below 2I, no false
// gap. A hole of two or more missing slots makes a delta of at least
// 3I - 0.4I = 2.6I: always found. A single missing point (delta 1.6I..2.4I)
// is found only when the delta passes 2I: under that much jitter it cannot be
// told from a late and an early point.

import { assert } from "../core/assert.js";

/** Default factor: a delta > factor × interval is a gap. */
export const GAP_FACTOR_DEFAULT = 2;
/** The smallest factor accepted: above 1.5 every gap rounds to at least one missing slot. */
export const GAP_FACTOR_MIN = 1.5;
/** Default: a series silent for more than this many intervals has stopped (stale). */
export const STALE_AFTER_SLOTS_DEFAULT = 10;

/** Factors are applied at millionths, in integer arithmetic (exact on bigint ns). */
const FACTOR_SCALE = 1_000_000;

/** A hole between two consecutive points of a series. */
export interface Gap {
  /** The last point before the hole. */
  readonly startNs: bigint;
  /** The first point after the hole. */
  readonly endNs: bigint;
  /** round((endNs - startNs) / interval) - 1, at least 1. */
  readonly missingSlots: number;
}

/**
 * open: found, not covered (policy none, longer than maxFill, or not filled yet);
 * filled: inferred points were written into it;
 * backfilled: original points arrived in it later;
 * stale: the series stopped (a trailing silence, never filled).
 */
export type GapState = "open" | "filled" | "backfilled" | "stale";

export interface FindGapsOptions {
  /** A delta > factor × interval is a gap. Default 2; at least 1.5. */
  factor?: number;
}

export interface StaleOptions {
  /** Silent for more than this many intervals → stale. Default 10. */
  staleAfterSlots?: number;
}

/** round(deltaNs / intervalNs) - 1 (halves round up): the slots missing between two points. */
export function missingSlotsBetween(startNs: bigint, endNs: bigint, intervalNs: bigint): number {
  assert(intervalNs > 0n, "missingSlotsBetween: intervalNs must be positive");
  assert(endNs > startNs, "missingSlotsBetween: endNs must be after startNs");
  const deltaNs = endNs - startNs;
  const slotsRounded = (2n * deltaNs + intervalNs) / (2n * intervalNs); // round half up, deltaNs > 0
  const missing = slotsRounded - 1n;
  assert(missing <= BigInt(Number.MAX_SAFE_INTEGER), "missingSlotsBetween: slot count beyond 2^53");
  return Number(missing);
}

/**
 * The gaps in `timestampsNs` (strictly increasing; pass the original points
 * only, so inferred points never hide a hole), in time order, each once.
 */
export function findGaps(timestampsNs: BigInt64Array | readonly bigint[], intervalNs: bigint, opts: FindGapsOptions = {}): Gap[] {
  const factor = opts.factor ?? GAP_FACTOR_DEFAULT;
  assert(intervalNs > 0n, "findGaps: intervalNs must be positive");
  assert(Number.isFinite(factor) && factor >= GAP_FACTOR_MIN, `findGaps: factor must be a finite number >= ${GAP_FACTOR_MIN}`);
  const factorScaled = BigInt(Math.round(factor * FACTOR_SCALE));
  const thresholdScaledNs = factorScaled * intervalNs; // compare deltaNs × SCALE against it: no rounding of ns
  const scale = BigInt(FACTOR_SCALE);

  const gaps: Gap[] = [];
  for (let i = 1; i < timestampsNs.length; i++) {
    const startNs = timestampsNs[i - 1]!;
    const endNs = timestampsNs[i]!;
    assert(endNs > startNs, "findGaps: timestamps must be strictly increasing");
    if ((endNs - startNs) * scale <= thresholdScaledNs) continue;
    const missingSlots = missingSlotsBetween(startNs, endNs, intervalNs);
    assert(missingSlots >= 1, "findGaps: a gap misses at least one slot (factor >= 1.5)");
    gaps.push({ startNs, endNs, missingSlots });
  }
  return gaps;
}

/**
 * Whether a series whose last point is `lastTsNs` has stopped at `nowNs`:
 * silent for more than staleAfterSlots × intervalNs. A stale series is
 * reported, never filled (there is no point after it to fill towards).
 */
export function staleSince(lastTsNs: bigint, nowNs: bigint, intervalNs: bigint, opts: StaleOptions = {}): boolean {
  const staleAfterSlots = opts.staleAfterSlots ?? STALE_AFTER_SLOTS_DEFAULT;
  assert(intervalNs > 0n, "staleSince: intervalNs must be positive");
  assert(Number.isSafeInteger(staleAfterSlots) && staleAfterSlots >= 1, "staleSince: staleAfterSlots must be an integer >= 1");
  return nowNs - lastTsNs > BigInt(staleAfterSlots) * intervalNs;
}

/** Points now stored strictly inside a recorded gap, by origin. */
export interface GapContents {
  readonly original: number;
  readonly inferred: number;
}

/**
 * The state of a recorded (internal) gap from what is stored inside it now:
 * any original point → backfilled (real data wins); else every slot inferred
 * → filled; else open. Trailing silences are judged by staleSince instead.
 */
export function classifyGap(gap: Gap, inside: GapContents): Exclude<GapState, "stale"> {
  assert(gap.missingSlots >= 1, "classifyGap: a gap misses at least one slot");
  assert(Number.isSafeInteger(inside.original) && inside.original >= 0, "classifyGap: original count");
  assert(Number.isSafeInteger(inside.inferred) && inside.inferred >= 0, "classifyGap: inferred count");
  if (inside.original > 0) return "backfilled";
  if (inside.inferred >= gap.missingSlots) return "filled";
  return "open";
}
