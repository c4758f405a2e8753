// Prometheus remote write 1.0: the body is a snappy block-compressed
// protobuf `prometheus.WriteRequest` (docs/ingest.md "Prometheus remote
// write"). Decoded into one canonical Batch.
//
// The protobuf is walked with protobufjs's Reader instead of decoded into an
// object graph by reflection: a 64 MiB body can hold millions of samples, and
// a reflected decode would materialise all of them (with a Long each) before
// a single limit could be checked. Walking by hand checks every limit as it
// is reached, names the series index in every error, reads a sample value's
// eight bytes as they are (the stale marker's bits) and takes label bytes raw
// so that invalid UTF-8 is refused instead of silently replaced.
//
// Snappy is decoded here too, strictly: snappyjs (used by the tests to
// compress) pads a truncated stream with zeros and drops writes past the end,
// so a damaged body could decode into different, valid-looking bytes.

import protobuf from "protobufjs/minimal.js";
import { assert } from "../core/assert.js";
import { BATCH_ID_BYTES_MAX, BatchBuilder, CONFLICTS_LISTED_MAX, MS_ABS_MAX_FOR_NS, type Batch, type BatchSeries, type EncodedBatch, type InRequestConflicts } from "../core/batch.js";
import { BadInputError, TooLargeError, type ConflictingPoint } from "../core/errors.js";
import { toHex, sha256 } from "../core/hash.js";
import { canonicalLabels, METRIC_NAME, utf8LongerThan, type Labels } from "../core/labels.js";
import { asBuffer, bytesKey, internSeries, type InternedSeries, type SeriesInternCache } from "../core/series-intern.js";
import type { Limits } from "../core/limits.js";
import { METRIC_TYPES, type MetricMetadata } from "../core/metadata.js";

/**
 * The schema this decoder implements, in protobufjs JSON form (Root.fromJSON),
 * from prometheus/prompb/types.proto and remote.proto. Message types whose
 * content HQ-TS does not store are declared empty: their fields are skipped.
 * Label name/value are declared `bytes` (wire-identical to `string`) so that
 * UTF-8 is checked by the decoder, not assumed.
 */
export const REMOTE_WRITE_SCHEMA = {
  nested: {
    prometheus: {
      nested: {
        WriteRequest: {
          fields: {
            timeseries: { rule: "repeated", type: "TimeSeries", id: 1 },
            metadata: { rule: "repeated", type: "MetricMetadata", id: 3 },
          },
        },
        TimeSeries: {
          fields: {
            labels: { rule: "repeated", type: "Label", id: 1 },
            samples: { rule: "repeated", type: "Sample", id: 2 },
            exemplars: { rule: "repeated", type: "Exemplar", id: 3 },
            histograms: { rule: "repeated", type: "Histogram", id: 4 },
          },
        },
        Label: { fields: { name: { type: "bytes", id: 1 }, value: { type: "bytes", id: 2 } } },
        Sample: { fields: { value: { type: "double", id: 1 }, timestamp: { type: "int64", id: 2 } } },
        Exemplar: { fields: {} },
        Histogram: { fields: {} },
        MetricMetadata: {
          fields: { type: { type: "int32", id: 1 }, metric_family_name: { type: "bytes", id: 2 }, help: { type: "bytes", id: 4 }, unit: { type: "bytes", id: 5 } },
        },
      },
    },
  },
} as const;

// ---------------------------------------------------------------------------
// Snappy block format (https://github.com/google/snappy/blob/main/format_description.txt)

/** The uncompressed length a snappy block declares in its preamble (a uvarint of at most 32 bits). */
export function snappyDeclaredLength(src: Uint8Array): { length: number; headerBytes: number } {
  let length = 0;
  for (let i = 0; i < 5; i++) {
    if (i >= src.length) throw corruptSnappy("the length preamble is truncated", i);
    const b = src[i]!;
    length += (b & 0x7f) * 2 ** (7 * i);
    if (b < 0x80) {
      if (length > 0xffffffff) throw corruptSnappy("the declared length exceeds 32 bits", 0);
      return { length, headerBytes: i + 1 };
    }
  }
  throw corruptSnappy("the length preamble is longer than 5 bytes", 0);
}

