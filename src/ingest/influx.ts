// Influx line protocol (v1 /write, v2 /api/v2/write):
//   measurement[,tag=value...] field=value[,field=value...] [timestamp]
// Mapped to series the way VictoriaMetrics does: each numeric field becomes
// the metric `measurement_field` (just `field` when the measurement is empty)
// and tags become labels. String fields have no numeric value to store: they
// are counted and skipped, never an error.
//
// Escaping follows the InfluxDB reference: in the measurement `\,` `\ `; in
// tag keys, tag values and field keys `\,` `\=` `\ `; in string field values
// `\"`; everywhere `\\` is one backslash, and a backslash before any other
// character is literal.

import { BatchBuilder, type Batch } from "../core/batch.js";
import { BadInputError, type InputLocation } from "../core/errors.js";
import type { Limits } from "../core/limits.js";
import { parseIntTimestamp, type Precision } from "../core/time.js";
import { parseDecimalFloat, parseSpecialFloat } from "./numbers.js";
import { SeriesCache } from "./series-cache.js";
import { decodeBody, LineReader, quote } from "./text.js";

export interface InfluxOptions {
  limits: Limits;
  /** Timestamp for lines that carry none. */
  nowNs: bigint;
  /** Unit of the timestamps in the body; Influx's default is ns. */
  precision?: Precision;
}

export interface InfluxParseResult {
  batch: Batch;
  /** String fields skipped because a time series holds only numbers. */
  stringFieldsIgnored: number;
}

export function parseInflux(body: Uint8Array, opts: InfluxOptions): Batch {
  return parseInfluxDetailed(body, opts).batch;
}

export function parseInfluxDetailed(body: Uint8Array, opts: InfluxOptions): InfluxParseResult {
  const text = decodeBody(body);
  const builder = new BatchBuilder(opts.limits);
  const state: LineState = {
    builder,
    cache: new SeriesCache(builder, opts.limits),
    nowNs: opts.nowNs,
    precision: opts.precision ?? "ns",
    stringFieldsIgnored: 0,
    fieldKeysRaw: [],
    fieldValues: [],
  };
  const lines = new LineReader(text, opts.limits.lineBytesMax);
  for (let line = lines.next(); line !== null; line = lines.next()) parseLine(line, lines.lineNo, state);
  if (builder.sampleCount === 0 && state.stringFieldsIgnored > 0)
    throw new BadInputError(`the request holds no numeric fields (${state.stringFieldsIgnored} string fields ignored)`);
  return { batch: builder.build(), stringFieldsIgnored: state.stringFieldsIgnored };
}

interface LineState {
  builder: BatchBuilder;
  cache: SeriesCache;
  nowNs: bigint;
  precision: Precision;
  stringFieldsIgnored: number;
  /** Scratch space for one line's numeric fields, reused across lines. */
  fieldKeysRaw: string[];
  fieldValues: number[];
}

const COMMA = 44;
const SPACE = 32;
const TAB = 9;
const EQUALS = 61;
const BACKSLASH = 92;
const QUOTE = 34;
const HASH = 35;

function isMeasurementEscapable(c: number): boolean {
  return c === COMMA || c === SPACE || c === BACKSLASH;
}
function isKeyEscapable(c: number): boolean {
  return c === COMMA || c === EQUALS || c === SPACE || c === BACKSLASH;
}

/**
 * Index of the first unescaped stop character at or after `from`, or the
 * line's length. A backslash skips the next character only if that one is
 * escapable here, so `\\` ends an escape and `\x` stays two characters.
 */
function scan(s: string, from: number, isStop: (c: number) => boolean, isEscapable: (c: number) => boolean): number {
  let i = from;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === BACKSLASH && i + 1 < s.length && isEscapable(s.charCodeAt(i + 1))) i += 2;
    else if (isStop(c)) return i;
    else i++;
  }
  return i;
}

function unescape(raw: string, isEscapable: (c: number) => boolean): string {
  let i = raw.indexOf("\\");
  if (i < 0) return raw;
  let out = "";
  let last = 0;
  while (i >= 0 && i + 1 < raw.length) {
    if (isEscapable(raw.charCodeAt(i + 1))) {
      out += raw.slice(last, i);
      last = i + 1; // keep the escaped character, drop the backslash
      i += 2;
    } else {
      i++;
    }
    i = raw.indexOf("\\", i);
  }
  return out + raw.slice(last);
}

