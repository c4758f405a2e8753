// Open's WAL replay: every record since the last flush is applied again, in WAL order, by the rules it was applied
// by when it was written, so memory comes back as it was (batches a block already holds are skipped by id).
// REPLICA_LOG records are the cluster layer's, handed to it in order (EngineOptions.onReplicaLog); it rebuilds its
// state through the replica primitives.

import type { Logger } from "pino";
import { decodeBatch } from "../core/batch.js";
import { BadInputError, ConflictError } from "../core/errors.js";
import type { Hlc } from "../core/hlc.js";
import { isCorruption, Wal, type WalFinding } from "../wal/wal.js";
import type { BatchTable } from "./batch-table.js";
import type { BlockSet } from "./block-set.js";
import type { Head } from "./engine-head.js";
import type { EngineMetrics } from "./engine-metrics.js";
import type { EngineOptions } from "./engine-options.js";
import { selfContained, type BatchState } from "./engine-state.js";
import { plan } from "./point-check.js";
import { installRepair } from "./repair-install.js";
import { decodeWalBatch, decodeWalMark, decodeWalRepair, WalRecordType } from "./wal-payload.js";
import type { WalWriter } from "./wal-writer.js";

export interface ReplayContext {
  readonly walDir: string;
  readonly onDamage: "fail" | "quarantine";
  readonly pendingWritesMax: number;
  readonly fsync: boolean;
  readonly log: Logger;
  readonly metrics: EngineMetrics;
  readonly writer: WalWriter;
  readonly head: Head;
  readonly blocks: BlockSet;
  readonly batches: BatchTable;
  readonly hlc: Hlc;
  readonly onCommitted: EngineOptions["onCommitted"];
  readonly onReplicaLog: EngineOptions["onReplicaLog"];
  /** A COMMIT mark of a prepared batch (the engine's commit of a prepared batch, without a WAL mark). */
  decideCommit(st: BatchState): void;
  /** An ABORT mark of a prepared batch. */
  decideAbort(st: BatchState): void;
}

/** Opens the WAL (the writer's from here on) and replays it; returns the corruption found (never a torn tail). */
export async function replayWal(ctx: ReplayContext): Promise<WalFinding[]> {
  const { head, blocks, batches, log } = ctx;
  const opened = await Wal.open(ctx.walDir, {
    onCorruption: ctx.onDamage,
    pendingWritesMax: ctx.pendingWritesMax,
    fsync: ctx.fsync,
    onFsync: (durationMs: number) => ctx.metrics.fsync.observe(durationMs / 1000),
  });
  ctx.writer.wal = opened.wal;
  const damage: WalFinding[] = [];
  for (const f of opened.findings) {
    ctx.metrics.walDamage.inc({ kind: f.kind });
    if (f.kind === "torn_tail") log.warn({ ...f }, "WAL torn tail truncated (a write interrupted by a crash; it was never acknowledged)");
    else log.error({ ...f }, "WAL corruption: the records in this byte range are LOST on this node until repaired (onDamage quarantine)");
    if (isCorruption(f)) damage.push(f);
  }
  let applied = 0;
  for await (const rec of opened.replay()) {
    const source = `${ctx.walDir}/segment ${rec.segment}`;
    switch (rec.type) {
      // PREPARE, COMMIT and ABORT: a flush without a relog hook re-logs prepared batches as PREPARE; the marks are read
      // so a WAL written by earlier versions (which had a prepare/commit/abort API beside the sync one) opens as before.
      case WalRecordType.COMMITTED_BATCH:
      case WalRecordType.PREPARE: {
        const wb = decodeWalBatch(rec.payload, source);
        if (batches.get(wb.batchId) !== undefined) continue; // already in a block, or re-logged by a flush
        const batch = decodeBatch(wb.batchBytes, source);
        ctx.hlc.observe(wb.hlc);
        try {
          const ops = plan(head, blocks, batch);
          const phase = rec.type === WalRecordType.PREPARE ? "prepared" : "committed";
          const st = head.register(wb.batchId, wb.sha256, batch, wb.hlc, phase);
          head.applyOps(ops, batch.origin, st.headRef);
          if (phase === "prepared") st.pending = { ops, walPayload: rec.payload.slice() };
          else {
            head.unshare(ops, st);
            ctx.onCommitted?.(st.batchId, st.sha256, wb.batchBytes, selfContained(st, ops));
          }
          applied++;
        } catch (err) {
          // A batch was acked only after its checks passed against everything before it; replaying in the same order
          // must pass again. A conflict here means the stored data changed underneath: report it loudly, keep going.
          if (!(err instanceof ConflictError)) throw err;
          log.error({ batchId: wb.batchId, err: err.message }, "WAL replay: batch conflicts with stored data; not applied");
        }
        break;
      }
      case WalRecordType.COMMIT:
      case WalRecordType.ABORT: {
        const mark = decodeWalMark(rec.payload, source);
        const st = batches.get(mark.batchId);
        if (st === undefined || st.phase === "committed") continue; // flushed already, or a repeated mark
        if (st.sha256 !== mark.sha256) {
          log.error({ batchId: mark.batchId, segment: rec.segment, offset: rec.offset }, "WAL replay: a mark names another digest than its batch; ignored");
          continue;
        }
        if (rec.type === WalRecordType.COMMIT) ctx.decideCommit(st);
        else ctx.decideAbort(st);
        break;
      }
      case WalRecordType.REPAIR: {
        const rr = decodeWalRepair(rec.payload, source);
        ctx.hlc.observe(rr.hlc);
        try {
          // The rules of a live repair, so a record repeated (or already flushed into a block) stores nothing new.
          const r = installRepair(head, blocks, batches, rr, rr.part);
          if (r.deferred) {
            // Live, a repair of an undecided batch writes no record: this one was logged before the batch became undecided.
            log.warn({ batchId: rr.batchId, segment: rec.segment, offset: rec.offset }, "WAL replay: a repair of a batch undecided here; not applied");
            continue;
          }
          applied++;
        } catch (err) {
          if (!(err instanceof ConflictError) && !(err instanceof BadInputError)) throw err;
          log.error({ batchId: rr.batchId, err: err.message }, "WAL replay: repair record disagrees with the batch stored under its id; not applied");
        }
        break;
      }
      case WalRecordType.REPLICA_LOG:
        if (ctx.onReplicaLog === undefined) {
          log.warn({ segment: rec.segment, offset: rec.offset }, "WAL: a replica log record and no cluster layer to read it; skipped");
          continue;
        }
        ctx.onReplicaLog(rec.payload);
        applied++;
        break;
      default:
        log.warn({ type: rec.type, segment: rec.segment, offset: rec.offset }, "WAL record of an unknown type; skipped");
    }
  }
  if (applied > 0) head.oldestWriteMs = Date.now();
  log.info({ batches: applied, headSamples: head.samples, blocks: blocks.readers.length }, "storage opened");
  return damage;
}
