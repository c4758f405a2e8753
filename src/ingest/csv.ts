// CSV import (/api/v1/import/csv). With VictoriaMetrics's `format` parameter
// the columns are described by it and every row is data; without it the
// first row is a header naming the columns (csv-format.ts).

import { BatchBuilder, type Batch } from "../core/batch.js";
import { BadInputError, type InputLocation } from "../core/errors.js";
import type { Limits } from "../core/limits.js";
import type { Precision } from "../core/time.js";
import { CsvReader } from "./csv-reader.js";
import { parseCsvFormat, planFromHeader, type CsvPlan } from "./csv-format.js";
import { parseValueText } from "./numbers.js";
import { SeriesCache } from "./series-cache.js";
import { checkLineLengths, decodeBody } from "./text.js";

export interface CsvOptions {
  limits: Limits;
  /** Timestamp for rows without a time column. */
  nowNs: bigint;
  /** Unit of integer timestamps in header mode; default ms. Ignored with a format (its time context decides). */
  precision?: Precision;
  /** VictoriaMetrics `format` parameter; null or empty means header mode. */
  csvFormat?: string | null;
}

export function parseCsv(body: Uint8Array, opts: CsvOptions): Batch {
  // The format is checked first: a bad parameter is the clearest error there is.
  let plan: CsvPlan | null = opts.csvFormat === undefined || opts.csvFormat === null || opts.csvFormat === "" ? null : parseCsvFormat(opts.csvFormat);
  const text = decodeBody(body);
  checkLineLengths(text, opts.limits.lineBytesMax);
  const builder = new BatchBuilder(opts.limits);
  const cache = new SeriesCache(builder, opts.limits);
  const reader = new CsvReader(text);
  for (let cells = reader.next(); cells !== null; cells = reader.next()) {
    if (cells.length === 1 && cells[0] === "") continue; // a blank line
    if (plan === null) {
      plan = planFromHeader(cells, reader.recordLine, opts.precision ?? "ms");
      continue;
    }
    addRow(cells, reader.recordLine, plan, builder, cache, opts.nowNs);
  }
  return builder.build();
}

function addRow(cells: readonly string[], line: number, plan: CsvPlan, builder: BatchBuilder, cache: SeriesCache, nowNs: bigint): void {
  if (plan.columnsExact !== null && cells.length !== plan.columnsExact)
    throw new BadInputError(`row has ${cells.length} columns but the header has ${plan.columnsExact}`, { line });
  if (cells.length < plan.columnsMin)
    throw new BadInputError(`row has ${cells.length} columns but the format needs at least ${plan.columnsMin}`, { line });

  let timestampNs = nowNs;
  if (plan.time !== null) {
    const loc: InputLocation = { line, column: plan.time.index + 1, field: "timestamp" };
    const text = cells[plan.time.index]!;
    if (text === "") throw new BadInputError("missing timestamp", loc);
    timestampNs = plan.time.parse(text, loc);
  }

  for (const m of plan.metrics) {
    const cell = cells[m.index]!;
    if (cell === "") continue; // an empty value cell holds no sample, as in VictoriaMetrics
    const field = m.metricName ?? "value";
    const value = parseValueText(cell, { line, column: m.index + 1, field });
    let name = m.metricName;
    if (name === null) {
      const nameIndex = plan.nameIndex!;
      name = cells[nameIndex]!;
      if (name === "") throw new BadInputError("missing metric name", { line, column: nameIndex + 1, field: "__name__" });
    }
    const labelValues = plan.labels.map((l) => cells[l.index]!);
    const metricName = name;
    const key = cache.key(metricName, labelValues.length === 0 ? "" : JSON.stringify(labelValues), () => [["__name__", metricName], ...plan.labels.map((l, i): [string, string] => [l.name, labelValues[i]!])], { line });
    builder.addSample(key, timestampNs, value, { line });
  }
}
