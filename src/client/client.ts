// HqClient: writes with idempotency keys and receipts, reads, over a list of
// node endpoints, retrying what is retryable (docs/client.md). Knows nothing
// of sockets: one `Transport` function (transport.ts) does the I/O.

import { randomUUID } from "node:crypto";
import { BadInputError, HqError, UnavailableError } from "../core/errors.js";
import type { Receipt } from "../core/receipt.js";
import { BatchWriter, type BatchWriterOptions } from "./batch-writer.js";
import { encodePoints, type Point } from "./encode.js";
import { errorFromAnswer, isRetryableAnswer, parseRetryAfter } from "./errors.js";
import { formatTime, parseExport, promData, type ExportedSeries, type RangeOptions } from "./read.js";
import { backoffMs, resolveRetry, type RetryPolicy } from "./retry.js";
import { ConnectionError, fetchTransport, type HttpAnswer, type Transport } from "./transport.js";
import type { Attempt, WriteResult } from "./types.js";

export type WriteFormat = "vmjson" | "influx" | "csv";
export type WritePrecision = "ns" | "us" | "ms" | "s";

export interface HqClientOptions {
  /** Node base URLs, e.g. ["http://10.0.0.1:8428", "http://10.0.0.2:8428"]. Tried in turn. */
  endpoints: string[];
  /** Deadline of one attempt (connect + answer), default 10 s. */
  requestTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Sent with every request (e.g. Authorization). */
  headers?: Record<string, string>;
  /** Called before every wait between attempts (observability, tests). */
  onRetry?: (e: RetryEvent) => void;
  /** Replaces fetch (tests, other runtimes). */
  transport?: Transport;
  /** Source of randomness for jitter, [0, 1); default Math.random. */
  random?: () => number;
}

export interface RetryEvent {
  /** What is being retried, e.g. "write", "export". */
  operation: string;
  /** The failed attempt's number (1-based). */
  attempt: number;
  endpoint: string;
  error: HqError;
  /** Time to wait before the next attempt. */
  waitMs: number;
  nextEndpoint: string;
  /** For writes: the key, identical on every attempt. */
  idempotencyKey?: string;
}

export interface WriteOptions {
  format: WriteFormat;
  /** Unit of integer timestamps (Influx default ns; CSV header mode default ms). */
  precision?: WritePrecision;
  /** The batch id; generated (crypto.randomUUID) when absent, and reused on every retry. */
  idempotencyKey?: string;
  /** CSV: VictoriaMetrics column spec (`format=`); absent: header row. */
  csvFormat?: string;
}

export interface ExportOptions extends RangeOptions {
  /** Include points inferred by gap filling (default true). */
  inferred?: boolean;
}

export interface MetaOptions extends RangeOptions {
  match?: string | string[];
  limit?: number;
}

export interface NodeHealth {
  endpoint: string;
  ok: boolean;
  status?: number;
  /** The node's answer (`{status, state, version, uptimeS}`), when it answered JSON. */
  body?: Record<string, unknown>;
  error?: string;
}

interface Call {
  operation: string;
  method: "GET" | "POST";
  path: string;
  query?: URLSearchParams;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  idempotencyKey?: string;
}

const KEY_RE = /^[\x21-\x7e]{1,128}$/;

const CONTENT_TYPE: Readonly<Record<WriteFormat, string>> = {
  vmjson: "application/stream+json",
  influx: "text/plain; charset=utf-8",
  csv: "text/csv; charset=utf-8",
};

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((r) => setTimeout(r, ms));
}

export class HqClient {
  readonly endpoints: readonly string[];
  readonly retry: Readonly<RetryPolicy>;
  readonly requestTimeoutMs: number;
  private readonly headers: Record<string, string>;
  private readonly transport: Transport;
  private readonly random: () => number;
  private readonly onRetry: ((e: RetryEvent) => void) | undefined;
  /** Index of the endpoint that answered last: calls start there. */
  private preferred = 0;

