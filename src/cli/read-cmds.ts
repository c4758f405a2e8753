// `hqts export`, `hqts query` (selector only until PromQL lands), `hqts series`, `hqts labels`, `hqts gaps`,
// `hqts completeness`.

import { CliError, describeFailure, request, streamTo } from "./http.js";
import type { GapView } from "../server/gap-routes.js";

export interface ReadOptions {
  url: string;
  match: string[];
  start?: string;
  end?: string;
  timeoutMs: number;
}

function readParams(opts: ReadOptions, extra: Record<string, string | undefined> = {}): URLSearchParams {
  const p = new URLSearchParams();
  for (const m of opts.match) p.append("match[]", m);
  if (opts.start !== undefined) p.set("start", opts.start);
  if (opts.end !== undefined) p.set("end", opts.end);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) p.set(k, v);
  return p;
}

export async function runExport(opts: ReadOptions & { inferred: "include" | "exclude" }, out: NodeJS.WritableStream): Promise<void> {
  if (opts.match.length === 0) throw new CliError("--match is required", 2);
  await streamTo(`${opts.url}/api/v1/export?${readParams(opts, { inferred: opts.inferred }).toString()}`, out, opts.timeoutMs);
}

async function getJson(url: string, timeoutMs: number): Promise<unknown> {
  const a = await request(url, { method: "GET" }, { retries: 2, timeoutMs });
  if (a.status !== 200) throw new CliError(describeFailure(a));
  return (JSON.parse(a.text) as { data: unknown }).data;
}

function seriesText(metric: Record<string, string>): string {
  const name = metric["__name__"] ?? "";
  const labels = Object.entries(metric)
    .filter(([k]) => k !== "__name__")
    .map(([k, v]) => `${/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(k) ? k : JSON.stringify(k)}=${JSON.stringify(v)}`);
  return labels.length === 0 ? name : `${name}{${labels.join(",")}}`;
}

function isoNs(ns: string): string {
  const n = BigInt(ns);
  const ms = n / 1_000_000n - (n < 0n && n % 1_000_000n !== 0n ? 1n : 0n);
  const sub = (((n % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, "0");
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return ns;
  return d.toISOString().replace(/\.\d{3}Z$/, `.${sub}Z`);
}

/** A compact table: series, points, first and last time. */
export async function runQuery(opts: ReadOptions & { inferred: "include" | "exclude" }, out: NodeJS.WritableStream): Promise<void> {
  if (opts.match.length === 0) throw new CliError("a selector is required", 2);
  const chunks: Buffer[] = [];
  const sink = {
    write(c: Uint8Array): boolean {
      chunks.push(Buffer.from(c));
      return true;
    },
    once() {
      return sink;
    },
  } as unknown as NodeJS.WritableStream;
  await streamTo(`${opts.url}/api/v1/export?${readParams(opts, { inferred: opts.inferred }).toString()}`, sink, opts.timeoutMs);
  const rows: [string, string, string, string][] = [["SERIES", "POINTS", "FIRST", "LAST"]];
  for (const line of Buffer.concat(chunks).toString("utf8").split("\n")) {
    if (line.trim() === "") continue;
    const s = JSON.parse(line) as { metric: Record<string, string>; timestamps_ns: string[] };
    const n = s.timestamps_ns.length;
    rows.push([seriesText(s.metric), String(n), n > 0 ? isoNs(s.timestamps_ns[0]!) : "", n > 0 ? isoNs(s.timestamps_ns[n - 1]!) : ""]);
  }
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) out.write(r.map((c, i) => (i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd() + "\n");
  out.write(`(${rows.length - 1} series)\n`);
}

export async function runSeries(opts: ReadOptions, out: NodeJS.WritableStream): Promise<void> {
  if (opts.match.length === 0) throw new CliError("--match is required", 2);
  const data = (await getJson(`${opts.url}/api/v1/series?${readParams(opts).toString()}`, opts.timeoutMs)) as Record<string, string>[];
  for (const m of data) out.write(seriesText(m) + "\n");
}

export async function runLabels(name: string | undefined, opts: ReadOptions, out: NodeJS.WritableStream): Promise<void> {
  const path = name === undefined ? "/api/v1/labels" : `/api/v1/label/${encodeURIComponent(name)}/values`;
  const data = (await getJson(`${opts.url}${path}?${readParams(opts).toString()}`, opts.timeoutMs)) as string[];
  for (const v of data) out.write(v + "\n");
}

function table(rows: string[][], out: NodeJS.WritableStream, numeric: ReadonlySet<number>): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) out.write(r.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd() + "\n");
}

type GapJson = GapView;

/** The gaps the gap job recorded (docs/gaps.md): a table, or the JSON answer with --json. */
export async function runGaps(opts: ReadOptions & { state?: string; json: boolean }, out: NodeJS.WritableStream): Promise<void> {
  if (opts.match.length === 0) throw new CliError("--match is required", 2);
  const data = (await getJson(`${opts.url}/hq/v1/gaps?${readParams(opts, { state: opts.state }).toString()}`, opts.timeoutMs)) as GapJson[];
  if (opts.json) {
    out.write(JSON.stringify(data, null, 2) + "\n");
    return;
  }
  const rows = [["SERIES", "STATE", "START", "END", "MISSING", "INFERRED", "METHOD"]];
  for (const g of data)
    rows.push([seriesText(g.series), g.state, isoNs(g.startNs), g.endNs === null ? "" : isoNs(g.endNs), String(g.missingSlots ?? ""), String(g.inferredPoints), g.method ?? ""]);
  table(rows, out, new Set([4, 5]));
  out.write(`(${data.length} gaps)\n`);
}

interface CompletenessJson {
  series: Record<string, string>;
  intervalNs: string | null;
  expectedSlots: number | null;
  original: number;
  inferred: number;
  missingSlots: number | null;
}

/** Per series: expected slots, original and inferred points, missing slots. */
export async function runCompleteness(opts: ReadOptions & { json: boolean }, out: NodeJS.WritableStream): Promise<void> {
  if (opts.match.length === 0) throw new CliError("--match is required", 2);
  if (opts.start === undefined || opts.end === undefined) throw new CliError("--start and --end are required", 2);
  const data = (await getJson(`${opts.url}/hq/v1/completeness?${readParams(opts).toString()}`, opts.timeoutMs)) as CompletenessJson[];
  if (opts.json) {
    out.write(JSON.stringify(data, null, 2) + "\n");
    return;
  }
  const rows = [["SERIES", "INTERVAL", "EXPECTED", "ORIGINAL", "INFERRED", "MISSING"]];
  for (const c of data)
    rows.push([
      seriesText(c.series),
      c.intervalNs === null ? "?" : `${Number(BigInt(c.intervalNs) / 1_000_000n) / 1000}s`,
      String(c.expectedSlots ?? "?"),
      String(c.original),
      String(c.inferred),
      String(c.missingSlots ?? "?"),
    ]);
  table(rows, out, new Set([2, 3, 4, 5]));
}
