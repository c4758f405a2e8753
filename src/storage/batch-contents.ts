// A committed batch rebuilt from the points stored as its own: the head's samples whose batch ref is the batch's head
// ref, and the block chunks' samples whose batch ref names it in that block's batch table.
//
// Why: provenance needs a batch's canonical bytes to prove a point came from it (the bytes hash to the digest in the
// signed log). Archiving every batch's bytes cost more disk than the points themselves; a batch whose points are all
// stored as its own (the common case: no point it offered was already there) can be rebuilt instead, and the
// archive keeps only the others (docs/format/archive.md, "Batches not archived"). The caller checks the rebuilt
// bytes against the digest: a point rewritten on disk makes its batch come out wrong, never right.
//
// Cost: one pass over the head and over every chunk of the blocks naming the batches, decoding them (with their
// checksums) outside the chunk cache. That is for proofs and audits, not for the write or read path; ask for many
// batches at once to share the pass.

import type { Batch, BatchSeries } from "../core/batch.js";
import type { Labels } from "../core/labels.js";
import type { BatchTable } from "./batch-table.js";
import type { BlockSet } from "./block-set.js";
import type { Head } from "./engine-head.js";
import type { BatchState } from "./engine-state.js";

interface Collected {
  readonly st: BatchState;
  /** Series key → its labels and points (a point in a block and again in the head counts once). */
  readonly series: Map<string, Points>;
}

interface Points {
  readonly labels: Labels;
  readonly seen: Set<bigint>;
  readonly ts: bigint[];
  // Typed, not a plain array: a NaN's payload (a stale marker's) must survive.
  vs: Float64Array;
}

function collect(c: Collected, key: string, labels: Labels, t: bigint, v: number): void {
  let s = c.series.get(key);
  if (s === undefined) c.series.set(key, (s = { labels, seen: new Set(), ts: [], vs: new Float64Array(4) }));
  if (s.seen.has(t)) return;
  s.seen.add(t);
  if (s.ts.length === s.vs.length) {
    const grown = new Float64Array(s.vs.length * 2);
    grown.set(s.vs);
    s.vs = grown;
  }
  s.vs[s.ts.length] = v;
  s.ts.push(t);
}

/** The committed batches among `batchIds` as rebuilt from their stored points; a batch with none stored is absent. */
export function batchContents(head: Head, blocks: BlockSet, batches: BatchTable, batchIds: readonly string[]): Map<string, Batch> {
  const wanted: Collected[] = [];
  for (const id of batchIds) {
    const st = batches.get(id);
    if (st !== undefined && st.phase === "committed") wanted.push({ st, series: new Map() });
  }
  if (wanted.length === 0) return new Map();

  const byHeadRef = new Map<number, Collected>();
  for (const c of wanted) if (c.st.headRef >= 0) byHeadRef.set(c.st.headRef, c);
  if (byHeadRef.size > 0) {
    for (const s of head.series.values()) {
      const h = s.head;
      for (let i = 0; i < h.length; i++) {
        const c = byHeadRef.get(h.batchRefs[i]!);
        if (c !== undefined) collect(c, s.key, s.labels, h.timestampsNs[i]!, h.values[i]!);
      }
    }
  }

  for (const reader of blocks.readers) {
    const byTableIndex = new Map<number, Collected>();
    const table = reader.batches();
    const want = new Map(wanted.map((c) => [c.st.batchId, c]));
    for (let k = 0; k < table.length; k++) {
      const c = want.get(table[k]!.batchId);
      if (c !== undefined) byTableIndex.set(k, c);
    }
    if (byTableIndex.size === 0) continue;
    for (const entry of reader.series()) {
      for (const ref of entry.chunks) {
        const d = reader.readChunk(ref);
        for (let i = 0; i < d.timestampsNs.length; i++) {
          const c = byTableIndex.get(d.batchRefs[i]!);
          if (c !== undefined) collect(c, entry.key, entry.labels, d.timestampsNs[i]!, d.values[i]!);
        }
      }
    }
  }

  const out = new Map<string, Batch>();
  for (const c of wanted) {
    if (c.series.size === 0) continue;
    const series: BatchSeries[] = [];
    let total = 0;
    for (const key of [...c.series.keys()].sort()) {
      const p = c.series.get(key)!;
      const order = p.ts.map((_, i) => i).sort((a, b) => (p.ts[a]! < p.ts[b]! ? -1 : p.ts[a]! > p.ts[b]! ? 1 : 0));
      const timestampsNs = new BigInt64Array(order.length);
      const values = new Float64Array(order.length);
      for (let i = 0; i < order.length; i++) {
        timestampsNs[i] = p.ts[order[i]!]!;
        values[i] = p.vs[order[i]!]!;
      }
      series.push({ key, labels: p.labels, timestampsNs, values });
      total += order.length;
    }
    out.set(c.st.batchId, { shardId: c.st.shardId, origin: c.st.origin, inference: c.st.inference, series, sampleCount: total });
  }
  return out;
}
