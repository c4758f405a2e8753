// The PromQL evaluator against an in-memory SeriesSource; queries are parsed
// with parse.ts. Expected numbers come from Prometheus 3's promqltest corpus
// (../shared/conformance/promql) where the case is taken from there.

import { test } from "node:test";
import assert from "node:assert/strict";
import { matchesLabels, type Matcher } from "../../src/core/matchers.js";
import type { Labels } from "../../src/core/labels.js";
import { mulberry32 } from "../../src/core/prng.js";
import { Evaluator, type SeriesSource } from "../../src/query/promql/eval.js";
import { parsePromQL } from "../../src/query/promql/parse.js";
import type { Value } from "../../src/query/promql/value.js";

const S = 1000;
const M = 60 * S;

/** Prometheus's stale marker, written through the float array's bytes so no register quiets it. */
function writeStale(values: Float64Array, i: number): void {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length * 2);
  words[2 * i] = 0x00000002;
  words[2 * i + 1] = 0x7ff00000;
}

type Point = number | "stale" | null;

class MemorySource implements SeriesSource {
  readonly series: { labels: Labels; tMs: number[]; values: Point[] }[] = [];
  selects = 0;

  /** `values[i]` is at `i * stepMs`; null leaves a gap. */
  load(text: string, stepMs: number, values: Point[]): void {
    const e = parsePromQL(text);
    assert.equal(e.kind, "vectorSelector");
    if (e.kind !== "vectorSelector") return;
    const labels = e.matchers.map((m) => [m.name, m.value] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const tMs: number[] = [];
    const vs: Point[] = [];
    values.forEach((v, i) => {
      if (v === null) return;
      tMs.push(i * stepMs);
      vs.push(v);
    });
    this.series.push({ labels, tMs, values: vs });
  }

  async select(matchers: Matcher[], startMs: number, endMs: number): Promise<{ labels: Labels; tMs: Float64Array; values: Float64Array }[]> {
    this.selects++;
    const out = [];
    for (const s of this.series) {
      if (!matchesLabels(matchers, s.labels)) continue;
      const idx = s.tMs.map((t, i) => [t, i] as const).filter(([t]) => t >= startMs && t <= endMs);
      if (idx.length === 0) continue;
      const values = new Float64Array(idx.length);
      idx.forEach(([, i], j) => {
        const v = s.values[i]!;
        if (v === "stale") writeStale(values, j);
        else values[j] = v as number;
      });
      out.push({ labels: s.labels, tMs: new Float64Array(idx.map(([t]) => t)), values });
    }
    return out;
  }
}

/** a+b*i for i in 0..n, as promqltest's `a+bxn`. */
function series(a: number, b: number, n: number): number[] {
  return Array.from({ length: n + 1 }, (_, i) => a + b * i);
}

function labelsText(labels: Labels): string {
  return `{${labels.map(([n, v]) => `${n}="${v}"`).join(",")}}`;
}

/** An instant vector as "labels => value" lines, sorted, for order-free comparison. */
function vectorLines(v: Value): string[] {
  assert.equal(v.type, "vector");
  if (v.type !== "vector") return [];
  return v.result.map((s) => `${labelsText(s.labels)} ${s.value}`).sort();
}

async function instant(src: SeriesSource, query: string, tMs: number) {
  return new Evaluator(src).instant(parsePromQL(query), tMs, query);
}

async function vec(src: SeriesSource, query: string, tMs: number): Promise<string[]> {
  return vectorLines((await instant(src, query, tMs)).value);
}

function approx(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);
}

