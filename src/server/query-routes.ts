// The Prometheus query API: GET|POST /api/v1/query and /api/v1/query_range,
// with Prometheus's parameters, JSON shapes and error format, so Grafana's
// Prometheus data source works unchanged. PromQL runs in src/query/promql over
// the node's reader (the majority reader in a cluster: complete answers).
//
// HQ-TS additions: `inferred=exclude` leaves inferred points (gap fills) out;
// an answer computed from inferred points says so in `warnings`; a partial
// cluster read (partial_response=true) says so too.

import type { IncomingMessage, ServerResponse } from "node:http";
import { BadInputError, HqError } from "../core/errors.js";
import { labelsToObject, type Labels } from "../core/labels.js";
import type { Matcher } from "../core/matchers.js";
import { nsColumnToMs, parseApiTime } from "../core/time.js";
import { Evaluator, type SeriesSource } from "../query/promql/eval.js";
import { parseDurationMs, parsePromQL } from "../query/promql/parse.js";
import type { Value } from "../query/promql/value.js";
import type { RouteContext } from "./context.js";
import { requestParams, sendJson } from "./http-util.js";
import { apiBody, inferredParam, partialParam, readerFor } from "./read-routes.js";

const FORM_BYTES_MAX = 256 * 1024;
/** Prometheus's limit on points per series in a range query's answer. */
const RANGE_POINTS_MAX = 11_000;

/** Prometheus times: RFC 3339 or Unix seconds with a fraction; absent = now. In ms. */
function timeParam(params: URLSearchParams, name: string, dflt: number | null): number {
  const raw = params.get(name);
  if (raw === null || raw === "") {
    if (dflt === null) throw new BadInputError(`${name} is required`, { field: name });
    return dflt;
  }
  return Number(parseApiTime(raw, { field: name }) / 1_000_000n);
}

/** Durations: Prometheus form (5m, 1h30m, 250ms; PromQL's own parser) or seconds as a float. In ms. */
export function durationParam(raw: string, name: string): number {
  if (/^[0-9]+(\.[0-9]+)?$/.test(raw)) return Math.round(Number(raw) * 1000);
  const ms = parseDurationMs(raw);
  if (ms === null) throw new BadInputError(`cannot parse "${raw.slice(0, 40)}" to a valid duration`, { field: name });
  return ms;
}

interface SourceStats {
  inferredSamples: number;
  partial: boolean;
}

/** The engine's reads: ns storage → ms PromQL, counting inferred samples for the warning. */
function sourceOf(ctx: RouteContext, params: URLSearchParams, stats: SourceStats): SeriesSource {
  const reader = readerFor(ctx, params);
  const includeInferred = inferredParam(params);
  const allowPartial = partialParam(params);
  return {
    select: async (matchers: Matcher[], startMs: number, endMs: number) => {
      const out = await reader.select(
        [matchers],
        { startNs: BigInt(Math.floor(startMs)) * 1_000_000n, endNs: BigInt(Math.ceil(endMs)) * 1_000_000n + 999_999n, includeInferred, seriesMax: ctx.limits.seriesPerReadMax, samplesMax: ctx.limits.samplesPerReadMax },
        allowPartial,
      );
      if (out.partial) stats.partial = true;
      return out.value.map((s) => {
        const tMs = nsColumnToMs(s.timestampsNs);
        for (let i = 0; i < s.origins.length; i++) if (s.origins[i] === 1) stats.inferredSamples++;
        return { labels: s.labels, tMs, values: s.values };
      });
    },
  };
}

/** Prometheus's sample value: a string, "NaN", "+Inf", "-Inf". */
function promValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

const promTime = (tMs: number): number => tMs / 1000;
const metric = (l: Labels): Record<string, string> => labelsToObject(l);

function resultData(v: Value): { resultType: string; result: unknown } {
  switch (v.type) {
    case "scalar":
      return { resultType: "scalar", result: [promTime(v.result.tMs), promValue(v.result.value)] };
    case "string":
      return { resultType: "string", result: [promTime(v.result.tMs), v.result.value] };
    case "vector":
      // An instant vector's samples are at the evaluation time.
      return { resultType: "vector", result: v.result.map((s) => ({ metric: metric(s.labels), value: [NaN, promValue(s.value)] })) };
    case "matrix":
      return { resultType: "matrix", result: v.result.map((s) => ({ metric: metric(s.labels), values: s.points.map((p) => [promTime(p.tMs), promValue(p.value)]) })) };
  }
}

function warningsOf(stats: SourceStats, warnings: readonly string[]): string[] {
  const out = [...warnings];
  if (stats.inferredSamples > 0) out.push(`the answer read ${stats.inferredSamples} inferred points (filled gaps, never original); add inferred=exclude to leave them out`);
  if (stats.partial) out.push("partial response: fewer than a majority of replicas answered, so acknowledged points may be missing");
  return out;
}

/** A request's `timeout` may lower the node's limit (--query-timeout), never raise it. */
function timeoutParam(ctx: RouteContext, params: URLSearchParams): number {
  const raw = params.get("timeout");
  const max = ctx.limits.queryTimeoutMs;
  if (raw === null || raw === "") return max;
  const ms = durationParam(raw, "timeout");
  if (ms <= 0) throw new BadInputError("timeout must be positive", { field: "timeout" });
  return Math.min(max, ms);
}

