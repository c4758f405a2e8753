// Number parsing shared by the text formats. Number() alone is too lenient
// ("" → 0, "0x10" → 16, " 1 " → 1), and a regex with nested quantifiers can
// backtrack quadratically on long digit runs, so the grammar is checked by a
// linear scan before Number() converts.

import { BadInputError, type InputLocation } from "../core/errors.js";
import { INT64_MAX, INT64_MIN, NS_PER, type Precision } from "../core/time.js";

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Decimal float: [+-]? (d+ [. d*] | . d+) ([eE] [+-]? d+)?. Returns undefined when the text is not one. */
export function parseDecimalFloat(s: string): number | undefined {
  const n = s.length;
  let i = 0;
  let c = s.charCodeAt(0);
  if (c === 43 || c === 45) i++;
  let digits = 0;
  while (i < n && isDigit(s.charCodeAt(i))) {
    i++;
    digits++;
  }
  if (i < n && s.charCodeAt(i) === 46) {
    i++;
    while (i < n && isDigit(s.charCodeAt(i))) {
      i++;
      digits++;
    }
  }
  if (digits === 0) return undefined;
  c = s.charCodeAt(i);
  if (c === 101 || c === 69) {
    i++;
    c = s.charCodeAt(i);
    if (c === 43 || c === 45) i++;
    let expDigits = 0;
    while (i < n && isDigit(s.charCodeAt(i))) {
      i++;
      expDigits++;
    }
    if (expDigits === 0) return undefined;
  }
  if (i !== n) return undefined;
  return Number(s);
}

/** The spellings of NaN and ±Inf that Prometheus, VictoriaMetrics and Go accept, case-insensitive. */
export function parseSpecialFloat(s: string): number | undefined {
  if (s.length > 9) return undefined;
  switch (s.toLowerCase()) {
    case "nan":
      return NaN;
    case "inf":
    case "+inf":
    case "infinity":
    case "+infinity":
      return Infinity;
    case "-inf":
    case "-infinity":
      return -Infinity;
    default:
      return undefined;
  }
}

/**
 * A sample value written as text: a decimal float, or NaN/±Inf spelled out.
 * A finite literal that overflows float64 is refused rather than stored as ±Inf.
 */
export function parseValueText(s: string, loc: InputLocation): number {
  const v = parseDecimalFloat(s);
  if (v !== undefined) {
    if (!Number.isFinite(v)) throw new BadInputError(`value ${JSON.stringify(s.slice(0, 40))} is out of the float64 range`, loc);
    return v;
  }
  const special = parseSpecialFloat(s);
  if (special !== undefined) return special;
  throw new BadInputError(`cannot parse value ${JSON.stringify(s.slice(0, 40))} as a number`, loc);
}

const DECIMAL_TIMESTAMP = /^(-?)([0-9]{1,20})(?:\.([0-9]{1,30}))?$/;
const FRACTION_DIGITS: Readonly<Record<Precision, number>> = { ns: 0, us: 3, ms: 6, s: 9 };

/**
 * A Unix timestamp in the given precision, optionally with a decimal fraction
 * (e.g. "1700000000.123456789" seconds), converted to ns exactly. A fraction
 * finer than a nanosecond is refused instead of rounded.
 */
export function parseDecimalTimestamp(text: string, precision: Precision, loc: InputLocation): bigint {
  const m = DECIMAL_TIMESTAMP.exec(text);
  if (m === null) throw new BadInputError(`timestamp ${JSON.stringify(text.slice(0, 40))} is not a number`, loc);
  const frac = (m[3] ?? "").replace(/0+$/, "");
  const fracDigitsMax = FRACTION_DIGITS[precision];
  if (frac.length > fracDigitsMax)
    throw new BadInputError(`timestamp ${JSON.stringify(text.slice(0, 40))} is finer than a nanosecond`, loc);
  const fracNs = frac === "" ? 0n : BigInt(frac.padEnd(fracDigitsMax, "0"));
  const magnitude = BigInt(m[2]!) * NS_PER[precision] + fracNs;
  const ns = m[1] === "-" ? -magnitude : magnitude;
  if (ns < INT64_MIN || ns > INT64_MAX) throw new BadInputError(`timestamp ${JSON.stringify(text.slice(0, 40))} is out of the int64 nanosecond range`, loc);
  return ns;
}

const RFC3339 = /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,30}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))$/;

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

// Howard Hinnant's days_from_civil: exact for every proleptic Gregorian date.
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** Strict RFC 3339 (a space may replace the T) with up to nanosecond fractions, to int64 ns. */
export function parseRfc3339(text: string, loc: InputLocation): bigint {
  const m = RFC3339.exec(text);
  const bad = (why: string): BadInputError => new BadInputError(`timestamp ${JSON.stringify(text.slice(0, 40))} ${why}`, loc);
  if (m === null) throw bad("is not an RFC 3339 time");
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12) throw bad("has a month out of range");
  const monthDays = month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > monthDays) throw bad("has a day out of range");
  if (hour > 23 || minute > 59 || second > 59) throw bad("has a time of day out of range");
  const frac = (m[7] ?? "").replace(/0+$/, "");
  if (frac.length > 9) throw bad("is finer than a nanosecond");
  let offsetS = 0;
  if (m[8] === undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) throw bad("has a zone offset out of range");
    offsetS = (oh * 3600 + om * 60) * (m[9] === "-" ? -1 : 1);
  }
  const epochS = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetS;
  const ns = BigInt(epochS) * 1_000_000_000n + (frac === "" ? 0n : BigInt(frac.padEnd(9, "0")));
  if (ns < INT64_MIN || ns > INT64_MAX) throw bad("is out of the int64 nanosecond range");
  return ns;
}
