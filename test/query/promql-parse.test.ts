import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BadInputError, TooLargeError } from "../../src/core/errors.js";
import type { Expr } from "../../src/query/promql/ast.js";
import {
  exprType,
  formatDurationMs,
  formatExpr,
  formatFloat,
  parseDurationMs,
  parsePromQL,
  PromQLParseError,
  PROMQL_CHARS_MAX,
  re2ToJs,
} from "../../src/query/promql/parse.js";
import { parseTestScript, type EvalCommand } from "../../src/query/promql/testscript.js";

// dist/test/query -> repo root -> ../shared (also right when run from test/query with tsx).
const here = dirname(fileURLToPath(import.meta.url));
const repo = here.includes(`${"dist"}`) ? resolve(here, "../../..") : resolve(here, "../..");
const CORPUS = resolve(repo, "../shared/conformance/promql");

function corpusEvals(): { file: string; cmd: EvalCommand }[] {
  const out: { file: string; cmd: EvalCommand }[] = [];
  for (const f of readdirSync(CORPUS).filter((n) => n.endsWith(".test")).sort())
    for (const c of parseTestScript(readFileSync(join(CORPUS, f), "utf8"))) if (c.kind === "eval") out.push({ file: f, cmd: c });
  return out;
}

function parseError(q: string, re?: RegExp): PromQLParseError {
  try {
    parsePromQL(q);
  } catch (e) {
    assert.ok(e instanceof PromQLParseError, `expected PromQLParseError for ${q}, got ${String(e)}`);
    assert.ok(e instanceof BadInputError);
    assert.match(e.message, /^\d+:\d+: parse error: /);
    if (re) assert.match(e.message, re, q);
    return e;
  }
  assert.fail(`expected ${JSON.stringify(q)} to be rejected`);
}

const canon = (q: string): string => formatExpr(parsePromQL(q));

/** The tree without positions and compiled regexes, matchers in printing order: what must survive printing and re-parsing. */
function shape(e: Expr): unknown {
  return JSON.parse(
    JSON.stringify(e, (k, v: unknown) => {
      if (k === "pos" || k === "re") return undefined;
      if (typeof v === "number" && !Number.isFinite(v)) return String(v);
      if (k === "matchers" && Array.isArray(v)) return (v as { name: string; op: string; value: string }[]).map((m) => `${m.name}${m.op}${m.value}`).sort();
      return v;
    }),
  );
}

test("every eval expression of the corpus parses, and formatExpr is a fixpoint on it", () => {
  const evals = corpusEvals();
  assert.ok(evals.length > 1000, `corpus has ${evals.length} evals`);
  let parsed = 0;
  const failures: string[] = [];
  for (const { file, cmd } of evals) {
    const expectsParseError = [cmd.expectedFailMessage ?? "", ...cmd.expects.map((e) => (e.match?.kind === "msg" ? e.match.text : ""))].some((m) => m.includes("parse error"));
    try {
      const e = parsePromQL(cmd.expr);
      parsed++;
      if (expectsParseError) failures.push(`${file}:${cmd.line} parsed but the corpus expects a parse error: ${cmd.expr}`);
      const f = formatExpr(e);
      assert.equal(formatExpr(parsePromQL(f)), f, `${file}:${cmd.line}: ${cmd.expr} -> ${f}`);
      // Same text could still hide a different tree (precedence); compare the trees too.
      assert.deepEqual(shape(parsePromQL(f)), shape(e), `${file}:${cmd.line}: ${cmd.expr} -> ${f}`);
      assert.equal(exprType(parsePromQL(f)), exprType(e));
    } catch (err) {
      if (expectsParseError) {
        assert.ok(err instanceof PromQLParseError && err.location.column !== undefined, `${file}:${cmd.line}`);
        parsed++;
      } else failures.push(`${file}:${cmd.line}: ${cmd.expr}: ${(err as Error).message}`);
    }
  }
  assert.deepEqual(failures, []);
  assert.equal(parsed, evals.length);
});