  constructor(opts: HqClientOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new RangeError("HqClient needs at least one endpoint");
    this.endpoints = Object.freeze(
      opts.endpoints.map((e) => {
        const u = new URL(e); // throws on a malformed URL
        if (u.protocol !== "http:" && u.protocol !== "https:") throw new RangeError(`endpoint ${e}: want http: or https:`);
        return e.replace(/\/+$/, "");
      }),
    );
    this.retry = Object.freeze(resolveRetry(opts.retry));
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
    if (!(this.requestTimeoutMs > 0)) throw new RangeError("requestTimeoutMs must be > 0");
    this.headers = { ...(opts.headers ?? {}) };
    this.transport = opts.transport ?? fetchTransport;
    this.random = opts.random ?? Math.random;
    this.onRetry = opts.onRetry;
  }

  // ---- writes -------------------------------------------------------------

  /** Writes one body (one batch) and returns its receipt. See writeDetailed. */
  async write(body: Uint8Array | string, opts: WriteOptions): Promise<Receipt> {
    return (await this.writeDetailed(body, opts)).receipt;
  }

  /**
   * Writes one body as one batch. Always sends an Idempotency-Key (the given
   * one, else a random UUID), the same on every attempt, so a retry after an
   * unknown outcome stores nothing twice: the server answers the first
   * receipt with `duplicate: true`. Throws the typed error of a refusal
   * (BadInputError, ConflictError, TooLargeError, ...) at once, or an
   * UnavailableError listing every attempt once the attempts are exhausted.
   */
  async writeDetailed(body: Uint8Array | string, opts: WriteOptions): Promise<WriteResult> {
    const key = opts.idempotencyKey ?? randomUUID();
    if (!KEY_RE.test(key)) throw new BadInputError("idempotencyKey must be 1-128 printable ASCII characters without spaces", { field: "idempotencyKey" });
    const query = new URLSearchParams();
    let path: string;
    switch (opts.format) {
      case "vmjson":
        if (opts.precision !== undefined) throw new BadInputError("vmjson timestamps are always ms: no precision", { field: "precision" });
        path = "/api/v1/import";
        break;
      case "influx":
        path = "/api/v2/write";
        query.set("precision", opts.precision ?? "ns");
        break;
      case "csv":
        path = "/api/v1/import/csv";
        if (opts.csvFormat !== undefined) query.set("format", opts.csvFormat);
        if (opts.precision !== undefined) query.set("precision", opts.precision);
        break;
      default:
        throw new BadInputError(`unknown format ${JSON.stringify(opts.format)} (want vmjson, influx or csv)`, { field: "format" });
    }
    const { answer, endpoint, attempts } = await this.call({
      operation: "write",
      method: "POST",
      path,
      query,
      headers: { "Idempotency-Key": key, Accept: "application/json", "Content-Type": CONTENT_TYPE[opts.format] },
      body,
      idempotencyKey: key,
    });
    return { receipt: parseReceipt(answer, endpoint), idempotencyKey: key, endpoint, attempts };
  }

  /**
   * Writes points with exact nanosecond timestamps, as one batch (Influx line
   * protocol at precision=ns, or CSV when a name cannot be carried by it:
   * encode.ts). The body is encoded once, so every retry sends the same bytes.
   */
  async writePoints(points: readonly Point[], opts: { idempotencyKey?: string } = {}): Promise<Receipt> {
    return (await this.writePointsDetailed(points, opts)).receipt;
  }

  async writePointsDetailed(points: readonly Point[], opts: { idempotencyKey?: string } = {}): Promise<WriteResult> {
    const enc = encodePoints(points);
    return this.writeDetailed(enc.body, {
      format: enc.format,
      precision: enc.precision,
      ...(enc.csvFormat !== undefined ? { csvFormat: enc.csvFormat } : {}),
      ...(opts.idempotencyKey !== undefined ? { idempotencyKey: opts.idempotencyKey } : {}),
    });
  }

  /** A batching writer over this client (batch-writer.ts). */
  batchWriter(opts: Partial<BatchWriterOptions> = {}): BatchWriter {
    return new BatchWriter((points, key) => this.writePointsDetailed(points, { idempotencyKey: key }), opts);
  }

  // ---- reads (idempotent: same retry policy) ------------------------------

  /** /api/v1/export: the stored samples of the matching series, with exact ns timestamps and provenance. */
  async export(match: string | string[], opts: ExportOptions = {}): Promise<ExportedSeries[]> {
    const q = this.rangeQuery(match, opts);
    if (opts.inferred !== undefined) q.set("inferred", opts.inferred ? "include" : "exclude");
    const { answer } = await this.call({ operation: "export", ...this.readRequest("/api/v1/export", q) });
    return parseExport(answer.body);
  }

