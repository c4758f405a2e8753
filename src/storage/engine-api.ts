// The contract between the storage engine and the layers above it (query,
// server, cluster). The server codes against this interface only.

import type { Batch, EncodedBatch } from "../core/batch.js";
import type { ConflictingPoint } from "../core/errors.js";
import type { Labels } from "../core/labels.js";
import type { Matcher } from "../core/matchers.js";
import type { Receipt } from "../core/receipt.js";
import type { WalFinding } from "../wal/wal.js";
import type { MetadataEntry, MetricMetadata } from "../core/metadata.js";

/**
 * Samples of one series in [startNs, endNs], sorted by time, one per timestamp.
 * The arrays may be views of the engine's chunk cache (shared with other reads
 * and other series): read them, never write into them.
 */
export interface SelectedSeries {
  readonly key: string;
  readonly labels: Labels;
  readonly timestampsNs: BigInt64Array;
  readonly values: Float64Array;
  /** Per sample: 0 = original, 1 = inferred (core/batch.ts ORIGIN_BY_CODE). */
  readonly origins: Uint8Array;
  /** Per sample: index into batchIds. */
  readonly batchRefs: Uint32Array;
  readonly batchIds: readonly string[];
}

export interface SelectOptions {
  startNs: bigint; // inclusive
  endNs: bigint; // inclusive
  includeInferred: boolean;
  seriesMax: number; // TooLargeError past it
  samplesMax: number; // TooLargeError past it
}

/** A set of alternative selectors: a series is selected if it matches any of them (Prometheus match[]). */
export type MatcherSets = readonly (readonly Matcher[])[];

export interface EngineStats {
  seriesCount: number;
  headSamples: number;
  blockCount: number;
  blockSamples: number;
  bytesOnDisk: number; // WAL + blocks
  walBytes: number;
  blockBytes: number;
  samplesIngestedTotal: number; // newly stored samples since start
  duplicateSamplesTotal: number;
  batchesTotal: number;
  conflictsTotal: number;
}

/** Names the batch a repair part belongs to (Engine.repair). */
export interface RepairMeta {
  batchId: string;
  /** Lowercase hex SHA-256 of the ORIGINAL full batch (not of the part). */
  sha256: string;
  hlc: bigint;
  /** Samples of the original batch. */
  sampleCount: number;
}

export interface RepairResult {
  /** Points newly stored (absent before, or an original replacing an inferred point). */
  stored: number;
  /** Points already here with the same value bits, or an original where the part offers an inferred point. */
  present: number;
  /** Points holding another value here (same origin class): not stored. At most 100 listed. */
  divergent: ConflictingPoint[];
  /** The batch is undecided here: nothing was stored, the replication protocol decides it. */
  deferred: boolean;
}

/** Digest of the visible points in one aligned window (docs/format/point-digest.md). */
export interface WindowDigest {
  startNs: bigint;
  count: number;
  hash: bigint; // u64
}

/** Digest of one series' visible points in a time range (docs/format/point-digest.md). */
export interface SeriesDigest {
  key: string;
  count: number;
  hash: bigint; // u64
}

/** A file the scrubber re-reads (Engine.scrubTargets). */
export interface ScrubTarget {
  kind: "wal" | "block";
  path: string;
  /** Bytes to check from the start of the file: a WAL segment's durable length, a block's whole size. */
  sizeBytes: number;
}

/** What Engine.detachBlock took out of service: every point of the block is gone from this node until repaired. */
export interface DetachedBlock {
  path: string;
  /** Where the file went; null when it was already gone (deleted underneath the node). */
  quarantinedTo: string | null;
  minTimeNs: bigint;
  maxTimeNs: bigint;
  seriesCount: number;
  sampleCount: number;
  /** Every batch the block's table names (some may still have points in the head or in other blocks). */
  batchIds: string[];
}

/** A block that open could not attach (onDamage "quarantine"): what is known of what was lost. */
export interface DamagedBlock {
  path: string;
  /** Where the file went; null when it was already gone. */
  quarantinedTo: string | null;
  error: string;
  /** From the footer when its own checksum holds, else null. */
  minTimeNs: bigint | null;
  maxTimeNs: bigint | null;
  seriesCount: number | null;
  sampleCount: number | null;
  /** A lower bound of the block's times, from its file name (ms precision), when the footer is unreadable too. */
  nameMinTimeNs: bigint | null;
}

/** What open found damaged and quarantined (onDamage "quarantine"); empty lists after a clean open. */
export interface OpenDamage {
  /** WAL corruption only (the records in these ranges are lost here); a torn tail is not damage. */
  wal: WalFinding[];
  blocks: DamagedBlock[];
}

export interface FlushResult {
  blockPath: string | null; // null when the head was empty
  series: number;
  samples: number;
}

export interface StorageEngine {
  /** Applies a canonical batch atomically: all of it, or nothing (409 on any conflicting point). Resolves after fsync. */
  write(batch: Batch, batchId: string, encoded?: EncodedBatch): Promise<Receipt>;
  select(sets: MatcherSets, opts: SelectOptions): SelectedSeries[];
  seriesLabels(sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number): Labels[];
  labelNames(sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[];
  labelValues(name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint): string[];
  /** Metric metadata a write carried (advisory, this replica's own: see storage/metadata.ts); answers how many entries changed. */
  putMetadata(items: readonly MetricMetadata[]): number;
  /** GET /api/v1/metadata's data from this replica (limits negative: none). */
  metadata(metric: string | null, limit: number, limitPerMetric: number): Record<string, MetadataEntry[]>;
  /** Cuts the head into an immutable block and drops the WAL it covered. */
  flush(): Promise<FlushResult>;
  stats(): EngineStats;
  close(): Promise<void>;
}
