// PromQL text -> syntax tree (ast.ts), with Prometheus 3.x semantics. The
// official lezer grammar (@prometheus-io/lezer-promql) does the tokenising and
// the precedence climbing; this file turns its concrete tree into ast.ts nodes,
// fixes the few places where the lezer grammar and Prometheus's yacc grammar
// disagree, and then type-checks the result like Prometheus's checkAST.
//
// Every problem is a PromQLParseError (a BadInputError) whose message reads
// like Prometheus's: "1:12: parse error: unexpected ...".

import { parser } from "@prometheus-io/lezer-promql";
import type { SyntaxNode } from "@lezer/common";
import { BadInputError, TooLargeError } from "../../core/errors.js";
import { METRIC_NAME } from "../../core/labels.js";
import { makeMatcher, selectsSomething, type MatchOp, type Matcher } from "../../core/matchers.js";
import { StringSyntaxError, unquotePromString } from "../selector.js";
import type {
  AggregateExpr,
  AggregateOp,
  AtModifier,
  BinaryExpr,
  BinaryOp,
  Call,
  Expr,
  MatrixSelector,
  PosRange,
  SubqueryExpr,
  ValueType,
  VectorMatching,
  VectorSelector,
} from "./ast.js";
import { isComparisonOp, isSetOp } from "./ast.js";

/** Longest query accepted: a query is a request parameter, and the tree walk costs memory per character. */
export const PROMQL_CHARS_MAX = 64 * 1024;
/** Deepest nesting accepted: the tree walk is recursive and must not exhaust the stack. */
export const PROMQL_DEPTH_MAX = 1000;

// ---------------------------------------------------------------------------
// Errors

const utf8 = new TextEncoder();

/** Prometheus's "line:column" (column counted in bytes, as Go indexes strings). */
export function promPosition(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const nl = before.lastIndexOf("\n");
  let line = 1;
  for (let i = 0; i < before.length; i++) if (before.charCodeAt(i) === 10) line++;
  return { line, column: utf8.encode(before.slice(nl + 1)).length + 1 };
}

