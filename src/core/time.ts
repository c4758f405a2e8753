// Timestamps are int64 nanoseconds since the Unix epoch, as bigint, end to end
// (a double holds only ~µs at today's epoch). PromQL works in ms on top.

import { assert } from "./assert.js";
import { BadInputError, type InputLocation } from "./errors.js";

export type Precision = "ns" | "us" | "ms" | "s";

export const NS_PER: Readonly<Record<Precision, bigint>> = Object.freeze({ ns: 1n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n });

export const INT64_MIN = -(1n << 63n);
export const INT64_MAX = (1n << 63n) - 1n;

export function parsePrecision(raw: string | null | undefined, loc: InputLocation = { field: "precision" }): Precision {
  if (raw === null || raw === undefined || raw === "") return "ns";
  // Influx v1 also accepts "n", "u", "ms", "s"; v2 accepts "ns","us","ms","s".
  const map: Record<string, Precision> = { n: "ns", ns: "ns", u: "us", us: "us", "µ": "us", ms: "ms", s: "s" };
  const p = map[raw];
  if (p === undefined) throw new BadInputError(`unknown precision "${raw}" (want ns, us, ms or s)`, loc);
  return p;
}

/** Parses a decimal integer timestamp in the given precision to ns, checking int64 range. */
export function parseIntTimestamp(text: string, precision: Precision, loc: InputLocation): bigint {
  if (!/^-?[0-9]{1,20}$/.test(text)) throw new BadInputError(`timestamp "${text.slice(0, 40)}" is not an integer`, loc);
  const ns = BigInt(text) * NS_PER[precision];
  if (ns < INT64_MIN || ns > INT64_MAX) throw new BadInputError(`timestamp "${text}" is out of the int64 nanosecond range`, loc);
  return ns;
}

export function msToNs(ms: number): bigint {
  return BigInt(Math.trunc(ms)) * 1_000_000n;
}

/** Floor division to ms (for PromQL and VictoriaMetrics-compatible output). */
export function nsToMs(ns: bigint): number {
  const q = ns / 1_000_000n;
  return Number(ns < 0n && q * 1_000_000n !== ns ? q - 1n : q);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * nsToMs over a whole column, without a BigInt division per sample (a query converts millions): a non-negative
 * timestamp is split into 32-bit words, hi·2^32 + lo, and hi·2^32 = hi·4294·10^6 + hi·967296, so the floor is
 * hi·4294 + ⌊(hi·967296 + lo) / 10^6⌋, every term an exact integer below 2^53.
 */
export function nsColumnToMs(ns: BigInt64Array): Float64Array {
  assert(LITTLE_ENDIAN, "nsColumnToMs reads the low word first");
  const out = new Float64Array(ns.length);
  const words = new Int32Array(ns.buffer, ns.byteOffset, ns.length * 2);
  for (let i = 0; i < ns.length; i++) {
    const hi = words[2 * i + 1]!;
    if (hi < 0) {
      out[i] = nsToMs(ns[i]!);
      continue;
    }
    const lo = words[2 * i]! >>> 0;
    out[i] = hi * 4294 + Math.floor((hi * 967296 + lo) / 1_000_000);
  }
  return out;
}

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** Parses a time as Prometheus's API accepts it: RFC 3339 or Unix seconds (float). */
export function parseApiTime(raw: string, loc: InputLocation): bigint {
  if (/^-?[0-9]+(\.[0-9]+)?$/.test(raw)) {
    const [i, f = ""] = raw.replace(/^-/, "").split(".");
    const frac = (f + "000000000").slice(0, 9);
    const ns = BigInt(i!) * 1_000_000_000n + BigInt(frac);
    return raw.startsWith("-") ? -ns : ns;
  }
  const ms = Date.parse(raw);
  if (Number.isNaN(ms)) throw new BadInputError(`cannot parse time "${raw.slice(0, 64)}"`, loc);
  const m = /\.([0-9]+)/.exec(raw);
  const subMsNs = m ? BigInt(((m[1] ?? "") + "000000000").slice(3, 9)) : 0n;
  return msToNs(ms) + subMsNs;
}
