// Range reads: which ones (chosen from the data, deterministically), how many
// samples each must return (computed from what was sent), and timing them
// against /api/v1/export on either database.

import type { Dataset, Labels, SeriesInfo } from "./dataset.js";
import { excerpt, type HttpClient } from "./http.js";

export interface ReadQuery {
  id: string;
  title: string;
  /** Equality matchers only, so the expected result can be computed here. */
  matchers: Labels;
  selector: string;
  /** Unix seconds, inclusive. */
  start: number;
  end: number;
  expectedSeries: number;
  expectedSamples: number;
}

export function selectorOf(m: Labels): string {
  const parts = Object.keys(m)
    .sort()
    .map((k) => `${k}=${JSON.stringify(m[k])}`);
  return `{${parts.join(",")}}`;
}

function matches(s: SeriesInfo, m: Labels): boolean {
  for (const [k, v] of Object.entries(m)) if (s.labels[k] !== v) return false;
  return true;
}

function countInRange(ts: ArrayLike<number>, fromMs: number, toMs: number): number {
  let n = 0;
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i] ?? Number.NaN;
    if (t >= fromMs && t <= toMs) n++;
  }
  return n;
}

function expected(d: Dataset, m: Labels, start: number, end: number): { series: number; samples: number } {
  let series = 0;
  let samples = 0;
  for (const s of d.series) {
    if (!matches(s, m)) continue;
    const c = countInRange(s.timestamps, start * 1000, end * 1000);
    if (c > 0) {
      series++;
      samples += c;
    }
  }
  return { series, samples };
}

function seriesKey(l: Labels): string {
  return selectorOf(l);
}

/**
 * The three typical reads of the brief:
 *  Q1 one series over the data's full range;
 *  Q2 all series of one metric name over the last hour of the data;
 *  Q3 {job="node"} (or the largest job) over 10 minutes in the middle.
 */
export function chooseQueries(d: Dataset, maxSeriesPerName = 2_000): ReadQuery[] {
  const startAll = Math.floor(d.minTs / 1000);
  const endAll = Math.ceil(d.maxTs / 1000);
  const byName = new Map<string, SeriesInfo[]>();
  for (const s of d.series) {
    const n = s.labels["__name__"] ?? "";
    const list = byName.get(n);
    if (list) list.push(s);
    else byName.set(n, [s]);
  }
  const sortedKeys = (xs: SeriesInfo[]): SeriesInfo[] => [...xs].sort((a, b) => (seriesKey(a.labels) < seriesKey(b.labels) ? -1 : 1));

  // Q1: the first node_load1 series if there is one, else the longest series.
  let one: SeriesInfo | undefined = sortedKeys(byName.get("node_load1") ?? [])[0];
  if (one === undefined) {
    let best = -1;
    for (const s of sortedKeys(d.series)) {
      if (s.timestamps.length > best) {
        best = s.timestamps.length;
        one = s;
      }
    }
  }
  if (one === undefined) throw new Error("data set has no series");
  const q1m = { ...one.labels };

  // Q2: node_cpu_seconds_total, else node_load1, else the name with most series (all capped).
  let name: string | undefined;
  for (const pref of ["node_cpu_seconds_total", "node_load1"]) {
    const c = byName.get(pref)?.length ?? 0;
    if (c > 0 && c <= maxSeriesPerName) {
      name = pref;
      break;
    }
  }
  if (name === undefined) {
    let best = 0;
    for (const [n, list] of [...byName.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (list.length <= maxSeriesPerName && list.length > best) {
        best = list.length;
        name = n;
      }
    }
  }
  if (name === undefined) throw new Error("no metric name with few enough series");
  const q2m = { __name__: name };

  // Q3: job="node", else the job with most series.
  let job = d.series.some((s) => s.labels["job"] === "node") ? "node" : undefined;
  if (job === undefined) {
    const jobs = new Map<string, number>();
    for (const s of d.series) {
      const j = s.labels["job"];
      if (j !== undefined) jobs.set(j, (jobs.get(j) ?? 0) + 1);
    }
    let best = 0;
    for (const [j, c] of [...jobs.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (c > best) {
        best = c;
        job = j;
      }
    }
  }
  const q3m: Labels = job !== undefined ? { job } : { __name__: name };
  const mid = Math.floor((d.minTs + d.maxTs) / 2000);

  const mk = (id: string, title: string, matchers: Labels, start: number, end: number): ReadQuery => {
    const e = expected(d, matchers, start, end);
    return { id, title, matchers, selector: selectorOf(matchers), start, end, expectedSeries: e.series, expectedSamples: e.samples };
  };
  return [
    mk("Q1", "one series, full range", q1m, startAll, endAll),
    mk("Q2", "one metric name, last 1 h", q2m, endAll - 3600, endAll),
    mk("Q3", `${job !== undefined ? `job=${JSON.stringify(job)}` : "one metric name"}, 10 min`, q3m, mid - 300, mid + 300),
  ];
}

export function exportPath(q: ReadQuery): string {
  const p = new URLSearchParams();
  p.append("match[]", q.selector);
  p.append("start", String(q.start));
  p.append("end", String(q.end));
  return `/api/v1/export?${p.toString()}`;
}

/** Counts series and samples in an /api/v1/export JSON-lines answer. */
export function countExport(body: Buffer): { series: number; samples: number; lines: number } {
  const keys = new Set<string>();
  let samples = 0;
  let lines = 0;
  for (const line of body.toString("utf8").split("\n")) {
    if (line.trim() === "") continue;
    lines++;
    const obj = JSON.parse(line) as { metric?: Labels; timestamps?: unknown[]; values?: unknown[] };
    if (obj.metric) keys.add(seriesKey(obj.metric));
    samples += (obj.timestamps ?? obj.values ?? []).length;
  }
  return { series: keys.size, samples, lines };
}

export interface ReadResult {
  id: string;
  reps: number;
  p50Ms: number;
  p99Ms: number;
  minMs: number;
  maxMs: number;
  meanMs: number;
  responseBytes: number;
  series: number;
  samples: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[idx] ?? Number.NaN;
}

/**
 * One untimed warm-up (whose answer is counted), then up to `reps` timed
 * sequential requests; stops early once budgetMs is spent and at least
 * minReps were done. Latency = request start to last byte of the body.
 */
export async function timeRead(client: HttpClient, q: ReadQuery, reps: number, budgetMs: number, minReps = 3): Promise<ReadResult> {
  const path = exportPath(q);
  const warm = await client.get(path);
  if (warm.status !== 200) throw new Error(`${q.id} ${path}: HTTP ${warm.status} ${excerpt(warm.body)}`);
  const counted = countExport(warm.body);
  const times: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    const r = await client.get(path);
    const e = performance.now() - s;
    if (r.status !== 200) throw new Error(`${q.id} ${path}: HTTP ${r.status} ${excerpt(r.body)}`);
    if (r.body.length !== warm.body.length) console.warn(`warning: ${q.id}: answer size changed between repetitions (${warm.body.length} -> ${r.body.length} bytes)`);
    times.push(e);
    if (performance.now() - t0 > budgetMs && times.length >= minReps) break;
  }
  times.sort((a, b) => a - b);
  return {
    id: q.id,
    reps: times.length,
    p50Ms: percentile(times, 0.5),
    p99Ms: percentile(times, 0.99),
    minMs: times[0] ?? Number.NaN,
    maxMs: times[times.length - 1] ?? Number.NaN,
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
    responseBytes: warm.body.length,
    series: counted.series,
    samples: counted.samples,
  };
}
