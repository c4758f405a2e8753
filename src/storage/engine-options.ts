// How an engine is opened: where its data lives, its limits, what it does about damage, and the hooks the layers
// above it (the cluster's replica log, provenance's archive) plug in.

import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Limits } from "../core/limits.js";

export interface EngineOptions {
  dataDir: string;
  limits: Limits;
  /** Blocks wholly older than this are deleted; null keeps everything. */
  retentionMs: number | null;
  /** Start over corrupt WAL or blocks, quarantining what is damaged (standalone only). */
  acceptDataLoss: boolean;
  /**
   * What open does about damaged WAL records and damaged or unreadable blocks (a torn WAL tail, never acknowledged,
   * is always truncated): "fail" refuses to open (CorruptionError naming file and offset); "quarantine" opens over
   * them, moving damaged blocks to <dataDir>/quarantine/ and copying damaged WAL ranges to wal/quarantine/, and
   * reports what was lost in openDamage() (a cluster node then fetches it from its peers). Default: "quarantine" with
   * acceptDataLoss, else "fail".
   */
  onDamage?: "fail" | "quarantine";
  log: Logger;
  metrics: Registry;
  /** Cut the head into a block once it holds this many samples. */
  headSamplesMax?: number;
  /** ...or once its oldest unflushed write is this old. */
  flushIntervalMs?: number;
  /** Benchmarks only: skip fsync. */
  fsync?: boolean;
  /**
   * Cluster: called during open for every REPLICA_LOG record, in WAL order (the cluster layer rebuilds its state
   * there, through reserveSync/commitSync/abortSync).
   */
  onReplicaLog?: (payload: Uint8Array) => void;
  /**
   * Provenance: called when a batch becomes committed here and its canonical bytes are at hand (written or
   * prepared through this node, or replayed from the WAL; not for batches installed point by point by a repair).
   * Called again for the same batch on every WAL replay: the callee must be idempotent. `selfContained`: an original
   * batch every point of which is stored here as its own, so batchContents() rebuilds it from storage and its bytes
   * need not be kept (an inferred batch's points may later be replaced by originals: never self-contained).
   */
  onCommitted?: (batchId: string, sha256: string, bytes: Uint8Array, selfContained: boolean) => void;
  /** Provenance: awaited before a flush deletes WAL segments (what onCommitted was given must be durable by then). */
  beforeWalDrop?: () => Promise<void>;
  /**
   * Cluster: called by a flush right after the WAL rotation; its payloads are appended as REPLICA_LOG records before
   * the old segments are deleted (they must re-create every undecided batch, vote and fence still needed). When given,
   * prepared batches are not re-logged as PREPARE records.
   */
  relog?: () => Uint8Array[];
}
