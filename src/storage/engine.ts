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

import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { assert } from "../core/assert.js";
import { decodeBatch, encodeBatch, encodeWithDigest, ORIGIN_CODE, sameValue, type Batch, type EncodedBatch, type Origin } from "../core/batch.js";
import {
  BadInputError,
  ConflictError,
  CorruptionError,
  NotFoundError,
  OverloadError,
  TooLargeError,
  UnavailableError,
  type ConflictingPoint,
} from "../core/errors.js";
import { Hlc } from "../core/hlc.js";
import type { Labels } from "../core/labels.js";
import type { Limits } from "../core/limits.js";
import { matchesLabels, type Matcher } from "../core/matchers.js";
import type { Receipt } from "../core/receipt.js";
import { INT64_MAX, INT64_MIN, nowNs } from "../core/time.js";
import { isCorruption, RECORD_BYTES_MAX_DEFAULT, Wal } from "../wal/wal.js";
import { BlockReader, blockFileMinTimeNs, readBlockFooter, writeBlock } from "./block-io.js";
import type { BlockBatchEntry, BlockSeriesEntry, BlockSeriesInput, ChunkRef } from "./block-format.js";
import type { ChunkData } from "./chunk-codec.js";
import { DigestWindowCache, floorDiv, type WindowScan } from "./digest-cache.js";
import type {
  DetachedBlock,
  EngineStats,
  FlushResult,
  MatcherSets,
  OpenDamage,
  RepairMeta,
  RepairResult,
  SelectedSeries,
  SelectOptions,
  ScrubTarget,
  SeriesDigest,
  StorageEngine,
  WindowDigest,
} from "./engine-api.js";
import { HeadSeries } from "./head.js";
import type { BatchInfo, BatchPhase, ReplicaEngine, ReserveSyncResult } from "./replica-api.js";
import { DigestSum, SeriesHasher, seriesSeeds } from "./point-digest.js";
import { decodeWalBatch, decodeWalMark, decodeWalRepair, encodeWalBatch, encodeWalRepair, nonCanonical, WalRecordType } from "./wal-payload.js";
import type { MetadataEntry, MetricMetadata } from "../core/metadata.js";
import { DEFAULT_METADATA_LIMITS, MetadataStore } from "./metadata.js";

export interface EngineOptions {
  dataDir: string;
  limits: Limits;
  /** Blocks wholly older than this are deleted; null keeps everything. */
  retentionMs: number | null;
  /** Start over corrupt WAL or blocks, quarantining what is damaged (standalone only). */
  acceptDataLoss: boolean;
  /**
   * What open does about damaged WAL records and damaged or unreadable blocks (a torn WAL tail, never acknowledged,
   * is always truncated): "fail" refuses to open (CorruptionError naming file and offset); "quarantine" opens over
   * them, moving damaged blocks to <dataDir>/quarantine/ and copying damaged WAL ranges to wal/quarantine/, and
   * reports what was lost in openDamage() (a cluster node then fetches it from its peers). Default: "quarantine" with
   * acceptDataLoss, else "fail".
   */
  onDamage?: "fail" | "quarantine";
  log: Logger;
  metrics: Registry;
  /** Cut the head into a block once it holds this many samples. */
  headSamplesMax?: number;
  /** ...or once its oldest unflushed write is this old. */
  flushIntervalMs?: number;
  /** Benchmarks only: skip fsync. */
  fsync?: boolean;
  /**
   * Cluster: called during open for every REPLICA_LOG record, in WAL order (the cluster layer rebuilds its state
   * there, through reserveSync/commitSync/abortSync).
   */
  onReplicaLog?: (payload: Uint8Array) => void;
  /**
   * Provenance: called when a batch becomes committed here and its canonical bytes are at hand (written or
   * prepared through this node, or replayed from the WAL; not for batches installed point by point by a repair).
   * Called again for the same batch on every WAL replay: the callee must be idempotent.
   */
  onCommitted?: (batchId: string, sha256: string, bytes: Uint8Array) => void;
  /** Provenance: awaited before a flush deletes WAL segments (what onCommitted was given must be durable by then). */
  beforeWalDrop?: () => Promise<void>;
  /**
   * Cluster: called by a flush right after the WAL rotation; its payloads are appended as REPLICA_LOG records before
   * the old segments are deleted (they must re-create every undecided batch, vote and fence still needed). When given,
   * prepared batches are not re-logged as PREPARE records.
   */
  relog?: () => Uint8Array[];
}

interface BlockRef {
  readonly reader: BlockReader;
  readonly entry: BlockSeriesEntry;
}

interface SeriesState {
  readonly key: string;
  readonly labels: Labels;
  readonly head: HeadSeries;
  blocks: BlockRef[];
  /** Point-digest seeds (seriesSeeds), kept from the first digest on: a one-window scan visits every series. */
  digestSeeds: Uint32Array | null;
}

/** What the engine remembers of a batch, for idempotency and provenance. */
interface BatchState {
  readonly batchId: string;
  readonly sha256: string;
  readonly shardId: number;
  readonly origin: Origin;
  readonly inference: string | null;
  readonly hlc: bigint;
  readonly sampleCount: number;
  /**
   * reserved: checked and applied to the head, invisible, WAL record not yet durable;
   * prepared: invisible, fate decided later by commitSync() or abortSync() (cluster; durability is the cluster's);
   * committed: visible.
   */
  phase: BatchPhase;
  /**
   * Until the batch is decided: the head changes abortSync() undoes, and the WAL payload a flush re-logs (null for a
   * batch reserved by reserveSync: encoded from `bytes` if ever needed).
   */
  pending: { ops: Op[]; walPayload: Uint8Array | null } | null;
  /** Canonical batch bytes, kept while in the head for batches reserved by reserveSync (catch-up serves them). */
  bytes: Uint8Array | null;
  /**
   * Index in the head batch table, or -1 when it has no head points. A batch flushed into a block re-enters the head
   * table when a repair installs more of its points; the next flush then names it in a second block.
   */
  headRef: number;
  /** The blocks naming it in their batch table, oldest first (more than one after a repair or an interrupted flush). */
  blockPaths: string[];
  /** Resolves when the batch's WAL record (and those of repairs since) is durable, or rejects. */
  durable: Promise<void>;
}

/** A batch's identity and provenance, as registerBatch records it. */
type BatchDesc = Pick<Batch, "shardId" | "origin" | "inference" | "sampleCount">;

export type { BatchInfo, BatchPhase, ReplicaEngine, ReserveSyncResult } from "./replica-api.js";
export type { DamagedBlock, DetachedBlock, OpenDamage, RepairMeta, RepairResult, ScrubTarget, SeriesDigest, WindowDigest } from "./engine-api.js";

/**
 * "share": the point is already in the head with the same value, held by a batch not yet committed. If that batch is
 * rolled back the point passes to a sharer instead of disappearing; if the sharer commits first it takes the point
 * over (so a committed batch's points are visible whatever becomes of the other).
 */
type Op =
  | { kind: "insert"; s: SeriesState; t: bigint; v: number }
  | { kind: "share"; s: SeriesState; t: bigint }
  // The point's former owner by identity, not by head table index: a flush renumbers the table (and may move the
  // owner into a block) while the replacing batch is still undecided.
  | { kind: "replace"; s: SeriesState; index: number; t: bigint; v: number; oldV: number; oldOrigin: number; oldOwner: BatchState };

/**
 * The window size whose digests are cached (DigestWindowCache): the one anti-entropy compares with every peer every
 * minute. Other sizes are computed by scanning every point, each call.
 */
export const DIGEST_WINDOW_NS = 3_600_000_000_000n;

/** What is stored where a point of a batch would go (Engine.visitPoints). */
type StoredCase =
  | { readonly kind: "absent" }
  | { readonly kind: "same"; readonly heldUndecided: boolean }
  | { readonly kind: "differs"; readonly stored: { v: number; origin: number; batchId: string } }
  | { readonly kind: "yields" }
  | { readonly kind: "replaces" };
const ABSENT: StoredCase = { kind: "absent" };
const YIELDS: StoredCase = { kind: "yields" };
const REPLACES: StoredCase = { kind: "replaces" };
const SAME: StoredCase = { kind: "same", heldUndecided: false };
const SAME_HELD: StoredCase = { kind: "same", heldUndecided: true };

const DEFAULT_HEAD_SAMPLES_MAX = 4_000_000;
const DEFAULT_FLUSH_INTERVAL_MS = 30 * 60 * 1000;
const RETENTION_CHECK_MS = 60 * 1000;
/** Metric metadata (storage/metadata.ts, docs/format/metadata.md), beside wal/ and blocks/. */
const METADATA_FILE = "metadata.hqm";
/**
 * Decoded block chunks kept in memory, bounded by their decoded bytes (not by
 * count): a wide read touches one chunk per series (tens of thousands), and a
 * count bound small enough to be safe for large chunks made such reads evict
 * every chunk before its reuse, so each repetition re-read, re-verified and
 * re-decoded everything. 256 MiB holds ~12 M decoded samples (21 B each). A
 * chunk is verified (CRC32C and SHA-256) each time it is loaded from disk into
 * this cache; a hit serves the bytes that were verified at load.
 */
export const CHUNK_CACHE_BYTES_MAX = 256 * 1024 * 1024;

interface CachedChunk {
  readonly reader: BlockReader;
  readonly data: ChunkData;
  readonly bytes: number;
}

export async function openEngine(opts: EngineOptions): Promise<StorageEngine> {
  const e = new Engine(opts);
  await e.open();
  return e;
}

