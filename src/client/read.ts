// Parsing of read answers (export JSON lines, Prometheus API envelopes) and
// formatting of read parameters. Pure: no I/O.

import type { Origin } from "../core/batch.js";
import { HqError } from "../core/errors.js";

/** One series of /api/v1/export, with exact timestamps. */
export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  /** Lossless int64 ns (from the answer's `timestamps_ns`). */
  timestampsNs: bigint[];
  origins: Origin[];
  /** Per sample, the id of the batch that stored it. */
  batches: string[];
}

/** A time for `start`/`end`: bigint = Unix ns (exact), number = Unix seconds, Date, or a string passed as is (RFC 3339 or seconds). */
export type TimeArg = bigint | number | Date | string;

export interface RangeOptions {
  start?: TimeArg;
  end?: TimeArg;
}

/** Formats a time as the API wants it: Unix seconds with up to 9 decimals (exact for bigint ns). */
export function formatTime(t: TimeArg): string {
  if (typeof t === "string") return t;
  if (t instanceof Date) return t.toISOString();
  if (typeof t === "number") {
    if (!Number.isFinite(t)) throw new RangeError(`time must be finite, got ${t}`);
    return String(t);
  }
  const neg = t < 0n;
  const abs = neg ? -t : t;
  const s = abs / 1_000_000_000n;
  const frac = (abs % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${s}${frac === "" ? "" : `.${frac}`}`;
}

function badAnswer(message: string): HqError {
  return new HqError("internal", `unexpected answer from the server: ${message}`);
}

function numberOf(v: unknown): number {
  if (typeof v === "number") return v;
  if (v === "NaN") return NaN;
  if (v === "+Inf" || v === "Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  if (typeof v === "string" && v.trim() !== "" && !Number.isNaN(Number(v))) return Number(v);
  throw badAnswer(`value ${JSON.stringify(v)} is not a number`);
}

/** Parses the JSON lines of /api/v1/export. */
export function parseExport(text: string): ExportedSeries[] {
  const out: ExportedSeries[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw badAnswer(`export line ${i + 1} is not JSON`);
    }
    const values = o["values"];
    const tsNs = o["timestamps_ns"];
    const ts = o["timestamps"];
    if (!Array.isArray(values)) throw badAnswer(`export line ${i + 1} has no values`);
    let timestampsNs: bigint[];
    if (Array.isArray(tsNs)) timestampsNs = tsNs.map((t) => BigInt(String(t)));
    else if (Array.isArray(ts)) timestampsNs = ts.map((t) => BigInt(Math.trunc(Number(t))) * 1_000_000n); // a server without ns: ms
    else throw badAnswer(`export line ${i + 1} has no timestamps`);
    if (timestampsNs.length !== values.length) throw badAnswer(`export line ${i + 1}: ${values.length} values but ${timestampsNs.length} timestamps`);
    const origins = Array.isArray(o["origins"]) ? (o["origins"] as Origin[]) : values.map((): Origin => "original");
    const batches = Array.isArray(o["batches"]) ? (o["batches"] as unknown[]).map(String) : [];
    out.push({ metric: (o["metric"] ?? {}) as Record<string, string>, values: values.map(numberOf), timestampsNs, origins, batches });
  }
  return out;
}

/** The `data` of a Prometheus API answer `{"status":"success","data":…}`. */
export function promData(text: string): unknown {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw badAnswer("not JSON");
  }
  if (o === null || typeof o !== "object" || (o as Record<string, unknown>)["status"] !== "success") throw badAnswer(text.slice(0, 200));
  return (o as Record<string, unknown>)["data"];
}
