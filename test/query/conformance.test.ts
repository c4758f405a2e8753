import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Labels } from "../../src/core/labels.js";
import type { ValueType } from "../../src/query/promql/ast.js";
import {
  almostEqual,
  atModifierVariants,
  runCorpus,
  runScript,
  type ConformanceEngine,
  type EngineResult,
  type LoadSeries,
} from "../../src/query/promql/conformance.js";
import { parsePromQL } from "../../src/query/promql/parse.js";
import { parseSeriesValues, parseTestScript, type Command } from "../../src/query/promql/testscript.js";
import { isStaleNaN, STALE_NAN, type Sample, type Series } from "../../src/query/promql/value.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = here.includes("dist") ? resolve(here, "../../..") : resolve(here, "../..");
const CORPUS = resolve(repo, "../shared/conformance/promql");

const L = (o: Record<string, string>): Labels => Object.entries(o).sort((a, b) => (a[0] < b[0] ? -1 : 1));

type Answer = (tMs: number) => EngineResult;

/**
 * A stand-in engine: number literals are answered for real (instant: a
 * scalar; range: one series without labels), canned answers by query text,
 * everything else throws like an engine that does not know the query.
 */
class FakeEngine implements ConformanceEngine {
  loaded: LoadSeries[] = [];
  clears = 0;
  calls: string[] = [];
  constructor(readonly answers: Record<string, Answer | Error> = {}) {}
  async load(series: LoadSeries[]): Promise<void> {
    this.loaded.push(...series);
  }
  async clear(): Promise<void> {
    this.loaded = [];
    this.clears++;
  }
  private literal(query: string): number | null {
    try {
      const e = parsePromQL(query);
      return e.kind === "number" ? e.value : null;
    } catch {
      return null;
    }
  }
  async instant(query: string, tMs: number): Promise<EngineResult> {
    this.calls.push(`instant ${query} @${tMs}`);
    const a = this.answers[query];
    if (a instanceof Error) throw a;
    if (a !== undefined) return a(tMs);
    const v = this.literal(query);
    if (v === null) throw new Error(`fake engine cannot evaluate ${query}`);
    return { type: "scalar", result: { tMs, value: v }, warnings: [], infos: [] };
  }
  async range(query: string, startMs: number, endMs: number, stepMs: number): Promise<{ type: "matrix"; result: unknown; warnings: string[]; infos: string[] }> {
    this.calls.push(`range ${query} ${startMs}..${endMs}/${stepMs}`);
    const a = this.answers[`range:${query}`];
    if (a instanceof Error) throw a;
    if (a !== undefined) return a(startMs) as { type: "matrix"; result: unknown; warnings: string[]; infos: string[] };
    const v = this.literal(query);
    if (v === null) throw new Error(`fake engine cannot evaluate ${query} as a range query`);
    const points = [];
    for (let t = startMs; t <= endMs; t += stepMs) points.push({ tMs: t, value: v });
    return { type: "matrix", result: [{ labels: [], points }] satisfies Series[], warnings: [], infos: [] };
  }
}

const vec = (samples: Sample[], warnings: string[] = [], infos: string[] = []): Answer => () => ({ type: "vector" as ValueType, result: samples, warnings, infos });
const NO_RERUNS = { stepInvariantChecks: false };

async function one(script: string, engine: FakeEngine, opts = NO_RERUNS): Promise<{ pass: number; fail: number; skip: number; reasons: string[]; skipReasons: string[] }> {
  const r = await runScript(script, "inline.test", engine, opts);
  return { pass: r.pass, fail: r.fail, skip: r.skip, reasons: r.failures.map((f) => f.reason), skipReasons: [...r.skipReasons.keys()] };
}

test("every corpus file reads without unsupported commands; histograms are the only skips", () => {
  let evals = 0;
  const unsupported: string[] = [];
  const skips = new Map<string, number>();
  let histogramLoads = 0;
  for (const f of readdirSync(CORPUS).filter((n) => n.endsWith(".test")).sort()) {
    const cmds: Command[] = parseTestScript(readFileSync(join(CORPUS, f), "utf8"));
    for (const c of cmds) {
      if (c.kind === "unsupported") unsupported.push(`${f}:${c.line}: ${c.reason}`);
      if (c.kind === "eval") {
        evals++;
        assert.ok(c.line > 0 && c.expr !== "");
        if (c.skip !== null) skips.set(c.skip, (skips.get(c.skip) ?? 0) + 1);
      }
      if (c.kind === "load" && c.unsupported.length > 0) {
        histogramLoads++;
        for (const u of c.unsupported) assert.match(u.reason, /native histograms/);
      }
    }
  }
  assert.deepEqual(unsupported, []);
  assert.ok(evals > 1000, `${evals} evals`);
  assert.deepEqual([...skips.keys()], ["native histograms ({{...}} in expected results)"]);
  assert.ok(histogramLoads > 0);
});

