// Node-to-node reads (docs/format/peer-read.md): what a replica answers when a
// peer merges a majority read (decision 7) or compares and copies points
// (catch-up of flushed data, read repair). One POST per question to
// /hq/v1/internal/read; the request is JSON, a selection answers in binary
// (HQR1) and everything else in JSON with 64-bit integers as decimal strings.
//
// The handler reads the local engine only: it never asks another node, so a
// read fans out one hop and no further.

import { Agent, request, type IncomingMessage, type ServerResponse } from "node:http";
import { assert } from "../core/assert.js";
import { ORIGIN_BY_CODE, ORIGIN_CODE, type Origin } from "../core/batch.js";
import { ByteReader, ByteWriter } from "../core/bytes.js";
import { BadInputError, CorruptionError, HqError, UnavailableError } from "../core/errors.js";
import { crc32c, fromHex, toHex } from "../core/hash.js";
import { seriesKey, type Labels } from "../core/labels.js";
import { makeMatcher, type MatchOp, type Matcher } from "../core/matchers.js";
import { METRIC_TYPES, type MetadataEntry } from "../core/metadata.js";
import { readBody } from "../net/body.js";
import type { ReplicaEngine } from "../storage/replica-api.js";
import type { MatcherSets, SelectedSeries, SelectOptions } from "../storage/engine-api.js";
import type { InboundRoute } from "./transport.js";

export const INTERNAL_READ_PATH = "/hq/v1/internal/read";
const SELECT_CONTENT_TYPE = "application/x-hqts-read";
const REQUEST_BYTES_MAX = 4 * 1024 * 1024;
/** A selection answer larger than this is refused by the reader (the sender's samplesMax bounds it first). */
export const ANSWER_BYTES_MAX = 1024 * 1024 * 1024;
const MAGIC = 0x31525148; // "HQR1"
const VERSION = 1;

interface WireMatcher {
  name: string;
  op: MatchOp;
  value: string;
}

type WireSets = WireMatcher[][] | null;

/** What a peer is asked. Times are int64 nanoseconds as decimal strings. */
export type PeerReadRequest =
  | {
      op: "select";
      sets: WireSets;
      startNs: string;
      endNs: string;
      includeInferred: boolean;
      seriesMax: number;
      samplesMax: number;
      /** Only these series (canonical keys); absent: every series the sets select. */
      keys?: string[];
    }
  | { op: "series"; sets: WireSets; startNs: string; endNs: string; seriesMax: number }
  | { op: "labelNames"; sets: WireSets; startNs: string; endNs: string }
  | { op: "metadata"; metric: string | null; startNs: string; endNs: string }
  | { op: "labelValues"; name: string; sets: WireSets; startNs: string; endNs: string }
  | { op: "digestWindows"; startNs: string; endNs: string; windowNs: string }
  | { op: "digestSeries"; startNs: string; endNs: string };

/** What a peer says of a batch whose points it sends: enough to store them as that batch's (Engine.repair). */
export interface BatchMeta {
  batchId: string;
  sha256: string;
  hlc: bigint;
  shardId: number;
  sampleCount: number;
  origin: Origin;
  inference: string | null;
}

export interface SelectAnswer {
  series: SelectedSeries[];
  /** Every batch any sample refers to that the peer still knows (a batch it no longer knows is absent). */
  batches: Map<string, BatchMeta>;
}

export interface WindowDigestWire {
  startNs: bigint;
  count: number;
  hash: bigint;
}
export interface SeriesDigestWire {
  key: string;
  count: number;
  hash: bigint;
}

// ---- matchers ----------------------------------------------------------------

export const setsToWire = (sets: MatcherSets | null): WireSets => (sets === null ? null : sets.map((s) => s.map((m) => ({ name: m.name, op: m.op, value: m.value }))));

function setsFromWire(raw: unknown, field: string): MatcherSets | null {
  if (raw === null || raw === undefined) return null;
  if (!Array.isArray(raw)) throw new BadInputError("matcher sets must be an array", { field });
  return raw.map((set: unknown, i) => {
    if (!Array.isArray(set)) throw new BadInputError("a matcher set must be an array", { field: `${field}[${i}]` });
    return set.map((m: unknown, j): Matcher => {
      const w = m as Partial<WireMatcher>;
      const ops: readonly string[] = ["=", "!=", "=~", "!~"];
      if (typeof w?.name !== "string" || typeof w.value !== "string" || typeof w.op !== "string" || !ops.includes(w.op))
        throw new BadInputError("a matcher needs name, op (=, !=, =~, !~) and value", { field: `${field}[${i}][${j}]` });
      return makeMatcher(w.name, w.op, w.value, { field: `${field}[${i}][${j}]` });
    });
  });
}

