// What a replica needs from its storage, as a synchronous interface: the
// replica machine calls it for the per-batch atomic checks (the real engine's
// checks are synchronous and reserve points in its head) and emits log records
// (effects) for the durable parts. The host appends those records to the WAL in
// the order emitted and, on restart, replays the durable ones through
// `applyLogRecord` (or its own equivalent) before building the machine again.
//
// MemoryStore is the in-memory implementation for the simulator and tests: one
// value per (series, timestamp); an identical value is a no-op (origins ignored).

import { assert } from "../../core/assert.js";
import { decodeBatch, sameValue, type Batch } from "../../core/batch.js";
import type { ConflictingPoint } from "../../core/errors.js";
import { compareBallot, maxBallot, type Ballot, type BatchPayload, type BatchSummary, type FetchedBatch, type FlushedBatch, type NodeId } from "./messages.js";

/**
 * prepared: holds the content durably, points reserved, votes "commit" at `ballot`.
 * committed: decided and visible.
 * aborted: decided "abort" for every vote at or below `ballot`; points released.
 * fenced: promised to refuse prepares at or below `ballot` (a vote "abort"); may hold no content (sha256 null).
 */
export type BatchState = "prepared" | "committed" | "aborted" | "fenced";

export interface StoredBatch {
  readonly batchId: string;
  readonly sha256: string | null; // null: a fence for an id never seen with content
  readonly state: BatchState;
  readonly ballot: Ballot;
  readonly replicas: readonly NodeId[];
  readonly hlc: bigint;
}

export type ReserveResult =
  | { readonly kind: "ok" }
  | { readonly kind: "conflict"; readonly points: readonly ConflictingPoint[]; readonly holders: readonly string[] }
  | { readonly kind: "id-conflict"; readonly sha256: string }
  | { readonly kind: "duplicate"; readonly state: "prepared" | "committed" };

export interface ReplicaStore {
  lookup(batchId: string): StoredBatch | null;
  /**
   * Atomically: id known with another digest → id-conflict; same content prepared/committed → duplicate;
   * a point holding a different value in a prepared or committed batch → conflict (points and holding batches);
   * else reserve the points and record the batch as prepared with a vote at `ballot`.
   * Allowed over an absent, fenced or aborted record (the caller checks the ballot against fences).
   */
  tryReserve(batch: BatchPayload, ballot: Ballot, replicas: readonly NodeId[]): ReserveResult;
  /** Catch-up: stores a batch copied from a peer as committed (or prepared with `ballot`); same checks as tryReserve. */
  install(batch: BatchPayload, state: "committed" | "prepared", ballot: Ballot, replicas: readonly NodeId[]): ReserveResult;
  /** Raises the vote of a prepared batch. */
  setVote(batchId: string, ballot: Ballot): void;
  /** Records (or raises) a fence on a batch id that holds no vote. */
  fence(batchId: string, ballot: Ballot): void;
  /** Marks a prepared batch committed: it becomes visible. */
  commit(batchId: string): void;
  /** Decision abort at `ballot`: a prepared batch with a vote at or below it releases its points. No-op on committed. */
  abort(batchId: string, ballot: Ballot): void;
  /** Batches of the shard in a state, for catch-up and recovery (HLC range inclusive). */
  list(state: "committed" | "prepared", fromHlc: bigint): StoredBatch[];
  /** The bytes of a prepared or committed batch. */
  payload(batchId: string): BatchPayload | null;
  /** A committed batch whose bytes are gone (flushed into a block): what a peer needs to adopt its id; else null. */
  flushedMeta(batchId: string): FlushedBatch | null;
}

/** What the replica machine appends to its WAL. `sync` says whether the reply waits for fsync. */
export type ReplicaLogRecord =
  | { readonly type: "prepare"; readonly batch: BatchPayload; readonly ballot: Ballot; readonly replicas: readonly NodeId[] }
  | { readonly type: "vote"; readonly batchId: string; readonly ballot: Ballot }
  | { readonly type: "fence"; readonly batchId: string; readonly ballot: Ballot }
  | { readonly type: "commit"; readonly batchId: string }
  | { readonly type: "abort"; readonly batchId: string; readonly ballot: Ballot }
  | { readonly type: "install"; readonly fetched: FetchedBatch }
  /** A replica that started from an empty disk has rebuilt from all its peers and may vote. */
  | { readonly type: "rebuilt" };