test("series values expand like promqltest", () => {
  const floats = (s: string): (number | string)[] =>
    parseSeriesValues(s).map((v) => (v.kind === "float" ? v.value : v.kind));
  assert.deepEqual(floats("1+2x3"), [1, 3, 5, 7]);
  assert.deepEqual(floats("10-1x2"), [10, 9, 8]);
  assert.deepEqual(floats("5x2"), [5, 5, 5]);
  assert.deepEqual(floats("0x3 1"), [0, 0, 0, 0, 1], "0x3 is 0 repeated, not hex");
  assert.deepEqual(floats("_ _x2 stale Inf -Inf"), ["omitted", "omitted", "omitted", "stale", Infinity, -Infinity]);
  assert.ok(Number.isNaN(floats("NaN")[0] as number));
  assert.deepEqual(floats("{{schema:0 sum:1 count:1}}x2 3").slice(0, 4), ["histogram", "histogram", "histogram", 3]);
  assert.deepEqual(floats("{{sum:2 count:2}}+{{sum:3 count:3}}x1"), ["histogram", "histogram"]);
  assert.throws(() => parseSeriesValues("1x99999999999"), /limit/);
});

test("script commands: load, clear, eval forms and expectations", () => {
  const text = `
# comment
load 1m
  m{a="b"} 1+1x2 _ stale
  {"my.metric", "x.y"="1"} 3

eval instant at 1m m
  expect no_warn
  expect info msg: PromQL info: something (1:1)
  m{a="b"} 2

eval range from 0 to 2m step 1m m
  m{a="b"} 1 2 3

eval_fail instant at 0 foo(
  expected_fail_message something broke

eval instant at 0 bar
  expect fail regex: broke|bent

eval_ordered instant at 0 baz
  {a="1"} 1
  {a="2"} 2

eval instant at 50m "Foo"
  expect string "Foo"

eval instant at 1m m[1m]
  expect range vector from 10s to 1m step 10s
  m{a="b"} 1 2 3 4 5 6

clear
bogus command
`;
  const cmds = parseTestScript(text);
  const kinds = cmds.map((c) => c.kind);
  assert.deepEqual(kinds, ["load", "eval", "eval", "eval", "eval", "eval", "eval", "eval", "clear", "unsupported"]);
  const load = cmds[0]!;
  assert.ok(load.kind === "load" && load.intervalMs === 60_000 && load.line === 3);
  assert.deepEqual(load.series[1]!.labels, L({ __name__: "my.metric", "x.y": "1" }));
  const e1 = cmds[1]!;
  assert.ok(e1.kind === "eval" && e1.atMs === 60_000 && e1.range === null && e1.line === 7);
  assert.deepEqual(e1.expects.map((x) => x.type), ["no_warn", "info"]);
  assert.deepEqual(e1.expectedSeries[0]!.labels, L({ __name__: "m", a: "b" }));
  const e2 = cmds[2]!;
  assert.ok(e2.kind === "eval" && e2.range !== null && e2.range.endMs === 120_000 && e2.range.stepMs === 60_000);
  const e3 = cmds[3]!;
  assert.ok(e3.kind === "eval" && e3.fail && e3.expectedFailMessage === "something broke" && e3.expr === "foo(");
  const e4 = cmds[4]!;
  assert.ok(e4.kind === "eval" && e4.expects[0]!.match?.kind === "regex");
  const e5 = cmds[5]!;
  assert.ok(e5.kind === "eval" && e5.ordered && e5.expectedSeries[1]!.pos === 2);
  const e6 = cmds[6]!;
  assert.ok(e6.kind === "eval" && e6.expectedString === "Foo");
  const e7 = cmds[7]!;
  assert.ok(e7.kind === "eval" && e7.expectRangeVector?.startMs === 10_000);
  const bad = cmds[9]!;
  assert.ok(bad.kind === "unsupported" && bad.line === text.split("\n").indexOf("bogus command") + 1 && /invalid command/.test(bad.reason));
  // An instant eval may not list several values without `expect range vector`.
  const multi = parseTestScript("eval instant at 0 m\n  m 1 2\n");
  assert.equal(multi[0]!.kind, "unsupported");
});

