// Deterministic synthetic metrics at scale, in the same JSON-lines format as
// the real recording. Scrape targets of five kinds (node_exporter, an HTTP API
// service, an IoT sensor gateway, postgres_exporter, redis_exporter) with realistic metric families
// and label fan-out. Every series of one target shares that target's scrape
// timestamps (interval 15 s or 10 s per job, with a per-target phase and a few
// ms of jitter), as a Prometheus scrape would produce. Value kinds: counters
// (integer and 2-decimal, with occasional target restarts resetting them),
// gauges as 2-decimal random walks, integer gauges (bytes, pages, counts)
// as random walks, histograms (cumulative buckets + sum + count) and constants.
// Same options, same bytes.

import { Prng } from "./prng.js";
import { RequestPacker, type Dataset, type Labels, type SeriesInfo } from "./dataset.js";

export interface SyntheticOptions {
  series: number;
  samplesPerSeries: number;
  seed: number;
  /** First scrape time, ms since epoch. */
  startMs: number;
}

/** 2026-11-24T00:00:00Z: the day of the real recording, so both sets sit in one month partition. */
export const DEFAULT_SYNTHETIC_START_MS = Date.UTC(2026, 10, 24, 0, 0, 0);

export interface SyntheticSeries {
  labels: Labels;
  /** JSON-encoded values array, e.g. "[1,2.5,3]". */
  valuesJson: string;
  timestamps: readonly number[];
  /** JSON-encoded timestamps array, shared by the target's series. */
  timestampsJson: string;
  kind: Kind;
}

export type Kind = "counter" | "gauge-2dec" | "gauge-int" | "histogram" | "constant";

interface Target {
  job: string;
  base: Labels;
  interval: number;
  ts: number[];
  tsJson: string;
  restartAt: number;
}

interface Spec {
  labels: Labels;
  kind: Kind;
  /** Produces the values for this series (called only when the series is kept). */
  gen: () => number[];
}

const JOBS = [
  { job: "node", weight: 0.45, interval: 15_000, port: 9100, host: "node" },
  { job: "api", weight: 0.2, interval: 10_000, port: 8080, host: "api" },
  { job: "sensors", weight: 0.15, interval: 10_000, port: 9091, host: "gw" },
  { job: "postgres", weight: 0.1, interval: 15_000, port: 9187, host: "pg" },
  { job: "redis", weight: 0.1, interval: 10_000, port: 9121, host: "redis" },
] as const;

const REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"] as const;

export function syntheticSummary(o: SyntheticOptions): string {
  return `${o.series.toLocaleString("en-US")} series x ${o.samplesPerSeries} samples, seed ${o.seed}, start ${new Date(o.startMs).toISOString()}, jobs node, api, sensors, postgres, redis (15 s / 10 s)`;
}

/**
 * Generates the series one target at a time, calling emit for each, in a
 * fixed order. Returns counts per value kind.
 */
