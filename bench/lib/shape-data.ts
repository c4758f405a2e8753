// The request bodies of bench/write-shapes.ts, built once in memory before any
// database starts; every target gets the same bytes in the same order.
//
// - remote write: Prometheus remote write 1.0 (protobuf WriteRequest, snappy
//   block format), scrapes of node_exporter-like and HTTP-service series, one
//   sample per series per request (what a Prometheus server sends);
// - IoT: Influx line protocol, 10 readings of one device per request;
// - bulk: VictoriaMetrics JSON lines, 100 series x 100 samples per request.

import { body as remoteWriteBody, HEADERS as REMOTE_WRITE_HEADERS } from "../../test/helpers/remote-write.js";
import { Prng } from "./prng.js";

export interface WriteReq {
  path: string;
  body: Buffer;
  headers: Record<string, string>;
  samples: number;
}

export interface Workload {
  name: string;
  description: string;
  requests: WriteReq[];
  samples: number;
  series: number;
  bodyBytes: number;
  minTs: number;
  maxTs: number;
  /** Selector that matches this workload's series and nothing else, for the stored-count check. */
  selector: string;
  buildSeconds: number;
}

const sum = (xs: readonly WriteReq[], f: (r: WriteReq) => number): number => xs.reduce((a, r) => a + f(r), 0);

// ---- remote write: scrape targets ----------------------------------------------

/** Series per instance in the remote-write generator (see instanceLabels). */
export const SERIES_PER_INSTANCE = 100;

const CPU_MODES = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"] as const;
/** Share of one CPU per mode (sums to ~1). */
const CPU_MODE_SHARE = [0.78, 0.12, 0.05, 0.02, 0.005, 0.01, 0.005, 0.01] as const;
const FILESYSTEMS = [
  ["/dev/vda1", "ext4", "/"],
  ["/dev/vda15", "vfat", "/boot/efi"],
  ["/dev/vdb1", "xfs", "/var/lib/data"],
  ["tmpfs", "tmpfs", "/run"],
] as const;
const HANDLERS = ["/api/orders", "/api/users", "/api/search", "/health"] as const;
const METHODS = ["GET", "POST"] as const;
const CODES = ["200", "404", "500"] as const;
const CODE_SHARE = [0.95, 0.04, 0.01] as const;
const BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"] as const;
/** Cumulative share of requests at or below each bucket bound. */
const BUCKET_CDF = [0.08, 0.22, 0.48, 0.7, 0.86, 0.95, 0.985, 0.997] as const;

type L = [string, string][];

/**
 * The 100 label sets of instance `inst`, in a fixed order: 32 node_cpu_seconds_total{cpu,mode},
 * 4 node_filesystem_avail_bytes and 4 node_filesystem_size_bytes{device,fstype,mountpoint},
 * 2 node_network_receive_bytes_total{device}, 2 node_hwmon_temp_celsius{chip,sensor},
 * 24 http_requests_total{handler,method,code}, 32 http_request_duration_seconds_bucket{handler,method,le}.
 * 3 to 6 labels each, 5.62 on average.
 */
export function instanceLabels(inst: number): L[] {
  const host = `host-${String(inst).padStart(4, "0")}`;
  const node = (name: string, extra: L): L => [["__name__", name], ["job", "node"], ["instance", `${host}:9100`], ...extra];
  const api = (name: string, extra: L): L => [["__name__", name], ["job", "api"], ["instance", `${host}:8080`], ...extra];
  const out: L[] = [];
  for (let cpu = 0; cpu < 4; cpu++) for (const mode of CPU_MODES) out.push(node("node_cpu_seconds_total", [["cpu", String(cpu)], ["mode", mode]]));
  for (const name of ["node_filesystem_avail_bytes", "node_filesystem_size_bytes"])
    for (const [device, fstype, mountpoint] of FILESYSTEMS) out.push(node(name, [["device", device], ["fstype", fstype], ["mountpoint", mountpoint]]));
  for (const device of ["eth0", "lo"]) out.push(node("node_network_receive_bytes_total", [["device", device]]));
  for (const sensor of ["temp1", "temp2"]) out.push(node("node_hwmon_temp_celsius", [["chip", "platform_coretemp_0"], ["sensor", sensor]]));
  for (const handler of HANDLERS) for (const method of METHODS) for (const code of CODES) out.push(api("http_requests_total", [["handler", handler], ["method", method], ["code", code]]));
  for (const handler of HANDLERS) for (const le of BUCKETS) out.push(api("http_request_duration_seconds_bucket", [["handler", handler], ["method", "GET"], ["le", le]]));
  if (out.length !== SERIES_PER_INSTANCE) throw new Error(`instanceLabels: ${out.length} series, expected ${SERIES_PER_INSTANCE}`);
  return out;
}

