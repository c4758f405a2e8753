// Read endpoints: /api/v1/export (VictoriaMetrics JSON lines plus provenance)
// and the Prometheus metadata API (series, labels, label values).

import type { IncomingMessage, ServerResponse } from "node:http";
import { ORIGIN_BY_CODE } from "../core/batch.js";
import { BadInputError } from "../core/errors.js";
import { labelsToObject, type Labels } from "../core/labels.js";
import { INT64_MAX, INT64_MIN, nsToMs, parseApiTime } from "../core/time.js";
import { parseMatchParams } from "../query/selector.js";
import type { MatcherSets, SelectedSeries } from "../storage/engine-api.js";
import { requestParams, sendJson, writeChunk } from "./http-util.js";
import { jsonNumber } from "./json.js";
import { localReader, type ReadOutcome, type Reader, type RouteContext } from "./context.js";

/** Form bodies of read requests (match[] lists) are small; this bounds them. */
export const FORM_BYTES_MAX = 4 * 1024 * 1024;

interface TimeRange {
  startNs: bigint;
  endNs: bigint;
}

export function timeRange(params: URLSearchParams): TimeRange {
  const s = params.get("start");
  const e = params.get("end");
  const startNs = s === null || s === "" ? INT64_MIN : parseApiTime(s, { field: "start" });
  const endNs = e === null || e === "" ? INT64_MAX : parseApiTime(e, { field: "end" });
  if (endNs < startNs) throw new BadInputError("end is before start", { field: "end" });
  return { startNs, endNs };
}

export function matchSets(params: URLSearchParams, required: boolean): MatcherSets | null {
  const raw = params.getAll("match[]");
  if (raw.length === 0 && !required) return null;
  return parseMatchParams(raw);
}

function limitParam(params: URLSearchParams): number {
  const raw = params.get("limit");
  if (raw === null || raw === "" || raw === "0") return Infinity;
  if (!/^[0-9]{1,10}$/.test(raw)) throw new BadInputError(`limit must be a non-negative integer, got "${raw.slice(0, 20)}"`, { field: "limit" });
  return Number(raw);
}

/** `partial_response=true` (Thanos' name): accept an answer from fewer than a majority of replicas, flagged as partial. */
export function partialParam(params: URLSearchParams): boolean {
  const raw = params.get("partial_response");
  if (raw === null || raw === "" || raw === "false" || raw === "0") return false;
  if (raw === "true" || raw === "1") return true;
  throw new BadInputError(`partial_response must be true or false, got "${raw.slice(0, 20)}"`, { field: "partial_response" });
}

/**
 * `consistency=local` answers from this replica alone (faster, and what an operator checks a replica with);
 * the default, `majority`, merges a majority of replicas so that every acknowledged point is seen (cluster mode).
 */
export function readerFor(ctx: RouteContext, params: URLSearchParams): Reader {
  const raw = params.get("consistency");
  if (raw === null || raw === "" || raw === "majority") return ctx.reader();
  if (raw === "local") return localReader(ctx.engine());
  throw new BadInputError(`consistency must be "majority" or "local", got "${raw.slice(0, 20)}"`, { field: "consistency" });
}

const PARTIAL_WARNING = "partial response: fewer than a majority of replicas answered, so acknowledged points may be missing";

/** Prometheus API body, with `warnings` when the answer is partial. */
export function apiBody(data: unknown, outcome: ReadOutcome<unknown>): Record<string, unknown> {
  return outcome.partial ? { status: "success", data, warnings: [PARTIAL_WARNING] } : { status: "success", data };
}

export function inferredParam(params: URLSearchParams): boolean {
  const raw = params.get("inferred");
  if (raw === null || raw === "" || raw === "include") return true;
  if (raw === "exclude") return false;
  throw new BadInputError(`inferred must be "include" or "exclude", got "${raw.slice(0, 20)}"`, { field: "inferred" });
}

/** Size of one piece of an export body: big enough that writes are few, small enough that a long series is never one giant buffer. */
const PIECE_BYTES = 64 * 1024;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const ORIGIN_TOKENS = [...ORIGIN_BY_CODE.map((o) => Buffer.from(`"${o}"`)), Buffer.from('"unknown"')];
const NULL_TOKEN = Buffer.from("null");

/**
 * JSON tokens of batch ids, kept for the ids seen lately (bounded by count) so
 * that the run buffers built for them (tokenRuns) are reused across series.
 */
const batchTokenCache = new Map<string, Buffer>();
const BATCH_TOKENS_MAX = 1024;

