// Anti-entropy convergence and standing cost (issue 4). Two real engines, each
// served over real HTTP on loopback with the node-to-node read route; one
// holds an hour of points, the other the same hour minus a random 10%. Point
// sync (what anti-entropy runs every round) converges the second; then rounds
// between replicas that agree show the standing cost: wall time, CPU, bytes
// exchanged, scaled per GiB stored.
//   npx tsc -p . && node --import tsx bench/anti-entropy.ts [--series 10000] [--interval-s 15] [--missing 0.1]

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { Registry } from "prom-client";
import { PeerReader, peerReadRoute } from "../src/cluster/peer-read.js";
import { PointSync, type SyncReport } from "../src/cluster/point-sync.js";
import { INT64_MAX, INT64_MIN } from "../src/core/time.js";
import { BatchBuilder, encodeWithDigest } from "../src/core/batch.js";
import { canonicalLabels } from "../src/core/labels.js";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { createHqServer } from "../src/server/server.js";
import { Engine, openEngine } from "../src/storage/engine.js";
import { Prng } from "./lib/prng.js";

const { values } = parseArgs({
  options: {
    series: { type: "string", default: "10000" },
    "interval-s": { type: "string", default: "15" },
    missing: { type: "string", default: "0.1" },
    rounds: { type: "string", default: "5" },
  },
});
const SERIES = Number(values.series);
const STEP_S = Number(values["interval-s"]);
const MISSING = Number(values.missing);
const ROUNDS = Number(values.rounds);
const POINTS = Math.floor(3600 / STEP_S);
const log = pino({ level: "silent" });
const limits = { ...DEFAULT_LIMITS, samplesPerBatchMax: 10_000_000, seriesPerBatchMax: 1_000_000 };