export function generateSynthetic(o: SyntheticOptions, emit: (s: SyntheticSeries) => void): Record<Kind, number> {
  if (!Number.isInteger(o.series) || o.series < 1) throw new Error(`series must be a positive integer, got ${o.series}`);
  if (!Number.isInteger(o.samplesPerSeries) || o.samplesPerSeries < 1) throw new Error(`samples per series must be a positive integer, got ${o.samplesPerSeries}`);
  const rng = new Prng(o.seed);
  const produced = new Map<string, number>();
  const hostIndex = new Map<string, number>();
  const kinds: Record<Kind, number> = { counter: 0, "gauge-2dec": 0, "gauge-int": 0, histogram: 0, constant: 0 };
  let remaining = o.series;
  while (remaining > 0) {
    // Next job: the one furthest below its share of the series produced so far.
    let best: (typeof JOBS)[number] = JOBS[0];
    let bestScore = Number.POSITIVE_INFINITY;
    for (const j of JOBS) {
      const score = ((produced.get(j.job) ?? 0) + 1) / j.weight;
      if (score < bestScore) {
        bestScore = score;
        best = j;
      }
    }
    const idx = hostIndex.get(best.job) ?? 0;
    hostIndex.set(best.job, idx + 1);
    const region = rng.pick(REGIONS);
    const env = rng.chance(0.8) ? "prod" : "staging";
    const instance = `${best.host}-${String(idx).padStart(4, "0")}.${region}.example.net:${best.port}`;
    const phase = rng.int(0, best.interval - 1);
    const ts: number[] = [];
    for (let i = 0; i < o.samplesPerSeries; i++) {
      // Most scrapes land on the dot; some are a few ms late, as on a busy host.
      const jitter = rng.chance(0.25) ? rng.int(1, 12) : 0;
      ts.push(o.startMs + phase + i * best.interval + jitter);
    }
    const target: Target = {
      job: best.job,
      base: { job: best.job, instance, env, region },
      interval: best.interval,
      ts,
      tsJson: `[${ts.join(",")}]`,
      restartAt: o.samplesPerSeries > 2 && rng.chance(0.03) ? rng.int(1, o.samplesPerSeries - 1) : -1,
    };
    const specs = specsFor(target, rng, o.samplesPerSeries);
    const keep = Math.min(specs.length, remaining);
    for (let k = 0; k < keep; k++) {
      const spec = specs[k];
      if (spec === undefined) break;
      const values = spec.gen();
      kinds[spec.kind]++;
      emit({ labels: spec.labels, valuesJson: `[${values.join(",")}]`, timestamps: ts, timestampsJson: target.tsJson, kind: spec.kind });
    }
    remaining -= keep;
    produced.set(best.job, (produced.get(best.job) ?? 0) + keep);
  }
  return kinds;
}

// ---- value generators -----------------------------------------------------

/** Monotone counter in integer units, reset to zero at the target's restart. */
function counterUnits(rng: Prng, n: number, start: number, perScrape: number, noise: number, restartAt: number): number[] {
  const out = new Array<number>(n);
  let v = start;
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      let inc: number;
      if (perScrape < 1) inc = rng.chance(perScrape) ? 1 : 0;
      else inc = Math.max(0, Math.round(perScrape * (1 + noise * rng.normal())));
      v = i === restartAt ? inc : v + inc;
    }
    out[i] = v;
  }
  return out;
}

/** Random walk in integer units, clamped to [min, max]. */
function walkUnits(rng: Prng, n: number, start: number, sigma: number, min: number, max: number): number[] {
  const out = new Array<number>(n);
  let v = start;
  for (let i = 0; i < n; i++) {
    if (i > 0) v = Math.min(max, Math.max(min, v + Math.round(sigma * rng.normal())));
    out[i] = v;
  }
  return out;
}

const scale = (xs: number[], div: number): number[] => xs.map((x) => x / div);
const times = (xs: number[], mul: number): number[] => xs.map((x) => x * mul);
const constant = (n: number, v: number): number[] => new Array<number>(n).fill(v);

// ---- metric families per job ---------------------------------------------

function specsFor(t: Target, rng: Prng, n: number): Spec[] {
  switch (t.job) {
    case "node":
      return nodeSpecs(t, rng, n);
    case "api":
      return apiSpecs(t, rng, n);
    case "sensors":
      return sensorSpecs(t, rng, n);
    case "postgres":
      return postgresSpecs(t, rng, n);
    default:
      return redisSpecs(t, rng, n);
  }
}

function lbl(t: Target, name: string, extra: Labels = {}): Labels {
  return { __name__: name, ...t.base, ...extra };
}

function counter2(t: Target, rng: Prng, n: number, labels: Labels, ratePerSec: number, startSec: number): Spec {
  // 2-decimal counter (seconds and the like), kept in hundredths.
  return { labels, kind: "counter", gen: () => scale(counterUnits(rng, n, Math.round(startSec * 100), (ratePerSec * 100 * t.interval) / 1000, 0.3, t.restartAt), 100) };
}

