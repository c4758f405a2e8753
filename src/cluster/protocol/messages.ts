// Messages of the replication protocol (docs/protocol.md). Plain data: every
// field is serialisable (bigints stay bigint in memory; the wire encoding
// lives elsewhere). Every message carries the sender's node id, its hybrid
// logical clock stamp (receivers observe it) and the shard it is about.

import type { ConflictingPoint } from "../../core/errors.js";

export type NodeId = string;

/**
 * A ballot names one attempt to decide a batch (a gateway's write, or a
 * replica's recovery round). Unique: a node's HLC is strictly increasing and
 * the node id breaks ties between nodes. Ordered by (t, node).
 */
export interface Ballot {
  readonly t: bigint;
  readonly node: NodeId;
}

export const ZERO_BALLOT: Ballot = Object.freeze({ t: 0n, node: "" });

export function compareBallot(a: Ballot, b: Ballot): number {
  if (a.t !== b.t) return a.t < b.t ? -1 : 1;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}
export const ballotEq = (a: Ballot, b: Ballot): boolean => compareBallot(a, b) === 0;
export const maxBallot = (a: Ballot, b: Ballot): Ballot => (compareBallot(a, b) >= 0 ? a : b);
export const ballotText = (b: Ballot): string => `${b.t}@${b.node}`;

/** A canonical batch as it travels: its bytes (docs/format/batch.md) and what names it. */
export interface BatchPayload {
  readonly batchId: string;
  readonly shardId: number;
  readonly sha256: string; // hex digest of bytes
  readonly hlc: bigint; // the gateway's stamp for the batch
  readonly bytes: Uint8Array;
}

interface Base {
  readonly from: NodeId;
  readonly hlc: bigint; // sender's HLC when sent
  readonly shardId: number;
}

/** Gateway → replica: hold this batch durably and vote for committing it at `ballot`. */
export interface PrepareMsg extends Base {
  readonly type: "prepare";
  readonly batch: BatchPayload;
  readonly ballot: Ballot;
  readonly replicas: readonly NodeId[]; // the shard's replica set (recovery asks these)
}

export type PrepareAnswer =
  | { readonly kind: "prepared" } // durable, vote at the request's ballot
  | { readonly kind: "duplicate"; readonly state: "prepared" | "committed" } // already held; "prepared" = durable vote at the request's ballot
  | { readonly kind: "conflict"; readonly points: readonly ConflictingPoint[] } // refused for good; fenced at the ballot
  | { readonly kind: "id-conflict"; readonly sha256: string } // the id holds other content; fenced
  | { readonly kind: "fenced"; readonly ballot: Ballot } // promised away: refuses ballots <= this one
  | { readonly kind: "voted-higher"; readonly ballot: Ballot } // holds it prepared at a higher ballot (another attempt)
  | { readonly kind: "unavailable"; readonly reason: string }; // cannot vote now (rebuilding after data loss)

export interface PrepareReplyMsg extends Base {
  readonly type: "prepare-reply";
  readonly batchId: string;
  readonly ballot: Ballot; // the request's ballot
  readonly answer: PrepareAnswer;
}

/** Decision: commit. Sent by a gateway or a recovering replica. No fsync needed at the receiver. */
export interface CommitMsg extends Base {
  readonly type: "commit";
  readonly batchId: string;
  readonly sha256: string;
  readonly ballot: Ballot;
}

export interface CommitReplyMsg extends Base {
  readonly type: "commit-reply";
  readonly batchId: string;
  readonly ballot: Ballot;
  readonly committed: boolean; // false: the receiver does not hold the batch (it will fetch it)
}

/** Decision: abort every vote at or below `ballot` (a majority has fenced at `ballot`). */
export interface AbortMsg extends Base {
  readonly type: "abort";
  readonly batchId: string;
  readonly sha256: string;
  readonly ballot: Ballot;
}

/** Recovery: a replica holding a prepared batch of unknown fate asks its peers, at a fresh ballot. */
export interface StatusMsg extends Base {
  readonly type: "status";
  readonly batchId: string;
  readonly sha256: string;
  readonly ballot: Ballot;
}

export type StatusAnswer =
  | { readonly kind: "committed" }
  | { readonly kind: "prepared"; readonly ballot: Ballot } // vote raised to the request's ballot, or higher
  | { readonly kind: "fenced"; readonly ballot: Ballot } // no vote; promised to refuse ballots <= this one
  | { readonly kind: "unknown" }; // rebuilding after data loss: abstains

export interface StatusReplyMsg extends Base {
  readonly type: "status-reply";
  readonly batchId: string;
  readonly ballot: Ballot; // the request's ballot
  readonly answer: StatusAnswer;
}

export interface BatchSummary {
  readonly batchId: string;
  readonly sha256: string;
  readonly hlc: bigint;
}

/** Catch-up: list your committed (and, for a rebuilding replica, prepared) batches of the shard. */
export interface CatchupListMsg extends Base {
  readonly type: "catchup-list";
  readonly round: number;
  readonly includePrepared: boolean;
  readonly fromHlc: bigint; // inclusive lower bound of batch HLCs wanted (0n = everything)
}

export interface CatchupListReplyMsg extends Base {
  readonly type: "catchup-list-reply";
  readonly round: number;
  readonly committed: readonly BatchSummary[];
  readonly prepared: readonly (BatchSummary & { readonly ballot: Ballot })[];
}

export interface FetchMsg extends Base {
  readonly type: "fetch";
  readonly round: number;
  readonly batchIds: readonly string[];
}

export interface FetchedBatch {
  readonly batch: BatchPayload;
  readonly state: "committed" | "prepared";
  readonly ballot: Ballot;
  readonly replicas: readonly NodeId[];
}

/**
 * A batch committed at the sender whose bytes it no longer has (flushed into a block, which keeps points, not batch
 * bytes): its points travel by point sync instead, and this describes the batch so the fetcher can adopt its id.
 */
export interface FlushedBatch extends BatchSummary {
  readonly shardId: number;
  readonly sampleCount: number;
  readonly origin: "original" | "inferred";
  readonly inference: string | null;
}

export interface FetchReplyMsg extends Base {
  readonly type: "fetch-reply";
  readonly round: number;
  readonly batches: readonly FetchedBatch[];
  readonly flushed: readonly FlushedBatch[];
}

export type ReplicaInbound = PrepareMsg | CommitMsg | AbortMsg | StatusMsg | StatusReplyMsg | CatchupListMsg | CatchupListReplyMsg | FetchMsg | FetchReplyMsg;
export type GatewayInbound = PrepareReplyMsg | CommitReplyMsg;
export type Message = ReplicaInbound | GatewayInbound;

/** Which machine on a node consumes a message. */
export function isGatewayMessage(m: Message): m is GatewayInbound {
  return m.type === "prepare-reply" || m.type === "commit-reply";
}
