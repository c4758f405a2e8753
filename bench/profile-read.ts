// Profiles the read path on a JSON-lines file: ingests it in-process, flushes,
// reopens the engine (so reads come from the block, cache cold), then times
// engine.select() and the /api/v1/export route end to end (node:http, one
// client) for the benchmark's Q2/Q3 shapes, cold then warm. Prints a SHA-256
// of each export body so a change to the read path can be checked to keep the
// output byte-identical.
//   node --import tsx [--cpu-prof] bench/profile-read.ts FILE.jsonl [reps] [DATA_DIR]
// A developer tool; the benchmark proper is bench/run.sh.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { makeMatcher } from "../src/core/matchers.js";
import { parseVmJson } from "../src/ingest/vmjson.js";
import { createHqServer } from "../src/server/server.js";
import { openEngine } from "../src/storage/engine.js";

const file = process.argv[2];
if (file === undefined) throw new Error("usage: profile-read.ts FILE.jsonl [reps] [DATA_DIR]");
const reps = Number(process.argv[3] ?? "5");
const lines = readFileSync(file, "utf8").split("\n").filter((l) => l !== "");
let minMs = Infinity;
let maxMs = -Infinity;
const counts: number[] = [];
for (const l of lines) {
  const ts = (JSON.parse(l) as { timestamps: number[] }).timestamps;
  counts.push(ts.length);
  for (const t of ts) {
    if (t < minMs) minMs = t;
    if (t > maxMs) maxMs = t;
  }
}
// A 4th argument names a data dir to keep between runs: ingested once, reused after.
const keep = process.argv[4];
const dir = keep ?? (await mkdtemp(join(tmpdir(), "hqts-prof-read-")));
const engineOpts = { dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry(), fsync: false };
const ing = await openEngine(engineOpts);
if (ing.stats().blockCount === 0) {
  // Requests of whole lines, at most 500,000 samples each (the benchmark's packing; the limit is 1,000,000).
  for (let i = 0; i < lines.length; ) {
    let j = i;
    let n = 0;
    while (j < lines.length && (j === i || n + counts[j]! <= 500_000)) n += counts[j++]!;
    const body = new TextEncoder().encode(lines.slice(i, j).join("\n"));
    await ing.write(parseVmJson(body, { limits: DEFAULT_LIMITS }), `b${i}`);
    i = j;
  }
  await ing.flush();
}
await ing.close();

const engine = await openEngine({ ...engineOpts, metrics: new Registry() });
const srv = createHqServer({ limits: DEFAULT_LIMITS, log: pino({ level: "silent" }), registry: new Registry(), processMetrics: false });
const { url } = await srv.listen("127.0.0.1", 0);
srv.setEngine(engine);

const startAll = Math.floor(minMs / 1000);
const endAll = Math.ceil(maxMs / 1000);
const mid = Math.floor((minMs + maxMs) / 2000);
const queries = [
  { id: "Q2", name: "__name__", value: "node_load1", start: endAll - 3600, end: endAll },
  { id: "Q3", name: "job", value: "node", start: mid - 300, end: mid + 300 },
  { id: "Qall", name: "env", value: "prod", start: startAll, end: endAll },
];

function get(path: string): Promise<{ ms: number; bytes: number; sha: string }> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url + path, (res) => {
      const h = createHash("sha256");
      let bytes = 0;
      res.on("data", (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      res.on("end", () => resolve({ ms: performance.now() - t, bytes, sha: h.digest("hex").slice(0, 16) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const q of queries) {
  const sel = [[makeMatcher(q.name, "=", q.value)]];
  const o = { startNs: BigInt(q.start) * 1_000_000_000n, endNs: BigInt(q.end) * 1_000_000_000n, includeInferred: true, seriesMax: 1e9, samplesMax: 1e12 };
  const times: number[] = [];
  let series = 0;
  let samples = 0;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    const out = engine.select(sel, o);
    times.push(performance.now() - t);
    series = out.length;
    samples = out.reduce((a, s) => a + s.timestampsNs.length, 0);
  }
  const path = `/api/v1/export?${new URLSearchParams({ "match[]": `{${q.name}="${q.value}"}`, start: String(q.start), end: String(q.end) }).toString()}`;
  const http: number[] = [];
  let last = { ms: 0, bytes: 0, sha: "" };
  for (let r = 0; r < reps; r++) {
    last = await get(path);
    http.push(last.ms);
  }
  console.log(
    `${q.id} {${q.name}="${q.value}"}: ${series} series, ${samples} samples | select first ${times[0]!.toFixed(1)} ms, median ${med(times).toFixed(1)} ms | export first ${http[0]!.toFixed(1)} ms, median ${med(http).toFixed(1)} ms, ${last.bytes} bytes, sha256 ${last.sha}`,
  );
}
await srv.shutdown(5000);
if (keep === undefined) await rm(dir, { recursive: true, force: true });