function counterInt(t: Target, rng: Prng, n: number, labels: Labels, ratePerSec: number, start: number): Spec {
  return { labels, kind: "counter", gen: () => counterUnits(rng, n, Math.round(start), (ratePerSec * t.interval) / 1000, 0.4, t.restartAt) };
}

function gauge2(rng: Prng, n: number, labels: Labels, start: number, sigma: number, min: number, max: number): Spec {
  return { labels, kind: "gauge-2dec", gen: () => scale(walkUnits(rng, n, Math.round(start * 100), sigma * 100, Math.round(min * 100), Math.round(max * 100)), 100) };
}

function gaugeInt(rng: Prng, n: number, labels: Labels, start: number, sigma: number, min: number, max: number, unit = 1): Spec {
  return { labels, kind: "gauge-int", gen: () => times(walkUnits(rng, n, Math.round(start / unit), sigma / unit, Math.round(min / unit), Math.round(max / unit)), unit) };
}

function konst(n: number, labels: Labels, v: number): Spec {
  return { labels, kind: "constant", gen: () => constant(n, v) };
}

function histogram(t: Target, rng: Prng, n: number, name: string, extra: Labels, ratePerSec: number, meanSec: number): Spec[] {
  const les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
  // Cumulative share of requests at or below each bound (log-normal-ish around meanSec).
  const cdf = les.map((le) => (le === "+Inf" ? 1 : 1 / (1 + Math.pow(meanSec / Number(le), 2.2))));
  let cache: { buckets: number[][]; sum: number[]; count: number[] } | null = null;
  const compute = (): { buckets: number[][]; sum: number[]; count: number[] } => {
    if (cache) return cache;
    const count = counterUnits(rng, n, rng.int(1_000, 5_000_000), (ratePerSec * t.interval) / 1000, 0.35, t.restartAt);
    const buckets = cdf.map(() => new Array<number>(n).fill(0));
    const sumMicros = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) {
      const c = count[i] ?? 0;
      const prev = i > 0 && i !== t.restartAt ? (count[i - 1] ?? 0) : 0;
      const inc = c - prev;
      for (let j = 0; j < cdf.length; j++) {
        const b = buckets[j];
        const f = cdf[j] ?? 1;
        if (b === undefined) continue;
        if (i === 0) b[i] = Math.round(c * f);
        else if (i === t.restartAt) b[i] = Math.round(inc * f);
        else b[i] = (b[i - 1] ?? 0) + Math.round(inc * f);
      }
      const prevSum = i === 0 ? Math.round(c * meanSec * 1e6) : i === t.restartAt ? 0 : (sumMicros[i - 1] ?? 0);
      sumMicros[i] = i === 0 ? prevSum : prevSum + Math.max(0, Math.round(inc * meanSec * 1e6 * (1 + 0.2 * rng.normal())));
    }
    cache = { buckets, sum: scale(sumMicros, 1e6), count };
    return cache;
  };
  const specs: Spec[] = les.map((le, j) => ({ labels: lbl(t, `${name}_bucket`, { ...extra, le }), kind: "histogram" as const, gen: () => compute().buckets[j] ?? [] }));
  specs.push({ labels: lbl(t, `${name}_sum`, extra), kind: "histogram", gen: () => compute().sum });
  specs.push({ labels: lbl(t, `${name}_count`, extra), kind: "histogram", gen: () => compute().count });
  return specs;
}