const isMeasurementStop = (c: number): boolean => c === COMMA || c === SPACE;
const isTagKeyStop = (c: number): boolean => c === EQUALS || c === COMMA || c === SPACE;
const isTagValueStop = (c: number): boolean => c === COMMA || c === SPACE;
const isFieldKeyStop = isTagKeyStop;

function skipSpaces(s: string, i: number): number {
  while (i < s.length && s.charCodeAt(i) === SPACE) i++;
  return i;
}

function badAt(lineNo: number, message: string, field: string, index: number): BadInputError {
  return new BadInputError(message, { line: lineNo, column: index + 1, field });
}

function parseLine(line: string, lineNo: number, st: LineState): void {
  const n = line.length;
  let i = 0;
  while (i < n && (line.charCodeAt(i) === SPACE || line.charCodeAt(i) === TAB)) i++;
  if (i === n || line.charCodeAt(i) === HASH) return;

  // The series part is only validated here; it is unescaped into labels on a cache miss.
  const seriesStart = i;
  i = scan(line, i, isMeasurementStop, isMeasurementEscapable);
  const measurementEnd = i;
  while (i < n && line.charCodeAt(i) === COMMA) {
    const keyStart = ++i;
    i = scan(line, i, isTagKeyStop, isKeyEscapable);
    if (i === keyStart) throw badAt(lineNo, "empty tag key", "tag key", keyStart);
    if (i === n || line.charCodeAt(i) !== EQUALS) throw badAt(lineNo, `tag key ${quote(line.slice(keyStart, i))} is not followed by '='`, "tag key", i);
    const valueStart = ++i;
    i = scan(line, i, isTagValueStop, isKeyEscapable);
    if (i === valueStart) throw badAt(lineNo, "empty tag value (omit the tag instead)", "tag value", valueStart);
  }
  const seriesEnd = i;

  i = skipSpaces(line, i);
  if (i === n) throw badAt(lineNo, "missing field set", "field key", i);

  // Fields are held until the timestamp at the end of the line is known.
  const keys = st.fieldKeysRaw;
  const values = st.fieldValues;
  let fieldCount = 0;
  for (;;) {
    const keyStart = i;
    i = scan(line, i, isFieldKeyStop, isKeyEscapable);
    if (i === keyStart) throw badAt(lineNo, "empty field key", "field key", keyStart);
    if (i === n || line.charCodeAt(i) !== EQUALS) throw badAt(lineNo, `field key ${quote(line.slice(keyStart, i))} is not followed by '='`, "field key", i);
    const keyEnd = i;
    const valueStart = ++i;
    if (i < n && line.charCodeAt(i) === QUOTE) {
      i = endOfString(line, i + 1);
      if (i === n) throw badAt(lineNo, "unterminated string field value", "field value", valueStart);
      i++; // past the closing quote
      st.stringFieldsIgnored++;
    } else {
      while (i < n && line.charCodeAt(i) !== COMMA && line.charCodeAt(i) !== SPACE) i++;
      keys[fieldCount] = line.slice(keyStart, keyEnd);
      values[fieldCount] = parseFieldValue(line.slice(valueStart, i), lineNo, valueStart);
      fieldCount++;
    }
    if (i < n && line.charCodeAt(i) === COMMA) {
      i++;
      continue;
    }
    break;
  }
  if (i < n && line.charCodeAt(i) !== SPACE) throw badAt(lineNo, "expected ',' or ' ' after a field value", "field value", i);

  i = skipSpaces(line, i);
  let timestampNs = st.nowNs;
  if (i < n) {
    const tsStart = i;
    while (i < n && line.charCodeAt(i) !== SPACE && line.charCodeAt(i) !== TAB) i++;
    timestampNs = parseIntTimestamp(line.slice(tsStart, i), st.precision, { line: lineNo, column: tsStart + 1, field: "timestamp" });
    while (i < n && (line.charCodeAt(i) === SPACE || line.charCodeAt(i) === TAB)) i++;
    if (i < n) throw badAt(lineNo, "unexpected text after the timestamp", "timestamp", i);
  }

  if (fieldCount === 0) return;
  const seriesRaw = line.slice(seriesStart, seriesEnd);
  const loc: InputLocation = { line: lineNo };
  for (let f = 0; f < fieldCount; f++) {
    const keyRaw = keys[f]!;
    const key = st.cache.key(seriesRaw, keyRaw, () => seriesLabels(line, seriesStart, measurementEnd, seriesEnd, keyRaw), loc);
    st.builder.addSample(key, timestampNs, values[f]!, loc);
  }
}

