// `hqts write`: send a file (or stdin) to a node, split into requests of at
// most N samples on line boundaries, and print one receipt per request.

import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { detectFormat } from "../ingest/index.js";
import { CliError, describeFailure, errorBody, request } from "./http.js";

export type WriteFormat = "vmjson" | "influx" | "csv";

export interface WriteOptions {
  url: string;
  format?: WriteFormat;
  precision?: "ns" | "us" | "ms" | "s";
  csvFormat?: string;
  idempotencyKey?: string;
  batchSamples: number;
  batchBytes: number;
  gzip: boolean;
  retries: number;
  timeoutMs: number;
  quiet: boolean;
}

export interface Chunk {
  /** 1-based number of the first line of this chunk in the input. */
  firstLine: number;
  lastLine: number;
  samples: number;
  text: string;
}

/** Samples on one vmjson line: the length of its values array (1 when unreadable: the server will say why). */
export function vmjsonLineSamples(line: string): number {
  try {
    const v = JSON.parse(line) as { values?: unknown };
    return Array.isArray(v.values) ? Math.max(1, v.values.length) : 1;
  } catch {
    return 1;
  }
}

/** Samples on one Influx line: the number of fields (commas outside quotes in the field set, plus one). */
export function influxLineSamples(line: string): number {
  let i = 0;
  const n = line.length;
  while (i < n && (line[i] === " " || line[i] === "\t")) i++;
  if (i >= n || line[i] === "#") return 0;
  // measurement[,tags] ends at the first unescaped space
  while (i < n && line[i] !== " ") i += line[i] === "\\" ? 2 : 1;
  while (i < n && line[i] === " ") i++;
  let fields = 1;
  let inQuotes = false;
  for (; i < n; i++) {
    const c = line[i];
    if (c === "\\") i++;
    else if (c === '"') inQuotes = !inQuotes;
    else if (!inQuotes && c === ",") fields++;
    else if (!inQuotes && c === " ") break;
  }
  return fields;
}

/** Splits line-oriented input into chunks of at most maxSamples samples and about maxBytes bytes; a line is never split. */
export function splitLines(text: string, countSamples: (line: string) => number, maxSamples: number, maxBytes: number): Chunk[] {
  const chunks: Chunk[] = [];
  let cur: string[] = [];
  let curSamples = 0;
  let curBytes = 0;
  let first = 1;
  let lineNo = 0;
  const flush = (): void => {
    if (cur.length > 0 && curSamples > 0) chunks.push({ firstLine: first, lastLine: lineNo, samples: curSamples, text: cur.join("\n") + "\n" });
    cur = [];
    curSamples = 0;
    curBytes = 0;
  };
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end).replace(/\r$/, "");
    start = end + 1;
    const samples = line.trim() === "" ? 0 : countSamples(line);
    const bytes = Buffer.byteLength(line) + 1;
    if (cur.length > 0 && (curSamples + samples > maxSamples || curBytes + bytes > maxBytes)) {
      flush();
    }
    if (cur.length === 0) first = lineNo + 1;
    lineNo++;
    cur.push(line);
    curSamples += samples;
    curBytes += bytes;
  }
  flush();
  return chunks;
}

async function readInput(file: string | undefined): Promise<{ bytes: Uint8Array; name: string | undefined }> {
  let raw: Buffer;
  if (file === undefined || file === "-") {
    const parts: Buffer[] = [];
    for await (const c of process.stdin) parts.push(c as Buffer);
    raw = Buffer.concat(parts);
  } else {
    try {
      raw = await readFile(file);
    } catch (e) {
      throw new CliError(`cannot read ${file}: ${(e as Error).message}`);
    }
  }
  let name = file === undefined || file === "-" ? undefined : basename(file);
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      raw = gunzipSync(raw);
    } catch (e) {
      throw new CliError(`cannot decompress ${name ?? "stdin"}: ${(e as Error).message}`);
    }
    name = name?.replace(/\.gz$/i, "");
  }
  return { bytes: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), name };
}