function batchToken(id: string): Buffer {
  let t = batchTokenCache.get(id);
  if (t === undefined) {
    t = Buffer.from(JSON.stringify(id), "utf8");
    batchTokenCache.set(id, t);
    if (batchTokenCache.size > BATCH_TOKENS_MAX) batchTokenCache.delete(batchTokenCache.keys().next().value!);
  }
  return t;
}

/**
 * Appends export text straight into Buffers of PIECE_BYTES. An item (a number,
 * a token) is never split across pieces, so every piece is valid UTF-8 on its
 * own. Integers are written digit by digit: no string per sample.
 */
class PieceWriter {
  private buf = Buffer.allocUnsafe(PIECE_BYTES);
  private pos = 0;
  /** Pieces full and ready to send. */
  readonly ready: Buffer[] = [];

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.pos > 0) this.ready.push(this.buf.subarray(0, this.pos));
    this.buf = Buffer.allocUnsafe(Math.max(PIECE_BYTES, n));
    this.pos = 0;
  }

  /** Everything written, as one buffer (for a small formatted run that is reused). */
  all(): Buffer {
    const rest = this.rest();
    return Buffer.concat(rest === null ? this.ready : [...this.ready, rest]);
  }

  /** What is written and not yet handed out. */
  rest(): Buffer | null {
    if (this.pos === 0) return null;
    const b = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(PIECE_BYTES);
    this.pos = 0;
    return b;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.pos++] = c;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    if (b.length < 32) for (let i = 0; i < b.length; i++) this.buf[this.pos++] = b[i]!;
    else {
      this.buf.set(b, this.pos);
      this.pos += b.length;
    }
  }

  /** A string of ASCII characters only (numbers as JavaScript formats them, fixed tokens). */
  ascii(s: string): void {
    this.room(s.length);
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
  }

  /**
   * A non-negative integer below 2^53, in decimal, as String(q) writes it. Digits come from int32 arithmetic: a
   * double `%` is a slow library call, so a value above 2^31 is first split by 10^6 (exactly: see div6).
   */
  uint(q: number): void {
    if (q < 0x80000000) {
      this.small(q);
      return;
    }
    const a = div6(q);
    this.uint(a);
    this.six(q - a * 1_000_000);
  }

  /** 0 <= q < 2^31. */
  private small(q: number): void {
    let len = 1;
    for (let t = q; t >= 10; t = (t / 10) | 0) len++;
    this.room(len);
    let p = this.pos + len;
    this.pos = p;
    do {
      const next = (q / 10) | 0;
      this.buf[--p] = 48 + q - next * 10;
      q = next;
    } while (q > 0);
  }

  /** 0 <= r < 10^6 as exactly six digits (zero-padded). */
  six(r: number): void {
    this.room(6);
    for (let p = this.pos + 5; p >= this.pos; p--) {
      const next = (r / 10) | 0;
      this.buf[p] = 48 + r - next * 10;
      r = next;
    }
    this.pos += 6;
  }
}

/**
 * floor(x / 10^6) for an integer 0 <= x < 2^53, exactly: the division is
 * rounded, so the quotient is corrected by the remainder (computed exactly:
 * the product and the difference are integers below 2^53).
 */
function div6(x: number): number {
  let q = Math.floor(x / 1_000_000);
  const r = x - q * 1_000_000;
  if (r < 0) q--;
  else if (r >= 1_000_000) q++;
  return q;
}

/** A sample value as jsonNumber() writes it; integers without going through a string. */
function writeValue(w: PieceWriter, v: number): void {
  if (Number.isSafeInteger(v)) {
    // String(v) of an integer below 2^53 is its plain decimal digits; -0 is "-0" (jsonNumber).
    if (v > 0) w.uint(v);
    else if (v < 0) {
      w.byte(0x2d);
      w.uint(-v);
    } else w.ascii(Object.is(v, -0) ? "-0" : "0");
  } else w.ascii(jsonNumber(v));
}

/**
 * Timestamps as (ms, ns) without a BigInt per sample: a non-negative int64 is
 * read as two uint32 halves, hi·2^32 + lo = hi·4294·10^6 + (hi·967296 + lo),
 * where the second term is below 2^52, so the quotient (the time in ms, as
 * nsToMs floors it) and remainder by 10^6 are exact in doubles. Negative
 * times (rare) take the BigInt path.
 */
