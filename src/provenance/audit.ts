// The provenance audit: stored points checked against the canonical bytes of
// the batches they name (docs/provenance.md, "Audit and repair").
//
// CRCs and block digests catch a flipped bit, but not a rewrite that
// recomputes them. A stored point can only be proved against its signed
// batch: the archive holds the batch's bytes, whose SHA-256 the Merkle log
// fixes. A block whose points differ from their batches is damaged as surely
// as one with a bad CRC, and is repaired the same way (detached, its points
// copied back from the replicas).

import { decodeBatch, sameValue } from "../core/batch.js";
import { sha256, toHex } from "../core/hash.js";
import { BlockReader } from "../storage/block-io.js";

/** Mismatches described per block (the rest are counted). */
const EXAMPLES_MAX = 10;

export interface AuditMismatch {
  batchId: string;
  series: string;
  tsNs: bigint;
  stored: number;
  /** The value the batch holds at that point; null when the batch has no such point. */
  signed: number | null;
}

export interface BlockAudit {
  path: string;
  points: number;
  /** Points whose batch's bytes were found and checked. */
  checked: number;
  /** Batches whose bytes could not be had (not archived here or on any peer reachable): their points are unchecked. */
  batchesUnchecked: string[];
  /** Batches whose archived bytes do not match the digest they must have. */
  batchesBadBytes: string[];
  mismatches: number;
  examples: AuditMismatch[];
}

export interface AuditSource {
  /** These batches' canonical bytes (archived, rebuilt from points stored here, else a peer's); absent: none to be had. */
  batchBytes(batchIds: readonly string[]): Promise<Map<string, Uint8Array>>;
  /** The digest the batch must have: the signed leaf's when the batch is in the log, else what storage recorded. */
  expectedSha256(batchId: string, stored: string): Promise<string>;
}

/** Checks every point of one block file against its batches. Reads the file through its own handle. */
export async function auditBlock(path: string, src: AuditSource): Promise<BlockAudit> {
  const reader = await BlockReader.open(path);
  try {
    const out: BlockAudit = { path, points: 0, checked: 0, batchesUnchecked: [], batchesBadBytes: [], mismatches: 0, examples: [] };
    const table = reader.batches();
    // Per batch-table index: series key -> (timestamp -> value) of the batch, or null when unchecked.
    const content: (Map<string, Map<bigint, number>> | null)[] = [];
    const found = await src.batchBytes(table.map((b) => b.batchId));
    for (const b of table) {
      const bytes = found.get(b.batchId);
      if (bytes === undefined) {
        out.batchesUnchecked.push(b.batchId);
        content.push(null);
        continue;
      }
      if (toHex(sha256(bytes)) !== (await src.expectedSha256(b.batchId, b.sha256))) {
        out.batchesBadBytes.push(b.batchId);
        content.push(null);
        continue;
      }
      const batch = decodeBatch(bytes, `batch ${b.batchId}`);
      const m = new Map<string, Map<bigint, number>>();
      for (const s of batch.series) {
        const byTs = new Map<bigint, number>();
        for (let i = 0; i < s.timestampsNs.length; i++) byTs.set(s.timestampsNs[i]!, s.values[i]!);
        m.set(s.key, byTs);
      }
      content.push(m);
    }
    for (const s of reader.series()) {
      for (const c of s.chunks) {
        const d = reader.readChunk(c);
        for (let i = 0; i < d.timestampsNs.length; i++) {
          out.points++;
          const ref = d.batchRefs[i]!;
          const m = content[ref];
          if (m === null || m === undefined) continue;
          out.checked++;
          const t = d.timestampsNs[i]!;
          const signed = m.get(s.key)?.get(t);
          if (signed !== undefined && sameValue(signed, d.values[i]!)) continue;
          out.mismatches++;
          if (out.examples.length < EXAMPLES_MAX) out.examples.push({ batchId: table[ref]!.batchId, series: s.key, tsNs: t, stored: d.values[i]!, signed: signed ?? null });
        }
      }
    }
    return out;
  } finally {
    await reader.close();
  }
}

export function describeMismatch(m: AuditMismatch): string {
  return `batch ${m.batchId}: ${m.series} @${m.tsNs} stored ${m.stored}, ${m.signed === null ? "the batch has no such point" : `the signed batch says ${m.signed}`}`;
}
