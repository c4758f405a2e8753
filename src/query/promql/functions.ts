// PromQL's float functions (Prometheus 3.x semantics). Also home of the
// evaluator's value types until value.ts takes them over: they live here, not
// in eval.ts, so that functions.ts and aggregate.ts need not import eval.ts
// (which imports them) and the module graph stays acyclic.

import { HqError } from "../../core/errors.js";
import { METRIC_NAME, type Label, type Labels } from "../../core/labels.js";
import { assert } from "../../core/assert.js";
import type { Call, Expr, PosRange } from "./ast.js";
import { unwrapParens } from "./ast.js";

/** One element of an instant vector. tMs is the sample's own time for a plain selector (timestamp() reads it), the evaluation time otherwise. */
export interface Sample {
  labels: Labels;
  v: number;
  tMs: number;
}

/**
 * One series of a range vector (or of a range query's result): its samples are tMs[lo..hi) and values[lo..hi),
 * timestamps ascending. A window names a slice of arrays the query already holds, so cutting a range vector for a
 * step copies nothing.
 */
export interface Series {
  labels: Labels;
  /** What the series' labels derive to, computed once per series, not once per step (a range query's hot path). */
  derived: DerivedLabels;
  tMs: ArrayLike<number>;
  values: ArrayLike<number>;
  lo: number;
  /** Exclusive. */
  hi: number;
  /**
   * Optional: resetsUpTo[i] counts the counter resets (a value below the one before it) at indices 1..i of these
   * arrays, so rate() over a window without a reset, the common case, skips its correction loop.
   */
  resetsUpTo?: Int32Array;
}

/** The resetsUpTo index of a series' values (see Series). */
export function countResets(values: ArrayLike<number>): Int32Array {
  const out = new Int32Array(values.length);
  let n = 0;
  for (let i = 1; i < values.length; i++) {
    if (values[i]! < values[i - 1]!) n++;
    out[i] = n;
  }
  return out;
}

export type Vector = Sample[];
export type Matrix = Series[];

export type Value =
  | { kind: "scalar"; v: number }
  | { kind: "string"; s: string }
  | { kind: "vector"; samples: Vector }
  | { kind: "matrix"; series: Matrix };

/** A query execution error (Prometheus answers these with 422): the query is well-formed but cannot be evaluated. */
export class QueryError extends HqError {
  constructor(message: string) {
    super("bad_input", message);
    this.name = "QueryError";
  }
}

// ---------------------------------------------------------------------------
// Label helpers. Labels stay canonical: sorted by name, no empty values.

export function labelValue(labels: Labels, name: string): string {
  for (const [n, v] of labels) if (n === name) return v;
  return "";
}

// Label sets are immutable (readonly), and a selected series keeps its label-set object for the whole query, so
// what is derived from one is computed once per query, not once per step (a range query's hot path).
const withoutName = new WeakMap<Labels, Labels>();
const keys = new WeakMap<Labels, string>();

export function dropMetricName(labels: Labels): Labels {
  let out = withoutName.get(labels);
  if (out === undefined) {
    out = labels.some(([n]) => n === METRIC_NAME) ? labels.filter(([n]) => n !== METRIC_NAME) : labels;
    withoutName.set(labels, out);
  }
  return out;
}

/** Sets (or, for an empty value, deletes) one label, keeping the order canonical. */
export function setLabel(labels: Labels, name: string, value: string): Labels {
  const out: Label[] = [];
  let done = false;
  for (const l of labels) {
    if (!done && l[0] >= name) {
      done = true;
      if (value !== "") out.push([name, value]);
      if (l[0] === name) continue;
    }
    out.push(l);
  }
  if (!done && value !== "") out.push([name, value]);
  return out;
}

export interface DerivedLabels {
  /** The labels without the metric name. */
  nameless: Labels;
  /** Whether the metric name is empty or ends like a counter's (rate() and increase() note when it does not). */
  counterNamed: boolean;
}

export function deriveLabels(labels: Labels): DerivedLabels {
  return { nameless: dropMetricName(labels), counterNamed: looksLikeCounter(labels) };
}

/** An unambiguous map key for a label set. */
export function labelsKey(labels: Labels): string {
  let k = keys.get(labels);
  if (k === undefined) {
    k = "";
    for (const [n, v] of labels) k += `${n}\u0000${v}\u0001`;
    keys.set(labels, k);
  }
  return k;
}

const PLAIN_LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Prometheus's labels.String(): `{a="1", b="2"}`. */
export function formatLabels(labels: Labels): string {
  const q = (s: string): string => JSON.stringify(s);
  return `{${labels.map(([n, v]) => `${PLAIN_LABEL_NAME.test(n) ? n : q(n)}=${q(v)}`).join(", ")}}`;
}

const COUNTER_SUFFIXES = ["_total", "_sum", "_count", "_bucket"];

