// Write endpoints: VictoriaMetrics JSON lines, Influx line protocol (v1 and
// v2), CSV, Prometheus remote write. One request = one batch = one receipt
// (docs/http-api.md); remote write alone may store a request's
// non-conflicting rest as a second batch (docs/ingest.md).

import { haDedup } from "../ingest/ha-dedup.js";
import { seriesKey } from "../core/labels.js";
import { makeMatcher } from "../core/matchers.js";
import type { StorageEngine } from "../storage/engine-api.js";
import type { IncomingMessage, ServerResponse } from "node:http";
import { encodeWithDigest, resolveBatchId, type Batch, type EncodedBatch } from "../core/batch.js";
import { BadInputError, ConflictError, isHqError, type ConflictingPoint } from "../core/errors.js";
import type { Receipt } from "../core/receipt.js";
import { assert } from "../core/assert.js";
import { nowNs, parsePrecision, type Precision } from "../core/time.js";
import { parseBody } from "../ingest/index.js";
import { CONFLICTS_LISTED_MAX, decodeRemoteWrite, partialBatchId, withoutPoints } from "../ingest/remote-write.js";
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

function idempotencyKey(req: IncomingMessage): string | undefined {
  const keyHeader = req.headers["idempotency-key"];
  return Array.isArray(keyHeader) ? keyHeader.join(",") : keyHeader;
}

/**
 * HA pairs (docs/ingest.md): the replica label dropped and one sample kept per interval bucket, against what this
 * node's own store holds (no network round trip: a store behind its peers keeps a second copy, never loses one).
 */
function applyHaDedup(ctx: RouteContext, batch: Batch, engine: StorageEngine, headers: Record<string, string>): Batch | null {
  const rules = ctx.haRules();
  if (rules.length === 0) return batch;
  const r = haDedup(
    batch,
    rules,
    (labels, fromNs, toNs) => {
      const key = seriesKey(labels);
      const got = engine.select([labels.map(([n, v]) => makeMatcher(n, "=", v))], { startNs: fromNs, endNs: toNs, includeInferred: true, seriesMax: 100_000, samplesMax: 1_000_000 });
      return got.find((s) => s.key === key)?.timestampsNs ?? new BigInt64Array(0);
    },
    ctx.limits,
  );
  headers["X-HQ-HA-Dropped"] = String(r.dropped);
  if (r.dropped > 0 || r.relabelled > 0) ctx.log.debug({ dropped: r.dropped, relabelled: r.relabelled }, "HA dedup");
  return r.batch;
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
    const key = idempotencyKey(req);
    // Check the key before reading a possibly large body.
    resolveBatchId(key, "0", ctx.limits.idempotencyKeyBytesMax);

    const body = await readBody(req, ctx.limits.bodyBytesMax);
    const parsed = parseBody(format, body, {
      limits: ctx.limits,
      nowNs: nowNs(),
      ...(precision !== undefined ? { precision } : {}),
      ...(format === "csv" ? { csvFormat } : {}),
    });
    const haHeaders: Record<string, string> = {};
    const batch = applyHaDedup(ctx, parsed, engine, haHeaders);
    if (batch === null) {
      // Every sample was a second copy of an HA pair's: nothing to store, and nothing wrong.
      ctx.metrics.ingestRequests.inc({ format, outcome: "ha-duplicate" });
      res.writeHead(204, haHeaders);
      res.end();
      return;
    }
    const encoded = encodeWithDigest(batch);
    const batchId = resolveBatchId(key, encoded.sha256, ctx.limits.idempotencyKeyBytesMax);
    const receipt: Receipt = await (ctx.writer() ?? engine).write(batch, batchId, encoded);

    ctx.metrics.ingestSamples.inc({ format }, batch.sampleCount);
    ctx.metrics.ingestRequests.inc({ format, outcome: receipt.duplicate ? "duplicate" : "ok" });
    ctx.log.debug({ format, batchId, samples: batch.sampleCount, accepted: receipt.accepted, duplicate: receipt.duplicate }, "batch written");

    if (opts.influxReply && !wantsJsonReceipt(req, url)) {
      res.writeHead(204, { ...haHeaders, "X-HQ-Receipt": asciiJson(receipt) });
      res.end();
    } else {
      sendJson(res, 200, receipt, haHeaders);
    }
  } catch (e) {
    ctx.metrics.ingestRequests.inc({ format, outcome: isHqError(e) ? e.code : "bug" });
    throw e;
  }
}