test("lookback delta and stale markers (staleness.test)", async () => {
  const src = new MemorySource();
  src.load("metric", 10 * S, [0, 1, "stale", 2]);
  assert.deepEqual(await vec(src, "metric", 10 * S), ['{__name__="metric"} 1']);
  assert.deepEqual(await vec(src, "metric", 20 * S), [], "a stale marker as newest sample hides the series");
  assert.deepEqual(await vec(src, "metric", 30 * S), ['{__name__="metric"} 2']);
  assert.deepEqual(await vec(src, "metric", 329 * S), ['{__name__="metric"} 2']);
  assert.deepEqual(await vec(src, "metric", 330 * S), [], "the lookback window is left-open");
  assert.deepEqual(await vec(src, "count_over_time(metric[1m])", 30 * S), ["{} 3"], "range windows skip stale markers");
  assert.deepEqual(await vec(src, "count_over_time(metric[20s])", 20 * S), ["{} 1"], "range windows are left-open");
});

test("rate, increase and delta extrapolate as Prometheus 3 (functions.test)", async () => {
  const src = new MemorySource();
  src.load('http_requests_total{path="/foo"}', 5 * M, series(0, 10, 10));
  src.load('http_requests_total{path="/bar"}', 5 * M, [...series(0, 18, 5), ...series(0, 18, 5)]);
  src.load('http_requests_total{path="/dings"}', 5 * M, series(10, 10, 10));
  src.load('http_requests_total{path="/bumms"}', 5 * M, series(1, 10, 10));
  assert.deepEqual(await vec(src, "increase(http_requests_total[50m])", 50 * M), ['{path="/bar"} 160', '{path="/bumms"} 100', '{path="/dings"} 100', '{path="/foo"} 100']);
  const wide = await instant(src, "increase(http_requests_total[100m])", 50 * M);
  const got = new Map(wide.value.type === "vector" ? wide.value.result.map((s) => [s.labels[0]![1], s.value]) : []);
  approx(got.get("/foo")!, 100, "foo");
  approx(got.get("/bar")!, 162, "bar");
  approx(got.get("/dings")!, 105, "dings: extrapolated by half an interval");
  approx(got.get("/bumms")!, 101, "bumms: extrapolation stops at zero");

  const c = new MemorySource();
  c.load("testcounter_reset_middle_total", 5 * M, [...series(0, 27, 4), ...series(0, 27, 5)]);
  c.load("calculate_rate_window_total", 5 * M, series(0, 80, 10));
  c.load("gauge", 5 * M, series(0, 10, 10));
  assert.deepEqual(await vec(c, "rate(testcounter_reset_middle_total[50m])", 50 * M), ["{} 0.08"]);
  const window = await instant(c, "rate(calculate_rate_window_total[50m])", 50 * M);
  approx(window.value.type === "vector" ? window.value.result[0]!.value : NaN, 0.26666666666666666, "rate over the whole window");
  const d = await instant(c, "delta(gauge[50m])", 50 * M);
  assert.deepEqual(vectorLines(d.value), ["{} 100"]);
  assert.deepEqual(d.infos, [], "delta is not a counter function");

  const r = await instant(c, "rate(gauge[50m])", 50 * M);
  assert.deepEqual(r.infos, ['PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "gauge" (1:6)']);
});

test("irate, idelta, deriv, predict_linear, changes, resets", async () => {
  const src = new MemorySource();
  src.load("c_total", 1 * M, [0, 10, 20, 5, 15]);
  assert.deepEqual(await vec(src, "irate(c_total[5m])", 4 * M), ["{} 0.16666666666666666"]);
  assert.deepEqual(await vec(src, "idelta(c_total[5m])", 4 * M), ["{} 10"]);
  assert.deepEqual(await vec(src, "resets(c_total[5m])", 4 * M), ["{} 1"]);
  assert.deepEqual(await vec(src, "changes(c_total[5m])", 4 * M), ["{} 4"]);
  const lin = new MemorySource();
  lin.load("g", 1 * M, series(0, 60, 10));
  assert.deepEqual(await vec(lin, "deriv(g[10m])", 10 * M), ["{} 1"]);
  assert.deepEqual(await vec(lin, "predict_linear(g[10m], 60)", 10 * M), ["{} 660"]);
});