test("precedence and associativity follow Prometheus", () => {
  const e = parsePromQL("-2^2");
  // The sign binds weaker than ^: -(2^2), not (-2)^2.
  assert.equal(e.kind, "unary");
  assert.equal(canon("-2 ^ 2"), "-2 ^ 2");
  const p = parsePromQL("2 ^ 3 ^ 2");
  assert.ok(p.kind === "binary" && p.rhs.kind === "binary" && p.lhs.kind === "number", "^ is right-associative");
  const s = parsePromQL("1 - 2 - 3");
  assert.ok(s.kind === "binary" && s.lhs.kind === "binary" && s.rhs.kind === "number", "- is left-associative");
  const m = parsePromQL("1 + 2 * 3");
  assert.ok(m.kind === "binary" && m.op === "+" && m.rhs.kind === "binary" && m.rhs.op === "*");
  const o = parsePromQL("a or b and c");
  assert.ok(o.kind === "binary" && o.op === "or" && o.rhs.kind === "binary" && o.rhs.op === "and");
  const cmp = parsePromQL("a + b > bool c");
  assert.ok(cmp.kind === "binary" && cmp.op === ">" && cmp.returnBool && cmp.lhs.kind === "binary");
  assert.equal(parsePromQL("- -1").kind, "number");
  assert.equal(parsePromQL("-metric").kind, "unary");
});

test("postfix modifiers bind to the nearest selector, as in Prometheus", () => {
  const a = parsePromQL("a + b offset 5m");
  assert.ok(a.kind === "binary" && a.lhs.kind === "vectorSelector" && a.lhs.offsetMs === 0);
  assert.ok(a.rhs.kind === "vectorSelector" && a.rhs.offsetMs === 300_000);
  const u = parsePromQL("-metric @ 100");
  assert.ok(u.kind === "unary" && u.expr.kind === "vectorSelector" && u.expr.at?.kind === "time" && u.expr.at.timeMs === 100_000);
  const r = parsePromQL("rate(a[5m]) + rate(b[1m:10s] offset -1m @ end())");
  assert.equal(formatExpr(r), "rate(a[5m]) + rate(b[1m:10s] @ end() offset -1m)");
  // a + (sum(b)[5m:]): the subquery belongs to the right operand, which makes the sum ill-typed.
  const sq = parseError("a + sum(b)[5m:]", /binary expression must contain only scalar and instant vector types/);
  assert.equal(sq.pos.start, 4);
  assert.equal(canon("a + max_over_time(sum(b)[5m:])"), "a + max_over_time(sum(b)[5m:])");
  // lezer reads these as ((a + b) @ 60) * 0; Prometheus as a + ((b @ 60) * 0).
  assert.equal(canon("a + b @ 60 * 0"), "a + b @ 60.000 * 0");
  const rot = parsePromQL("a + b offset 1m * 0");
  assert.ok(rot.kind === "binary" && rot.op === "+" && rot.rhs.kind === "binary" && rot.rhs.op === "*");
  const pow = parsePromQL("a ^ b offset 1m ^ c");
  assert.ok(pow.kind === "binary" && pow.lhs.kind === "vectorSelector" && pow.rhs.kind === "binary", "^ stays right-associative");
  const neg = parsePromQL("-a offset 1m ^ 2");
  assert.ok(neg.kind === "unary" && neg.expr.kind === "binary" && neg.expr.op === "^", "-(a offset 1m ^ 2)");
  const mul = parsePromQL("-a offset 1m * 2");
  assert.ok(mul.kind === "binary" && mul.lhs.kind === "unary", "(-a offset 1m) * 2");
  const cmp = parsePromQL("a or b offset 1m > bool c and d");
  assert.equal(formatExpr(cmp), "a or b offset 1m > bool c and d");
  assert.ok(cmp.kind === "binary" && cmp.op === "or" && cmp.rhs.kind === "binary" && cmp.rhs.op === "and");
  const both = parsePromQL("foo offset 1m @ 2");
  assert.ok(both.kind === "vectorSelector" && both.offsetMs === 60_000 && both.at?.kind === "time" && both.at.timeMs === 2000);
  parseError("foo offset 1m offset 2m", /offset may not be set multiple times/);
  parseError("foo @ 1 @ 2", /@ <timestamp> may not be set multiple times/);
  parseError("foo offset 1m [5m]", /no offset or @ modifiers allowed before range/);
  parseError("(foo)[5m]", /ranges only allowed for vector selectors/);
  parseError("sum(foo) offset 1m", /offset modifier must be preceded by/);
  parseError("foo @ Inf", /timestamp out of bounds/);
});

