// What the cluster layer may ask of a replica's storage engine. src/cluster/ codes against this interface, not the
// concrete Engine, so the engine's internals (head, blocks, flush) can change without touching the protocol.
//
// The replication protocol's state machine calls the replica primitives synchronously (reserveSync, commitSync,
// abortSync: no WAL, no await) and makes its own decisions durable as REPLICA_LOG records (appendReplicaLog), which
// the engine hands back in WAL order on open (EngineOptions.onReplicaLog) and asks for again before a flush deletes
// old WAL segments (EngineOptions.relog).

import type { Batch, Origin } from "../core/batch.js";
import type { ConflictingPoint } from "../core/errors.js";
import type { RepairMeta, RepairResult, SeriesDigest, StorageEngine, WindowDigest } from "./engine-api.js";

/**
 * reserved: checked and applied to the head, invisible, its WAL record not yet durable (a write in flight);
 * prepared: invisible, held until commitSync or abortSync decides it;
 * committed: visible.
 */
export type BatchPhase = "reserved" | "prepared" | "committed";

export interface BatchInfo {
  batchId: string;
  sha256: string;
  hlc: bigint;
  shardId: number;
  sampleCount: number;
  phase: BatchPhase;
  /** With shardId and inference: what a peer needs to build a repair part of this batch (ReplicaEngine.repair). */
  origin: Origin;
  inference: string | null;
}

/** The outcome of reserveSync. */
export type ReserveSyncResult =
  | { readonly kind: "ok" }
  | { readonly kind: "conflict"; readonly points: readonly ConflictingPoint[]; readonly holders: readonly string[] }
  | { readonly kind: "id-conflict"; readonly sha256: string }
  | { readonly kind: "duplicate"; readonly phase: BatchPhase };

export interface ReplicaEngine extends StorageEngine {
  /**
   * Checks a batch (its id, and every point against committed, prepared and reserved batches) and, if it passes,
   * reserves its points invisibly and holds it as prepared, its canonical bytes kept while it is in the head. Writes
   * no WAL record: the caller logs its decision. The id known with another digest → id-conflict; with this digest →
   * duplicate (its phase); a point holding another value → conflict (at most 100 points, and the batches holding them).
   */
  reserveSync(batch: Batch, batchId: string, sha256: string, hlc: bigint, bytes: Uint8Array): ReserveSyncResult;
  /** Makes a prepared batch visible (committed: a no-op). Unknown id → NotFoundError. */
  commitSync(batchId: string): void;
  /** Releases a prepared batch's points. Unknown id: a no-op; committed → ConflictError. */
  abortSync(batchId: string): void;
  lookupBatch(batchId: string): BatchInfo | null;
  /** Batches in a phase stamped at or after `fromHlc` (head and blocks), in no particular order. */
  listBatches(phase: BatchPhase, fromHlc: bigint): BatchInfo[];
  /** A reserveSync batch's canonical bytes while it is in the head; null once flushed (blocks keep points, not bytes). */
  batchBytes(batchId: string): Uint8Array | null;
  /** Appends an opaque REPLICA_LOG record; resolves once it is durable (group commit with every other append). */
  appendReplicaLog(payload: Uint8Array): Promise<void>;
  /** Installs committed points of a batch a peer holds (catch-up of flushed data, read repair, anti-entropy). */
  repair(meta: RepairMeta, part: Batch, partBytes: Uint8Array): Promise<RepairResult>;
  /** Per aligned window: count and digest of the visible points (docs/format/point-digest.md). */
  digestWindows(startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[];
  /** Per series with visible points in [startNs, endNs]: count and digest, sorted by key. */
  digestSeries(startNs: bigint, endNs: bigint): SeriesDigest[];
}