/**
 * Runs a parsed query, answering failures the way Prometheus does: an error found while evaluating is 422
 * "execution" (a limit too: "query processing would load too many samples"), a timeout 503 "timeout". Parse and
 * parameter errors are thrown before this, as 400 bad_data by the server's error path.
 */
async function evaluate<T>(res: ServerResponse, run: () => Promise<T>): Promise<T | null> {
  try {
    return await run();
  } catch (e) {
    if (!(e instanceof HqError) || e.code === "corruption" || e.code === "internal") throw e;
    // Cluster reads below a majority, an engine shutting down: the server's mapping (503 unavailable, retryable).
    if (e.code === "unavailable" && !/timed out/.test(e.message)) throw e;
    if (e.code === "overloaded") throw e;
    const timeout = e.code === "unavailable";
    sendJson(res, timeout ? 503 : 422, { status: "error", errorType: timeout ? "timeout" : "execution", error: e.message, code: e.code, retryable: timeout });
    return null;
  }
}

export async function handleQuery(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const q = params.get("query");
  if (q === null || q === "") throw new BadInputError("query is required", { field: "query" });
  const tMs = timeParam(params, "time", Date.now());
  const expr = parsePromQL(q);
  const stats: SourceStats = { inferredSamples: 0, partial: false };
  const ev = new Evaluator(sourceOf(ctx, params, stats), { timeoutMs: timeoutParam(ctx, params), maxSamples: ctx.limits.querySamplesMax });
  const r = await evaluate(res, () => ev.instant(expr, tMs, q));
  if (r === null) return;
  const data = resultData(r.value);
  if (r.value.type === "vector") for (const s of data.result as { value: [number, string] }[]) s.value[0] = promTime(tMs);
  const warnings = warningsOf(stats, r.warnings);
  sendJson(res, 200, { status: "success", data, ...(warnings.length > 0 ? { warnings } : {}), ...(r.infos.length > 0 ? { infos: r.infos } : {}) });
}

export async function handleQueryRange(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const q = params.get("query");
  if (q === null || q === "") throw new BadInputError("query is required", { field: "query" });
  const startMs = timeParam(params, "start", null);
  const endMs = timeParam(params, "end", null);
  const stepRaw = params.get("step");
  if (stepRaw === null || stepRaw === "") throw new BadInputError("step is required", { field: "step" });
  const stepMs = durationParam(stepRaw, "step");
  if (stepMs <= 0) throw new BadInputError("zero or negative query resolution step widths are not accepted. Try a positive integer", { field: "step" });
  if (endMs < startMs) throw new BadInputError("end timestamp must not be before start time", { field: "end" });
  // Prometheus refuses this in the API, before evaluating: 400 bad_data.
  if (Math.floor((endMs - startMs) / stepMs) + 1 > RANGE_POINTS_MAX)
    throw new BadInputError(`exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)`, { field: "step" });
  const expr = parsePromQL(q);
  const stats: SourceStats = { inferredSamples: 0, partial: false };
  const ev = new Evaluator(sourceOf(ctx, params, stats), { timeoutMs: timeoutParam(ctx, params), maxSamples: ctx.limits.querySamplesMax });
  const r = await evaluate(res, () => ev.range(expr, startMs, endMs, stepMs, q));
  if (r === null) return;
  const warnings = warningsOf(stats, r.warnings);
  sendJson(res, 200, {
    status: "success",
    data: resultData({ type: "matrix", result: r.value }),
    ...(warnings.length > 0 ? { warnings } : {}),
    ...(r.infos.length > 0 ? { infos: r.infos } : {}),
  });
}

/** Grafana asks for it to tell Prometheus flavours apart. */
export async function handleBuildInfo(ctx: RouteContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  req.resume();
  sendJson(res, 200, { status: "success", data: { version: "3.0.0", revision: `hq-ts ${ctx.version}`, branch: "", buildUser: "", buildDate: "", goVersion: "" } });
}

/** Exemplars are not stored (remote write's are counted and dropped): Grafana asks, and gets an empty answer in shape. */
export async function handleQueryExemplars(_ctx: RouteContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  req.resume();
  sendJson(res, 200, { status: "success", data: [] });
}

/** Prometheus's `limit`-style parameter: an integer, negative (the default) for none. */
function limitParam(params: URLSearchParams, name: string): number {
  const raw = params.get(name);
  if (raw === null || raw === "") return -1;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new BadInputError(`${name} must be an integer, got "${raw.slice(0, 20)}"`, { field: name });
  return n;
}

/**
 * GET /api/v1/metadata: the type, help and unit remote write carried per metric family (storage/metadata.ts).
 * Parameters as Prometheus's: metric, limit, limit_per_metric.
 */
export async function handleMetadata(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const metric = params.get("metric");
  const outcome = await readerFor(ctx, params).metadata(metric === null || metric === "" ? null : metric, limitParam(params, "limit"), limitParam(params, "limit_per_metric"), partialParam(params));
  sendJson(res, 200, apiBody(outcome.value, outcome));
}
