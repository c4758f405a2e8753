// Prometheus series selectors (the `match[]` parameter of the HTTP API):
// `up`, `{job="node"}`, `node_cpu_seconds_total{mode!="idle",cpu=~"0|1"}`,
// UTF-8 names `{"my.metric", "a.b"="c"}`. Parsed with the official lezer
// grammar (@prometheus-io/lezer-promql), which never throws: error nodes in the
// tree become a BadInputError naming the column and the text around it.
//
// The PromQL engine will grow beside this module (src/query/); this file stays
// the single place where a selector becomes Matcher[].

import { parser } from "@prometheus-io/lezer-promql";
import type { SyntaxNode } from "@lezer/common";
import { BadInputError } from "../core/errors.js";
import { METRIC_NAME } from "../core/labels.js";
import { makeMatcher, selectsSomething, type MatchOp, type Matcher } from "../core/matchers.js";

/** Longest selector accepted (a selector is a query parameter, not a body). */
export const SELECTOR_CHARS_MAX = 64 * 1024;

const OPS: Readonly<Record<string, MatchOp>> = { EqlSingle: "=", Neq: "!=", EqlRegex: "=~", NeqRegex: "!~" };

/** 1-based line and column of a character offset. */
function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function near(text: string, from: number, to: number): string {
  const a = Math.max(0, from - 10);
  const b = Math.min(text.length, Math.max(to, from + 1) + 10);
  return `${a > 0 ? "…" : ""}${text.slice(a, b)}${b < text.length ? "…" : ""}`;
}

class SelectorParse {
  constructor(readonly text: string) {}

  fail(message: string, from: number, to = from): never {
    const { line, column } = position(this.text, from);
    const loc = line > 1 ? { line, column, field: "match[]" } : { column, field: "match[]" };
    throw new BadInputError(`bad series selector: ${message} near \`${near(this.text, from, to)}\``, loc);
  }

  slice(n: SyntaxNode): string {
    return this.text.slice(n.from, n.to);
  }

  /** The unescaped value of a StringLiteral node. */
  str(n: SyntaxNode): string {
    try {
      return unquotePromString(this.slice(n));
    } catch (e) {
      if (e instanceof StringSyntaxError) this.fail(e.message, n.from + e.offset, n.to);
      throw e;
    }
  }
}

/**
 * Parses one series selector into matchers. The metric name, when given,
 * becomes the first matcher (`__name__="..."`). Throws BadInputError with the
 * column for syntax errors, for anything that is not a plain vector selector
 * (functions, ranges, offsets, operators), and for selectors where every
 * matcher matches the empty string (they would select every series).
 */
export function parseSelector(text: string): Matcher[] {
  if (text.length > SELECTOR_CHARS_MAX)
    throw new BadInputError(`series selector is ${text.length} characters long; the limit is ${SELECTOR_CHARS_MAX}`, { field: "match[]" });
  const p: SelectorParse = new SelectorParse(text);
  const tree = parser.parse(text);

  // Any error node anywhere: report the first one.
  let firstError: { from: number; to: number } | null = null;
  tree.iterate({
    enter(n) {
      if (firstError !== null) return false;
      if (n.type.isError) {
        firstError = { from: n.from, to: n.to };
        return false;
      }
      return undefined;
    },
  });
  if (firstError !== null) {
    const { from, to } = firstError as { from: number; to: number };
    if (text.trim() === "") p.fail("empty selector", 0);
    if (from >= text.length) p.fail("unexpected end of input", from);
    p.fail(`unexpected \`${text.slice(from, Math.max(to, from + 1)).slice(0, 40)}\``, from, to);
  }

  const top: SyntaxNode[] = [];
  for (let c = tree.topNode.firstChild; c !== null; c = c.nextSibling) if (c.type.name !== "LineComment") top.push(c);
  if (top.length === 0) p.fail("empty selector", 0);
  const sel = top[0]!;
  if (top.length > 1) p.fail("unexpected text after the selector", top[1]!.from, top[1]!.to);
  if (sel.type.name !== "VectorSelector")
    p.fail(`expected a series selector such as up{job="node"}, got a ${describeNode(sel.type.name)}`, sel.from, sel.to);

  let metric: { value: string; from: number } | null = null;
  const matchers: Matcher[] = [];
  const setMetric = (value: string, from: number, to: number): void => {
    if (metric !== null) p.fail(`metric name must not be set twice: "${metric.value}" or "${value}"`, from, to);
    metric = { value, from };
  };

  for (let c = sel.firstChild; c !== null; c = c.nextSibling) {
    if (c.type.name === "Identifier") {
      setMetric(p.slice(c), c.from, c.to);
      matchers.push(makeMatcher(METRIC_NAME, "=", p.slice(c), loc(p, c)));
    } else if (c.type.name === "LabelMatchers") {
      for (let m = c.firstChild; m !== null; m = m.nextSibling) {
        const kind = m.type.name;
        if (kind === "QuotedLabelName") {
          // A lone quoted string is the metric name: {"my.metric"}.
          const s = m.getChild("StringLiteral");
          if (s === null) p.fail("expected a quoted metric name", m.from, m.to);
          const name = p.str(s);
          if (name === "") p.fail("empty metric name", m.from, m.to);
          setMetric(name, m.from, m.to);
          matchers.push(makeMatcher(METRIC_NAME, "=", name, loc(p, m)));
        } else if (kind === "UnquotedLabelMatcher" || kind === "QuotedLabelMatcher") {
          const nameNode = kind === "UnquotedLabelMatcher" ? m.getChild("LabelName") : m.getChild("QuotedLabelName")?.getChild("StringLiteral") ?? null;
          const opNode = m.getChild("MatchOp")?.firstChild ?? null;
          const valueNode = m.getChild("StringLiteral");
          if (nameNode === null || opNode === null || valueNode === null) p.fail("incomplete label matcher", m.from, m.to);
          const name = kind === "UnquotedLabelMatcher" ? p.slice(nameNode) : p.str(nameNode);
          if (name === "") p.fail("empty label name", m.from, m.to);
          const op = OPS[opNode.type.name];
          if (op === undefined) p.fail(`unknown match operator \`${p.slice(opNode)}\``, opNode.from, opNode.to);
          const value = p.str(valueNode);
          if (name === METRIC_NAME && op === "=") setMetric(value, m.from, m.to);
          matchers.push(makeMatcher(name, op, value, loc(p, m)));
        } else if (kind !== "LineComment") {
          p.fail(`unexpected \`${p.slice(m)}\``, m.from, m.to);
        }
      }
    } else if (c.type.name !== "LineComment") {
      p.fail(`unexpected \`${p.slice(c)}\``, c.from, c.to);
    }
  }

  if (matchers.length === 0 || !selectsSomething(matchers))
    p.fail("vector selector must contain at least one non-empty matcher", sel.from, sel.to);
  return matchers;
}

