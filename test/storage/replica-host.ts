// A replication host for storage tests, wired to the engine as src/cli/cluster-node.ts wires it: the replica
// primitives decide (reserveSync, commitSync, abortSync), each decision is made durable as a REPLICA_LOG record
// (appendReplicaLog), the records are replayed through the same primitives at open (onReplicaLog), and a flush
// re-logs the undecided batches before the old segments go (relog). The record format is this file's own; the
// cluster's (with ballots and replicas) is src/cluster/engine-store.ts's.

import { pino } from "pino";
import { Registry } from "prom-client";
import { decodeBatch, encodeWithDigest, type Batch } from "../../src/core/batch.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { Engine, type BatchInfo, type EngineOptions, type ReserveSyncResult } from "../../src/storage/engine.js";

export interface ReplicaHost {
  readonly engine: Engine;
  /** reserveSync; when it reserved, resolves once its record is durable. */
  prepare(batch: Batch, batchId: string, hlc: bigint): Promise<ReserveSyncResult>;
  /** commitSync, then its record durable. */
  commit(batchId: string): Promise<void>;
  /** abortSync, then its record durable. */
  abort(batchId: string): Promise<void>;
  /** The prepared batches, by id. */
  undecided(): BatchInfo[];
}

/** reserveSync of a batch given as a Batch (bytes and digest computed here), without a record. */
export function reserve(e: Engine, batch: Batch, batchId: string, hlc: bigint): ReserveSyncResult {
  const { bytes, sha256 } = encodeWithDigest(batch);
  return e.reserveSync(batch, batchId, sha256, hlc, bytes);
}

type Rec = { op: "prepare"; batchId: string; sha256: string; hlc: string } | { op: "commit" | "abort"; batchId: string };

function encode(rec: Rec, bytes: Uint8Array = new Uint8Array(0)): Uint8Array {
  const head = Buffer.from(`${JSON.stringify(rec)}\n`);
  return Buffer.concat([head, bytes]);
}

function decode(payload: Uint8Array): { rec: Rec; bytes: Uint8Array } {
  const nl = payload.indexOf(0x0a);
  return { rec: JSON.parse(Buffer.from(payload.subarray(0, nl)).toString()) as Rec, bytes: payload.slice(nl + 1) };
}

export async function openHost(dataDir: string, extra: Partial<EngineOptions> = {}): Promise<ReplicaHost> {
  // The engine's hooks need the engine: bound once it exists.
  let engine: Engine | null = null;
  const e = (): Engine => engine!;
  const prepareRecord = (b: BatchInfo): Uint8Array =>
    encode({ op: "prepare", batchId: b.batchId, sha256: b.sha256, hlc: b.hlc.toString() }, e().batchBytes(b.batchId)!);
  engine = new Engine({
    dataDir,
    limits: DEFAULT_LIMITS,
    retentionMs: null,
    acceptDataLoss: false,
    log: pino({ level: "silent" }),
    metrics: new Registry(),
    ...extra,
    onReplicaLog: (payload) => {
      const { rec, bytes } = decode(payload);
      if (rec.op === "prepare") {
        const r = e().reserveSync(decodeBatch(bytes, "replica log"), rec.batchId, rec.sha256, BigInt(rec.hlc), bytes);
        if (r.kind !== "ok" && r.kind !== "duplicate") throw new Error(`replay of ${rec.batchId}: ${r.kind}`);
        return;
      }
      // A decision about a batch no longer prepared here (flushed after its commit, or released) changes nothing.
      if (e().lookupBatch(rec.batchId)?.phase !== "prepared") return;
      if (rec.op === "commit") e().commitSync(rec.batchId);
      else e().abortSync(rec.batchId);
    },
    relog: () => e().listBatches("prepared", 0n).map(prepareRecord),
  });
  await engine.open();
  const host: ReplicaHost = {
    engine,
    async prepare(batch, batchId, hlc) {
      const r = reserve(e(), batch, batchId, hlc);
      if (r.kind === "ok") await e().appendReplicaLog(prepareRecord(e().lookupBatch(batchId)!));
      return r;
    },
    async commit(batchId) {
      e().commitSync(batchId);
      await e().appendReplicaLog(encode({ op: "commit", batchId }));
    },
    async abort(batchId) {
      e().abortSync(batchId);
      await e().appendReplicaLog(encode({ op: "abort", batchId }));
    },
    undecided: () => e().listBatches("prepared", 0n).sort((a, b) => (a.batchId < b.batchId ? -1 : 1)),
  };
  return host;
}
