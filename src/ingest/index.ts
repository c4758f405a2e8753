// Ingest: request body bytes → one canonical Batch, or an HqError. Pure
// functions, no I/O; the server and the CLI choose the format.

import type { Batch } from "../core/batch.js";
import type { Limits } from "../core/limits.js";
import type { Precision } from "../core/time.js";
import { unreachable } from "../core/assert.js";
import type { IngestFormat } from "./format.js";
import { parseCsv } from "./csv.js";
import { parseInflux } from "./influx.js";
import { parseVmJson } from "./vmjson.js";

export { parseCsv } from "./csv.js";
export { parseInflux, parseInfluxDetailed, type InfluxParseResult } from "./influx.js";
export { parseVmJson } from "./vmjson.js";
export { detectFormat } from "./detect.js";

export type { IngestFormat } from "./format.js";

export interface ParseOptions {
  limits: Limits;
  /** Timestamp for points that carry none (Influx lines without one, CSV without a time column). */
  nowNs: bigint;
  /**
   * Unit of integer timestamps, only when the request gave one: each format
   * has its own default (Influx ns, CSV header mode ms). VictoriaMetrics JSON
   * is always ms; a CSV format's time context overrides it.
   */
  precision?: Precision;
  /** VictoriaMetrics CSV `format` parameter; null or absent means a header row. */
  csvFormat?: string | null;
}

export function parseBody(format: IngestFormat, body: Uint8Array, opts: ParseOptions): Batch {
  switch (format) {
    case "vmjson":
      return parseVmJson(body, opts);
    case "influx":
      return parseInflux(body, opts);
    case "csv":
      return parseCsv(body, opts);
    default:
      return unreachable(format, "unknown ingest format");
  }
}
