// Profiles the PromQL evaluator alone: synthetic series shaped like
// bench/promql.ts's synthetic data set (counters and histogram buckets at
// 15 s), served from memory, so the figures are evaluation cost without
// storage or HTTP. Prints ms per query (median of the runs).
//   node --import tsx [--cpu-prof] bench/profile-promql.ts [series] [samples] [runs] [query ...]
// A developer tool; the benchmark proper is bench/promql.ts.
import type { Labels } from "../src/core/labels.js";
import { matchesLabels, type Matcher } from "../src/core/matchers.js";
import { Evaluator, type SeriesSource } from "../src/query/promql/eval.js";
import { parsePromQL } from "../src/query/promql/parse.js";
import { Prng } from "./lib/prng.js";

const nSeries = Number(process.argv[2] ?? "10000");
const nSamples = Number(process.argv[3] ?? "30");
const runs = Number(process.argv[4] ?? "5");
const queries = process.argv.slice(5);
if (queries.length === 0)
  queries.push(
    "sum(rate(bench_requests_total[5m]))",
    "sum by (code) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "topk(10, sum by (instance) (rate(bench_requests_total[5m])))",
    "count(bench_requests_total)",
  );

const STEP_SCRAPE_MS = 15_000;
const T0_MS = 1_700_000_000_000;
const LES = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
const rng = new Prng(1);
const data: { labels: Labels; tMs: Float64Array; values: Float64Array }[] = [];
const tMs = Float64Array.from({ length: nSamples }, (_, i) => T0_MS + i * STEP_SCRAPE_MS);
const lbl = (o: Record<string, string>): Labels => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)) as unknown as Labels;
for (let inst = 0; data.length < nSeries; inst++) {
  const instance = `host-${inst}:9100`;
  for (const le of LES) {
    if (data.length >= nSeries) break;
    const values = new Float64Array(nSamples);
    let v = rng.int(0, 1000);
    for (let j = 0; j < nSamples; j++) values[j] = v += rng.int(0, 50);
    data.push({ labels: lbl({ __name__: "bench_latency_seconds_bucket", job: "bench", instance, le }), tMs, values });
  }
  for (const handler of ["/", "/api", "/login", "/metrics"])
    for (const code of ["200", "404", "500"]) {
      if (data.length >= nSeries) break;
      const values = new Float64Array(nSamples);
      let v = rng.int(0, 1_000_000);
      for (let j = 0; j < nSamples; j++) values[j] = v += rng.int(0, 300);
      data.push({ labels: lbl({ __name__: "bench_requests_total", job: "bench", instance, handler, code }), tMs, values });
    }
}

const source: SeriesSource = {
  select: async (ms: Matcher[], startMs: number, endMs: number) => {
    const out = [];
    for (const s of data) {
      if (!matchesLabels(ms, s.labels)) continue;
      let lo = 0;
      while (lo < s.tMs.length && s.tMs[lo]! < startMs) lo++;
      let hi = lo;
      while (hi < s.tMs.length && s.tMs[hi]! <= endMs) hi++;
      out.push({ labels: s.labels, tMs: s.tMs.slice(lo, hi), values: s.values.slice(lo, hi) });
    }
    return out;
  },
};

const startMs = T0_MS;
const endMs = T0_MS + (nSamples - 1) * STEP_SCRAPE_MS;
const stepMs = Math.max(1000, Math.ceil((endMs - startMs) / 240 / 1000) * 1000);
console.log(`${data.length} series x ${nSamples} samples; range ${(endMs - startMs) / 1000} s, step ${stepMs / 1000} s`);
const ev = new Evaluator(source, { maxSamples: 1e9 });
for (const q of queries) {
  const expr = parsePromQL(q);
  const times: number[] = [];
  let points = 0;
  for (let r = 0; r < runs + 1; r++) {
    const t0 = performance.now();
    const res = await ev.range(expr, startMs, endMs, stepMs, q);
    if (r > 0) times.push(performance.now() - t0);
    points = res.value.reduce((n, s) => n + s.points.length, 0);
  }
  times.sort((a, b) => a - b);
  console.log(`${times[times.length >> 1]!.toFixed(1).padStart(9)} ms  ${String(points).padStart(6)} points  ${q}`);
}