test("the harness passes right answers and fails wrong ones, with the first difference", async () => {
  // Scalars, including the @-modifier and range-mode re-runs promqltest does.
  const lit = new FakeEngine();
  assert.deepEqual(await one("eval instant at 0 1\n  1\n", lit, { stepInvariantChecks: true }), { pass: 1, fail: 0, skip: 0, reasons: [], skipReasons: [] });
  assert.ok(lit.calls.some((c) => c.startsWith("range 1 ")), "instant queries are re-checked in range mode");
  const wrong = await one("eval instant at 0 1\n  2\n", new FakeEngine());
  assert.equal(wrong.fail, 1);
  assert.match(wrong.reasons[0]!, /expected scalar 2 but got 1/);
  // Within promqltest's relative tolerance, NaN equals NaN.
  assert.equal((await one("eval instant at 0 1.0000001\n  1\n", new FakeEngine())).pass, 1);
  assert.equal((await one("eval instant at 0 NaN\n  NaN\n", new FakeEngine())).pass, 1);
  assert.equal((await one("eval instant at 0 1.001\n  1\n", new FakeEngine())).fail, 1);
  // A range query of a literal.
  assert.equal((await one("eval range from 0 to 2m step 1m 3\n  {} 3 3 3\n", new FakeEngine())).pass, 1);
  const shortRange = await one("eval range from 0 to 2m step 1m 3\n  {} 3 3\n", new FakeEngine());
  assert.match(shortRange.reasons[0]!, /expected 2 float points/);

  const a = { labels: L({ __name__: "m", job: "a" }), value: 1 };
  const b = { labels: L({ __name__: "m", job: "b" }), value: 2 };
  const script = 'eval instant at 0 m\n  m{job="a"} 1\n  m{job="b"} 2\n';
  assert.equal((await one(script, new FakeEngine({ m: vec([b, a]) }))).pass, 1, "unordered by default");
  const badValue = await one(script, new FakeEngine({ m: vec([a, { ...b, value: 3 }]) }));
  assert.match(badValue.reasons[0]!, /expected 2 for m\{job="b"\} but got 3/);
  const badLabels = await one(script, new FakeEngine({ m: vec([a, { ...b, labels: L({ __name__: "m", job: "c" }) }]) }));
  assert.match(badLabels.reasons[0]!, /unexpected metric m\{job="c"\} in result/);
  const missing = await one(script, new FakeEngine({ m: vec([a]) }));
  assert.match(missing.reasons[0]!, /expected metric m\{job="b"\} with 2 not found/);
  const extra = await one(script, new FakeEngine({ m: vec([a, b, { labels: L({ job: "x" }), value: 0 }]) }));
  assert.match(extra.reasons[0]!, /unexpected metric \{job="x"\}/);
  const ordered = script.replace("eval instant at 0 m\n", "eval instant at 0 m\n  expect ordered\n");
  assert.equal((await one(ordered, new FakeEngine({ m: vec([a, b]) }))).pass, 1);
  const misordered = await one(ordered, new FakeEngine({ m: vec([b, a]) }));
  assert.match(misordered.reasons[0]!, /at position 2 but was at 1/);
  const legacyOrdered = await one(script.replace("eval ", "eval_ordered "), new FakeEngine({ m: vec([b, a]) }));
  assert.equal(legacyOrdered.fail, 1);
  const scalarForVector = await one("eval instant at 0 m\n  5\n", new FakeEngine({ m: vec([a]) }));
  assert.match(scalarForVector.reasons[0]!, /expected scalar result, but got a vector/);
  const malformed = await one(script, new FakeEngine({ m: () => ({ type: "vector", result: [{ labels: "m", value: 1 }], warnings: [], infos: [] }) }));
  assert.match(malformed.reasons[0]!, /not \{labels, value\}/);

  // Matrices: timestamps on the step grid, omitted points, sorted series.
  const rangeScript = "eval range from 0 to 2m step 1m m\n  m{job=\"a\"} 1 _ 3\n";
  const pts = (...p: [number, number][]): Series => ({ labels: a.labels, points: p.map(([tMs, value]) => ({ tMs, value })) });
  const mat = (s: Series[]): Answer => () => ({ type: "matrix", result: s, warnings: [], infos: [] });
  assert.equal((await one(rangeScript, new FakeEngine({ "range:m": mat([pts([0, 1], [120_000, 3])]) }))).pass, 1);
  const badT = await one(rangeScript, new FakeEngine({ "range:m": mat([pts([0, 1], [60_000, 3])]) }));
  assert.match(badT.reasons[0]!, /to have timestamp 120000, but it had timestamp 60000/);
  const unsorted = await one(
    'eval range from 0 to 0 step 1m m\n  m{job="a"} 1\n  m{job="b"} 2\n',
    new FakeEngine({ "range:m": mat([{ labels: b.labels, points: [{ tMs: 0, value: 2 }] }, { labels: a.labels, points: [{ tMs: 0, value: 1 }] }]) }),
  );
  assert.match(unsorted.reasons[0]!, /should always be sorted by labels/);
});