/** A query that Prometheus would reject at parse time. */
export class PromQLParseError extends BadInputError {
  readonly pos: PosRange;
  readonly detail: string;
  constructor(text: string, pos: PosRange, detail: string) {
    const { line, column } = promPosition(text, pos.start);
    super(detail, { line, column, field: "query" });
    // Prometheus's own wording, so that `expect fail msg:` lines and clients see the familiar form.
    this.message = `${line}:${column}: parse error: ${detail}`;
    this.name = "PromQLParseError";
    this.pos = pos;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------
// Function table (Prometheus promql/parser/functions.go)

export interface FunctionSpec {
  name: string;
  argTypes: readonly ValueType[];
  /**
   * 0: exactly argTypes.length arguments. n > 0: the last argument type is
   * optional and may repeat up to n times. -1: the last may repeat without limit.
   */
  variadic: number;
  returnType: ValueType;
  /** Behind Prometheus's --enable-feature=promql-experimental-functions. */
  experimental: boolean;
}

const FUNCTION_LIST: readonly FunctionSpec[] = (() => {
  const out: FunctionSpec[] = [];
  const add = (names: string, argTypes: ValueType[], returnType: ValueType, variadic = 0, experimental = false): void => {
    for (const name of names.split(/\s+/).filter((n) => n !== "")) out.push({ name, argTypes, variadic, returnType, experimental });
  };
  const v: ValueType = "vector";
  const m: ValueType = "matrix";
  const s: ValueType = "scalar";
  const str: ValueType = "string";
  add(
    `abs absent acos acosh asin asinh atan atanh ceil cos cosh deg exp floor histogram_avg histogram_count
     histogram_stddev histogram_stdvar histogram_sum ln log10 log2 rad sgn sin sinh sort sort_desc sqrt tan tanh timestamp`,
    [v],
    v,
  );
  add(
    `absent_over_time avg_over_time changes count_over_time delta deriv idelta increase irate last_over_time
     max_over_time min_over_time present_over_time rate resets stddev_over_time stdvar_over_time sum_over_time`,
    [m],
    v,
  );
  add(`first_over_time mad_over_time ts_of_first_over_time ts_of_last_over_time ts_of_max_over_time ts_of_min_over_time`, [m], v, 0, true);
  add(`day_of_month day_of_week day_of_year days_in_month hour minute month year`, [v], v, 1);
  add(`clamp`, [v, s, s], v);
  add(`clamp_max clamp_min`, [v, s], v);
  add(`double_exponential_smoothing`, [m, s, s], v, 0, true);
  add(`histogram_fraction`, [s, s, v], v);
  add(`histogram_quantile`, [s, v], v);
  add(`histogram_quantiles`, [v, str, s], v, -1, true);
  add(`info`, [v, v], v, 1, true);
  add(`label_join`, [v, str, str, str], v, -1);
  add(`label_replace`, [v, str, str, str, str], v);
  add(`predict_linear`, [m, s], v);
  add(`quantile_over_time`, [s, m], v);
  add(`round`, [v, s], v, 1);
  add(`scalar`, [v], s);
  add(`sort_by_label sort_by_label_desc`, [v, str], v, -1, true);
  add(`time pi`, [], s);
  add(`vector`, [s], v);
  // The query's own parameters as scalars (Prometheus 3.x duration-expression functions).
  add(`start end range step`, [], s, 0, true);
  add(`min_of max_of`, [s, s], s, 0, true);
  return out;
})();

export const FUNCTIONS: ReadonlyMap<string, FunctionSpec> = new Map(FUNCTION_LIST.map((f) => [f.name, f]));

/** Aggregations that take a parameter, and its type. */
const AGG_PARAM: Readonly<Partial<Record<AggregateOp, ValueType>>> = {
  topk: "scalar",
  bottomk: "scalar",
  limitk: "scalar",
  limit_ratio: "scalar",
  quantile: "scalar",
  count_values: "string",
};
const AGG_OPS: ReadonlySet<string> = new Set([
  "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "limitk", "limit_ratio", "quantile", "count_values",
]);
/** Aggregations behind Prometheus's experimental-functions flag. */
export const EXPERIMENTAL_AGGREGATIONS: ReadonlySet<AggregateOp> = new Set<AggregateOp>(["limitk", "limit_ratio"]);

const BINARY_OPS: Readonly<Record<string, BinaryOp>> = {
  Pow: "^", Mul: "*", Div: "/", Mod: "%", Atan2: "atan2", Add: "+", Sub: "-",
  Eql: "==", Neq: "!=", Gtr: ">", Lss: "<", Gte: ">=", Lte: "<=", And: "and", Or: "or", Unless: "unless",
};
const MATCH_OPS: Readonly<Record<string, MatchOp>> = { EqlSingle: "=", Neq: "!=", EqlRegex: "=~", NeqRegex: "!~" };


/** Prometheus's DocumentedType, used in type errors. */
export function documentedType(t: ValueType): string {
  return t === "vector" ? "instant vector" : t === "matrix" ? "range vector" : t;
}

// ---------------------------------------------------------------------------
// Numbers and durations

const DURATION_RE = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const DURATION_UNIT_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1];

/** Prometheus's model.ParseDuration: "1h30m", "0"; null when the text is no duration. */
export function parseDurationMs(s: string): number | null {
  if (s === "0") return 0;
  if (s === "") return null;
  const m = DURATION_RE.exec(s);
  if (m === null) return null;
  let ms = 0;
  for (let i = 0; i < DURATION_UNIT_MS.length; i++) {
    const g = m[i + 1];
    if (g !== undefined) ms += Number(g) * DURATION_UNIT_MS[i]!;
  }
  if (!Number.isSafeInteger(ms)) return null;
  return ms;
}

/** Prometheus's model.Duration.String(): "1h30m", "0s"; years and weeks only when exact. */
export function formatDurationMs(msIn: number): string {
  if (msIn === 0) return "0s";
  if (msIn < 0) return `-${formatDurationMs(-msIn)}`;
  let ms = msIn;
  let r = "";
  const f = (unit: string, mult: number, exact: boolean): void => {
    if (exact && ms % mult !== 0) return;
    const v = Math.floor(ms / mult);
    if (v > 0) {
      r += `${v}${unit}`;
      ms -= v * mult;
    }
  };
  f("y", DURATION_UNIT_MS[0]!, true);
  f("w", DURATION_UNIT_MS[1]!, true);
  f("d", DURATION_UNIT_MS[2]!, false);
  f("h", DURATION_UNIT_MS[3]!, false);
  f("m", DURATION_UNIT_MS[4]!, false);
  f("s", DURATION_UNIT_MS[5]!, false);
  f("ms", 1, false);
  return r;
}

/**
 * An unsigned number token as Prometheus reads it: Go's ParseInt(s, 0, 64)
 * first (so 0x1f, 0o17, 017 and 1_000 are integers), then ParseFloat (1e3,
 * .5, 2., Inf, NaN in any case). A duration (1m30s) is its length in seconds.
 * Returns null when the text is no number.
 */
export function parseNumberToken(s: string): number | null {
  const d = DURATION_RE.test(s) && !/^\d+$/.test(s) && s !== "" ? parseDurationMs(s) : null;
  if (d !== null) return d / 1000;
  const lower = s.toLowerCase();
  if (lower === "inf" || lower === "infinity") return Infinity;
  if (lower === "nan") return NaN;
  // Go integer literal syntax; underscores only between digits.
  const int = /^(?:0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*|[1-9](_?[0-9])*)$/.exec(s);
  if (int !== null) {
    const t = s.replace(/_/g, "");
    let n: number;
    if (/^0[xX]/.test(t)) n = parseInt(t.slice(2), 16);
    else if (/^0[oO]/.test(t)) n = parseInt(t.slice(2), 8);
    else if (/^0[bB]/.test(t)) n = parseInt(t.slice(2), 2);
    else if (t.length > 1 && t[0] === "0") n = parseInt(t.slice(1), 8);
    else n = Number(t);
    // Beyond int64 Go's ParseInt fails and ParseFloat takes over: same value for decimal text.
    return n;
  }
  if (/^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(s)) return Number(s.endsWith(".") ? s.slice(0, -1) : s);
  return null;
}

// ---------------------------------------------------------------------------
// Pre-lezer masking

const IDENT_START = /[a-zA-Z_:]/;
const IDENT_PART = /[a-zA-Z0-9_:]/;
/** Functions Prometheus 3.x accepts that this lezer grammar only knows inside [...] durations. */
const LEZER_UNKNOWN_FUNCTIONS: Readonly<Record<string, string>> = { min_of: "absent", max_of: "absent" };

/**
 * Rewrites, character for character (so every offset stays valid), the few
 * inputs Prometheus accepts but the lezer grammar does not: number literals
 * with a trailing dot ("2.") and min_of/max_of outside durations. The tree is
 * built from the masked text, but every name and literal is read back from the
 * original text.
 */
function maskForLezer(text: string): string {
  const out = text.split("");
  let bracket = 0;
  // Nesting is checked here, before lezer, which gives up on deep nesting with a plain syntax error.
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "(" || c === "[" || c === "{") {
      if (++depth > PROMQL_DEPTH_MAX) throw new TooLargeError("expression nesting depth", PROMQL_DEPTH_MAX, { field: "query" });
    } else if (c === ")" || c === "]" || c === "}") depth = Math.max(0, depth - 1);
    if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c && !(c !== "`" && text[j] === "\n")) j += c !== "`" && text[j] === "\\" ? 2 : 1;
      i = j + 1;
    } else if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "[") {
      bracket++;
      i++;
    } else if (c === "]") {
      bracket = Math.max(0, bracket - 1);
      i++;
    } else if (IDENT_START.test(c)) {
      let j = i + 1;
      while (j < text.length && IDENT_PART.test(text[j]!)) j++;
      const word = text.slice(i, j);
      const stand = LEZER_UNKNOWN_FUNCTIONS[word];
      if (stand !== undefined && bracket === 0 && /^\s*\(/.test(text.slice(j))) {
        assert(stand.length === word.length, "a stand-in function name must keep every offset");
        for (let k = 0; k < stand.length; k++) out[i + k] = stand[k]!;
      }
      i = j;
    } else if (c >= "0" && c <= "9") {
      let j = i + 1;
      while (j < text.length && /[0-9_]/.test(text[j]!)) j++;
      if (text[j] === "." && !/[0-9eE]/.test(text[j + 1] ?? "")) out[j] = " ";
      else if (text[j] === "." || /[a-zA-Z]/.test(text[j] ?? "")) {
        // Fractions, exponents, hex, durations: lezer reads those itself.
        while (j < text.length && /[0-9a-zA-Z_.]/.test(text[j]!)) j++;
      }
      i = j;
    } else {
      i++;
    }
  }
  return out.join("");
}

function assert(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(`promql parser invariant violated: ${what}`);
}


// ---------------------------------------------------------------------------
// Strings and regular expressions beyond what core accepts

