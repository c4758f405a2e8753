// The storage engine as the replication protocol's ReplicaStore (src/cluster/protocol/store.ts).
//
// The replica machine calls the store synchronously; durability is the host's: it appends the machine's `persist`
// records to the engine's WAL as REPLICA_LOG records (Engine.appendReplicaLog, encodeLogRecord) and, on open, the
// engine hands them back in WAL order (EngineOptions.onReplicaLog) to be replayed with applyLogRecord into a fresh
// EngineStore. Point checks, reservations and visibility are the engine's (reserveSync/commitSync/abortSync); this
// store keeps the protocol's per-batch records (state, vote ballot, replicas, fences, abort tombstones) in memory.
//
// A flush deletes old WAL segments: EngineOptions.relog = () => store.relogRecords().map(encodeLogRecord) re-creates
// everything still needed (prepared batches with their votes, fences, abort tombstones). Committed batches are in the
// block; their protocol record is dropped then and they are answered from the engine with ZERO_BALLOT and no replicas.
//
// Differences from MemoryStore: the engine's identity rules apply (an original replaces an inferred point, an
// inferred point yields to an original one, at most 100 conflicting points are reported); `payload()` of a batch
// flushed into a block is null (blocks keep points, not batch bytes: catch-up of flushed batches must go by points);
// setVote on a committed batch is a no-op (replaying a prepare record of a batch since flushed answers "duplicate
// committed" and applyLogRecord then raises its vote).

import { assert } from "../core/assert.js";
import { decodeBatch } from "../core/batch.js";
import { SeriesInternCache } from "../core/series-intern.js";
import { ByteReader, ByteWriter } from "../core/bytes.js";
import { CorruptionError } from "../core/errors.js";
import { fromHex, sha256, toHex } from "../core/hash.js";
import type { ReplicaEngine } from "../storage/replica-api.js";
import { compareBallot, maxBallot, ZERO_BALLOT, type Ballot, type BatchPayload, type FlushedBatch, type NodeId } from "./protocol/messages.js";
import type { BatchState, ReplicaLogRecord, ReplicaStore, ReserveResult, StoredBatch } from "./protocol/store.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";

interface Rec {
  batchId: string;
  sha256: string | null;
  state: BatchState;
  ballot: Ballot;
  replicas: readonly NodeId[];
  hlc: bigint;
  shardId: number;
}

const view = (r: Rec): StoredBatch => ({ batchId: r.batchId, sha256: r.sha256, state: r.state, ballot: r.ballot, replicas: r.replicas, hlc: r.hlc });

export class EngineStore implements ReplicaStore {
  private readonly recs = new Map<string, Rec>();
  // Series of the batches prepared here, by their canonical label bytes: a gateway sends the same series batch after
  // batch, and decoding their labels again each time was most of a replica's work.
  private readonly series = new SeriesInternCache();

  constructor(private readonly engine: ReplicaEngine) {}

  lookup(batchId: string): StoredBatch | null {
    const r = this.recs.get(batchId);
    if (r !== undefined) return view(r);
    const b = this.engine.lookupBatch(batchId);
    if (b === null) return null;
    // Held by the engine without a protocol record: committed and flushed (record dropped at relog, or not replayed).
    return { batchId, sha256: b.sha256, state: b.phase === "committed" ? "committed" : "prepared", ballot: ZERO_BALLOT, replicas: [], hlc: b.hlc };
  }

  tryReserve(batch: BatchPayload, ballot: Ballot, replicas: readonly NodeId[]): ReserveResult {
    return this.reserve(batch, "prepared", ballot, replicas);
  }

  install(batch: BatchPayload, state: "committed" | "prepared", ballot: Ballot, replicas: readonly NodeId[]): ReserveResult {
    return this.reserve(batch, state, ballot, replicas);
  }

  private reserve(p: BatchPayload, state: "prepared" | "committed", ballot: Ballot, replicas: readonly NodeId[]): ReserveResult {
    const r = this.recs.get(p.batchId);
    if (r !== undefined && (r.state === "prepared" || r.state === "committed")) {
      if (r.sha256 !== p.sha256) return { kind: "id-conflict", sha256: r.sha256! };
      return { kind: "duplicate", state: r.state };
    }
    // An aborted or fenced id holds nothing in the engine: it may take content (again), the caller having checked the fence.
    const batch = decodeBatch(p.bytes, `batch ${p.batchId}`, this.series);
    const res = this.engine.reserveSync(batch, p.batchId, p.sha256, p.hlc, p.bytes);
    switch (res.kind) {
      case "id-conflict":
        return res;
      case "conflict":
        return { kind: "conflict", points: res.points, holders: res.holders };
      case "duplicate":
        return { kind: "duplicate", state: res.phase === "committed" ? "committed" : "prepared" };
      case "ok":
        break;
    }
    if (state === "committed") this.engine.commitSync(p.batchId);
    const vote = r === undefined ? ballot : maxBallot(r.ballot, ballot);
    this.recs.set(p.batchId, { batchId: p.batchId, sha256: p.sha256, state, ballot: vote, replicas, hlc: p.hlc, shardId: p.shardId });
    return { kind: "ok" };
  }