test("literals: numbers, durations, strings", () => {
  const num = (q: string): number => {
    const e = parsePromQL(q);
    assert.equal(e.kind, "number", q);
    return (e as Extract<Expr, { kind: "number" }>).value;
  };
  assert.equal(num("12.34e6"), 12_340_000);
  assert.equal(num(".2"), 0.2);
  assert.equal(num("2."), 2);
  assert.equal(num("0x1f"), 31);
  assert.equal(num("010"), 8, "Go's ParseInt(s, 0, 64) reads a leading 0 as octal");
  assert.equal(num("1_000"), 1000);
  assert.equal(num("+Inf"), Infinity);
  assert.equal(num("-inF"), -Infinity);
  assert.ok(Number.isNaN(num("nan")));
  assert.equal(num("1m30s"), 90, "a duration as a number counts seconds");
  assert.equal(num("-0.2e-6"), -0.0000002);
  const str = (q: string): string => {
    const e = parsePromQL(q);
    assert.equal(e.kind, "string", q);
    return (e as Extract<Expr, { kind: "string" }>).value;
  };
  assert.equal(str(`"a\\tb\\u00e9\\x41"`), "a\tbéA");
  assert.equal(str("'it\\'s'"), "it's");
  assert.equal(str("`raw\\n`"), "raw\\n");
  // Invalid UTF-8 parses (Prometheus rejects it later, as a label name) and prints back as Go does.
  assert.equal(canon(`count_values("a\\xc5z", version)`), `count_values("a\\xc5z", version)`);
  parseError(`"abc`, /unterminated|unexpected/);
  parseError(`"\\q"`, /unknown escape/);
});

test("selectors: UTF-8 names, matchers, the non-empty rule", () => {
  const s = parsePromQL(`{"a.b"="c", "my.metric"}`);
  assert.ok(s.kind === "vectorSelector");
  assert.equal(s.name, "my.metric");
  assert.deepEqual(
    s.matchers.map((m) => [m.name, m.op, m.value]),
    [["a.b", "=", "c"], ["__name__", "=", "my.metric"]],
  );
  assert.equal(canon(`{"a.b"="c", "my.metric"}`), `{"a.b"="c",__name__="my.metric"}`);
  assert.equal(canon(`foo{b="1", a=~"x|y"}`), `foo{a=~"x|y",b="1"}`);
  assert.equal(canon(`{__name__="foo"}`), "foo");
  parseError(`{a=""}`, /vector selector must contain at least one non-empty matcher/);
  parseError(`{a=~".*"}`, /at least one non-empty matcher/);
  parseError(`foo{__name__="bar"}`, /metric name must not be set twice/);
  parseError(`foo{a=~"("}`, /invalid regular expression/);
  // RE2 flag groups that Node 20's RegExp lacks are translated.
  const ci = parsePromQL(`foo{a=~"(?i:pro).*"}`);
  assert.ok(ci.kind === "vectorSelector" && ci.matchers[1]!.re!.test("PROduction") && !ci.matchers[1]!.re!.test("xpro"));
  assert.equal(re2ToJs("(?i)ab"), "[aA][bB]");
});

test("type checks like Prometheus's checkAST", () => {
  parseError("rate(foo)", /expected type range vector in call to function "rate", got instant vector/);
  parseError("abs(foo[5m])", /expected type instant vector in call to function "abs", got range vector/);
  parseError("foo[5m] + 1", /binary expression must contain only scalar and instant vector types/);
  parseError("sum(foo[5m])", /expected type instant vector in aggregation expression, got range vector/);
  parseError(`topk("a", foo)`, /expected type scalar in aggregation parameter, got string/);
  parseError(`count_values(1, foo)`, /expected type string in aggregation parameter, got scalar/);
  parseError("topk(foo)", /wrong number of arguments for aggregate expression provided, expected 2, got 1/);
  parseError("sum(1, foo)", /expected 1, got 2/);
  parseError("1 > 2", /comparisons between scalars must use BOOL modifier/);
  parseError("foo + bool bar", /bool modifier can only be used on comparison operators/);
  parseError("foo and 1", /set operator "and" not allowed in binary scalar expression/);
  parseError("foo and on(a) group_left bar", /no grouping allowed for "and" operation/);
  parseError("1 + on(a) foo", /vector matching only allowed between instant vectors/);
  const dropped = parsePromQL("1 + on() foo");
  assert.ok(dropped.kind === "binary" && dropped.matching === null, "an empty matching of a scalar operation is dropped");
  parseError("1e400", /value out of range/);
  parseError("foo + on(a) group_left(a) bar", /label "a" must not occur in ON and GROUP clause at once/);
  parseError("-foo[5m]", /unary expression only allowed on expressions of type scalar or instant vector/);
  parseError("(1)[5m:]", /subquery is only allowed on instant vector, got scalar/);
  parseError("clamp(foo, 1)", /expected 3 argument\(s\) in call to "clamp", got 2/);
  parseError("round()", /expected at least 1 argument\(s\) in call to "round", got 0/);
  parseError("round(foo, 1, 2)", /expected at most 2 argument\(s\) in call to "round", got 3/);
  parseError(`label_join(foo, "a")`, /expected at least 3 argument\(s\)/);
  parseError("nosuchfunc(foo)", /unknown function with name "nosuchfunc"/);
  parseError("foo[0s]", /range must be greater than 0/);
  assert.equal(exprType(parsePromQL("1 + 1")), "scalar");
  assert.equal(exprType(parsePromQL("foo + 1")), "vector");
  assert.equal(exprType(parsePromQL("foo[5m]")), "matrix");
  assert.equal(exprType(parsePromQL("rate(foo[5m])[10m:1m]")), "matrix");
  assert.equal(exprType(parsePromQL("scalar(foo)")), "scalar");
  assert.equal(exprType(parsePromQL(`"x"`)), "string");
  assert.equal(exprType(parsePromQL("time()")), "scalar");
  assert.equal(exprType(parsePromQL("min_of(1, 2)")), "scalar");
  // Matching on a set operation without modifiers is implicitly many-to-many.
  const set = parsePromQL("foo and on(a) bar");
  assert.ok(set.kind === "binary" && set.matching?.card === "many-to-many");
});