function nsParam(raw: unknown, field: string): bigint {
  if (typeof raw !== "string" || !/^-?[0-9]{1,19}$/.test(raw)) throw new BadInputError("expected int64 nanoseconds as a decimal string", { field });
  return BigInt(raw);
}

function countParam(raw: unknown, field: string): number {
  if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < 1) throw new BadInputError("expected a positive integer", { field });
  return raw;
}

// ---- selection codec (docs/format/peer-read.md) --------------------------------

export function encodeSelectAnswer(a: SelectAnswer): Uint8Array {
  let samples = 0;
  for (const s of a.series) samples += s.timestampsNs.length;
  const w = new ByteWriter(64 + samples * 18 + a.series.length * 96);
  w.u32(MAGIC).u8(VERSION).uvarint(a.series.length);
  for (const s of a.series) {
    const n = s.timestampsNs.length;
    w.uvarint(s.labels.length);
    for (const [name, value] of s.labels) w.str(name).str(value);
    w.uvarint(s.batchIds.length);
    for (const id of s.batchIds) w.str(id);
    w.uvarint(n);
    for (let i = 0; i < n; i++) w.i64(s.timestampsNs[i]!).f64(s.values[i]!).u8(s.origins[i]!).uvarint(s.batchRefs[i]!);
  }
  w.uvarint(a.batches.size);
  for (const b of a.batches.values())
    w.str(b.batchId).bytes(fromHex(b.sha256)).varint64(b.hlc).uvarint(b.shardId).uvarint(b.sampleCount).u8(ORIGIN_CODE[b.origin]).str(b.inference ?? "");
  const body = w.finish();
  // A CRC32C of everything before it: points travel between replicas checked, like everything they store.
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer, out.byteOffset + body.length, 4).setUint32(0, crc32c(body), true);
  return out;
}

export function decodeSelectAnswer(framed: Uint8Array, source: string): SelectAnswer {
  if (framed.length < 4) throw new CorruptionError(`selection answer of ${framed.length} bytes: too short for its checksum`, source, 0);
  const bytes = framed.subarray(0, framed.length - 4);
  const sent = new DataView(framed.buffer, framed.byteOffset + bytes.length, 4).getUint32(0, true);
  if (crc32c(bytes) !== sent) throw new CorruptionError("selection answer: CRC32C mismatch (damaged in transit)", source, bytes.length);
  const r = new ByteReader(bytes, source);
  if (r.u32() !== MAGIC) throw new BadInputError(`${source}: not a selection answer (bad magic)`);
  const version = r.u8();
  if (version !== VERSION) throw new BadInputError(`${source}: selection answer version ${version} unknown`);
  const nSeries = r.uvarint();
  const series: SelectedSeries[] = [];
  for (let k = 0; k < nSeries; k++) {
    const nl = r.uvarint();
    const labels: [string, string][] = [];
    for (let j = 0; j < nl; j++) labels.push([r.str(), r.str()]);
    const nb = r.uvarint();
    const batchIds: string[] = [];
    for (let j = 0; j < nb; j++) batchIds.push(r.str());
    const n = r.uvarint();
    // Every sample takes at least 18 bytes: a count beyond what remains is damage, refused before allocating.
    if (n * 18 > r.remaining) throw new BadInputError(`${source}: series ${k} claims ${n} samples, more than the ${r.remaining} bytes left hold`);
    const ts = new BigInt64Array(n);
    const vs = new Float64Array(n);
    const os = new Uint8Array(n);
    const refs = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      ts[i] = r.i64();
      vs[i] = r.f64();
      os[i] = r.u8();
      refs[i] = r.uvarint();
      if (ORIGIN_BY_CODE[os[i]!] === undefined || refs[i]! >= nb) throw new BadInputError(`${source}: series ${k} sample ${i}: bad origin or batch reference`);
      if (i > 0 && ts[i]! <= ts[i - 1]!) throw new BadInputError(`${source}: series ${k}: timestamps not increasing at sample ${i}`);
    }
    series.push({ key: seriesKey(labels), labels, timestampsNs: ts, values: vs, origins: os, batchRefs: refs, batchIds });
  }
  const nBatches = r.uvarint();
  const batches = new Map<string, BatchMeta>();
  for (let j = 0; j < nBatches; j++) {
    const batchId = r.str();
    const sha256 = toHex(r.bytes(32));
    const hlc = r.varint64();
    const shardId = r.uvarint();
    const sampleCount = r.uvarint();
    const origin = ORIGIN_BY_CODE[r.u8()];
    const inf = r.str();
    if (origin === undefined) throw new BadInputError(`${source}: batch ${batchId}: bad origin`);
    batches.set(batchId, { batchId, sha256, hlc, shardId, sampleCount, origin, inference: inf === "" ? null : inf });
  }
  if (r.remaining !== 0) throw new BadInputError(`${source}: ${r.remaining} trailing bytes`);
  return { series, batches };
}