function looksLikeCounter(labels: Labels): boolean {
  const metric = labelValue(labels, METRIC_NAME);
  return metric === "" || COUNTER_SUFFIXES.some((suf) => metric.endsWith(suf));
}

// ---------------------------------------------------------------------------
// Numeric helpers shared with aggregate.ts.

/** Kahan–Neumaier step exactly as Prometheus's kahanSumInc, so sums agree bit for bit. */
export function kahanSumInc(inc: number, sum: number, c: number): [number, number] {
  const t = sum + inc;
  if (!Number.isFinite(t) && !Number.isNaN(t)) c = 0;
  else if (Math.abs(sum) >= Math.abs(inc)) c += sum - t + inc;
  else c += inc - t + sum;
  return [t, c];
}

/** Prometheus's quantile(): NaNs sort first, linear interpolation between ranks. */
export function quantile(q: number, values: number[]): number {
  if (values.length === 0 || Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...values].sort((a, b) => (Number.isNaN(a) ? (Number.isNaN(b) ? 0 : -1) : Number.isNaN(b) ? 1 : a - b));
  const n = sorted.length;
  const rank = q * (n - 1);
  const lower = Math.max(0, Math.floor(rank));
  const upper = Math.min(n - 1, lower + 1);
  const weight = rank - Math.floor(rank);
  return sorted[lower]! * (1 - weight) + sorted[upper]! * weight;
}