function writeTimes(w: PieceWriter, ts: BigInt64Array, asNs: boolean): void {
  const halves = new Uint32Array(ts.buffer, ts.byteOffset, ts.length * 2);
  const hiAt = LITTLE_ENDIAN ? 1 : 0;
  for (let i = 0; i < ts.length; i++) {
    if (i > 0) w.byte(0x2c);
    const hi = halves[2 * i + hiAt]!;
    if (hi >= 0x80000000) {
      const t = ts[i]!;
      w.ascii(asNs ? `"${t.toString()}"` : String(nsToMs(t)));
      continue;
    }
    const low = hi * 967296 + halves[2 * i + 1 - hiAt]!;
    const lowQ = div6(low);
    const r = low - lowQ * 1_000_000;
    const ms = hi * 4294 + lowQ;
    if (!asNs) w.uint(ms);
    else {
      w.byte(0x22);
      if (ms > 0) {
        w.uint(ms);
        w.six(r);
      } else w.uint(r);
      w.byte(0x22);
    }
  }
}

/**
 * Series scraped together share one decoded timestamp column in the engine's
 * cache, so their timestamps often arrive as the same view of the same memory:
 * their text is formatted once per export and copied after. Keyed by the
 * memory and the view's range; only short runs (a long series keeps being
 * written in pieces). A view is formatted into the cache only when seen a
 * second time, so series that share nothing cost no copy and no memory.
 */
type TimesCache = Map<ArrayBufferLike, { offset: number; length: number; ms: Buffer | null; ns: Buffer | null }>;
const TIMES_CACHE_SAMPLES_MAX = 4096;

function writeTimesCached(w: PieceWriter, ts: BigInt64Array, cache: TimesCache, asNs: boolean): void {
  if (ts.length > TIMES_CACHE_SAMPLES_MAX || ts.length === 0) return writeTimes(w, ts, asNs);
  const e = cache.get(ts.buffer);
  if (e === undefined || e.offset !== ts.byteOffset || e.length !== ts.length) {
    cache.set(ts.buffer, { offset: ts.byteOffset, length: ts.length, ms: null, ns: null });
    return writeTimes(w, ts, asNs);
  }
  let text = asNs ? e.ns : e.ms;
  if (text === null) {
    const f = new PieceWriter();
    writeTimes(f, ts, asNs);
    text = f.all();
    if (asNs) e.ns = text;
    else e.ms = text;
  }
  w.bytes(text);
}

/**
 * `{"metric":{...},"values":[` per label set. The engine hands out the same
 * Labels object for a series on every read, so the JSON is built once per
 * series, not per request; weak, so it goes with the series.
 */
const lineHeads = new WeakMap<Labels, Buffer>();

function lineHead(labels: Labels): Buffer {
  let b = lineHeads.get(labels);
  if (b === undefined) lineHeads.set(labels, (b = Buffer.from(`{"metric":${JSON.stringify(labelsToObject(labels))},"values":[`, "utf8")));
  return b;
}

/**
 * `token,token,…` copied from a prebuilt run instead of token by token:
 * origins and batch ids come in long runs (a batch is usually a whole series).
 */
const tokenRuns = new WeakMap<Buffer, Buffer>();
const TOKEN_RUN_BYTES = 4 * 1024;

function writeRun(w: PieceWriter, token: Buffer, count: number): void {
  if (count === 1) return w.bytes(token);
  let run = tokenRuns.get(token);
  if (run === undefined) {
    const per = Math.max(1, Math.floor(TOKEN_RUN_BYTES / (token.length + 1)));
    run = Buffer.alloc(per * (token.length + 1));
    for (let i = 0; i < per; i++) {
      token.copy(run, i * (token.length + 1));
      run[i * (token.length + 1) + token.length] = 0x2c;
    }
    tokenRuns.set(token, run);
  }
  const per = run.length / (token.length + 1);
  while (count > 0) {
    const m = Math.min(count, per);
    w.bytes(run.subarray(0, m * (token.length + 1) - 1));
    count -= m;
    if (count > 0) w.byte(0x2c);
  }
}

/** Writes the tokens of codes[0..n) (token(code)), comma-separated, run by run. */
function writeCoded(w: PieceWriter, codes: Uint8Array | Uint32Array, token: (code: number) => Buffer): void {
  const n = codes.length;
  let i = 0;
  while (i < n) {
    const c = codes[i]!;
    let j = i + 1;
    while (j < n && codes[j] === c) j++;
    if (i > 0) w.byte(0x2c);
    writeRun(w, token(c), j - i);
    i = j;
  }
}