// ---- the replica's side ----------------------------------------------------------

/** The local answer to a selection: the engine's series, narrowed to `keys` if given, with their batches described. */
export function localSelect(engine: ReplicaEngine, sets: MatcherSets, opts: SelectOptions, keys: ReadonlySet<string> | null): SelectAnswer {
  let series = engine.select(sets, opts).filter((s) => s.timestampsNs.length > 0);
  if (keys !== null) series = series.filter((s) => keys.has(s.key));
  const batches = new Map<string, BatchMeta>();
  for (const s of series)
    for (const id of s.batchIds) {
      if (batches.has(id)) continue;
      const b = engine.lookupBatch(id);
      if (b !== null) batches.set(id, { batchId: id, sha256: b.sha256, hlc: b.hlc, shardId: b.shardId, sampleCount: b.sampleCount, origin: b.origin, inference: b.inference });
    }
  return { series, batches };
}

/**
 * Matcher sets that select exactly the series with these label sets: equality on each of its labels, and `name=""`
 * (absent) for every other label name in use, so that a series with more labels does not match too.
 */
export function setsForKeys(labelsOf: Iterable<Labels>, namesInUse: readonly string[]): MatcherSets {
  const out: Matcher[][] = [];
  for (const labels of labelsOf) {
    const own = new Set(labels.map(([n]) => n));
    const ms = labels.map(([n, v]) => makeMatcher(n, "=", v));
    for (const n of namesInUse) if (!own.has(n)) ms.push(makeMatcher(n, "=", ""));
    out.push(ms);
  }
  return out;
}

/** Every series (an empty matcher list matches any label set). */
export const ALL_SERIES: MatcherSets = [[]];
const ALL = ALL_SERIES;
/** Series labels listed to narrow a selection to keys: the answer's own samplesMax bounds the work that follows. */
const SERIES_SCAN_MAX = 100_000_000;

function sendJsonAnswer(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}

/** The route for the server's table; `engine()` throws UnavailableError (503) while the engine opens. */
export function peerReadRoute(engine: () => ReplicaEngine): InboundRoute {
  return {
    name: INTERNAL_READ_PATH,
    path: INTERNAL_READ_PATH,
    methods: ["POST"],
    handler: async (_ctx, req: IncomingMessage, res: ServerResponse) => {
      let q: Record<string, unknown>;
      try {
        q = JSON.parse(Buffer.from(await readBody(req, REQUEST_BYTES_MAX)).toString("utf8")) as Record<string, unknown>;
      } catch (e) {
        if (e instanceof HqError) throw e;
        throw new BadInputError(`peer read: the request is not JSON: ${(e as Error).message}`);
      }
      if (typeof q !== "object" || q === null) throw new BadInputError("peer read: the request must be a JSON object");
      const e = engine();
      const startNs = nsParam(q.startNs, "startNs");
      const endNs = nsParam(q.endNs, "endNs");
      switch (q.op) {
        case "select": {
          const keys = q.keys === undefined ? null : new Set(Array.isArray(q.keys) ? q.keys.map(String) : []);
          const opts: SelectOptions = {
            startNs,
            endNs,
            includeInferred: q.includeInferred === true,
            seriesMax: countParam(q.seriesMax, "seriesMax"),
            samplesMax: countParam(q.samplesMax, "samplesMax"),
          };
          let sets = setsFromWire(q.sets, "sets") ?? ALL;
          // Narrow to the keys through the label index (an equality set per series), not by selecting everything.
          if (keys !== null)
            sets = setsForKeys(
              e.seriesLabels(sets, startNs, endNs, SERIES_SCAN_MAX).filter((l) => keys.has(seriesKey(l))),
              e.labelNames(null, startNs, endNs),
            );
          const body = encodeSelectAnswer(sets.length === 0 ? { series: [], batches: new Map() } : localSelect(e, sets, opts, keys));
          res.writeHead(200, { "Content-Type": SELECT_CONTENT_TYPE, "Content-Length": String(body.length) });
          res.end(body);
          return;
        }
        case "series":
          return sendJsonAnswer(res, e.seriesLabels(setsFromWire(q.sets, "sets") ?? ALL, startNs, endNs, countParam(q.seriesMax, "seriesMax")));
        case "labelNames":
          return sendJsonAnswer(res, e.labelNames(setsFromWire(q.sets, "sets"), startNs, endNs));
        case "labelValues":
          if (typeof q.name !== "string") throw new BadInputError("expected a label name", { field: "name" });
          return sendJsonAnswer(res, e.labelValues(q.name, setsFromWire(q.sets, "sets"), startNs, endNs));
        case "digestWindows": {
          const windowNs = nsParam(q.windowNs, "windowNs");
          if (windowNs <= 0n) throw new BadInputError("must be positive", { field: "windowNs" });
          return sendJsonAnswer(res, e.digestWindows(startNs, endNs, windowNs));
        }
        case "digestSeries":
          return sendJsonAnswer(res, e.digestSeries(startNs, endNs));
        case "metadata":
          if (q.metric !== null && typeof q.metric !== "string") throw new BadInputError("expected a metric name or null", { field: "metric" });
          return sendJsonAnswer(res, e.metadata(q.metric, -1, -1));
        default:
          throw new BadInputError(`peer read: unknown op "${String(q.op).slice(0, 40)}"`, { field: "op" });
      }
    },
  };
}