/** Go's strconv.FormatFloat(f, 'f', -1, 64): shortest round-trip digits, never an exponent. */
export function formatFloatPlain(f: number): string {
  if (Number.isNaN(f)) return "NaN";
  if (f === Infinity) return "+Inf";
  if (f === -Infinity) return "-Inf";
  const s = String(f);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (m === null) return s;
  const sign = m[1]!;
  const digits = m[2]! + (m[3] ?? "");
  const exp = Number(m[4]);
  const point = 1 + exp;
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** Go's %g closely enough for annotation texts. */
function formatG(f: number): string {
  if (Number.isNaN(f)) return "NaN";
  if (f === Infinity) return "+Inf";
  if (f === -Infinity) return "-Inf";
  return String(f);
}

// ---------------------------------------------------------------------------
// The call interface eval.ts uses.

export interface MatrixWindow {
  /** The window (rangeStartMs, rangeEndMs] the matrix argument was cut to, after offset and @. */
  rangeStartMs: number;
  rangeEndMs: number;
  rangeMs: number;
}

export interface FnEnv {
  /** The evaluation time of this step. */
  tMs: number;
  isRangeQuery: boolean;
  /** The query's start, end and step (step 0 for an instant query), for start(), end(), range() and step(). */
  queryStartMs: number;
  queryEndMs: number;
  queryStepMs: number;
  warn(message: string, pos: PosRange): void;
  info(message: string, pos: PosRange): void;
}

/** Index of the range-vector argument of each function that takes one. */
export const MATRIX_ARG: ReadonlyMap<string, number> = new Map([
  ...[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "absent_over_time",
    "present_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "first_over_time",
    "mad_over_time",
    "ts_of_last_over_time",
    "ts_of_first_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "double_exponential_smoothing",
    "holt_winters",
  ].map((n): [string, number] => [n, 0]),
  ["quantile_over_time", 1],
]);

const SIMPLE_MATH: ReadonlyMap<string, (v: number) => number> = new Map<string, (v: number) => number>([
  ["abs", Math.abs],
  ["ceil", Math.ceil],
  ["floor", Math.floor],
  ["exp", Math.exp],
  ["sqrt", Math.sqrt],
  ["ln", Math.log],
  ["log2", Math.log2],
  ["log10", Math.log10],
  ["sgn", (v) => (v < 0 ? -1 : v > 0 ? 1 : v)],
  ["acos", Math.acos],
  ["acosh", Math.acosh],
  ["asin", Math.asin],
  ["asinh", Math.asinh],
  ["atan", Math.atan],
  ["atanh", Math.atanh],
  ["cos", Math.cos],
  ["cosh", Math.cosh],
  ["sin", Math.sin],
  ["sinh", Math.sinh],
  ["tan", Math.tan],
  ["tanh", Math.tanh],
  ["deg", (v) => (v * 180) / Math.PI],
  ["rad", (v) => (v * Math.PI) / 180],
]);

function utcDate(v: number): Date | null {
  if (!Number.isFinite(v)) return null;
  // Go's time.Unix(int64(f), 0) truncates toward zero.
  return new Date(Math.trunc(v) * 1000);
}

const DATE_FUNCS: ReadonlyMap<string, (d: Date) => number> = new Map<string, (d: Date) => number>([
  ["day_of_month", (d) => d.getUTCDate()],
  ["day_of_week", (d) => d.getUTCDay()],
  [
    "day_of_year",
    (d) => Math.round((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000) + 1,
  ],
  ["days_in_month", (d) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate()],
  ["hour", (d) => d.getUTCHours()],
  ["minute", (d) => d.getUTCMinutes()],
  ["month", (d) => d.getUTCMonth() + 1],
  ["year", (d) => d.getUTCFullYear()],
]);

/** Functions whose output keeps the metric name: they select or reorder samples, they do not change what the values mean. */
const KEEPS_NAME = new Set(["last_over_time", "first_over_time", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "label_replace", "label_join"]);

function scalarArg(v: Value | undefined): number {
  assert(v !== undefined && v.kind === "scalar", "function argument must be a scalar (the parser checks types)");
  return v.v;
}
function vectorArg(v: Value | undefined): Vector {
  assert(v !== undefined && v.kind === "vector", "function argument must be an instant vector (the parser checks types)");
  return v.samples;
}
function matrixArg(v: Value | undefined): Matrix {
  assert(v !== undefined && v.kind === "matrix", "function argument must be a range vector (the parser checks types)");
  return v.series;
}
function stringArg(v: Value | undefined): string {
  assert(v !== undefined && v.kind === "string", "function argument must be a string (the parser checks types)");
  return v.s;
}


/**
 * Evaluates one function call for one step. `args` are the evaluated
 * arguments (the range-vector argument already cut to `window`).
 */
export function callFunction(call: Call, args: Value[], window: MatrixWindow | null, env: FnEnv): Value {
  const name = call.func;
  const math = SIMPLE_MATH.get(name);
  if (math !== undefined) return mapVector(vectorArg(args[0]), env.tMs, math);

  const date = DATE_FUNCS.get(name);
  if (date !== undefined) {
    const input: Vector = args.length === 0 ? [{ labels: [], v: env.tMs / 1000, tMs: env.tMs }] : vectorArg(args[0]);
    return mapVector(input, env.tMs, (v) => {
      const d = utcDate(v);
      return d === null ? NaN : date(d);
    });
  }

  if (MATRIX_ARG.has(name)) {
    assert(window !== null, "range-vector functions get their window");
    return rangeFunction(call, args, window, env);
  }

  switch (name) {
    case "time":
      return { kind: "scalar", v: env.tMs / 1000 };
    case "pi":
      return { kind: "scalar", v: Math.PI };
    case "start":
      return { kind: "scalar", v: env.queryStartMs / 1000 };
    case "end":
      return { kind: "scalar", v: env.queryEndMs / 1000 };
    case "range":
      return { kind: "scalar", v: (env.queryEndMs - env.queryStartMs) / 1000 };
    case "step":
      return { kind: "scalar", v: env.queryStepMs / 1000 };
    case "min_of":
      return { kind: "scalar", v: Math.min(scalarArg(args[0]), scalarArg(args[1])) };
    case "max_of":
      return { kind: "scalar", v: Math.max(scalarArg(args[0]), scalarArg(args[1])) };
    case "vector":
      return { kind: "vector", samples: [{ labels: [], v: scalarArg(args[0]), tMs: env.tMs }] };
    case "scalar": {
      const vec = vectorArg(args[0]);
      return { kind: "scalar", v: vec.length === 1 ? vec[0]!.v : NaN };
    }
    case "timestamp":
      return { kind: "vector", samples: vectorArg(args[0]).map((s) => ({ labels: dropMetricName(s.labels), v: s.tMs / 1000, tMs: env.tMs })) };
    case "round": {
      const toNearest = args.length > 1 ? scalarArg(args[1]) : 1;
      const inverse = 1 / toNearest;
      return mapVector(vectorArg(args[0]), env.tMs, (v) => Math.floor(v * inverse + 0.5) / inverse);
    }
    case "clamp": {
      const lo = scalarArg(args[1]);
      const hi = scalarArg(args[2]);
      if (hi < lo) return { kind: "vector", samples: [] };
      return mapVector(vectorArg(args[0]), env.tMs, (v) => Math.max(lo, Math.min(hi, v)));
    }
    case "clamp_min": {
      const lo = scalarArg(args[1]);
      return mapVector(vectorArg(args[0]), env.tMs, (v) => Math.max(lo, v));
    }
    case "clamp_max": {
      const hi = scalarArg(args[1]);
      return mapVector(vectorArg(args[0]), env.tMs, (v) => Math.min(hi, v));
    }
    case "absent": {
      if (vectorArg(args[0]).length > 0) return { kind: "vector", samples: [] };
      return { kind: "vector", samples: [{ labels: absentLabels(call.args[0]!), v: 1, tMs: env.tMs }] };
    }
    case "sort":
    case "sort_desc":
      if (env.isRangeQuery) env.warn("sort is ineffective for range queries since results are always ordered by labels", call.pos);
      return { kind: "vector", samples: sortByValue(vectorArg(args[0]), name === "sort_desc") };
    case "sort_by_label":
    case "sort_by_label_desc": {
      if (env.isRangeQuery) env.warn("sort is ineffective for range queries since results are always ordered by labels", call.pos);
      const names = args.slice(1).map(stringArg);
      const sign = name === "sort_by_label_desc" ? -1 : 1;
      const out = [...vectorArg(args[0])].sort((a, b) => {
        for (const n of names) {
          const c = naturalCompare(labelValue(a.labels, n), labelValue(b.labels, n));
          if (c !== 0) return sign * c;
        }
        return sign * compareLabels(a.labels, b.labels);
      });
      return { kind: "vector", samples: out };
    }
    case "label_replace":
      return labelReplace(vectorArg(args[0]), stringArg(args[1]), stringArg(args[2]), stringArg(args[3]), stringArg(args[4]));
    case "label_join": {
      const dst = stringArg(args[1]);
      const sep = stringArg(args[2]);
      const srcs = args.slice(3).map(stringArg);
      checkLabelName(dst, "label_join", "destination");
      for (const s of srcs) checkLabelName(s, "label_join", "source");
      return {
        kind: "vector",
        samples: vectorArg(args[0]).map((s) => ({ ...s, labels: setLabel(s.labels, dst, srcs.map((n) => labelValue(s.labels, n)).join(sep)) })),
      };
    }
    case "histogram_quantile":
      return histogramQuantile(call, scalarArg(args[0]), vectorArg(args[1]), env);
    default:
      throw new QueryError(`unknown or unsupported function "${name}"`);
  }
}

function mapVector(vec: Vector, tMs: number, f: (v: number) => number): Value {
  return { kind: "vector", samples: vec.map((s) => ({ labels: dropMetricName(s.labels), v: f(s.v), tMs })) };
}

/** Labels absent() invents from the selector's equality matchers; a name matched more than once is left out, as in Prometheus. */
function absentLabels(arg: Expr): Labels {
  const sel = arg.kind === "vectorSelector" ? arg : arg.kind === "matrixSelector" ? arg.vector : null;
  if (sel === null) return [];
  let out: Labels = [];
  const seen = new Set<string>();
  for (const m of sel.matchers) {
    if (m.name === METRIC_NAME) continue;
    if (m.op === "=" && !seen.has(m.name)) {
      out = setLabel(out, m.name, m.value);
      seen.add(m.name);
    } else out = setLabel(out, m.name, "");
  }
  return out;
}

/** NaNs last for both directions, as Prometheus's sort/sort_desc. */
function sortByValue(vec: Vector, desc: boolean): Vector {
  return [...vec].sort((a, b) => {
    const an = Number.isNaN(a.v);
    const bn = Number.isNaN(b.v);
    if (an || bn) return an === bn ? 0 : an ? 1 : -1;
    return desc ? b.v - a.v : a.v - b.v;
  });
}

export function compareLabels(a: Labels, b: Labels): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const [an, av] = a[i]!;
    const [bn, bv] = b[i]!;
    if (an !== bn) return an < bn ? -1 : 1;
    if (av !== bv) return av < bv ? -1 : 1;
  }
  return a.length - b.length;
}