test("offset and @ (at_modifier.test semantics)", async () => {
  const src = new MemorySource();
  src.load("metric", 10 * S, series(0, 1, 100));
  assert.deepEqual(await vec(src, "metric offset 1m", 100 * S), ['{__name__="metric"} 4']);
  assert.deepEqual(await vec(src, "metric @ 50", 1000 * S), ['{__name__="metric"} 5']);
  assert.deepEqual(await vec(src, "metric @ 100 offset 50s", 10 * S), ['{__name__="metric"} 5']);
  assert.deepEqual(await vec(src, "sum_over_time(metric[20s] @ 100)", 0), ["{} 19"]);
  assert.deepEqual(await vec(src, "timestamp(metric offset 15s)", 100 * S), ["{} 80"], "timestamp() reads the sample's own time");
  const r = await new Evaluator(src).range(parsePromQL("metric @ start()"), 20 * S, 40 * S, 10 * S);
  assert.deepEqual(r.value[0]!.points.map((p) => p.value), [2, 2, 2]);
  const e = await new Evaluator(src).range(parsePromQL("metric @ end()"), 20 * S, 40 * S, 10 * S);
  assert.deepEqual(e.value[0]!.points.map((p) => p.value), [4, 4, 4]);
});

test("subqueries align inner steps to absolute multiples of the step (subquery.test)", async () => {
  const src = new MemorySource();
  src.load("metric", 10 * S, series(1, 1, 100));
  // Inner steps at 10s, 20s, 30s (multiples of 10s in (5s, 35s]): values 2, 3, 4.
  assert.deepEqual(await vec(src, "sum_over_time(metric[30s:10s])", 35 * S), ["{} 9"]);
  assert.deepEqual(await vec(src, "count_over_time(metric[30s:10s])", 30 * S), ["{} 3"], "left-open: 0s is out, 30s is in");
  // Window (20s, 80s]: inner steps 40s, 60s, 80s.
  assert.deepEqual(await vec(src, "max_over_time(metric[1m:20s] offset 20s)", 100 * S), ["{} 9"]);
  assert.deepEqual(await vec(src, "rate(metric[1m:10s])", 100 * S), ["{} 0.1"]);
  // The default step is 1m.
  assert.deepEqual(await vec(src, "count_over_time(metric[5m:])", 5 * M), ["{} 5"]);
});

test("range queries fetch each selector once and evaluate per step", async () => {
  const src = new MemorySource();
  src.load('m{a="x"}', 10 * S, series(0, 1, 100));
  src.load('m{a="y"}', 10 * S, series(0, 2, 100));
  const ev = new Evaluator(src);
  const r = await ev.range(parsePromQL("sum(rate(m[30s])) + sum_over_time(m[20s:10s])"), 0, 200 * S, 50 * S);
  assert.equal(src.selects, 2, "one select per selector node, whatever the number of steps");
  assert.equal(r.value.length, 0, "the vector–vector + matches nothing: sum() has no labels, the other side has");
  const s = await ev.range(parsePromQL("m * 2"), 5 * S, 25 * S, 10 * S);
  assert.deepEqual(
    s.value.map((x) => [labelsText(x.labels), x.points.map((p) => [p.tMs, p.value])]),
    [
      ['{a="x"}', [[5 * S, 0], [15 * S, 2], [25 * S, 4]]],
      ['{a="y"}', [[5 * S, 0], [15 * S, 4], [25 * S, 8]]],
    ],
  );
  const sc = await ev.range(parsePromQL("time()"), 0, 120 * S, 60 * S);
  assert.deepEqual(sc.value.map((x) => [x.labels, x.points.map((p) => p.value)]), [[[], [0, 60, 120]]]);
  const w = await ev.range(parsePromQL("sort(m)"), 0, 10 * S, 10 * S, "sort(m)");
  assert.deepEqual(w.warnings, ["PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"]);
});

