// Read endpoints: /api/v1/export (VictoriaMetrics JSON lines plus provenance)
// and the Prometheus metadata API (series, labels, label values).

import type { IncomingMessage, ServerResponse } from "node:http";
import { ORIGIN_BY_CODE } from "../core/batch.js";
import { BadInputError } from "../core/errors.js";
import { labelsToObject } from "../core/labels.js";
import { INT64_MAX, INT64_MIN, nsToMs, parseApiTime } from "../core/time.js";
import { parseMatchParams } from "../query/selector.js";
import type { MatcherSets, SelectedSeries } from "../storage/engine-api.js";
import { requestParams, sendJson, writeChunk } from "./http-util.js";
import { jsonNumber } from "./json.js";
import type { RouteContext } from "./context.js";

/** Form bodies of read requests (match[] lists) are small; this bounds them. */
const FORM_BYTES_MAX = 4 * 1024 * 1024;

interface TimeRange {
  startNs: bigint;
  endNs: bigint;
}

function timeRange(params: URLSearchParams): TimeRange {
  const s = params.get("start");
  const e = params.get("end");
  const startNs = s === null || s === "" ? INT64_MIN : parseApiTime(s, { field: "start" });
  const endNs = e === null || e === "" ? INT64_MAX : parseApiTime(e, { field: "end" });
  if (endNs < startNs) throw new BadInputError("end is before start", { field: "end" });
  return { startNs, endNs };
}

function matchSets(params: URLSearchParams, required: boolean): MatcherSets | null {
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

function inferredParam(params: URLSearchParams): boolean {
  const raw = params.get("inferred");
  if (raw === null || raw === "" || raw === "include") return true;
  if (raw === "exclude") return false;
  throw new BadInputError(`inferred must be "include" or "exclude", got "${raw.slice(0, 20)}"`, { field: "inferred" });
}

const SAMPLES_PER_PIECE = 8192;

/**
 * One export line. VictoriaMetrics' fields first (metric, values, timestamps in
 * ms), then ours: timestamps_ns (decimal strings, lossless), origins, batches.
 * Non-finite values are the strings "NaN", "+Inf", "-Inf" (VictoriaMetrics
 * writes bare NaN/+Inf tokens, which are not JSON). Yields pieces so a long
 * series is never one giant string.
 */
export function* exportLinePieces(s: SelectedSeries): Generator<string> {
  const n = s.timestampsNs.length;
  const metric = JSON.stringify(labelsToObject(s.labels));
  const field = (name: string, item: (i: number) => string, last: boolean): string[] => {
    const out: string[] = [];
    for (let lo = 0; lo < n; lo += SAMPLES_PER_PIECE) {
      const hi = Math.min(n, lo + SAMPLES_PER_PIECE);
      const parts: string[] = new Array<string>(hi - lo);
      for (let i = lo; i < hi; i++) parts[i - lo] = item(i);
      out.push((lo === 0 ? `"${name}":[` : ",") + parts.join(","));
    }
    if (n === 0) out.push(`"${name}":[`);
    out.push(last ? "]}\n" : "],");
    return out;
  };
  const batchJson = s.batchIds.map((b) => JSON.stringify(b));
  yield `{"metric":${metric},`;
  yield* field("values", (i) => jsonNumber(s.values[i]!), false);
  yield* field("timestamps", (i) => String(nsToMs(s.timestampsNs[i]!)), false);
  yield* field("timestamps_ns", (i) => `"${s.timestampsNs[i]!.toString()}"`, false);
  yield* field("origins", (i) => `"${ORIGIN_BY_CODE[s.origins[i]!] ?? "unknown"}"`, false);
  yield* field("batches", (i) => batchJson[s.batchRefs[i]!] ?? "null", true);
}

export async function handleExport(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const engine = ctx.engine();
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const sets = matchSets(params, true)!;
  const { startNs, endNs } = timeRange(params);
  const includeInferred = inferredParam(params);
  const selected = engine.select(sets, {
    startNs,
    endNs,
    includeInferred,
    seriesMax: ctx.limits.seriesPerReadMax,
    samplesMax: ctx.limits.samplesPerReadMax,
  });
  res.writeHead(200, { "Content-Type": "application/stream+json; charset=utf-8" });
  for (const s of selected) {
    if (s.timestampsNs.length === 0) continue; // as VictoriaMetrics: no empty lines
    for (const piece of exportLinePieces(s)) {
      const wait = writeChunk(res, piece);
      if (wait !== null && !(await wait)) {
        ctx.log.debug("export: the client went away");
        return;
      }
    }
  }
  res.end();
}

export async function handleSeries(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const engine = ctx.engine();
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const sets = matchSets(params, true)!;
  const { startNs, endNs } = timeRange(params);
  const limit = limitParam(params);
  const labels = engine.seriesLabels(sets, startNs, endNs, ctx.limits.seriesPerReadMax);
  const data = (limit < labels.length ? labels.slice(0, limit) : labels).map(labelsToObject);
  sendJson(res, 200, { status: "success", data });
}

export async function handleLabels(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const engine = ctx.engine();
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const sets = matchSets(params, false);
  const { startNs, endNs } = timeRange(params);
  const limit = limitParam(params);
  const names = engine.labelNames(sets, startNs, endNs);
  sendJson(res, 200, { status: "success", data: limit < names.length ? names.slice(0, limit) : names });
}

export async function handleLabelValues(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL, name: string): Promise<void> {
  const engine = ctx.engine();
  if (name === "") throw new BadInputError("empty label name", { field: "label name" });
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const sets = matchSets(params, false);
  const { startNs, endNs } = timeRange(params);
  const limit = limitParam(params);
  const values = engine.labelValues(name, sets, startNs, endNs);
  sendJson(res, 200, { status: "success", data: limit < values.length ? values.slice(0, limit) : values });
}
