// The checker: run after healing the network, restarting everyone and letting
// recovery and catch-up quiesce. Returns the violations found (empty = pass).

import { decodeBatch, sameValue } from "../../../src/core/batch.js";
import type { SimResult } from "./world.js";

export function check(r: SimResult): string[] {
  const bad: string[] = [];
  if (!r.quiescent) {
    const why = r.nodes.map(
      (n) =>
        `${n.id}: ${n.alive ? "up" : "down"}${n.replica.isUpToDate ? "" : " not-up-to-date"}${n.replica.isRebuilding ? " rebuilding" : ""} undecided=[${n.store
          .list("prepared", 0n)
          .map((b) => b.batchId)
          .join(",")}] committed=${n.store.list("committed", 0n).length} gateway-inflight=${n.gateway.inflight}`,
    );
    const pending = r.ops.filter((o) => o.outcome === "pending").map((o) => `op${o.opId}`);
    bad.push(`no quiescence by t=${r.endMs} ms; pending ops [${pending.join(",")}]; ${why.join("; ")}`);
  }
  const committedBy = r.nodes.map((n) => new Map(n.store.summaries("committed").map((s) => [s.batchId, s.sha256] as const)));

  // 1. No acked batch lost: committed, with its digest, on every replica.
  for (const op of r.ops) {
    if (op.outcome !== "acked") continue;
    r.nodes.forEach((n, i) => {
      const sha = committedBy[i]!.get(op.batch.batchId);
      if (sha !== op.batch.sha256) bad.push(`acked ${op.batch.batchId} (op${op.opId}) not committed on ${n.id}${sha === undefined ? "" : " (other digest)"}`);
    });
  }

  // 2. No two values committed for one point on any replica.
  for (const n of r.nodes) {
    const seen = new Map<string, { v: number; id: string }>();
    for (const s of n.store.summaries("committed")) {
      const p = n.store.payload(s.batchId)!;
      for (const ser of decodeBatch(p.bytes).series)
        for (let i = 0; i < ser.timestampsNs.length; i++) {
          const k = `${ser.key}@${ser.timestampsNs[i]}`;
          const prev = seen.get(k);
          const v = ser.values[i]!;
          if (prev !== undefined && !sameValue(prev.v, v)) bad.push(`${n.id}: point ${k} committed as ${prev.v} (${prev.id}) and ${v} (${s.batchId})`);
          else if (prev === undefined) seen.set(k, { v, id: s.batchId });
        }
    }
  }

  // 3. Replicas converge: identical committed sets.
  const canon = committedBy.map((m) => [...m.entries()].sort().map(([k, v]) => `${k}:${v.slice(0, 8)}`).join(" "));
  for (let i = 1; i < canon.length; i++)
    if (canon[i] !== canon[0]) bad.push(`replicas diverge: ${r.nodes[0]!.id}=[${canon[0]}] ${r.nodes[i]!.id}=[${canon[i]}]`);

  // 4. A batch refused with 409 holds no committed points, unless another request for the same batch id (a twin or an
  //    earlier attempt of the same client) may have stored it (an ack, a 503, or no answer).
  for (const op of r.ops) {
    if (op.outcome !== "conflict") continue;
    const others = r.ops.filter((o) => o !== op && o.batch.batchId === op.batch.batchId && o.batch.sha256 === op.batch.sha256);
    if (others.some((o) => o.outcome !== "conflict") || op.attempts > 1) continue;
    r.nodes.forEach((n, i) => {
      if (committedBy[i]!.get(op.batch.batchId) === op.batch.sha256) bad.push(`409'd ${op.batch.batchId} (op${op.opId}) is committed on ${n.id}`);
    });
  }
  return bad;
}
