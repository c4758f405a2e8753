// The single-node storage engine: WAL → in-memory head → immutable blocks.
//
// A write is checked and applied to the head synchronously (so concurrent
// writes see each other and a point can never take two values), stays
// invisible while its WAL record waits for fsync, and becomes visible when the
// fsync returns. A failed WAL append rolls the head back. Identity rules
// (DESIGN.md decision 6): one point per (series, timestamp); identical replays
// are no-ops; a different value is a conflict that refuses the whole batch; an
// original replaces an inferred point. Points copied from a peer replica
// (repair) follow the same rules point by point, and are visible at once.
//
// This class is the façade over the parts, Prometheus-style: the Head (series,
// postings, head batch table, rollback: engine-head.ts), the BlockSet (block
// readers, chunk cache, attach/detach, retention: block-set.ts), the BatchTable
// (batch-table.ts), the WAL writer (wal-writer.ts), and functions over them:
// the identity checks (point-check.ts), the flush (flush.ts), WAL replay
// (replay.ts), repairs (repair-install.ts), reads (engine-read.ts) and digests
// (engine-digest.ts). It holds what orders them: admission, the flush slot and
// the lifecycle.

import { batchContents } from "./batch-contents.js";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../core/assert.js";
import { encodeWithDigest, type Batch, type EncodedBatch } from "../core/batch.js";
import { ConflictError, NotFoundError, OverloadError, UnavailableError } from "../core/errors.js";
import { Hlc } from "../core/hlc.js";
import type { Labels } from "../core/labels.js";
import type { MetadataEntry, MetricMetadata } from "../core/metadata.js";
import type { Receipt } from "../core/receipt.js";
import { nowNs } from "../core/time.js";
import { BatchTable } from "./batch-table.js";
import { BlockSet } from "./block-set.js";
import { DigestWindowCache } from "./digest-cache.js";
import type {
  DetachedBlock,
  EngineStats,
  FlushResult,
  MatcherSets,
  OpenDamage,
  RepairMeta,
  RepairResult,
  ScrubTarget,
  SelectedSeries,
  SelectOptions,
  SeriesDigest,
  StorageEngine,
  WindowDigest,
} from "./engine-api.js";
import { DIGEST_WINDOW_NS, digestSeries, digestWindows, digestWindowsScan } from "./engine-digest.js";
import { Head } from "./engine-head.js";
import { EngineMetrics } from "./engine-metrics.js";
import type { EngineOptions } from "./engine-options.js";
import { labelNames, labelValues, select, seriesLabels } from "./engine-read.js";
import { batchInfo, countChanges, selfContained, type BatchState, type Op } from "./engine-state.js";
import { flushHead } from "./flush.js";
import { DEFAULT_METADATA_LIMITS, MetadataStore } from "./metadata.js";
import { plan } from "./point-check.js";
import { installRepair, repairRecord } from "./repair-install.js";
import type { BatchInfo, BatchPhase, ReplicaEngine, ReserveSyncResult } from "./replica-api.js";
import { replayWal } from "./replay.js";
import { decodeWalBatch, encodeWalBatch, WalRecordType } from "./wal-payload.js";
import { WalWriter } from "./wal-writer.js";

export type { EngineOptions } from "./engine-options.js";
export type { BatchInfo, BatchPhase, ReplicaEngine, ReserveSyncResult } from "./replica-api.js";
export type { DamagedBlock, DetachedBlock, OpenDamage, RepairMeta, RepairResult, ScrubTarget, SeriesDigest, WindowDigest } from "./engine-api.js";
export { CHUNK_CACHE_BYTES_MAX } from "./block-set.js";
export { DIGEST_WINDOW_NS } from "./engine-digest.js";

const DEFAULT_HEAD_SAMPLES_MAX = 4_000_000;
const DEFAULT_FLUSH_INTERVAL_MS = 30 * 60 * 1000;
const RETENTION_CHECK_MS = 60 * 1000;
/** Metric metadata (storage/metadata.ts, docs/format/metadata.md), beside wal/ and blocks/. */
const METADATA_FILE = "metadata.hqm";

