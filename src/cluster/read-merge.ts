// Merging what replicas hold (decision 7): pure functions over selections, no I/O.
//
// One point per (series, timestamp). Where two replicas hold one point:
// identical bits → one point; an original beats an inferred point (the rule the
// engine applies on write); two different originals (or two different inferred
// values) should never happen, since a value is committed on a majority only
// once: the local one is kept and the point is counted as divergent, for
// anti-entropy to look at.

import { ORIGIN_CODE, sameValue } from "../core/batch.js";
import type { SelectedSeries } from "../storage/engine-api.js";

/** Points one replica holds that the other lacks, or holds only as inferred: candidates for read repair. */
export interface MissingPoints {
  /** The series as the peer has it, narrowed to the samples this side lacks. */
  readonly series: SelectedSeries;
}

export interface MergeResult {
  readonly series: SelectedSeries[];
  /** Samples the peer had that the local side lacked (or held only as inferred), per series. */
  readonly missing: MissingPoints[];
  readonly divergent: number;
}

const INFERRED = ORIGIN_CODE.inferred;

/** Merges a peer's series into the local ones (both sorted by key or not: the result is sorted by key). */
export function mergeSelections(local: readonly SelectedSeries[], peer: readonly SelectedSeries[]): MergeResult {
  const byKey = new Map<string, SelectedSeries>();
  for (const s of local) byKey.set(s.key, s);
  const missing: MissingPoints[] = [];
  let divergent = 0;
  for (const p of peer) {
    const l = byKey.get(p.key);
    if (l === undefined) {
      byKey.set(p.key, p);
      if (p.timestampsNs.length > 0) missing.push({ series: p });
      continue;
    }
    const m = mergeSeries(l, p);
    byKey.set(p.key, m.series);
    divergent += m.divergent;
    if (m.missing !== null) missing.push({ series: m.missing });
  }
  const series = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { series, missing, divergent };
}

interface Builder {
  ts: bigint[];
  vs: number[];
  os: number[];
  refs: number[];
  ids: string[];
  idIndex: Map<string, number>;
}

const builder = (): Builder => ({ ts: [], vs: [], os: [], refs: [], ids: [], idIndex: new Map() });

function push(b: Builder, s: SelectedSeries, i: number): void {
  const id = s.batchIds[s.batchRefs[i]!]!;
  let ref = b.idIndex.get(id);
  if (ref === undefined) {
    ref = b.ids.length;
    b.ids.push(id);
    b.idIndex.set(id, ref);
  }
  b.ts.push(s.timestampsNs[i]!);
  b.vs.push(s.values[i]!);
  b.os.push(s.origins[i]!);
  b.refs.push(ref);
}

function build(like: SelectedSeries, b: Builder): SelectedSeries {
  return {
    key: like.key,
    labels: like.labels,
    timestampsNs: BigInt64Array.from(b.ts),
    values: Float64Array.from(b.vs),
    origins: Uint8Array.from(b.os),
    batchRefs: Uint32Array.from(b.refs),
    batchIds: b.ids,
  };
}

/** Merges two copies of one series; `missing` is what `peer` adds to `local` (null when nothing). */
export function mergeSeries(local: SelectedSeries, peer: SelectedSeries): { series: SelectedSeries; missing: SelectedSeries | null; divergent: number } {
  const out = builder();
  const add = builder();
  let divergent = 0;
  let i = 0;
  let j = 0;
  const nl = local.timestampsNs.length;
  const np = peer.timestampsNs.length;
  while (i < nl || j < np) {
    const tl = i < nl ? local.timestampsNs[i]! : null;
    const tp = j < np ? peer.timestampsNs[j]! : null;
    if (tp === null || (tl !== null && tl < tp)) {
      push(out, local, i++);
    } else if (tl === null || tp < tl) {
      push(out, peer, j);
      push(add, peer, j++);
    } else {
      const sameOrigin = local.origins[i] === peer.origins[j];
      if (sameOrigin) {
        if (!sameValue(local.values[i]!, peer.values[j]!)) divergent++;
        push(out, local, i);
      } else if (local.origins[i] === INFERRED) {
        push(out, peer, j);
        push(add, peer, j);
      } else {
        push(out, local, i);
      }
      i++;
      j++;
    }
  }
  if (add.ts.length === 0) return { series: local, missing: null, divergent };
  return { series: build(local, out), missing: build(peer, add), divergent };
}

/** Sorted union of string lists. */
export function unionSorted(lists: readonly (readonly string[])[]): string[] {
  const set = new Set<string>();
  for (const l of lists) for (const s of l) set.add(s);
  return [...set].sort();
}
