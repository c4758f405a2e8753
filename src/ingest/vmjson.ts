// VictoriaMetrics /api/v1/import JSON lines: one series per line,
//   {"metric":{"__name__":"x","job":"a"},"values":[1,"NaN"],"timestamps":[1700000000000,...]}
// Timestamps are integer milliseconds. JSON has no NaN or Inf, so those come
// as strings. This is the bulk-import path, so the per-sample loop allocates
// nothing: the builder stores ms timestamps as ns without a BigInt.

import type { Batch } from "../core/batch.js";
import { BatchBuilder, MS_ABS_MAX_FOR_NS } from "../core/batch.js";
import { BadInputError, type InputLocation } from "../core/errors.js";
import { canonicalLabels } from "../core/labels.js";
import type { Limits } from "../core/limits.js";
import { parseIntTimestamp } from "../core/time.js";
import { parseDecimalFloat, parseSpecialFloat } from "./numbers.js";
import { decodeBody, isBlank, LineReader } from "./text.js";

export interface VmJsonOptions {
  limits: Limits;
}

export function parseVmJson(body: Uint8Array, opts: VmJsonOptions): Batch {
  const text = decodeBody(body);
  const builder = new BatchBuilder(opts.limits);
  const lines = new LineReader(text, opts.limits.lineBytesMax);
  for (let line = lines.next(); line !== null; line = lines.next()) {
    if (isBlank(line)) continue;
    parseLine(line, lines.lineNo, builder, opts.limits);
  }
  return builder.build();
}

function parseLine(line: string, lineNo: number, builder: BatchBuilder, limits: Limits): void {
  const bad = (field: string, message: string): BadInputError => new BadInputError(message, { line: lineNo, field });
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch (e) {
    // SyntaxError normally; a RangeError if nesting exhausts the stack. Either way the input is at fault.
    throw new BadInputError(`invalid JSON: ${e instanceof Error ? e.message.slice(0, 200) : "parse error"}`, { line: lineNo });
  }
  if (!isPlainObject(row)) throw new BadInputError("expected a JSON object", { line: lineNo });
  const metric = row["metric"];
  const values = row["values"];
  const timestampsNsRaw = row["timestamps_ns"];
  if (timestampsNsRaw !== undefined) {
    // What /api/v1/export writes besides the ms timestamps: exact ns, so exported data round-trips losslessly.
    parseNsLine(metric, values, timestampsNsRaw, row["timestamps"], lineNo, builder, limits);
    return;
  }
  const timestamps = row["timestamps"];
  if (!isPlainObject(metric)) throw bad("metric", metric === undefined ? "missing" : "must be an object of label names to string values");
  if (!Array.isArray(values)) throw bad("values", values === undefined ? "missing" : "must be an array");
  if (!Array.isArray(timestamps)) throw bad("timestamps", timestamps === undefined ? "missing" : "must be an array");
  if (values.length !== timestamps.length)
    throw bad("values", `has ${values.length} entries but timestamps has ${timestamps.length}`);

  const loc: InputLocation = { line: lineNo };
  const key = seriesOf(metric, loc, builder, limits, bad);

  for (let i = 0; i < values.length; i++) {
    const t: unknown = timestamps[i];
    if (typeof t !== "number" || !Number.isInteger(t) || t < -MS_ABS_MAX_FOR_NS || t > MS_ABS_MAX_FOR_NS)
      throw bad(`timestamps[${i}]`, describeBadTimestamp(t));
    builder.addSampleMs(key, t, parseValue(values[i], i, bad), loc);
  }
}

type Bad = (field: string, message: string) => BadInputError;

function seriesOf(metric: Record<string, unknown>, loc: InputLocation, builder: BatchBuilder, limits: Limits, bad: Bad): string {
  const pairs: [string, string][] = [];
  for (const name of Object.keys(metric)) {
    const v = metric[name];
    if (typeof v !== "string") throw bad(`metric.${name.slice(0, 64)}`, "label value must be a string");
    pairs.push([name, v]);
  }
  return builder.series(canonicalLabels(pairs, limits, loc), loc);
}

function parseValue(raw: unknown, i: number, bad: Bad): number {
  if (typeof raw === "number") {
    // JSON cannot spell ±Inf, so a non-finite number means a literal overflowed float64.
    if (!Number.isFinite(raw)) throw bad(`values[${i}]`, "number is out of the float64 range");
    return raw;
  }
  if (typeof raw === "string") return parseQuotedValue(raw, i, bad);
  throw bad(`values[${i}]`, `must be a number or one of "NaN", "Inf", "-Inf"; got ${raw === null ? "null" : typeof raw}`);
}

function parseNsLine(metric: unknown, values: unknown, tsNs: unknown, tsMs: unknown, lineNo: number, builder: BatchBuilder, limits: Limits): void {
  const bad = (field: string, message: string): BadInputError => new BadInputError(message, { line: lineNo, field });
  if (!isPlainObject(metric)) throw bad("metric", metric === undefined ? "missing" : "must be an object of label names to string values");
  if (!Array.isArray(values)) throw bad("values", values === undefined ? "missing" : "must be an array");
  if (!Array.isArray(tsNs)) throw bad("timestamps_ns", "must be an array of decimal strings");
  if (values.length !== tsNs.length) throw bad("values", `has ${values.length} entries but timestamps_ns has ${tsNs.length}`);
  if (tsMs !== undefined && (!Array.isArray(tsMs) || tsMs.length !== tsNs.length))
    throw bad("timestamps", "must have as many entries as timestamps_ns when both are given");
  const loc: InputLocation = { line: lineNo };
  const key = seriesOf(metric, loc, builder, limits, bad);
  for (let i = 0; i < values.length; i++) {
    const t: unknown = tsNs[i];
    if (typeof t !== "string") throw bad(`timestamps_ns[${i}]`, "must be a decimal string of nanoseconds");
    const ns = parseIntTimestamp(t, "ns", { line: lineNo, field: `timestamps_ns[${i}]` });
    if (tsMs !== undefined) {
      const ms = (tsMs as unknown[])[i];
      const floorMs = ns >= 0n ? ns / 1_000_000n : -((-ns + 999_999n) / 1_000_000n);
      if (typeof ms !== "number" || BigInt(ms) !== floorMs) throw bad(`timestamps[${i}]`, `disagrees with timestamps_ns[${i}] (${t})`);
    }
    const v = parseValue(values[i], i, bad);
    builder.addSample(key, ns, v, loc);
  }
}

// Some exporters quote every number; JSON's NaN/Inf workaround does it for the special values.
function parseQuotedValue(raw: string, i: number, bad: (field: string, message: string) => BadInputError): number {
  const special = parseSpecialFloat(raw);
  if (special !== undefined) return special;
  const v = parseDecimalFloat(raw);
  if (v === undefined) throw bad(`values[${i}]`, `cannot parse ${JSON.stringify(raw.slice(0, 40))} as a number`);
  if (!Number.isFinite(v)) throw bad(`values[${i}]`, "number is out of the float64 range");
  return v;
}

function describeBadTimestamp(t: unknown): string {
  if (typeof t !== "number") return `must be an integer number of milliseconds; got ${t === null ? "null" : typeof t}`;
  if (!Number.isInteger(t)) return `${t} is not an integer number of milliseconds`;
  return `${t} ms is out of the int64 nanosecond range`;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}
