// Bytes per sample of the block format on real data, and codec speed.
// Usage: npx tsx bench/codec-size.ts [file.jsonl.gz ...] [--chunk N] [--compression auto|none|deflate|brotli] [--no-share]
// Default files: /work/shared/data/*.jsonl.gz (VictoriaMetrics /api/v1/import JSON lines, ms timestamps).

import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { seriesKey, type Labels } from "../src/core/labels.js";
import { encodeBlockWithStats, decodeFooter, decodeIndex, FOOTER_SIZE, type BlockInput, type BlockSeriesInput } from "../src/storage/block-format.js";
import { decodeChunk, decodeTimestampColumn, type ChunkCompression } from "../src/storage/chunk-codec.js";

const args = process.argv.slice(2);
let chunk = 4096;
let compression: ChunkCompression = "auto";
let share = true;
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "--chunk") chunk = Number(args[++i]);
  else if (a === "--compression") compression = args[++i] as ChunkCompression;
  else if (a === "--no-share") share = false;
  else files.push(a);
}
if (files.length === 0) files.push("/work/shared/data/node-exporter-1s-55min.jsonl.gz", "/work/shared/data/prometheus-summaries-with-nan.jsonl.gz");

function load(path: string): BlockSeriesInput[] {
  const text = gunzipSync(readFileSync(path)).toString("utf8");
  const out: BlockSeriesInput[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const o = JSON.parse(line) as { metric: Record<string, string>; values: (number | string)[]; timestamps: number[] };
    const labels: Labels = Object.entries(o.metric)
      .filter(([, v]) => v !== "")
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    // sort by time, drop duplicate timestamps (first wins)
    const idx = o.timestamps.map((_, i) => i).sort((a, b) => o.timestamps[a]! - o.timestamps[b]! || a - b);
    const ts: bigint[] = [];
    const vs: number[] = [];
    let last: number | null = null;
    for (const i of idx) {
      const t = o.timestamps[i]!;
      if (t === last) continue;
      last = t;
      ts.push(BigInt(t) * 1_000_000n);
      const v = o.values[i]!;
      vs.push(typeof v === "string" ? Number(v) : v);
    }
    const n = ts.length;
    out.push({
      labels,
      data: { timestampsNs: BigInt64Array.from(ts), values: Float64Array.from(vs), origins: new Uint8Array(n), batchRefs: new Uint32Array(n) },
    });
  }
  // merge duplicate series lines is not needed for these files; sort by key
  out.sort((a, b) => {
    const ka = seriesKey(a.labels);
    const kb = seriesKey(b.labels);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  return out;
}

for (const file of files) {
  const series = load(file);
  const samples = series.reduce((s, x) => s + x.data.timestampsNs.length, 0);
  const input: BlockInput = {
    series,
    batches: [{ batchId: "bench", sha256: "0".repeat(64), origin: "original", shardId: 0, hlc: "1", sampleCount: samples, inference: null }],
  };
  const t0 = performance.now();
  const { bytes, stats } = encodeBlockWithStats(input, { chunkSamplesMax: chunk, compression, shareTimestamps: share });
  const encMs = performance.now() - t0;
  const footer = decodeFooter(bytes.subarray(bytes.length - FOOTER_SIZE), bytes.length, file);
  const index = decodeIndex(bytes.subarray(footer.indexOffset, footer.indexOffset + footer.indexLength), footer, file);
  // decode everything, 3 rounds, best
  let best = Infinity;
  let decoded = 0;
  for (let round = 0; round < 3; round++) {
    const t1 = performance.now();
    decoded = 0;
    const cols = index.tsColumns.map((r) => decodeTimestampColumn(bytes.subarray(r.offset, r.offset + r.length), file, r.offset));
    for (const s of index.series)
      for (const c of s.chunks) {
        const d = decodeChunk(bytes.subarray(c.offset, c.offset + c.length), file, c.offset, c.tsColumn >= 0 ? cols[c.tsColumn]!.slice() : undefined);
        decoded += d.values.length;
      }
    best = Math.min(best, performance.now() - t1);
  }
  if (decoded !== samples) throw new Error(`decoded ${decoded} of ${samples}`);
  // exact round trip (bits), outside the timing
  {
    const cols = index.tsColumns.map((r) => decodeTimestampColumn(bytes.subarray(r.offset, r.offset + r.length), file, r.offset));
    index.series.forEach((s, si) => {
      const src = series[si]!.data;
      let at = 0;
      for (const c of s.chunks) {
        const d = decodeChunk(bytes.subarray(c.offset, c.offset + c.length), file, c.offset, c.tsColumn >= 0 ? cols[c.tsColumn]!.slice() : undefined);
        const vb = new Uint8Array(d.values.buffer);
        const sb = new Uint8Array(src.values.buffer, (at) * 8, d.values.length * 8);
        for (let i = 0; i < d.values.length; i++) {
          if (d.timestampsNs[i] !== src.timestampsNs[at + i]) throw new Error(`timestamp mismatch in ${s.key}`);
          if (d.origins[i] !== src.origins[at + i] || d.batchRefs[i] !== src.batchRefs[at + i]) throw new Error(`origin/ref mismatch in ${s.key}`);
        }
        for (let i = 0; i < vb.length; i++) if (vb[i] !== sb[i]) throw new Error(`value bits mismatch in ${s.key}`);
        at += d.values.length;
      }
    });
  }
  const bps = (n: number): string => (n / samples).toFixed(4);
  console.log(`\n${file}`);
  console.log(`  series ${series.length}, samples ${samples}, chunks ${stats.chunkCount} (max ${chunk}), shared ts columns ${stats.sharedTsColumns}, compression ${compression}`);
  console.log(`  total ${stats.total} B = ${bps(stats.total)} B/sample`);
  console.log(
    `    timestamps (shared columns) ${stats.tsColumns} B = ${bps(stats.tsColumns)}; chunks (values+origins+refs+inline ts) ${stats.chunks} B = ${bps(stats.chunks)}`,
  );
  console.log(
    `    series index ${stats.seriesIndex} B = ${bps(stats.seriesIndex)}; batch table ${stats.batchTable} B = ${bps(stats.batchTable)}; header+footer ${stats.header + stats.footer} B`,
  );
  console.log(`  encode ${encMs.toFixed(0)} ms = ${((samples / encMs) * 1000 / 1e6).toFixed(2)} M samples/s`);
  console.log(`  decode ${best.toFixed(0)} ms = ${((samples / best) * 1000 / 1e6).toFixed(2)} M samples/s`);
}