test("expected failures, annotations and engine errors", async () => {
  const boom = new FakeEngine({ m: new Error('1:1: parse error: unexpected "m"') });
  assert.equal((await one("eval instant at 0 m\n  expect fail\n", boom)).pass, 1, "expect fail is satisfied by a thrown error");
  assert.equal((await one("eval instant at 0 m\n  expect fail msg: 1:1: parse error: unexpected \"m\"\n", boom)).pass, 1);
  assert.equal((await one("eval instant at 0 m\n  expect fail regex: parse error\n", boom)).pass, 1);
  assert.equal((await one("eval_fail instant at 0 m\n", boom)).pass, 1);
  const otherMsg = await one("eval instant at 0 m\n  expect fail msg: something else\n", boom);
  assert.match(otherMsg.reasons[0]!, /expected error matching message "something else"/);
  assert.equal((await one("eval_fail instant at 0 m\n  expected_fail_regexp unexpected \"m\"\n", boom)).pass, 1);
  const noError = await one("eval instant at 0 1\n  expect fail\n", new FakeEngine());
  assert.match(noError.reasons[0]!, /expected error evaluating query but got none/);
  // An engine error where success was expected is a failure, not a crash.
  const thrown = await one("eval instant at 0 m\n  m 1\n", boom);
  assert.equal(thrown.fail, 1);
  assert.match(thrown.reasons[0]!, /error evaluating query: 1:1: parse error/);

  const s = { labels: L({ __name__: "m" }), value: 1 };
  const warned = new FakeEngine({ m: vec([s], ["PromQL warning: careful (1:1)"]) });
  assert.equal((await one("eval instant at 0 m\n  expect warn\n  m 1\n", warned)).pass, 1);
  assert.equal((await one("eval instant at 0 m\n  expect warn msg: PromQL warning: careful (1:1)\n  m 1\n", warned)).pass, 1);
  assert.equal((await one("eval instant at 0 m\n  expect warn msg: PromQL warning: other (1:1)\n  m 1\n", warned)).fail, 1);
  assert.match((await one("eval instant at 0 m\n  expect no_warn\n  m 1\n", warned)).reasons[0]!, /unexpected warning annotations/);
  assert.equal((await one("eval instant at 0 m\n  m 1\n", warned)).pass, 1, "annotations are only checked when asked for");
  assert.match((await one("eval_info instant at 0 m\n  m 1\n", warned)).reasons[0]!, /expected info annotations but got none/);
  const strings = new FakeEngine({ '"Foo"': () => ({ type: "string", result: { tMs: 0, value: "Foo" }, warnings: [], infos: [] }) });
  assert.equal((await one('eval instant at 0 "Foo"\n  expect string "Foo"\n', strings)).pass, 1);
  assert.equal((await one('eval instant at 0 "Foo"\n  expect string "Bar"\n', strings)).fail, 1);
});