// ---- the asking side ---------------------------------------------------------------

/** Bytes and requests of the questions asked with it (a caller's own account: anti-entropy reports its cost). */
export interface ReadMeter {
  requests: number;
  bytesSent: number;
  bytesReceived: number;
}

export const newMeter = (): ReadMeter => ({ requests: 0, bytesSent: 0, bytesReceived: 0 });

export interface PeerReadOptions {
  /** Per question. A peer slower than this counts as not answering. */
  timeoutMs?: number;
  /** Sockets per peer (keep-alive). */
  socketsPerPeer?: number;
}

/** Asks peers questions; each failure (refused, timeout, error answer) rejects with an HqError naming the peer. */
export class PeerReader {
  private readonly agents = new Map<string, Agent>();
  private readonly timeoutMs: number;
  private readonly sockets: number;

  constructor(opts: PeerReadOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.sockets = opts.socketsPerPeer ?? 4;
  }

  async select(peerUrl: string, sets: MatcherSets, opts: SelectOptions, keys?: readonly string[], meter?: ReadMeter): Promise<SelectAnswer> {
    const body = await this.ask(
      peerUrl,
      {
      op: "select",
      sets: setsToWire(sets),
      startNs: opts.startNs.toString(),
      endNs: opts.endNs.toString(),
      includeInferred: opts.includeInferred,
      seriesMax: opts.seriesMax,
      samplesMax: opts.samplesMax,
        ...(keys !== undefined ? { keys: [...keys] } : {}),
      },
      meter,
    );
    return decodeSelectAnswer(body, `peer ${peerUrl}`);
  }

  async series(peerUrl: string, sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number): Promise<Labels[]> {
    const v = await this.askJson(peerUrl, { op: "series", sets: setsToWire(sets), startNs: startNs.toString(), endNs: endNs.toString(), seriesMax });
    if (!Array.isArray(v)) throw new HqError("internal", `peer ${peerUrl}: series answer is not a list`);
    return v as Labels[];
  }

  async labelNames(peerUrl: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint): Promise<string[]> {
    return stringList(peerUrl, await this.askJson(peerUrl, { op: "labelNames", sets: setsToWire(sets), startNs: startNs.toString(), endNs: endNs.toString() }));
  }

  async labelValues(peerUrl: string, name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint): Promise<string[]> {
    return stringList(peerUrl, await this.askJson(peerUrl, { op: "labelValues", name, sets: setsToWire(sets), startNs: startNs.toString(), endNs: endNs.toString() }));
  }

  /** The peer's own metric metadata (not replicated: see MajorityReader.metadata), every entry. */
  async metadata(peerUrl: string, metric: string | null): Promise<Record<string, MetadataEntry[]>> {
    const v = await this.askJson(peerUrl, { op: "metadata", metric, startNs: "0", endNs: "0" });
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new HqError("internal", `peer ${peerUrl}: metadata answer is not an object`);
    for (const [name, entries] of Object.entries(v as Record<string, unknown>)) {
      const ok = Array.isArray(entries) && entries.every((x: unknown) => {
        const e = x as Record<string, unknown>;
        return typeof e === "object" && e !== null && typeof e.help === "string" && typeof e.unit === "string" && (METRIC_TYPES as readonly unknown[]).includes(e.type);
      });
      if (!ok) throw new HqError("internal", `peer ${peerUrl}: metadata answer for ${JSON.stringify(name.slice(0, 64))} is malformed`);
    }
    return v as Record<string, MetadataEntry[]>;
  }

