// What every route handler is given: limits, logging, metrics and the engine.
// Its own module so route files and the route table do not import each other.

import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Limits } from "../core/limits.js";
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
  /** The node's view of its cluster (GET /hq/v1/cluster); undefined on a standalone node. */
  readonly clusterInfo?: () => unknown;
}

