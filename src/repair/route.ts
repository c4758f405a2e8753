// GET /hq/v1/repairs: the node's repair log (repair/log.ts) over HTTP.
//
//   GET /hq/v1/repairs?since=ID&kind=K[,K…]&limit=N
//   → 200 {"status":"success","data":[RepairRecord…], "warnings"?: [string…]}
//
// Records come in ascending ids (newest last). Without `since`: the newest
// `limit`. With `since`: the oldest `limit` with a larger id, so a client
// pages forward by passing the last id it saw. `limit` defaults to
// REPAIRS_LIMIT_DEFAULT, at most REPAIR_LIST_LIMIT_MAX. A bad parameter is a
// 400 (BadInputError) naming the field; the server's error path answers it.
//
// The server layer sits above this one, so this module returns a descriptor
// structurally compatible with src/server/routes.ts `Route` (as
// cluster/transport.ts `inboundRoute` does); the node passes it to
// createHqServer's `extraRoutes`.

import type { IncomingMessage, ServerResponse } from "node:http";
import { BadInputError, UnavailableError } from "../core/errors.js";
import { REPAIR_KINDS, REPAIR_LIST_LIMIT_MAX, type RepairKind, type RepairLog } from "./log.js";

export const REPAIRS_PATH = "/hq/v1/repairs";
/** Records per answer when `limit` is not given. */
export const REPAIRS_LIMIT_DEFAULT = 100;

/** Structurally a src/server/routes.ts `Handler` (the context is not used). */
export type RepairsHandler = (ctx: unknown, req: IncomingMessage, res: ServerResponse, url: URL, pathParams: readonly string[]) => Promise<void>;

/** Structurally a src/server/routes.ts `Route`. */
export interface RepairsRoute {
  readonly name: string;
  readonly path: string;
  readonly methods: readonly string[];
  readonly handler: RepairsHandler;
}

export interface RepairsQuery {
  sinceId?: string;
  kind?: RepairKind[];
  limit: number;
}

/** Parses and checks the query parameters; BadInputError (400) naming the field otherwise. */
export function parseRepairsQuery(params: URLSearchParams): RepairsQuery {
  const q: RepairsQuery = { limit: REPAIRS_LIMIT_DEFAULT };
  const since = params.get("since");
  if (since !== null) {
    if (!/^[0-9]{1,16}$/.test(since) || !Number.isSafeInteger(Number(since)))
      throw new BadInputError(`since must be a record id (a decimal integer), got "${since.slice(0, 40)}"`, { field: "since" });
    q.sinceId = String(Number(since));
  }
  const kind = params.get("kind");
  if (kind !== null) {
    const kinds = kind.split(",").map((k) => k.trim());
    const bad = kinds.find((k) => !(REPAIR_KINDS as readonly string[]).includes(k));
    if (bad !== undefined) throw new BadInputError(`unknown kind "${bad.slice(0, 40)}"; kinds: ${REPAIR_KINDS.join(", ")}`, { field: "kind" });
    q.kind = kinds as RepairKind[];
  }
  const limit = params.get("limit");
  if (limit !== null) {
    const n = Number(limit);
    if (!/^[0-9]{1,6}$/.test(limit) || n < 1 || n > REPAIR_LIST_LIMIT_MAX)
      throw new BadInputError(`limit must be an integer 1..${REPAIR_LIST_LIMIT_MAX}, got "${limit.slice(0, 40)}"`, { field: "limit" });
    q.limit = n;
  }
  return q;
}

/**
 * The route descriptor for the server's route table. `log` is the node's repair log, or a getter that answers null
 * while the log is not open yet (the route then answers 503, retryable).
 */
export function repairsRoute(log: RepairLog | (() => RepairLog | null)): RepairsRoute {
  const current = typeof log === "function" ? log : () => log;
  return {
    name: REPAIRS_PATH,
    path: REPAIRS_PATH,
    methods: ["GET"],
    handler: async (_ctx, req, res, url) => {
      req.resume();
      const q = parseRepairsQuery(url.searchParams);
      const l = current();
      if (l === null) throw new UnavailableError("the repair log is not open yet", 1);
      const data = l.list({ limit: q.limit, ...(q.sinceId !== undefined ? { sinceId: q.sinceId } : {}), ...(q.kind !== undefined ? { kind: q.kind } : {}) });
      const warnings: string[] = [];
      if (q.sinceId !== undefined) {
        const s = l.stats();
        const since = Number(q.sinceId);
        const next = Number(s.nextId);
        if (since >= next)
          warnings.push(`since=${q.sinceId} is not below the next id ${s.nextId}: this node's repair log restarted (its data directory was lost or replaced?); ask without since`);
        else if (s.oldestHeldId !== null && Number(s.oldestHeldId) > since + 1)
          warnings.push(`records ${since + 1}..${Number(s.oldestHeldId) - 1} are no longer held in memory (or were rotated away); the files under the node's repairs/ directory hold what remains`);
      }
      const text = JSON.stringify(warnings.length === 0 ? { status: "success", data } : { status: "success", data, warnings });
      res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(text)) });
      res.end(text);
    },
  };
}