/** Natural order: digit runs compare as numbers ("a2" < "a10"). */
function naturalCompare(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) ?? [];
  const pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i]!;
    const y = pb[i]!;
    if (x === y) continue;
    const xd = /^\d/.test(x);
    const yd = /^\d/.test(y);
    if (xd && yd) {
      const xn = BigInt(x);
      const yn = BigInt(y);
      if (xn !== yn) return xn < yn ? -1 : 1;
      return x.length - y.length;
    }
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

/**
 * Prometheus 3's label-name rule (UTF-8 names): not empty, valid UTF-8. A string literal's bytes that are not UTF-8
 * reach here as lone surrogates (parse.ts, unquoteLenient), which \p{Cs} finds.
 */
function checkLabelName(name: string, fn: string, role: "destination" | "source"): void {
  if (name === "" || /\p{Cs}/u.test(name)) throw new QueryError(`invalid ${role} label name in ${fn}(): ${name}`);
}

/** Go's regexp.Expand template syntax: $1, ${1}, $name, ${name}, $$. */
function expandTemplate(template: string, m: RegExpExecArray): string {
  return template.replace(/\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g, (_all, whole: string, braced?: string, bare?: string) => {
    if (whole === "$") return "$";
    const ref = braced ?? bare ?? "";
    if (/^\d+$/.test(ref)) return m[Number(ref)] ?? "";
    return m.groups?.[ref] ?? "";
  });
}