function loc(p: SelectorParse, n: SyntaxNode): { column: number; field: string } {
  return { column: position(p.text, n.from).column, field: "match[]" };
}

function describeNode(name: string): string {
  switch (name) {
    case "MatrixSelector":
      return "range selector (drop the [duration])";
    case "OffsetExpr":
      return "offset expression";
    case "FunctionCall":
      return "function call";
    case "AggregateExpr":
      return "aggregation";
    case "BinaryExpr":
      return "binary expression";
    case "NumberDurationLiteral":
      return "number";
    case "StringLiteral":
      return "string";
    default:
      return `${name} expression`;
  }
}

/** Raised by unquotePromString; offset is within the literal, quotes included. */
export class StringSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = "StringSyntaxError";
  }
}

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 92 };
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/**
 * Unquotes a PromQL string literal as Prometheus does (util/strutil Unquote,
 * Go's strconv rules): "double" and 'single' quotes take the escapes
 * \a \b \f \n \r \t \v \\, the own quote (\" or \'), \xHH and \OOO (bytes),
 * \uHHHH and \UHHHHHHHH (code points); `backticks` are raw. The result must be
 * valid UTF-8. Throws StringSyntaxError.
 */
export function unquotePromString(lit: string): string {
  if (lit.length < 2) throw new StringSyntaxError("unterminated string", lit.length);
  const q = lit[0]!;
  if ((q !== '"' && q !== "'" && q !== "`") || lit[lit.length - 1] !== q || lit.length < 2)
    throw new StringSyntaxError("unterminated string", lit.length);
  const body = lit.slice(1, -1);
  if (q === "`") {
    if (body.includes("`")) throw new StringSyntaxError("unexpected backtick in raw string", 1 + body.indexOf("`"));
    return body;
  }
  if (!body.includes("\\")) {
    const bad = body.indexOf(q);
    if (bad >= 0) throw new StringSyntaxError("unescaped quote in string", 1 + bad);
    if (body.includes("\n")) throw new StringSyntaxError("newline in string", 1 + body.indexOf("\n"));
    return body;
  }
  const bytes: number[] = [];
  const pushText = (s: string): void => {
    for (const b of utf8.encode(s)) bytes.push(b);
  };
  let i = 0;
  while (i < body.length) {
    const ch = body[i]!;
    if (ch === q) throw new StringSyntaxError("unescaped quote in string", 1 + i);
    if (ch === "\n") throw new StringSyntaxError("newline in string", 1 + i);
    if (ch !== "\\") {
      // Copy a run of plain characters (surrogate pairs stay together).
      let j = i + 1;
      while (j < body.length && body[j] !== "\\" && body[j] !== q && body[j] !== "\n") j++;
      pushText(body.slice(i, j));
      i = j;
      continue;
    }
    const at = 1 + i;
    const e = body[i + 1];
    if (e === undefined) throw new StringSyntaxError("string ends inside an escape", at);
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      bytes.push(simple);
      i += 2;
    } else if (e === q) {
      bytes.push(q.charCodeAt(0));
      i += 2;
    } else if (e === "x") {
      const h = body.slice(i + 2, i + 4);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) throw new StringSyntaxError("\\x must be followed by two hex digits", at);
      bytes.push(parseInt(h, 16));
      i += 4;
    } else if (e >= "0" && e <= "7") {
      const o = body.slice(i + 1, i + 4);
      if (!/^[0-7]{3}$/.test(o)) throw new StringSyntaxError("octal escape must have three digits", at);
      const v = parseInt(o, 8);
      if (v > 255) throw new StringSyntaxError("octal escape value above 255", at);
      bytes.push(v);
      i += 4;
    } else if (e === "u" || e === "U") {
      const n = e === "u" ? 4 : 8;
      const h = body.slice(i + 2, i + 2 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(h)) throw new StringSyntaxError(`\\${e} must be followed by ${n} hex digits`, at);
      const cp = parseInt(h, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new StringSyntaxError(`\\${e}${h} is not a valid code point`, at);
      pushText(String.fromCodePoint(cp));
      i += 2 + n;
    } else {
      throw new StringSyntaxError(`unknown escape sequence \\${e}`, at);
    }
  }
  try {
    return utf8Strict.decode(Uint8Array.from(bytes));
  } catch {
    throw new StringSyntaxError("string is not valid UTF-8", 0);
  }
}

/** Parses every `match[]` value; at least one is required. */
export function parseMatchParams(values: readonly string[]): Matcher[][] {
  if (values.length === 0) throw new BadInputError("no match[] parameter given", { field: "match[]" });
  return values.map((v) => parseSelector(v));
}