test("binary operators: matching, group_left, bool, filters, set operators", async () => {
  const src = new MemorySource();
  src.load('req{job="a",instance="1"}', M, [10]);
  src.load('req{job="a",instance="2"}', M, [20]);
  src.load('req{job="b",instance="1"}', M, [30]);
  src.load('limit{job="a",team="x"}', M, [15]);
  src.load('limit{job="b",team="y"}', M, [100]);
  assert.deepEqual(await vec(src, "req / on(job) group_left(team) limit", 0), [
    '{instance="1",job="a",team="x"} 0.6666666666666666',
    '{instance="1",job="b",team="y"} 0.3',
    '{instance="2",job="a",team="x"} 1.3333333333333333',
  ]);
  assert.deepEqual(await vec(src, "req > on(job) group_left limit", 0), ['{__name__="req",instance="2",job="a"} 20'], "a comparison filter keeps the name and the lhs value");
  assert.deepEqual(await vec(src, "limit < bool on(job) group_right req", 0), [
    '{instance="1",job="a"} 0',
    '{instance="1",job="b"} 0',
    '{instance="2",job="a"} 1',
  ]);
  await assert.rejects(instant(src, "req / on(job) limit", 0), /multiple matches for labels: many-to-one matching must be explicit/);
  await assert.rejects(instant(src, "limit / on(job) group_left req", 0), /found duplicate series for the match group \{job="a"\} on the right hand-side/);
  assert.deepEqual(await vec(src, "req > 15", 0), ['{__name__="req",instance="1",job="b"} 30', '{__name__="req",instance="2",job="a"} 20']);
  assert.deepEqual(await vec(src, "15 < req", 0), ['{__name__="req",instance="1",job="b"} 30', '{__name__="req",instance="2",job="a"} 20'], "the vector's value even with the scalar on the left");
  assert.deepEqual(await vec(src, "req == bool 10", 0), ['{instance="1",job="a"} 1', '{instance="1",job="b"} 0', '{instance="2",job="a"} 0']);
  assert.deepEqual(await vec(src, 'req and on(job) limit{team="x"}', 0), ['{__name__="req",instance="1",job="a"} 10', '{__name__="req",instance="2",job="a"} 20']);
  assert.deepEqual(await vec(src, 'req unless on(job) limit{team="x"}', 0), ['{__name__="req",instance="1",job="b"} 30']);
  assert.deepEqual((await vec(src, 'req{job="b"} or limit', 0)).length, 3);
  const sc = await instant(src, "2 ^ 3 % 5", 0);
  assert.deepEqual(sc.value, { type: "scalar", result: { tMs: 0, value: 3 } });
  const a2 = await instant(src, "0 atan2 -1", 0);
  assert.deepEqual(a2.value, { type: "scalar", result: { tMs: 0, value: Math.PI } });
  assert.deepEqual(await vec(src, 'req{job="b"} atan2 on(job) limit', 0), ['{job="b"} 0.2914567944778671']);
  assert.deepEqual(await vec(src, 'req{job="b"} % 7', 0), ['{instance="1",job="b"} 2']);
  assert.deepEqual(await vec(src, "-req{job=\"b\"}", 0), ['{instance="1",job="b"} -30'], "unary minus drops the name");
});

test("duplicate output label sets are an error (collision.test)", async () => {
  const src = new MemorySource();
  src.load('testmetric1{src="a",dst="b"}', 5 * M, [0]);
  src.load('testmetric2{src="a",dst="b"}', 5 * M, [1]);
  await assert.rejects(instant(src, "ceil({__name__=~'testmetric1|testmetric2'})", 0), /vector cannot contain metrics with the same labelset/);
  assert.deepEqual((await vec(src, "last_over_time({__name__=~'testmetric1|testmetric2'}[1m])", 0)).length, 2, "last_over_time keeps the name");
});