  setVote(batchId: string, ballot: Ballot): void {
    const r = this.recs.get(batchId);
    if (r === undefined && this.lookup(batchId)?.state === "committed") return;
    assert(r !== undefined && (r.state === "prepared" || r.state === "committed"), `setVote on ${batchId} that is not prepared`);
    if (r.state === "prepared") r.ballot = maxBallot(r.ballot, ballot);
  }

  fence(batchId: string, ballot: Ballot): void {
    const r = this.recs.get(batchId);
    if (r === undefined) {
      assert(this.engine.lookupBatch(batchId) === null, `fence on ${batchId} held by the engine`);
      this.recs.set(batchId, { batchId, sha256: null, state: "fenced", ballot, replicas: [], hlc: 0n, shardId: 0 });
      return;
    }
    assert(r.state === "fenced" || r.state === "aborted", `fence on ${batchId} in state ${r.state}`);
    r.ballot = maxBallot(r.ballot, ballot);
  }

  commit(batchId: string): void {
    const r = this.recs.get(batchId);
    if (r === undefined) {
      assert(this.lookup(batchId)?.state === "committed", `commit of ${batchId} not held`);
      return;
    }
    assert(r.state === "prepared" || r.state === "committed", `commit of ${batchId} not held`);
    this.engine.commitSync(batchId);
    r.state = "committed";
  }

  abort(batchId: string, ballot: Ballot): void {
    const r = this.recs.get(batchId);
    if (r === undefined) {
      if (this.lookup(batchId)?.state === "committed") return;
      this.recs.set(batchId, { batchId, sha256: null, state: "aborted", ballot, replicas: [], hlc: 0n, shardId: 0 });
      return;
    }
    if (r.state === "committed") return; // a stale abort of an earlier attempt; a later one committed
    if (r.state === "prepared") {
      if (compareBallot(r.ballot, ballot) > 0) return; // a vote above the decision belongs to a later attempt
      this.engine.abortSync(batchId);
    }
    r.state = "aborted";
    r.ballot = maxBallot(r.ballot, ballot);
  }

  list(state: "committed" | "prepared", fromHlc: bigint): StoredBatch[] {
    const out: StoredBatch[] = [];
    for (const r of this.recs.values()) if (r.state === state && r.hlc >= fromHlc) out.push(view(r));
    if (state === "committed")
      for (const b of this.engine.listBatches("committed", fromHlc)) if (!this.recs.has(b.batchId)) out.push(this.lookup(b.batchId)!);
    return out.sort((a, b) => (a.hlc < b.hlc ? -1 : a.hlc > b.hlc ? 1 : a.batchId < b.batchId ? -1 : 1));
  }

  /** The batch as it travels, while its bytes are in the engine's head; null once flushed into a block. */
  payload(batchId: string): BatchPayload | null {
    const s = this.lookup(batchId);
    if (s === null || (s.state !== "prepared" && s.state !== "committed")) return null;
    const bytes = this.engine.batchBytes(batchId);
    const info = this.engine.lookupBatch(batchId);
    if (bytes === null || info === null) return null;
    return { batchId, shardId: this.recs.get(batchId)?.shardId ?? info.shardId, sha256: info.sha256, hlc: info.hlc, bytes };
  }

  /** A committed batch flushed into a block (its bytes are gone): its description, for a peer to adopt its id. */
  flushedMeta(batchId: string): FlushedBatch | null {
    const s = this.lookup(batchId);
    if (s === null || s.state !== "committed" || this.payload(batchId) !== null) return null;
    const b = this.engine.lookupBatch(batchId);
    if (b === null) return null;
    return { batchId, sha256: b.sha256, hlc: b.hlc, shardId: b.shardId, sampleCount: b.sampleCount, origin: b.origin, inference: b.inference };
  }

  /**
   * For a flush (EngineOptions.relog): the records that re-create this store's state once the WAL segments before
   * the flush are gone, in the order to replay them. Committed batches go into the block, so their records are
   * dropped here (lookup answers them from the engine afterwards, with ZERO_BALLOT and no replicas).
   */
  relogRecords(): ReplicaLogRecord[] {
    const out: ReplicaLogRecord[] = [];
    for (const [id, r] of [...this.recs]) {
      switch (r.state) {
        case "committed":
          this.recs.delete(id);
          break;
        case "prepared": {
          const batch = this.payload(id);
          assert(batch !== null, `prepared batch ${id} without bytes`);
          out.push({ type: "prepare", batch, ballot: r.ballot, replicas: r.replicas });
          break;
        }
        case "fenced":
          out.push({ type: "fence", batchId: id, ballot: r.ballot });
          break;
        case "aborted":
          out.push({ type: "abort", batchId: id, ballot: r.ballot });
          break;
      }
    }
    return out;
  }
}

