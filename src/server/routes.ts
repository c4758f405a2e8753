// The route table. Every route has a stable name used as the metrics label
// (never the raw path: unbounded cardinality).

import type { IncomingMessage, ServerResponse } from "node:http";
import { BadInputError } from "../core/errors.js";
import { handleIngest, handleRemoteWrite } from "./ingest-routes.js";
import { handleExport, handleLabels, handleLabelValues, handleSeries } from "./read-routes.js";
import { handleCompleteness, handleGaps } from "./gap-routes.js";
import { handleBuildInfo, handleMetadata, handleQuery, handleQueryExemplars, handleQueryRange } from "./query-routes.js";
import { sendJson } from "./http-util.js";
import type { RouteContext } from "./context.js";

export type Handler = (ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL, pathParams: readonly string[]) => Promise<void>;

export interface Route {
  readonly name: string;
  readonly path: string | RegExp;
  readonly methods: readonly string[];
  readonly handler: Handler;
}

async function health(ctx: RouteContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const state = ctx.state();
  const body = { status: state === "ready" ? "ok" : state, state, version: ctx.version, uptimeS: Math.round((Date.now() - ctx.startedAtMs) / 1000) };
  const headers: Record<string, string> = state === "ready" ? {} : { "Retry-After": "1" };
  sendJson(res, state === "ready" ? 200 : 503, body, headers);
}

async function metricsText(ctx: RouteContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const text = await ctx.registry.metrics();
  res.writeHead(200, { "Content-Type": ctx.registry.contentType, "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}

async function flush(ctx: RouteContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  req.resume();
  const result = await ctx.engine().flush();
  ctx.log.info({ ...result }, "flushed the head on request");
  sendJson(res, 200, result);
}

async function status(ctx: RouteContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  sendJson(res, 200, ctx.engine().stats());
}

async function cluster(ctx: RouteContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  sendJson(res, 200, ctx.clusterInfo === undefined ? { mode: "standalone" } : { mode: "cluster", ...(ctx.clusterInfo() as object) });
}

function labelName(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new BadInputError(`bad percent-encoding in label name "${raw.slice(0, 64)}"`, { field: "label name" });
  }
}

export const ROUTES: readonly Route[] = [
  { name: "/health", path: "/health", methods: ["GET", "HEAD"], handler: health },
  { name: "/metrics", path: "/metrics", methods: ["GET"], handler: metricsText },
  { name: "/hq/v1/cluster", path: "/hq/v1/cluster", methods: ["GET"], handler: cluster },
  {
    name: "/api/v1/import",
    path: "/api/v1/import",
    methods: ["POST", "PUT"],
    handler: (c, q, r, u) => handleIngest(c, q, r, u, { format: "vmjson", influxReply: false }),
  },
  {
    name: "/api/v1/import/csv",
    path: "/api/v1/import/csv",
    methods: ["POST", "PUT"],
    handler: (c, q, r, u) => handleIngest(c, q, r, u, { format: "csv", influxReply: false }),
  },
  { name: "/write", path: "/write", methods: ["POST"], handler: (c, q, r, u) => handleIngest(c, q, r, u, { format: "influx", influxReply: true }) },
  {
    name: "/api/v2/write",
    path: "/api/v2/write",
    methods: ["POST"],
    handler: (c, q, r, u) => handleIngest(c, q, r, u, { format: "influx", influxReply: true, precisionV2: true }),
  },
  { name: "/api/v1/write", path: "/api/v1/write", methods: ["POST"], handler: (c, q, r) => handleRemoteWrite(c, q, r) },
  { name: "/api/v1/query", path: "/api/v1/query", methods: ["GET", "POST"], handler: (c, q, r, u) => handleQuery(c, q, r, u) },
  { name: "/api/v1/query_range", path: "/api/v1/query_range", methods: ["GET", "POST"], handler: (c, q, r, u) => handleQueryRange(c, q, r, u) },
  { name: "/api/v1/status/buildinfo", path: "/api/v1/status/buildinfo", methods: ["GET"], handler: (c, q, r) => handleBuildInfo(c, q, r) },
  { name: "/api/v1/metadata", path: "/api/v1/metadata", methods: ["GET", "POST"], handler: (c, q, r, u) => handleMetadata(c, q, r, u) },
  { name: "/api/v1/query_exemplars", path: "/api/v1/query_exemplars", methods: ["GET", "POST"], handler: (c, q, r) => handleQueryExemplars(c, q, r) },
  { name: "/api/v1/export", path: "/api/v1/export", methods: ["GET", "POST"], handler: (c, q, r, u) => handleExport(c, q, r, u) },
  { name: "/api/v1/series", path: "/api/v1/series", methods: ["GET", "POST"], handler: (c, q, r, u) => handleSeries(c, q, r, u) },
  { name: "/api/v1/labels", path: "/api/v1/labels", methods: ["GET", "POST"], handler: (c, q, r, u) => handleLabels(c, q, r, u) },
  {
    name: "/api/v1/label/:name/values",
    path: /^\/api\/v1\/label\/([^/]+)\/values$/,
    methods: ["GET", "POST"],
    handler: (c, q, r, u, p) => handleLabelValues(c, q, r, u, labelName(p[0] ?? "")),
  },
  { name: "/hq/v1/admin/flush", path: "/hq/v1/admin/flush", methods: ["POST"], handler: flush },
  { name: "/hq/v1/status", path: "/hq/v1/status", methods: ["GET"], handler: status },
  { name: "/hq/v1/gaps", path: "/hq/v1/gaps", methods: ["GET", "POST"], handler: (c, q, r, u) => handleGaps(c, q, r, u) },
  { name: "/hq/v1/completeness", path: "/hq/v1/completeness", methods: ["GET", "POST"], handler: (c, q, r, u) => handleCompleteness(c, q, r, u) },
];

export type RouteMatch = { route: Route; params: string[] } | { route: null; allowed: string[] | null };

/** Finds the route for a path and method; `allowed` is set when the path exists but not the method (405). */
export function matchRoute(path: string, method: string, extra: readonly Route[] = []): RouteMatch {
  let allowed: string[] | null = null;
  for (const route of extra.length === 0 ? ROUTES : [...extra, ...ROUTES]) {
    let params: string[] | null = null;
    if (typeof route.path === "string") {
      if (route.path === path) params = [];
    } else {
      const m = route.path.exec(path);
      if (m !== null) params = m.slice(1);
    }
    if (params === null) continue;
    if (route.methods.includes(method)) return { route, params };
    allowed = [...(allowed ?? []), ...route.methods];
  }
  return { route: null, allowed };
}

export type { BatchWriter, NodeState, RouteContext } from "./context.js";
