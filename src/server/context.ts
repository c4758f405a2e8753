// What every route handler is given: limits, logging, metrics and the engine.
// Its own module so route files and the route table do not import each other.

import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Batch, EncodedBatch } from "../core/batch.js";
import type { Limits } from "../core/limits.js";
import type { SeriesInternCache } from "../core/series-intern.js";
import type { GapRule } from "../gaps/rules.js";
import type { HaRule } from "../ingest/ha-dedup.js";
import type { Receipt } from "../core/receipt.js";
import type { Labels } from "../core/labels.js";
import type { MetadataEntry } from "../core/metadata.js";
import type { MatcherSets, SelectedSeries, SelectOptions, StorageEngine } from "../storage/engine-api.js";
import type { ServerMetrics } from "./metrics.js";

export type NodeState = "starting" | "ready" | "closing";

export interface RouteContext {
  readonly limits: Limits;
  readonly log: Logger;
  readonly registry: Registry;
  readonly metrics: ServerMetrics;
  readonly version: string;
  readonly startedAtMs: number;
  /** Series remote-write senders sent before, by their raw label bytes (core/series-intern.ts): one per node, under its limits. */
  readonly remoteWriteSeries: SeriesInternCache;
  state(): NodeState;
  /** The engine, or an UnavailableError (503, retryable) while starting or closing. */
  engine(): StorageEngine;
  /**
   * Where ingest sends batches: the cluster's quorum write path once the node has joined, else null
   * (the local engine: standalone mode).
   */
  writer(): BatchWriter | null;
  /** Where reads go: the cluster's majority reader once the node has joined, else the local engine. */
  reader(): Reader;
  /** Gap rules (docs/gaps.md): the expected interval and fill policy per selector. */
  gapRules(): readonly GapRule[];
  /** HA pair deduplication rules (docs/ingest.md, "HA pairs"); empty: off. */
  haRules(): readonly HaRule[];
  /** The node's view of its cluster (GET /hq/v1/cluster); undefined on a standalone node. */
  readonly clusterInfo?: () => unknown;
}


/** A write path that takes canonical batches and answers with receipts (the engine, or the cluster's gateway). */
export interface BatchWriter {
  write(batch: Batch, batchId: string, encoded: EncodedBatch): Promise<Receipt>;
}

export interface ReadOutcome<T> {
  readonly value: T;
  /** Fewer than a majority of replicas answered (only when the caller allowed it): acked points may be missing. */
  readonly partial: boolean;
  /** Replicas whose data the answer holds, this one included. */
  readonly replicasRead: number;
}

/** The read side: the local engine, or the cluster's majority reader (decision 7). */
export interface Reader {
  select(sets: MatcherSets, opts: SelectOptions, allowPartial: boolean): Promise<ReadOutcome<SelectedSeries[]>>;
  seriesLabels(sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number, allowPartial: boolean): Promise<ReadOutcome<Labels[]>>;
  labelNames(sets: MatcherSets | null, startNs: bigint, endNs: bigint, allowPartial: boolean): Promise<ReadOutcome<string[]>>;
  labelValues(name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint, allowPartial: boolean): Promise<ReadOutcome<string[]>>;
  /** GET /api/v1/metadata's data (limits negative: none). */
  metadata(metric: string | null, limit: number, limitPerMetric: number, allowPartial: boolean): Promise<ReadOutcome<Record<string, MetadataEntry[]>>>;
}

/** A standalone node's reads: its engine is complete by definition. */
export function localReader(engine: StorageEngine): Reader {
  const one = <T>(value: T): Promise<ReadOutcome<T>> => Promise.resolve({ value, partial: false, replicasRead: 1 });
  return {
    select: (sets, opts) => one(engine.select(sets, opts)),
    seriesLabels: (sets, startNs, endNs, seriesMax) => one(engine.seriesLabels(sets, startNs, endNs, seriesMax)),
    labelNames: (sets, startNs, endNs) => one(engine.labelNames(sets, startNs, endNs)),
    labelValues: (name, sets, startNs, endNs) => one(engine.labelValues(name, sets, startNs, endNs)),
    metadata: (metric, limit, limitPerMetric) => one(engine.metadata(metric, limit, limitPerMetric)),
  };
}
