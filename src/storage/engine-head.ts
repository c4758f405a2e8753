// The head: every series (with its in-memory samples not yet cut into a block), the inverted index over their labels,
// the head batch table the samples point into, and the undo of a batch's head changes (rollback).
//
// A batch's changes are applied at once, invisible until the batch is committed (a head sample is visible when the
// batch its ref names is committed), so concurrent writers see each other's reservations and a point never takes two
// values. Undoing must then leave every other batch's points as they would be had the undone batch never come: a
// point it shares with another undecided batch passes to that batch, one it replaced goes back to its former owner.

import { assert } from "../core/assert.js";
import { ORIGIN_CODE, type Origin } from "../core/batch.js";
import type { Labels } from "../core/labels.js";
import { matchesLabels, type Matcher } from "../core/matchers.js";
import type { BlockBatchEntry, BlockSeriesInput } from "./block-format.js";
import type { BatchTable } from "./batch-table.js";
import type { DigestWindowCache } from "./digest-cache.js";
import type { MatcherSets } from "./engine-api.js";
import { byKey, type BatchDesc, type BatchState, type Op, type SeriesState } from "./engine-state.js";
import { HeadSeries } from "./head.js";
import type { BatchPhase } from "./replica-api.js";

/** What a flush cuts: the committed batches of the head table, as the block's batch table will name them. */
export interface HeadCut {
  /** Head refs whose samples go into the block. */
  readonly refs: Set<number>;
  /** The block's batch table, each batch once. */
  readonly batches: BatchState[];
  /** Head ref → index in `batches` (-1: not cut). */
  readonly remap: Int32Array;
}

export class Head {
  /**
   * key → series, with head samples or block chunks or both. Added by seriesFor (a batch's points being checked, a
   * block attached); removed only by dropEmptySeries, for series left with neither. Postings index exactly these.
   */
  readonly series = new Map<string, SeriesState>();
  /**
   * Inverted index, label name → value → series carrying that pair: an equality matcher with a non-empty value
   * can only match series in its posting set, so candidates() reads the smallest such set instead of every series.
   * Changed with `series`, by seriesFor and dropEmptySeries.
   */
  private readonly postings = new Map<string, Map<string, Set<SeriesState>>>();
  /**
   * The head batch table: head ref → batch. Every head sample's ref is an index here; a batch's headRef is its latest
   * index. Appended by register and reenter; replaced only by a flush's swap (truncate), which rewrites every head
   * sample's ref in the same synchronous step. A committed batch may sit here twice (re-entered while a flush ran);
   * a block's batch table names it once.
   */
  table: BatchState[] = [];
  /** The sum of every series' head length: kept by applyOps and rollback, recomputed by truncate. */
  samples = 0;
  /**
   * When the oldest change not yet flushed was applied (the flush timer's clock), null when there is none. Set by the
   * write paths and replay when null, reset by truncate.
   */
  oldestWriteMs: number | null = null;
  /**
   * Batches holding a "share" op, by the shared point, while they are undecided: the heirs of that point if its
   * holder is rolled back. Entries are added by applyOps and removed by unshare (the sharer committed) and rollback.
   */
  private readonly sharers = new Map<SeriesState, Map<bigint, Set<BatchState>>>();
  /**
   * While a flush writes its block: the head refs it cut (their samples leave the head at its swap). Set by the flush
   * after its cut, cleared by truncate (the refs are renumbered there) and by the engine when the flush settles.
   * rollback reads it: a point restored to a batch being cut would leave the head with the cut, missing from the block.
   */
  flushSnapshot: Set<number> | null = null;

  constructor(
    private readonly batches: BatchTable,
    /** Touched by every change of visibility (docs/format/point-digest.md, "Cache"). */
    private readonly digestCache: DigestWindowCache,
  ) {}

  seriesFor(key: string, labels: Labels): SeriesState {
    let s = this.series.get(key);
    if (s === undefined) {
      s = { key, labels, head: new HeadSeries(), blocks: [], digestSeeds: null };
      this.series.set(key, s);
      for (const [n, v] of labels) {
        let byValue = this.postings.get(n);
        if (byValue === undefined) this.postings.set(n, (byValue = new Map()));
        let set = byValue.get(v);
        if (set === undefined) byValue.set(v, (set = new Set()));
        set.add(s);
      }
    }
    return s;
  }