export class Engine implements ReplicaEngine {
  private readonly series = new Map<string, SeriesState>();
  /**
   * Inverted index, label name → value → series carrying that pair: an equality matcher with a non-empty value
   * can only match series in its posting set, so candidates() reads the smallest such set instead of every series.
   */
  private readonly postings = new Map<string, Map<string, Set<SeriesState>>>();
  private readonly batches = new Map<string, BatchState>();
  private headBatches: BatchState[] = [];
  private headSamples = 0;
  private headOldestWriteMs: number | null = null;
  private readonly blockReaders: BlockReader[] = [];
  private wal: Wal | null = null;
  private inflight = new Set<Promise<void>>();
  private flushing: Promise<FlushResult> | null = null;
  private failed: Error | null = null;
  private closed = false;
  private timers: NodeJS.Timeout[] = [];
  private readonly hlc = new Hlc();
  private metadataStore: MetadataStore | null = null;
  /** LRU (Map order) of decoded chunks, keyed by the index's ChunkRef objects (stable for a reader's life). */
  private readonly chunkCache = new Map<ChunkRef, CachedChunk>();
  private chunkCacheBytes = 0;
  private readonly m;
  private readonly walDir: string;
  private readonly blocksDir: string;
  private readonly counters = { samples: 0, duplicates: 0, batches: 0, conflicts: 0 };
  /** Batches holding a "share" op, by the shared point (only while undecided). */
  private readonly sharers = new Map<SeriesState, Map<bigint, Set<BatchState>>>();
  private replaying = false;
  /** REPAIR records not yet durable (or failed): a repair that finds its points present waits for them. */
  private readonly repairLogs = new Set<Promise<void>>();
  /**
   * A REPAIR record was refused (WAL overload) after its points became visible: until the next flush puts them in a
   * block, every repair logs its own part even when it finds it all present.
   */
  private repairsUnlogged = false;
  /** While a flush runs: the head refs of the batches its block takes (their head points leave at the swap). */
  private flushSnapshot: Set<number> | null = null;
  /** Per-window digests for DIGEST_WINDOW_NS; every change of visibility touches it (docs/format/point-digest.md). */
  private readonly digestCache = new DigestWindowCache(DIGEST_WINDOW_NS);
  private readonly onDamage: "fail" | "quarantine";
  private readonly damageAtOpen: OpenDamage = { wal: [], blocks: [] };

  constructor(private readonly opts: EngineOptions) {
    this.walDir = join(opts.dataDir, "wal");
    this.blocksDir = join(opts.dataDir, "blocks");
    this.onDamage = opts.onDamage ?? (opts.acceptDataLoss ? "quarantine" : "fail");
    assert(this.onDamage === "fail" || this.onDamage === "quarantine", `onDamage ${String(opts.onDamage)}`);
    const reg = opts.metrics;
    this.m = {
      samples: new Counter({ name: "hqts_samples_ingested_total", help: "Samples newly stored.", registers: [reg] }),
      duplicates: new Counter({ name: "hqts_duplicate_samples_total", help: "Samples received that were already stored with the same value.", registers: [reg] }),
      batches: new Counter({ name: "hqts_batches_total", help: "Write batches by outcome.", labelNames: ["outcome"], registers: [reg] }),
      fsync: new Histogram({
        name: "hqts_wal_fsync_duration_seconds",
        help: "WAL fsync latency (one fsync covers every write waiting: group commit).",
        buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
        registers: [reg],
      }),
      walCorruptions: new Counter({ name: "hqts_wal_damage_total", help: "WAL damage found at open, by kind.", labelNames: ["kind"], registers: [reg] }),
      repaired: new Counter({ name: "hqts_repaired_points_total", help: "Committed points copied from a peer replica and stored here (Engine.repair).", registers: [reg] }),
      repairDivergent: new Counter({
        name: "hqts_repair_divergent_points_total",
        help: "Points a peer replica offered for repair that hold another value here (of the same origin class); not stored.",
        registers: [reg],
      }),
    };
    // Gauges read the engine when scraped rather than being updated on every write.
    const series = new Gauge({ name: "hqts_series", help: "Series known (head and blocks).", registers: [reg], collect: () => collect() });
    const head = new Gauge({ name: "hqts_head_samples", help: "Samples in the in-memory head.", registers: [reg] });
    const blocks = new Gauge({ name: "hqts_blocks", help: "Immutable blocks on disk.", registers: [reg] });
    const disk = new Gauge({ name: "hqts_disk_bytes", help: "Bytes on disk by kind.", labelNames: ["kind"], registers: [reg] });
    const collect = (): void => {
      const s = this.stats();
      series.set(s.seriesCount);
      head.set(s.headSamples);
      blocks.set(s.blockCount);
      disk.set({ kind: "wal" }, s.walBytes);
      disk.set({ kind: "blocks" }, s.blockBytes);
    };
  }

  // ---- lifecycle -------------------------------------------------------

  async open(): Promise<void> {
    await mkdir(this.walDir, { recursive: true });
    await mkdir(this.blocksDir, { recursive: true });
    await this.loadBlocks();
    await this.replayWal();
    this.metadataStore = await MetadataStore.open(join(this.opts.dataDir, METADATA_FILE), DEFAULT_METADATA_LIMITS, this.opts.log);
    this.timers.push(setInterval(() => this.maybeAutoFlush(true), Math.min(this.flushIntervalMs, 60_000)).unref());
    if (this.opts.retentionMs !== null) this.timers.push(setInterval(() => void this.applyRetention(), RETENTION_CHECK_MS).unref());
    await this.applyRetention();
  }

  private get flushIntervalMs(): number {
    return this.opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
  }

  private async loadBlocks(): Promise<void> {
    const names = (await readdir(this.blocksDir)).filter((n) => n.endsWith(".hqb")).sort();
    for (const name of names) {
      const path = join(this.blocksDir, name);
      let reader: BlockReader | null = null;
      try {
        reader = await BlockReader.open(path);
        this.attachBlock(reader);
      } catch (err) {
        // A checksum that fails, or a file the system cannot read (EIO on a bad sector): either way damage.
        if (!(err instanceof CorruptionError) && !isSystemError(err)) throw err;
        this.opts.log.error({ file: path, err: err.message }, "corrupt block");
        if (this.onDamage === "fail") throw err;
        await reader?.close();
        // What is known of the loss, read before the move: the footer may hold even when the index does not.
        const footer = readBlockFooter(path);
        const quarantinedTo = await this.quarantineBlock(path);
        this.damageAtOpen.blocks.push({
          path,
          quarantinedTo,
          error: err.message,
          minTimeNs: footer?.minTimeNs ?? null,
          maxTimeNs: footer?.maxTimeNs ?? null,
          seriesCount: footer?.seriesCount ?? null,
          sampleCount: footer?.sampleCount ?? null,
          nameMinTimeNs: blockFileMinTimeNs(name),
        });
        this.opts.log.error({ file: path, quarantinedTo, err: err.message }, "corrupt block quarantined: every sample in it is lost on this node until repaired");
        continue;
      }
    }
  }

