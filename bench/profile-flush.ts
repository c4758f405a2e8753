// The event loop during a flush: fills an engine's head (SERIES x STEPS samples, the bulk shape), flushes it, and
// prints the flush's duration and the longest the event loop went without a turn meanwhile (what a write arriving
// then waits at least). Run under `node --import tsx --cpu-prof bench/profile-flush.ts [SERIES] [STEPS]` to see
// what the flush does on the event loop's thread. A developer tool; bench/write-shapes.ts --shape flush measures it
// from outside, beside VictoriaMetrics.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder } from "../src/core/batch.js";
import { canonicalLabels } from "../src/core/labels.js";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { openEngine } from "../src/storage/engine.js";

const SERIES = Number(process.argv[2] ?? "10000");
const STEPS = Number(process.argv[3] ?? "100");
const dir = await mkdtemp(join(tmpdir(), "hqts-flush-"));
const e = await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry() });
const labels = Array.from({ length: SERIES }, (_, i) => canonicalLabels([["__name__", `m${i % 50}`], ["job", "backfill"], ["i", String(i)]], DEFAULT_LIMITS));
let x = 1;
for (let r = 0; r < STEPS; r++) {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (let i = 0; i < SERIES; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    b.add(labels[i]!, BigInt(1_700_000_000_000 + r * 10_000) * 1_000_000n, Math.round(x / 2e6) / 10);
  }
  await e.write(b.build(), `b${r}`);
}
let gapMaxMs = 0;
let last = performance.now();
let running = true;
const turn = (): void => {
  const now = performance.now();
  gapMaxMs = Math.max(gapMaxMs, now - last);
  last = now;
  if (running) setImmediate(turn);
};
setImmediate(turn);
const t0 = performance.now();
const r = await e.flush();
running = false;
console.log(`flush of ${r.samples} samples in ${r.series} series: ${(performance.now() - t0).toFixed(0)} ms; longest event-loop gap ${gapMaxMs.toFixed(0)} ms`);
await e.close();
await rm(dir, { recursive: true, force: true });