/** Replays one durable log record into a store (restart). Returns false for "rebuilt" bookkeeping only. */
export function applyLogRecord(store: ReplicaStore, rec: ReplicaLogRecord): void {
  switch (rec.type) {
    case "prepare": {
      const r = store.tryReserve(rec.batch, rec.ballot, rec.replicas);
      // A prepare was logged only after its checks passed against everything logged before it.
      assert(r.kind === "ok" || r.kind === "duplicate", `replay: prepare of ${rec.batch.batchId} no longer fits (${r.kind})`);
      if (r.kind === "duplicate") store.setVote(rec.batch.batchId, rec.ballot);
      return;
    }
    case "vote":
      if (store.lookup(rec.batchId)?.state === "prepared") store.setVote(rec.batchId, rec.ballot);
      return;
    case "fence":
      store.fence(rec.batchId, rec.ballot);
      return;
    case "commit":
      if (store.lookup(rec.batchId)?.state === "prepared") store.commit(rec.batchId);
      return;
    case "abort":
      store.abort(rec.batchId, rec.ballot);
      return;
    case "install": {
      const f = rec.fetched;
      const known = store.lookup(f.batch.batchId);
      if (known?.state === "committed") return;
      if (known?.state === "prepared") {
        if (f.state === "committed") store.commit(f.batch.batchId);
        return;
      }
      const r = store.install(f.batch, f.state, f.ballot, f.replicas);
      assert(r.kind === "ok", `replay: install of ${f.batch.batchId} no longer fits (${r.kind})`);
      return;
    }
    case "rebuilt":
      return;
  }
}

interface Rec {
  batchId: string;
  sha256: string | null;
  state: BatchState;
  ballot: Ballot;
  replicas: readonly NodeId[];
  hlc: bigint;
  payload: BatchPayload | null;
  batch: Batch | null;
}

interface Slot {
  value: number;
  holders: Set<string>; // prepared or committed batches holding this value
}

const pointKey = (series: string, t: bigint): string => `${series}\u0000${t}`;

export class MemoryStore implements ReplicaStore {
  private readonly recs = new Map<string, Rec>();
  private readonly points = new Map<string, Slot>();

  lookup(batchId: string): StoredBatch | null {
    const r = this.recs.get(batchId);
    if (r === undefined) return null;
    return { batchId: r.batchId, sha256: r.sha256, state: r.state, ballot: r.ballot, replicas: r.replicas, hlc: r.hlc };
  }

  tryReserve(batch: BatchPayload, ballot: Ballot, replicas: readonly NodeId[]): ReserveResult {
    return this.reserve(batch, "prepared", ballot, replicas);
  }

  install(batch: BatchPayload, state: "committed" | "prepared", ballot: Ballot, replicas: readonly NodeId[]): ReserveResult {
    return this.reserve(batch, state, ballot, replicas);
  }

  private reserve(p: BatchPayload, state: "prepared" | "committed", ballot: Ballot, replicas: readonly NodeId[]): ReserveResult {
    const r = this.recs.get(p.batchId);
    const held = r !== undefined && (r.state === "prepared" || r.state === "committed");
    if (held && r.sha256 !== p.sha256) return { kind: "id-conflict", sha256: r.sha256! };
    if (held) return { kind: "duplicate", state: r.state as "prepared" | "committed" };
    // An aborted or fenced id holds nothing: it may take content (again), the caller having checked the fence ballot.
    const batch = r !== undefined && r.batch !== null && r.sha256 === p.sha256 ? r.batch : decodeBatch(p.bytes, `batch ${p.batchId}`);
    const points: ConflictingPoint[] = [];
    const holders = new Set<string>();
    for (const s of batch.series) {
      for (let i = 0; i < s.timestampsNs.length; i++) {
        const slot = this.points.get(pointKey(s.key, s.timestampsNs[i]!));
        if (slot === undefined || sameValue(slot.value, s.values[i]!)) continue;
        points.push({ series: s.key, timestampNs: s.timestampsNs[i]!.toString(), storedValue: slot.value, offeredValue: s.values[i]! });
        for (const h of slot.holders) holders.add(h);
      }
    }
    if (points.length > 0) return { kind: "conflict", points, holders: [...holders].sort() };
    for (const s of batch.series) {
      for (let i = 0; i < s.timestampsNs.length; i++) {
        const k = pointKey(s.key, s.timestampsNs[i]!);
        const slot = this.points.get(k);
        if (slot === undefined) this.points.set(k, { value: s.values[i]!, holders: new Set([p.batchId]) });
        else slot.holders.add(p.batchId);
      }
    }
    const prevBallot = r?.ballot;
    const vote = prevBallot === undefined ? ballot : maxBallot(prevBallot, ballot);
    this.recs.set(p.batchId, { batchId: p.batchId, sha256: p.sha256, state, ballot: vote, replicas, hlc: p.hlc, payload: p, batch });
    return { kind: "ok" };
  }