/**
 * Unquotes like unquotePromString, but keeps strings that are not valid UTF-8
 * (Prometheus accepts "a\xc5z" at parse time and rejects it later as a label
 * name): each byte that is not part of a valid UTF-8 sequence becomes a lone
 * surrogate U+DC80..U+DCFF ("surrogateescape"), which goQuote prints back as
 * \xHH and which core/labels.ts refuses to store.
 */
export function unquoteLenient(lit: string): string {
  try {
    return unquotePromString(lit);
  } catch (e) {
    if (!(e instanceof StringSyntaxError) || !/not valid UTF-8/.test(e.message)) throw e;
  }
  // Only reached for "..." and '...' literals whose escapes were already validated above.
  const body = lit.slice(1, -1);
  const bytes: number[] = [];
  const simple: Readonly<Record<string, number>> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 92, '"': 34, "'": 39 };
  for (let i = 0; i < body.length; ) {
    const ch = body[i]!;
    if (ch !== "\\") {
      const cp = body.codePointAt(i)!;
      for (const b of utf8.encode(String.fromCodePoint(cp))) bytes.push(b);
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const e = body[i + 1]!;
    if (simple[e] !== undefined) {
      bytes.push(simple[e]);
      i += 2;
    } else if (e === "x") {
      bytes.push(parseInt(body.slice(i + 2, i + 4), 16));
      i += 4;
    } else if (e === "u" || e === "U") {
      const n = e === "u" ? 4 : 8;
      for (const b of utf8.encode(String.fromCodePoint(parseInt(body.slice(i + 2, i + 2 + n), 16)))) bytes.push(b);
      i += 2 + n;
    } else {
      bytes.push(parseInt(body.slice(i + 1, i + 4), 8));
      i += 4;
    }
  }
  return decodeSurrogateEscape(bytes);
}