function writeLine(w: PieceWriter, s: SelectedSeries, times: TimesCache): void {
  const n = s.timestampsNs.length;
  w.bytes(lineHead(s.labels));
  for (let i = 0; i < n; i++) {
    if (i > 0) w.byte(0x2c);
    writeValue(w, s.values[i]!);
  }
  w.ascii('],"timestamps":[');
  writeTimesCached(w, s.timestampsNs, times, false);
  w.ascii('],"timestamps_ns":[');
  writeTimesCached(w, s.timestampsNs, times, true);
  w.ascii('],"origins":[');
  writeCoded(w, s.origins, (o) => ORIGIN_TOKENS[o < ORIGIN_BY_CODE.length ? o : ORIGIN_BY_CODE.length]!);
  w.ascii('],"batches":[');
  const batchTokens = s.batchIds.map((b) => batchToken(b));
  writeCoded(w, s.batchRefs, (r) => batchTokens[r] ?? NULL_TOKEN);
  w.ascii("]}\n");
}

/**
 * Export lines, one per series, as UTF-8 pieces of about PIECE_BYTES. VictoriaMetrics'
 * fields first (metric, values, timestamps in ms), then ours: timestamps_ns
 * (decimal strings, lossless), origins, batches. Non-finite values are the
 * strings "NaN", "+Inf", "-Inf" (VictoriaMetrics writes bare NaN/+Inf tokens,
 * which are not JSON). Several short series share a piece (few writes); a
 * long series spans pieces (never one giant buffer).
 */
export function* exportBodyPieces(series: Iterable<SelectedSeries>): Generator<Buffer> {
  const w = new PieceWriter();
  const times: TimesCache = new Map();
  for (const s of series) {
    writeLine(w, s, times);
    while (w.ready.length > 0) yield w.ready.shift()!;
  }
  const last = w.rest();
  if (last !== null) yield last;
}

/** One export line as string pieces (tests and tools; the route streams exportBodyPieces). */
export function* exportLinePieces(s: SelectedSeries): Generator<string> {
  for (const b of exportBodyPieces([s])) yield b.toString("utf8");
}

export async function handleExport(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const reader = readerFor(ctx, params);
  const sets = matchSets(params, true)!;
  const { startNs, endNs } = timeRange(params);
  const includeInferred = inferredParam(params);
  const outcome = await reader.select(
    sets,
    {
      startNs,
      endNs,
      includeInferred,
      seriesMax: ctx.limits.seriesPerReadMax,
      samplesMax: ctx.limits.samplesPerReadMax,
    },
    partialParam(params),
  );
  const selected = outcome.value;
  res.writeHead(200, {
    "Content-Type": "application/stream+json; charset=utf-8",
    "X-HQ-Replicas-Read": String(outcome.replicasRead),
    ...(outcome.partial ? { "X-HQ-Partial": "true", Warning: `199 hqts "${PARTIAL_WARNING}"` } : {}),
  });
  const nonEmpty = selected.filter((s) => s.timestampsNs.length > 0); // as VictoriaMetrics: no empty lines
  for (const piece of exportBodyPieces(nonEmpty)) {
    const wait = writeChunk(res, piece);
    if (wait !== null && !(await wait)) {
      ctx.log.debug("export: the client went away");
      return;
    }
  }
  res.end();
}

export async function handleSeries(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const reader = readerFor(ctx, params);
  const sets = matchSets(params, true)!;
  const { startNs, endNs } = timeRange(params);
  const limit = limitParam(params);
  const outcome = await reader.seriesLabels(sets, startNs, endNs, ctx.limits.seriesPerReadMax, partialParam(params));
  const labels = outcome.value;
  const data = (limit < labels.length ? labels.slice(0, limit) : labels).map(labelsToObject);
  sendJson(res, 200, apiBody(data, outcome));
}

export async function handleLabels(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const reader = readerFor(ctx, params);
  const sets = matchSets(params, false);
  const { startNs, endNs } = timeRange(params);
  const limit = limitParam(params);
  const outcome = await reader.labelNames(sets, startNs, endNs, partialParam(params));
  const names = outcome.value;
  sendJson(res, 200, apiBody(limit < names.length ? names.slice(0, limit) : names, outcome));
}

export async function handleLabelValues(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL, name: string): Promise<void> {
  if (name === "") throw new BadInputError("empty label name", { field: "label name" });
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const reader = readerFor(ctx, params);
  const sets = matchSets(params, false);
  const { startNs, endNs } = timeRange(params);
  const limit = limitParam(params);
  const outcome = await reader.labelValues(name, sets, startNs, endNs, partialParam(params));
  const values = outcome.value;
  sendJson(res, 200, apiBody(limit < values.length ? values.slice(0, limit) : values, outcome));
}