  /** Moves a block file to <dataDir>/quarantine/; null when the file is already gone. */
  private async quarantineBlock(path: string): Promise<string | null> {
    const q = join(this.opts.dataDir, "quarantine");
    await mkdir(q, { recursive: true });
    let to = join(q, basename(path));
    // Block names carry 48 random bits, but a block quarantined twice (restored by hand, damaged again) must not
    // overwrite the earlier copy.
    for (let n = 1; await exists(to); n++) to = join(q, `${basename(path)}.${n}`);
    try {
      await rename(path, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
    return to;
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

  /**
   * Adds a block's series and batches. One batch id may be named by several blocks (a repair installed more of a
   * flushed batch's points, or a flush crashed after writing its block but before dropping the WAL), always with one
   * digest: two digests for one id means a block holds content that is not what the id was committed as, so the
   * block is refused (CorruptionError, before anything of it is attached).
   */
  private attachBlock(reader: BlockReader): void {
    const seen = new Map<string, string>();
    for (const b of reader.batches()) {
      const prior = seen.get(b.batchId) ?? this.batches.get(b.batchId)?.sha256;
      if (prior !== undefined && prior !== b.sha256)
        throw new CorruptionError(
          `batch ${b.batchId} is named with SHA-256 ${b.sha256} in this block's batch table and ${prior} elsewhere (another block, or this table)`,
          reader.meta.path,
          reader.meta.indexOffset,
        );
      seen.set(b.batchId, b.sha256);
    }
    this.blockReaders.push(reader);
    for (const entry of reader.series()) {
      const s = this.seriesFor(entry.key, entry.labels);
      s.blocks.push({ reader, entry });
    }
    for (const b of reader.batches()) {
      const known = this.batches.get(b.batchId);
      if (known !== undefined) {
        if (!known.blockPaths.includes(reader.meta.path)) known.blockPaths.push(reader.meta.path);
        continue;
      }
      this.batches.set(b.batchId, {
        batchId: b.batchId,
        sha256: b.sha256,
        shardId: b.shardId,
        origin: b.origin,
        inference: b.inference,
        hlc: BigInt(b.hlc),
        sampleCount: b.sampleCount,
        phase: "committed",
        pending: null,
        bytes: null,
        headRef: -1,
        blockPaths: [reader.meta.path],
        durable: Promise.resolve(),
      });
    }
  }

  private async replayWal(): Promise<void> {
    const opened = await Wal.open(this.walDir, {
      onCorruption: this.onDamage,
      pendingWritesMax: this.opts.limits.pendingWritesMax * 2,
      fsync: this.opts.fsync ?? true,
      onFsync: (durationMs: number) => this.m.fsync.observe(durationMs / 1000),
    });
    this.wal = opened.wal;
    for (const f of opened.findings) {
      this.m.walCorruptions.inc({ kind: f.kind });
      if (f.kind === "torn_tail")
        this.opts.log.warn({ ...f }, "WAL torn tail truncated (a write interrupted by a crash; it was never acknowledged)");
      else this.opts.log.error({ ...f }, "WAL corruption: the records in this byte range are LOST on this node until repaired (onDamage quarantine)");
      if (isCorruption(f)) this.damageAtOpen.wal.push(f);
    }
    let applied = 0;
    this.replaying = true;
    for await (const rec of opened.replay()) {
      const source = `${this.walDir}/segment ${rec.segment}`;
      switch (rec.type) {
        // PREPARE, COMMIT and ABORT: a flush without a relog hook re-logs prepared batches as PREPARE; the marks are
        // read so a WAL written by earlier versions (which had a prepare/commit/abort API beside the sync one) opens as before.
        case WalRecordType.COMMITTED_BATCH:
        case WalRecordType.PREPARE: {
          const wb = decodeWalBatch(rec.payload, source);
          if (this.batches.has(wb.batchId)) continue; // already in a block, or re-logged by a flush
          const batch = decodeBatch(wb.batchBytes, source);
          this.hlc.observe(wb.hlc);
          try {
            const ops = this.plan(batch);
            const phase = rec.type === WalRecordType.PREPARE ? "prepared" : "committed";
            const st = this.registerBatch(wb.batchId, wb.sha256, batch, wb.hlc, phase);
            this.applyOps(ops, batch.origin, st.headRef);
            if (phase === "prepared") st.pending = { ops, walPayload: rec.payload.slice() };
            else {
              this.unshare(ops, st);
              this.opts.onCommitted?.(st.batchId, st.sha256, wb.batchBytes);
            }
            applied++;
          } catch (err) {
            // A batch was acked only after its checks passed against everything before it; replaying in the same order
            // must pass again. A conflict here means the stored data changed underneath: report it loudly, keep going.
            if (!(err instanceof ConflictError)) throw err;
            this.opts.log.error({ batchId: wb.batchId, err: err.message }, "WAL replay: batch conflicts with stored data; not applied");
          }
          break;
        }
        case WalRecordType.COMMIT:
        case WalRecordType.ABORT: {
          const mark = decodeWalMark(rec.payload, source);
          const st = this.batches.get(mark.batchId);
          if (st === undefined || st.phase === "committed") continue; // flushed already, or a repeated mark
          if (st.sha256 !== mark.sha256) {
            this.opts.log.error({ batchId: mark.batchId, segment: rec.segment, offset: rec.offset }, "WAL replay: a mark names another digest than its batch; ignored");
            continue;
          }
          if (rec.type === WalRecordType.COMMIT) this.decideCommit(st);
          else this.decideAbort(st);
          break;
        }
        case WalRecordType.REPAIR: {
          const rr = decodeWalRepair(rec.payload, source);
          this.hlc.observe(rr.hlc);
          try {
            // The rules of repair(), so a record repeated (or already flushed into a block) stores nothing new.
            const r = this.installRepair(rr, rr.part);
            if (r.deferred) {
              // Live, a repair of an undecided batch writes no record: this one was logged before the batch became undecided.
              this.opts.log.warn({ batchId: rr.batchId, segment: rec.segment, offset: rec.offset }, "WAL replay: a repair of a batch undecided here; not applied");
              continue;
            }
            applied++;
          } catch (err) {
            if (!(err instanceof ConflictError) && !(err instanceof BadInputError)) throw err;
            this.opts.log.error({ batchId: rr.batchId, err: err.message }, "WAL replay: repair record disagrees with the batch stored under its id; not applied");
          }
          break;
        }
        case WalRecordType.REPLICA_LOG:
          if (this.opts.onReplicaLog === undefined) {
            this.opts.log.warn({ segment: rec.segment, offset: rec.offset }, "WAL: a replica log record and no cluster layer to read it; skipped");
            continue;
          }
          this.opts.onReplicaLog(rec.payload);
          applied++;
          break;
        default:
          this.opts.log.warn({ type: rec.type, segment: rec.segment, offset: rec.offset }, "WAL record of an unknown type; skipped");
      }
    }
    this.replaying = false;
    if (applied > 0) this.headOldestWriteMs = Date.now();
    this.opts.log.info({ batches: applied, headSamples: this.headSamples, blocks: this.blockReaders.length }, "storage opened");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    if (this.flushing !== null) await this.flushing.catch(() => undefined);
    await Promise.allSettled([...this.inflight]);
    await this.wal?.close();
    for (const r of this.blockReaders) await r.close();
    await this.metadataStore?.close();
  }

  // ---- writes ----------------------------------------------------------

  async write(batch: Batch, batchId: string, encoded?: EncodedBatch): Promise<Receipt> {
    const r = await this.admit(batch, batchId, encoded);
    return this.receipt(r.st, r.accepted, batch.sampleCount - r.accepted, r.duplicate);
  }

  lookupBatch(batchId: string): BatchInfo | null {
    const st = this.batches.get(batchId);
    return st === undefined ? null : batchInfo(st);
  }

  // ---- cluster: synchronous reservation -----------------------------------
  // The replication layer (src/cluster/engine-store.ts) calls these synchronously from its state machine and makes
  // them durable itself, as REPLICA_LOG records (appendReplicaLog) that it replays on open (onReplicaLog). None of
  // them writes the WAL.

  /**
   * Checks the batch without the WAL: the id known with another digest → id-conflict; known with this digest →
   * duplicate (its phase); a point holding another value in a committed, prepared or reserved batch → conflict (the
   * points, at most 100, and the batches holding them); else the points are reserved invisibly and the batch is held
   * as prepared, its bytes kept while it is in the head (batchBytes).
   */
  reserveSync(batch: Batch, batchId: string, sha256: string, hlc: bigint, bytes: Uint8Array): ReserveSyncResult {
    this.checkWritable();
    this.hlc.observe(hlc);
    const known = this.batches.get(batchId);
    if (known !== undefined)
      return known.sha256 === sha256 ? { kind: "duplicate", phase: known.phase } : { kind: "id-conflict", sha256: known.sha256 };
    const holders = new Set<string>();
    let ops: Op[];
    try {
      ops = this.plan(batch, holders);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      this.m.batches.inc({ outcome: "conflict" });
      this.counters.conflicts++;
      return { kind: "conflict", points: err.points, holders: [...holders].sort() };
    }
    const st = this.registerBatch(batchId, sha256, batch, hlc, "prepared");
    this.applyOps(ops, batch.origin, st.headRef);
    st.pending = { ops, walPayload: null };
    st.bytes = bytes;
    const accepted = countChanges(ops);
    this.m.batches.inc({ outcome: "stored" });
    this.m.samples.inc(accepted);
    this.counters.samples += accepted;
    this.counters.batches++;
    if (this.headOldestWriteMs === null) this.headOldestWriteMs = Date.now();
    return { kind: "ok" };
  }

  /** Makes a prepared batch visible, without a WAL mark. */
  commitSync(batchId: string): void {
    const st = this.batches.get(batchId);
    if (st === undefined) throw new NotFoundError(`batch "${batchId}" is not prepared here`);
    if (st.phase === "committed") return;
    assert(st.phase === "prepared", `commit of batch ${batchId} in phase ${st.phase}`);
    this.decideCommit(st);
    if (!this.replaying) this.maybeAutoFlush(false);
  }

  /** Undoes a prepared batch (its points are released), without a WAL mark. Unknown id: no-op. */
  abortSync(batchId: string): void {
    const st = this.batches.get(batchId);
    if (st === undefined) return;
    if (st.phase === "committed") throw new ConflictError(`batch "${batchId}" is committed; it cannot be aborted`, [], { batchId });
    assert(st.phase === "prepared", `abort of batch ${batchId} in phase ${st.phase}`);
    this.decideAbort(st);
  }

  /**
   * The canonical bytes of a batch reserved by reserveSync while it is in the head; null for other batches and once
   * flushed into a block (blocks keep points, not batch bytes: catch-up of flushed batches must go by points).
   */
  batchBytes(batchId: string): Uint8Array | null {
    const st = this.batches.get(batchId);
    return st !== undefined && st.headRef >= 0 ? st.bytes : null;
  }

  /** Batches in a phase stamped at or after `fromHlc` (head and blocks), in no particular order. */
  listBatches(phase: BatchPhase, fromHlc: bigint): BatchInfo[] {
    const out: BatchInfo[] = [];
    for (const b of this.batches.values()) if (b.phase === phase && b.hlc >= fromHlc) out.push(batchInfo(b));
    return out;
  }

  /** Appends an opaque REPLICA_LOG record; resolves once it is durable (group commit). */
  appendReplicaLog(payload: Uint8Array): Promise<void> {
    try {
      this.checkWritable();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const wal = this.wal;
    assert(wal !== null, "replica log before open");
    const p = wal.append(WalRecordType.REPLICA_LOG, payload).then(
      () => undefined,
      (err: Error) => {
        if (!(err instanceof OverloadError)) this.failed = err;
        throw err;
      },
    );
    // A flush waits for these (they may land in a segment it deletes) and so does close().
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.inflight.add(settled);
    void settled.finally(() => this.inflight.delete(settled));
    return p;
  }

  // ---- cluster: points copied from a peer replica ---------------------------------
  // Catch-up of flushed data, rebuild of a wiped node, read repair and anti-entropy (src/cluster/point-sync.ts) copy
  // committed points by value once a peer has flushed the batch bytes into a block (blocks keep points, not bytes).

  /**
   * Installs committed points of batch meta.batchId that a peer holds. `part` is a canonical batch (core/batch.ts) of
   * a subset of that batch's points, with the original batch's origin, shardId and inference; `partBytes` its
   * canonical encoding. Resolves once durable.
   *
   * The id held here with another digest → ConflictError, nothing stored. Held but undecided (reserved or prepared) →
   * nothing stored, `deferred`: the replication protocol decides it. Unknown → registered as committed with the
   * meta's digest, stamp and size (a later write of it answers duplicate). Then per point, as plan() but never refusing
   * the whole part: absent → stored; the same value bits of the same origin class there → present (held by an
   * undecided batch, the repair takes it over so it stays visible whatever becomes of that batch); an original where
   * an inferred point stands → stored (replaces it); an inferred one where an original stands → present (kept);
   * another value of the same origin class → divergent: not stored, reported (at most 100) and counted.
   *
   * The points are visible at once, as committed data is, and durable once the REPAIR record's fsync returns: a
   * crash before that loses only repaired copies, which the peer still has. A part holding nothing new writes no
   * record (it waits for the REPAIR records still in flight, which may hold the points it found present).
   */
  async repair(meta: RepairMeta, part: Batch, partBytes: Uint8Array): Promise<RepairResult> {
    this.checkWritable();
    // A flush drops from the head what it wrote into its block: nothing may be installed while it runs.
    while (this.flushing !== null) await this.flushing.catch(() => undefined);
    this.checkWritable();
    const id = meta.batchId;
    if (!/^[0-9a-f]{64}$/.test(meta.sha256)) throw new BadInputError(`repair of batch ${id}: sha256 must be 64 lowercase hex digits`, { field: "sha256" });
    if (meta.hlc < INT64_MIN || meta.hlc > INT64_MAX) throw new BadInputError(`repair of batch ${id}: hlc ${meta.hlc} is not an int64`, { field: "hlc" });
    if (!Number.isSafeInteger(meta.sampleCount) || meta.sampleCount < part.sampleCount)
      throw new BadInputError(`repair of batch ${id}: a part of ${part.sampleCount} samples of a batch of ${meta.sampleCount}`, { field: "sampleCount" });
    const problem = nonCanonical(part);
    if (problem !== null) throw new BadInputError(`repair of batch ${id}: the part is not a canonical batch: ${problem}`);
    // What the WAL replays is partBytes, what is applied now is part: they must be one content.
    assert(equalBytes(encodeBatch(part), partBytes), `repair of batch ${id}: partBytes is not the canonical encoding of part`);
    const payload = encodeWalRepair({ batchId: id, sha256: meta.sha256, hlc: meta.hlc, sampleCount: meta.sampleCount, partBytes });
    // Refused before anything is applied: a record the WAL would refuse must not leave visible points behind.
    if (payload.length > RECORD_BYTES_MAX_DEFAULT) throw new TooLargeError("bytes of one repair record (split the part)", RECORD_BYTES_MAX_DEFAULT);
    if (this.inflight.size >= this.opts.limits.pendingWritesMax)
      throw new OverloadError(`${this.inflight.size} writes are waiting for the WAL (limit ${this.opts.limits.pendingWritesMax})`);
    this.hlc.observe(meta.hlc);
    const r = this.installRepair(meta, part);
    if (r.deferred) return { stored: 0, present: 0, divergent: [], deferred: true };
    assert(r.st !== null, "an installed repair without its batch");
    this.m.repaired.inc(r.stored);
    this.m.repairDivergent.inc(r.divergentCount);
    if (r.stored > 0 && this.headOldestWriteMs === null) this.headOldestWriteMs = Date.now();
    await this.logRepair(payload, r.st, r.registered, r.changed);
    this.maybeAutoFlush(false);
    return { stored: r.stored, present: r.present, divergent: r.divergent, deferred: false };
  }

  /** The synchronous part of repair(), shared with WAL replay: checks, per-point decisions, head changes. */
  private installRepair(meta: RepairMeta, part: Batch): RepairInstall {
    const id = meta.batchId;
    const known = this.batches.get(id);
    if (known !== undefined) {
      if (known.sha256 !== meta.sha256)
        throw new ConflictError(`batch id "${id}" is held here with other content (stored SHA-256 ${known.sha256}, repair names ${meta.sha256})`, [], { batchId: id });
      if (known.phase !== "committed")
        return { deferred: true, st: null, registered: false, changed: false, stored: 0, present: 0, divergent: [], divergentCount: 0 };
      // The digest names origin, shard, inference and size: a part describing the batch otherwise is not of it.
      const differs =
        known.origin !== part.origin ? "origin"
        : known.shardId !== part.shardId ? "shard id"
        : known.inference !== part.inference ? "inference"
        : known.sampleCount !== meta.sampleCount ? "sample count"
        : null;
      if (differs !== null) throw new BadInputError(`repair of batch ${id}: its ${differs} differs from the batch held here under the same digest`);
    }
    const ops: Op[] = [];
    const takeovers: { s: SeriesState; t: bigint }[] = [];
    const divergent: ConflictingPoint[] = [];
    let divergentCount = 0;
    let present = 0;
    this.visitPoints(part, (s, key, t, v, hi, c) => {
      switch (c.kind) {
        case "absent":
        case "replaces":
          ops.push(this.storeOp(s, hi, t, v));
          return;
        case "same":
          present++;
          if (c.heldUndecided) takeovers.push({ s, t });
          return;
        case "differs":
          divergentCount++;
          if (divergent.length < 100) divergent.push({ series: key, timestampNs: t.toString(), storedValue: c.stored.v, offeredValue: v });
          return;
        case "yields":
          present++; // an original stands there: inference yields
          return;
      }
    });
    let st = known;
    const registered = st === undefined;
    if (st === undefined) {
      const desc = { shardId: part.shardId, origin: part.origin, inference: part.inference, sampleCount: meta.sampleCount };
      st = this.registerBatch(id, meta.sha256, desc, meta.hlc, "committed");
    } else if ((ops.length > 0 || takeovers.length > 0) && st.headRef < 0) {
      // Flushed already: it re-enters the head table, and the next flush names it in a second block (attachBlock allows it).
      st.headRef = this.headBatches.length;
      this.headBatches.push(st);
    }
    this.applyOps(ops, part.origin, st.headRef);
    for (const { s, t } of takeovers) {
      // Held by an undecided batch until now: visible from here on.
      this.digestCache.touch(t);
      const i = s.head.find(t);
      assert(i >= 0, "takeover of a point no longer in the head");
      // rollback() of the undecided holder leaves a point another batch took over: it stays, visible, as this batch's.
      s.head.batchRefs[i] = st.headRef;
    }
    return { deferred: false, st, registered, changed: registered || ops.length > 0 || takeovers.length > 0, stored: ops.length, present, divergent, divergentCount };
  }

  /** Makes a repair durable: its own REPAIR record, or, for a part with nothing new, the records it relies on. */
  private async logRepair(payload: Uint8Array, st: BatchState, registered: boolean, changed: boolean): Promise<void> {
    if (!changed && !this.repairsUnlogged) {
      const outcomes = await Promise.allSettled([...this.repairLogs]);
      if (outcomes.every((o) => o.status === "fulfilled")) return;
      // A record that may have held points found present here failed: log them again (the WAL may refuse, too).
      this.checkWritable();
    }
    const logged = this.appendRepair(payload);
    // A write() of this batch id answers duplicate only once the batch's points here are durable.
    st.durable = registered ? logged : Promise.all([st.durable, logged]).then(() => undefined);
    st.durable.catch(() => undefined); // whoever awaits it sees the failure; unawaited it is no unhandled rejection
    await logged;
  }

  private appendRepair(payload: Uint8Array): Promise<void> {
    const wal = this.wal;
    assert(wal !== null, "repair before open");
    const p = wal.append(WalRecordType.REPAIR, payload).then(
      () => undefined,
      (err: Error) => {
        if (err instanceof OverloadError) {
          // Its points are visible already and are not taken back (readers and other repairs may rely on them); they
          // stay in the head and reach a block at the next flush. Until then every repair logs its own part.
          this.repairsUnlogged = true;
          throw err;
        }
        this.failed = err;
        throw new UnavailableError("the write-ahead log failed; this node takes no more writes until restarted", 5, { cause: err });
      },
    );
    // A flush and close() wait for it like for any write.
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.inflight.add(settled);
    this.repairLogs.add(p);
    void settled.finally(() => {
      this.inflight.delete(settled);
      this.repairLogs.delete(p);
    });
    return p;
  }

  private decideCommit(st: BatchState): void {
    if (this.opts.onCommitted !== undefined) {
      const bytes = st.bytes ?? (st.pending !== null && st.pending.walPayload !== null ? decodeWalBatch(st.pending.walPayload, `batch ${st.batchId}`).batchBytes : null);
      if (bytes !== null) this.opts.onCommitted(st.batchId, st.sha256, bytes);
    }
    st.phase = "committed";
    if (st.pending !== null) {
      this.unshare(st.pending.ops, st);
      // Its points (and those it shared with undecided batches, taken over) become visible.
      this.touchOps(st.pending.ops);
    }
    st.pending = null;
  }

  /** Visibility may have changed at these points: their digest windows are recomputed when next asked for. */
  private touchOps(ops: readonly Op[]): void {
    for (const op of ops) this.digestCache.touch(op.t);
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
      if (b === st || this.batches.get(b.batchId) !== b) continue;
      if (b.phase === "committed") return b;
      found ??= b;
    }
    return found;
  }

  /** `st` is committed: it takes over the points it shares with batches not committed, and leaves the sharer index. */
  private unshare(ops: Op[], st: BatchState): void {
    for (const op of ops) {
      if (op.kind !== "share") continue;
      this.dropSharer(op.s, op.t, st);
      if (st.phase !== "committed") continue;
      const h = op.s.head;
      const i = h.find(op.t);
      if (i < 0) continue;
      const owner = this.headBatches[h.batchRefs[i]!]!;
      if (owner !== st && owner.phase !== "committed") h.batchRefs[i] = st.headRef;
    }
  }

  private decideAbort(st: BatchState): void {
    assert(st.pending !== null, "abort without the changes to undo");
    this.rollback(st.pending.ops, st);
  }

  /** The write path: idempotency, point checks, head reservation, WAL durability. */
  private async admit(batch: Batch, batchId: string, encoded: EncodedBatch | undefined): Promise<{ st: BatchState; accepted: number; duplicate: boolean }> {
    this.checkWritable();
    while (this.flushing !== null) await this.flushing.catch(() => undefined);
    this.checkWritable();
    const { bytes, sha256: sha } = encoded ?? encodeWithDigest(batch);
    const known = this.batches.get(batchId);
    if (known !== undefined) {
      if (known.sha256 !== sha) {
        this.m.batches.inc({ outcome: "conflict" });
        this.counters.conflicts++;
        throw new ConflictError(`batch id "${batchId}" was already used for different content (stored SHA-256 ${known.sha256}, offered ${sha})`, [], { batchId });
      }
      await known.durable;
      this.m.batches.inc({ outcome: "duplicate" });
      this.m.duplicates.inc(batch.sampleCount);
      this.counters.duplicates += batch.sampleCount;
      return { st: known, accepted: 0, duplicate: true };
    }
    if (this.inflight.size >= this.opts.limits.pendingWritesMax)
      throw new OverloadError(`${this.inflight.size} writes are waiting for the WAL (limit ${this.opts.limits.pendingWritesMax})`);

    let ops: Op[];
    try {
      ops = this.plan(batch);
    } catch (err) {
      if (err instanceof ConflictError) {
        this.m.batches.inc({ outcome: "conflict" });
        this.counters.conflicts++;
      }
      throw err;
    }
    const hlc = this.hlc.now();
    const st = this.registerBatch(batchId, sha, batch, hlc, "reserved");
    this.applyOps(ops, batch.origin, st.headRef);
    const accepted = countChanges(ops);
    const wal = this.wal;
    assert(wal !== null, "write before open");
    const payload = encodeWalBatch({ batchId, sha256: sha, hlc, batchBytes: bytes });
    const durable = (async () => {
      try {
        await wal.append(WalRecordType.COMMITTED_BATCH, payload);
      } catch (err) {
        this.rollback(ops, st);
        if (!(err instanceof OverloadError)) this.failed = err as Error;
        throw err;
      }
      st.phase = "committed";
      this.unshare(ops, st);
      this.touchOps(ops);
      this.opts.onCommitted?.(st.batchId, st.sha256, bytes);
    })();
    (st as { durable: Promise<void> }).durable = durable;
    this.inflight.add(durable);
    try {
      await durable;
    } catch (err) {
      if (err instanceof OverloadError) throw err;
      throw new UnavailableError("the write-ahead log failed; this node takes no more writes until restarted", 5, { cause: err });
    } finally {
      this.inflight.delete(durable);
    }
    this.m.batches.inc({ outcome: "stored" });
    this.m.samples.inc(accepted);
    this.m.duplicates.inc(batch.sampleCount - accepted);
    this.counters.samples += accepted;
    this.counters.duplicates += batch.sampleCount - accepted;
    this.counters.batches++;
    if (this.headOldestWriteMs === null) this.headOldestWriteMs = Date.now();
    this.maybeAutoFlush(false);
    return { st, accepted, duplicate: false };
  }

  private checkWritable(): void {
    if (this.closed) throw new UnavailableError("the node is shutting down", 1);
    if (this.failed !== null) throw new UnavailableError(`the write-ahead log failed (${this.failed.message}); restart the node`, 5);
  }

  private receipt(st: BatchState, accepted: number, duplicates: number, duplicate: boolean): Receipt {
    return {
      batchId: st.batchId,
      sha256: st.sha256,
      shardId: st.shardId,
      hlc: st.hlc.toString(),
      samples: st.sampleCount,
      accepted,
      duplicates,
      conflicts: [],
      duplicate,
      replicas: ["local"],
    };
  }

  private registerBatch(batchId: string, sha: string, batch: BatchDesc, hlc: bigint, phase: BatchPhase): BatchState {
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
      headRef: this.headBatches.length,
      blockPaths: [],
      durable: Promise.resolve(),
    };
    this.headBatches.push(st);
    this.batches.set(batchId, st);
    return st;
  }

  /**
   * Checks every point of the batch against head and blocks; returns the changes to make, or throws ConflictError
   * (adding the ids of the batches holding conflicting points to `holders` if given).
   */
  /**
   * Visits every point of a batch with what is stored at its (series, timestamp), classified by the identity rules
   * (decision 6): absent; the same value and origin class (and whether an undecided batch holds it); a different value
   * of the same class; an incoming inferred point where an original stands (it yields); an incoming original where an
   * inferred point stands (it replaces it). `hi` is the head index from s.head.find (negative: not in the head).
   */
  private visitPoints(batch: Batch, visit: (s: SeriesState, key: string, t: bigint, v: number, hi: number, c: StoredCase) => void): void {
    const incoming = ORIGIN_CODE[batch.origin];
    for (const bs of batch.series) {
      const s = this.series.get(bs.key) ?? this.seriesFor(bs.key, bs.labels);
      const n = bs.timestampsNs.length;
      const blocks = n > 0 ? this.blocksOverlapping(s, bs.timestampsNs[0]!, bs.timestampsNs[n - 1]!) : [];
      for (let i = 0; i < n; i++) {
        const t = bs.timestampsNs[i]!;
        const v = bs.values[i]!;
        const hi = s.head.find(t);
        const stored = this.storedPoint(s, hi, blocks, t);
        let c: StoredCase;
        if (stored === null) c = ABSENT;
        else if (stored.origin !== incoming) c = incoming === ORIGIN_CODE.inferred ? YIELDS : REPLACES;
        else if (!sameValue(stored.v, v)) c = { kind: "differs", stored };
        else c = hi >= 0 && this.headBatches[s.head.batchRefs[hi]!]!.phase !== "committed" ? SAME_HELD : SAME;
        visit(s, bs.key, t, v, hi, c);
      }
    }
  }

  /** The op that stores (t, v): a replacement of the head point at `hi`, else an insertion into the head. */
  private storeOp(s: SeriesState, hi: number, t: bigint, v: number): Op {
    if (hi >= 0)
      return { kind: "replace", s, index: hi, t, v, oldV: s.head.values[hi]!, oldOrigin: s.head.origins[hi]!, oldOwner: this.headBatches[s.head.batchRefs[hi]!]! };
    return { kind: "insert", s, t, v };
  }

  /** The point stored at (s, t): in the head (at `hi`, from s.head.find) or else in one of `blocks`; null when absent. */
  private storedPoint(s: SeriesState, hi: number, blocks: { ref: BlockRef; chunk: ChunkRef }[], t: bigint): { v: number; origin: number; batchId: string } | null {
    if (hi >= 0) return { v: s.head.values[hi]!, origin: s.head.origins[hi]!, batchId: this.headBatches[s.head.batchRefs[hi]!]!.batchId };
    return blocks.length > 0 ? this.findInBlocks(blocks, t) : null;
  }

  private plan(batch: Batch, holders?: Set<string>): Op[] {
    const ops: Op[] = [];
    const conflicts: ConflictingPoint[] = [];
    this.visitPoints(batch, (s, key, t, v, hi, c) => {
      switch (c.kind) {
        case "absent":
        case "replaces": // an original arrives where an inferred point stands: it replaces it
          ops.push(this.storeOp(s, hi, t, v));
          return;
        case "same":
          // Identical replay. Held by a batch whose fate is open: share it, so it outlives that batch's rollback.
          if (c.heldUndecided) ops.push({ kind: "share", s, t });
          return;
        case "differs":
          if (conflicts.length < 100) conflicts.push({ series: key, timestampNs: t.toString(), storedValue: c.stored.v, offeredValue: v });
          if (holders !== undefined) {
            holders.add(c.stored.batchId);
            for (const b of this.sharers.get(s)?.get(t) ?? []) if (this.batches.get(b.batchId) === b) holders.add(b.batchId);
          }
          return;
        case "yields":
          return; // an original is already there: inference yields
      }
    });
    if (conflicts.length > 0)
      throw new ConflictError(
        `${conflicts.length >= 100 ? "100 or more" : conflicts.length} point(s) already hold a different value; nothing of this batch was stored`,
        conflicts,
      );
    return ops;
  }

  private applyOps(ops: Op[], origin: Origin, batchRef: number): void {
    const code = ORIGIN_CODE[origin];
    for (const op of ops) {
      if (op.kind === "share") {
        this.addSharer(op.s, op.t, this.headBatches[batchRef]!);
        continue;
      }
      // A committed batch's points (a repair) are visible at once; a replacement hides the point it replaces.
      this.digestCache.touch(op.t);
      if (op.kind === "insert") {
        const pos = op.s.head.find(op.t);
        assert(pos < 0, "insert of a point the plan saw absent, now present");
        op.s.head.insertAt(-pos - 1, op.t, op.v, code, batchRef);
        this.headSamples++;
      } else {
        const i = op.s.head.find(op.t);
        assert(i >= 0, "replace of a point no longer in the head");
        op.s.head.replaceAt(i, op.v, code, batchRef);
      }
    }
  }

  /**
   * Undoes a batch's head changes. A point it holds that another held batch shares passes to that batch; a point
   * another batch took over (it committed first) stays; a shared point it inherited is released like its own.
   */
  private rollback(ops: Op[], st: BatchState): void {
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
        if (this.batches.get(owner.batchId) !== owner) {
          // Its former owner was undone meanwhile (an undecided batch, aborted): the point went with it.
          remove(op.s, op.t);
          continue;
        }
        if (owner.headRef < 0 || this.flushSnapshot?.has(owner.headRef) === true) {
          // Flushed into a block meanwhile (or being flushed: the block being written was cut without this point,
          // which the replacement held), so the point re-enters the head under a new ref of its owner, as a repaired
          // flushed batch does, and the next flush names it in a second block.
          assert(owner.phase === "committed", "only committed batches leave the head table");
          owner.headRef = this.headBatches.length;
          this.headBatches.push(owner);
        }
        h.replaceAt(i, op.oldV, op.oldOrigin, owner.headRef);
        continue;
      }
      remove(op.s, op.t);
    }
    for (const [s, set] of removals) {
      const h = s.head;
      this.headSamples -= h.removeWhere((j) => h.batchRefs[j] === st.headRef && set.has(h.timestampsNs[j]!));
    }
    this.batches.delete(st.batchId);
    st.phase = "reserved";
    st.pending = null;
  }