function decodeSurrogateEscape(bytes: readonly number[]): string {
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    let cp = len === 1 ? b : len === 2 ? b & 0x1f : len === 3 ? b & 0x0f : b & 0x07;
    let ok = len > 0 && i + len <= bytes.length;
    for (let k = 1; ok && k < len; k++) {
      const c = bytes[i + k]!;
      if ((c & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (c & 0x3f);
    }
    const min = [0, 0, 0x80, 0x800, 0x10000][len] ?? 0;
    if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    if (ok) {
      out += String.fromCodePoint(cp);
      i += len;
    } else {
      out += String.fromCharCode(0xdc00 + b);
      i += 1;
    }
  }
  return out;
}

/**
 * Translates the RE2 constructs Prometheus users write but Node 20's RegExp
 * lacks: flag groups (?i) (?i:...) (?s) (?-i), and (?P<name>...). Case
 * insensitivity becomes explicit [xX] classes. Returns null when the pattern
 * has a construct this does not understand (the caller reports the original
 * error then).
 */
export function re2ToJs(re: string): string | null {
  const both = (c: string): string => {
    const lo = c.toLowerCase();
    const up = c.toUpperCase();
    return lo === up || lo.length !== 1 || up.length !== 1 ? "" : lo + up;
  };
  const stack: boolean[] = [];
  let ci = false;
  let out = "";
  let i = 0;
  while (i < re.length) {
    const c = re[i]!;
    if (c === "\\") {
      const next = re[i + 1];
      if (next === undefined) return null;
      if ((next === "p" || next === "P" || next === "x") && re[i + 2] === "{") {
        const close = re.indexOf("}", i);
        if (close < 0) return null;
        out += next === "x" ? `\\u${re.slice(i + 2, close + 1)}` : re.slice(i, close + 1);
        i = close + 1;
      } else if ((next === "p" || next === "P") && /[A-Za-z]/.test(re[i + 2] ?? "")) {
        out += `\\${next}{${re[i + 2]}}`;
        i += 3;
      } else {
        out += ci && /[a-zA-Z]/.test(next) && !/[dDwWsSbBnrtfv]/.test(next) ? `[${both(next)}]` : `\\${next}`;
        i += 2;
      }
    } else if (c === "[") {
      let j = i + 1;
      let cls = "[";
      if (re[j] === "^") cls += re[j++];
      if (re[j] === "]") cls += `\\${re[j++]}`;
      while (j < re.length && re[j] !== "]") {
        if (re[j] === "\\") {
          cls += re.slice(j, j + 2);
          j += 2;
        } else if (re[j + 1] === "-" && re[j + 2] !== undefined && re[j + 2] !== "]") {
          const a = re[j]!;
          const b = re[j + 2]!;
          cls += `${a}-${b}`;
          if (ci && /[a-zA-Z]/.test(a) && /[a-zA-Z]/.test(b)) {
            const swap = (x: string): string => (x === x.toLowerCase() ? x.toUpperCase() : x.toLowerCase());
            cls += `${swap(a)}-${swap(b)}`;
          }
          j += 3;
        } else {
          const ch = re[j]!;
          cls += ci ? both(ch) || ch : ch;
          j++;
        }
      }
      if (j >= re.length) return null;
      out += `${cls}]`;
      i = j + 1;
    } else if (c === "(") {
      const flags = /^\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])/.exec(re.slice(i));
      if (flags !== null && (flags[1] !== "" || flags[2] !== undefined || flags[3] === ")")) {
        const on = flags[1]!;
        const off = flags[2] ?? "";
        if (!/^[ismU]*$/.test(on + off) || /[mU]/.test(on + off)) return null;
        const set: boolean = on.includes("i") ? true : off.includes("i") ? false : ci;
        if (flags[3] === ")") {
          ci = set;
        } else {
          stack.push(ci);
          ci = set;
          out += "(?:";
        }
        i += flags[0].length;
      } else if (re.startsWith("(?P<", i)) {
        stack.push(ci);
        out += "(?<";
        i += 4;
      } else {
        stack.push(ci);
        out += "(";
        i++;
      }
    } else if (c === ")") {
      if (stack.length === 0) return null;
      ci = stack.pop()!;
      out += ")";
      i++;
    } else {
      const pair = ci ? both(c) : "";
      out += pair !== "" ? `[${pair}]` : c;
      i++;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tree building

function kids(n: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = n.firstChild; c !== null; c = c.nextSibling) if (c.type.name !== "LineComment") out.push(c);
  return out;
}

/** Nodes whose offset / @ was given explicitly (offset 0 counts), to reject a second one. */
interface Modified {
  offset: WeakSet<object>;
  at: WeakSet<object>;
}

class Builder {
  private depth = 0;
  private readonly modified: Modified = { offset: new WeakSet(), at: new WeakSet() };

  constructor(readonly text: string) {}

  fail(detail: string, from: number, to = from): never {
    throw new PromQLParseError(this.text, { start: from, end: to }, detail);
  }

  slice(n: SyntaxNode): string {
    return this.text.slice(n.from, n.to);
  }

  pos(n: SyntaxNode): PosRange {
    return { start: n.from, end: n.to };
  }

  str(n: SyntaxNode): string {
    try {
      return unquoteLenient(this.slice(n));
    } catch (e) {
      if (e instanceof StringSyntaxError) this.fail(e.message, n.from + e.offset, n.to);
      throw e;
    }
  }

  expr(n: SyntaxNode): Expr {
    if (++this.depth > PROMQL_DEPTH_MAX) throw new TooLargeError("expression nesting depth", PROMQL_DEPTH_MAX, { field: "query" });
    try {
      return this.exprInner(n);
    } finally {
      this.depth--;
    }
  }

  private exprInner(n: SyntaxNode): Expr {
    const c = kids(n);
    switch (n.type.name) {
      case "NumberDurationLiteral":
        return { kind: "number", value: this.signedNumber(n), pos: this.pos(n) };
      case "StringLiteral":
        return { kind: "string", value: this.str(n), pos: this.pos(n) };
      case "VectorSelector":
        return this.vectorSelector(n);
      case "MatrixSelector":
        return this.matrixSelector(n, c);
      case "SubqueryExpr":
        return this.subquery(n, c);
      case "OffsetExpr":
        return this.offset(n, c);
      case "StepInvariantExpr":
        return this.at(n, c);
      case "ParenExpr":
        assert(c.length === 1, "ParenExpr has one child");
        return { kind: "paren", expr: this.expr(c[0]!), pos: this.pos(n) };
      case "UnaryExpr":
        return this.unary(n, c);
      case "BinaryExpr":
        return this.binary(n, c);
      case "AggregateExpr":
        return this.aggregate(n, c);
      case "FunctionCall":
        return this.call(n, c);
      case "AnchoredExpr":
      case "SmoothedExpr":
        return this.fail(`the ${n.type.name === "AnchoredExpr" ? "anchored" : "smoothed"} modifier is an experimental feature that is not supported`, n.from, n.to);
      default:
        return this.fail(`unexpected ${n.type.name}`, n.from, n.to);
    }
  }

  /** A NumberDurationLiteral: an optional sign (the lezer grammar folds it into the token) and a number. */
  private signedNumber(n: SyntaxNode): number {
    const raw = this.slice(n);
    const m = /^([+-]?)\s*([\s\S]*)$/.exec(raw);
    assert(m !== null, "the sign pattern matches any text");
    const v = this.number(m[2]!, n);
    return m[1] === "-" ? -v : v;
  }

  private number(s: string, n: SyntaxNode): number {
    const v = parseNumberToken(s);
    if (v === null) this.fail(`error parsing number: bad number or duration syntax: "${s}"`, n.from, n.to);
    // Go's ParseFloat reports overflow (1e400) as an error where JS quietly gives Infinity.
    if (Math.abs(v) === Infinity && !/^(?:inf|infinity)$/i.test(s)) this.fail(`error parsing number: strconv.ParseFloat: parsing "${s}": value out of range`, n.from, n.to);
    return v;
  }

  private vectorSelector(n: SyntaxNode): VectorSelector {
    let ident: string | null = null;
    let name = "";
    const matchers: Matcher[] = [];
    const inner: { name: string; from: number }[] = [];
    const matcher = (label: string, op: MatchOp, value: string, at: SyntaxNode): Matcher => {
      try {
        return makeMatcher(label, op, value);
      } catch (e) {
        if (!(e instanceof BadInputError)) throw e;
        // RE2 syntax that JS (Node 20) lacks, e.g. (?i) flag groups: translate and retry.
        const js = re2ToJs(value);
        if (js !== null && js !== value) {
          try {
            return { name: label, op, value, re: new RegExp(`^(?:${js})$`, "su") };
          } catch {
            // Fall through to the original error, which names the user's pattern.
          }
        }
        this.fail(e.message, at.from, at.to);
      }
    };
    for (const c of kids(n)) {
      if (c.type.name === "Identifier") {
        ident = this.slice(c);
        name = ident;
        matchers.push(matcher(METRIC_NAME, "=", ident, c));
      } else if (c.type.name === "LabelMatchers") {
        for (const m of kids(c)) {
          const kind = m.type.name;
          if (kind === "QuotedLabelName") {
            // A lone quoted string is the metric name: {"my.metric"}.
            const s = m.getChild("StringLiteral");
            if (s === null) this.fail("expected a quoted metric name", m.from, m.to);
            const value = this.str(s);
            inner.push({ name: value, from: m.from });
            if (name === "") name = value;
            matchers.push(matcher(METRIC_NAME, "=", value, m));
          } else if (kind === "UnquotedLabelMatcher" || kind === "QuotedLabelMatcher") {
            const nameNode = kind === "UnquotedLabelMatcher" ? m.getChild("LabelName") : m.getChild("QuotedLabelName")?.getChild("StringLiteral") ?? null;
            const opNode = m.getChild("MatchOp")?.firstChild ?? null;
            const valueNode = m.getChild("StringLiteral");
            if (nameNode === null || opNode === null || valueNode === null) this.fail("incomplete label matcher", m.from, m.to);
            const label = kind === "UnquotedLabelMatcher" ? this.slice(nameNode) : this.str(nameNode);
            const op = MATCH_OPS[opNode.type.name];
            if (op === undefined) this.fail(`unexpected "${this.slice(opNode)}" in label matching, expected one of "=", "!=", "=~" or "!~"`, opNode.from, opNode.to);
            const value = this.str(valueNode);
            if (label === METRIC_NAME) {
              inner.push({ name: value, from: m.from });
              if (op === "=" && name === "") name = value;
            }
            matchers.push(matcher(label, op, value, m));
          } else {
            this.fail(`unexpected "${this.slice(m)}" in label matching`, m.from, m.to);
          }
        }
      } else {
        this.fail(`unexpected "${this.slice(c)}"`, c.from, c.to);
      }
    }
    if (ident !== null && inner.length > 0) this.fail(`metric name must not be set twice: "${ident}" or "${inner[0]!.name}"`, n.from, n.to);
    if (matchers.length === 0 || !selectsSomething(matchers)) this.fail("vector selector must contain at least one non-empty matcher", n.from, n.to);
    return { kind: "vectorSelector", name, matchers, offsetMs: 0, at: null, pos: this.pos(n) };
  }

  /**
   * The lezer grammar attaches the postfix constructs ([range], [range:step],
   * offset, @) to the whole expression before them: it reads `a + b[5m]` as
   * (a + b)[5m] and `-x offset 1m` as (-x) offset 1m. In Prometheus they bind
   * tighter than any operator, so they belong to the rightmost operand.
   */
  private postfix(e: Expr, end: number, apply: (target: Expr) => Expr): Expr {
    if (e.kind === "binary") {
      e.rhs = this.postfix(e.rhs, end, apply);
      e.pos = { start: e.pos.start, end };
      return e;
    }
    if (e.kind === "unary") {
      e.expr = this.postfix(e.expr, end, apply);
      e.pos = { start: e.pos.start, end };
      return e;
    }
    return apply(e);
  }

  private matrixSelector(n: SyntaxNode, c: SyntaxNode[]): Expr {
    assert(c.length === 2, "MatrixSelector has an expression and a duration");
    const rangeMs = this.duration(c[1]!);
    if (rangeMs <= 0) this.fail(`range must be greater than 0, got ${formatDurationMs(rangeMs)}`, c[1]!.from, c[1]!.to);
    return this.postfix(this.expr(c[0]!), n.to, (inner): MatrixSelector => {
      if (inner.kind !== "vectorSelector") this.fail("ranges only allowed for vector selectors", inner.pos.start, inner.pos.end);
      if (this.modified.offset.has(inner) || this.modified.at.has(inner))
        this.fail("no offset or @ modifiers allowed before range", inner.pos.start, inner.pos.end);
      return { kind: "matrixSelector", vector: inner, rangeMs, pos: { start: inner.pos.start, end: n.to } };
    });
  }

  private subquery(n: SyntaxNode, c: SyntaxNode[]): Expr {
    assert(c.length === 2 || c.length === 3, "SubqueryExpr has an expression, a range and an optional step");
    const rangeMs = this.duration(c[1]!);
    if (rangeMs <= 0) this.fail(`subquery range must be greater than 0, got ${formatDurationMs(rangeMs)}`, c[1]!.from, c[1]!.to);
    const stepMs = c.length === 3 ? this.duration(c[2]!) : 0;
    if (stepMs < 0) this.fail(`subquery step must not be negative, got ${formatDurationMs(stepMs)}`, c[2]!.from, c[2]!.to);
    return this.postfix(this.expr(c[0]!), n.to, (expr): SubqueryExpr => ({
      kind: "subquery",
      expr,
      rangeMs,
      stepMs,
      offsetMs: 0,
      at: null,
      pos: { start: expr.pos.start, end: n.to },
    }));
  }

  /** The node that carries offset and @: the selector itself, a range's selector, or a subquery. */
  private modifiable(e: Expr, what: string, n: SyntaxNode): VectorSelector | SubqueryExpr {
    if (e.kind === "vectorSelector" || e.kind === "subquery") return e;
    if (e.kind === "matrixSelector") return e.vector;
    return this.fail(`${what} modifier must be preceded by an instant vector selector or range vector selector or a subquery`, e.pos.start, n.to);
  }

  private offset(n: SyntaxNode, c: SyntaxNode[]): Expr {
    assert(c.length === 3, "OffsetExpr has an expression, the keyword and a duration");
    const offsetMs = this.offsetDuration(c[2]!);
    return this.postfix(this.expr(c[0]!), n.to, (e) => {
      const target = this.modifiable(e, "offset", n);
      if (this.modified.offset.has(target)) this.fail("offset may not be set multiple times", c[1]!.from, n.to);
      this.modified.offset.add(target);
      target.offsetMs = offsetMs;
      e.pos = { start: e.pos.start, end: n.to };
      return e;
    });
  }

  private at(n: SyntaxNode, c: SyntaxNode[]): Expr {
    assert(c.length === 3, "StepInvariantExpr has an expression, @ and a time");
    const t = c[2]!;
    let at: AtModifier;
    if (t.type.name === "AtModifierPreprocessors") {
      at = t.firstChild?.type.name === "AtEnd" ? { kind: "end" } : { kind: "start" };
    } else {
      const s = this.signedNumber(t);
      if (!Number.isFinite(s) || Math.abs(s * 1000) >= 2 ** 63) this.fail(`timestamp out of bounds for @ modifier: ${s}`, t.from, t.to);
      at = { kind: "time", timeMs: Math.round(s * 1000) };
    }
    return this.postfix(this.expr(c[0]!), n.to, (e) => {
      const target = this.modifiable(e, "@", n);
      if (this.modified.at.has(target)) this.fail("@ <timestamp> may not be set multiple times", c[1]!.from, n.to);
      this.modified.at.add(target);
      target.at = at;
      e.pos = { start: e.pos.start, end: n.to };
      return e;
    });
  }

  /** A [range] or [range:step] duration, in ms; a plain number counts seconds. Constant arithmetic is folded. */
  private duration(n: SyntaxNode): number {
    const s = this.durationSeconds(n);
    if (!Number.isFinite(s)) this.fail(`duration must be finite, got ${s}`, n.from, n.to);
    return Math.round(s * 1000);
  }

  private offsetDuration(n: SyntaxNode): number {
    const c = kids(n);
    if (c.length === 2 && c[0]!.type.name === "UnaryOp") {
      const v = this.offsetDuration(c[1]!);
      return this.slice(c[0]!) === "-" ? -v : v;
    }
    return this.duration(n);
  }

  private durationSeconds(n: SyntaxNode): number {
    if (++this.depth > PROMQL_DEPTH_MAX) throw new TooLargeError("expression nesting depth", PROMQL_DEPTH_MAX, { field: "query" });
    try {
      return this.durationSecondsInner(n);
    } finally {
      this.depth--;
    }
  }

  private durationSecondsInner(n: SyntaxNode): number {
    if (n.type.name === "NumberDurationLiteralInDurationContext" || n.type.name === "NumberDurationLiteral") return this.signedNumber(n);
    const c = kids(n);
    if (c.length === 1) return this.durationSeconds(c[0]!);
    if (c.length === 2 && c[0]!.type.name === "UnaryOp") {
      const v = this.durationSeconds(c[1]!);
      return this.slice(c[0]!) === "-" ? -v : v;
    }
    const head = c[0]!.type.name;
    if (head === "DurationStep" || head === "DurationRange")
      this.fail(`${this.slice(c[0]!)}() in a duration depends on the query and is not supported`, n.from, n.to);
    if (head === "DurationMinOf" || head === "DurationMaxOf") {
      assert(c.length === 3, "min_of/max_of take two durations");
      const a = this.durationSeconds(c[1]!);
      const b = this.durationSeconds(c[2]!);
      return head === "DurationMinOf" ? Math.min(a, b) : Math.max(a, b);
    }
    if (c.length === 3) {
      const a = this.durationSeconds(c[0]!);
      const b = this.durationSeconds(c[2]!);
      switch (c[1]!.type.name) {
        case "Add":
          return a + b;
        case "Sub":
          return a - b;
        case "Mul":
          return a * b;
        case "Div":
          if (b === 0) this.fail("division by zero in duration expression", n.from, n.to);
          return a / b;
        case "Mod":
          if (b === 0) this.fail("modulo by zero in duration expression", n.from, n.to);
          return a % b;
        case "Pow":
          return a ** b;
      }
    }
    return this.fail(`unexpected "${this.slice(n)}" in duration`, n.from, n.to);
  }

  private unary(n: SyntaxNode, c: SyntaxNode[]): Expr {
    assert(c.length === 2 && c[0]!.type.name === "UnaryOp", "UnaryExpr has an operator and an operand");
    const op = this.slice(c[0]!) === "-" ? "-" : "+";
    const e = this.expr(c[1]!);
    // Prometheus folds a sign into a number literal (-1 is a literal, not an operation).
    if (e.kind === "number") return { kind: "number", value: op === "-" ? -e.value : e.value, pos: this.pos(n) };
    return { kind: "unary", op, expr: e, pos: this.pos(n) };
  }

  private binary(n: SyntaxNode, c: SyntaxNode[]): Expr {
    assert(c.length >= 3, "BinaryExpr has two operands and an operator");
    const lhsNode = c[0]!;
    const opNode = c[1]!;
    const rhsNode = c[c.length - 1]!;
    const op = BINARY_OPS[opNode.type.name];
    if (op === undefined) this.fail(`binary operator "${this.slice(opNode)}" is an experimental feature that is not supported`, opNode.from, opNode.to);
    let returnBool = false;
    let matching: VectorMatching | null = null;
    for (const m of c.slice(2, -1)) {
      if (m.type.name === "BoolModifier") returnBool = true;
      else if (m.type.name === "MatchingModifierClause") {
        matching = this.matching(m, op);
        // `ignoring()` alone means no modifier at all; one tree for one meaning keeps printing stable.
        if (!matching.on && matching.labels.length === 0 && (matching.card === "one-to-one" || matching.card === "many-to-many")) matching = null;
      }
      else if (m.type.name === "FillModifier") this.fail("fill modifiers are an experimental feature that is not supported", m.from, m.to);
      else this.fail(`unexpected "${this.slice(m)}"`, m.from, m.to);
    }
    const rhs = this.expr(rhsNode);
    // The lezer grammar reads "-2 ^ 2" as (-2) ^ 2 because its number token
    // carries the sign; in Prometheus the sign is a unary operator that binds
    // weaker than ^, giving -(2 ^ 2).
    const lhsText = lhsNode.type.name === "NumberDurationLiteral" ? /^([+-])\s*([\s\S]*)$/.exec(this.slice(lhsNode)) : null;
    if (op === "^" && lhsText !== null) {
      const base = { kind: "number" as const, value: this.number(lhsText[2]!, lhsNode), pos: { start: lhsNode.from + 1, end: lhsNode.to } };
      const pow: BinaryExpr = { kind: "binary", op, lhs: base, rhs, returnBool, matching, pos: { start: lhsNode.from + 1, end: n.to } };
      return { kind: "unary", op: lhsText[1] === "-" ? "-" : "+", expr: pow, pos: this.pos(n) };
    }
    const lhs = this.expr(lhsNode);
    return makeBinary(op, lhs, rhs, returnBool, matching);
  }

  private matching(m: SyntaxNode, op: BinaryOp): VectorMatching {
    const c = kids(m);
    const on = c[0]?.type.name === "On";
    assert(c[1]?.type.name === "GroupingLabels", "on/ignoring is followed by labels");
    const labels = this.labelList(c[1]!);
    let card: VectorMatching["card"] = isSetOp(op) ? "many-to-many" : "one-to-one";
    let include: string[] = [];
    const g = c[2];
    if (g !== undefined) {
      card = g.type.name === "GroupLeft" ? "many-to-one" : "one-to-many";
      if (c[3] !== undefined) include = this.labelList(c[3]);
    }
    return { card, on, labels, include };
  }

  private labelList(n: SyntaxNode): string[] {
    const out: string[] = [];
    for (const l of kids(n)) {
      if (l.type.name === "LabelName") out.push(this.slice(l));
      else if (l.type.name === "QuotedLabelName") {
        const s = l.getChild("StringLiteral");
        if (s === null) this.fail("expected a quoted label name", l.from, l.to);
        out.push(this.str(s));
      } else this.fail(`unexpected "${this.slice(l)}" in grouping labels`, l.from, l.to);
    }
    return out;
  }

  private aggregate(n: SyntaxNode, c: SyntaxNode[]): AggregateExpr {
    const opNode = c.find((x) => x.type.name === "AggregateOp");
    const body = c.find((x) => x.type.name === "FunctionCallBody");
    const mod = c.find((x) => x.type.name === "AggregateModifier");
    assert(opNode !== undefined && body !== undefined, "AggregateExpr has an operator and a body");
    const opText = this.slice(opNode).toLowerCase();
    if (!AGG_OPS.has(opText)) this.fail(`unknown aggregation "${opText}"`, opNode.from, opNode.to);
    const op = opText as AggregateOp;
    let without = false;
    let grouping: string[] = [];
    if (mod !== undefined) {
      const mc = kids(mod);
      without = mc[0]?.type.name === "Without";
      const labels = mc.find((x) => x.type.name === "GroupingLabels");
      assert(labels !== undefined, "by/without is followed by labels");
      grouping = this.labelList(labels);
    }
    const args = kids(body).map((a) => this.expr(a));
    const want = AGG_PARAM[op] !== undefined ? 2 : 1;
    if (args.length !== want) this.fail(`wrong number of arguments for aggregate expression provided, expected ${want}, got ${args.length}`, n.from, n.to);
    const param = want === 2 ? args[0]! : null;
    const expr = args[want - 1]!;
    return { kind: "aggregate", op, expr, param, without, grouping, pos: this.pos(n) };
  }

  private call(n: SyntaxNode, c: SyntaxNode[]): Call {
    const id = c[0]!;
    assert(id.type.name === "FunctionIdentifier" && c[1]?.type.name === "FunctionCallBody", "FunctionCall has a name and a body");
    const func = this.slice(id);
    if (!FUNCTIONS.has(func)) this.fail(`unknown function with name "${func}"`, id.from, id.to);
    const args = kids(c[1]!).map((a) => this.expr(a));
    return { kind: "call", func, args, pos: this.pos(n) };
  }
}

/** Binding strength of binary operators (Prometheus's yacc precedence); unary +/- binds like *. */
const PRECEDENCE: Readonly<Record<BinaryOp, number>> = {
  or: 1, and: 2, unless: 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, atan2: 5, "^": 6,
};
const UNARY_PRECEDENCE = 5;

/**
 * A binary node with Prometheus's precedence restored. The lezer grammar
 * reads `a + b @ 60 * 0` as ((a + b) @ 60) * 0; once the @ has moved to b
 * (see Builder.postfix) the left operand is an unparenthesised `a + b@60`
 * that binds weaker than `*`, which no correct parse produces. Rotating
 * gives a + (b@60 * 0). For trees lezer built right this is the identity.
 */
function makeBinary(op: BinaryOp, lhs: Expr, rhs: Expr, returnBool: boolean, matching: VectorMatching | null): Expr {
  const p = PRECEDENCE[op];
  const pos = { start: lhs.pos.start, end: rhs.pos.end };
  if (lhs.kind === "binary") {
    const q = PRECEDENCE[lhs.op];
    if (q < p || (q === p && op === "^")) {
      lhs.rhs = makeBinary(op, lhs.rhs, rhs, returnBool, matching);
      lhs.pos = pos;
      return lhs;
    }
  } else if (lhs.kind === "unary" && p > UNARY_PRECEDENCE) {
    lhs.expr = makeBinary(op, lhs.expr, rhs, returnBool, matching);
    lhs.pos = pos;
    return lhs;
  }
  return { kind: "binary", op, lhs, rhs, returnBool, matching, pos };
}

// ---------------------------------------------------------------------------
// Type checking (Prometheus's checkAST)

/** The type of a well-formed expression (one that parsePromQL returned). */
export function exprType(e: Expr): ValueType {
  switch (e.kind) {
    case "number":
      return "scalar";
    case "string":
      return "string";
    case "vectorSelector":
      return "vector";
    case "matrixSelector":
    case "subquery":
      return "matrix";
    case "paren":
    case "unary":
      return exprType(e.expr);
    case "binary":
      return exprType(e.lhs) === "scalar" && exprType(e.rhs) === "scalar" ? "scalar" : "vector";
    case "aggregate":
      return "vector";
    case "call":
      return FUNCTIONS.get(e.func)?.returnType ?? "vector";
  }
}

class Checker {
  constructor(readonly text: string) {}

  fail(detail: string, pos: PosRange): never {
    throw new PromQLParseError(this.text, pos, detail);
  }

  expect(e: Expr, want: ValueType, context: string): void {
    const t = this.check(e);
    if (t !== want) this.fail(`expected type ${documentedType(want)} in ${context}, got ${documentedType(t)}`, e.pos);
  }

  check(e: Expr): ValueType {
    switch (e.kind) {
      case "number":
      case "string":
      case "vectorSelector":
        break;
      case "matrixSelector":
        this.check(e.vector);
        break;
      case "subquery": {
        const t = this.check(e.expr);
        if (t !== "vector") this.fail(`subquery is only allowed on instant vector, got ${t} instead`, e.pos);
        break;
      }
      case "paren":
        this.check(e.expr);
        break;
      case "unary": {
        const t = this.check(e.expr);
        if (t !== "scalar" && t !== "vector")
          this.fail(`unary expression only allowed on expressions of type scalar or instant vector, got "${documentedType(t)}"`, e.pos);
        break;
      }
      case "binary":
        this.binary(e);
        break;
      case "aggregate": {
        this.expect(e.expr, "vector", "aggregation expression");
        const pt = AGG_PARAM[e.op];
        if (pt !== undefined) {
          assert(e.param !== null, "an aggregation that takes a parameter has one");
          this.expect(e.param, pt, "aggregation parameter");
        }
        break;
      }
      case "call":
        this.call(e);
        break;
    }
    return exprType(e);
  }

  private binary(e: BinaryExpr): void {
    const lt = this.check(e.lhs);
    const rt = this.check(e.rhs);
    const opPos = { start: e.lhs.pos.end, end: e.rhs.pos.start };
    if (e.returnBool && !isComparisonOp(e.op)) this.fail("bool modifier can only be used on comparison operators", opPos);
    if (isComparisonOp(e.op) && !e.returnBool && lt === "scalar" && rt === "scalar")
      this.fail("comparisons between scalars must use BOOL modifier", opPos);
    const vm = e.matching;
    if (vm !== null && vm.on)
      for (const l of vm.labels) if (vm.include.includes(l)) this.fail(`label "${l}" must not occur in ON and GROUP clause at once`, opPos);
    if (lt !== "scalar" && lt !== "vector") this.fail("binary expression must contain only scalar and instant vector types", e.lhs.pos);
    if (rt !== "scalar" && rt !== "vector") this.fail("binary expression must contain only scalar and instant vector types", e.rhs.pos);
    if ((lt !== "vector" || rt !== "vector") && vm !== null) {
      if (vm.labels.length > 0) this.fail("vector matching only allowed between instant vectors", e.pos);
      // Prometheus drops an empty matching of a scalar operation silently (e.g. `1 + on() foo`).
      e.matching = null;
    } else if (isSetOp(e.op) && vm !== null) {
      if (vm.card === "one-to-many" || vm.card === "many-to-one") this.fail(`no grouping allowed for "${e.op}" operation`, e.pos);
      assert(vm.card === "many-to-many", "set operations are many-to-many");
    }
    if ((lt === "scalar" || rt === "scalar") && isSetOp(e.op)) this.fail(`set operator "${e.op}" not allowed in binary scalar expression`, e.pos);
  }

  private call(e: Call): void {
    const f = FUNCTIONS.get(e.func);
    assert(f !== undefined, "the builder accepts known functions only");
    const nargs = f.argTypes.length;
    if (f.variadic === 0) {
      if (nargs !== e.args.length) this.fail(`expected ${nargs} argument(s) in call to "${f.name}", got ${e.args.length}`, e.pos);
    } else {
      const na = nargs - 1;
      if (na > e.args.length) this.fail(`expected at least ${na} argument(s) in call to "${f.name}", got ${e.args.length}`, e.pos);
      const max = na + f.variadic;
      if (f.variadic > 0 && max < e.args.length) this.fail(`expected at most ${max} argument(s) in call to "${f.name}", got ${e.args.length}`, e.pos);
    }
    e.args.forEach((a, i) => {
      const t = f.argTypes[Math.min(i, nargs - 1)];
      assert(t !== undefined, "argument counts were checked");
      this.expect(a, t, `call to function "${f.name}"`);
    });
  }
}

// ---------------------------------------------------------------------------
// Entry point

function describeError(text: string, from: number): string {
  if (text.trim() === "") return "no expression found in input";
  if (from >= text.length) return "unexpected end of input";
  const fn = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(text.slice(0, from));
  if (fn !== null && text[from] === "(") return `unknown function with name "${fn[1]}"`;
  const tok = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*|\d[\w.]*|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|[=!<>]=|=~|!~|\S)/.exec(text.slice(from));
  const t = tok === null ? text.slice(from, from + 1) : tok[0];
  return `unexpected "${t.slice(0, 40)}"`;
}

