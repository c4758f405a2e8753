// Write endpoints: VictoriaMetrics JSON lines, Influx line protocol (v1 and
// v2), CSV. One request = one batch = one receipt (docs/http-api.md).

import type { IncomingMessage, ServerResponse } from "node:http";
import { encodeWithDigest, resolveBatchId } from "../core/batch.js";
import { BadInputError, isHqError } from "../core/errors.js";
import type { Receipt } from "../core/receipt.js";
import { nowNs, parsePrecision, type Precision } from "../core/time.js";
import { parseBody } from "../ingest/index.js";
import { readBody, sendJson } from "./http-util.js";
import { toJson } from "./json.js";
import type { RouteContext } from "./context.js";

export type IngestFormat = "vmjson" | "influx" | "csv";

export interface IngestOptions {
  format: IngestFormat;
  /** Influx: answer 204 with the receipt in X-HQ-Receipt, unless the client asks for JSON. */
  influxReply: boolean;
  /** Influx v2 accepts only ns, us, ms, s. */
  precisionV2?: boolean;
}

/** JSON with every non-ASCII character escaped, so it is a legal header value. */
function asciiJson(v: unknown): string {
  return toJson(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function wantsJsonReceipt(req: IncomingMessage, url: URL): boolean {
  const r = url.searchParams.get("receipt");
  if (r === "1" || r === "true") return true;
  const accept = String(req.headers.accept ?? "").toLowerCase();
  return accept.includes("application/json");
}

function precisionParam(url: URL, v2: boolean): Precision {
  const raw = url.searchParams.get("precision");
  if (v2 && raw !== null && raw !== "" && !["ns", "us", "ms", "s"].includes(raw))
    throw new BadInputError(`unknown precision "${raw.slice(0, 20)}" (want ns, us, ms or s)`, { field: "precision" });
  return parsePrecision(raw, { field: "precision" });
}

/** Parses, names and writes one request body; answers with the engine's receipt. */
export async function handleIngest(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL, opts: IngestOptions): Promise<void> {
  const { format } = opts;
  try {
    const engine = ctx.engine();
    // CSV has its own default (ms), so only an explicit precision is passed to it.
    const precision =
      format === "influx" || (format === "csv" && url.searchParams.has("precision")) ? precisionParam(url, opts.precisionV2 === true) : undefined;
    const csvFormat = format === "csv" ? url.searchParams.get("format") : null;
    const keyHeader = req.headers["idempotency-key"];
    const key = Array.isArray(keyHeader) ? keyHeader.join(",") : keyHeader;
    // Check the key before reading a possibly large body.
    resolveBatchId(key, "0", ctx.limits.idempotencyKeyBytesMax);

    const body = await readBody(req, ctx.limits.bodyBytesMax);
    const batch = parseBody(format, body, {
      limits: ctx.limits,
      nowNs: nowNs(),
      ...(precision !== undefined ? { precision } : {}),
      ...(format === "csv" ? { csvFormat } : {}),
    });
    const encoded = encodeWithDigest(batch);
    const batchId = resolveBatchId(key, encoded.sha256, ctx.limits.idempotencyKeyBytesMax);
    const receipt: Receipt = await (ctx.writer() ?? engine).write(batch, batchId, encoded);

    ctx.metrics.ingestSamples.inc({ format }, batch.sampleCount);
    ctx.metrics.ingestRequests.inc({ format, outcome: receipt.duplicate ? "duplicate" : "ok" });
    ctx.log.debug({ format, batchId, samples: batch.sampleCount, accepted: receipt.accepted, duplicate: receipt.duplicate }, "batch written");

    if (opts.influxReply && !wantsJsonReceipt(req, url)) {
      res.writeHead(204, { "X-HQ-Receipt": asciiJson(receipt) });
      res.end();
    } else {
      sendJson(res, 200, receipt);
    }
  } catch (e) {
    ctx.metrics.ingestRequests.inc({ format, outcome: isHqError(e) ? e.code : "bug" });
    throw e;
  }
}