  /** /api/v1/series: the label sets of the matching series. */
  async series(match: string | string[], opts: Omit<MetaOptions, "match"> = {}): Promise<Record<string, string>[]> {
    const q = this.rangeQuery(match, opts);
    if (opts.limit !== undefined) q.set("limit", String(opts.limit));
    const { answer } = await this.call({ operation: "series", ...this.readRequest("/api/v1/series", q) });
    return promData(answer.body) as Record<string, string>[];
  }

  /** /api/v1/labels: label names. */
  async labels(opts: MetaOptions = {}): Promise<string[]> {
    const q = this.rangeQuery(opts.match ?? [], opts);
    if (opts.limit !== undefined) q.set("limit", String(opts.limit));
    const { answer } = await this.call({ operation: "labels", ...this.readRequest("/api/v1/labels", q) });
    return promData(answer.body) as string[];
  }

  /** /api/v1/label/<name>/values: the values of one label. */
  async labelValues(name: string, opts: MetaOptions = {}): Promise<string[]> {
    const q = this.rangeQuery(opts.match ?? [], opts);
    if (opts.limit !== undefined) q.set("limit", String(opts.limit));
    const { answer } = await this.call({ operation: "labelValues", ...this.readRequest(`/api/v1/label/${encodeURIComponent(name)}/values`, q) });
    return promData(answer.body) as string[];
  }

  /** GET /health on every endpoint (one attempt each, no retry). */
  async health(): Promise<NodeHealth[]> {
    return Promise.all(
      this.endpoints.map(async (endpoint): Promise<NodeHealth> => {
        try {
          const a = await this.transport({ url: `${endpoint}/health`, method: "GET", headers: { ...this.headers }, timeoutMs: this.requestTimeoutMs });
          let body: Record<string, unknown> | undefined;
          try {
            body = JSON.parse(a.body) as Record<string, unknown>;
          } catch {
            body = undefined;
          }
          return { endpoint, ok: a.status === 200, status: a.status, ...(body !== undefined ? { body } : {}) };
        } catch (e) {
          return { endpoint, ok: false, error: e instanceof ConnectionError ? e.errno : String(e) };
        }
      }),
    );
  }

  private rangeQuery(match: string | string[], opts: RangeOptions): URLSearchParams {
    const q = new URLSearchParams();
    for (const m of Array.isArray(match) ? match : [match]) q.append("match[]", m);
    if (opts.start !== undefined) q.set("start", formatTime(opts.start));
    if (opts.end !== undefined) q.set("end", formatTime(opts.end));
    return q;
  }

  /** GET, or a form POST when the query is long (many selectors). */
  private readRequest(path: string, q: URLSearchParams): Omit<Call, "operation"> {
    const text = q.toString();
    if (text.length <= 4000) return { method: "GET", path, query: q };
    return { method: "POST", path, headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: text };
  }

  // ---- the retry loop -----------------------------------------------------

