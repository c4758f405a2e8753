// The flush: the head's committed batches become one immutable block, and the WAL segments they were logged in are
// deleted. New writes wait only until the cut is taken (the WAL rolled, the committed batches chosen): from then on
// they go to the new segment and into the head outside the cut, like the replication layer's reservations, commits
// and aborts, which may run between any of its awaits. So writing the block (encoding, compression, fsync) never
// stalls a write.
//
// Order matters for crashes: the WAL rolls first (every later record lands in the new segment), what must outlive
// the old segments is logged again into the new one, the block is written and fsynced, and only then are the old
// segments deleted. A crash between the block and the deletion is harmless: replay skips batches a block holds.

import { assert } from "../core/assert.js";
import type { BlockSet } from "./block-set.js";
import { BlockReader, writeBlock } from "./block-io.js";
import type { FlushResult } from "./engine-api.js";
import type { Head } from "./engine-head.js";
import type { EngineOptions } from "./engine-options.js";
import type { BatchState } from "./engine-state.js";
import { encodeWalBatch, WalRecordType } from "./wal-payload.js";
import type { WalWriter } from "./wal-writer.js";

/** What a flush needs of the engine's options. */
export type FlushHooks = Pick<EngineOptions, "log" | "relog" | "beforeWalDrop">;

/**
 * Cuts the head's committed batches into a block and deletes the WAL segments before the rotation. `rewrite`: the
 * segments must go even when the head holds no committed batch (WAL damage found while running, Engine.rewriteWal).
 * One at a time: the caller holds the engine's flush slot and clears head.flushSnapshot when it settles. `cutTaken`
 * is called once the cut is taken, from when writes may go on (the caller also lets them go when the flush settles).
 */
export async function flushHead(
  w: WalWriter,
  head: Head,
  blocks: BlockSet,
  retentionCutoffNs: () => bigint | null,
  hooks: FlushHooks,
  rewrite: boolean,
  cutTaken: () => void,
): Promise<FlushResult> {
  // New writes wait (until cutTaken); let the ones in flight become durable or fail first.
  await w.settle();
  const wal = w.wal;
  assert(wal !== null, "flush before open");
  const hasCommitted = head.table.some((b) => b.phase === "committed");
  if (!hasCommitted && !rewrite) return { blockPath: null, series: 0, samples: 0 };
  // rotate() is a barrier: every record appended from here on lands in the new segment.
  const firstKept = await wal.rotate();
  // What goes into the block. Commits and aborts may still run while we await below; they only touch batches
  // outside this cut, which stay in the head.
  const cut = head.cut();
  head.flushSnapshot = cut.refs;
  cutTaken();
  // Prepared batches outlive the segments about to be deleted: log them again in the new one. In cluster mode the
  // replication layer re-logs its own state (undecided batches, votes, fences) instead.
  if (hooks.relog !== undefined) {
    const payloads = hooks.relog();
    await Promise.all(payloads.map((p) => wal.append(WalRecordType.REPLICA_LOG, p)));
  } else {
    const undecided = head.table.filter((b) => b.phase === "prepared");
    const payloadOf = (b: BatchState): Uint8Array =>
      b.pending!.walPayload ?? encodeWalBatch({ batchId: b.batchId, sha256: b.sha256, hlc: b.hlc, batchBytes: b.bytes! });
    await Promise.all(undecided.map((b) => wal.append(WalRecordType.PREPARE, payloadOf(b))));
  }
  if (cut.batches.length === 0) {
    // A rewrite with no committed batch in the head: nothing to cut, only the old segments to drop.
    assert(rewrite, "a flush without committed batches returned early");
    await hooks.beforeWalDrop?.();
    await wal.removeSegmentsBefore(firstKept);
    return { blockPath: null, series: 0, samples: 0 };
  }

  const cutoff = retentionCutoffNs();
  const input = await head.blockInput(cut, cutoff);
  const meta = await writeBlock(blocks.dir, { series: input.series, batches: input.batches });
  const reader = await BlockReader.open(meta.path);
  // From here the block holds the cut: swap synchronously (no await until the WAL cleanup).
  head.truncate(cut, cutoff);
  const keptBatches = head.table.length;
  for (const b of cut.batches) {
    b.bytes = null;
    // Its points are in a fsynced block now, whatever became of its WAL records (a repair's refused for overload).
    b.durable = Promise.resolve();
  }
  // No repair applies while a flush runs (repair() waits for it), so every point one made visible is in this block.
  w.repairsUnlogged = false;
  blocks.attach(reader);
  await hooks.beforeWalDrop?.();
  await wal.removeSegmentsBefore(firstKept);
  hooks.log.info({ block: meta.path, series: input.series.length, samples: input.samples, bytes: meta.sizeBytes, keptBatches }, "head flushed to block");
  return { blockPath: meta.path, series: input.series.length, samples: input.samples };
}