  private seriesFor(key: string, labels: Labels): SeriesState {
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

  private blocksOverlapping(s: SeriesState, minT: bigint, maxT: bigint): { ref: BlockRef; chunk: ChunkRef }[] {
    const out: { ref: BlockRef; chunk: ChunkRef }[] = [];
    for (const ref of s.blocks)
      for (const c of ref.entry.chunks) if (c.maxTimeNs >= minT && c.minTimeNs <= maxT) out.push({ ref, chunk: c });
    return out;
  }

  /**
   * A chunk, decoded and verified. The arrays are shared with the cache (and, for timestamps, with every chunk of
   * the same shared column): readers must not write into them.
   */
  private chunk(ref: BlockRef, c: ChunkRef): ChunkData {
    const hit = this.chunkCache.get(c);
    if (hit !== undefined) {
      this.chunkCache.delete(c);
      this.chunkCache.set(c, hit);
      return hit.data;
    }
    const d = ref.reader.readChunk(c, true);
    const n = d.timestampsNs.length;
    // Counts the timestamps even when shared with other chunks: an over-estimate keeps the bound an upper bound.
    const bytes = n * (8 + 8 + 1 + 4) + 64;
    this.chunkCache.set(c, { reader: ref.reader, data: d, bytes });
    this.chunkCacheBytes += bytes;
    while (this.chunkCacheBytes > CHUNK_CACHE_BYTES_MAX && this.chunkCache.size > 1) {
      const [oldest, e] = this.chunkCache.entries().next().value!;
      this.chunkCache.delete(oldest);
      this.chunkCacheBytes -= e.bytes;
    }
    return d;
  }

  /** The stored point at t in blocks: an original wins over an inferred one. */
  private findInBlocks(cands: { ref: BlockRef; chunk: ChunkRef }[], t: bigint): { v: number; origin: number; batchId: string } | null {
    let found: { v: number; origin: number; batchId: string } | null = null;
    for (const { ref, chunk } of cands) {
      if (t < chunk.minTimeNs || t > chunk.maxTimeNs) continue;
      const d = this.chunk(ref, chunk);
      const i = bsearch(d.timestampsNs, t);
      if (i < 0) continue;
      const o = d.origins[i]!;
      if (found === null || (found.origin !== ORIGIN_CODE.original && o === ORIGIN_CODE.original))
        found = { v: d.values[i]!, origin: o, batchId: ref.reader.batches()[d.batchRefs[i]!]!.batchId };
    }
    return found;
  }

  // ---- flush & retention ----------------------------------------------

  private maybeAutoFlush(byTimer: boolean): void {
    if (this.flushing !== null || this.closed || this.failed !== null) return;
    const full = this.headSamples >= (this.opts.headSamplesMax ?? DEFAULT_HEAD_SAMPLES_MAX);
    const old = byTimer && this.headOldestWriteMs !== null && Date.now() - this.headOldestWriteMs >= this.flushIntervalMs;
    if (!full && !old) return;
    this.flush().catch((err: Error) => this.opts.log.error({ err: err.message }, "background flush failed"));
  }

  flush(): Promise<FlushResult> {
    if (this.flushing !== null) return this.flushing;
    return this.startFlush(false);
  }

  private startFlush(rewrite: boolean): Promise<FlushResult> {
    assert(this.flushing === null, "one flush at a time");
    const p = this.doFlush(rewrite).finally(() => {
      this.flushing = null;
      this.flushSnapshot = null;
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
    this.checkWritable();
    // A running flush may have rotated before the damaged segment was the active one: a rotation of our own.
    while (this.flushing !== null) await this.flushing.catch(() => undefined);
    this.checkWritable();
    const r = await this.startFlush(true);
    this.opts.log.warn({ block: r.blockPath, samples: r.samples }, "WAL rewritten: every segment before the rotation deleted (damage found while running)");
  }

  private async doFlush(rewrite: boolean): Promise<FlushResult> {
    // New writes wait (admit() loops on this.flushing); let the ones in flight become durable or fail first.
    await Promise.allSettled([...this.inflight]);
    const wal = this.wal;
    assert(wal !== null, "flush before open");
    const hasCommitted = this.headBatches.some((b) => b.phase === "committed");
    if (!hasCommitted && !rewrite) return { blockPath: null, series: 0, samples: 0 };
    // rotate() is a barrier: every record appended from here on lands in the new segment.
    const firstKept = await wal.rotate();
    // Snapshot what goes into the block. commitSync()/abortSync() may still run while we await below; they only touch
    // batches outside this snapshot, which stay in the head.
    // By table index and batch identity, not by b.headRef: a committed batch may sit in the table twice (an abort
    // during an earlier, failed flush re-entered it, see rollback); the block's batch table names it once.
    const inBlock = new Set<number>();
    const blockBatches: BatchState[] = [];
    const blockIndex = new Map<BatchState, number>();
    const remap = new Int32Array(this.headBatches.length).fill(-1);
    this.headBatches.forEach((b, ref) => {
      if (b.phase !== "committed") return;
      let k = blockIndex.get(b);
      if (k === undefined) {
        k = blockBatches.length;
        blockBatches.push(b);
        blockIndex.set(b, k);
      }
      remap[ref] = k;
      inBlock.add(ref);
    });
    this.flushSnapshot = inBlock;
    // Prepared batches outlive the segments about to be deleted: log them again in the new one. In cluster mode the
    // replication layer re-logs its own state (undecided batches, votes, fences) instead.
    if (this.opts.relog !== undefined) {
      const payloads = this.opts.relog();
      await Promise.all(payloads.map((p) => wal.append(WalRecordType.REPLICA_LOG, p)));
    } else {
      const undecided = this.headBatches.filter((b) => b.phase === "prepared");
      const payloadOf = (b: BatchState): Uint8Array =>
        b.pending!.walPayload ?? encodeWalBatch({ batchId: b.batchId, sha256: b.sha256, hlc: b.hlc, batchBytes: b.bytes! });
      await Promise.all(undecided.map((b) => wal.append(WalRecordType.PREPARE, payloadOf(b))));
    }
    if (blockBatches.length === 0) {
      // A rewrite with no committed batch in the head: nothing to cut, only the old segments to drop.
      assert(rewrite, "a flush without committed batches returned early");
      await this.opts.beforeWalDrop?.();
      await wal.removeSegmentsBefore(firstKept);
      return { blockPath: null, series: 0, samples: 0 };
    }

    const cutoff = this.retentionCutoffNs();
    const input: BlockSeriesInput[] = [];
    let samples = 0;
    for (const s of [...this.series.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
      const h = s.head;
      let n = 0;
      for (let i = 0; i < h.length; i++) if (inBlock.has(h.batchRefs[i]!) && (cutoff === null || h.timestampsNs[i]! >= cutoff)) n++;
      if (n === 0) continue;
      const data = { timestampsNs: new BigInt64Array(n), values: new Float64Array(n), origins: new Uint8Array(n), batchRefs: new Uint32Array(n) };
      let k = 0;
      for (let i = 0; i < h.length; i++) {
        const ref = h.batchRefs[i]!;
        if (!inBlock.has(ref) || (cutoff !== null && h.timestampsNs[i]! < cutoff)) continue;
        data.timestampsNs[k] = h.timestampsNs[i]!;
        data.values[k] = h.values[i]!;
        data.origins[k] = h.origins[i]!;
        data.batchRefs[k] = remap[ref]!;
        k++;
      }
      input.push({ labels: s.labels, data });
      samples += n;
    }
    const batchEntries: BlockBatchEntry[] = blockBatches.map((b) => ({
      batchId: b.batchId,
      sha256: b.sha256,
      origin: b.origin,
      shardId: b.shardId,
      hlc: b.hlc.toString(),
      sampleCount: b.sampleCount,
      inference: b.inference,
    }));
    const meta = await writeBlock(this.blocksDir, { series: input, batches: batchEntries });
    const reader = await BlockReader.open(meta.path);
    // From here the block holds the snapshot: swap synchronously (no await until the WAL cleanup).
    // The table is renumbered below: rollback() must not test the new refs against the snapshot's old ones.
    this.flushSnapshot = null;
    const kept: BatchState[] = [];
    const newRef = new Int32Array(this.headBatches.length).fill(-1);
    this.headBatches.forEach((b, ref) => {
      if (inBlock.has(ref) || this.batches.get(b.batchId) !== b) return;
      newRef[ref] = kept.length;
      kept.push(b);
    });
    for (const b of blockBatches) {
      b.headRef = -1;
      b.blockPaths.push(meta.path);
      b.bytes = null;
      // Its points are in a fsynced block now, whatever became of its WAL records (a repair's refused for overload).
      b.durable = Promise.resolve();
    }
    // No repair applies while a flush runs (repair() waits for it), so every point one made visible is in this block.
    this.repairsUnlogged = false;
    kept.forEach((b, k) => (b.headRef = k));
    let headSamples = 0;
    for (const s of this.series.values()) {
      const h = s.head;
      if (h.length === 0) continue;
      h.removeWhere((i) => {
        if (!inBlock.has(h.batchRefs[i]!)) return false;
        // Past retention: left out of the block, so it stops being visible here (in this synchronous swap).
        if (cutoff !== null && h.timestampsNs[i]! < cutoff) this.digestCache.touch(h.timestampsNs[i]!);
        return true;
      });
      for (let i = 0; i < h.length; i++) {
        const r = newRef[h.batchRefs[i]!]!;
        assert(r >= 0, "a head sample of a batch that is neither flushed nor kept");
        h.batchRefs[i] = r;
      }
      headSamples += h.length;
      if (h.length === 0 && h.timestampsNs.length > 1024) {
        const fresh = new HeadSeries();
        Object.assign(h, { timestampsNs: fresh.timestampsNs, values: fresh.values, origins: fresh.origins, batchRefs: fresh.batchRefs });
      }
    }
    this.headBatches = kept;
    this.headSamples = headSamples;
    this.headOldestWriteMs = kept.length > 0 ? Date.now() : null;
    this.attachBlock(reader);
    await this.opts.beforeWalDrop?.();
    await wal.removeSegmentsBefore(firstKept);
    this.opts.log.info({ block: meta.path, series: input.length, samples, bytes: meta.sizeBytes, keptBatches: kept.length }, "head flushed to block");
    return { blockPath: meta.path, series: input.length, samples };
  }

  private retentionCutoffNs(): bigint | null {
    return this.opts.retentionMs === null ? null : nowNs() - BigInt(this.opts.retentionMs) * 1_000_000n;
  }

  private async applyRetention(): Promise<void> {
    const cutoff = this.retentionCutoffNs();
    if (cutoff === null || this.closed) return;
    const expired = this.blockReaders.filter((r) => r.meta.maxTimeNs < cutoff);
    for (const r of expired) {
      // detachBlock may have taken it while an earlier one was being deleted.
      if (!this.blockReaders.includes(r)) continue;
      // Forgotten once no block names it and it has no head points: its id may then take content again.
      this.unlinkBlock(r, "forget");
      await r.close();
      await rm(r.meta.path, { force: true });
      this.opts.log.info({ block: r.meta.path }, "block past retention deleted");
    }
    this.dropEmptySeries();
  }

  /**
   * Takes a block out of every read path, synchronously: series, batch locations, chunk cache, digest windows.
   * Batches left with no location are forgotten ("forget": retention, their idempotency window is over) or kept
   * known as committed ("keep": damage, their points come back by repair and a replay must still be a duplicate).
   */
  private unlinkBlock(r: BlockReader, batchesWithoutLocation: "forget" | "keep"): void {
    const at = this.blockReaders.indexOf(r);
    assert(at >= 0, `unlink of a block not attached: ${r.meta.path}`);
    this.blockReaders.splice(at, 1);
    for (const s of this.series.values()) if (s.blocks.some((b) => b.reader === r)) s.blocks = s.blocks.filter((b) => b.reader !== r);
    for (const e of r.batches()) {
      const b = this.batches.get(e.batchId);
      if (b === undefined) continue;
      const k = b.blockPaths.indexOf(r.meta.path);
      if (k < 0) continue;
      b.blockPaths.splice(k, 1);
      if (batchesWithoutLocation === "forget" && b.blockPaths.length === 0 && b.headRef < 0) this.batches.delete(e.batchId);
    }
    for (const [k, e] of [...this.chunkCache])
      if (e.reader === r) {
        this.chunkCache.delete(k);
        this.chunkCacheBytes -= e.bytes;
      }
    this.digestCache.forgetRange(r.meta.minTimeNs, r.meta.maxTimeNs);
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
  async detachBlock(path: string): Promise<DetachedBlock> {
    const r = this.blockReaders.find((x) => x.meta.path === path);
    if (r === undefined) throw new NotFoundError(`block ${path} is not attached here`);
    const m = r.meta;
    const batchIds = r.batches().map((b) => b.batchId);
    this.unlinkBlock(r, "keep");
    await r.close();
    const quarantinedTo = await this.quarantineBlock(path);
    const lost: DetachedBlock = { path, quarantinedTo, minTimeNs: m.minTimeNs, maxTimeNs: m.maxTimeNs, seriesCount: m.seriesCount, sampleCount: m.sampleCount, batchIds };
    this.opts.log.error(
      { block: path, quarantinedTo, minTimeNs: m.minTimeNs.toString(), maxTimeNs: m.maxTimeNs.toString(), samples: m.sampleCount, batches: batchIds.length },
      "damaged block detached: its samples are lost on this node until repaired from a peer",
    );
    return lost;
  }

  /**
   * The files the scrubber re-reads: every WAL segment (the active one up to its durable length) and every attached
   * block, WAL first.
   */
  scrubTargets(): ScrubTarget[] {
    const out: ScrubTarget[] = [];
    for (const f of this.wal?.segmentFiles() ?? []) out.push({ kind: "wal", path: f.path, sizeBytes: f.bytes });
    for (const r of this.blockReaders) out.push({ kind: "block", path: r.meta.path, sizeBytes: r.meta.sizeBytes });
    return out;
  }

  private dropEmptySeries(): void {
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

  // ---- reads -----------------------------------------------------------

  private candidates(sets: MatcherSets): SeriesState[] {
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
    return [...out].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private hasDataIn(s: SeriesState, startNs: bigint, endNs: bigint): boolean {
    const h = s.head;
    if (h.length > 0) {
      const i = h.lowerBound(startNs);
      for (let j = i; j < h.length && h.timestampsNs[j]! <= endNs; j++) if (this.visible(h, j)) return true;
    }
    return s.blocks.some((b) => b.entry.chunks.some((c) => c.maxTimeNs >= startNs && c.minTimeNs <= endNs));
  }

  private visible(h: HeadSeries, i: number): boolean {
    return this.headBatches[h.batchRefs[i]!]!.phase === "committed";
  }

  select(sets: MatcherSets, o: SelectOptions): SelectedSeries[] {
    const out: SelectedSeries[] = [];
    let total = 0;
    for (const s of this.candidates(sets)) {
      const r = this.readSeries(s, o.startNs, o.endNs, o.includeInferred);
      if (r === null) continue;
      if (out.length >= o.seriesMax) throw new TooLargeError("number of series in one read", o.seriesMax);
      total += r.timestampsNs.length;
      if (total > o.samplesMax) throw new TooLargeError("number of samples in one read", o.samplesMax);
      out.push(r);
    }
    return out;
  }

  private readSeries(s: SeriesState, startNs: bigint, endNs: bigint, includeInferred: boolean): SelectedSeries | null {
    const batchIds: string[] = [];
    const idIndex = new Map<string, number>();
    const ref = (id: string): number => {
      let k = idIndex.get(id);
      if (k === undefined) {
        k = batchIds.length;
        batchIds.push(id);
        idIndex.set(id, k);
      }
      return k;
    };
    const segs: Segment[] = [];
    for (const b of s.blocks) {
      // Chunks are in time order and do not overlap: a block whose chunks of this series miss the range is skipped
      // without visiting them (a one-window digest scan visits every series' every block).
      const cs = b.entry.chunks;
      if (cs.length === 0 || cs[cs.length - 1]!.maxTimeNs < startNs || cs[0]!.minTimeNs > endNs) continue;
      const table = b.reader.batches();
      const local = new Map<number, number>();
      for (const c of b.entry.chunks) {
        if (c.maxTimeNs < startNs || c.minTimeNs > endNs) continue;
        const d = this.chunk(b, c);
        const lo = lowerBoundArr(d.timestampsNs, startNs);
        const hi = upperBoundArr(d.timestampsNs, endNs);
        if (lo >= hi) continue;
        const n = hi - lo;
        const r0 = d.batchRefs[lo]!;
        let oneBatch = true;
        for (let i = lo + 1; i < hi && oneBatch; i++) oneBatch = d.batchRefs[i] === r0;
        let refs: Uint32Array;
        if (oneBatch) {
          // The common case (a series' samples come from one import line, one batch): no per-sample mapping, and
          // for the series' first batch a shared array of zeros instead of a new (off-heap) one per chunk.
          let k = local.get(r0);
          if (k === undefined) local.set(r0, (k = ref(table[r0]!.batchId)));
          refs = k === 0 && n <= ZERO_REFS.length ? ZERO_REFS.subarray(0, n) : new Uint32Array(n).fill(k);
        } else {
          refs = new Uint32Array(n);
          let prevR = -1;
          let k = 0;
          for (let i = lo; i < hi; i++) {
            const r = d.batchRefs[i]!;
            // Batch refs come in runs (one import line is one batch): look up only when the run changes.
            if (r !== prevR) {
              const known = local.get(r);
              k = known ?? ref(table[r]!.batchId);
              if (known === undefined) local.set(r, k);
              prevR = r;
            }
            refs[i - lo] = k;
          }
        }
        const whole = lo === 0 && hi === d.timestampsNs.length;
        segs.push(
          whole
            ? { ts: d.timestampsNs, vs: d.values, os: d.origins, refs }
            : { ts: d.timestampsNs.subarray(lo, hi), vs: d.values.subarray(lo, hi), os: d.origins.subarray(lo, hi), refs },
        );
      }
    }
    const h = s.head;
    if (h.length > 0) {
      const lo = h.lowerBound(startNs);
      const hi = h.lowerBound(endNs + 1n);
      if (lo < hi) {
        // Visible samples come in runs of one batch (a batch's samples of a series are contiguous in time): each run
        // is copied with typed-array set(), not sample by sample (a per-sample bigint read boxes one on the heap).
        const runs: [number, number, number][] = [];
        let n = 0;
        for (let i = lo; i < hi; ) {
          const r = h.batchRefs[i]!;
          let j = i + 1;
          while (j < hi && h.batchRefs[j] === r) j++;
          if (this.visible(h, i)) {
            runs.push([i, j, r]);
            n += j - i;
          }
          i = j;
        }
        if (n > 0) {
          const seg: Segment = { ts: new BigInt64Array(n), vs: new Float64Array(n), os: new Uint8Array(n), refs: new Uint32Array(n) };
          const local = new Map<number, number>();
          let k = 0;
          for (const [a, b, r] of runs) {
            let m = local.get(r);
            if (m === undefined) local.set(r, (m = ref(this.headBatches[r]!.batchId)));
            seg.ts.set(h.timestampsNs.subarray(a, b), k);
            seg.vs.set(h.values.subarray(a, b), k);
            seg.os.set(h.origins.subarray(a, b), k);
            seg.refs.fill(m, k, k + b - a);
            k += b - a;
          }
          segs.push(seg);
        }
      }
    }
    const merged = mergeSegments(segs);
    const out = includeInferred ? merged : filterOriginal(merged);
    if (out.ts.length === 0) return null;
    return { key: s.key, labels: s.labels, timestampsNs: out.ts, values: out.vs, origins: out.os, batchRefs: out.refs, batchIds };
  }

  seriesLabels(sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number): Labels[] {
    const out: Labels[] = [];
    for (const s of this.candidates(sets)) {
      if (!this.hasDataIn(s, startNs, endNs)) continue;
      if (out.length >= seriesMax) throw new TooLargeError("number of series in one read", seriesMax);
      out.push(s.labels);
    }
    return out;
  }

  private scope(sets: MatcherSets | null, startNs: bigint, endNs: bigint): SeriesState[] {
    const pool = sets === null ? [...this.series.values()] : this.candidates(sets);
    return pool.filter((s) => this.hasDataIn(s, startNs, endNs));
  }

  labelNames(sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[] {
    const names = new Set<string>();
    for (const s of this.scope(sets, startNs, endNs)) for (const [n] of s.labels) names.add(n);
    return [...names].sort();
  }

  putMetadata(items: readonly MetricMetadata[]): number {
    assert(this.metadataStore !== null, "metadata is stored once the engine is open");
    return this.metadataStore.put(items);
  }

  metadata(metric: string | null, limit: number, limitPerMetric: number): Record<string, MetadataEntry[]> {
    assert(this.metadataStore !== null, "metadata is read once the engine is open");
    return this.metadataStore.query(metric, limit, limitPerMetric);
  }

  labelValues(name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[] {
    const values = new Set<string>();
    for (const s of this.scope(sets, startNs, endNs)) for (const [n, v] of s.labels) if (n === name) values.add(v);
    return [...values].sort();
  }

  // ---- digests (docs/format/point-digest.md) ------------------------------------------
  // Through readSeries, so block chunks are checksum-verified as they load and a point is what a read would return:
  // committed only, one per (series, timestamp), an original over an inferred one, inferred points included.

  /**
   * Per aligned window [k·windowNs, (k+1)·windowNs) intersecting [startNs, endNs]: count and digest of the visible
   * points in the window and in [startNs, endNs]; windows with no point are omitted; sorted by startNs.
   *
   * For DIGEST_WINDOW_NS the windows come from a cache (DigestWindowCache): the first call scans every point, later
   * ones recompute only the windows whose visibility changed since (each by a scan of that window only), so a call
   * over all data costs O(windows) when nothing changed. The result is the scan's in every case.
   */
  digestWindows(startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[] {
    if (windowNs <= 0n) throw new BadInputError(`a digest window must be positive (got ${windowNs} ns)`, { field: "windowNs" });
    if (startNs > endNs) return [];
    if (windowNs === DIGEST_WINDOW_NS) return this.digestCache.get(startNs, endNs, (lo, hi) => this.scanWindows(lo, hi, windowNs));
    return this.digestWindowsScan(startNs, endNs, windowNs);
  }

  /** digestWindows by a scan of every point in the range, whatever the window size (tests compare the cache with it). */
  digestWindowsScan(startNs: bigint, endNs: bigint, windowNs: bigint): WindowDigest[] {
    if (windowNs <= 0n) throw new BadInputError(`a digest window must be positive (got ${windowNs} ns)`, { field: "windowNs" });
    if (startNs > endNs) return [];
    return [...this.scanWindows(startNs, endNs, windowNs)]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, w]) => ({ startNs: k * windowNs, count: w.sum.count, hash: w.sum.hash }));
  }

  /** Window cache statistics (tests and measurements). */
  digestCacheStats(): { clean: number; dirty: number; windowsRecomputed: number; scans: number; clippedScans: number } {
    return { ...this.digestCache.size(), ...this.digestCache.counters };
  }

  /** The visible points of [startNs, endNs] per window: digest and the span they cover. */
  private scanWindows(startNs: bigint, endNs: bigint, windowNs: bigint): Map<bigint, WindowScan> {
    const out = new Map<bigint, WindowScan>();
    for (const s of this.series.values()) {
      const r = this.readSeries(s, startNs, endNs, true);
      if (r === null) continue;
      const hasher = new SeriesHasher(s.key, (s.digestSeeds ??= seriesSeeds(s.key)));
      const ts = r.timestampsNs;
      // Per window, not per point: one division and one binary search per window the series has points in.
      for (let i = 0; i < ts.length; ) {
        const k = floorDiv(ts[i]!, windowNs);
        const j = lowerBoundFrom(ts, (k + 1n) * windowNs, i + 1);
        let w = out.get(k);
        if (w === undefined) out.set(k, (w = { sum: new DigestSum(), minNs: ts[i]!, maxNs: ts[j - 1]! }));
        else {
          if (ts[i]! < w.minNs) w.minNs = ts[i]!;
          if (ts[j - 1]! > w.maxNs) w.maxNs = ts[j - 1]!;
        }
        hasher.addPoints(w.sum, ts, r.values, r.origins, i, j);
        i = j;
      }
    }
    return out;
  }

  /** Per series with visible points in [startNs, endNs] (inclusive): count and digest; sorted by key. */
  digestSeries(startNs: bigint, endNs: bigint): SeriesDigest[] {
    const out: SeriesDigest[] = [];
    if (startNs > endNs) return out;
    for (const s of [...this.series.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
      const r = this.readSeries(s, startNs, endNs, true);
      if (r === null) continue;
      const sum = new DigestSum();
      new SeriesHasher(s.key, (s.digestSeeds ??= seriesSeeds(s.key))).addPoints(sum, r.timestampsNs, r.values, r.origins);
      out.push({ key: s.key, count: sum.count, hash: sum.hash });
    }
    return out;
  }

  stats(): EngineStats {
    const blockBytes = this.blockReaders.reduce((a, r) => a + r.meta.sizeBytes, 0);
    const walBytes = this.wal?.sizeBytes() ?? 0;
    return {
      seriesCount: this.series.size,
      headSamples: this.headSamples,
      blockCount: this.blockReaders.length,
      blockSamples: this.blockReaders.reduce((a, r) => a + r.meta.sampleCount, 0),
      bytesOnDisk: blockBytes + walBytes,
      walBytes,
      blockBytes,
      samplesIngestedTotal: this.counters.samples,
      duplicateSamplesTotal: this.counters.duplicates,
      batchesTotal: this.counters.batches,
      conflictsTotal: this.counters.conflicts,
    };
  }
}

/** What installRepair decided and did. */
interface RepairInstall {
  deferred: boolean;
  /** The batch the points were installed as (null when deferred). */
  st: BatchState | null;
  /** The batch id was unknown and is now registered as committed. */
  registered: boolean;
  /** Anything changed here (registration, stored points, points taken over): the repair must be logged. */
  changed: boolean;
  stored: number;
  present: number;
  divergent: ConflictingPoint[];
  divergentCount: number;
}


function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** The samples a plan stores or replaces (shares change nothing). */
function countChanges(ops: Op[]): number {
  let n = 0;
  for (const op of ops) if (op.kind !== "share") n++;
  return n;
}

function batchInfo(st: BatchState): BatchInfo {
  return {
    batchId: st.batchId,
    sha256: st.sha256,
    hlc: st.hlc,
    shardId: st.shardId,
    sampleCount: st.sampleCount,
    phase: st.phase,
    origin: st.origin,
    inference: st.inference,
  };
}

/** A run of samples of one series from one source (a block chunk or the head), sorted by time. */
interface Segment {
  ts: BigInt64Array;
  vs: Float64Array;
  os: Uint8Array;
  refs: Uint32Array;
}

/**
 * Merges segments into one time-ordered run with one point per timestamp; where
 * sources disagree on origin, the original wins. Sources that do not overlap
 * (the common case: a block's chunks, then the head) are concatenated.
 */
function mergeSegments(segs: Segment[]): Segment {
  if (segs.length === 1) return segs[0]!;
  const empty = { ts: new BigInt64Array(0), vs: new Float64Array(0), os: new Uint8Array(0), refs: new Uint32Array(0) };
  if (segs.length === 0) return empty;
  segs.sort((a, b) => (a.ts[0]! < b.ts[0]! ? -1 : a.ts[0]! > b.ts[0]! ? 1 : 0));
  let disjoint = true;
  for (let i = 1; i < segs.length; i++) if (segs[i]!.ts[0]! <= segs[i - 1]!.ts[segs[i - 1]!.ts.length - 1]!) disjoint = false;
  const total = segs.reduce((a, g) => a + g.ts.length, 0);
  const out = { ts: new BigInt64Array(total), vs: new Float64Array(total), os: new Uint8Array(total), refs: new Uint32Array(total) };
  if (disjoint) {
    let at = 0;
    for (const g of segs) {
      out.ts.set(g.ts, at);
      out.vs.set(g.vs, at);
      out.os.set(g.os, at);
      out.refs.set(g.refs, at);
      at += g.ts.length;
    }
    return out;
  }
  // Overlapping sources (backfill after a flush): a k-way merge by position.
  const pos = new Array<number>(segs.length).fill(0);
  let n = 0;
  while (true) {
    let best = -1;
    for (let j = 0; j < segs.length; j++) {
      const g = segs[j]!;
      if (pos[j]! >= g.ts.length) continue;
      if (best < 0) best = j;
      else {
        const a = g.ts[pos[j]!]!;
        const b = segs[best]!.ts[pos[best]!]!;
        if (a < b || (a === b && g.os[pos[j]!]! < segs[best]!.os[pos[best]!]!)) best = j;
      }
    }
    if (best < 0) break;
    const g = segs[best]!;
    const i = pos[best]!;
    const t = g.ts[i]!;
    out.ts[n] = t;
    out.vs[n] = g.vs[i]!;
    out.os[n] = g.os[i]!;
    out.refs[n] = g.refs[i]!;
    n++;
    // Skip the same timestamp in every source: the point taken (original first) is the one.
    for (let j = 0; j < segs.length; j++) while (pos[j]! < segs[j]!.ts.length && segs[j]!.ts[pos[j]!] === t) pos[j]!++;
  }
  return { ts: out.ts.subarray(0, n), vs: out.vs.subarray(0, n), os: out.os.subarray(0, n), refs: out.refs.subarray(0, n) };
}

function filterOriginal(g: Segment): Segment {
  let n = 0;
  for (let i = 0; i < g.os.length; i++) if (g.os[i] === ORIGIN_CODE.original) n++;
  if (n === g.os.length) return g;
  const out = { ts: new BigInt64Array(n), vs: new Float64Array(n), os: new Uint8Array(n), refs: new Uint32Array(n) };
  let k = 0;
  for (let i = 0; i < g.os.length; i++) {
    if (g.os[i] !== ORIGIN_CODE.original) continue;
    out.ts[k] = g.ts[i]!;
    out.vs[k] = g.vs[i]!;
    out.os[k] = g.os[i]!;
    out.refs[k] = g.refs[i]!;
    k++;
  }
  return out;
}

function upperBoundArr(a: BigInt64Array, t: bigint): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const NO_SERIES: readonly SeriesState[] = [];

/** Shared, never written: the batch refs of a read whose samples all come from the series' first batch. */
const ZERO_REFS = new Uint32Array(1 << 16);

function bsearch(a: BigInt64Array, t: bigint): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = a[mid]!;
    if (v < t) lo = mid + 1;
    else if (v > t) hi = mid - 1;
    else return mid;
  }
  return -1;
}

/** First index ≥ from with a[index] ≥ t (a sorted). */
function lowerBoundFrom(a: BigInt64Array, t: bigint, from: number): number {
  let lo = from;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function lowerBoundArr(a: BigInt64Array, t: bigint): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** An error from the operating system (it carries an errno), as opposed to a bug or a typed HqError. */
function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).errno === "number";
}