test("loads reach the engine expanded; histogram series skip the evals that select them", async () => {
  const e = new FakeEngine({ other: vec([]) });
  const r = await runScript(
    `load 1m
  m{a="b"} 1+1x2 _ stale
  h {{schema:0 sum:1 count:1}} 2

eval instant at 0 h
  h 2

eval instant at 0 other

eval instant at 0 {__name__=~"m|h"}
  m{a="b"} 1

clear

eval instant at 0 h
`,
    "inline.test",
    e,
    NO_RERUNS,
  );
  assert.equal(r.skip, 2);
  assert.deepEqual([...r.skipReasons.keys()], ["native histograms ({{...}} samples)"]);
  assert.equal(r.pass, 1, "an eval that selects no histogram series runs");
  assert.equal(r.fail, 1, "after clear the histogram series are gone, so the eval runs (and the fake engine cannot answer it)");
  assert.equal(e.clears, 2);
  assert.equal(e.loaded.length, 0, "cleared");
  const e2 = new FakeEngine();
  await runScript('load 1m\n  m{a="b"} 1+1x2 _ stale\n  h {{schema:0 sum:1 count:1}} 2\n', "x.test", e2);
  const m = e2.loaded.find((s) => s.labels.some(([n, v]) => n === "__name__" && v === "m"))!;
  assert.deepEqual(m.samples.slice(0, 3), [
    { tMs: 0, value: 1 },
    { tMs: 60_000, value: 2 },
    { tMs: 120_000, value: 3 },
  ]);
  assert.equal(m.samples.length, 4, "the omitted point is not loaded");
  assert.ok(m.samples[3]!.stale === true && m.samples[3]!.tMs === 240_000 && isStaleNaN(m.samples[3]!.value));
  const h = e2.loaded.find((s) => s.labels.some(([, v]) => v === "h"))!;
  assert.deepEqual(h.samples, [{ tMs: 60_000, value: 2 }], "the float samples of a mixed series still load");
});

test("experimental functions can be skipped on request", async () => {
  const script = "eval instant at 0 min_of(1, 2)\n  1\n\neval instant at 0 count(limitk(1, m))\n";
  const r = await runScript(script, "x.test", new FakeEngine(), { skipExperimental: true });
  assert.equal(r.skip, 2);
  assert.deepEqual([...r.skipReasons.keys()], ["experimental function min_of()", "experimental aggregation limitk"]);
  assert.equal((await runScript(script, "x.test", new FakeEngine())).skip, 0, "run by default, as promqltest enables them");
});

test("the @-modifier variants match promqltest", () => {
  assert.deepEqual(atModifierVariants("sum(rate(m[5m]))", 100_000), [
    { expr: "sum(rate(m[5m] @ 100.000))", tMs: -1_000_000 },
    { expr: "sum(rate(m[5m] @ 100.000))", tMs: 0 },
    { expr: "sum(rate(m[5m] @ 100.000))", tMs: 20_000 },
    { expr: "sum(rate(m[5m] @ 100.000))", tMs: 100_000 },
    { expr: "sum(rate(m[5m] @ 100.000))", tMs: 1_000_000 },
  ]);
  assert.deepEqual(atModifierVariants("m @ 50 + n", 0).map((v) => v.expr)[0], "m @ 50.000 + n @ 0.000");
  assert.equal(atModifierVariants("max_over_time(m[1m:10s])", 0)[0]!.expr, "max_over_time(m[1m:10s] @ 0.000)");
  assert.deepEqual(atModifierVariants("time()", 0), [], "time() is not step invariant");
  assert.deepEqual(atModifierVariants("sum(", 0), []);
});

test("almostEqual is Go's almost.Equal", () => {
  assert.ok(almostEqual(1, 1 + 1e-7));
  assert.ok(!almostEqual(1, 1 + 1e-5));
  assert.ok(almostEqual(NaN, NaN));
  assert.ok(!almostEqual(STALE_NAN, NaN));
  assert.ok(almostEqual(STALE_NAN, STALE_NAN));
  assert.ok(!almostEqual(0, 1e-300));
  assert.ok(almostEqual(Infinity, Infinity));
  assert.ok(!almostEqual(Infinity, -Infinity));
});

test("the whole corpus runs against the fake engine without crashing", async () => {
  const r = await runCorpus(CORPUS, () => new FakeEngine());
  assert.equal(r.files.length, readdirSync(CORPUS).filter((n) => n.endsWith(".test")).length);
  assert.equal(r.pass + r.fail + r.skip, r.evals);
  assert.ok(r.evals > 1000);
  // The literal evals (literals.test and friends) pass even on this stand-in.
  const literals = r.files.find((f) => f.file === "literals.test")!;
  assert.ok(literals.pass >= 10, `literals.test: ${literals.pass} passed, first failures ${JSON.stringify(literals.failures.slice(0, 3))}`);
  for (const f of r.files) assert.deepEqual(f.unsupported, [], f.file);
  const reasons = [...r.skipReasons.keys()];
  assert.ok(reasons.every((k) => /native histograms/.test(k)), reasons.join("; "));
  console.log(`corpus: ${r.evals} evals, fake engine: ${r.pass} pass, ${r.fail} fail, ${r.skip} skip; skips: ${JSON.stringify([...r.skipReasons])}`);
});