test("aggregations", async () => {
  const src = new MemorySource();
  const load = (job: string, instance: string, group: string, v: number): void => src.load(`http_requests{job="${job}",instance="${instance}",group="${group}"}`, M, [v]);
  load("api", "0", "production", 100);
  load("api", "1", "production", 200);
  load("api", "0", "canary", 300);
  load("app", "0", "production", 500);
  load("app", "1", "production", 600);
  load("app", "0", "canary", 700);
  load("app", "1", "canary", 800);
  const at = (q: string): Promise<string[]> => vec(src, q, 0);
  assert.deepEqual(await at("sum by (job) (http_requests)"), ['{job="api"} 600', '{job="app"} 2600']);
  assert.deepEqual(await at("sum without (instance, group) (http_requests)"), ['{job="api"} 600', '{job="app"} 2600']);
  assert.deepEqual(await at("avg by (group) (http_requests)"), ['{group="canary"} 600', '{group="production"} 350']);
  assert.deepEqual(await at("min(http_requests)"), ["{} 100"]);
  assert.deepEqual(await at("max by (job) (http_requests)"), ['{job="api"} 300', '{job="app"} 800']);
  assert.deepEqual(await at("count(http_requests)"), ["{} 7"]);
  assert.deepEqual(await at("group by (job) (http_requests)"), ['{job="api"} 1', '{job="app"} 1']);
  assert.deepEqual(await at('stddev(http_requests{job="api"})'), ["{} 81.64965809277261"]);
  assert.deepEqual(await at('stdvar(http_requests{job="api"})'), ["{} 6666.666666666667"]);
  assert.deepEqual(await at("quantile(0.5, http_requests)"), ["{} 500"]);
  assert.deepEqual(await at("quantile by (job) (0.25, http_requests)"), ['{job="api"} 150', '{job="app"} 575']);
  assert.deepEqual(await at("topk(2, http_requests)"), [
    '{__name__="http_requests",group="canary",instance="0",job="app"} 700',
    '{__name__="http_requests",group="canary",instance="1",job="app"} 800',
  ]);
  const ordered = await instant(src, "bottomk by (job) (1, http_requests)", 0);
  assert.deepEqual(vectorLines(ordered.value), [
    '{__name__="http_requests",group="production",instance="0",job="api"} 100',
    '{__name__="http_requests",group="production",instance="0",job="app"} 500',
  ]);
  assert.equal((await at("limitk(3, http_requests)")).length, 3);
  assert.equal((await at("limit_ratio(1, http_requests)")).length, 7);
  const half = (await at("limit_ratio(0.5, http_requests)")).length;
  const other = (await at("limit_ratio(-0.5, http_requests)")).length;
  assert.equal(half + other, 7, "limit_ratio(r) and limit_ratio(r - 1) are complements");
  assert.deepEqual(await at('count_values("value", http_requests{job="api"} > 150)'), ['{value="200"} 1', '{value="300"} 1']);
  assert.deepEqual(await at('count_values by (group) ("v", http_requests{job="app"} * 0)'), ['{group="canary",v="0"} 2', '{group="production",v="0"} 2']);
  await assert.rejects(instant(src, "topk(NaN, http_requests)", 0), /Parameter value is NaN/);
  const w = await instant(src, "quantile(1.5, http_requests)", 0);
  assert.deepEqual(vectorLines(w.value), ["{} Infinity"]);
  assert.equal(w.warnings.length, 1);
});

