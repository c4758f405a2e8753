// Every batch this node knows, by id: the idempotency window (a known id with the same digest is a duplicate, with
// another a conflict) and what provenance and the cluster ask of a batch (digest, phase, stamp, where its points are).
// Batches in the head are also in Head.table (by head ref); batches only in blocks are here alone.

import { CorruptionError } from "../core/errors.js";
import type { BlockReader } from "./block-io.js";
import { batchInfo, type BatchState } from "./engine-state.js";
import type { BatchInfo, BatchPhase } from "./replica-api.js";

export class BatchTable {
  /**
   * id → state. Added by Head.register (a write, a reservation, a repair of an unknown id, a replayed record) and by
   * addBlock; removed by Head.rollback (an undone batch: its id may take content again) and by dropBlock "forget"
   * (retention: the idempotency window is over). An id never takes a second digest while it is here: a write, a
   * reservation, a repair or a block naming it with another digest is refused before anything of it is applied.
   */
  private readonly byId = new Map<string, BatchState>();

  get(batchId: string): BatchState | undefined {
    return this.byId.get(batchId);
  }

  /** `st` is still the batch of its id: not rolled back or forgotten since it was registered. */
  holds(st: BatchState): boolean {
    return this.byId.get(st.batchId) === st;
  }

  add(st: BatchState): void {
    this.byId.set(st.batchId, st);
  }

  delete(batchId: string): void {
    this.byId.delete(batchId);
  }

  values(): IterableIterator<BatchState> {
    return this.byId.values();
  }

  list(phase: BatchPhase, fromHlc: bigint): BatchInfo[] {
    const out: BatchInfo[] = [];
    for (const b of this.byId.values()) if (b.phase === phase && b.hlc >= fromHlc) out.push(batchInfo(b));
    return out;
  }

  /**
   * One batch id may be named by several blocks (a repair installed more of a flushed batch's points, or a flush
   * crashed after writing its block but before dropping the WAL), always with one digest: two digests for one id means
   * a block holds content that is not what the id was committed as, so the block is refused (CorruptionError, before
   * anything of it is attached).
   */
  checkBlock(reader: BlockReader): void {
    const seen = new Map<string, string>();
    for (const b of reader.batches()) {
      const prior = seen.get(b.batchId) ?? this.byId.get(b.batchId)?.sha256;
      if (prior !== undefined && prior !== b.sha256)
        throw new CorruptionError(
          `batch ${b.batchId} is named with SHA-256 ${b.sha256} in this block's batch table and ${prior} elsewhere (another block, or this table)`,
          reader.meta.path,
          reader.meta.indexOffset,
        );
      seen.set(b.batchId, b.sha256);
    }
  }

  /** Records a block (checked by checkBlock) as a location of the batches it names; unknown ones are committed. */
  addBlock(reader: BlockReader): void {
    const path = reader.meta.path;
    for (const b of reader.batches()) {
      const known = this.byId.get(b.batchId);
      if (known !== undefined) {
        if (!known.blockPaths.includes(path)) known.blockPaths.push(path);
        continue;
      }
      this.byId.set(b.batchId, {
        batchId: b.batchId,
        sha256: b.sha256,
        shardId: b.shardId,
        origin: b.origin,
        inference: b.inference,
        hlc: BigInt(b.hlc),
        sampleCount: b.sampleCount,
        phase: "committed",
        pending: null,
        bytes: null,
        headRef: -1,
        blockPaths: [path],
        durable: Promise.resolve(),
      });
    }
  }

  /**
   * A block is gone. Batches left with no location are forgotten ("forget": retention, their idempotency window is
   * over) or kept known as committed ("keep": damage, their points come back by repair and a replay must still be a
   * duplicate).
   */
  dropBlock(reader: BlockReader, batchesWithoutLocation: "forget" | "keep"): void {
    for (const e of reader.batches()) {
      const b = this.byId.get(e.batchId);
      if (b === undefined) continue;
      const k = b.blockPaths.indexOf(reader.meta.path);
      if (k < 0) continue;
      b.blockPaths.splice(k, 1);
      if (batchesWithoutLocation === "forget" && b.blockPaths.length === 0 && b.headRef < 0) this.byId.delete(e.batchId);
    }
  }
}