/**
 * Rounds of "remove the conflicting points, write the rest": the write path
 * lists at most 100 conflicts per refusal, so a request with more needs
 * several rounds. Bounded because each round re-checks the whole batch.
 */
const CONFLICT_ROUNDS_MAX = 20;

function checkRemoteWriteHeaders(req: IncomingMessage): void {
  const type = String(req.headers["content-type"] ?? "").toLowerCase();
  if (type !== "") {
    const [media, ...params] = type.split(";").map((p) => p.trim());
    if (media !== "application/x-protobuf")
      throw new BadInputError(`Content-Type "${type.slice(0, 80)}" is not a remote write request (want application/x-protobuf)`, { field: "Content-Type" });
    const proto = params.find((p) => p.startsWith("proto="))?.slice(6);
    if (proto !== undefined && proto !== "prometheus.writerequest")
      throw new BadInputError(`protobuf message "${proto.slice(0, 80)}" is not supported: only remote write 1.0 (prometheus.WriteRequest)`, { field: "Content-Type" });
  }
  const encoding = String(req.headers["content-encoding"] ?? "").trim().toLowerCase();
  if (encoding !== "" && encoding !== "snappy")
    throw new BadInputError(`Content-Encoding "${encoding.slice(0, 40)}" is not supported here: a remote write body is snappy-compressed (want snappy)`, {
      field: "Content-Encoding",
    });
  // readBody inflates only gzip and deflate; the snappy layer is the remote-write decoder's, with its own size guard.
  delete req.headers["content-encoding"];
}

interface ConflictsSeen {
  count: number;
  listed: ConflictingPoint[];
}

function addConflicts(seen: ConflictsSeen, points: readonly ConflictingPoint[], count = points.length): void {
  seen.count += count;
  for (const p of points) if (seen.listed.length < CONFLICTS_LISTED_MAX) seen.listed.push(p);
}

/**
 * POST /api/v1/write: Prometheus remote write 1.0. Answers 204 (receipt in
 * X-HQ-Receipt) when everything was stored. When some points conflict with
 * stored ones, the others are stored as a batch of their own and the answer
 * is 400 listing the conflicts: Prometheus drops a request answered 4xx, so
 * refusing it whole would lose the good samples for ever.
 */