  /**
   * Sends one call, retrying retryable outcomes: HTTP 429/502/503/504 (or a
   * body saying retryable), a refused or broken connection, a timeout. Every
   * attempt rotates to the next endpoint. A refused connection moves on at
   * once (nothing was sent) until every endpoint has refused in a row; every
   * other failure waits a backoff with full jitter, and an endpoint that
   * answered Retry-After is not tried again before it (other endpoints may be).
   */
  private async call(c: Call): Promise<{ answer: HttpAnswer; endpoint: string; attempts: Attempt[] }> {
    const n = this.endpoints.length;
    const attempts: Attempt[] = [];
    const notBefore = new Map<number, number>();
    let idx = this.preferred;
    let waits = 0;
    let refusedInARow = 0;
    let last: HqError | undefined;
    const qs = c.query !== undefined && [...c.query.keys()].length > 0 ? `?${c.query.toString()}` : "";
    for (let attempt = 1; ; attempt++) {
      const ei = idx % n;
      const endpoint = this.endpoints[ei]!;
      const t0 = performance.now();
      let failure: HqError;
      try {
        const answer = await this.transport({
          url: `${endpoint}${c.path}${qs}`,
          method: c.method,
          headers: { ...this.headers, ...(c.headers ?? {}) },
          ...(c.body !== undefined ? { body: c.body } : {}),
          timeoutMs: this.requestTimeoutMs,
        });
        const ms = Math.round(performance.now() - t0);
        if (answer.status >= 200 && answer.status < 300) {
          attempts.push({ endpoint, status: answer.status, ms });
          this.preferred = ei;
          return { answer, endpoint, attempts };
        }
        const err = errorFromAnswer({ status: answer.status, body: answer.body, retryAfter: answer.header("retry-after"), endpoint });
        attempts.push({ endpoint, status: answer.status, error: String(err.details["serverCode"] ?? err.code), ms });
        if (!isRetryableAnswer(answer.status, err)) {
          Object.assign(err.details, { attempts });
          if (c.idempotencyKey !== undefined) Object.assign(err.details, { idempotencyKey: c.idempotencyKey });
          throw err;
        }
        const ra = parseRetryAfter(answer.header("retry-after"));
        if (ra !== undefined) notBefore.set(ei, Date.now() + Math.min(ra * 1000, this.retry.retryAfterMaxMs));
        failure = err;
        refusedInARow = 0;
      } catch (e) {
        if (!(e instanceof ConnectionError)) throw e;
        attempts.push({ endpoint, error: e.errno, ms: Math.round(performance.now() - t0) });
        failure = e;
        refusedInARow = e.failure === "refused" ? refusedInARow + 1 : 0;
      }
      last = failure;
      if (attempt >= this.retry.attemptsMax) break;

      idx++;
      const next = idx % n;
      // A refusal means nothing was sent: try the next endpoint at once, unless all have refused in a row.
      let waitMs = refusedInARow > 0 && refusedInARow < n ? 0 : backoffMs(waits++, this.retry, this.random);
      if (refusedInARow >= n) refusedInARow = 0;
      const nb = notBefore.get(next);
      if (nb !== undefined) waitMs = Math.max(waitMs, nb - Date.now());
      waitMs = Math.max(0, Math.round(waitMs));
      this.onRetry?.({
        operation: c.operation,
        attempt,
        endpoint,
        error: failure,
        waitMs,
        nextEndpoint: this.endpoints[next]!,
        ...(c.idempotencyKey !== undefined ? { idempotencyKey: c.idempotencyKey } : {}),
      });
      await sleep(waitMs);
    }
    const summary = attempts.map((a) => `${a.endpoint} ${a.status ?? ""}${a.status !== undefined && a.error !== undefined ? " " : ""}${a.error ?? ""}`.trim()).join("; ");
    throw new UnavailableError(`${c.operation} failed after ${attempts.length} attempt(s): ${last?.message ?? "?"} [${summary}]`, 1, {
      cause: last,
      details: { attempts, operation: c.operation, ...(c.idempotencyKey !== undefined ? { idempotencyKey: c.idempotencyKey } : {}) },
    });
  }
}

function parseReceipt(a: HttpAnswer, endpoint: string): Receipt {
  let text: string | null = a.body;
  if (a.status === 204 || text.trim() === "") text = a.header("x-hq-receipt");
  let o: Record<string, unknown> | null = null;
  try {
    o = text === null ? null : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    o = null;
  }
  if (o === null || typeof o !== "object" || typeof o["batchId"] !== "string" || typeof o["sha256"] !== "string")
    throw new HqError("internal", `${endpoint} acknowledged the write (HTTP ${a.status}) without a readable receipt`, { details: { httpStatus: a.status, endpoint } });
  return {
    batchId: o["batchId"],
    sha256: o["sha256"],
    shardId: Number(o["shardId"] ?? 0),
    hlc: String(o["hlc"] ?? ""),
    samples: Number(o["samples"] ?? 0),
    accepted: Number(o["accepted"] ?? 0),
    duplicates: Number(o["duplicates"] ?? 0),
    conflicts: Array.isArray(o["conflicts"]) ? (o["conflicts"] as Receipt["conflicts"]) : [],
    duplicate: o["duplicate"] === true,
    replicas: Array.isArray(o["replicas"]) ? (o["replicas"] as unknown[]).map(String) : [],
  };
}