// ---- log record codec (docs/format/replication.md, "Replica log records") ----

const LOG_VERSION = 1;
const TAG = Object.freeze({ prepare: 1, vote: 2, fence: 3, commit: 4, abort: 5, install: 6, rebuilt: 7 });

function i64(v: bigint, what: string): bigint {
  assert(v >= INT64_MIN && v <= INT64_MAX, `${what} ${v} out of the int64 range of the replica log`);
  return v;
}

function writeBallot(w: ByteWriter, b: Ballot): void {
  w.varint64(i64(b.t, "ballot time")).str(b.node);
}

function writePayload(w: ByteWriter, p: BatchPayload): void {
  assert(Number.isSafeInteger(p.shardId) && p.shardId >= 0, `shard id ${p.shardId}`);
  w.str(p.batchId).uvarint(p.shardId).bytes(fromHex(p.sha256)).varint64(i64(p.hlc, "hlc")).lenBytes(p.bytes);
}

function writeReplicas(w: ByteWriter, rs: readonly NodeId[]): void {
  w.uvarint(rs.length);
  for (const r of rs) w.str(r);
}

export function encodeLogRecord(rec: ReplicaLogRecord): Uint8Array {
  const size = rec.type === "prepare" ? rec.batch.bytes.length : rec.type === "install" ? rec.fetched.batch.bytes.length : 0;
  const w = new ByteWriter(size + 128);
  w.u8(LOG_VERSION).u8(TAG[rec.type]);
  switch (rec.type) {
    case "prepare":
      writePayload(w, rec.batch);
      writeBallot(w, rec.ballot);
      writeReplicas(w, rec.replicas);
      break;
    case "vote":
    case "fence":
    case "abort":
      w.str(rec.batchId);
      writeBallot(w, rec.ballot);
      break;
    case "commit":
      w.str(rec.batchId);
      break;
    case "install":
      writePayload(w, rec.fetched.batch);
      w.u8(rec.fetched.state === "committed" ? 1 : 2);
      writeBallot(w, rec.fetched.ballot);
      writeReplicas(w, rec.fetched.replicas);
      break;
    case "rebuilt":
      break;
  }
  return w.finish();
}

function readBallot(r: ByteReader): Ballot {
  const t = r.varint64();
  return { t, node: r.str() };
}

function readPayload(r: ByteReader, source: string): BatchPayload {
  const batchId = r.str();
  const shardId = r.uvarint();
  const digest = toHex(r.bytes(32));
  const hlc = r.varint64();
  const bytes = r.lenBytes();
  if (toHex(sha256(bytes)) !== digest) throw new CorruptionError(`replica log: batch ${batchId}: SHA-256 mismatch`, source, 0);
  return { batchId, shardId, sha256: digest, hlc, bytes };
}

function readReplicas(r: ByteReader): NodeId[] {
  const n = r.uvarint();
  const out: NodeId[] = [];
  for (let i = 0; i < n; i++) out.push(r.str());
  return out;
}

/** Decodes a REPLICA_LOG payload; damage is a CorruptionError naming `source`. */
export function decodeLogRecord(payload: Uint8Array, source: string): ReplicaLogRecord {
  const r = new ByteReader(payload, source);
  const version = r.u8();
  if (version !== LOG_VERSION) throw new CorruptionError(`unknown replica log version ${version}`, source, 0);
  const tag = r.u8();
  let rec: ReplicaLogRecord;
  switch (tag) {
    case TAG.prepare: {
      const batch = readPayload(r, source);
      const ballot = readBallot(r);
      rec = { type: "prepare", batch, ballot, replicas: readReplicas(r) };
      break;
    }
    case TAG.vote:
    case TAG.fence:
    case TAG.abort: {
      const batchId = r.str();
      const ballot = readBallot(r);
      rec = { type: tag === TAG.vote ? "vote" : tag === TAG.fence ? "fence" : "abort", batchId, ballot };
      break;
    }
    case TAG.commit:
      rec = { type: "commit", batchId: r.str() };
      break;
    case TAG.install: {
      const batch = readPayload(r, source);
      const s = r.u8();
      if (s !== 1 && s !== 2) throw new CorruptionError(`replica log: install state ${s}`, source, r.offset - 1);
      const ballot = readBallot(r);
      rec = { type: "install", fetched: { batch, state: s === 1 ? "committed" : "prepared", ballot, replicas: readReplicas(r) } };
      break;
    }
    case TAG.rebuilt:
      rec = { type: "rebuilt" };
      break;
    default:
      throw new CorruptionError(`unknown replica log record tag ${tag}`, source, 1);
  }
  if (r.remaining !== 0) throw new CorruptionError(`${r.remaining} trailing bytes in replica log record`, source, r.offset);
  return rec;
}