export async function openEngine(opts: EngineOptions): Promise<StorageEngine> {
  const e = new Engine(opts);
  await e.open();
  return e;
}

export class Engine implements ReplicaEngine {
  private readonly batches = new BatchTable();
  /** Per-window digests for DIGEST_WINDOW_NS; the head and the block set touch it on every change of visibility. */
  private readonly digestCache = new DigestWindowCache(DIGEST_WINDOW_NS);
  private readonly head: Head;
  private readonly blocks: BlockSet;
  private readonly writer = new WalWriter();
  private readonly m: EngineMetrics;
  /**
   * Observes every stamp this node is given (reserveSync, repair, replay) and stamps its own writes (admit): a write
   * stamped here orders after every batch this node has seen.
   */
  private readonly hlc = new Hlc();
  /**
   * The flush running, set and cleared by startFlush only: one at a time. Writes and repairs wait while it is set (a
   * flush drops from the head what it cut, so nothing may be installed meanwhile); reservations do not.
   */
  private flushing: Promise<FlushResult> | null = null;
  /** Set while a flush has not yet taken its cut (flush.ts): new writes wait for it, not for the whole flush. */
  private cutting: Promise<void> | null = null;
  /** True while open() replays the WAL: the head is not whole yet, so commitSync starts no flush. */
  private replaying = false;
  /** The flush and retention timers: set by open(), cleared by close(). */
  private timers: NodeJS.Timeout[] = [];
  /** Set by open(). */
  private metadataStore: MetadataStore | null = null;
  private readonly walDir: string;
  private readonly onDamage: "fail" | "quarantine";
  /** Filled by open(), read-only after it. */
  private readonly damageAtOpen: OpenDamage = { wal: [], blocks: [] };

  constructor(private readonly opts: EngineOptions) {
    this.walDir = join(opts.dataDir, "wal");
    this.onDamage = opts.onDamage ?? (opts.acceptDataLoss ? "quarantine" : "fail");
    assert(this.onDamage === "fail" || this.onDamage === "quarantine", `onDamage ${String(opts.onDamage)}`);
    this.head = new Head(this.batches, this.digestCache);
    this.blocks = new BlockSet(opts.dataDir, this.head, this.batches, this.digestCache, opts.log);
    this.m = new EngineMetrics(opts.metrics, () => this.stats());
  }

  // ---- lifecycle -------------------------------------------------------

  async open(): Promise<void> {
    await mkdir(this.walDir, { recursive: true });
    await mkdir(this.blocks.dir, { recursive: true });
    this.damageAtOpen.blocks.push(...(await this.blocks.load(this.onDamage)));
    this.replaying = true;
    const walDamage = await replayWal({
      walDir: this.walDir,
      onDamage: this.onDamage,
      pendingWritesMax: this.opts.limits.pendingWritesMax * 2,
      fsync: this.opts.fsync ?? true,
      log: this.opts.log,
      metrics: this.m,
      writer: this.writer,
      head: this.head,
      blocks: this.blocks,
      batches: this.batches,
      hlc: this.hlc,
      onCommitted: this.opts.onCommitted,
      onReplicaLog: this.opts.onReplicaLog,
      decideCommit: (st) => this.decideCommit(st),
      decideAbort: (st) => this.decideAbort(st),
    });
    this.replaying = false;
    this.damageAtOpen.wal.push(...walDamage);
    this.metadataStore = await MetadataStore.open(join(this.opts.dataDir, METADATA_FILE), DEFAULT_METADATA_LIMITS, this.opts.log);
    this.timers.push(setInterval(() => this.maybeAutoFlush(true), Math.min(this.flushIntervalMs, 60_000)).unref());
    if (this.opts.retentionMs !== null) this.timers.push(setInterval(() => void this.applyRetention(), RETENTION_CHECK_MS).unref());
    await this.applyRetention();
  }

  private get flushIntervalMs(): number {
    return this.opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
  }