  /** A new batch, in the batch table and at the end of the head table (its samples are applied next). */
  register(batchId: string, sha: string, batch: BatchDesc, hlc: bigint, phase: BatchPhase): BatchState {
    const st: BatchState = {
      batchId,
      sha256: sha,
      shardId: batch.shardId,
      origin: batch.origin,
      inference: batch.inference,
      hlc,
      sampleCount: batch.sampleCount,
      phase,
      pending: null,
      bytes: null,
      headRef: this.table.length,
      blockPaths: [],
      durable: Promise.resolve(),
    };
    this.table.push(st);
    this.batches.add(st);
    return st;
  }

  /** A batch flushed into a block gets head points again (a repair, a restored point): the next flush names it in a second block. */
  reenter(st: BatchState): void {
    st.headRef = this.table.length;
    this.table.push(st);
  }

  visible(h: HeadSeries, i: number): boolean {
    return this.table[h.batchRefs[i]!]!.phase === "committed";
  }

  applyOps(ops: readonly Op[], origin: Origin, batchRef: number): void {
    const code = ORIGIN_CODE[origin];
    for (const op of ops) {
      if (op.kind === "share") {
        this.addSharer(op.s, op.t, this.table[batchRef]!);
        continue;
      }
      // A committed batch's points (a repair) are visible at once; a replacement hides the point it replaces.
      this.digestCache.touch(op.t);
      if (op.kind === "insert") {
        const pos = op.s.head.find(op.t);
        assert(pos < 0, "insert of a point the plan saw absent, now present");
        op.s.head.insertAt(-pos - 1, op.t, op.v, code, batchRef);
        this.samples++;
      } else {
        const i = op.s.head.find(op.t);
        assert(i >= 0, "replace of a point no longer in the head");
        op.s.head.replaceAt(i, op.v, code, batchRef);
      }
    }
  }

  /** `st` becomes committed: its points, and those it shares with undecided batches (taken over), become visible. */
  commit(st: BatchState, ops: readonly Op[] | null): void {
    st.phase = "committed";
    if (ops !== null) {
      this.unshare(ops, st);
      this.touchOps(ops);
    }
    st.pending = null;
  }

  /** Visibility may have changed at these points: their digest windows are recomputed when next asked for. */
  private touchOps(ops: readonly Op[]): void {
    for (const op of ops) this.digestCache.touch(op.t);
  }

  /** A repair found the point at `t` present, held by an undecided batch: it is `st`'s from here on, visible. */
  takeOver(s: SeriesState, t: bigint, st: BatchState): void {
    this.digestCache.touch(t);
    const i = s.head.find(t);
    assert(i >= 0, "takeover of a point no longer in the head");
    // rollback() of the undecided holder leaves a point another batch took over: it stays, visible, as this batch's.
    s.head.batchRefs[i] = st.headRef;
  }

  /** Adds the ids of the held batches sharing the point at (s, t) (a conflict names every holder). */
  addSharerIds(s: SeriesState, t: bigint, into: Set<string>): void {
    for (const b of this.sharers.get(s)?.get(t) ?? []) if (this.batches.holds(b)) into.add(b.batchId);
  }

  private addSharer(s: SeriesState, t: bigint, st: BatchState): void {
    let byT = this.sharers.get(s);
    if (byT === undefined) this.sharers.set(s, (byT = new Map()));
    let set = byT.get(t);
    if (set === undefined) byT.set(t, (set = new Set()));
    set.add(st);
  }

  private dropSharer(s: SeriesState, t: bigint, st: BatchState): void {
    const byT = this.sharers.get(s);
    const set = byT?.get(t);
    if (byT === undefined || set === undefined) return;
    set.delete(st);
    if (set.size === 0) byT.delete(t);
    if (byT.size === 0) this.sharers.delete(s);
  }

  /** A batch, other than `st`, still held (reserved, prepared or committed) that shares the point; committed first. */
  private heir(s: SeriesState, t: bigint, st: BatchState): BatchState | null {
    let found: BatchState | null = null;
    for (const b of this.sharers.get(s)?.get(t) ?? []) {
      if (b === st || !this.batches.holds(b)) continue;
      if (b.phase === "committed") return b;
      found ??= b;
    }
    return found;
  }

  /** `st` is committed: it takes over the points it shares with batches not committed, and leaves the sharer index. */
  unshare(ops: readonly Op[], st: BatchState): void {
    for (const op of ops) {
      if (op.kind !== "share") continue;
      this.dropSharer(op.s, op.t, st);
      if (st.phase !== "committed") continue;
      const h = op.s.head;
      const i = h.find(op.t);
      if (i < 0) continue;
      const owner = this.table[h.batchRefs[i]!]!;
      if (owner !== st && owner.phase !== "committed") h.batchRefs[i] = st.headRef;
    }
  }

