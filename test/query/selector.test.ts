import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseSelector, parseMatchParams, unquotePromString, StringSyntaxError } from "../../src/query/selector.js";
import { BadInputError } from "../../src/core/errors.js";
import { matchesLabels, type Matcher } from "../../src/core/matchers.js";

const simple = (ms: Matcher[]): string[] => ms.map((m) => `${m.name}${m.op}${m.value}`);

function badInput(fn: () => unknown, re?: RegExp): BadInputError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof BadInputError, `expected BadInputError, got ${String(e)}`);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail("expected a BadInputError");
}

test("metric name alone", () => {
  assert.deepEqual(simple(parseSelector("up")), ["__name__=up"]);
  assert.deepEqual(simple(parseSelector("  node:cpu_seconds:rate5m  ")), ["__name__=node:cpu_seconds:rate5m"]);
});

test("label matchers, all four operators", () => {
  assert.deepEqual(simple(parseSelector('{job="node"}')), ["job=node"]);
  assert.deepEqual(simple(parseSelector('node_cpu_seconds_total{mode!="idle",cpu=~"0|1",x!~"a.*"}')), [
    "__name__=node_cpu_seconds_total",
    "mode!=idle",
    "cpu=~0|1",
    "x!~a.*",
  ]);
  const ms = parseSelector('node_cpu_seconds_total{mode!="idle",cpu=~"0|1"}');
  assert.ok(matchesLabels(ms, [["__name__", "node_cpu_seconds_total"], ["cpu", "1"], ["mode", "user"]]));
  assert.ok(!matchesLabels(ms, [["__name__", "node_cpu_seconds_total"], ["cpu", "10"], ["mode", "user"]]), "regex is anchored");
  assert.ok(!matchesLabels(ms, [["__name__", "node_cpu_seconds_total"], ["cpu", "1"], ["mode", "idle"]]));
});

test("trailing comma and whitespace", () => {
  assert.deepEqual(simple(parseSelector('up{ job = "a" , }')), ["__name__=up", "job=a"]);
});

test("UTF-8 quoted names", () => {
  assert.deepEqual(simple(parseSelector('{"my.metric", a="b"}')), ["__name__=my.metric", "a=b"]);
  assert.deepEqual(simple(parseSelector('{"a.b"="c"}')), ["a.b=c"]);
  assert.deepEqual(simple(parseSelector(`{'température'=~"h.*", "x"}`)), ["température=~h.*", "__name__=x"]);
});

test("string literal unescaping: double, single, backtick", () => {
  assert.deepEqual(simple(parseSelector(String.raw`{a="x\ny\t\"q\"\\"}`)), ['a=x\ny\t"q"\\']);
  assert.deepEqual(simple(parseSelector(String.raw`{a='it\'s'}`)), ["a=it's"]);
  assert.deepEqual(simple(parseSelector("{a=`raw\\n\"`}")), ['a=raw\\n"']);
  assert.equal(unquotePromString(String.raw`"\x41\101\u00e9\U0001F600"`), "AAé😀");
  assert.equal(unquotePromString(String.raw`"\xc3\xa9"`), "é", "byte escapes assemble UTF-8");
  assert.equal(unquotePromString(`"日本"`), "日本");
  assert.equal(unquotePromString("``"), "");
  assert.equal(unquotePromString(String.raw`"\a\b\f\r\v"`), "\x07\b\f\r\v");
});

test("bad escapes are rejected with a position", () => {
  assert.throws(() => unquotePromString(String.raw`"\'"`), StringSyntaxError, "\\' is not valid in double quotes");
  assert.throws(() => unquotePromString(String.raw`'\"'`), StringSyntaxError);
  assert.throws(() => unquotePromString(String.raw`"\q"`), StringSyntaxError);
  assert.throws(() => unquotePromString(String.raw`"\xff"`), StringSyntaxError, "invalid UTF-8");
  assert.throws(() => unquotePromString(String.raw`"\ud800"`), StringSyntaxError);
  assert.throws(() => unquotePromString(String.raw`"\400"`), StringSyntaxError);
  assert.throws(() => unquotePromString(String.raw`"\12"`), StringSyntaxError);
  assert.throws(() => unquotePromString(`"abc`), StringSyntaxError);
  const e = badInput(() => parseSelector(String.raw`up{a="x\qy"}`), /unknown escape/);
  assert.equal((e.details as { column?: number }).column, 8);
});