/** One instance's values, advanced one scrape at a time (interval seconds): counters grow, gauges walk. */
class InstanceState {
  private readonly v = new Float64Array(SERIES_PER_INSTANCE);
  private readonly cpuBusy: number;
  private readonly reqRate: number[];

  constructor(
    private readonly prng: Prng,
    inst: number,
  ) {
    this.cpuBusy = 0.5 + prng.float();
    this.reqRate = HANDLERS.map((_, i) => (i === 3 ? 0.2 : 2 + prng.float() * 40 * (1 + (inst % 3))));
    let k = 0;
    for (let c = 0; c < 32; c++) this.v[k++] = Math.round(prng.float() * 1e6) / 100; // cpu seconds since boot
    const sizes = [50e9, 0.5e9, 500e9, 4e9].map((s) => Math.round((s * (0.5 + prng.float())) / 4096) * 4096);
    for (let i = 0; i < 4; i++) this.v[k++] = Math.round((sizes[i]! * (0.2 + 0.6 * prng.float())) / 4096) * 4096; // avail
    for (let i = 0; i < 4; i++) this.v[k++] = sizes[i]!; // size, constant
    for (let i = 0; i < 2; i++) this.v[k++] = prng.int(1e6, 1e10); // network bytes
    for (let i = 0; i < 2; i++) this.v[k++] = 40 + Math.round(prng.float() * 200) / 10; // temperature
    for (let i = 0; i < 24 + 32; i++) this.v[k++] = 0; // http counters and buckets start at 0 (process start)
  }

  next(intervalS: number): Float64Array {
    const p = this.prng;
    const v = this.v;
    let k = 0;
    for (let cpu = 0; cpu < 4; cpu++)
      for (let m = 0; m < CPU_MODES.length; m++) {
        const share = m === 0 ? 1 - (1 - CPU_MODE_SHARE[0]) * this.cpuBusy : CPU_MODE_SHARE[m]! * this.cpuBusy;
        v[k] = Math.round((v[k]! + Math.max(0, share * intervalS * (1 + 0.15 * p.normal()))) * 100) / 100;
        k++;
      }
    for (let i = 0; i < 4; i++, k++) v[k] = Math.max(0, v[k]! + Math.round(p.normal() * 2e6 / 4096) * 4096);
    k += 4; // sizes stay
    for (let i = 0; i < 2; i++, k++) v[k] = v[k]! + Math.round(Math.abs(p.normal()) * (i === 0 ? 2e5 : 2e4) * intervalS);
    for (let i = 0; i < 2; i++, k++) v[k] = Math.round((v[k]! + p.normal() * 0.5) * 10) / 10;
    const handlerTotals: number[] = [];
    for (let h = 0; h < HANDLERS.length; h++) {
      let total = 0;
      for (let m = 0; m < METHODS.length; m++)
        for (let c = 0; c < CODES.length; c++, k++) {
          const n = Math.max(0, Math.round(this.reqRate[h]! * intervalS * CODE_SHARE[c]! * (m === 0 ? 0.8 : 0.2) * (1 + 0.2 * p.normal())));
          v[k] = v[k]! + n;
          if (m === 0) total += n;
        }
      handlerTotals.push(total);
    }
    for (let h = 0; h < HANDLERS.length; h++) {
      let prev = 0;
      for (let b = 0; b < BUCKETS.length; b++, k++) {
        const inc = Math.max(prev, Math.round(handlerTotals[h]! * BUCKET_CDF[b]!));
        v[k] = v[k]! + inc;
        prev = inc;
      }
    }
    return v;
  }
}

/**
 * `series` series (series / 100 instances), `scrapes` scrapes `intervalMs` apart from startMs; each scrape split into
 * requests of `perRequest` series with one sample each, sent scrape after scrape.
 */