  /**
   * What open found damaged and quarantined (onDamage "quarantine"): WAL corruption (not a torn tail, which was
   * never acknowledged) and blocks it could not attach. The records and points named are lost on this node: a
   * cluster node fetches them from its peers (Engine.repair), then removes the damaged WAL segments for good with
   * rewriteWal() (until then they stay, and the scrubber reports them again).
   */
  openDamage(): OpenDamage {
    return { wal: [...this.damageAtOpen.wal], blocks: [...this.damageAtOpen.blocks] };
  }

  async close(): Promise<void> {
    if (this.writer.closed) return;
    this.writer.closed = true;
    for (const t of this.timers) clearInterval(t);
    if (this.flushing !== null) await this.flushing.catch(() => undefined);
    await this.writer.settle();
    await this.writer.wal?.close();
    await this.blocks.close();
    await this.metadataStore?.close();
  }

  // ---- writes ----------------------------------------------------------

  async write(batch: Batch, batchId: string, encoded?: EncodedBatch): Promise<Receipt> {
    const r = await this.admit(batch, batchId, encoded);
    const st = r.st;
    return {
      batchId: st.batchId,
      sha256: st.sha256,
      shardId: st.shardId,
      hlc: st.hlc.toString(),
      samples: st.sampleCount,
      accepted: r.accepted,
      duplicates: batch.sampleCount - r.accepted,
      conflicts: [],
      duplicate: r.duplicate,
      replicas: ["local"],
    };
  }

  /** Idempotency, point checks, head reservation (before any await), WAL durability, visibility. */
  private async admit(batch: Batch, batchId: string, encoded: EncodedBatch | undefined): Promise<{ st: BatchState; accepted: number; duplicate: boolean }> {
    const w = this.writer;
    w.checkWritable();
    while (this.cutting !== null) await this.cutting;
    w.checkWritable();
    const { bytes, sha256: sha } = encoded ?? encodeWithDigest(batch);
    const known = this.batches.get(batchId);
    if (known !== undefined) {
      if (known.sha256 !== sha) {
        this.m.conflict();
        throw new ConflictError(`batch id "${batchId}" was already used for different content (stored SHA-256 ${known.sha256}, offered ${sha})`, [], { batchId });
      }
      await known.durable;
      this.m.duplicateBatch(batch.sampleCount);
      return { st: known, accepted: 0, duplicate: true };
    }
    w.checkRoom(this.opts.limits.pendingWritesMax);

    let ops: Op[];
    try {
      ops = plan(this.head, this.blocks, batch);
    } catch (err) {
      if (err instanceof ConflictError) this.m.conflict();
      throw err;
    }
    const hlc = this.hlc.now();
    const st = this.head.register(batchId, sha, batch, hlc, "reserved");
    this.head.applyOps(ops, batch.origin, st.headRef);
    const accepted = countChanges(ops);
    const wal = w.wal;
    assert(wal !== null, "write before open");
    const payload = encodeWalBatch({ batchId, sha256: sha, hlc, batchBytes: bytes });
    const durable = (async () => {
      try {
        await wal.append(WalRecordType.COMMITTED_BATCH, payload);
      } catch (err) {
        this.head.rollback(ops, st);
        if (!(err instanceof OverloadError)) w.failed = err as Error;
        throw err;
      }
      this.head.commit(st, ops);
      this.opts.onCommitted?.(st.batchId, st.sha256, bytes, selfContained(st, ops));
    })();
    st.durable = durable;
    w.inflight.add(durable);
    try {
      await durable;
    } catch (err) {
      if (err instanceof OverloadError) throw err;
      throw new UnavailableError("the write-ahead log failed; this node takes no more writes until restarted", 5, { cause: err });
    } finally {
      w.inflight.delete(durable);
    }
    this.m.stored(accepted, batch.sampleCount - accepted);
    if (this.head.oldestWriteMs === null) this.head.oldestWriteMs = Date.now();
    this.maybeAutoFlush(false);
    return { st, accepted, duplicate: false };
  }

