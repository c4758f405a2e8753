// HQ-TS vs VictoriaMetrics single-node, side by side on the same data:
// ingest throughput, bytes per sample on disk after a flush, and range-read
// latency. Run it through bench/run.sh (npm run bench -- [options]); see
// bench/README.md for what every figure means.
//
//   --dataset real|synthetic|all   (default all)
//   --file PATH                    JSON-lines file for "real" (default: the node-exporter recording)
//   --series N --samples M --seed S   synthetic set size (default 100000 x 150, seed 1)
//   --max-samples-per-request N    (default 500000; HQ-TS refuses > 1,000,000)
//   --concurrency C                second ingest figure with C clients, 0 = off
//                                  (default 2 for real, 0 for synthetic)
//   --reps K --read-budget SEC     timed reads per query per DB (default 20, at most ~30 s)
//   --only hq|vm                   run one side only
//   --keep-data                    keep the data dirs under bench/out/
//   --hq-bin PATH                  command that runs the HQ-TS CLI

import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { arch, cpus, loadavg, platform, release, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadJsonLinesFile, type Dataset } from "./lib/dataset.js";
import { HqtsDriver, VictoriaMetricsDriver, type DbDriver, type DbRun } from "./lib/dbs.js";
import { ingest } from "./lib/load.js";
import { installCleanupHandlers, runMain } from "./lib/procs.js";
import { chooseQueries, timeRead, type ReadQuery } from "./lib/queries.js";
import { computeRatios, formatDataset, readWarnings, type DatasetResult, type DbResult } from "./lib/report.js";
import { DEFAULT_SYNTHETIC_START_MS, buildSyntheticDataset } from "./lib/synthetic.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const { values: args } = parseArgs({
  options: {
    dataset: { type: "string", default: "all" },
    file: { type: "string" },
    series: { type: "string", default: "100000" },
    samples: { type: "string", default: "150" },
    seed: { type: "string", default: "1" },
    "max-samples-per-request": { type: "string", default: "500000" },
    concurrency: { type: "string" },
    reps: { type: "string", default: "20" },
    "read-budget": { type: "string", default: "30" },
    only: { type: "string" },
    "keep-data": { type: "boolean", default: false },
    "hq-bin": { type: "string" },
    "out-dir": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});

if (args.help) {
  console.log("usage: npm run bench -- [--dataset real|synthetic|all] [--file PATH] [--series N] [--samples M] [--seed S]\n" + "       [--max-samples-per-request N] [--concurrency C] [--reps K] [--read-budget SEC] [--only hq|vm] [--keep-data] [--hq-bin PATH]\n" + "see bench/README.md");
  process.exit(0);
}

