// The series identity: a metric name plus a label set (Prometheus model).
// Canonical form: pairs sorted by name, no empty values, "__name__" holds the
// metric name. The canonical key string is Prometheus's own text form, which is
// unambiguous because values are escaped.

import { BadInputError, TooLargeError, type InputLocation } from "./errors.js";
import type { Limits } from "./limits.js";

export type Label = readonly [name: string, value: string];
export type Labels = readonly Label[];

export const METRIC_NAME = "__name__";

/**
 * Whether `s` takes more than `max` bytes as UTF-8. A UTF-16 code unit takes
 * at most 3 UTF-8 bytes, so short strings (almost every label) are decided
 * without counting; the rest are counted natively, without encoding them.
 */
export function utf8LongerThan(s: string, max: number): boolean {
  if (s.length * 3 <= max) return false;
  return Buffer.byteLength(s, "utf8") > max;
}

function escapeValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

const PLAIN_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function quoteNameIfNeeded(n: string): string {
  return PLAIN_NAME.test(n) ? n : `"${escapeValue(n)}"`;
}

/** Canonical series key, e.g. `up{instance="a:9100",job="node"}`. Labels must be canonical. */
export function seriesKey(labels: Labels): string {
  let name = "";
  const parts: string[] = [];
  for (const [n, v] of labels) {
    if (n === METRIC_NAME) name = v;
    else parts.push(`${quoteNameIfNeeded(n)}="${escapeValue(v)}"`);
  }
  const head = name === "" ? "" : quoteNameIfNeeded(name);
  return parts.length === 0 && name !== "" ? head : `${head}{${parts.join(",")}}`;
}

export function metricName(labels: Labels): string {
  for (const [n, v] of labels) if (n === METRIC_NAME) return v;
  return "";
}

export function labelsToObject(labels: Labels): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [n, v] of labels) o[n] = v;
  return o;
}

/**
 * Validates and canonicalises a label set from user input: drops empty values,
 * sorts by name, rejects duplicate names, checks every limit. Errors name the
 * location and the offending label.
 */
export function canonicalLabels(
  pairs: Iterable<readonly [string, string]>,
  limits: Pick<Limits, "labelsPerSeriesMax" | "labelNameBytesMax" | "labelValueBytesMax">,
  loc: InputLocation = {},
): Labels {
  const out: Label[] = [];
  for (const [n, v] of pairs) {
    if (n.length === 0) throw new BadInputError("empty label name", { ...loc, field: loc.field ?? "label name" });
    if (utf8LongerThan(n, limits.labelNameBytesMax))
      throw new TooLargeError(`label name "${n.length > 64 ? `${n.slice(0, 64)}…` : n}" length`, limits.labelNameBytesMax, { ...loc, field: `label ${n.slice(0, 64)}` });
    if (utf8LongerThan(v, limits.labelValueBytesMax))
      throw new TooLargeError(`value of label "${n}" length`, limits.labelValueBytesMax, { ...loc, field: `label ${n}` });
    if (!isValidUtf16(n) || !isValidUtf16(v))
      throw new BadInputError(`label "${n}" is not valid UTF-8`, { ...loc, field: `label ${n}` });
    if (v === "") continue;
    out.push([n, v]);
  }
  if (out.length > limits.labelsPerSeriesMax)
    throw new TooLargeError("number of labels in a series", limits.labelsPerSeriesMax, loc);
  out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (let i = 1; i < out.length; i++) {
    if (out[i - 1]![0] === out[i]![0])
      throw new BadInputError(`duplicate label name "${out[i]![0]}"`, { ...loc, field: `label ${out[i]![0]}` });
  }
  if (out.length === 0) throw new BadInputError("series has no labels and no metric name", loc);
  return out;
}

/** Lone surrogates cannot be encoded as UTF-8; they must not enter the store. (Parsers decode bytes strictly.) */
function isValidUtf16(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}