/**
 * Parses and type-checks a PromQL expression. Throws PromQLParseError (a
 * BadInputError naming line and column) for anything Prometheus 3.x rejects at
 * parse time, and TooLargeError past PROMQL_CHARS_MAX characters or
 * PROMQL_DEPTH_MAX levels of nesting.
 */
export function parsePromQL(text: string): Expr {
  if (text.length > PROMQL_CHARS_MAX) throw new TooLargeError("query length in characters", PROMQL_CHARS_MAX, { field: "query" });
  const tree = parser.parse(maskForLezer(text));
  let firstError = -1;
  tree.iterate({
    enter(n) {
      if (firstError >= 0) return false;
      if (n.type.isError) {
        firstError = n.from;
        return false;
      }
      return undefined;
    },
  });
  if (firstError >= 0) throw new PromQLParseError(text, { start: firstError, end: firstError }, describeError(text, firstError));
  const top = kids(tree.topNode);
  if (top.length === 0) throw new PromQLParseError(text, { start: 0, end: 0 }, "no expression found in input");
  if (top.length > 1) throw new PromQLParseError(text, { start: top[1]!.from, end: top[1]!.to }, describeError(text, top[1]!.from));
  const b = new Builder(text);
  const e = b.expr(top[0]!);
  new Checker(text).check(e);
  return e;
}