  /**
   * Undoes a batch's head changes and forgets the batch (its id may take content again). A point it holds that
   * another held batch shares passes to that batch; a point another batch took over (it committed first) stays; a
   * shared point it inherited is released like its own.
   */
  rollback(ops: readonly Op[], st: BatchState): void {
    const removals = new Map<SeriesState, Set<bigint>>();
    const remove = (s: SeriesState, t: bigint): void => {
      let set = removals.get(s);
      if (set === undefined) removals.set(s, (set = new Set()));
      set.add(t);
    };
    this.touchOps(ops);
    for (let k = ops.length - 1; k >= 0; k--) {
      const op = ops[k]!;
      if (op.kind === "share") this.dropSharer(op.s, op.t, st);
      const h = op.s.head;
      const i = h.find(op.t);
      if (op.kind === "replace") assert(i >= 0, "rollback of a point not in the head");
      if (i < 0 || h.batchRefs[i] !== st.headRef) continue;
      const heir = this.heir(op.s, op.t, st);
      if (heir !== null) {
        assert(heir.headRef >= 0, "an heir of a head point is in the head batch table");
        h.batchRefs[i] = heir.headRef;
        continue;
      }
      if (op.kind === "replace") {
        const owner = op.oldOwner;
        if (!this.batches.holds(owner)) {
          // Its former owner was undone meanwhile (an undecided batch, aborted): the point went with it.
          remove(op.s, op.t);
          continue;
        }
        if (owner.headRef < 0 || this.flushSnapshot?.has(owner.headRef) === true) {
          // Flushed into a block meanwhile (or being flushed: the block being written was cut without this point,
          // which the replacement held), so the point re-enters the head under a new ref of its owner, as a repaired
          // flushed batch does, and the next flush names it in a second block.
          assert(owner.phase === "committed", "only committed batches leave the head table");
          this.reenter(owner);
        }
        h.replaceAt(i, op.oldV, op.oldOrigin, owner.headRef);
        continue;
      }
      remove(op.s, op.t);
    }
    for (const [s, set] of removals) {
      const h = s.head;
      this.samples -= h.removeWhere((j) => h.batchRefs[j] === st.headRef && set.has(h.timestampsNs[j]!));
    }
    this.batches.delete(st.batchId);
    st.phase = "reserved";
    st.pending = null;
  }

  /** Series matching any of the matcher sets, sorted by key. */
  candidates(sets: MatcherSets): SeriesState[] {
    const out = new Set<SeriesState>();
    for (const ms of sets) {
      // The smallest posting set of an equality matcher bounds the candidates; every matcher is still checked on each.
      // `name=""` also matches series without the label, so it cannot use the index.
      let pool: Iterable<SeriesState> | null = null;
      let size = Infinity;
      for (const m of ms) {
        if (m.op !== "=" || m.value === "") continue;
        const set = this.postings.get(m.name)?.get(m.value);
        if (set === undefined) {
          pool = NO_SERIES;
          break;
        }
        if (set.size < size) {
          size = set.size;
          pool = set;
        }
      }
      for (const s of pool ?? this.series.values()) if (matchesLabels(ms as Matcher[], s.labels)) out.add(s);
    }
    return [...out].sort(byKey);
  }

  /** Forgets series left with neither head samples nor blocks (after retention). */
  dropEmptySeries(): void {
    for (const [key, s] of this.series)
      if (s.blocks.length === 0 && s.head.length === 0) {
        this.series.delete(key);
        for (const [n, v] of s.labels) {
          const byValue = this.postings.get(n);
          const set = byValue?.get(v);
          if (byValue === undefined || set === undefined) continue;
          set.delete(s);
          if (set.size === 0) byValue.delete(v);
          if (byValue.size === 0) this.postings.delete(n);
        }
      }
  }

  // ---- the flush's side (flush.ts) -----------------------------------------------------------------------------

  /**
   * The committed batches of the head table, as a block cuts them. By table index and batch identity, not by
   * b.headRef: a committed batch may sit in the table twice (an abort during an earlier, failed flush re-entered it,
   * see rollback); the block's batch table names it once.
   */
  cut(): HeadCut {
    const refs = new Set<number>();
    const batches: BatchState[] = [];
    const blockIndex = new Map<BatchState, number>();
    const remap = new Int32Array(this.table.length).fill(-1);
    this.table.forEach((b, ref) => {
      if (b.phase !== "committed") return;
      let k = blockIndex.get(b);
      if (k === undefined) {
        k = batches.length;
        batches.push(b);
        blockIndex.set(b, k);
      }
      remap[ref] = k;
      refs.add(ref);
    });
    return { refs, batches, remap };
  }

