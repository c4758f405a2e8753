// How CSV columns map to series, samples and timestamps: either from
// VictoriaMetrics's `format` query parameter or from a header row.

import { BadInputError, type InputLocation } from "../core/errors.js";
import type { Precision } from "../core/time.js";
import { parseDecimalTimestamp, parseRfc3339 } from "./numbers.js";
import { quote } from "./text.js";

export type TimeParser = (text: string, loc: InputLocation) => bigint;

export interface CsvPlan {
  /** 0-based column index and label name. */
  labels: { index: number; name: string }[];
  /** Value columns; metricName null means the row's name column names it. */
  metrics: { index: number; metricName: string | null }[];
  /** Column holding the metric name (header mode), else null. */
  nameIndex: number | null;
  time: { index: number; parse: TimeParser } | null;
  /** Rows must have exactly this many columns (header mode), else null. */
  columnsExact: number | null;
  /** Rows must have at least this many columns. */
  columnsMin: number;
}

// VictoriaMetrics's own bound on <column_pos>.
const COLUMN_POS_MAX = 64 * 1024;

const TIME_FORMATS: Readonly<Record<string, TimeParser>> = {
  unix_s: (t, loc) => parseDecimalTimestamp(t, "s", loc),
  unix_ms: (t, loc) => parseDecimalTimestamp(t, "ms", loc),
  unix_ns: (t, loc) => parseDecimalTimestamp(t, "ns", loc),
  rfc3339: (t, loc) => parseRfc3339(t, loc),
};

/**
 * Parses VictoriaMetrics's `format` parameter: comma-separated entries
 * `<column_pos>:<type>:<context>`, 1-based positions, types metric (context:
 * metric name), label (context: label name) and time (context: unix_s,
 * unix_ms, unix_ns or rfc3339). At least one metric column, at most one time column.
 */
export function parseCsvFormat(format: string): CsvPlan {
  const plan: CsvPlan = { labels: [], metrics: [], nameIndex: null, time: null, columnsExact: null, columnsMin: 0 };
  const used = new Set<number>();
  const entries = format.split(",");
  for (let e = 0; e < entries.length; e++) {
    const entry = entries[e]!;
    const bad = (message: string): BadInputError => new BadInputError(`entry #${e + 1} ${quote(entry)}: ${message}`, { field: "format" });
    const first = entry.indexOf(":");
    const second = first < 0 ? -1 : entry.indexOf(":", first + 1);
    if (second < 0) throw bad("must have the form <column_pos>:<type>:<context>");
    const posText = entry.slice(0, first);
    const type = entry.slice(first + 1, second);
    const context = entry.slice(second + 1);
    if (!/^[0-9]{1,6}$/.test(posText)) throw bad("<column_pos> must be a positive integer");
    const pos = Number(posText);
    if (pos < 1 || pos > COLUMN_POS_MAX) throw bad(`<column_pos> must be between 1 and ${COLUMN_POS_MAX}`);
    if (used.has(pos)) throw bad(`column ${pos} is described twice`);
    used.add(pos);
    const index = pos - 1;
    switch (type) {
      case "metric":
        if (context === "") throw bad("the metric name is empty");
        plan.metrics.push({ index, metricName: context });
        break;
      case "label":
        if (context === "") throw bad("the label name is empty");
        plan.labels.push({ index, name: context });
        break;
      case "time": {
        if (plan.time !== null) throw bad("a second time column");
        const parse = TIME_FORMATS[context];
        if (parse === undefined || !Object.hasOwn(TIME_FORMATS, context))
          throw bad(`unknown time format ${quote(context)} (want unix_s, unix_ms, unix_ns or rfc3339; custom: layouts are not supported)`);
        plan.time = { index, parse };
        break;
      }
      default:
        throw bad(`unknown column type ${quote(type)} (want metric, label or time)`);
    }
    plan.columnsMin = Math.max(plan.columnsMin, pos);
  }
  if (plan.metrics.length === 0) throw new BadInputError("needs at least one metric column", { field: "format" });
  return plan;
}

const NAME_COLUMNS = new Set(["__name__", "metric"]);
const TIME_COLUMNS = new Set(["timestamp", "time"]);
const VALUE_COLUMN = "value";

/**
 * Builds the plan from a header row: `__name__` or `metric` names the metric,
 * `value` holds the value, `timestamp` or `time` the time (optional: absent
 * means the request's time), every other column is a label.
 */
export function planFromHeader(header: readonly string[], line: number, precision: Precision): CsvPlan {
  const plan: CsvPlan = { labels: [], metrics: [], nameIndex: null, time: null, columnsExact: header.length, columnsMin: header.length };
  const seen = new Set<string>();
  for (let index = 0; index < header.length; index++) {
    const name = header[index]!.trim();
    const loc: InputLocation = { line, column: index + 1, field: "header" };
    if (name === "") throw new BadInputError("empty column name", loc);
    if (seen.has(name)) throw new BadInputError(`column ${quote(name)} appears twice`, loc);
    seen.add(name);
    if (NAME_COLUMNS.has(name)) {
      if (plan.nameIndex !== null) throw new BadInputError("both __name__ and metric columns", loc);
      plan.nameIndex = index;
    } else if (TIME_COLUMNS.has(name)) {
      if (plan.time !== null) throw new BadInputError("both timestamp and time columns", loc);
      plan.time = { index, parse: headerTimeParser(precision) };
    } else if (name === VALUE_COLUMN) {
      plan.metrics.push({ index, metricName: null });
    } else {
      plan.labels.push({ index, name });
    }
  }
  const loc: InputLocation = { line, field: "header" };
  if (plan.nameIndex === null) throw new BadInputError("no __name__ or metric column (or pass format=...)", loc);
  if (plan.metrics.length === 0) throw new BadInputError("no value column (or pass format=...)", loc);
  return plan;
}

/** Integer or decimal Unix time in `precision`, or RFC 3339 (recognised by its ':'). */
function headerTimeParser(precision: Precision): TimeParser {
  return (text, loc) => (text.includes(":") ? parseRfc3339(text, loc) : parseDecimalTimestamp(text, precision, loc));
}