  // ---- replica primitives (ReplicaEngine) -------------------------------------
  // The replication layer (src/cluster/engine-store.ts) calls these synchronously from its state machine and makes
  // its decisions durable itself, as REPLICA_LOG records (appendReplicaLog) that it replays on open (onReplicaLog)
  // and re-logs before a flush deletes old segments (relog). None of them writes the WAL.

  reserveSync(batch: Batch, batchId: string, sha256: string, hlc: bigint, bytes: Uint8Array): ReserveSyncResult {
    this.writer.checkWritable();
    this.hlc.observe(hlc);
    const known = this.batches.get(batchId);
    if (known !== undefined)
      return known.sha256 === sha256 ? { kind: "duplicate", phase: known.phase } : { kind: "id-conflict", sha256: known.sha256 };
    const holders = new Set<string>();
    let ops: Op[];
    try {
      ops = plan(this.head, this.blocks, batch, holders);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      this.m.conflict();
      return { kind: "conflict", points: err.points, holders: [...holders].sort() };
    }
    const st = this.head.register(batchId, sha256, batch, hlc, "prepared");
    this.head.applyOps(ops, batch.origin, st.headRef);
    st.pending = { ops, walPayload: null };
    st.bytes = bytes;
    this.m.stored(countChanges(ops), 0);
    if (this.head.oldestWriteMs === null) this.head.oldestWriteMs = Date.now();
    return { kind: "ok" };
  }

  commitSync(batchId: string): void {
    const st = this.batches.get(batchId);
    if (st === undefined) throw new NotFoundError(`batch "${batchId}" is not prepared here`);
    if (st.phase === "committed") return;
    assert(st.phase === "prepared", `commit of batch ${batchId} in phase ${st.phase}`);
    this.decideCommit(st);
    if (!this.replaying) this.maybeAutoFlush(false);
  }

  abortSync(batchId: string): void {
    const st = this.batches.get(batchId);
    if (st === undefined) return;
    if (st.phase === "committed") throw new ConflictError(`batch "${batchId}" is committed; it cannot be aborted`, [], { batchId });
    assert(st.phase === "prepared", `abort of batch ${batchId} in phase ${st.phase}`);
    this.decideAbort(st);
  }

  private decideCommit(st: BatchState): void {
    if (this.opts.onCommitted !== undefined) {
      const bytes = st.bytes ?? (st.pending !== null && st.pending.walPayload !== null ? decodeWalBatch(st.pending.walPayload, `batch ${st.batchId}`).batchBytes : null);
      if (bytes !== null) this.opts.onCommitted(st.batchId, st.sha256, bytes, st.pending !== null && selfContained(st, st.pending.ops));
    }
    this.head.commit(st, st.pending?.ops ?? null);
  }

  private decideAbort(st: BatchState): void {
    assert(st.pending !== null, "abort without the changes to undo");
    this.head.rollback(st.pending.ops, st);
  }

  /** Committed batches rebuilt from the points stored as theirs (storage/batch-contents.ts); absent: none stored here. */
  batchContents(batchIds: readonly string[]): Map<string, Batch> {
    return batchContents(this.head, this.blocks, this.batches, batchIds);
  }

  lookupBatch(batchId: string): BatchInfo | null {
    const st = this.batches.get(batchId);
    return st === undefined ? null : batchInfo(st);
  }

  listBatches(phase: BatchPhase, fromHlc: bigint): BatchInfo[] {
    return this.batches.list(phase, fromHlc);
  }

  batchBytes(batchId: string): Uint8Array | null {
    const st = this.batches.get(batchId);
    return st !== undefined && st.headRef >= 0 ? st.bytes : null;
  }

  appendReplicaLog(payload: Uint8Array): Promise<void> {
    return this.writer.appendReplicaLog(payload);
  }