  setVote(batchId: string, ballot: Ballot): void {
    const r = this.recs.get(batchId);
    assert(r !== undefined && r.state === "prepared", `setVote on ${batchId} that is not prepared`);
    r.ballot = maxBallot(r.ballot, ballot);
  }

  fence(batchId: string, ballot: Ballot): void {
    const r = this.recs.get(batchId);
    if (r === undefined) {
      this.recs.set(batchId, { batchId, sha256: null, state: "fenced", ballot, replicas: [], hlc: 0n, payload: null, batch: null });
      return;
    }
    assert(r.state === "fenced" || r.state === "aborted", `fence on ${batchId} in state ${r.state}`);
    r.ballot = maxBallot(r.ballot, ballot);
  }

  commit(batchId: string): void {
    const r = this.recs.get(batchId);
    assert(r !== undefined && (r.state === "prepared" || r.state === "committed"), `commit of ${batchId} not held`);
    r.state = "committed";
  }

  abort(batchId: string, ballot: Ballot): void {
    const r = this.recs.get(batchId);
    if (r === undefined) {
      this.recs.set(batchId, { batchId, sha256: null, state: "aborted", ballot, replicas: [], hlc: 0n, payload: null, batch: null });
      return;
    }
    if (r.state === "committed") return; // a stale abort of an earlier attempt; a later one committed
    if (r.state === "prepared") {
      if (compareBallot(r.ballot, ballot) > 0) return; // a vote above the decision belongs to a later attempt
      this.release(r);
    }
    r.state = "aborted";
    r.ballot = maxBallot(r.ballot, ballot);
  }

  private release(r: Rec): void {
    assert(r.batch !== null, "release of a batch without content");
    for (const s of r.batch.series) {
      for (let i = 0; i < s.timestampsNs.length; i++) {
        const k = pointKey(s.key, s.timestampsNs[i]!);
        const slot = this.points.get(k);
        if (slot === undefined) continue;
        slot.holders.delete(r.batchId);
        if (slot.holders.size === 0) this.points.delete(k);
      }
    }
  }

  list(state: "committed" | "prepared", fromHlc: bigint): StoredBatch[] {
    const out: StoredBatch[] = [];
    for (const r of this.recs.values())
      if (r.state === state && r.hlc >= fromHlc) out.push(this.lookup(r.batchId)!);
    return out.sort((a, b) => (a.hlc < b.hlc ? -1 : a.hlc > b.hlc ? 1 : a.batchId < b.batchId ? -1 : 1));
  }

  payload(batchId: string): BatchPayload | null {
    const r = this.recs.get(batchId);
    return r !== undefined && (r.state === "prepared" || r.state === "committed") ? r.payload : null;
  }

  /** Never: this store keeps every batch's bytes. */
  flushedMeta(_batchId: string): FlushedBatch | null {
    return null;
  }

  /** Test/simulator view: every committed point as key → value, and which batch ids are committed. */
  committedPoints(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.recs.values()) {
      if (r.state !== "committed") continue;
      for (const s of r.batch!.series)
        for (let i = 0; i < s.timestampsNs.length; i++) out.set(pointKey(s.key, s.timestampsNs[i]!), s.values[i]!);
    }
    return out;
  }

  summaries(state: "committed" | "prepared"): BatchSummary[] {
    return this.list(state, 0n).map((r) => ({ batchId: r.batchId, sha256: r.sha256!, hlc: r.hlc }));
  }
}
