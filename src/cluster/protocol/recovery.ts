// The recovery rule as a pure decision (docs/protocol.md, "Recovery"). A
// replica holding a prepared batch of unknown fate raises its own vote to a
// fresh ballot r and asks its peers for their status at r. A peer that holds
// the batch prepared raises its vote to r; one that holds nothing fences at r
// (promises to refuse prepares at ballots <= r). Both are fsynced before the
// answer. Then:
//   committed anywhere                 → commit
//   votes at exactly r on a majority   → commit
//   fences at exactly r on a majority  → abort every vote <= r
//   an answer at a higher ballot       → start again later, above it
//   otherwise                          → wait (retry after a timeout)

import { ballotEq, compareBallot, type Ballot, type NodeId, type StatusAnswer } from "./messages.js";

export type RecoveryDecision = "commit" | "abort" | "higher" | "wait";

export function majorityOf(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}

/**
 * `answers` holds the peers' answers and the asker's own (a "prepared" at r: it raised its vote before asking).
 * `replicas` is the shard's replica set size.
 */
export function decideRecovery(r: Ballot, answers: ReadonlyMap<NodeId, StatusAnswer>, replicas: number): RecoveryDecision {
  const maj = majorityOf(replicas);
  let votes = 0;
  let fences = 0;
  let higher = false;
  for (const a of answers.values()) {
    if (a.kind === "committed") return "commit";
    if (a.kind === "prepared") {
      if (ballotEq(a.ballot, r)) votes++;
      else if (compareBallot(a.ballot, r) > 0) higher = true;
    } else if (a.kind === "fenced") {
      if (ballotEq(a.ballot, r)) fences++;
      else if (compareBallot(a.ballot, r) > 0) higher = true;
    }
  }
  if (votes >= maj) return "commit";
  if (fences >= maj) return "abort";
  if (higher) return "higher";
  return "wait";
}