test("sum and avg use Kahan summation like Prometheus 3 (aggregators.test)", async () => {
  const src = new MemorySource();
  src.load('data{test="ten",point="a"}', M, [2]);
  src.load('data{test="ten",point="b"}', M, [8]);
  src.load('data{test="ten",point="c"}', M, [1e100]);
  src.load('data{test="ten",point="d"}', M, [-1e100]);
  assert.deepEqual(await vec(src, "sum(data)", 0), ["{} 10"]);
  assert.deepEqual(await vec(src, "avg(data)", 0), ["{} 2.5"]);
  const big = new MemorySource();
  big.load('d{p="a"}', M, [1.7976931348623157e308]);
  big.load('d{p="b"}', M, [1.7976931348623157e308]);
  assert.deepEqual(await vec(big, "avg(d)", 0), ["{} 1.7976931348623157e+308"], "avg switches to an incremental mean instead of overflowing");
});

test("histogram_quantile over classic buckets", async () => {
  const src = new MemorySource();
  src.load('h_bucket{le="1",job="a"}', M, [10]);
  src.load('h_bucket{le="2",job="a"}', M, [20]);
  src.load('h_bucket{le="+Inf",job="a"}', M, [20]);
  assert.deepEqual(await vec(src, "histogram_quantile(0.5, h_bucket)", 0), ['{job="a"} 1']);
  assert.deepEqual(await vec(src, "histogram_quantile(0.75, h_bucket)", 0), ['{job="a"} 1.5']);
  assert.deepEqual(await vec(src, "histogram_quantile(1, h_bucket)", 0), ['{job="a"} 2']);
  const out = await instant(src, "histogram_quantile(1.5, h_bucket)", 0);
  assert.deepEqual(vectorLines(out.value), ['{job="a"} Infinity']);
  assert.match(out.warnings[0]!, /quantile value should be between 0 and 1, got 1.5/);

  const bad = new MemorySource();
  bad.load('h_bucket{le="1"}', M, [10]);
  bad.load('h_bucket{le="2"}', M, [8]);
  bad.load('h_bucket{le="+Inf"}', M, [20]);
  bad.load('h_bucket{le="x"}', M, [1]);
  const r = await instant(bad, "histogram_quantile(0.5, h_bucket)", 0);
  assert.deepEqual(vectorLines(r.value), ["{} 1"]);
  assert.match(r.infos[0]!, /input to histogram_quantile needed to be fixed for monotonicity/);
  assert.match(r.warnings[0]!, /bucket label "le" is missing or has a malformed value of "x"/);
  const none = new MemorySource();
  none.load('h_bucket{le="1"}', M, [10]);
  assert.deepEqual(await vec(none, "histogram_quantile(0.5, h_bucket)", 0), ["{} NaN"], "no +Inf bucket");
});

test("label_replace, label_join, sort, sort_by_label", async () => {
  const src = new MemorySource();
  src.load('testmetric{src="source-value-10",dst="original-destination-value"}', M, [0]);
  src.load('testmetric{src="source-value-20",dst="original-destination-value"}', M, [1]);
  assert.deepEqual(await vec(src, 'label_replace(testmetric, "dst", "destination-value-$1", "src", "source-value-(.*)")', 0), [
    '{__name__="testmetric",dst="destination-value-10",src="source-value-10"} 0',
    '{__name__="testmetric",dst="destination-value-20",src="source-value-20"} 1',
  ]);
  assert.deepEqual(await vec(src, 'label_replace(testmetric, "dst", "${1}x$$", "src", "source-value-(?P<n>.*)")', 0), [
    '{__name__="testmetric",dst="10x$",src="source-value-10"} 0',
    '{__name__="testmetric",dst="20x$",src="source-value-20"} 1',
  ]);
  assert.deepEqual(await vec(src, 'label_replace(testmetric, "dst", "", "dst", ".*")', 0), [
    '{__name__="testmetric",src="source-value-10"} 0',
    '{__name__="testmetric",src="source-value-20"} 1',
  ], "an empty value deletes the label");
  assert.deepEqual(await vec(src, 'label_replace(testmetric, "dst", "x", "src", "nomatch")', 0).then((l) => l.length), 2);
  await assert.rejects(instant(src, 'label_replace(testmetric, "dst", "x", "src", "(.*")', 0), /invalid regular expression/);
  await assert.rejects(instant(src, 'label_replace(testmetric, "src", "x", "src", ".*")', 0), /same labelset/);
  assert.deepEqual(await vec(src, 'label_join(testmetric, "j", "-", "src", "dst")', 0), [
    '{__name__="testmetric",dst="original-destination-value",j="source-value-10-original-destination-value",src="source-value-10"} 0',
    '{__name__="testmetric",dst="original-destination-value",j="source-value-20-original-destination-value",src="source-value-20"} 1',
  ]);

  const s = new MemorySource();
  s.load('m{i="10"}', M, [3]);
  s.load('m{i="9"}', M, [NaN]);
  s.load('m{i="2"}', M, [1]);
  const order = async (q: string): Promise<string[]> => {
    const r = await instant(s, q, 0);
    return r.value.type === "vector" ? r.value.result.map((x) => x.labels[1]![1]) : [];
  };
  assert.deepEqual(await order("sort(m)"), ["2", "10", "9"], "NaN last");
  assert.deepEqual(await order("sort_desc(m)"), ["10", "2", "9"], "NaN last");
  assert.deepEqual(await order('sort_by_label(m, "i")'), ["2", "9", "10"], "natural order");
  assert.deepEqual(await order('sort_by_label_desc(m, "i")'), ["10", "9", "2"]);
});