function labelReplace(vec: Vector, dst: string, replacement: string, src: string, regex: string): Value {
  let re: RegExp;
  try {
    // Go's (?P<name>...) is JS's (?<name>...); anchored and dot-matches-newline as Prometheus's regexes.
    re = new RegExp(`^(?:${regex.replace(/\(\?P</g, "(?<")})$`, "su");
  } catch (e) {
    throw new QueryError(`invalid regular expression in label_replace(): ${regex}: ${(e as Error).message}`);
  }
  checkLabelName(dst, "label_replace", "destination");
  return {
    kind: "vector",
    samples: vec.map((s) => {
      const m = re.exec(labelValue(s.labels, src));
      if (m === null) return s;
      return { ...s, labels: setLabel(s.labels, dst, expandTemplate(replacement, m)) };
    }),
  };
}

// ---------------------------------------------------------------------------
// histogram_quantile over classic `le` buckets.

const MIN_NORMAL = 2.2250738585072014e-308;

/** Go's util/almost.Equal: NaN equals NaN, else relative error below epsilon (histogram_quantile and the conformance harness). */
export function almostEqual(a: number, b: number, epsilon: number): boolean {
  if (Number.isNaN(a) && Number.isNaN(b)) return true;
  if (a === b) return true;
  const absSum = Math.abs(a) + Math.abs(b);
  const diff = Math.abs(a - b);
  if (a === 0 || b === 0 || absSum < MIN_NORMAL) return diff < epsilon * MIN_NORMAL;
  return diff / Math.min(absSum, Number.MAX_VALUE) < epsilon;
}

interface Bucket {
  upperBound: number;
  count: number;
}

/** Prometheus's BucketQuantile; returns the value and whether the counts had to be forced monotonic. */
export function bucketQuantile(q: number, input: Bucket[]): [number, boolean] {
  if (Number.isNaN(q)) return [NaN, false];
  if (q < 0) return [-Infinity, false];
  if (q > 1) return [Infinity, false];
  const sorted = [...input].sort((a, b) => a.upperBound - b.upperBound);
  if (sorted.length === 0 || sorted[sorted.length - 1]!.upperBound !== Infinity) return [NaN, false];
  const buckets: Bucket[] = [];
  for (const b of sorted) {
    const last = buckets[buckets.length - 1];
    if (last !== undefined && last.upperBound === b.upperBound) last.count += b.count;
    else buckets.push({ ...b });
  }
  let forced = false;
  let prev = buckets[0]!.count;
  for (let i = 1; i < buckets.length; i++) {
    const curr = buckets[i]!.count;
    if (curr === prev) continue;
    if (almostEqual(prev, curr, 1e-12)) {
      buckets[i]!.count = prev;
      continue;
    }
    if (curr < prev) {
      buckets[i]!.count = prev;
      forced = true;
      continue;
    }
    prev = curr;
  }
  if (buckets.length < 2) return [NaN, forced];
  const observations = buckets[buckets.length - 1]!.count;
  if (observations === 0) return [NaN, forced];
  let rank = q * observations;
  let b = 0;
  // sort.Search over all but the +Inf bucket.
  while (b < buckets.length - 1 && !(buckets[b]!.count >= rank)) b++;
  if (b === buckets.length - 1) return [buckets[buckets.length - 2]!.upperBound, forced];
  if (b === 0 && buckets[0]!.upperBound <= 0) return [buckets[0]!.upperBound, forced];
  let bucketStart = 0;
  const bucketEnd = buckets[b]!.upperBound;
  let count = buckets[b]!.count;
  if (b > 0) {
    bucketStart = buckets[b - 1]!.upperBound;
    count -= buckets[b - 1]!.count;
    rank -= buckets[b - 1]!.count;
  }
  return [bucketStart + (bucketEnd - bucketStart) * (rank / count), forced];
}

/** Go's strconv.ParseFloat for bucket bounds: decimal, hex-free, with Inf/NaN spellings. */
function parseBound(s: string): number {
  const t = s.trim();
  if (t !== s || t === "") return NaN;
  if (/^[+-]?inf(inity)?$/i.test(t)) return t.startsWith("-") ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(t)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return NaN;
  return Number(t);
}

function histogramQuantile(call: Call, q: number, vec: Vector, env: FnEnv): Value {
  if (Number.isNaN(q) || q < 0 || q > 1) env.warn(`quantile value should be between 0 and 1, got ${formatG(q)}`, call.args[0]!.pos);
  const groups = new Map<string, { labels: Labels; name: string; buckets: Bucket[] }>();
  for (const s of vec) {
    const le = labelValue(s.labels, "le");
    const bound = parseBound(le);
    const name = labelValue(s.labels, METRIC_NAME);
    if (le === "" || (Number.isNaN(bound) && !/^[+-]?nan$/i.test(le))) {
      env.warn(`bucket label "le" is missing or has a malformed value of "${le}" for metric name "${name}"`, call.args[1]!.pos);
      continue;
    }
    const labels = dropMetricName(setLabel(s.labels, "le", ""));
    const key = labelsKey(labels);
    let g = groups.get(key);
    if (g === undefined) {
      g = { labels, name, buckets: [] };
      groups.set(key, g);
    }
    g.buckets.push({ upperBound: bound, count: s.v });
  }
  const out: Vector = [];
  for (const g of groups.values()) {
    const [v, forced] = bucketQuantile(q, g.buckets);
    if (forced)
      env.info(
        `input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name "${g.name}"`,
        call.args[1]!.pos,
      );
    out.push({ labels: g.labels, v, tMs: env.tMs });
  }
  return { kind: "vector", samples: out };
}