test("error messages name the position, Prometheus style", () => {
  const e = parseError("sum(rate(foo[5m])) by (job) + rate(bar)");
  assert.match(e.message, /^1:36: parse error: expected type range vector/);
  assert.equal(e.location.column, 36);
  assert.equal(e.pos.start, 35);
  const multi = parseError("foo +\n  rate(bar)");
  assert.match(multi.message, /^2:8: /);
  assert.equal(multi.location.line, 2);
  parseError("", /no expression found in input/);
  parseError("foo +", /unexpected end of input/);
  parseError("foo bar", /^1:5: parse error: unexpected "bar"/);
  parseError("sum(foo", /1:\d+: parse error: /);
  // Columns count bytes, as Go does.
  assert.match(parseError(`{"é"="x"} + rate(a)`).message, /^1:19: /);
});

test("limits: length and nesting depth", () => {
  assert.throws(() => parsePromQL(`foo${" ".repeat(PROMQL_CHARS_MAX)}`), TooLargeError);
  assert.throws(() => parsePromQL(`${"(".repeat(5000)}1${")".repeat(5000)}`), TooLargeError);
  assert.equal(canon(`${"(".repeat(50)}1${")".repeat(50)}`), `${"(".repeat(50)}1${")".repeat(50)}`);
});

test("formatExpr gives Prometheus's canonical String() forms", () => {
  const cases: [string, string][] = [
    ["SUM(http_requests_total) BY (job)", "sum by (job) (http_requests_total)"],
    ["sum without(a,b)(x)", "sum without (a, b) (x)"],
    [`count_values("v", x) by ("a.b")`, `count_values by ("a.b") ("v", x)`],
    ["topk(3, x)", "topk(3, x)"],
    ["a + ignoring(b) group_left(c) d", "a + ignoring (b) group_left (c) d"],
    ["a * on() group_right b", "a * on () group_right () b"],
    ["a > bool 1", "a > bool 1"],
    ["x[5m] offset 1h30m", "x[5m] offset 1h30m"],
    ["x[1w]", "x[1w]"],
    ["x[100]", "x[1m40s]"],
    ["x offset -50", "x offset -50s"],
    ["x @ 1.234", "x @ 1.234"],
    ["x @ start()", "x @ start()"],
    ["rate(x[5m:])", "rate(x[5m:])"],
    ["rate(x[5m:30s] offset 1m)", "rate(x[5m:30s] offset 1m)"],
    ["1e21", "1000000000000000000000"],
    ["1e-7", "0.0000001"],
    ["-Inf", "-Inf"],
    ["NaN", "NaN"],
    [`"a\\"b\\n"`, `"a\\"b\\n"`],
    ["label_replace(x, 'a', 'b', 'c', '(.*)')", `label_replace(x, "a", "b", "c", "(.*)")`],
    ["min_of(1, 2)", "min_of(1, 2)"],
    ["(a + b) * c", "(a + b) * c"],
  ];
  for (const [q, want] of cases) {
    assert.equal(canon(q), want, q);
    assert.equal(canon(want), want, `${want} is a fixpoint`);
  }
  assert.equal(formatFloat(0.1 + 0.2), "0.30000000000000004");
  assert.equal(formatDurationMs(90 * 86_400_000), "90d", "weeks only when exact, as Prometheus");
  assert.equal(formatDurationMs(14 * 86_400_000), "2w");
  assert.equal(formatDurationMs(365 * 86_400_000), "1y");
  assert.equal(parseDurationMs("1h30m"), 5_400_000);
  assert.equal(parseDurationMs("10s53ms"), 10_053);
  assert.equal(parseDurationMs("1.5h"), null);
});