function corruptSnappy(why: string, offset: number): BadInputError {
  return new BadInputError(`corrupt snappy body: ${why}`, { field: "body", offset });
}

/**
 * Decompresses one snappy block. The declared length is checked against
 * `limit` before anything is allocated (a few bytes can declare 4 GiB), and
 * the output must come out at exactly that length.
 */
export function snappyDecode(src: Uint8Array, limit: number): Uint8Array {
  const { length, headerBytes } = snappyDeclaredLength(src);
  if (length > limit) throw new TooLargeError(`snappy body declaring ${length} uncompressed bytes`, limit, { field: "body" });
  const out = new Uint8Array(length);
  const n = src.length;
  let p = headerBytes;
  let o = 0;
  while (p < n) {
    const at = p;
    const tag = src[p++]!;
    let len: number;
    let offset: number;
    switch (tag & 3) {
      case 0: {
        len = tag >>> 2;
        if (len >= 60) {
          const k = len - 59; // the length is in the next 1-4 bytes
          if (p + k > n) throw corruptSnappy("a literal's length runs past the end", at);
          len = 0;
          for (let i = 0; i < k; i++) len += src[p + i]! * 2 ** (8 * i);
          p += k;
        }
        len += 1;
        if (p + len > n) throw corruptSnappy(`a literal of ${len} bytes runs past the end of the input`, at);
        if (o + len > length) throw corruptSnappy(`the output exceeds the declared length of ${length} bytes`, at);
        out.set(src.subarray(p, p + len), o);
        p += len;
        o += len;
        continue;
      }
      case 1:
        if (p + 1 > n) throw corruptSnappy("a copy runs past the end of the input", at);
        len = 4 + ((tag >>> 2) & 7);
        offset = ((tag >>> 5) << 8) | src[p]!;
        p += 1;
        break;
      case 2:
        if (p + 2 > n) throw corruptSnappy("a copy runs past the end of the input", at);
        len = 1 + (tag >>> 2);
        offset = src[p]! | (src[p + 1]! << 8);
        p += 2;
        break;
      default:
        if (p + 4 > n) throw corruptSnappy("a copy runs past the end of the input", at);
        len = 1 + (tag >>> 2);
        offset = src[p]! + src[p + 1]! * 0x100 + src[p + 2]! * 0x10000 + src[p + 3]! * 0x1000000;
        p += 4;
    }
    if (offset === 0 || offset > o) throw corruptSnappy(`a copy refers ${offset} bytes back from output byte ${o}`, at);
    if (o + len > length) throw corruptSnappy(`the output exceeds the declared length of ${length} bytes`, at);
    // Byte by byte: a copy may overlap its own output (run-length encoding).
    for (let i = 0; i < len; i++, o++) out[o] = out[o - offset]!;
  }
  if (o !== length) throw corruptSnappy(`the output is ${o} bytes but the block declares ${length}`, n);
  return out;
}

// ---------------------------------------------------------------------------
// WriteRequest

export interface RemoteWriteOptions {
  limits: Pick<Limits, "bodyBytesMax" | "seriesPerBatchMax" | "samplesPerBatchMax" | "labelsPerSeriesMax" | "labelNameBytesMax" | "labelValueBytesMax">;
  /**
   * Series seen in earlier requests, by the raw bytes of their label fields. Shared across the requests of one
   * receiver, always with the same limits: an entry is what those bytes validated to under them.
   */
  seriesCache?: SeriesInternCache;
}

export { CONFLICTS_LISTED_MAX };