// ---------------------------------------------------------------------------
// Range-vector functions.


function rangeFunction(call: Call, args: Value[], window: MatrixWindow, env: FnEnv): Value {
  const name = call.func;
  const matrixIndex = MATRIX_ARG.get(name)!;
  const matrix = matrixArg(args[matrixIndex]);
  const out: Vector = [];

  switch (name) {
    case "absent_over_time": {
      if (matrix.some((s) => s.hi > s.lo)) return { kind: "vector", samples: [] };
      return { kind: "vector", samples: [{ labels: absentLabels(unwrapParens(call.args[0]!)), v: 1, tMs: env.tMs }] };
    }
    case "double_exponential_smoothing":
    case "holt_winters": {
      const sf = scalarArg(args[1]);
      const tf = scalarArg(args[2]);
      if (!(sf > 0 && sf < 1)) throw new QueryError(`invalid smoothing factor. Expected: 0 < sf < 1, got: ${sf}`);
      if (!(tf > 0 && tf < 1)) throw new QueryError(`invalid trend factor. Expected: 0 < tf < 1, got: ${tf}`);
      for (const s of matrix) {
        const v = s.values;
        const lo = s.lo;
        if (s.hi - lo < 2) continue;
        let s0 = 0;
        let s1 = v[lo]!;
        let b = v[lo + 1]! - v[lo]!;
        for (let i = lo + 1; i < s.hi; i++) {
          const x = sf * v[i]!;
          if (i - 1 !== lo) b = tf * (s1 - s0) + (1 - tf) * b;
          s0 = s1;
          s1 = x + (1 - sf) * (s1 + b);
        }
        out.push({ labels: s.derived.nameless, v: s1, tMs: env.tMs });
      }
      return { kind: "vector", samples: out };
    }
    default:
      break;
  }

  const param = matrixIndex === 1 ? scalarArg(args[0]) : name === "predict_linear" ? scalarArg(args[1]) : 0;
  const prepared = prepareKernel(call, param, env);
  for (const s of matrix) if (s.hi > s.lo) prepared.noteSeries(s);
  const k: KernelEnv = { window, param, tMs: env.tMs };
  for (const s of matrix) {
    if (s.hi === s.lo) continue;
    const v = prepared.kernel(s, k);
    if (v !== null) out.push({ labels: prepared.keepName ? s.labels : s.derived.nameless, v, tMs: env.tMs });
  }
  return { kind: "vector", samples: out };
}

/** A range function ready to run on windows: its kernel, and what it notes of the series it sees. */
export interface PreparedKernel {
  kernel: WindowKernel;
  /** Output keeps the metric name (last_over_time, first_over_time). */
  keepName: boolean;
  /** To be called for every series with a non-empty window: rate() and increase() note a name unlike a counter's. */
  noteSeries(s: Series): void;
}

/** Prepares a range function (not absent_over_time or the smoothing functions) for a parameter value. */
export function prepareKernel(call: Call, param: number, env: Pick<FnEnv, "warn" | "info">): PreparedKernel {
  const name = call.func;
  if (name === "quantile_over_time" && (Number.isNaN(param) || param < 0 || param > 1))
    env.warn(`quantile value should be between 0 and 1, got ${formatG(param)}`, call.args[0]!.pos);
  const kernel = WINDOW_KERNELS.get(name);
  if (kernel === undefined) throw new QueryError(`unknown or unsupported function "${name}"`);
  const counter = name === "rate" || name === "increase";
  return {
    kernel,
    keepName: KEEPS_NAME.has(name),
    noteSeries: (s) => {
      if (counter && !s.derived.counterNamed)
        env.info(`metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "${labelValue(s.labels, METRIC_NAME)}"`, call.args[0]!.pos);
    },
  };
}

/**
 * Whether a call can be evaluated by prepareKernel over every step at once (eval.ts's series-major path): a window
 * kernel over a plain range selector, any parameter a number literal. Answers the parameter, or null.
 */
export function kernelParamIfPlain(call: Call): number | null {
  if (!WINDOW_KERNELS.has(call.func)) return null;
  const matrixIndex = MATRIX_ARG.get(call.func)!;
  if (unwrapParens(call.args[matrixIndex]!).kind !== "matrixSelector") return null;
  const paramIndex = matrixIndex === 1 ? 0 : call.func === "predict_linear" ? 1 : -1;
  if (paramIndex < 0) return 0;
  const p = unwrapParens(call.args[paramIndex]!);
  return p.kind === "number" ? p.value : null;
}