  async digestWindows(peerUrl: string, startNs: bigint, endNs: bigint, windowNs: bigint, meter?: ReadMeter): Promise<WindowDigestWire[]> {
    const v = await this.askJson(peerUrl, { op: "digestWindows", startNs: startNs.toString(), endNs: endNs.toString(), windowNs: windowNs.toString() }, meter);
    if (!Array.isArray(v)) throw new HqError("internal", `peer ${peerUrl}: digest answer is not a list`);
    return (v as { startNs: string; count: number; hash: string }[]).map((d) => ({ startNs: BigInt(d.startNs), count: d.count, hash: BigInt(d.hash) }));
  }

  async digestSeries(peerUrl: string, startNs: bigint, endNs: bigint, meter?: ReadMeter): Promise<SeriesDigestWire[]> {
    const v = await this.askJson(peerUrl, { op: "digestSeries", startNs: startNs.toString(), endNs: endNs.toString() }, meter);
    if (!Array.isArray(v)) throw new HqError("internal", `peer ${peerUrl}: digest answer is not a list`);
    return (v as { key: string; count: number; hash: string }[]).map((d) => ({ key: d.key, count: d.count, hash: BigInt(d.hash) }));
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  private async askJson(peerUrl: string, q: PeerReadRequest, meter?: ReadMeter): Promise<unknown> {
    const body = await this.ask(peerUrl, q, meter);
    try {
      return JSON.parse(Buffer.from(body).toString("utf8"));
    } catch (e) {
      throw new HqError("internal", `peer ${peerUrl}: answer is not JSON: ${(e as Error).message}`);
    }
  }

  private ask(peerUrl: string, q: PeerReadRequest, meter?: ReadMeter): Promise<Uint8Array> {
    let agent = this.agents.get(peerUrl);
    if (agent === undefined) {
      agent = new Agent({ keepAlive: true, maxSockets: this.sockets, maxFreeSockets: this.sockets });
      this.agents.set(peerUrl, agent);
    }
    const text = JSON.stringify(q);
    const url = new URL(INTERNAL_READ_PATH, peerUrl);
    if (meter !== undefined) {
      meter.requests++;
      meter.bytesSent += Buffer.byteLength(text);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const fail = (why: string): void => reject(new UnavailableError(`peer ${peerUrl} did not answer a read: ${why}`, 1));
      const req = request(
        url,
        { method: "POST", agent, timeout: this.timeoutMs, headers: { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) } },
        (res) => {
          const chunks: Buffer[] = [];
          let n = 0;
          res.on("data", (c: Buffer) => {
            n += c.length;
            if (n > ANSWER_BYTES_MAX) {
              req.destroy();
              fail(`answer larger than ${ANSWER_BYTES_MAX} bytes`);
              return;
            }
            chunks.push(c);
          });
          res.on("error", (e) => fail(e.message));
          res.on("end", () => {
            const body = Buffer.concat(chunks);
            if (meter !== undefined) meter.bytesReceived += body.length;
            if (res.statusCode === 200) return resolve(new Uint8Array(body.buffer, body.byteOffset, body.length));
            let err: { code?: string; error?: string; retryable?: boolean } = {};
            try {
              err = JSON.parse(body.toString("utf8")) as typeof err;
            } catch {
              // not JSON: reported below with the status
            }
            const msg = `peer ${peerUrl} answered ${res.statusCode ?? "?"}: ${err.error ?? body.subarray(0, 200).toString("utf8")}`;
            // A peer that is starting or overloaded is "not answering"; anything else is the question's fault.
            if (res.statusCode === 503 || res.statusCode === 429) fail(msg);
            else reject(new HqError(err.code === "too_large" ? "too_large" : err.code === "bad_input" ? "bad_input" : "internal", msg));
          });
        },
      );
      req.on("timeout", () => {
        req.destroy();
        fail(`no answer within ${this.timeoutMs} ms`);
      });
      req.on("error", (e) => fail(e.message));
      req.end(text);
    });
  }
}

function stringList(peerUrl: string, v: unknown): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new HqError("internal", `peer ${peerUrl}: expected a list of strings`);
  return v as string[];
}

assert(ORIGIN_BY_CODE.length === 2, "peer-read encodes origins as one byte");