function nodeSpecs(t: Target, rng: Prng, n: number): Spec[] {
  const s: Spec[] = [];
  const cpus = rng.pick([2, 4, 8]);
  const uptime = rng.int(3_600, 90 * 86_400);
  const modes: [string, number][] = [["idle", 0.85], ["iowait", 0.01], ["irq", 0], ["nice", 0.001], ["softirq", 0.005], ["steal", 0], ["system", 0.04], ["user", 0.09]];
  for (let c = 0; c < cpus; c++) {
    for (const [mode, rate] of modes) {
      const r = rate * (0.5 + rng.float());
      s.push(counter2(t, rng, n, lbl(t, "node_cpu_seconds_total", { cpu: String(c), mode }), r, uptime * r));
    }
  }
  const load = 0.2 + rng.float() * cpus;
  s.push(gauge2(rng, n, lbl(t, "node_load1"), load, 0.15, 0, 64));
  s.push(gauge2(rng, n, lbl(t, "node_load5"), load, 0.06, 0, 64));
  s.push(gauge2(rng, n, lbl(t, "node_load15"), load, 0.03, 0, 64));
  const memTotal = rng.pick([8, 16, 32, 64]) * 1024 ** 3;
  s.push(konst(n, lbl(t, "node_memory_MemTotal_bytes"), memTotal));
  s.push(konst(n, lbl(t, "node_memory_SwapTotal_bytes"), 2 * 1024 ** 3));
  for (const [m, frac, sigma] of [["MemFree", 0.2, 4e6], ["MemAvailable", 0.5, 4e6], ["Cached", 0.3, 1e6], ["Buffers", 0.02, 2e5], ["Active", 0.35, 3e6], ["Inactive", 0.25, 2e6], ["Dirty", 0.0005, 3e5], ["SwapFree", 0.9, 4096]] as const) {
    s.push(gaugeInt(rng, n, lbl(t, `node_memory_${m}_bytes`), memTotal * frac, sigma, 0, memTotal, 4096));
  }
  const mounts: [string, string, string][] = [["/dev/sda1", "/", "ext4"], ["/dev/sda2", "/boot", "ext4"], ["/dev/sdb1", "/data", "xfs"], ["overlay", "/var/lib/docker", "overlay"]];
  for (const [device, mountpoint, fstype] of mounts) {
    const extra = { device, mountpoint, fstype };
    const size = rng.pick([1, 20, 100, 500]) * 1024 ** 3;
    const avail = size * (0.1 + 0.8 * rng.float());
    s.push(konst(n, lbl(t, "node_filesystem_size_bytes", extra), size));
    s.push(gaugeInt(rng, n, lbl(t, "node_filesystem_avail_bytes", extra), avail, 2e5, 0, size, 4096));
    s.push(gaugeInt(rng, n, lbl(t, "node_filesystem_free_bytes", extra), avail * 1.05, 2e5, 0, size, 4096));
    s.push(konst(n, lbl(t, "node_filesystem_files", extra), Math.round(size / 16384)));
    s.push(konst(n, lbl(t, "node_filesystem_readonly", extra), 0));
  }
  for (const [device, bps] of [["eth0", 2e6], ["lo", 5e4], ["docker0", 1e5]] as const) {
    for (const dir of ["receive", "transmit"]) {
      const extra = { device };
      s.push(counterInt(t, rng, n, lbl(t, `node_network_${dir}_bytes_total`, extra), bps * rng.float(), uptime * bps * 0.3));
      s.push(counterInt(t, rng, n, lbl(t, `node_network_${dir}_packets_total`, extra), (bps / 900) * rng.float(), (uptime * bps) / 3000));
      s.push(counterInt(t, rng, n, lbl(t, `node_network_${dir}_errs_total`, extra), 0.0005, rng.int(0, 3)));
      s.push(counterInt(t, rng, n, lbl(t, `node_network_${dir}_drop_total`, extra), 0.002, rng.int(0, 50)));
    }
  }
  for (const device of ["sda", "sdb"]) {
    const extra = { device };
    s.push(counterInt(t, rng, n, lbl(t, "node_disk_reads_completed_total", extra), 20 * rng.float(), uptime * 5));
    s.push(counterInt(t, rng, n, lbl(t, "node_disk_writes_completed_total", extra), 40 * rng.float(), uptime * 10));
    s.push(counterInt(t, rng, n, lbl(t, "node_disk_read_bytes_total", extra), 4096 * 20 * rng.float(), uptime * 4096 * 5));
    s.push(counterInt(t, rng, n, lbl(t, "node_disk_written_bytes_total", extra), 4096 * 40 * rng.float(), uptime * 4096 * 10));
    s.push(counter2(t, rng, n, lbl(t, "node_disk_io_time_seconds_total", extra), 0.02 * rng.float(), uptime * 0.01));
  }
  s.push(counterInt(t, rng, n, lbl(t, "node_context_switches_total"), 3000 * cpus, uptime * 2000 * cpus));
  s.push(counterInt(t, rng, n, lbl(t, "node_intr_total"), 1500 * cpus, uptime * 1000 * cpus));
  s.push(counterInt(t, rng, n, lbl(t, "node_forks_total"), 5, uptime * 4));
  const boot = Math.floor((t.ts[0] ?? 0) / 1000) - uptime;
  s.push(konst(n, lbl(t, "node_boot_time_seconds"), boot));
  s.push({ labels: lbl(t, "node_time_seconds"), kind: "counter", gen: () => t.ts.map((ms) => ms / 1000) });
  s.push(konst(n, lbl(t, "node_uname_info", { machine: "x86_64", release: rng.pick(["6.1.0-26-amd64", "6.1.0-28-amd64", "5.10.0-32-amd64"]), sysname: "Linux" }), 1));
  s.push(konst(n, lbl(t, "node_exporter_build_info", { version: "1.5.0", goversion: "go1.19.3" }), 1));
  for (let k = 1; k <= 4; k++) {
    s.push(gauge2(rng, n, lbl(t, "node_hwmon_temp_celsius", { chip: "platform_coretemp_0", sensor: `temp${k}` }), 38 + 15 * rng.float(), 0.3, 20, 100));
  }
  s.push(gaugeInt(rng, n, lbl(t, "node_entropy_available_bits"), 256, 2, 0, 4096));
  s.push(konst(n, lbl(t, "up"), 1));
  s.push(konst(n, lbl(t, "scrape_samples_scraped"), s.length + 1));
  return s;
}