export async function handleRemoteWrite(ctx: RouteContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const format = "remote-write"; // the metrics label; the body format is not one of parseBody's
  try {
    const engine = ctx.engine();
    checkRemoteWriteHeaders(req);
    const key = idempotencyKey(req);
    resolveBatchId(key, "0", ctx.limits.idempotencyKeyBytesMax);
    const body = await readBody(req, ctx.limits.bodyBytesMax);
    const decoded = decodeRemoteWrite(body, { limits: ctx.limits, seriesCache: ctx.remoteWriteSeries });
    const headers: Record<string, string> = { "X-HQ-Exemplars-Ignored": String(decoded.exemplarsIgnored) };
    // Metadata is advisory and this replica's own (a metadata read asks the peers too): kept before the samples are
    // written, so a write that fails for its samples still leaves it, as senders resend it every minute anyway.
    if (decoded.metadata.length > 0) engine.putMetadata(decoded.metadata);
    headers["X-HQ-Metadata-Stored"] = String(decoded.metadata.length);
    if (decoded.metadataDropped > 0) headers["X-HQ-Metadata-Dropped"] = String(decoded.metadataDropped);

    const deduped = decoded.batch === null ? null : applyHaDedup(ctx, decoded.batch, engine, headers);
    if (deduped === null) {
      // No samples (metadata only, or series without samples: Prometheus sends these), or every sample a second
      // copy of an HA pair's: nothing to store, and nothing wrong.
      ctx.metrics.ingestRequests.inc({ format, outcome: decoded.batch === null ? "empty" : "ha-duplicate" });
      res.writeHead(204, { ...headers, "X-HQ-Samples-Written": "0" });
      res.end();
      return;
    }

    const conflicts: ConflictsSeen = { count: 0, listed: [] };
    addConflicts(conflicts, decoded.inRequestConflictsListed, decoded.inRequestConflicts);
    const requestEncoded = encodeWithDigest(deduped);
    const requestId = resolveBatchId(key, requestEncoded.sha256, ctx.limits.idempotencyKeyBytesMax);
    const writer = ctx.writer() ?? engine;

    let batch: Batch | null = deduped;
    let encoded: EncodedBatch = requestEncoded;
    let batchId = requestId;
    let receipt: Receipt | null = null;
    for (let round = 0; batch !== null; round++) {
      try {
        receipt = await writer.write(batch, batchId, encoded);
        break;
      } catch (e) {
        // No points named: the batch id itself is taken (an Idempotency-Key reused for other content): a plain 409.
        if (!(e instanceof ConflictError) || e.points.length === 0) throw e;
        if (round + 1 >= CONFLICT_ROUNDS_MAX)
          throw new ConflictError(
            `more than ${conflicts.count + e.points.length} points conflict with stored values (given up after ${CONFLICT_ROUNDS_MAX} rounds); nothing of this request was stored`,
            conflicts.listed,
            { batchId: requestId },
          );
        const rest = withoutPoints(batch, e.points);
        // Points the batch does not hold cannot be removed: retrying would loop; report the refusal as it is.
        if (rest.removed === 0) throw e;
        addConflicts(conflicts, e.points, rest.removed);
        batch = rest.batch;
        if (batch !== null) {
          encoded = encodeWithDigest(batch);
          batchId = partialBatchId(requestId, encoded);
        }
      }
    }

    if (receipt !== null) {
      ctx.metrics.ingestSamples.inc({ format }, receipt.samples);
      headers["X-HQ-Receipt"] = asciiJson(receipt);
    }
    headers["X-HQ-Samples-Written"] = String(receipt?.samples ?? 0);
    ctx.log.debug({ format, requestId, batchId: receipt?.batchId, samples: receipt?.samples ?? 0, conflicts: conflicts.count }, "remote write");

    if (conflicts.count === 0) {
      assert(receipt !== null, "a remote write without conflicts ended without a receipt");
      ctx.metrics.ingestRequests.inc({ format, outcome: receipt.duplicate ? "duplicate" : "ok" });
      res.writeHead(204, headers);
      res.end();
      return;
    }
    ctx.metrics.ingestRequests.inc({ format, outcome: receipt === null ? "conflict" : "partial" });
    headers["X-HQ-Samples-Conflicting"] = String(conflicts.count);
    const stored = receipt === null ? "nothing was stored" : `the other ${receipt.samples} samples were stored (batch ${receipt.batchId})`;
    sendJson(
      res,
      400,
      {
        status: "error",
        errorType: "bad_data",
        code: "conflict",
        retryable: false,
        error: `${conflicts.count} sample(s) hold a different value than one already stored or sent earlier in the request at the same series and timestamp; ${stored}`,
        conflictCount: conflicts.count,
        conflicts: conflicts.listed,
        receipt,
      },
      headers,
    );
  } catch (e) {
    ctx.metrics.ingestRequests.inc({ format, outcome: isHqError(e) ? e.code : "bug" });
    throw e;
  }
}