function endpoint(opts: WriteOptions, format: WriteFormat): string {
  switch (format) {
    case "vmjson":
      return `${opts.url}/api/v1/import`;
    case "influx":
      return `${opts.url}/api/v2/write?receipt=1${opts.precision ? `&precision=${opts.precision}` : ""}`;
    case "csv":
      return `${opts.url}/api/v1/import/csv${opts.csvFormat ? `?format=${encodeURIComponent(opts.csvFormat)}` : ""}`;
  }
}

export interface WriteSummary {
  requests: number;
  samples: number;
  accepted: number;
  duplicates: number;
  duplicateBatches: number;
}

export async function runWrite(file: string | undefined, opts: WriteOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<WriteSummary> {
  const started = Date.now();
  const { bytes, name } = await readInput(file);
  if (bytes.length === 0) throw new CliError(`${name ?? "stdin"} is empty`);
  let format = opts.format;
  if (format === undefined) {
    const detected = detectFormat(bytes.subarray(0, 64 * 1024), name) as string | null | undefined;
    if (detected !== "vmjson" && detected !== "influx" && detected !== "csv")
      throw new CliError(`cannot tell the format of ${name ?? "stdin"}; pass --format vmjson|influx|csv`);
    format = detected;
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  const chunks: Chunk[] =
    format === "csv"
      ? [{ firstLine: 1, lastLine: text.split("\n").length, samples: 0, text }]
      : splitLines(text, format === "vmjson" ? vmjsonLineSamples : influxLineSamples, opts.batchSamples, opts.batchBytes);
  if (chunks.length === 0) throw new CliError(`${name ?? "stdin"} holds no samples`);

  const summary: WriteSummary = { requests: 0, samples: 0, accepted: 0, duplicates: 0, duplicateBatches: 0 };
  const url = endpoint(opts, format);
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    const headers: Record<string, string> = { "Content-Type": format === "vmjson" ? "application/json" : "text/plain; charset=utf-8", Accept: "application/json" };
    let body: Uint8Array = Buffer.from(c.text, "utf8");
    if (opts.gzip && body.length > 1024) {
      body = gzipSync(body);
      headers["Content-Encoding"] = "gzip";
    }
    if (opts.idempotencyKey !== undefined && opts.idempotencyKey !== "")
      headers["Idempotency-Key"] = chunks.length === 1 ? opts.idempotencyKey : `${opts.idempotencyKey}.${i + 1}`;
    const where = chunks.length === 1 ? "" : `request ${i + 1}/${chunks.length} (lines ${c.firstLine}-${c.lastLine}): `;
    const a = await request(url, { method: "POST", headers, body }, {
      retries: opts.retries,
      timeoutMs: opts.timeoutMs,
      onRetry: (why, n) => err.write(`hqts write: ${where}retry ${n} after: ${why}\n`),
    });
    if (a.status < 200 || a.status > 299) {
      const eb = errorBody(a.text);
      let msg = describeFailure(a);
      if (eb !== null && typeof eb.line === "number" && chunks.length > 1) msg += ` (line ${c.firstLine + eb.line - 1} of the input)`;
      throw new CliError(`${where}${msg}${summary.requests > 0 ? `; ${summary.requests} earlier request(s) were stored` : ""}`);
    }
    const receiptText = a.status === 204 ? (a.headers.get("x-hq-receipt") ?? "{}") : a.text;
    let receipt: { samples?: number; accepted?: number; duplicates?: number; duplicate?: boolean };
    try {
      receipt = JSON.parse(receiptText) as typeof receipt;
    } catch {
      throw new CliError(`${where}the server answered ${a.status} without a readable receipt`);
    }
    out.write(JSON.stringify(receipt) + "\n");
    summary.requests++;
    summary.samples += receipt.samples ?? 0;
    summary.accepted += receipt.accepted ?? 0;
    summary.duplicates += receipt.duplicates ?? 0;
    if (receipt.duplicate === true) summary.duplicateBatches++;
  }
  if (!opts.quiet) {
    const s = ((Date.now() - started) / 1000).toFixed(2);
    err.write(
      `hqts write: ${summary.samples} samples in ${summary.requests} request(s) (${format}): ${summary.accepted} stored, ` +
        `${summary.duplicates} already there${summary.duplicateBatches > 0 ? `, ${summary.duplicateBatches} whole batch(es) replayed` : ""}; ${s} s\n`,
    );
  }
  return summary;
}