function apiSpecs(t: Target, rng: Prng, n: number): Spec[] {
  const s: Spec[] = [];
  const handlers = ["/api/v1/users", "/api/v1/orders", "/api/v1/items", "/login", "/healthz", "/metrics"];
  const uptime = rng.int(600, 30 * 86_400);
  for (const handler of handlers) {
    const rps = rng.float() * 50;
    for (const method of ["GET", "POST"]) {
      for (const [code, share] of [["200", 0.95], ["404", 0.04], ["500", 0.002]] as const) {
        const r = rps * share * (method === "GET" ? 0.8 : 0.2);
        s.push(counterInt(t, rng, n, lbl(t, "http_requests_total", { handler, method, code }), r, uptime * r));
      }
    }
  }
  for (const handler of handlers) {
    s.push(...histogram(t, rng, n, "http_request_duration_seconds", { handler }, rng.float() * 40, 0.01 + rng.float() * 0.3));
  }
  s.push(counter2(t, rng, n, lbl(t, "process_cpu_seconds_total"), 0.3 * rng.float(), uptime * 0.1));
  s.push(gaugeInt(rng, n, lbl(t, "process_resident_memory_bytes"), rng.int(50, 900) * 1024 ** 2, 1e6, 1e7, 4e9, 4096));
  s.push(gaugeInt(rng, n, lbl(t, "process_open_fds"), rng.int(20, 300), 2, 5, 65_536));
  s.push(konst(n, lbl(t, "process_max_fds"), 1_048_576));
  s.push(konst(n, lbl(t, "process_start_time_seconds"), Math.floor((t.ts[0] ?? 0) / 1000) - uptime));
  s.push(gaugeInt(rng, n, lbl(t, "go_goroutines"), rng.int(20, 400), 3, 5, 100_000));
  s.push(gaugeInt(rng, n, lbl(t, "go_memstats_heap_alloc_bytes"), rng.int(10, 300) * 1024 ** 2, 5e6, 1e6, 4e9, 8));
  s.push(counterInt(t, rng, n, lbl(t, "go_gc_duration_seconds_count"), 0.2, uptime * 0.2));
  s.push(konst(n, lbl(t, "go_info", { version: "go1.21.5" }), 1));
  s.push(konst(n, lbl(t, "up"), 1));
  return s;
}