// ---------------------------------------------------------------------------
// Printing (Prometheus's String() forms)

const LEGACY_LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const LEGACY_METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Go's strconv.Quote for the text PromQL deals in. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (c === 7) out += "\\a";
    else if (c === 8) out += "\\b";
    else if (c === 12) out += "\\f";
    else if (c === 10) out += "\\n";
    else if (c === 13) out += "\\r";
    else if (c === 9) out += "\\t";
    else if (c === 11) out += "\\v";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else if (c >= 0xdc80 && c <= 0xdcff) out += `\\x${(c - 0xdc00).toString(16)}`;
    else if (c >= 0x80 && c < 0xa0) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function labelName(n: string): string {
  return LEGACY_LABEL.test(n) ? n : goQuote(n);
}

/** Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent. */
export function formatFloat(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  const s = String(v);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (m === null) return s;
  const digits = m[2]! + (m[3] ?? "");
  const exp = Number(m[4]);
  // JS switches to exponents at 1e21, where 17 significant digits never reach the decimal point.
  if (exp >= 0) return m[1]! + digits.padEnd(exp + 1, "0");
  return `${m[1]}0.${"0".repeat(-exp - 1)}${digits}`;
}

function formatMatcher(m: Matcher): string {
  return `${labelName(m.name)}${m.op}${goQuote(m.value)}`;
}