function posInt(name: string, v: string | undefined, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: expected an integer >= ${min}, got ${String(v)}`);
  return n;
}

const maxPerRequest = posInt("max-samples-per-request", args["max-samples-per-request"]);
if (maxPerRequest > 1_000_000) console.warn("warning: HQ-TS refuses requests of more than 1,000,000 samples");
const reps = posInt("reps", args.reps);
const readBudgetMs = posInt("read-budget", args["read-budget"]) * 1000;
const datasets = args.dataset === "all" ? ["real", "synthetic"] : [args.dataset ?? "all"];
for (const d of datasets) if (d !== "real" && d !== "synthetic") throw new Error(`--dataset: real, synthetic or all, got ${d}`);
if (args.only !== undefined && args.only !== "hq" && args.only !== "vm") throw new Error(`--only: hq or vm, got ${args.only}`);

const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const outDir = resolve(args["out-dir"] ?? join(repoRoot, "bench", "out"));
const runDir = join(outDir, `run-${stamp}`);
mkdirSync(runDir, { recursive: true });

const drivers: DbDriver[] = [];
if (args.only !== "hq") drivers.push(new VictoriaMetricsDriver());
if (args.only !== "vm") drivers.push(new HqtsDriver(repoRoot, args["hq-bin"]));

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

function realDataPath(): string {
  if (args.file !== undefined) return resolve(args.file);
  const candidates = [join(repoRoot, "data", "node-exporter-1s-55min.jsonl.gz"), "/work/shared/data/node-exporter-1s-55min.jsonl.gz"];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`real data not found (tried ${candidates.join(", ")}); pass --file PATH`);
}

function prepare(name: string): Dataset {
  if (name === "real") return loadJsonLinesFile(realDataPath(), "real", maxPerRequest);
  return buildSyntheticDataset(
    { series: posInt("series", args.series), samplesPerSeries: posInt("samples", args.samples), seed: posInt("seed", args.seed, 0), startMs: DEFAULT_SYNTHETIC_START_MS },
    maxPerRequest,
  );
}

async function withDb<T>(driver: DbDriver, dir: string, logFile: string, sockets: number, body: (db: DbRun) => Promise<T>): Promise<T> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const db = await driver.start(dir, logFile, sockets);
  log(`${driver.label} up (pid ${db.proc.pid}, ${db.client.baseUrl}, ready in ${Math.round(db.startupMs)} ms)`);
  try {
    return await body(db);
  } finally {
    await db.stop();
    log(`${driver.label} stopped`);
    if (!args["keep-data"]) rmSync(dir, { recursive: true, force: true });
  }
}

async function benchOne(driver: DbDriver, d: Dataset, queries: ReadQuery[], version: string): Promise<DbResult> {
  const res: DbResult = { db: driver.kind, label: driver.label, version };
  const logFile = join(runDir, `${d.name}-${driver.kind}.log`);
  res.logFile = logFile;
  try {
    await withDb(driver, join(runDir, `${d.name}-${driver.kind}-data`), logFile, 1, async (db) => {
      res.startupMs = db.startupMs;
      log(`${driver.label}: ingesting ${d.samples.toLocaleString("en-US")} samples in ${d.requests.length} requests, 1 client`);
      res.ingest = await ingest(db.client, d.requests, d.requestSamples, 1);
      log(`${driver.label}: ${Math.round(res.ingest.samplesPerSec).toLocaleString("en-US")} samples/s (${res.ingest.seconds.toFixed(2)} s)`);
      res.diskBeforeFlush = db.disk();
      log(`${driver.label}: flushing`);
      res.flush = await db.flush(d);
      res.disk = db.disk();
      res.bytesPerSample = res.disk.bytes / d.samples;
      res.sampleDirs = db.sampleDirs;
      res.sampleBytesPerSample = db.sampleDirs.reduce((n, k) => n + (res.disk?.byTopLevel[k] ?? 0), 0) / d.samples;
      log(`${driver.label}: ${res.disk.bytes.toLocaleString("en-US")} bytes on disk, ${res.bytesPerSample.toFixed(3)} bytes/sample (flush ${res.flush.seconds.toFixed(2)} s)`);
      const stored = await db.checkStored(d.samples);
      res.stored = stored.details;
      res.storedWarnings = stored.warnings;
      for (const w of stored.warnings) log(`WARNING ${d.name}: ${w}`);
      res.reads = [];
      for (const q of queries) {
        const r = await timeRead(db.client, q, reps, readBudgetMs);
        res.reads.push(r);
        log(`${driver.label}: ${q.id} p50 ${r.p50Ms.toFixed(2)} ms p99 ${r.p99Ms.toFixed(2)} ms over ${r.reps} reps, ${r.samples} samples (expected ${q.expectedSamples})`);
      }
    });
  } catch (e) {
    res.error = (e as Error).stack ?? String(e);
    log(`${driver.label} FAILED: ${(e as Error).message}`);
  }
  return res;
}

async function benchConcurrent(driver: DbDriver, d: Dataset, conc: number, res: DbResult): Promise<void> {
  try {
    await withDb(driver, join(runDir, `${d.name}-${driver.kind}-c${conc}-data`), join(runDir, `${d.name}-${driver.kind}-c${conc}.log`), conc, async (db) => {
      log(`${driver.label}: ingesting again into an empty data dir with ${conc} concurrent clients`);
      res.concurrentIngest = await ingest(db.client, d.requests, d.requestSamples, conc);
      log(`${driver.label}: ${Math.round(res.concurrentIngest.samplesPerSec).toLocaleString("en-US")} samples/s with ${conc} clients`);
    });
  } catch (e) {
    res.concurrentError = (e as Error).stack ?? String(e);
    log(`${driver.label} concurrent ingest FAILED: ${(e as Error).message}`);
  }
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const versions = new Map<string, string>();
  for (const drv of drivers) versions.set(drv.kind, drv.version());
  const env = {
    node: process.version,
    platform: `${platform()} ${release()} ${arch()}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    totalMemBytes: totalmem(),
    loadAverageAtStart: loadavg(),
    versions: Object.fromEntries(versions),
  };
  const busy = (env.loadAverageAtStart[0] ?? 0) > 0.5 * env.cpus;
  if (busy) log(`WARNING: load average ${(env.loadAverageAtStart[0] ?? 0).toFixed(2)} on ${env.cpus} cores: other work is running, figures will be noisy`);
  log(`VictoriaMetrics ${versions.get("vm") ?? "(not run)"}; HQ-TS ${versions.get("hq") ?? "(not run)"}; ${env.cpus} x ${env.cpuModel}; node ${env.node}`);
  const results: DatasetResult[] = [];
  let failed = false;
  for (const name of datasets) {
    const t0 = performance.now();
    log(`preparing data set ${name}`);
    const d = prepare(name);
    const prepareSeconds = (performance.now() - t0) / 1000;
    log(`${name}: ${d.series.length} series, ${d.samples.toLocaleString("en-US")} samples, ${d.requests.length} requests, ${(d.bodyBytes / 1e6).toFixed(1)} MB (${prepareSeconds.toFixed(1)} s to prepare)`);
    const warnings: string[] = [];
    const load = loadavg()[0] ?? 0;
    if (load > 0.5 * env.cpus) warnings.push(`WARNING ${name}: load average ${load.toFixed(2)} on ${env.cpus} cores when this data set started: the machine was busy, figures are noisy`);
    if (d.maxTs > Date.now() + 2 * 86_400_000) {
      warnings.push(`WARNING ${name}: the data ends at ${new Date(d.maxTs).toISOString()}, more than 2 days after this machine's clock; VictoriaMetrics drops such samples as "too big timestamp"`);
    }
    const queries = chooseQueries(d);
    const result: DatasetResult = {
      name,
      description: d.description,
      series: d.series.length,
      samples: d.samples,
      requests: d.requests.length,
      maxSamplesPerRequest: maxPerRequest,
      bodyBytes: d.bodyBytes,
      firstTimestamp: new Date(d.minTs).toISOString(),
      lastTimestamp: new Date(d.maxTs).toISOString(),
      prepareSeconds,
      queries,
      ratios: { reads: {} },
      warnings,
    };
    // Sequential runs, one database at a time, each into an empty data dir.
    for (const drv of drivers) {
      const r = await benchOne(drv, d, queries, versions.get(drv.kind) ?? "");
      if (drv.kind === "hq") result.hq = r;
      else result.vm = r;
      if (r.error !== undefined) failed = true;
      for (const w of r.storedWarnings ?? []) warnings.push(`WARNING ${name}: ${w}`);
    }
    const conc = args.concurrency !== undefined ? posInt("concurrency", args.concurrency, 0) : name === "real" ? 2 : 0;
    if (conc > 0) {
      for (const drv of drivers) {
        const r = drv.kind === "hq" ? result.hq : result.vm;
        if (r === undefined || r.error !== undefined) continue;
        await benchConcurrent(drv, d, conc, r);
        if (r.concurrentError !== undefined) failed = true;
      }
    }
    result.ratios = computeRatios(result);
    warnings.push(...readWarnings(result));
    results.push(result);
    console.log("");
    console.log(formatDataset(result));
  }
  const file = join(outDir, `results-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ startedAt: stamp, environment: env, options: args, datasets: results }, null, 2) + "\n");
  console.log("");
  console.log(`results: ${file}`);
  console.log(`logs: ${runDir}`);
  return failed ? 1 : 0;
}

runMain(main);
