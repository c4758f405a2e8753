// Profiles the in-process ingest path (parse + engine.write) and reads, on a
// JSON-lines file: `node --import tsx --cpu-prof bench/profile-ingest.ts FILE`.
// A developer tool for finding hot spots; the benchmark proper is bench/run.sh.
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { makeMatcher } from "../src/core/matchers.js";
import { parseVmJson } from "../src/ingest/vmjson.js";
import { openEngine } from "../src/storage/engine.js";

const file = process.argv[2];
if (file === undefined) throw new Error("usage: profile-ingest.ts FILE.jsonl");
const lines = readFileSync(file, "utf8").split("\n").filter((l) => l !== "");
const perReq = Number(process.argv[3] ?? "3000");
const dir = await mkdtemp(join(tmpdir(), "hqts-prof-"));
const engine = await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry() });
let samples = 0;
let parseMs = 0;
let writeMs = 0;
for (let i = 0; i < lines.length; i += perReq) {
  const body = new TextEncoder().encode(lines.slice(i, i + perReq).join("\n"));
  let t = performance.now();
  const batch = parseVmJson(body, { limits: DEFAULT_LIMITS });
  parseMs += performance.now() - t;
  t = performance.now();
  await engine.write(batch, `b${i}`);
  writeMs += performance.now() - t;
  samples += batch.sampleCount;
}
console.log(`ingest: ${samples} samples, parse ${(samples / parseMs * 1000).toFixed(0)}/s, write ${(samples / writeMs * 1000).toFixed(0)}/s`);
let t = performance.now();
const head = engine.select([[makeMatcher("job", "=", "node")]], { startNs: 0n, endNs: 1n << 62n, includeInferred: true, seriesMax: 1e9, samplesMax: 1e12 });
console.log(`select from head: ${head.length} series in ${(performance.now() - t).toFixed(0)} ms`);
t = performance.now();
await engine.flush();
console.log(`flush ${(performance.now() - t).toFixed(0)} ms`);
t = performance.now();
const blk = engine.select([[makeMatcher("job", "=", "node")]], { startNs: 0n, endNs: 1n << 62n, includeInferred: true, seriesMax: 1e9, samplesMax: 1e12 });
console.log(`select from block: ${blk.length} series, ${blk.reduce((a, s) => a + s.timestampsNs.length, 0)} samples in ${(performance.now() - t).toFixed(0)} ms`);
await engine.close();
await rm(dir, { recursive: true, force: true });