test("syntax errors name the column and the text around it", () => {
  const e1 = badInput(() => parseSelector('up{a=}'), /column 6/);
  assert.match(e1.message, /up\{a=\}/);
  badInput(() => parseSelector('up{a="b"'), /end of input/);
  badInput(() => parseSelector('{a="b}'), /column/);
  badInput(() => parseSelector("foo bar"), /column 5.*bar/);
  badInput(() => parseSelector(""), /empty selector/);
  badInput(() => parseSelector("   "), /empty selector/);
  badInput(() => parseSelector("offset"), /column 1/);
  const e2 = badInput(() => parseSelector('up{a="b",\n  c=}'), /line 2, column 5/);
  assert.equal((e2.details as { line?: number }).line, 2);
});

test("only plain vector selectors", () => {
  badInput(() => parseSelector('{a=~"x"}[5m]'), /range selector/);
  badInput(() => parseSelector("rate(x[5m])"), /function call/);
  badInput(() => parseSelector("up offset 5m"), /offset/);
  badInput(() => parseSelector("a or b"), /binary/);
  badInput(() => parseSelector("sum(up)"), /aggregation/);
  badInput(() => parseSelector("1"), /number/);
});

test("selectors matching the empty string are rejected, like Prometheus", () => {
  badInput(() => parseSelector("{}"), /non-empty matcher/);
  badInput(() => parseSelector('{a=""}'), /non-empty matcher/);
  badInput(() => parseSelector('{a=~".*"}'), /non-empty matcher/);
  badInput(() => parseSelector('{a!="x"}'), /non-empty matcher/);
  assert.equal(parseSelector('{a=~".+"}').length, 1);
  assert.equal(parseSelector('{a=~".*",b="x"}').length, 2);
});

test("metric name set twice", () => {
  badInput(() => parseSelector('foo{__name__="bar"}'), /twice/);
  badInput(() => parseSelector('{"a", "b"}'), /twice/);
  badInput(() => parseSelector('foo{"bar"}'), /twice/);
  assert.deepEqual(simple(parseSelector('foo{__name__=~"f.*"}')), ["__name__=foo", "__name__=~f.*"]);
});

test("bad regex is bad input", () => {
  badInput(() => parseSelector('{a=~"("}'), /regular expression/);
});

test("parseMatchParams needs one or more", () => {
  badInput(() => parseMatchParams([]), /match\[\]/);
  assert.equal(parseMatchParams(["up", '{job="x"}']).length, 2);
});

test("property: any label value round-trips through a double-quoted literal", () => {
  const esc = (s: string): string =>
    s.replace(/[\\"\n\r\t]/g, (c) => ({ "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t" })[c]!);
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }), (v) => {
      const ms = parseSelector(`{l="${esc(v)}"}`);
      assert.equal(ms.length, 1);
      assert.equal(ms[0]!.value, v);
    }),
    { numRuns: 300 },
  );
});

test("property: the parser never throws anything but BadInputError", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      try {
        parseSelector(s);
      } catch (e) {
        assert.ok(e instanceof BadInputError, `${JSON.stringify(s)}: ${String(e)}`);
      }
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.array(fc.constantFrom("up", "{", "}", "a", "=", "!=", "=~", '"x"', "'y'", ",", "`z`", " ", "\\", '"'), { maxLength: 12 }), (parts) => {
      try {
        parseSelector(parts.join(""));
      } catch (e) {
        assert.ok(e instanceof BadInputError, `${JSON.stringify(parts.join(""))}: ${String(e)}`);
      }
    }),
    { numRuns: 2000 },
  );
});
