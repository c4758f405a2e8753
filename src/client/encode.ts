// Points → a request body that the server parses back to exactly the same
// series, nanosecond timestamps and float64 bits.
//
// Influx line protocol with precision=ns is the compact choice, but the
// server names a series `<measurement>_<field>`. Two forms round-trip an
// arbitrary metric name:
//   - with at least one label, an EMPTY measurement: `,job=a my.metric=1.5 1700000000123456789`
//     (the server names the series after the field key alone);
//   - with no label, split the name at an inner `_`: `node_load1` → measurement
//     `node`, field `load1` (the line cannot start with `,` without a tag).
// Line protocol cannot carry a line break in a name or value, nor a metric
// with no label and no usable `_` (`up`). Such a batch goes as CSV with a
// VictoriaMetrics `format` (one column per metric name, one per label name,
// `unix_ns` time, empty cells = no sample / no label), which carries any
// text but cannot describe a name containing `,`. A batch neither can carry
// is refused before sending (BadInputError naming the point).
//
// Values: JavaScript's shortest round-trip decimal (String(v)), `-0` kept,
// NaN/±Inf spelled `NaN`, `+Inf`, `-Inf`. A NaN's payload bits are not kept.

import { BadInputError } from "../core/errors.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";

export interface Point {
  metric: string;
  labels?: Record<string, string>;
  timestampNs: bigint;
  value: number;
}

export interface EncodedBody {
  format: "influx" | "csv";
  precision: "ns";
  csvFormat?: string;
  body: string;
}

export function valueText(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (v === 0 && Object.is(v, -0)) return "-0";
  return String(v);
}

const NAME = "__name__";

/** Labels with empty values dropped (the server drops them too); checks the point (BadInputError naming `points[i]`). */
export function checkedLabels(p: Point, i: number): [string, string][] {
  if (typeof p.metric !== "string" || p.metric === "") throw new BadInputError("metric name is empty", { field: `points[${i}].metric` });
  if (typeof p.timestampNs !== "bigint") throw new BadInputError("timestampNs must be a bigint (int64 nanoseconds)", { field: `points[${i}].timestampNs` });
  if (p.timestampNs < INT64_MIN || p.timestampNs > INT64_MAX) throw new BadInputError("timestampNs is out of the int64 range", { field: `points[${i}].timestampNs` });
  if (typeof p.value !== "number") throw new BadInputError("value must be a number", { field: `points[${i}].value` });
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(p.labels ?? {})) {
    if (k === NAME) throw new BadInputError("the metric name goes in `metric`, not in labels.__name__", { field: `points[${i}].labels.__name__` });
    if (typeof v !== "string") throw new BadInputError(`label ${k} must be a string`, { field: `points[${i}].labels.${k}` });
    if (k === "") throw new BadInputError("empty label name", { field: `points[${i}].labels` });
    if (v !== "") out.push([k, v]);
  }
  return out;
}

// Influx escaping: measurement `,` ` ` `\`; keys and tag values `,` `=` ` ` `\`.
const escMeasurement = (s: string): string => s.replace(/[\\, ]/g, (c) => `\\${c}`);
const escKey = (s: string): string => s.replace(/[\\,= ]/g, (c) => `\\${c}`);
const hasLineBreak = (s: string): boolean => /[\r\n]/.test(s);

/** The series part (`measurement,tags field`) of one point's line, or null when line protocol cannot carry it exactly. */
function influxSeries(metric: string, labels: [string, string][]): string | null {
  if (hasLineBreak(metric)) return null;
  for (const [k, v] of labels) if (hasLineBreak(k) || hasLineBreak(v)) return null;
  if (labels.length > 0) {
    return `${labels.map(([k, v]) => `,${escKey(k)}=${escKey(v)}`).join("")} ${escKey(metric)}`;
  }
  // No label: measurement_field, split at an inner underscore. The line must
  // not start with '#' (a comment), a tab (skipped as leading whitespace) or a
  // byte-order mark (dropped at the start of a body).
  for (let at = metric.indexOf("_", 1); at > 0 && at < metric.length - 1; at = metric.indexOf("_", at + 1)) {
    const measurement = metric.slice(0, at);
    if (/^[#\t\uFEFF]/.test(measurement)) return null;
    return `${escMeasurement(measurement)} ${escKey(metric.slice(at + 1))}`;
  }
  return null;
}

function csvCell(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function encodeCsv(points: readonly Point[], labelSets: readonly [string, string][][]): EncodedBody {
  const metricCol = new Map<string, number>();
  const labelCol = new Map<string, number>();
  let cols = 1; // column 0: time
  for (let i = 0; i < points.length; i++) {
    const m = points[i]!.metric;
    if (m.includes(",")) throw new BadInputError(`metric name ${JSON.stringify(m.slice(0, 64))} has a ',' and no label or '_', and no text format can carry it exactly`, { field: `points[${i}].metric` });
    if (!metricCol.has(m)) metricCol.set(m, cols++);
  }
  for (let i = 0; i < points.length; i++) {
    for (const [k] of labelSets[i]!) {
      if (labelCol.has(k)) continue;
      if (k.includes(",")) throw new BadInputError(`label name ${JSON.stringify(k.slice(0, 64))} has a ',' in a batch that needs CSV`, { field: `points[${i}].labels` });
      labelCol.set(k, cols++);
    }
  }
  const spec = ["1:time:unix_ns"];
  for (const [m, c] of metricCol) spec.push(`${c + 1}:metric:${m}`);
  for (const [k, c] of labelCol) spec.push(`${c + 1}:label:${k}`);
  const rows: string[] = [];
  const row = new Array<string>(cols);
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    row.fill("");
    row[0] = p.timestampNs.toString();
    row[metricCol.get(p.metric)!] = valueText(p.value);
    for (const [k, v] of labelSets[i]!) row[labelCol.get(k)!] = csvCell(v);
    rows.push(row.join(","));
  }
  return { format: "csv", precision: "ns", csvFormat: spec.join(","), body: rows.join("\n") + "\n" };
}

/**
 * Encodes points for one write request: Influx line protocol (ns) when every
 * point fits it, else CSV with a format (see the file comment).
 */
export function encodePoints(points: readonly Point[]): EncodedBody {
  if (points.length === 0) throw new BadInputError("no points to write");
  const labelSets = points.map((p, i) => checkedLabels(p, i));
  const lines: string[] = [];
  const seriesText = new Map<string, string | null>();
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    const ls = labelSets[i]!;
    const cacheKey = JSON.stringify([p.metric, ls]);
    let s = seriesText.get(cacheKey);
    if (s === undefined) {
      s = influxSeries(p.metric, ls);
      seriesText.set(cacheKey, s);
    }
    if (s === null) return encodeCsv(points, labelSets);
    lines.push(`${s}=${valueText(p.value)} ${p.timestampNs.toString()}`);
  }
  return { format: "influx", precision: "ns", body: lines.join("\n") + "\n" };
}