export function remoteWriteWorkload(name: string, o: { series: number; scrapes: number; perRequest: number; intervalMs: number; startMs: number; seed: number }): Workload {
  const t0 = performance.now();
  if (o.series % SERIES_PER_INSTANCE !== 0) throw new Error(`${name}: series must be a multiple of ${SERIES_PER_INSTANCE}`);
  const instances = o.series / SERIES_PER_INSTANCE;
  const prng = new Prng(o.seed);
  const labels: L[] = [];
  const states: InstanceState[] = [];
  for (let i = 0; i < instances; i++) {
    labels.push(...instanceLabels(i));
    states.push(new InstanceState(prng, i));
  }
  const values = new Float64Array(o.series);
  const requests: WriteReq[] = [];
  for (let s = 0; s < o.scrapes; s++) {
    const ts = o.startMs + s * o.intervalMs;
    for (let i = 0; i < instances; i++) values.set(states[i]!.next(o.intervalMs / 1000), i * SERIES_PER_INSTANCE);
    for (let first = 0; first < o.series; first += o.perRequest) {
      const end = Math.min(o.series, first + o.perRequest);
      const ts0 = [];
      for (let k = first; k < end; k++) ts0.push({ labels: labels[k]!, samples: [[values[k]!, ts] as [number, number]] });
      requests.push({ path: "/api/v1/write", body: Buffer.from(remoteWriteBody(ts0)), headers: lowerKeys(REMOTE_WRITE_HEADERS), samples: end - first });
    }
  }
  const labelCount = labels.reduce((a, l) => a + l.length, 0);
  return {
    name,
    description: `Prometheus remote write 1.0 (protobuf + snappy): ${o.series.toLocaleString("en-US")} series (${(labelCount / o.series).toFixed(2)} labels avg) x ${o.scrapes} scrapes ${o.intervalMs / 1000} s apart, ${o.perRequest} series x 1 sample per request`,
    requests,
    samples: sum(requests, (r) => r.samples),
    series: o.series,
    bodyBytes: sum(requests, (r) => r.body.length),
    minTs: o.startMs,
    maxTs: o.startMs + (o.scrapes - 1) * o.intervalMs,
    selector: '{job=~"node|api"}',
    buildSeconds: (performance.now() - t0) / 1000,
  };
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

// ---- IoT: Influx line protocol ------------------------------------------------------

export const IOT_LINES_PER_REQUEST = 10;

/**
 * Request i: device i mod `devices`, its round r = floor(i / devices) of 10 readings 1 s apart (timestamps
 * startMs + (10r + j) s), fields temp and hum: 20 samples. Each carries its own Idempotency-Key.
 */
export function iotWorkload(o: { devices: number; requests: number; startMs: number; seed: number }): Workload {
  const t0 = performance.now();
  const prng = new Prng(o.seed);
  const temp = new Float64Array(o.devices);
  const hum = new Float64Array(o.devices);
  const tags: string[] = [];
  for (let d = 0; d < o.devices; d++) {
    temp[d] = 15 + prng.float() * 15;
    hum[d] = 30 + prng.float() * 40;
    tags.push(`sensor,device=d${String(d).padStart(4, "0")},site=site-${String(d % 40).padStart(2, "0")}`);
  }
  const requests: WriteReq[] = [];
  for (let i = 0; i < o.requests; i++) {
    const d = i % o.devices;
    const round = Math.floor(i / o.devices);
    let s = "";
    for (let j = 0; j < IOT_LINES_PER_REQUEST; j++) {
      temp[d] = Math.min(45, Math.max(-10, temp[d]! + prng.normal() * 0.05));
      hum[d] = Math.min(100, Math.max(0, hum[d]! + prng.normal() * 0.2));
      s += `${tags[d]} temp=${temp[d]!.toFixed(2)},hum=${hum[d]!.toFixed(1)} ${o.startMs + (round * IOT_LINES_PER_REQUEST + j) * 1000}\n`;
    }
    requests.push({
      path: "/api/v2/write?precision=ms",
      body: Buffer.from(s, "utf8"),
      headers: { "content-type": "text/plain; charset=utf-8", "idempotency-key": `ws-iot-${i}` },
      samples: IOT_LINES_PER_REQUEST * 2,
    });
  }
  const rounds = Math.ceil(o.requests / o.devices);
  return {
    name: "iot",
    description: `Influx line protocol (POST /api/v2/write?precision=ms): ${o.devices} devices, ${IOT_LINES_PER_REQUEST} lines of one device per request (fields temp, hum: 20 samples), each request with its own Idempotency-Key; a pool of ${o.requests.toLocaleString("en-US")} requests taken in order`,
    requests,
    samples: sum(requests, (r) => r.samples),
    series: Math.min(o.devices, o.requests) * 2,
    bodyBytes: sum(requests, (r) => r.body.length),
    minTs: o.startMs,
    maxTs: o.startMs + (rounds * IOT_LINES_PER_REQUEST - 1) * 1000,
    selector: '{__name__=~"sensor_.*"}',
    buildSeconds: (performance.now() - t0) / 1000,
  };
}

// ---- bulk: VictoriaMetrics JSON lines --------------------------------------------------

const BULK_LINES = 100;
const BULK_PER_LINE = 100;
const BULK_PER_REQUEST = BULK_LINES * BULK_PER_LINE;
const BULK_STEP_MS = 10_000;

/**
 * `samples` samples as requests of 100 series x 100 samples (10 s apart): request r covers series block r mod
 * (series/100) and the floor(r / blocks)-th time chunk of it; 2-decimal random walks, `job="backfill"`.
 */
export function bulkWorkload(o: { samples: number; series: number; startMs: number; seed: number }): Workload {
  const t0 = performance.now();
  if (o.samples % BULK_PER_REQUEST !== 0) throw new Error(`bulk: samples must be a multiple of ${BULK_PER_REQUEST}`);
  if (o.series % BULK_LINES !== 0) throw new Error(`bulk: series must be a multiple of ${BULK_LINES}`);
  const blocks = o.series / BULK_LINES;
  const prng = new Prng(o.seed);
  const heads: string[] = [];
  const level = new Float64Array(o.series);
  for (let s = 0; s < o.series; s++) {
    const metric = { __name__: `backfill_metric_${s % 10}`, job: "backfill", instance: `meter-${String(Math.floor(s / 10)).padStart(4, "0")}`, region: `r${s % 4}` };
    heads.push(`{"metric":${JSON.stringify(metric)},"values":[`);
    level[s] = Math.round(prng.float() * 100_000) / 100;
  }
  const requests: WriteReq[] = [];
  for (let r = 0; r < o.samples / BULK_PER_REQUEST; r++) {
    const block = r % blocks;
    const chunk = Math.floor(r / blocks);
    const lines: string[] = [];
    for (let l = 0; l < BULK_LINES; l++) {
      const s = block * BULK_LINES + l;
      const vs: string[] = [];
      const ts: number[] = [];
      for (let j = 0; j < BULK_PER_LINE; j++) {
        level[s] = Math.round((level[s]! + prng.normal() * 0.5) * 100) / 100;
        vs.push(String(level[s]));
        ts.push(o.startMs + (chunk * BULK_PER_LINE + j) * BULK_STEP_MS);
      }
      lines.push(`${heads[s]}${vs.join(",")}],"timestamps":[${ts.join(",")}]}`);
    }
    requests.push({ path: "/api/v1/import", body: Buffer.from(lines.join("\n") + "\n", "utf8"), headers: { "content-type": "application/json" }, samples: BULK_PER_REQUEST });
  }
  const w: Workload = { name: "bulk", description: "", requests, samples: 0, series: o.series, bodyBytes: 0, minTs: o.startMs, maxTs: o.startMs, selector: '{job="backfill"}', buildSeconds: 0 };
  return { ...bulkPrefix(w, o.samples), buildSeconds: (performance.now() - t0) / 1000 };
}

/** The first `samples` samples of a bulk workload (whole requests): the bulk shape's part of a larger build. */
export function bulkPrefix(w: Workload, samples: number): Workload {
  const requests = w.requests.slice(0, Math.ceil(samples / BULK_PER_REQUEST));
  const blocks = w.series / BULK_LINES;
  const n = sum(requests, (r) => r.samples);
  const series = Math.min(w.series, requests.length * BULK_LINES);
  const chunks = Math.ceil(requests.length / blocks);
  return {
    ...w,
    description: `VictoriaMetrics JSON lines (POST /api/v1/import): ${n.toLocaleString("en-US")} samples over ${series.toLocaleString("en-US")} series, ${BULK_LINES} series x ${BULK_PER_LINE} samples (${BULK_STEP_MS / 1000} s apart) per request`,
    requests,
    samples: n,
    series,
    bodyBytes: sum(requests, (r) => r.body.length),
    maxTs: w.minTs + (chunks * BULK_PER_LINE - 1) * BULK_STEP_MS,
  };
}