test("absent, *_over_time, math and date functions", async () => {
  const src = new MemorySource();
  src.load('m{job="a"}', 10 * S, [2, 0, 3]);
  const at = (q: string, tMs = 20 * S): Promise<string[]> => vec(src, q, tMs);
  assert.deepEqual(await at('absent(nope{job="x",job="y",a="b"})'), ['{a="b"} 1']);
  assert.deepEqual(await at("absent(m)"), []);
  assert.deepEqual(await at('absent_over_time(nope{a="b"}[1m])'), ['{a="b"} 1']);
  assert.deepEqual(await at("avg_over_time(m[1m])"), ['{job="a"} 1.6666666666666667']);
  assert.deepEqual(await at("min_over_time(m[1m])"), ['{job="a"} 0']);
  assert.deepEqual(await at("max_over_time(m[1m])"), ['{job="a"} 3']);
  assert.deepEqual(await at("sum_over_time(m[1m])"), ['{job="a"} 5']);
  assert.deepEqual(await at("count_over_time(m[1m])"), ['{job="a"} 3']);
  assert.deepEqual(await at("last_over_time(m[1m])"), ['{__name__="m",job="a"} 3']);
  assert.deepEqual(await at("present_over_time(m[1m])"), ['{job="a"} 1']);
  assert.deepEqual(await at("quantile_over_time(0.5, m[1m])"), ['{job="a"} 2']);
  assert.deepEqual(await at("stdvar_over_time(m[1m])"), ['{job="a"} 1.5555555555555556']);
  assert.deepEqual(await at("mad_over_time(m[1m])"), ['{job="a"} 1']);
  assert.deepEqual(await at("clamp(m, 1, 2)"), ['{job="a"} 2']);
  assert.deepEqual(await at("clamp(m, 2, 1)"), []);
  assert.deepEqual(await at("round(m / 2)"), ['{job="a"} 2'], "round half up");
  assert.deepEqual(await at("sqrt(m) ^ 2"), ['{job="a"} 2.9999999999999996']);
  const sc = await instant(src, "scalar(m) + time()", 20 * S);
  assert.deepEqual(sc.value, { type: "scalar", result: { tMs: 20 * S, value: 23 } });
  assert.deepEqual(await at("vector(1)"), ["{} 1"]);
  // 2021-03-14T15:09:26Z
  const t = Date.UTC(2021, 2, 14, 15, 9, 26);
  const d = (f: string): Promise<string[]> => vec(src, `${f}(vector(${t / 1000}))`, 0);
  assert.deepEqual(await d("year"), ["{} 2021"]);
  assert.deepEqual(await d("month"), ["{} 3"]);
  assert.deepEqual(await d("day_of_month"), ["{} 14"]);
  assert.deepEqual(await d("day_of_week"), ["{} 0"]);
  assert.deepEqual(await d("day_of_year"), ["{} 73"]);
  assert.deepEqual(await d("days_in_month"), ["{} 31"]);
  assert.deepEqual(await d("hour"), ["{} 15"]);
  assert.deepEqual(await d("minute"), ["{} 9"]);
  assert.deepEqual(await vec(src, "hour()", 3 * 3600 * S), ["{} 3"]);
});

