// Inferred points for one gap, and the batch that carries them through the
// normal write path (docs/gaps.md, "Filling"). Pure: no I/O, no clock.
//
// Everything here is a function of (gap, the two points around it, interval,
// method): the same gap yields the same timestamps, values and inference
// string, hence the same batch bytes and digest on every node, so a retried
// or repeated fill is a duplicate, never a second version.

import { assert } from "../core/assert.js";
import { BatchBuilder, type Batch } from "../core/batch.js";
import { BadInputError, TooLargeError } from "../core/errors.js";
import type { Labels } from "../core/labels.js";
import { DEFAULT_LIMITS, type Limits } from "../core/limits.js";
import type { Gap } from "./detect.js";

export type FillMethod = "linear" | "previous";

/** Default: gaps missing more slots than this are refused (TooLargeError). */
export const FILL_SLOTS_MAX_DEFAULT = 100_000;

export interface FillPoint {
  readonly tNs: bigint;
  readonly value: number;
}

export interface FillOptions {
  /** Refuse gaps missing more slots than this. Default 100,000. */
  slotsMax?: number;
}

export interface Fill {
  /** start + k × interval for k = 1..missingSlots, all strictly inside (start, end). */
  readonly timestampsNs: bigint[];
  readonly values: number[];
  /** Canonical JSON: method, source points, interval, gap (docs/gaps.md, "The inference record"). */
  readonly inference: string;
}

/**
 * The inferred points for `gap`: one per missing slot, at startNs + k ×
 * intervalNs (k = 1..missingSlots), valued by linear interpolation between
 * `before` and `after`, or as `before` (previous). Throws TooLargeError for a
 * gap of more than slotsMax slots and BadInputError for a non-finite source
 * value (NaN, such as a staleness marker, or ±Inf: nothing sound to infer).
 */
export function fillGap(gap: Gap, before: FillPoint, after: FillPoint, intervalNs: bigint, method: FillMethod, opts: FillOptions = {}): Fill {
  const slotsMax = opts.slotsMax ?? FILL_SLOTS_MAX_DEFAULT;
  assert(Number.isSafeInteger(slotsMax) && slotsMax >= 1, "fillGap: slotsMax must be an integer >= 1");
  assert(intervalNs > 0n, "fillGap: intervalNs must be positive");
  assert(method === "linear" || method === "previous", "fillGap: method must be linear or previous");
  assert(gap.endNs > gap.startNs, "fillGap: the gap ends after it starts");
  assert(Number.isSafeInteger(gap.missingSlots) && gap.missingSlots >= 1, "fillGap: a gap misses at least one slot");
  assert(before.tNs === gap.startNs, "fillGap: `before` is the gap's start point");
  assert(after.tNs === gap.endNs, "fillGap: `after` is the gap's end point");

  if (gap.missingSlots > slotsMax)
    throw new TooLargeError(`gap ${gap.startNs}..${gap.endNs} ns: missing slots to fill (${gap.missingSlots})`, slotsMax, { field: "missingSlots" });
  if (!Number.isFinite(before.value) || (method === "linear" && !Number.isFinite(after.value)))
    throw new BadInputError(`gap ${gap.startNs}..${gap.endNs} ns: cannot infer ${method} values from a non-finite value`, { field: "value" });

  const lastSlotNs = gap.startNs + BigInt(gap.missingSlots) * intervalNs;
  // missingSlots = round(delta / I) - 1 <= delta / I - 1/2, so the last slot is at least I / 2 before the end.
  assert(lastSlotNs < gap.endNs, "fillGap: every slot lies strictly inside the gap (missingSlots matches intervalNs)");

  const timestampsNs: bigint[] = [];
  const values: number[] = [];
  const spanNs = Number(gap.endNs - gap.startNs);
  for (let k = 1; k <= gap.missingSlots; k++) {
    const tNs = gap.startNs + BigInt(k) * intervalNs;
    timestampsNs.push(tNs);
    values.push(method === "previous" ? before.value : interpolate(before.value, after.value, Number(tNs - gap.startNs), spanNs));
  }
  assert(timestampsNs.length === gap.missingSlots && values.length === gap.missingSlots, "fillGap: one point per missing slot");

  const from: [bigint, number][] = method === "linear" ? [[before.tNs, before.value], [after.tNs, after.value]] : [[before.tNs, before.value]];
  const inference = canonicalJson({ method, from, intervalNs, gap: { startNs: gap.startNs, endNs: gap.endNs } });
  return { timestampsNs, values, inference };
}