function formatAt(at: AtModifier): string {
  if (at === null) return "";
  if (at.kind === "start") return " @ start()";
  if (at.kind === "end") return " @ end()";
  return ` @ ${(at.timeMs / 1000).toFixed(3)}`;
}

function formatOffset(ms: number): string {
  return ms === 0 ? "" : ` offset ${formatDurationMs(ms)}`;
}

function formatSelector(v: VectorSelector, withModifiers: boolean): string {
  let name = LEGACY_METRIC.test(v.name) ? v.name : "";
  const parts: string[] = [];
  let skippedName = false;
  for (const m of v.matchers) {
    if (!skippedName && name !== "" && m.name === METRIC_NAME && m.op === "=" && m.value === name) {
      skippedName = true;
      continue;
    }
    parts.push(formatMatcher(m));
  }
  if (!skippedName) name = "";
  parts.sort();
  const mods = withModifiers ? formatAt(v.at) + formatOffset(v.offsetMs) : "";
  return parts.length === 0 ? `${name}${mods}` : `${name}{${parts.join(",")}}${mods}`;
}

/** The canonical text of an expression (Prometheus's String()); parsing it yields the same tree. */
export function formatExpr(e: Expr): string {
  switch (e.kind) {
    case "number":
      return formatFloat(e.value);
    case "string":
      return goQuote(e.value);
    case "vectorSelector":
      return formatSelector(e, true);
    case "matrixSelector":
      return `${formatSelector(e.vector, false)}[${formatDurationMs(e.rangeMs)}]${formatAt(e.vector.at)}${formatOffset(e.vector.offsetMs)}`;
    case "subquery":
      return `${formatExpr(e.expr)}[${formatDurationMs(e.rangeMs)}:${e.stepMs === 0 ? "" : formatDurationMs(e.stepMs)}]${formatAt(e.at)}${formatOffset(e.offsetMs)}`;
    case "paren":
      return `(${formatExpr(e.expr)})`;
    case "unary":
      return `${e.op}${formatExpr(e.expr)}`;
    case "binary": {
      let matching = "";
      const vm = e.matching;
      if (vm !== null && (vm.labels.length > 0 || vm.on)) {
        matching = ` ${vm.on ? "on" : "ignoring"} (${vm.labels.map(labelName).join(", ")})`;
        if (vm.card === "many-to-one" || vm.card === "one-to-many")
          matching += ` group_${vm.card === "many-to-one" ? "left" : "right"} (${vm.include.map(labelName).join(", ")})`;
      }
      return `${formatExpr(e.lhs)} ${e.op}${e.returnBool ? " bool" : ""}${matching} ${formatExpr(e.rhs)}`;
    }
    case "aggregate": {
      let s: string = e.op;
      if (e.without) s += ` without (${e.grouping.map(labelName).join(", ")}) `;
      else if (e.grouping.length > 0) s += ` by (${e.grouping.map(labelName).join(", ")}) `;
      return `${s}(${e.param !== null ? `${formatExpr(e.param)}, ` : ""}${formatExpr(e.expr)})`;
    }
    case "call":
      return `${e.func}(${e.args.map(formatExpr).join(", ")})`;
  }
}