export interface RemoteWriteRequest {
  /** Null when the request holds no samples (metadata only, or series with exemplars only). */
  batch: Batch | null;
  /** Samples in the request as sent, repeats included. */
  samplesOffered: number;
  timeseries: number;
  exemplarsIgnored: number;
  /** Metric metadata the request carried (type, help, unit per family), for the metadata store. */
  metadata: MetricMetadata[];
  /** Metadata entries left out: no name, a name over the label value limit, or text that is not UTF-8 (advisory data never costs a request). */
  metadataDropped: number;
  /** Same series and timestamp twice with different values: the first in the request is kept, the others are not in the batch. */
  inRequestConflicts: number;
  inRequestConflictsListed: ConflictingPoint[];
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_NAMES = ["varint", "fixed64", "length-delimited", "start-group", "end-group", "fixed32"];

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** Decodes a whole remote-write body: snappy, then protobuf. */
export function decodeRemoteWrite(body: Uint8Array, opts: RemoteWriteOptions): RemoteWriteRequest {
  return decodeWriteRequest(snappyDecode(body, opts.limits.bodyBytesMax), opts);
}

/** Decodes an uncompressed `prometheus.WriteRequest`. */
export function decodeWriteRequest(raw: Uint8Array, opts: RemoteWriteOptions): RemoteWriteRequest {
  const r = protobuf.Reader.create(raw);
  const cache = opts.seriesCache ?? null;
  const rawBuf = asBuffer(raw);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const builder = new BatchBuilder(opts.limits);
  // One series' samples as they are read; reused, since a series' labels may follow its samples.
  let tsMs = new Float64Array(16);
  let samplesRead = 0;
  let vs = new Float64Array(16);
  const result: RemoteWriteRequest = {
    batch: null,
    samplesOffered: 0,
    timeseries: 0,
    exemplarsIgnored: 0,
    metadata: [],
    metadataDropped: 0,
    inRequestConflicts: 0,
    inRequestConflictsListed: [],
  };

  // protobufjs throws RangeError/Error on truncated or malformed wire data: name where, never a 500.
  const guarded = <T>(what: string, f: () => T): T => {
    const at = r.pos;
    try {
      return f();
    } catch (e) {
      if (e instanceof BadInputError || e instanceof TooLargeError) throw e;
      throw new BadInputError(`corrupt protobuf in ${what}: ${e instanceof Error ? e.message : String(e)}`, { field: what, offset: at });
    }
  };
  const expectWire = (what: string, wire: number, want: number): void => {
    if (wire !== want)
      throw new BadInputError(`corrupt protobuf: ${what} has wire type ${WIRE_NAMES[wire] ?? wire}, want ${WIRE_NAMES[want]}`, { field: what, offset: r.pos });
  };

  /** A varint of up to 32 bits; no closure or object per call: this runs for every field. */
  const readUint32 = (where: string): number => {
    const at = r.pos;
    try {
      return r.uint32();
    } catch (e) {
      throw new BadInputError(`corrupt protobuf in ${where}: ${e instanceof Error ? e.message : String(e)}`, { field: where, offset: at });
    }
  };
  // Field number 0 does not exist; a run of zero bytes (say, a damaged or padded body) must not read as data.
  /** The tag as read (field number << 3 | wire type). */
  const readTag = (where: string): number => {
    const at = r.pos;
    const tag = readUint32(where);
    if (tag >>> 3 === 0) throw new BadInputError(`corrupt protobuf: field number 0 in ${where}`, { field: where, offset: at });
    return tag;
  };
  /** Reads a length prefix; the embedded message must end inside its parent. */
  const embeddedEnd = (where: string, parentEnd: number): number => {
    const len = readUint32(where);
    const end = len + r.pos;
    if (end > parentEnd) throw new BadInputError(`corrupt protobuf: ${where} runs past the end of its parent`, { field: where, offset: r.pos });
    return end;
  };

  while (r.pos < r.len) {
    const tag = readTag("WriteRequest");
      const field = tag >>> 3;
      const wire = tag & 7;
    if (field === 1) {
      const i = result.timeseries++;
      const where = `timeseries[${i}]`;
      expectWire(where, wire, WIRE_LEN);
      readTimeSeries(i, embeddedEnd(where, r.len));
    } else if (field === 3) {
      const where = `metadata[${result.metadata.length + result.metadataDropped}]`;
      expectWire(where, wire, WIRE_LEN);
      if (result.metadata.length + result.metadataDropped >= opts.limits.seriesPerBatchMax)
        throw new TooLargeError("number of metadata entries in one request", opts.limits.seriesPerBatchMax, { field: where });
      readMetadata(where, embeddedEnd(where, r.len));
    } else {
      // Unknown fields are skipped, as every protobuf decoder does: newer senders may add some.
      guarded(`WriteRequest field ${field}`, () => r.skipType(wire));
    }
  }

  function readTimeSeries(i: number, end: number): void {
    const start = r.pos;
    const offered = result.samplesOffered;
    const exemplars = result.exemplarsIgnored;
    const labelsEnd = labelRunEnd(raw, start, end);
    if (cache !== null && readCachedTimeSeries(i, end, labelsEnd)) return;
    // Not in the cache, or its labels are not all in front: the whole series again, validated label by label.
    r.pos = start;
    result.samplesOffered = offered;
    result.exemplarsIgnored = exemplars;
    readTimeSeriesSlow(i, end, labelsEnd);
  }

  /**
   * Label fields normally come first, together: their raw bytes then name the series, and a cache hit skips
   * decoding and validating them. False (having consumed an unknown part of the series) when the labels are not
   * cached or not all in front; the caller starts the series again.
   */
  function readCachedTimeSeries(i: number, end: number, labelsEnd: number): boolean {
    if (labelsEnd === r.pos) return false;
    const s = cache!.get(bytesKey(rawBuf, r.pos, labelsEnd));
    if (s === undefined) return false;
    r.pos = labelsEnd;
    const where = `timeseries[${i}]`;
    samplesRead = 0;
    let histograms = 0;
    while (r.pos < end) {
      const tag = readTag(where);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1) return false;
      if (!readOtherField(where, field, wire, end)) histograms++;
    }
    if (r.pos !== end) throw new BadInputError(`corrupt protobuf: a field of ${where} runs past the series' end`, { field: where, offset: end });
    addSeries(i, s, histograms);
    return true;
  }