/**
 * v0 + (v1 - v0) × elapsed / span, elapsed in (0, span): multiplied before
 * dividing (one rounding fewer, so whole-number ramps give whole numbers);
 * exactly v0 when v0 === v1; no overflow when v1 - v0 or the product exceeds
 * the double range.
 */
function interpolate(v0: number, v1: number, elapsed: number, span: number): number {
  assert(elapsed > 0 && elapsed < span, "interpolate: the slot lies strictly between the two points");
  const d = v1 - v0;
  if (!Number.isFinite(d)) {
    const f = elapsed / span;
    return v0 * (1 - f) + v1 * f;
  }
  const product = d * elapsed;
  return Number.isFinite(product) ? v0 + product / span : v0 + d * (elapsed / span);
}

export interface InferredBatchOptions {
  shardId?: number;
  limits?: Pick<Limits, "seriesPerBatchMax" | "samplesPerBatchMax">;
}

/**
 * One batch (origin "inferred", the fill's inference string) holding the
 * fill's points for the series `labels` (canonical, core/labels.ts). One
 * batch per gap: the inference string describes exactly one gap.
 */
export function buildInferredBatch(labels: Labels, fill: Fill, opts: InferredBatchOptions = {}): Batch {
  assert(fill.timestampsNs.length === fill.values.length, "buildInferredBatch: one value per timestamp");
  assert(fill.timestampsNs.length > 0, "buildInferredBatch: a fill holds at least one point");
  const b = new BatchBuilder(opts.limits ?? DEFAULT_LIMITS);
  const key = b.series(labels);
  for (let i = 0; i < fill.timestampsNs.length; i++) b.addSample(key, fill.timestampsNs[i]!, fill.values[i]!);
  const batch = b.build({ shardId: opts.shardId ?? 0, origin: "inferred", inference: fill.inference });
  assert(batch.sampleCount === fill.timestampsNs.length, "buildInferredBatch: every inferred point is in the batch");
  return batch;
}

/** One batch per fill (per gap), in the order given. */
export function buildInferredBatches(labels: Labels, fills: readonly Fill[], opts: InferredBatchOptions = {}): Batch[] {
  return fills.map((f) => buildInferredBatch(labels, f, opts));
}

type Json = bigint | number | string | boolean | null | readonly Json[] | { readonly [k: string]: Json };

/**
 * Canonical JSON: object keys sorted (UTF-16 code unit order), no spaces,
 * bigints as decimal strings, numbers in JavaScript's shortest round-trip
 * form with -0 written "-0" (valid JSON that parses back to -0). Non-finite
 * numbers are a bug here (the caller refuses them first).
 */
export function canonicalJson(v: Json): string {
  if (typeof v === "bigint") return `"${v.toString()}"`;
  if (typeof v === "number") {
    assert(Number.isFinite(v), "canonicalJson: numbers must be finite");
    return Object.is(v, -0) ? "-0" : JSON.stringify(v);
  }
  if (typeof v === "string" || typeof v === "boolean" || v === null) return JSON.stringify(v);
  if (Array.isArray(v)) return `[${(v as readonly Json[]).map(canonicalJson).join(",")}]`;
  const o = v as { readonly [k: string]: Json };
  const keys = Object.keys(o).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k]!)}`).join(",")}}`;
}
