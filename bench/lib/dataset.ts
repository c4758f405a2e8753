// Data sets for the benchmark: the JSON-lines bodies sent to both databases
// (VictoriaMetrics /api/v1/import format, one series per line) plus an index
// of what was sent, so that read queries can be chosen from the data and the
// sample counts they must return can be computed independently of either DB.

import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

export type Labels = Record<string, string>;

export interface SeriesInfo {
  labels: Labels;
  /** Sample timestamps in ms, ascending as sent (may be shared between series of one scrape target). */
  timestamps: ArrayLike<number>;
}

export interface Dataset {
  name: string;
  description: string;
  series: SeriesInfo[];
  /** Request bodies, byte-identical for both databases, in sending order. */
  requests: Buffer[];
  requestSamples: number[];
  samples: number;
  bodyBytes: number;
  minTs: number;
  maxTs: number;
}

/** Packs JSON lines into request bodies of at most maxSamples samples each. */
export class RequestPacker {
  readonly requests: Buffer[] = [];
  readonly requestSamples: number[] = [];
  private lines: string[] = [];
  private pending = 0;

  constructor(private readonly maxSamples: number) {
    if (!(maxSamples >= 1)) throw new Error(`maxSamples must be >= 1, got ${maxSamples}`);
  }

  /** Adds one series line (without the trailing newline) holding `samples` samples. */
  add(line: string, samples: number): void {
    if (samples > this.maxSamples) {
      this.addSplit(line);
      return;
    }
    if (this.pending + samples > this.maxSamples) this.cut();
    this.lines.push(line);
    this.pending += samples;
  }

  finish(): void {
    this.cut();
  }

  private cut(): void {
    if (this.lines.length === 0) return;
    this.requests.push(Buffer.from(this.lines.join("\n") + "\n", "utf8"));
    this.requestSamples.push(this.pending);
    this.lines = [];
    this.pending = 0;
  }

  /** A single series longer than one request: re-encode it in pieces. */
  private addSplit(line: string): void {
    const parsed = parseImportLine(line);
    for (let i = 0; i < parsed.timestamps.length; i += this.maxSamples) {
      const end = Math.min(i + this.maxSamples, parsed.timestamps.length);
      const piece = encodeImportLine(parsed.metric, parsed.values.slice(i, end), parsed.timestamps.slice(i, end));
      this.add(piece, end - i);
    }
  }
}

interface ImportLine {
  metric: Labels;
  values: unknown[];
  timestamps: number[];
}

export function parseImportLine(line: string): ImportLine {
  const obj: unknown = JSON.parse(line);
  if (typeof obj !== "object" || obj === null) throw new Error("import line is not an object");
  const rec = obj as Record<string, unknown>;
  const metric = rec["metric"];
  const values = rec["values"];
  const timestamps = rec["timestamps"];
  if (typeof metric !== "object" || metric === null) throw new Error("import line without metric");
  if (!Array.isArray(values) || !Array.isArray(timestamps)) throw new Error("import line without values/timestamps");
  if (values.length !== timestamps.length) throw new Error(`values (${values.length}) and timestamps (${timestamps.length}) differ in length`);
  const labels: Labels = {};
  for (const [k, v] of Object.entries(metric as Record<string, unknown>)) {
    if (typeof v !== "string") throw new Error(`label ${k} is not a string`);
    labels[k] = v;
  }
  const ts: number[] = [];
  for (const t of timestamps) {
    if (typeof t !== "number" || !Number.isInteger(t)) throw new Error("timestamp is not an integer");
    ts.push(t);
  }
  return { metric: labels, values, timestamps: ts };
}

export function encodeImportLine(metric: Labels, values: readonly unknown[], timestamps: readonly number[]): string {
  return `{"metric":${JSON.stringify(metric)},"values":${JSON.stringify(values)},"timestamps":${JSON.stringify(timestamps)}}`;
}

/** Loads a JSON-lines file (optionally gzip-compressed) in /api/v1/import format. */
export function loadJsonLinesFile(path: string, name: string, maxSamplesPerRequest: number): Dataset {
  const raw = readFileSync(path);
  const text = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString("utf8");
  const packer = new RequestPacker(maxSamplesPerRequest);
  const series: SeriesInfo[] = [];
  let samples = 0;
  let minTs = Number.POSITIVE_INFINITY;
  let maxTs = Number.NEGATIVE_INFINITY;
  let nonFinite = 0;
  let lineNo = 0;
  for (const rawLine of text.split("\n")) {
    lineNo++;
    const line = rawLine.trim();
    if (line === "") continue;
    let parsed: ImportLine;
    try {
      parsed = parseImportLine(line);
    } catch (e) {
      throw new Error(`${path}:${lineNo}: ${(e as Error).message}`);
    }
    for (const v of parsed.values) if (typeof v !== "number") nonFinite++;
    const ts = Float64Array.from(parsed.timestamps);
    for (const t of parsed.timestamps) {
      if (t < minTs) minTs = t;
      if (t > maxTs) maxTs = t;
    }
    series.push({ labels: parsed.metric, timestamps: ts });
    samples += ts.length;
    packer.add(line, ts.length);
  }
  packer.finish();
  if (nonFinite > 0) {
    console.warn(`warning: ${path} holds ${nonFinite} non-numeric values (e.g. "NaN"); VictoriaMetrics skips whole lines with them, so sample counts will differ`);
  }
  if (series.length === 0) throw new Error(`${path}: no series`);
  return {
    name,
    description: path,
    series,
    requests: packer.requests,
    requestSamples: packer.requestSamples,
    samples,
    bodyBytes: packer.requests.reduce((s, b) => s + b.length, 0),
    minTs,
    maxTs,
  };
}