function sensorSpecs(t: Target, rng: Prng, n: number): Spec[] {
  // An IoT gateway exporting 2-decimal readings of the sensors behind it.
  const s: Spec[] = [];
  const site = rng.pick(["plant-a", "plant-b", "warehouse-3", "lab"]);
  const quantities: [string, number, number, number, number][] = [
    ["sensor_temperature_celsius", 21, 0.05, -40, 85],
    ["sensor_relative_humidity_percent", 45, 0.2, 0, 100],
    ["sensor_pressure_hpa", 1013, 0.1, 900, 1100],
    ["sensor_battery_volts", 3.6, 0.01, 2.5, 4.2],
  ];
  for (let k = 0; k < 64; k++) {
    const sensor = `s${String(k).padStart(3, "0")}`;
    for (const [name, mid, sigma, min, max] of quantities) {
      s.push(gauge2(rng, n, lbl(t, name, { site, sensor }), mid * (0.9 + 0.2 * rng.float()), sigma, min, max));
    }
  }
  s.push(counterInt(t, rng, n, lbl(t, "gateway_packets_received_total"), 25, rng.int(1e5, 1e8)));
  s.push(counterInt(t, rng, n, lbl(t, "gateway_packets_crc_errors_total"), 0.01, rng.int(0, 100)));
  s.push(konst(n, lbl(t, "up"), 1));
  return s;
}

function postgresSpecs(t: Target, rng: Prng, n: number): Spec[] {
  const s: Spec[] = [];
  const uptime = rng.int(3_600, 120 * 86_400);
  const dbs = ["postgres", "app", "analytics", "template1"];
  const stats: [string, number][] = [["xact_commit", 200], ["xact_rollback", 1], ["blks_read", 500], ["blks_hit", 20_000], ["tup_returned", 50_000], ["tup_fetched", 10_000], ["tup_inserted", 300], ["tup_updated", 100], ["tup_deleted", 20], ["deadlocks", 0.0001]];
  for (const datname of dbs) {
    const activity = datname === "app" ? 1 : datname === "analytics" ? 0.3 : datname === "postgres" ? 0.01 : 0;
    for (const [stat, rate] of stats) {
      const r = rate * activity * (0.5 + rng.float());
      s.push(counterInt(t, rng, n, lbl(t, `pg_stat_database_${stat}`, { datname }), r, uptime * r));
    }
    s.push(gaugeInt(rng, n, lbl(t, "pg_stat_database_numbackends", { datname }), Math.round(40 * activity), activity > 0.1 ? 2 : 0, 0, 500));
    s.push(gaugeInt(rng, n, lbl(t, "pg_database_size_bytes", { datname }), rng.int(8, 200_000) * 1024 ** 2 * (activity + 0.01), activity * 2e5, 8e6, 1e13, 8192));
    for (const mode of ["accesssharelock", "rowsharelock", "rowexclusivelock", "sharelock", "exclusivelock", "accessexclusivelock"]) {
      s.push(gaugeInt(rng, n, lbl(t, "pg_locks_count", { datname, mode }), 0, activity > 0.1 && mode.startsWith("row") ? 1.5 : 0, 0, 10_000));
    }
  }
  for (const [setting, v] of [["max_connections", 500], ["shared_buffers_bytes", 4 * 1024 ** 3], ["work_mem_bytes", 64 * 1024 ** 2], ["effective_cache_size_bytes", 12 * 1024 ** 3], ["max_wal_size_bytes", 1024 ** 3], ["checkpoint_timeout_seconds", 300], ["random_page_cost", 1.1], ["autovacuum", 1]] as const) {
    s.push(konst(n, lbl(t, `pg_settings_${setting}`), v));
  }
  s.push(konst(n, lbl(t, "pg_up"), 1));
  s.push(konst(n, lbl(t, "up"), 1));
  return s;
}