export interface KernelEnv {
  window: MatrixWindow;
  /** The function's scalar parameter (quantile_over_time's q, predict_linear's t), 0 when it has none. */
  param: number;
  tMs: number;
}

/**
 * One range function on one series' window (never empty): its value, or null for no output sample. Small
 * functions, one per PromQL function, because the loop over every series at every step is a range query's hot
 * path and V8 optimises a small monomorphic function far better than one large switch.
 */
export type WindowKernel = (s: Series, k: KernelEnv) => number | null;

function irate(s: Series, isRate: boolean): number | null {
  const hi = s.hi;
  if (hi - s.lo < 2) return null;
  const last = s.values[hi - 1]!;
  const prev = s.values[hi - 2]!;
  const intervalMs = s.tMs[hi - 1]! - s.tMs[hi - 2]!;
  if (intervalMs === 0) return null;
  if (!isRate) return last - prev;
  return (last < prev ? last : last - prev) / (intervalMs / 1000);
}

function countChanges(s: Series, resets: boolean): number {
  const vs = s.values;
  let count = 0;
  let prev = vs[s.lo]!;
  for (let i = s.lo + 1; i < s.hi; i++) {
    const cur = vs[i]!;
    if (resets ? cur < prev : cur !== prev && !(Number.isNaN(cur) && Number.isNaN(prev))) count++;
    prev = cur;
  }
  return count;
}

function extremeOverTime(s: Series, isMax: boolean, isTs: boolean): number {
  const vs = s.values;
  const ts = s.tMs;
  let best = vs[s.lo]!;
  let bestT = ts[s.lo]!;
  for (let i = s.lo; i < s.hi; i++) {
    const v = vs[i]!;
    if ((isMax ? v > best : v < best) || Number.isNaN(best) || (v === best && isTs)) {
      best = v;
      bestT = ts[i]!;
    }
  }
  return isTs ? bestT / 1000 : best;
}

function sumOverTime(s: Series): number {
  let sum = 0;
  let c = 0;
  for (let i = s.lo; i < s.hi; i++) [sum, c] = kahanSumInc(s.values[i]!, sum, c);
  return sum + c;
}

function varianceOverTime(s: Series): number {
  let count = 0;
  let mean = 0;
  let cMean = 0;
  let aux = 0;
  let cAux = 0;
  for (let i = s.lo; i < s.hi; i++) {
    const v = s.values[i]!;
    count++;
    const delta = v - (mean + cMean);
    [mean, cMean] = kahanSumInc(delta / count, mean, cMean);
    [aux, cAux] = kahanSumInc(delta * (v - (mean + cMean)), aux, cAux);
  }
  return (aux + cAux) / count;
}

function madOverTime(s: Series): number {
  const values = windowValues(s);
  if (values.some(Number.isNaN)) return NaN;
  const median = quantile(0.5, values);
  return quantile(0.5, values.map((v) => Math.abs(v - median)));
}

const WINDOW_KERNELS: ReadonlyMap<string, WindowKernel> = new Map<string, WindowKernel>([
  ["rate", (s, k) => extrapolatedRate(s, k.window, true, true)],
  ["increase", (s, k) => extrapolatedRate(s, k.window, true, false)],
  ["delta", (s, k) => extrapolatedRate(s, k.window, false, false)],
  ["irate", (s) => irate(s, true)],
  ["idelta", (s) => irate(s, false)],
  ["deriv", (s) => (s.hi - s.lo >= 2 ? linearRegression(s, s.tMs[s.lo]!)[0] : null)],
  [
    "predict_linear",
    (s, k) => {
      if (s.hi - s.lo < 2) return null;
      const [slope, intercept] = linearRegression(s, k.tMs);
      return slope * k.param + intercept;
    },
  ],
  ["changes", (s) => countChanges(s, false)],
  ["resets", (s) => countChanges(s, true)],
  ["present_over_time", () => 1],
  ["count_over_time", (s) => s.hi - s.lo],
  ["last_over_time", (s) => s.values[s.hi - 1]!],
  ["first_over_time", (s) => s.values[s.lo]!],
  ["ts_of_last_over_time", (s) => s.tMs[s.hi - 1]! / 1000],
  ["ts_of_first_over_time", (s) => s.tMs[s.lo]! / 1000],
  ["sum_over_time", sumOverTime],
  ["avg_over_time", avgOverTime],
  ["min_over_time", (s) => extremeOverTime(s, false, false)],
  ["max_over_time", (s) => extremeOverTime(s, true, false)],
  ["ts_of_min_over_time", (s) => extremeOverTime(s, false, true)],
  ["ts_of_max_over_time", (s) => extremeOverTime(s, true, true)],
  ["quantile_over_time", (s, k) => quantile(k.param, windowValues(s))],
  ["stddev_over_time", (s) => Math.sqrt(varianceOverTime(s))],
  ["stdvar_over_time", varianceOverTime],
  ["mad_over_time", madOverTime],
]);

