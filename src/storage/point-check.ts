// A batch's points against what is stored at their (series, timestamp), by the identity rules (DESIGN.md decision 6):
// one point per (series, timestamp); the same value again is a no-op; another value is a conflict; an original
// replaces an inferred point and an inferred point yields to an original. A write plans its head changes here (and is
// refused whole on any conflict); a repair decides point by point with the same classification.

import { ORIGIN_CODE, sameValue, type Batch } from "../core/batch.js";
import { ConflictError, type ConflictingPoint } from "../core/errors.js";
import type { BlockSet, ChunkCandidate, StoredPoint } from "./block-set.js";
import type { Head } from "./engine-head.js";
import type { Op, SeriesState } from "./engine-state.js";

/** What is stored where a point of a batch would go. */
export type StoredCase =
  | { readonly kind: "absent" }
  | { readonly kind: "same"; readonly heldUndecided: boolean }
  | { readonly kind: "differs"; readonly stored: StoredPoint }
  | { readonly kind: "yields" }
  | { readonly kind: "replaces" };
const ABSENT: StoredCase = { kind: "absent" };
const YIELDS: StoredCase = { kind: "yields" };
const REPLACES: StoredCase = { kind: "replaces" };
const SAME: StoredCase = { kind: "same", heldUndecided: false };
const SAME_HELD: StoredCase = { kind: "same", heldUndecided: true };

/**
 * Visits every point of a batch with what is stored at its (series, timestamp): absent; the same value and origin
 * class (and whether an undecided batch holds it); a different value of the same class; an incoming inferred point
 * where an original stands (it yields); an incoming original where an inferred point stands (it replaces it). `hi` is
 * the head index from s.head.find (negative: not in the head). Series not known yet are created (empty).
 */
export function visitPoints(
  head: Head,
  blocks: BlockSet,
  batch: Batch,
  visit: (s: SeriesState, key: string, t: bigint, v: number, hi: number, c: StoredCase) => void,
): void {
  const incoming = ORIGIN_CODE[batch.origin];
  // Nothing below awaits, so the table cannot be swapped by a flush meanwhile.
  const table = head.table;
  for (const bs of batch.series) {
    const s = head.series.get(bs.key) ?? head.seriesFor(bs.key, bs.labels);
    const n = bs.timestampsNs.length;
    const cands = n > 0 ? blocks.overlapping(s, bs.timestampsNs[0]!, bs.timestampsNs[n - 1]!) : NO_CHUNKS;
    for (let i = 0; i < n; i++) {
      const t = bs.timestampsNs[i]!;
      const v = bs.values[i]!;
      const hi = s.head.find(t);
      const stored = storedPoint(head, blocks, s, hi, cands, t);
      let c: StoredCase;
      if (stored === null) c = ABSENT;
      else if (stored.origin !== incoming) c = incoming === ORIGIN_CODE.inferred ? YIELDS : REPLACES;
      else if (!sameValue(stored.v, v)) c = { kind: "differs", stored };
      else c = hi >= 0 && table[s.head.batchRefs[hi]!]!.phase !== "committed" ? SAME_HELD : SAME;
      visit(s, bs.key, t, v, hi, c);
    }
  }
}

/** The op that stores (t, v): a replacement of the head point at `hi`, else an insertion into the head. */
export function storeOp(head: Head, s: SeriesState, hi: number, t: bigint, v: number): Op {
  if (hi >= 0)
    return { kind: "replace", s, index: hi, t, v, oldV: s.head.values[hi]!, oldOrigin: s.head.origins[hi]!, oldOwner: head.table[s.head.batchRefs[hi]!]! };
  return { kind: "insert", s, t, v };
}

/** The point stored at (s, t): in the head (at `hi`, from s.head.find) or else in one of `cands`; null when absent. */
function storedPoint(head: Head, blocks: BlockSet, s: SeriesState, hi: number, cands: readonly ChunkCandidate[], t: bigint): StoredPoint | null {
  if (hi >= 0) return { v: s.head.values[hi]!, origin: s.head.origins[hi]!, batchId: head.table[s.head.batchRefs[hi]!]!.batchId };
  return cands.length > 0 ? blocks.find(cands, t) : null;
}

/**
 * Checks every point of the batch against head and blocks; returns the changes to make, or throws ConflictError
 * (adding the ids of the batches holding conflicting points to `holders` if given).
 */
export function plan(head: Head, blocks: BlockSet, batch: Batch, holders?: Set<string>): Op[] {
  const ops: Op[] = [];
  const conflicts: ConflictingPoint[] = [];
  visitPoints(head, blocks, batch, (s, key, t, v, hi, c) => {
    switch (c.kind) {
      case "absent":
      case "replaces": // an original arrives where an inferred point stands: it replaces it
        ops.push(storeOp(head, s, hi, t, v));
        return;
      case "same":
        // Identical replay. Held by a batch whose fate is open: share it, so it outlives that batch's rollback.
        if (c.heldUndecided) ops.push({ kind: "share", s, t });
        return;
      case "differs":
        if (conflicts.length < 100) conflicts.push({ series: key, timestampNs: t.toString(), storedValue: c.stored.v, offeredValue: v });
        if (holders !== undefined) {
          holders.add(c.stored.batchId);
          head.addSharerIds(s, t, holders);
        }
        return;
      case "yields":
        return; // an original is already there: inference yields
    }
  });
  if (conflicts.length > 0)
    throw new ConflictError(
      `${conflicts.length >= 100 ? "100 or more" : conflicts.length} point(s) already hold a different value; nothing of this batch was stored`,
      conflicts,
    );
  return ops;
}

const NO_CHUNKS: readonly ChunkCandidate[] = [];
