// The in-memory records the engine's parts share: a series (its head samples and its block chunks), a batch (its
// identity and where its points are), and a head change a batch made (what a rollback undoes).
//
// Everything here is changed on the event loop's one thread, inside synchronous steps: a write's checks and head
// changes happen with no await between them, so no lock guards these fields. What stands in for locking is written on
// each field: which part changes it, and what holds between changes.

import type { Batch, Origin } from "../core/batch.js";
import type { Labels } from "../core/labels.js";
import type { BlockSeriesEntry } from "./block-format.js";
import type { BlockReader } from "./block-io.js";
import type { HeadSeries } from "./head.js";
import type { BatchInfo, BatchPhase } from "./replica-api.js";

/** One series' chunks in one block (BlockSet keeps them; the reader's index owns the entry). */
export interface BlockRef {
  readonly reader: BlockReader;
  readonly entry: BlockSeriesEntry;
}

export interface SeriesState {
  readonly key: string;
  readonly labels: Labels;
  /**
   * Samples not yet in a block, sorted by time, one per timestamp. Changed by Head (apply, rollback, takeover) and by a
   * flush's swap (Head.truncate); every sample's batchRefs entry indexes a live entry of Head.table.
   */
  readonly head: HeadSeries;
  /** Changed by BlockSet only (attach, unlink): one entry per attached block holding this series. */
  blocks: BlockRef[];
  /** Point-digest seeds (seriesSeeds), set by the first digest scan and never changed: a one-window scan visits every series. */
  digestSeeds: Uint32Array | null;
}

/** What the engine remembers of a batch, for idempotency and provenance. */
export interface BatchState {
  readonly batchId: string;
  readonly sha256: string;
  readonly shardId: number;
  readonly origin: Origin;
  readonly inference: string | null;
  readonly hlc: bigint;
  readonly sampleCount: number;
  /**
   * Moves forward only (reserved → committed for a write once its WAL record is durable; prepared → committed by
   * Head.commit), except that Head.rollback sets "reserved" on a batch it has removed from the BatchTable (a dead
   * state nothing looks up again). Visibility of a head sample is its batch's phase being "committed".
   */
  phase: BatchPhase;
  /**
   * While prepared: the head changes Head.rollback undoes, and the WAL payload a flush re-logs (null for a batch
   * reserved by reserveSync: encoded from `bytes` if ever needed). Set when the batch becomes prepared, cleared by
   * Head.commit and Head.rollback.
   */
  pending: { ops: Op[]; walPayload: Uint8Array | null } | null;
  /** Canonical batch bytes of a reserveSync batch while it is in the head (catch-up serves them); a flush clears them. */
  bytes: Uint8Array | null;
  /**
   * Index in Head.table, or -1 when it has no head points. Set by Head (register, reenter) and by a flush's swap
   * (renumbered, or -1 for the batches the block took). A batch flushed into a block re-enters the head table when a
   * repair installs more of its points; the next flush then names it in a second block.
   */
  headRef: number;
  /** The blocks naming it in their batch table, oldest first (more than one after a repair or an interrupted flush). Changed by BatchTable. */
  blockPaths: string[];
  /**
   * Resolves when the batch's WAL record (and those of repairs since) is durable, or rejects. Set by the write path,
   * chained by each repair that logs the batch's points, resolved by the flush that puts them in a block.
   */
  durable: Promise<void>;
}

/** A batch's identity and provenance, as Head.register records it. */
export type BatchDesc = Pick<Batch, "shardId" | "origin" | "inference" | "sampleCount">;

/**
 * A head change of one batch. "share": the point is already in the head with the same value, held by a batch not
 * yet committed. If that batch is rolled back the point passes to a sharer instead of disappearing; if the sharer
 * commits first it takes the point over (so a committed batch's points are visible whatever becomes of the other).
 */
export type Op =
  | { kind: "insert"; s: SeriesState; t: bigint; v: number }
  | { kind: "share"; s: SeriesState; t: bigint }
  // The point's former owner by identity, not by head table index: a flush renumbers the table (and may move the
  // owner into a block) while the replacing batch is still undecided.
  | { kind: "replace"; s: SeriesState; index: number; t: bigint; v: number; oldV: number; oldOrigin: number; oldOwner: BatchState };

/** The samples a plan stores or replaces (shares change nothing). */
export function countChanges(ops: readonly Op[]): number {
  let n = 0;
  for (const op of ops) if (op.kind !== "share") n++;
  return n;
}

/** Every point of an original batch stored as its own: rebuilt from storage (batch-contents.ts), it needs no archived copy. */
export function selfContained(st: BatchState, ops: readonly Op[]): boolean {
  return st.origin === "original" && countChanges(ops) === st.sampleCount;
}

export function batchInfo(st: BatchState): BatchInfo {
  return {
    batchId: st.batchId,
    sha256: st.sha256,
    hlc: st.hlc,
    shardId: st.shardId,
    sampleCount: st.sampleCount,
    phase: st.phase,
    origin: st.origin,
    inference: st.inference,
  };
}

/** Sorts series by key (block and read order). */
export function byKey(a: SeriesState, b: SeriesState): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