function redisSpecs(t: Target, rng: Prng, n: number): Spec[] {
  const s: Spec[] = [];
  const uptime = rng.int(600, 60 * 86_400);
  for (const cmd of ["get", "set", "del", "incr", "expire", "hget", "hset", "lpush", "rpop", "zadd", "zrange", "mget", "ping", "info", "exists"]) {
    const r = rng.float() * (cmd === "get" ? 2000 : 200);
    s.push(counterInt(t, rng, n, lbl(t, "redis_commands_total", { cmd }), r, uptime * r));
    s.push(counter2(t, rng, n, lbl(t, "redis_commands_duration_seconds_total", { cmd }), r * 2e-6, uptime * r * 2e-6));
  }
  s.push(gaugeInt(rng, n, lbl(t, "redis_connected_clients"), rng.int(5, 500), 2, 1, 10_000));
  s.push(gaugeInt(rng, n, lbl(t, "redis_memory_used_bytes"), rng.int(10, 8000) * 1024 ** 2, 2e5, 1e6, 1e11, 8));
  s.push(counterInt(t, rng, n, lbl(t, "redis_keyspace_hits_total"), 900 * rng.float(), uptime * 400));
  s.push(counterInt(t, rng, n, lbl(t, "redis_keyspace_misses_total"), 90 * rng.float(), uptime * 40));
  s.push(counterInt(t, rng, n, lbl(t, "redis_expired_keys_total"), 10 * rng.float(), uptime * 5));
  for (let db = 0; db < 4; db++) {
    s.push(gaugeInt(rng, n, lbl(t, "redis_db_keys", { db: `db${db}` }), db === 0 ? rng.int(1_000, 5_000_000) : rng.int(0, 1000), db === 0 ? 50 : 0, 0, 1e9));
  }
  s.push({ labels: lbl(t, "redis_uptime_in_seconds"), kind: "counter", gen: () => t.ts.map((ms) => uptime + Math.floor((ms - (t.ts[0] ?? 0)) / 1000)) });
  s.push(konst(n, lbl(t, "redis_up"), 1));
  s.push(konst(n, lbl(t, "up"), 1));
  return s;
}

/** Generates the synthetic set straight into request bodies (nothing is written to disk). */
export function buildSyntheticDataset(o: SyntheticOptions, maxSamplesPerRequest: number): Dataset & { kinds: Record<Kind, number> } {
  const packer = new RequestPacker(maxSamplesPerRequest);
  const series: SeriesInfo[] = [];
  let samples = 0;
  let minTs = Number.POSITIVE_INFINITY;
  let maxTs = Number.NEGATIVE_INFINITY;
  const kinds = generateSynthetic(o, (s) => {
    packer.add(syntheticLine(s), s.timestamps.length);
    series.push({ labels: s.labels, timestamps: s.timestamps });
    samples += s.timestamps.length;
    const first = s.timestamps[0];
    const last = s.timestamps[s.timestamps.length - 1];
    if (first !== undefined && first < minTs) minTs = first;
    if (last !== undefined && last > maxTs) maxTs = last;
  });
  packer.finish();
  return {
    name: "synthetic",
    description: `${syntheticSummary(o)}; series by kind: ${Object.entries(kinds)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    series,
    requests: packer.requests,
    requestSamples: packer.requestSamples,
    samples,
    bodyBytes: packer.requests.reduce((n, b) => n + b.length, 0),
    minTs,
    maxTs,
    kinds,
  };
}

export function syntheticLine(s: SyntheticSeries): string {
  return `{"metric":${JSON.stringify(s.labels)},"values":${s.valuesJson},"timestamps":${s.timestampsJson}}`;
}