  /**
   * Installs committed points of batch meta.batchId that a peer holds (repair-install.ts has the rules). `part` is a
   * canonical batch of a subset of that batch's points, with the original batch's origin, shardId and inference;
   * `partBytes` its canonical encoding. The points are visible at once, as committed data is, and durable once the
   * REPAIR record's fsync returns: a crash before that loses only repaired copies, which the peer still has. A part
   * holding nothing new writes no record (it waits for the REPAIR records still in flight, which may hold the points
   * it found present).
   */
  async repair(meta: RepairMeta, part: Batch, partBytes: Uint8Array): Promise<RepairResult> {
    const w = this.writer;
    w.checkWritable();
    // A flush drops from the head what it wrote into its block: nothing may be installed while it runs.
    while (this.flushing !== null) await this.flushing.catch(() => undefined);
    w.checkWritable();
    const payload = repairRecord(meta, part, partBytes);
    w.checkRoom(this.opts.limits.pendingWritesMax);
    this.hlc.observe(meta.hlc);
    const r = installRepair(this.head, this.blocks, this.batches, meta, part);
    if (r.deferred) return { stored: 0, present: 0, divergent: [], deferred: true };
    assert(r.st !== null, "an installed repair without its batch");
    this.m.repaired.inc(r.stored);
    this.m.repairDivergent.inc(r.divergentCount);
    if (r.stored > 0 && this.head.oldestWriteMs === null) this.head.oldestWriteMs = Date.now();
    await w.logRepair(payload, r.st, r.registered, r.changed);
    this.maybeAutoFlush(false);
    return { stored: r.stored, present: r.present, divergent: r.divergent, deferred: false };
  }

  // ---- flush, retention, damage ---------------------------------------

  private maybeAutoFlush(byTimer: boolean): void {
    if (this.flushing !== null || this.writer.closed || this.writer.failed !== null) return;
    const full = this.head.samples >= (this.opts.headSamplesMax ?? DEFAULT_HEAD_SAMPLES_MAX);
    const old = byTimer && this.head.oldestWriteMs !== null && Date.now() - this.head.oldestWriteMs >= this.flushIntervalMs;
    if (!full && !old) return;
    this.flush().catch((err: Error) => this.opts.log.error({ err: err.message }, "background flush failed"));
  }

  flush(): Promise<FlushResult> {
    if (this.flushing !== null) return this.flushing;
    return this.startFlush(false);
  }

  private startFlush(rewrite: boolean): Promise<FlushResult> {
    assert(this.flushing === null, "one flush at a time");
    let cutTaken!: () => void;
    const cutting = new Promise<void>((resolve) => (cutTaken = resolve));
    const release = (): void => {
      if (this.cutting === cutting) this.cutting = null;
      cutTaken();
    };
    this.cutting = cutting;
    const p = flushHead(this.writer, this.head, this.blocks, () => this.retentionCutoffNs(), this.opts, rewrite, release).finally(() => {
      this.flushing = null;
      this.head.flushSnapshot = null;
      release();
    });
    this.flushing = p;
    return p;
  }

  /**
   * Replaces every WAL segment, the active one included, for damage found in one while running (the scrubber):
   * rotates, cuts the head's committed batches into a block, re-logs what must outlive the old segments (the relog
   * hook's payloads in cluster mode, else the prepared batches) and deletes every segment before the rotation,
   * the damaged one among them. Resolves once they are gone.
   *
   * Why nothing is lost: at runtime the WAL is only written, never read. Every record in it was applied to memory
   * when it was appended (or when it was replayed at open, from bytes that were verified then), so the head holds
   * every committed point those records carry, intact (it is not read back from disk), and the flush puts them in a
   * checksummed block before any segment is deleted; undecided batches, votes and fences are written again by the
   * relog hook (or as PREPARE records) into the new segment first. Damage found at open is different: those records
   * were lost then (openDamage()); rewriteWal only clears their segments so the damage is not met again.
   */
  async rewriteWal(): Promise<void> {
    this.writer.checkWritable();
    // A running flush may have rotated before the damaged segment was the active one: a rotation of our own.
    while (this.flushing !== null) await this.flushing.catch(() => undefined);
    this.writer.checkWritable();
    const r = await this.startFlush(true);
    this.opts.log.warn({ block: r.blockPath, samples: r.samples }, "WAL rewritten: every segment before the rotation deleted (damage found while running)");
  }