  /**
   * The block's contents: per series (sorted by key) the cut samples at or after the retention cutoff. It gives the
   * event loop back every few ms between series (a big head takes tens of ms): writes and reservations made meanwhile
   * only add samples under refs outside the cut, which are left out, as they are when made between the cut and this
   * call (the replication layer's always could be).
   */
  async blockInput(cut: HeadCut, cutoff: bigint | null): Promise<{ series: BlockSeriesInput[]; batches: BlockBatchEntry[]; samples: number }> {
    const { refs, remap } = cut;
    const series: BlockSeriesInput[] = [];
    let samples = 0;
    let sliceStart = performance.now();
    for (const s of [...this.series.values()].sort(byKey)) {
      if (performance.now() - sliceStart >= SLICE_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
      const h = s.head;
      let n = 0;
      for (let i = 0; i < h.length; i++) if (refs.has(h.batchRefs[i]!) && (cutoff === null || h.timestampsNs[i]! >= cutoff)) n++;
      if (n === 0) continue;
      const data = { timestampsNs: new BigInt64Array(n), values: new Float64Array(n), origins: new Uint8Array(n), batchRefs: new Uint32Array(n) };
      let k = 0;
      for (let i = 0; i < h.length; i++) {
        const ref = h.batchRefs[i]!;
        if (!refs.has(ref) || (cutoff !== null && h.timestampsNs[i]! < cutoff)) continue;
        data.timestampsNs[k] = h.timestampsNs[i]!;
        data.values[k] = h.values[i]!;
        data.origins[k] = h.origins[i]!;
        data.batchRefs[k] = remap[ref]!;
        k++;
      }
      series.push({ labels: s.labels, data });
      samples += n;
    }
    const batches: BlockBatchEntry[] = cut.batches.map((b) => ({
      batchId: b.batchId,
      sha256: b.sha256,
      origin: b.origin,
      shardId: b.shardId,
      hlc: b.hlc.toString(),
      sampleCount: b.sampleCount,
      inference: b.inference,
    }));
    return { series, batches, samples };
  }

  /**
   * The block holding the cut is written and open: the cut samples leave the head (those past the retention cutoff
   * stop being visible here) and the table is renumbered over the batches that keep head samples. Synchronous: no
   * read or write sees the head between the two.
   */
  truncate(cut: HeadCut, cutoff: bigint | null): void {
    const { refs } = cut;
    // The table is renumbered below: rollback() must not test the new refs against the snapshot's old ones.
    this.flushSnapshot = null;
    const kept: BatchState[] = [];
    const newRef = new Int32Array(this.table.length).fill(-1);
    this.table.forEach((b, ref) => {
      if (refs.has(ref) || !this.batches.holds(b)) return;
      newRef[ref] = kept.length;
      kept.push(b);
    });
    for (const b of cut.batches) b.headRef = -1;
    kept.forEach((b, k) => (b.headRef = k));
    let samples = 0;
    for (const s of this.series.values()) {
      const h = s.head;
      if (h.length === 0) continue;
      h.removeWhere((i) => {
        if (!refs.has(h.batchRefs[i]!)) return false;
        if (cutoff !== null && h.timestampsNs[i]! < cutoff) this.digestCache.touch(h.timestampsNs[i]!);
        return true;
      });
      for (let i = 0; i < h.length; i++) {
        const r = newRef[h.batchRefs[i]!]!;
        assert(r >= 0, "a head sample of a batch that is neither flushed nor kept");
        h.batchRefs[i] = r;
      }
      samples += h.length;
      if (h.length === 0 && h.timestampsNs.length > 1024) {
        const fresh = new HeadSeries();
        Object.assign(h, { timestampsNs: fresh.timestampsNs, values: fresh.values, origins: fresh.origins, batchRefs: fresh.batchRefs });
      }
    }
    this.table = kept;
    this.samples = samples;
    this.oldestWriteMs = kept.length > 0 ? Date.now() : null;
  }
}

const NO_SERIES: readonly SeriesState[] = [];

/** Work blockInput does between two chances to give the event loop back, at most. */
const SLICE_MS = 5;