  /** `labelsEnd`: the end of the run of label fields in front (labelRunEnd); only such labels are cached. */
  function readTimeSeriesSlow(i: number, end: number, labelsEnd: number): void {
    const where = `timeseries[${i}]`;
    const start = r.pos;
    let labelsInFront = true;
    const pairs: [string, string][] = [];
    samplesRead = 0;
    let histograms = 0;
    while (r.pos < end) {
      const at = r.pos;
      const tag = readTag(where);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1) {
        if (at >= labelsEnd) labelsInFront = false;
        const lw = `${where}.labels[${pairs.length}]`;
        expectWire(lw, wire, WIRE_LEN);
        pairs.push(readLabel(lw, embeddedEnd(lw, end)));
      } else if (!readOtherField(where, field, wire, end)) histograms++;
    }
    if (r.pos !== end) throw new BadInputError(`corrupt protobuf: a field of ${where} runs past the series' end`, { field: where, offset: end });

    const s = internSeries(seriesLabels(i, pairs, opts.limits));
    if (cache !== null && labelsInFront && labelsEnd > start) cache.set(bytesKey(rawBuf, start, labelsEnd), s);
    addSeries(i, s, histograms);
  }

  /** A TimeSeries field other than a label: false for a native histogram (counted by the caller). */
  function readOtherField(where: string, field: number, wire: number, end: number): boolean {
    if (field === 2) {
      const sw = `${where}.samples[${samplesRead}]`;
      expectWire(sw, wire, WIRE_LEN);
      if (result.samplesOffered >= opts.limits.samplesPerBatchMax)
        throw new TooLargeError("number of samples in one request", opts.limits.samplesPerBatchMax, { field: sw });
      result.samplesOffered++;
      readSample(sw, embeddedEnd(sw, end));
    } else if (field === 3) {
      expectWire(`${where}.exemplars`, wire, WIRE_LEN);
      result.exemplarsIgnored++;
      guarded(`${where}.exemplars`, () => r.skipType(wire));
    } else if (field === 4) {
      expectWire(`${where}.histograms`, wire, WIRE_LEN);
      guarded(`${where}.histograms`, () => r.skipType(wire));
      return false;
    } else {
      guarded(`${where} field ${field}`, () => r.skipType(wire));
    }
    return true;
  }

  function addSeries(i: number, s: InternedSeries, histograms: number): void {
    const where = `timeseries[${i}]`;
    if (histograms > 0)
      throw new BadInputError(`series ${s.key} holds ${histograms} native histogram(s): native histograms are not supported`, { field: `${where}.histograms` });
    // Labels were checked even when the series carries no samples (a bad sender shows on its first request),
    // but only a series with samples enters the batch: a canonical batch holds no empty series.
    if (samplesRead === 0) return;
    const key = builder.interned(s, { field: where });
    for (let j = 0; j < samplesRead; j++) builder.addSampleMs(key, tsMs[j]!, vs[j]!);
  }

  function readMetadata(where: string, end: number): void {
    let type = 0;
    const text: (Uint8Array | null)[] = [null, null, null];
    while (r.pos < end) {
      const tag = readTag(where);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1) {
        expectWire(`${where}.type`, wire, WIRE_VARINT);
        type = guarded(where, () => r.int32());
      } else if (field === 2 || field === 4 || field === 5) {
        expectWire(`${where} field ${field}`, wire, WIRE_LEN);
        const bytes = guarded(where, () => r.bytes());
        text[field === 2 ? 0 : field === 4 ? 1 : 2] = bytes;
      } else guarded(where, () => r.skipType(wire));
    }
    if (r.pos !== end) throw new BadInputError(`corrupt protobuf: a field of ${where} runs past the entry's end`, { field: where, offset: end });
    let decoded: string[];
    try {
      decoded = text.map((b) => (b === null ? "" : strictUtf8.decode(b)));
    } catch {
      result.metadataDropped++;
      return;
    }
    const [metric, help, unit] = decoded as [string, string, string];
    if (metric === "" || utf8LongerThan(metric, opts.limits.labelValueBytesMax) || utf8LongerThan(unit, opts.limits.labelValueBytesMax)) {
      result.metadataDropped++;
      return;
    }
    result.metadata.push({ metric, type: METRIC_TYPES[type] ?? "unknown", help, unit });
  }

  function readLabel(where: string, end: number): [string, string] {
    let name: Uint8Array | null = null;
    let value: Uint8Array | null = null;
    while (r.pos < end) {
      const tag = readTag(where);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1 || field === 2) {
        expectWire(`${where}.${field === 1 ? "name" : "value"}`, wire, WIRE_LEN);
        const bytes = guarded(where, () => r.bytes());
        if (field === 1) name = bytes;
        else value = bytes;
      } else guarded(where, () => r.skipType(wire));
    }
    if (r.pos !== end) throw new BadInputError(`corrupt protobuf: a field of ${where} runs past the label's end`, { field: where, offset: end });
    const text = (b: Uint8Array | null, part: string, shown: string): string => {
      if (b === null) return "";
      try {
        return strictUtf8.decode(b);
      } catch {
        throw new BadInputError(`${part} ${shown}is not valid UTF-8`, { field: where });
      }
    };
    const n = text(name, "label name", "");
    return [n, text(value, "the value of label", `${JSON.stringify(n.slice(0, 64))} `)];
  }

  function readSample(where: string, end: number): void {
    let value = 0;
    let ms = 0;
    while (r.pos < end) {
      const tag = readTag(where);
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1) {
        expectWire(`${where}.value`, wire, WIRE_FIXED64);
        if (r.pos + 8 > end) throw new BadInputError(`corrupt protobuf: ${where}.value runs past the sample's end`, { field: where, offset: r.pos });
        value = float64FromBits(view.getUint32(r.pos, true), view.getUint32(r.pos + 4, true));
        r.skip(8);
      } else if (field === 2) {
        expectWire(`${where}.timestamp`, wire, WIRE_VARINT);
        ms = readInt64Ms(where, end);
      } else guarded(where, () => r.skipType(wire));
    }
    if (r.pos !== end) throw new BadInputError(`corrupt protobuf: a field of ${where} runs past the sample's end`, { field: where, offset: end });
    if (samplesRead === vs.length) {
      const grownV = new Float64Array(vs.length * 2);
      grownV.set(vs);
      vs = grownV;
      const grownT = new Float64Array(tsMs.length * 2);
      grownT.set(tsMs);
      tsMs = grownT;
    }
    vs[samplesRead] = value;
    tsMs[samplesRead] = ms;
    samplesRead++;
  }

  /**
   * An int64 varint of milliseconds, as a number: exact, since every value HQ-TS can store (|ms| <= 2^63 ns / 10^6)
   * is far below 2^53; anything larger is refused. Read by hand: protobufjs makes a Long per call.
   */
  function readInt64Ms(where: string, end: number): number {
    const at = r.pos;
    let lo = 0;
    let hi = 0;
    let p = r.pos;
    for (let i = 0; ; i++) {
      if (p >= end || i === 10) throw new BadInputError(`corrupt protobuf in ${where}: a truncated or over-long varint`, { field: `${where}.timestamp`, offset: at });
      const b = raw[p++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) break;
    }
    r.pos = p;
    const high = hi | 0;
    const ms = high * 4294967296 + (lo >>> 0);
    if (Math.abs(high) >= 1 << 20 || Math.abs(ms) > MS_ABS_MAX_FOR_NS) {
      const exact = BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
      throw new BadInputError(`timestamp ${exact} ms is out of the int64 nanosecond range (years 1677-2262)`, { field: `${where}.timestamp` });
    }
    return ms;
  }

  if (builder.sampleCount > 0) {
    const conflicts: InRequestConflicts = { count: 0, listed: result.inRequestConflictsListed };
    result.batch = builder.build({ keepFirst: conflicts });
    result.inRequestConflicts = conflicts.count;
  }
  return result;
}