async function replica(name: string): Promise<{ engine: Engine; url: string; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `hqts-ae-${name}-`));
  const engine = (await openEngine({ dataDir: dir, limits, retentionMs: null, acceptDataLoss: false, log, metrics: new Registry(), headSamplesMax: 50_000_000 })) as Engine;
  const hq = createHqServer({ limits, log, registry: new Registry(), processMetrics: false, extraRoutes: [peerReadRoute(() => engine)] });
  hq.setEngine(engine);
  const { url } = await hq.listen("127.0.0.1", 0);
  return {
    engine,
    url,
    async close() {
      await hq.shutdown(1000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const T0 = 1_764_000_000_000_000_000n - (1_764_000_000_000_000_000n % 3_600_000_000_000n); // an hour boundary
const full = await replica("full");
const lacking = await replica("lacking");
const rng = new Prng(42);
let total = 0;
let kept = 0;
// One batch per scrape interval (all series at one timestamp), as a scraper writes; the lacking replica misses a
// random 10% of the points of each batch (same batch ids, so its copies are the batches' own).
for (let k = 0; k < POINTS; k++) {
  const t = T0 + BigInt(k * STEP_S) * 1_000_000_000n;
  const all = new BatchBuilder(limits);
  const part = new BatchBuilder(limits);
  for (let s = 0; s < SERIES; s++) {
    const labels = canonicalLabels([["__name__", "ae_metric"], ["instance", `host-${s % 100}`], ["series", String(s)]], limits);
    const v = Math.round(Math.sin(k / 10 + s) * 1000) / 10;
    all.add(labels, t, v);
    total++;
    if (rng.float() >= MISSING) {
      part.add(labels, t, v);
      kept++;
    }
  }
  const b = all.build();
  await full.engine.write(b, `scrape-${k}`, encodeWithDigest(b));
  if (part.sampleCount > 0) {
    // The lacking replica holds the same batch ids with fewer points: what a replica looks like after losing some.
    const pb = part.build();
    const meta = { batchId: `scrape-${k}`, sha256: encodeWithDigest(b).sha256, hlc: BigInt(k + 1), sampleCount: b.sampleCount };
    const enc = encodeWithDigest(pb);
    await lacking.engine.repair(meta, pb, enc.bytes);
  }
}
await full.engine.flush();
await lacking.engine.flush();
const storedBytes = full.engine.stats().blockBytes;
console.log(`data: ${SERIES} series x ${POINTS} points (one hour at ${STEP_S} s) = ${total} points; lacking replica holds ${kept} (${((1 - kept / total) * 100).toFixed(1)}% missing)`);
console.log(`stored: ${(storedBytes / 1024 / 1024).toFixed(1)} MiB of blocks on the full replica (${(storedBytes / total).toFixed(3)} B/point)`);

const reader = new PeerReader({ timeoutMs: 120_000 });
const sync = new PointSync(lacking.engine, reader, log);

async function measure(): Promise<{ r: SyncReport; ms: number; cpuMs: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await sync.syncFrom(full.url, INT64_MIN, INT64_MAX);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { r, ms, cpuMs: (cpu.user + cpu.system) / 1000 };
}

const conv = await measure();
console.log(
  `\nconvergence: ${conv.ms.toFixed(0)} ms wall, ${conv.cpuMs.toFixed(0)} ms CPU (both replicas, one process); ` +
    `${conv.r.windowsDiffering}/${conv.r.windows} windows differed, ${conv.r.seriesFetched} series fetched, ${conv.r.samplesFetched} samples fetched, ` +
    `${conv.r.install.stored} stored, ${conv.r.install.present} already present; ${(conv.r.traffic.bytesSent / 1024).toFixed(1)} KiB sent, ${(conv.r.traffic.bytesReceived / 1024 / 1024).toFixed(2)} MiB received in ${conv.r.traffic.requests} requests`,
);
const converged = JSON.stringify(lacking.engine.digestWindows(INT64_MIN, INT64_MAX, 3_600_000_000_000n), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ===
  JSON.stringify(full.engine.digestWindows(INT64_MIN, INT64_MAX, 3_600_000_000_000n), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
console.log(`converged (digests equal): ${converged}; stored now ${lacking.engine.stats().seriesCount} series`);
if (!converged || conv.r.install.stored !== total - kept) throw new Error(`did not converge: stored ${conv.r.install.stored}, expected ${total - kept}`);

console.log("\nstanding cost, replicas agreeing:");
const standing: { ms: number; cpuMs: number; bytes: number }[] = [];
for (let i = 0; i < ROUNDS; i++) {
  const m = await measure();
  if (m.r.install.stored !== 0 || m.r.windowsDiffering !== 0) throw new Error(`round ${i}: replicas should agree: ${JSON.stringify(m.r.install)}`);
  const bytes = m.r.traffic.bytesSent + m.r.traffic.bytesReceived;
  standing.push({ ms: m.ms, cpuMs: m.cpuMs, bytes });
  console.log(`  round ${i + 1}: ${m.ms.toFixed(1)} ms wall, ${m.cpuMs.toFixed(1)} ms CPU, ${bytes} bytes in ${m.r.traffic.requests} requests`);
}
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const gib = storedBytes / 1024 ** 3;
const sMs = med(standing.map((s) => s.ms));
const sCpu = med(standing.map((s) => s.cpuMs));
const sBytes = med(standing.map((s) => s.bytes));
console.log(
  `  median: ${sMs.toFixed(1)} ms wall, ${sCpu.toFixed(1)} ms CPU, ${sBytes} bytes per round; ` +
    `per GiB stored: ${(sBytes / gib / 1024).toFixed(1)} KiB and ${(sCpu / gib / 1000).toFixed(2)} CPU-s per round ` +
    `(one round a minute: ${((sCpu / gib / 60_000) * 100).toFixed(3)}% of a core per GiB)`,
);
console.log(
  JSON.stringify({
    bench: "anti-entropy",
    series: SERIES,
    points: total,
    missing: total - kept,
    storedBytes,
    convergeMs: Math.round(conv.ms),
    convergeCpuMs: Math.round(conv.cpuMs),
    convergeBytes: conv.r.traffic.bytesSent + conv.r.traffic.bytesReceived,
    standingMs: sMs,
    standingCpuMs: sCpu,
    standingBytes: sBytes,
    standingBytesPerGiB: Math.round(sBytes / gib),
  }),
);
reader.close();
await full.close();
await lacking.close();