/** A copy of a window's values, for the functions that sort them. */
function windowValues(s: Series): number[] {
  const out: number[] = [];
  for (let i = s.lo; i < s.hi; i++) out.push(s.values[i]!);
  return out;
}

/** avg_over_time as Prometheus 3: direct Kahan mean, switching to an incremental mean only if the sum would overflow. */
function avgOverTime(s: Series): number {
  const vs = s.values;
  let sum = vs[s.lo]!;
  let count = 1;
  let mean = 0;
  let kahanC = 0;
  let incremental = false;
  for (let i = s.lo + 1; i < s.hi; i++) {
    const f = vs[i]!;
    count = i - s.lo + 1;
    if (!incremental) {
      const [newSum, newC] = kahanSumInc(f, sum, kahanC);
      if (Number.isFinite(newSum) || Number.isNaN(newSum)) {
        sum = newSum;
        kahanC = newC;
        continue;
      }
      incremental = true;
      mean = sum / (count - 1);
      kahanC /= count - 1;
    }
    const q = (count - 1) / count;
    [mean, kahanC] = kahanSumInc(f / count, q * mean, q * kahanC);
  }
  if (incremental) return mean + kahanC;
  return sum / count + kahanC / count;
}

/** Prometheus's extrapolatedRate over a series' window; null when the window has fewer than two samples. */
export function extrapolatedRate(s: Series, window: MatrixWindow, isCounter: boolean, isRate: boolean): number | null {
  const vs = s.values;
  const ts = s.tMs;
  const lo = s.lo;
  const n1 = s.hi - lo - 1;
  if (n1 < 1) return null;
  const first = vs[lo]!;
  const firstT = ts[lo]!;
  const lastT = ts[lo + n1]!;
  let result = vs[lo + n1]! - first;
  const resets = s.resetsUpTo;
  if (isCounter && (resets === undefined || resets[lo + n1]! !== resets[lo]!)) {
    let prev = first;
    for (let i = lo + 1; i < s.hi; i++) {
      const cur = vs[i]!;
      if (cur < prev) result += prev;
      prev = cur;
    }
  }
  let durationToStart = (firstT - window.rangeStartMs) / 1000;
  let durationToEnd = (window.rangeEndMs - lastT) / 1000;
  const sampledInterval = (lastT - firstT) / 1000;
  const averageBetween = sampledInterval / n1;
  const threshold = averageBetween * 1.1;
  let extrapolateTo = sampledInterval;
  if (durationToStart >= threshold) durationToStart = averageBetween / 2;
  if (isCounter && result > 0 && first >= 0) {
    // A counter cannot go below zero: do not extrapolate past the point where it would.
    const durationToZero = sampledInterval * (first / result);
    if (durationToZero < durationToStart) durationToStart = durationToZero;
  }
  extrapolateTo += durationToStart;
  if (durationToEnd >= threshold) durationToEnd = averageBetween / 2;
  extrapolateTo += durationToEnd;
  let factor = extrapolateTo / sampledInterval;
  if (isRate) factor /= window.rangeMs / 1000;
  return result * factor;
}

/** Prometheus's linearRegression over a series' window (Kahan sums, x relative to interceptTMs); [slope, intercept]. */
export function linearRegression(s: Series, interceptTMs: number): [number, number] {
  const vs = s.values;
  const ts = s.tMs;
  let n = 0;
  let sumX = 0;
  let cX = 0;
  let sumY = 0;
  let cY = 0;
  let sumXY = 0;
  let cXY = 0;
  let sumX2 = 0;
  let cX2 = 0;
  const initY = vs[s.lo]!;
  let constY = true;
  for (let i = s.lo; i < s.hi; i++) {
    const y = vs[i]!;
    if (constY && i > s.lo && y !== initY) constY = false;
    n += 1;
    const x = (ts[i]! - interceptTMs) / 1e3;
    [sumX, cX] = kahanSumInc(x, sumX, cX);
    [sumY, cY] = kahanSumInc(y, sumY, cY);
    [sumXY, cXY] = kahanSumInc(x * y, sumXY, cXY);
    [sumX2, cX2] = kahanSumInc(x * x, sumX2, cX2);
  }
  if (constY) {
    if (initY === Infinity || initY === -Infinity) return [NaN, NaN];
    return [0, initY];
  }
  sumX += cX;
  sumY += cY;
  sumXY += cXY;
  sumX2 += cX2;
  const covXY = sumXY - (sumX * sumY) / n;
  const varX = sumX2 - (sumX * sumX) / n;
  const slope = covXY / varX;
  return [slope, sumY / n - (slope * sumX) / n];
}