/**
 * The end of the run of label fields (field 1, length-delimited: tag byte 0x0a) starting at `pos`, or `pos` when
 * there is none. Only walks lengths; anything malformed ends the run, and the full decode reports it.
 */
function labelRunEnd(raw: Uint8Array, pos: number, end: number): number {
  let p = pos;
  while (p < end && raw[p] === 0x0a) {
    let q = p + 1;
    let len = 0;
    let shift = 0;
    for (;;) {
      if (q >= end || shift > 28) return p;
      const b = raw[q++]!;
      len += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    if (q + len > end) return p;
    p = q + len;
  }
  return p;
}

/** Prometheus's rules, checked before canonicalLabels (which would drop an empty-valued duplicate silently). */
function seriesLabels(i: number, pairs: readonly [string, string][], limits: RemoteWriteOptions["limits"]): Labels {
  const where = `timeseries[${i}]`;
  const seen = new Set<string>();
  let name: string | null = null;
  for (let j = 0; j < pairs.length; j++) {
    const [n, v] = pairs[j]!;
    if (n === "") throw new BadInputError("empty label name", { field: `${where}.labels[${j}]` });
    if (seen.has(n)) throw new BadInputError(`duplicate label name ${JSON.stringify(n.slice(0, 64))}`, { field: `${where}.labels[${j}]` });
    // canonicalLabels checks these too, but would name the label only, not the series index.
    if (utf8LongerThan(n, limits.labelNameBytesMax))
      throw new TooLargeError(`label name ${JSON.stringify(n.slice(0, 64))} length in bytes`, limits.labelNameBytesMax, { field: `${where}.labels[${j}]` });
    if (utf8LongerThan(v, limits.labelValueBytesMax))
      throw new TooLargeError(`value of label ${JSON.stringify(n.slice(0, 64))} length in bytes`, limits.labelValueBytesMax, { field: `${where}.labels[${j}]` });
    seen.add(n);
    if (n === METRIC_NAME) name = v;
  }
  if (name === null || name === "") {
    const shown = pairs.map(([n, v]) => `${n}=${JSON.stringify(v.slice(0, 64))}`).join(",");
    throw new BadInputError(`series {${shown.slice(0, 200)}} has no metric name (${METRIC_NAME})`, { field: `${where}.labels` });
  }
  if (pairs.filter(([, v]) => v !== "").length > limits.labelsPerSeriesMax)
    throw new TooLargeError("number of labels in a series", limits.labelsPerSeriesMax, { field: `${where}.labels` });
  return canonicalLabels(pairs, limits, { field: where });
}

/**
 * A sample value from its IEEE-754 bits. A NaN gets its quiet bit set here,
 * once and for all: JavaScript may or may not quiet a signalling NaN (the
 * stale marker 0x7ff0000000000002) each time it is copied, and a value whose
 * bits changed between a request and its retry would conflict with itself.
 * The payload is kept (docs/format/batch.md).
 */
function float64FromBits(lo: number, hi: number): number {
  if ((hi & 0x7ff00000) === 0x7ff00000 && ((hi & 0xfffff) | lo) !== 0) hi |= 0x00080000;
  u32[0] = lo;
  u32[1] = hi;
  return f64[0]!;
}


// ---------------------------------------------------------------------------
// Storing the rest when some points conflict

/** The batch without the given points; null when nothing is left. Returns how many points were removed. */
export function withoutPoints(batch: Batch, points: readonly ConflictingPoint[]): { batch: Batch | null; removed: number } {
  const drop = new Map<string, Set<bigint>>();
  for (const p of points) {
    let s = drop.get(p.series);
    if (s === undefined) drop.set(p.series, (s = new Set()));
    s.add(BigInt(p.timestampNs));
  }
  const series: BatchSeries[] = [];
  let total = 0;
  let removed = 0;
  for (const s of batch.series) {
    const d = drop.get(s.key);
    if (d === undefined) {
      series.push(s);
      total += s.timestampsNs.length;
      continue;
    }
    // Typed arrays all the way: a plain array of doubles may lose a NaN's payload (a stale marker's).
    const ts = new BigInt64Array(s.timestampsNs.length);
    const vs = new Float64Array(s.values.length);
    let n = 0;
    for (let j = 0; j < s.timestampsNs.length; j++) {
      if (d.has(s.timestampsNs[j]!)) continue;
      ts[n] = s.timestampsNs[j]!;
      vs[n] = s.values[j]!;
      n++;
    }
    removed += s.timestampsNs.length - n;
    if (n === 0) continue;
    total += n;
    // Subsets of a canonical series stay sorted and unique: no need to re-check.
    series.push({ key: s.key, labels: s.labels, labelBytes: s.labelBytes, timestampsNs: ts.slice(0, n), values: vs.slice(0, n) });
  }
  assert(total + removed === batch.sampleCount, "removing points lost or invented samples");
  if (total === 0) return { batch: null, removed };
  return { batch: { ...batch, series, sampleCount: total }, removed };
}

const PARTIAL = "~partial-";
const PARTIAL_DIGEST_HEX = 40;

/**
 * The id of what is left of a request after conflicting points were removed:
 * `<id>~partial-<first 40 hex digits of the remainder's SHA-256>`, where
 * `<id>` is the request's own batch id (Idempotency-Key or digest). Derived
 * from the request's id and the remainder's content only, so a retry of the
 * same request, meeting the same stored points, writes the same batch id and
 * is a duplicate. When `<id>` is too long for the result to fit in 128 bytes
 * it is replaced by the hex SHA-256 of itself.
 */
export function partialBatchId(requestId: string, remainder: EncodedBatch): string {
  const suffix = PARTIAL + remainder.sha256.slice(0, PARTIAL_DIGEST_HEX);
  const base = requestId.length + suffix.length <= BATCH_ID_BYTES_MAX ? requestId : toHex(sha256(new TextEncoder().encode(requestId)));
  const id = base + suffix;
  assert(id.length <= BATCH_ID_BYTES_MAX, "partial batch id too long");
  return id;
}
