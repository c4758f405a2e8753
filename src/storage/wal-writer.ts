// The engine's side of its write-ahead log: the appends still in flight (a flush and close wait for them), the
// failure that stops every write, and the records that are not a write's own (replica log, repair).
//
// A failed append other than an overload stops the node's writes until a restart: an fsync error is not retried on
// the same file (the PostgreSQL fsync lesson).

import { assert } from "../core/assert.js";
import { OverloadError, UnavailableError } from "../core/errors.js";
import type { Wal } from "../wal/wal.js";
import type { BatchState } from "./engine-state.js";
import { WalRecordType } from "./wal-payload.js";

export class WalWriter {
  /** Set once, by the engine's open (the WAL is opened by replay); appends before it are bugs. */
  wal: Wal | null = null;
  /**
   * Appends not yet settled: writes, replica log records, repairs. Each adds itself and removes itself once settled.
   * A flush waits for all of them before it rotates (they may land in a segment it deletes), and so does close();
   * a write or repair is refused while limits.pendingWritesMax of them wait.
   */
  readonly inflight = new Set<Promise<void>>();
  /** The first append failure that was not an overload. Set once, never cleared: every write is refused after it. */
  failed: Error | null = null;
  /** Set by the engine's close(), never cleared. */
  closed = false;
  /** REPAIR records not yet durable (or failed): a repair that finds its points present waits for them. */
  private readonly repairLogs = new Set<Promise<void>>();
  /**
   * A REPAIR record was refused (WAL overload) after its points became visible: until the next flush puts them in a
   * block, every repair logs its own part even when it finds it all present. Set by a refused REPAIR append, cleared
   * by the flush's swap (no repair applies while a flush runs, so every point one made visible is in its block).
   */
  repairsUnlogged = false;

  checkWritable(): void {
    if (this.closed) throw new UnavailableError("the node is shutting down", 1);
    if (this.failed !== null) throw new UnavailableError(`the write-ahead log failed (${this.failed.message}); restart the node`, 5);
  }

  checkRoom(pendingWritesMax: number): void {
    if (this.inflight.size >= pendingWritesMax) throw new OverloadError(`${this.inflight.size} writes are waiting for the WAL (limit ${pendingWritesMax})`);
  }

  /** Resolves once every append in flight now has settled. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  /** Appends an opaque REPLICA_LOG record; resolves once it is durable (group commit). */
  appendReplicaLog(payload: Uint8Array): Promise<void> {
    try {
      this.checkWritable();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const wal = this.wal;
    assert(wal !== null, "replica log before open");
    const p = wal.append(WalRecordType.REPLICA_LOG, payload).then(
      () => undefined,
      (err: Error) => {
        if (!(err instanceof OverloadError)) this.failed = err;
        throw err;
      },
    );
    // A flush waits for these (they may land in a segment it deletes) and so does close().
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.inflight.add(settled);
    void settled.finally(() => this.inflight.delete(settled));
    return p;
  }

  /**
   * Makes a repair durable: its own REPAIR record, or, for a part with nothing new, the records it relies on. `st` is
   * the batch the points were installed as: a write of its id answers duplicate only once they are durable.
   */
  async logRepair(payload: Uint8Array, st: BatchState, registered: boolean, changed: boolean): Promise<void> {
    if (!changed && !this.repairsUnlogged) {
      const outcomes = await Promise.allSettled([...this.repairLogs]);
      if (outcomes.every((o) => o.status === "fulfilled")) return;
      // A record that may have held points found present here failed: log them again (the WAL may refuse, too).
      this.checkWritable();
    }
    const logged = this.appendRepair(payload);
    st.durable = registered ? logged : Promise.all([st.durable, logged]).then(() => undefined);
    st.durable.catch(() => undefined); // whoever awaits it sees the failure; unawaited it is no unhandled rejection
    await logged;
  }

  private appendRepair(payload: Uint8Array): Promise<void> {
    const wal = this.wal;
    assert(wal !== null, "repair before open");
    const p = wal.append(WalRecordType.REPAIR, payload).then(
      () => undefined,
      (err: Error) => {
        if (err instanceof OverloadError) {
          // Its points are visible already and are not taken back (readers and other repairs may rely on them); they
          // stay in the head and reach a block at the next flush. Until then every repair logs its own part.
          this.repairsUnlogged = true;
          throw err;
        }
        this.failed = err;
        throw new UnavailableError("the write-ahead log failed; this node takes no more writes until restarted", 5, { cause: err });
      },
    );
    // A flush and close() wait for it like for any write.
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.inflight.add(settled);
    this.repairLogs.add(p);
    void settled.finally(() => {
      this.inflight.delete(settled);
      this.repairLogs.delete(p);
    });
    return p;
  }
}
