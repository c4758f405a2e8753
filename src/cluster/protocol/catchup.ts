// Catch-up of a replica that was away (docs/protocol.md, "Catch-up"): per
// shard it asks its peers for the batches they hold committed (with HLC, from
// an HLC bound), fetches the bytes of those it lacks, verifies each digest and
// stores them as committed. A replica that started from an empty disk also
// copies the peers' prepared batches and must hear from every peer before it
// votes again (its old votes are gone; see the doc).

import { sha256, toHex } from "../../core/hash.js";
import type { BatchSummary, FetchedBatch, NodeId } from "./messages.js";
import type { ReplicaStore } from "./store.js";

export function digestMatches(f: FetchedBatch): boolean {
  return toHex(sha256(f.batch.bytes)) === f.batch.sha256;
}

/** The ids a peer listed that this replica should fetch: committed there but not here; (rebuilding) prepared there, absent here. */
export function missingFrom(store: ReplicaStore, committed: readonly BatchSummary[], prepared: readonly BatchSummary[]): string[] {
  const out: string[] = [];
  for (const s of committed) {
    const r = store.lookup(s.batchId);
    if (r === null || r.state !== "committed" || r.sha256 !== s.sha256) out.push(s.batchId);
  }
  for (const s of prepared) {
    const r = store.lookup(s.batchId);
    if (r === null || r.state === "fenced" || r.state === "aborted") out.push(s.batchId);
  }
  return out;
}

/** Bookkeeping of one catch-up round. */
export class CatchupRound {
  readonly listed = new Set<NodeId>();
  readonly outstanding = new Set<string>();
  /** Batches this round asked peers for (what this replica lacked when it listed). */
  fetched = 0;
  /** Peers asked to point-sync (their batches' bytes were flushed), with the ids that wait on it. */
  readonly syncing = new Map<NodeId, string[]>();
  /** Peers whose points were copied in this round (point sync reported ok). */
  readonly synced = new Set<NodeId>();
  constructor(
    readonly round: number,
    readonly startedMs: number,
    readonly peersNeeded: number,
  ) {}
  get complete(): boolean {
    return this.listed.size >= this.peersNeeded && this.outstanding.size === 0;
  }
}