  private retentionCutoffNs(): bigint | null {
    return this.opts.retentionMs === null ? null : nowNs() - BigInt(this.opts.retentionMs) * 1_000_000n;
  }

  private async applyRetention(): Promise<void> {
    const cutoff = this.retentionCutoffNs();
    if (cutoff === null || this.writer.closed) return;
    await this.blocks.applyRetention(cutoff);
  }

  /**
   * For a block found damaged (or missing) while running: stops reading it and moves the file to
   * <dataDir>/quarantine/ (a no-op when it is already gone). Reads then skip its points (a cluster's majority read
   * covers them from the other replicas) until Engine.repair brings them back from a peer.
   *
   * Its batches stay known: those with no other location stay registered as committed, so a replay of one answers
   * duplicate and a repair installs its points as its own (the committed-batch path of repair). That knowledge is
   * in memory: a restart before the repair forgets such an id (the quarantined file is not read again); once repaired,
   * the REPAIR records make it durable again.
   */
  detachBlock(path: string): Promise<DetachedBlock> {
    return this.blocks.detach(path);
  }

  /** The files the scrubber re-reads: every WAL segment (the active one up to its durable length), then every attached block. */
  scrubTargets(): ScrubTarget[] {
    const out: ScrubTarget[] = [];
    for (const f of this.writer.wal?.segmentFiles() ?? []) out.push({ kind: "wal", path: f.path, sizeBytes: f.bytes });
    out.push(...this.blocks.scrubTargets());
    return out;
  }

  // ---- reads, digests, metadata ----------------------------------------

  select(sets: MatcherSets, o: SelectOptions): SelectedSeries[] {
    return select(this.head, this.blocks, sets, o);
  }

  seriesLabels(sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number): Labels[] {
    return seriesLabels(this.head, sets, startNs, endNs, seriesMax);
  }

  labelNames(sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[] {
    return labelNames(this.head, sets, startNs, endNs);
  }

  labelValues(name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[] {
    return labelValues(this.head, name, sets, startNs, endNs);
  }

  digestWindows(startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[] {
    return digestWindows(this.head, this.blocks, this.digestCache, startNs, endNs, windowNs);
  }

  /** digestWindows by a scan of every point in the range, whatever the window size (tests compare the cache with it). */
  digestWindowsScan(startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[] {
    return digestWindowsScan(this.head, this.blocks, startNs, endNs, windowNs);
  }

  /** Window cache statistics (tests and measurements). */
  digestCacheStats(): { clean: number; dirty: number; windowsRecomputed: number; scans: number; clippedScans: number } {
    return { ...this.digestCache.size(), ...this.digestCache.counters };
  }

  digestSeries(startNs: bigint, endNs: bigint): SeriesDigest[] {
    return digestSeries(this.head, this.blocks, startNs, endNs);
  }

  putMetadata(items: readonly MetricMetadata[]): number {
    assert(this.metadataStore !== null, "metadata is stored once the engine is open");
    return this.metadataStore.put(items);
  }

  metadata(metric: string | null, limit: number, limitPerMetric: number): Record<string, MetadataEntry[]> {
    assert(this.metadataStore !== null, "metadata is read once the engine is open");
    return this.metadataStore.query(metric, limit, limitPerMetric);
  }

  stats(): EngineStats {
    const blockBytes = this.blocks.bytes();
    const walBytes = this.writer.wal?.sizeBytes() ?? 0;
    const t = this.m.totals;
    return {
      seriesCount: this.head.series.size,
      headSamples: this.head.samples,
      blockCount: this.blocks.readers.length,
      blockSamples: this.blocks.samples(),
      bytesOnDisk: blockBytes + walBytes,
      walBytes,
      blockBytes,
      samplesIngestedTotal: t.samples,
      duplicateSamplesTotal: t.duplicates,
      batchesTotal: t.batches,
      conflictsTotal: t.conflicts,
    };
  }
}

