// What every route handler is given: limits, logging, metrics and the engine.
// Its own module so route files and the route table do not import each other.

import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Batch, EncodedBatch } from "../core/batch.js";
import type { Limits } from "../core/limits.js";
import type { Receipt } from "../core/receipt.js";
import type { StorageEngine } from "../storage/engine-api.js";
import type { ServerMetrics } from "./metrics.js";

export type NodeState = "starting" | "ready" | "closing";

export interface RouteContext {
  readonly limits: Limits;
  readonly log: Logger;
  readonly registry: Registry;
  readonly metrics: ServerMetrics;
  readonly version: string;
  readonly startedAtMs: number;
  state(): NodeState;
  /** The engine, or an UnavailableError (503, retryable) while starting or closing. */
  engine(): StorageEngine;
  /**
   * Where ingest sends batches: the cluster's quorum write path once the node has joined, else null
   * (the local engine: standalone mode).
   */
  writer(): BatchWriter | null;
  /** The node's view of its cluster (GET /hq/v1/cluster); undefined on a standalone node. */
  readonly clusterInfo?: () => unknown;
}


/** A write path that takes canonical batches and answers with receipts (the engine, or the cluster's gateway). */
export interface BatchWriter {
  write(batch: Batch, batchId: string, encoded: EncodedBatch): Promise<Receipt>;
}
