// The side-by-side table printed to stdout, and the ratios in it.

import type { DbKind, DiskUsage, FlushReport } from "./dbs.js";
import type { IngestResult } from "./load.js";
import type { ReadQuery, ReadResult } from "./queries.js";

export interface DbResult {
  db: DbKind;
  label: string;
  version: string;
  error?: string;
  startupMs?: number;
  ingest?: IngestResult;
  concurrentIngest?: IngestResult;
  concurrentError?: string;
  diskBeforeFlush?: DiskUsage;
  flush?: FlushReport;
  disk?: DiskUsage;
  bytesPerSample?: number;
  /** Only the sample files (VM data/, HQ-TS blocks/): no index, WAL or metadata. */
  sampleDirs?: readonly string[];
  sampleBytesPerSample?: number;
  stored?: Record<string, unknown>;
  /** What the DB's own counters say about samples stored vs sent. */
  storedWarnings?: string[];
  reads?: ReadResult[];
  logFile?: string;
}

export interface Ratios {
  ingestSamplesPerSec?: number;
  concurrentIngestSamplesPerSec?: number;
  bytesPerSample?: number;
  reads: Record<string, { p50?: number; p99?: number }>;
}

export interface DatasetResult {
  name: string;
  description: string;
  series: number;
  samples: number;
  requests: number;
  maxSamplesPerRequest: number;
  bodyBytes: number;
  firstTimestamp: string;
  lastTimestamp: string;
  prepareSeconds: number;
  queries: ReadQuery[];
  hq?: DbResult;
  vm?: DbResult;
  /** HQ-TS figure divided by the VictoriaMetrics figure. */
  ratios: Ratios;
  warnings: string[];
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) && Number.isFinite(b) ? a / b : undefined);

export function computeRatios(d: DatasetResult): Ratios {
  const r: Ratios = {
    ingestSamplesPerSec: ratio(d.hq?.ingest?.samplesPerSec, d.vm?.ingest?.samplesPerSec),
    concurrentIngestSamplesPerSec: ratio(d.hq?.concurrentIngest?.samplesPerSec, d.vm?.concurrentIngest?.samplesPerSec),
    bytesPerSample: ratio(d.hq?.bytesPerSample, d.vm?.bytesPerSample),
    reads: {},
  };
  for (const q of d.queries) {
    const h = d.hq?.reads?.find((x) => x.id === q.id);
    const v = d.vm?.reads?.find((x) => x.id === q.id);
    r.reads[q.id] = { p50: ratio(h?.p50Ms, v?.p50Ms), p99: ratio(h?.p99Ms, v?.p99Ms) };
  }
  return r;
}

/** Compares what each DB returned with what was sent; returns warning lines. */
export function readWarnings(d: DatasetResult): string[] {
  const w: string[] = [];
  for (const q of d.queries) {
    const got: [string, ReadResult | undefined][] = [
      ["HQ-TS", d.hq?.reads?.find((x) => x.id === q.id)],
      ["VictoriaMetrics", d.vm?.reads?.find((x) => x.id === q.id)],
    ];
    for (const [label, r] of got) {
      if (r === undefined) continue;
      if (r.samples !== q.expectedSamples || r.series !== q.expectedSeries) {
        w.push(`WARNING ${d.name} ${q.id}: ${label} returned ${r.samples} samples in ${r.series} series, the data holds ${q.expectedSamples} in ${q.expectedSeries} for ${q.selector} [${q.start}, ${q.end}]`);
      }
    }
    const [h, v] = [got[0]?.[1], got[1]?.[1]];
    if (h !== undefined && v !== undefined && (h.samples !== v.samples || h.series !== v.series)) {
      w.push(`WARNING ${d.name} ${q.id}: sample counts differ: HQ-TS ${h.samples} (${h.series} series) vs VictoriaMetrics ${v.samples} (${v.series} series)`);
    }
  }
  return w;
}

// ---- formatting -------------------------------------------------------------------