test("limits: too many samples, too many range points", async () => {
  const src = new MemorySource();
  src.load("m", S, series(0, 1, 1000));
  await assert.rejects(new Evaluator(src, { maxSamples: 100 }).instant(parsePromQL("sum_over_time(m[10m])"), 1000 * S), /too many samples/);
  await assert.rejects(new Evaluator(src).range(parsePromQL("m"), 0, 20_000 * S, S), /11,000 points/);
  await assert.rejects(new Evaluator(src).range(parsePromQL("m"), 0, 10, 0), /step/);
});

test("property: range queries give the same answer series-major (precomputed leaves) as step by step", async () => {
  const rand = mulberry32(20261125);
  const src = new MemorySource();
  // Counters with resets, gauges with NaN, gaps and stale markers; two series differ only by name (rate() collides).
  for (let i = 0; i < 40; i++) {
    const points: Point[] = [];
    let c = rand() * 100;
    for (let j = 0; j < 200; j++) {
      const r = rand();
      if (r < 0.05) points.push(null);
      else if (r < 0.07) points.push("stale");
      else if (i % 4 === 3 && r < 0.09) points.push(NaN);
      else {
        c = r < 0.1 ? rand() * 10 : c + rand() * 20;
        points.push(i % 4 === 2 ? rand() * 50 - 25 : c);
      }
    }
    src.load(`${i % 5 === 0 ? "other" : "m"}{i="${i % 5 === 0 ? i - 1 : i}", kind="${i % 4}"}`, 15 * S, points);
  }
  const queries = [
    "m",
    "timestamp(m)",
    "rate(m[1m])",
    "increase(m[2m])",
    "irate(m[1m])",
    "delta(m[3m])",
    "sum(rate(m[1m]))",
    "sum by (kind) (rate(m[1m]))",
    "avg by (kind) (m)",
    "min(m)",
    "max without (i) (m)",
    "count(m)",
    "group by (kind) (m)",
    "stddev(m)",
    "topk(3, m)",
    "quantile_over_time(0.9, m[2m])",
    "predict_linear(m[5m], 60)",
    "last_over_time(m[1m])",
    "sum_over_time(m[2m]) / count_over_time(m[2m])",
    "rate({__name__=~\"m|other\"}[1m])",
    "m offset 1m",
    "m @ 1500",
    "rate(m[1m] @ end())",
    "sum(rate(m[1m] offset 30s)) + count(m)",
    "avg_over_time(rate(m[1m])[2m:15s])",
  ];
  const stepwise = new Evaluator(src, { seriesMajor: false });
  const seriesMajor = new Evaluator(src);
  for (const text of queries) {
    const expr = parsePromQL(text);
    for (const [start, end, step] of [
      [0, 3000 * S, 15 * S],
      [7 * S, 2000 * S, 37 * S],
    ] as const) {
      const a = await stepwise.range(expr, start, end, step, text).then(
        (r) => r,
        (e: Error) => e.message,
      );
      const b = await seriesMajor.range(expr, start, end, step, text).then(
        (r) => r,
        (e: Error) => e.message,
      );
      assert.deepEqual(b, a, `${text} [${start}, ${end}] step ${step}`);
    }
  }
});