/** Label pairs of one field's series, from the already validated series part of a line. */
function seriesLabels(line: string, start: number, measurementEnd: number, end: number, fieldKeyRaw: string): [string, string][] {
  const measurement = unescape(line.slice(start, measurementEnd), isMeasurementEscapable);
  const fieldKey = unescape(fieldKeyRaw, isKeyEscapable);
  const pairs: [string, string][] = [["__name__", measurement === "" ? fieldKey : `${measurement}_${fieldKey}`]];
  let i = measurementEnd;
  while (i < end) {
    const keyStart = i + 1; // past the comma
    const keyEnd = scan(line, keyStart, isTagKeyStop, isKeyEscapable);
    i = scan(line, keyEnd + 1, isTagValueStop, isKeyEscapable);
    pairs.push([unescape(line.slice(keyStart, keyEnd), isKeyEscapable), unescape(line.slice(keyEnd + 1, i), isKeyEscapable)]);
  }
  return pairs;
}

/** Index of the closing quote of a string field value starting at `from`, or the line's length. */
function endOfString(s: string, from: number): number {
  let i = from;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === BACKSLASH) i += 2;
    else if (c === QUOTE) return i;
    else i++;
  }
  return s.length;
}

const INT64_MAX_DIGITS = "9223372036854775807";
const INT64_MIN_DIGITS = "9223372036854775808";
const UINT64_MAX_DIGITS = "18446744073709551615";

/** Compares two digit strings without leading zeros as unsigned integers. */
function digitsAtMost(digits: string, max: string): boolean {
  const d = digits.replace(/^0+(?=.)/, "");
  return d.length < max.length || (d.length === max.length && d <= max);
}

function allDigits(s: string, from: number, to: number): boolean {
  if (from >= to) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function parseFieldValue(tok: string, lineNo: number, start: number): number {
  const loc: InputLocation = { line: lineNo, column: start + 1, field: "field value" };
  if (tok === "") throw new BadInputError("missing field value", loc);
  const last = tok.charCodeAt(tok.length - 1);
  if (last === 105 /* i */) {
    const negative = tok.charCodeAt(0) === 45;
    const from = negative ? 1 : 0;
    if (!allDigits(tok, from, tok.length - 1)) throw new BadInputError(`invalid integer ${quote(tok)}`, loc);
    if (!digitsAtMost(tok.slice(from, -1), negative ? INT64_MIN_DIGITS : INT64_MAX_DIGITS))
      throw new BadInputError(`integer ${quote(tok)} is out of the int64 range`, loc);
    return Number(tok.slice(0, -1)) + 0; // + 0 turns -0 into 0: integers have no negative zero
  }
  if (last === 117 /* u */) {
    if (!allDigits(tok, 0, tok.length - 1)) throw new BadInputError(`invalid unsigned integer ${quote(tok)}`, loc);
    if (!digitsAtMost(tok.slice(0, -1), UINT64_MAX_DIGITS)) throw new BadInputError(`unsigned integer ${quote(tok)} is out of the uint64 range`, loc);
    return Number(tok.slice(0, -1));
  }
  switch (tok) {
    case "t":
    case "T":
    case "true":
    case "True":
    case "TRUE":
      return 1;
    case "f":
    case "F":
    case "false":
    case "False":
    case "FALSE":
      return 0;
  }
  const v = parseDecimalFloat(tok);
  if (v !== undefined) {
    if (!Number.isFinite(v)) throw new BadInputError(`value ${quote(tok)} is out of the float64 range`, loc);
    return v;
  }
  // Influx itself refuses NaN and Inf; accepting them lets HQ-TS store what Prometheus can produce.
  const special = parseSpecialFloat(tok);
  if (special !== undefined) return special;
  throw new BadInputError(`cannot parse field value ${quote(tok)}`, loc);
}