const int = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : Math.round(x).toLocaleString("en-US"));
const fix = (x: number | undefined, digits: number): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(digits));
const ms = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? "-" : x < 10 ? x.toFixed(2) : x < 1000 ? x.toFixed(1) : Math.round(x).toLocaleString("en-US"));
const rat = (x: number | undefined): string => (x === undefined ? "-" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const mb = (x: number): string => `${(x / 1e6).toFixed(1)} MB`;

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatDataset(d: DatasetResult): string {
  const out: string[] = [];
  out.push(`== ${d.name}: ${d.description}`);
  out.push(`   ${int(d.series)} series, ${int(d.samples)} samples, ${d.firstTimestamp} .. ${d.lastTimestamp}`);
  out.push(`   ${d.requests} import requests of at most ${int(d.maxSamplesPerRequest)} samples, ${mb(d.bodyBytes)} of JSON, byte-identical for both`);
  out.push("");
  const rows: string[][] = [["", "HQ-TS", "VictoriaMetrics", "HQ/VM"]];
  const hq = d.hq;
  const vm = d.vm;
  rows.push(["ingest, 1 client: samples/s", int(hq?.ingest?.samplesPerSec), int(vm?.ingest?.samplesPerSec), rat(d.ratios.ingestSamplesPerSec)]);
  rows.push(["  wall time, s", fix(hq?.ingest?.seconds, 2), fix(vm?.ingest?.seconds, 2), ""]);
  if (hq?.concurrentIngest !== undefined || vm?.concurrentIngest !== undefined) {
    const c = hq?.concurrentIngest?.concurrency ?? vm?.concurrentIngest?.concurrency ?? 0;
    rows.push([`ingest, ${c} clients: samples/s`, int(hq?.concurrentIngest?.samplesPerSec), int(vm?.concurrentIngest?.samplesPerSec), rat(d.ratios.concurrentIngestSamplesPerSec)]);
  }
  rows.push(["disk after flush: bytes", int(hq?.disk?.bytes), int(vm?.disk?.bytes), rat(ratio(hq?.disk?.bytes, vm?.disk?.bytes))]);
  rows.push(["bytes/sample", fix(hq?.bytesPerSample, 3), fix(vm?.bytesPerSample, 3), rat(d.ratios.bytesPerSample)]);
  rows.push([`  of which sample files (HQ ${hq?.sampleDirs?.join(",") ?? "blocks"}/, VM ${vm?.sampleDirs?.join(",") ?? "data"}/)`, fix(hq?.sampleBytesPerSample, 3), fix(vm?.sampleBytesPerSample, 3), rat(ratio(hq?.sampleBytesPerSample, vm?.sampleBytesPerSample))]);
  rows.push(["flush (+ merge) time, s", fix(hq?.flush?.seconds, 2), fix(vm?.flush?.seconds, 2), ""]);
  for (const q of d.queries) {
    const h = hq?.reads?.find((x) => x.id === q.id);
    const v = vm?.reads?.find((x) => x.id === q.id);
    const r = d.ratios.reads[q.id];
    rows.push([`${q.id} ${q.title}: p50 ms`, ms(h?.p50Ms), ms(v?.p50Ms), rat(r?.p50)]);
    rows.push([`${q.id}   p99 ms (of ${h?.reps ?? "-"} / ${v?.reps ?? "-"} reps)`, ms(h?.p99Ms), ms(v?.p99Ms), rat(r?.p99)]);
    rows.push([`${q.id}   samples returned (expected ${int(q.expectedSamples)})`, int(h?.samples), int(v?.samples), ""]);
  }
  out.push(table(rows));
  out.push("");
  for (const q of d.queries) out.push(`   ${q.id}: ${q.selector} start=${q.start} end=${q.end} (${int(q.expectedSeries)} series)`);
  for (const r of [hq, vm]) {
    if (r === undefined) continue;
    if (r.error !== undefined) out.push(`   ${r.label}: FAILED: ${r.error.split("\n")[0] ?? ""}`);
    if (r.concurrentError !== undefined) out.push(`   ${r.label} concurrent ingest FAILED: ${r.concurrentError.split("\n")[0] ?? ""}`);
    if (r.disk !== undefined) {
      const parts = Object.entries(r.disk.byTopLevel)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${int(v)}`)
        .join(", ");
      const before = r.diskBeforeFlush !== undefined ? `; before flush ${int(r.diskBeforeFlush.bytes)} (${Object.entries(r.diskBeforeFlush.byTopLevel).map(([k, v]) => `${k} ${int(v)}`).join(", ")})` : "";
      out.push(`   ${r.label} disk after flush: ${parts} (${r.disk.files} files, ${int(r.disk.allocatedBytes)} allocated)${before}`);
    }
  }
  if (d.warnings.length > 0) {
    out.push("");
    for (const w of d.warnings) out.push(w);
  }
  out.push("");
  out.push("   ratio = HQ-TS / VictoriaMetrics: above 1 is HQ faster for samples/s; below 1 is HQ smaller/faster for bytes and latencies");
  return out.join("\n");
}
