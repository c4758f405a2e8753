// Block file format (docs/format/block.md): an immutable file holding a time
// range of many series. Pure encode/decode; block-io.ts does the file I/O.
//
//   header (16 B) | data objects (timestamp columns, chunks) | index | footer (104 B)
//
// Every byte is covered by a checksum: the header and the footer by their own
// CRC32C, each data object by the CRC32C and SHA-256 kept in the index, the
// index by the CRC32C kept in the footer; verify() also checks the objects
// tile the data section exactly.

import { brotliCompressSync, brotliDecompressSync, constants as zc } from "node:zlib";
import { assert } from "../core/assert.js";
import { ORIGIN_BY_CODE, ORIGIN_CODE, type Origin } from "../core/batch.js";
import { ByteReader, ByteWriter } from "../core/bytes.js";
import { CorruptionError } from "../core/errors.js";
import { crc32c, fromHex, merkleRoot, sha256, toHex } from "../core/hash.js";
import { seriesKey, type Labels } from "../core/labels.js";
import { encodeChunk, encodeTimestampColumn, type ChunkCompression, type ChunkData } from "./chunk-codec.js";

export interface BlockBatchEntry {
  batchId: string;
  sha256: string; // hex
  origin: Origin;
  shardId: number;
  hlc: string;
  sampleCount: number;
  inference: string | null;
}

export interface BlockSeriesInput {
  labels: Labels;
  data: ChunkData; // batchRefs index into BlockInput.batches
}

export interface BlockInput {
  series: BlockSeriesInput[]; // sorted by seriesKey, keys unique
  batches: BlockBatchEntry[];
}

export interface EncodeBlockOptions {
  /** Largest chunk, in samples (default DEFAULT_CHUNK_SAMPLES_MAX). */
  chunkSamplesMax?: number;
  compression?: ChunkCompression;
  /** Store a timestamp column used by two or more chunks once (default true). */
  shareTimestamps?: boolean;
}

/** Where a stored object (chunk or timestamp column) lives and how to check it. */
export interface ObjectRef {
  readonly offset: number;
  readonly length: number;
  readonly count: number; // samples
  readonly crc32c: number;
  readonly sha256: Uint8Array; // 32 bytes
}

export interface ChunkRef extends ObjectRef {
  readonly minTimeNs: bigint;
  readonly maxTimeNs: bigint;
  /** Index of the shared timestamp column, or -1 when the chunk holds its own timestamps. */
  readonly tsColumn: number;
}

export interface BlockSeriesEntry {
  readonly labels: Labels;
  readonly key: string;
  readonly chunks: readonly ChunkRef[];
}

export interface BlockFooter {
  readonly indexOffset: number;
  readonly indexLength: number;
  readonly indexCrc32c: number;
  readonly minTimeNs: bigint;
  readonly maxTimeNs: bigint;
  readonly seriesCount: number;
  readonly chunkCount: number;
  readonly tsColumnCount: number;
  readonly batchCount: number;
  readonly sampleCount: number;
  readonly merkleRoot: Uint8Array;
}

export interface BlockIndex {
  readonly tsColumns: readonly ObjectRef[];
  readonly series: readonly BlockSeriesEntry[];
  readonly batches: readonly BlockBatchEntry[];
}

/** Byte counts of one encoded block, by part (for measurement). */
export interface BlockEncodeStats {
  header: number;
  tsColumns: number; // shared timestamp columns
  chunks: number; // chunk objects (values, origins, batch refs, inline timestamps)
  batchTable: number; // batch table section of the index
  seriesIndex: number; // series/chunk-ref section of the index
  footer: number;
  total: number;
  sharedTsColumns: number;
  chunkCount: number;
}

export const BLOCK_FORMAT_VERSION = 1;
export const DEFAULT_CHUNK_SAMPLES_MAX = 4096;
export const HEADER_SIZE = 16;
export const FOOTER_SIZE = 104;
const HEADER_MAGIC = new TextEncoder().encode("HQTSBLK1");
const FOOTER_MAGIC = new TextEncoder().encode("HQTSEND1");
const SECTION_RAW = 0;
const SECTION_BROTLI = 2;
/** Upper bound of an uncompressed index section (decoders refuse more). */
const SECTION_RAW_MAX = 1 << 30;

// ---------------------------------------------------------------------------
// Encoding

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function section(raw: Uint8Array, w: ByteWriter): void {
  const z = raw.length > 64 ? brotliCompressSync(raw, { params: { [zc.BROTLI_PARAM_QUALITY]: 6, [zc.BROTLI_PARAM_SIZE_HINT]: raw.length } }) : null;
  if (z !== null && z.length + 4 < raw.length) {
    w.u8(SECTION_BROTLI).uvarint(raw.length).uvarint(z.length).bytes(z);
  } else {
    w.u8(SECTION_RAW).uvarint(raw.length).bytes(raw);
  }
}

function slice(c: ChunkData, from: number, to: number): ChunkData {
  return {
    timestampsNs: c.timestampsNs.subarray(from, to),
    values: c.values.subarray(from, to),
    origins: c.origins.subarray(from, to),
    batchRefs: c.batchRefs.subarray(from, to),
  };
}

/** Splits n samples into ceil(n / max) chunks of near-equal size. */
function splitPoints(n: number, max: number): number[] {
  const parts = Math.max(1, Math.ceil(n / max));
  const out = [0];
  for (let p = 1; p <= parts; p++) out.push(Math.round((n * p) / parts));
  return out;
}

export function encodeBlock(input: BlockInput, opts: EncodeBlockOptions = {}): Uint8Array {
  return encodeBlockWithStats(input, opts).bytes;
}

export function encodeBlockWithStats(input: BlockInput, opts: EncodeBlockOptions = {}): { bytes: Uint8Array; stats: BlockEncodeStats } {
  const steps = encodeBlockSteps(input, opts);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/** Work of encodeBlock between two chances to give the event loop back, at most. */
const ENCODE_SLICE_MS = 5;

/**
 * encodeBlock that gives the event loop back every few milliseconds: a flush encodes a whole head (seconds of CPU for
 * millions of samples) while the node keeps answering writes and reads. The same bytes as encodeBlock.
 */
export async function encodeBlockYielding(input: BlockInput, opts: EncodeBlockOptions = {}): Promise<Uint8Array> {
  const steps = encodeBlockSteps(input, opts);
  let sliceStart = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value.bytes;
    if (performance.now() - sliceStart >= ENCODE_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}

/** Points where the encoder may pause, in pieces: often enough to keep a pause under a few ms. */
const PIECES_PER_STEP = 64;

/** The encoder, as steps: it yields between groups of chunks (the caller decides whether to pause there). */
function* encodeBlockSteps(input: BlockInput, opts: EncodeBlockOptions): Generator<void, { bytes: Uint8Array; stats: BlockEncodeStats }> {
  const max = opts.chunkSamplesMax ?? DEFAULT_CHUNK_SAMPLES_MAX;
  assert(Number.isInteger(max) && max >= 1 && max <= 1 << 20, "chunkSamplesMax out of range");
  const share = opts.shareTimestamps ?? true;
  const compression = opts.compression ?? "auto";
  const nb = input.batches.length;
  for (const b of input.batches) {
    assert(/^[0-9a-f]{64}$/.test(b.sha256), `batch ${b.batchId}: sha256 must be 64 lowercase hex digits`);
    assert(Number.isInteger(b.shardId) && b.shardId >= 0, "batch shardId must be a non-negative integer");
    assert(Number.isSafeInteger(b.sampleCount) && b.sampleCount >= 0, "batch sampleCount must be a non-negative integer");
    assert(ORIGIN_CODE[b.origin] !== undefined, "bad batch origin");
  }

  // 1. Cut chunks; find timestamp columns used by two or more chunks.
  interface Piece {
    series: number;
    data: ChunkData;
    tsKey: string;
  }
  const pieces: Piece[] = [];
  const keys: string[] = [];
  const useCount = new Map<string, number>();
  for (let s = 0; s < input.series.length; s++) {
    const { labels, data } = input.series[s]!;
    const key = seriesKey(labels);
    if (s > 0) assert(compareKeys(keys[s - 1]!, key) < 0, `series must be sorted by key and unique (${key})`);
    keys.push(key);
    const n = data.timestampsNs.length;
    assert(n >= 1, `series ${key} has no samples`);
    assert(data.values.length === n && data.origins.length === n && data.batchRefs.length === n, `series ${key}: columns differ in length`);
    for (let i = 0; i < n; i++) assert(data.batchRefs[i]! < nb, `series ${key}: batch ref out of range`);
    if (s % PIECES_PER_STEP === 0) yield;
    const cuts = splitPoints(n, max);
    for (let p = 0; p + 1 < cuts.length; p++) {
      const d = slice(data, cuts[p]!, cuts[p + 1]!);
      const tsKey = share ? toHex(sha256(new Uint8Array(d.timestampsNs.buffer, d.timestampsNs.byteOffset, d.timestampsNs.byteLength))) : "";
      if (share) useCount.set(tsKey, (useCount.get(tsKey) ?? 0) + 1);
      pieces.push({ series: s, data: d, tsKey });
    }
  }

  // 2. Data section: shared timestamp columns first, then chunks in index order.
  const w = new ByteWriter(1 << 16);
  w.bytes(HEADER_MAGIC).u32(BLOCK_FORMAT_VERSION);
  w.u32(crc32c(w.finish().subarray(0, 12)));
  assert(w.length === HEADER_SIZE, "header size");
  const tsColumns: ObjectRef[] = [];
  const tsIndex = new Map<string, number>();
  const put = (bytes: Uint8Array, count: number): ObjectRef => {
    const ref: ObjectRef = { offset: w.length, length: bytes.length, count, crc32c: crc32c(bytes), sha256: sha256(bytes) };
    w.bytes(bytes);
    return ref;
  };
  for (let k = 0; k < pieces.length; k++) {
    const p = pieces[k]!;
    if (k % PIECES_PER_STEP === 0) yield;
    if (!share || useCount.get(p.tsKey)! < 2 || tsIndex.has(p.tsKey)) continue;
    tsIndex.set(p.tsKey, tsColumns.length);
    tsColumns.push(put(encodeTimestampColumn(p.data.timestampsNs, { compression }), p.data.timestampsNs.length));
  }
  const tsBytes = w.length - HEADER_SIZE;
  const chunkLists: ChunkRef[][] = input.series.map(() => []);
  let minT = 0n;
  let maxT = 0n;
  let samples = 0;
  for (let k = 0; k < pieces.length; k++) {
    const p = pieces[k]!;
    if (k % PIECES_PER_STEP === 0) yield;
    const tsColumn = share ? (tsIndex.get(p.tsKey) ?? -1) : -1;
    const bytes = encodeChunk(p.data, { compression, externalTimestamps: tsColumn >= 0 });
    const n = p.data.timestampsNs.length;
    const lo = p.data.timestampsNs[0]!;
    const hi = p.data.timestampsNs[n - 1]!;
    if (samples === 0 || lo < minT) minT = lo;
    if (samples === 0 || hi > maxT) maxT = hi;
    samples += n;
    chunkLists[p.series]!.push({ ...put(bytes, n), minTimeNs: lo, maxTimeNs: hi, tsColumn });
  }
  const chunkBytes = w.length - HEADER_SIZE - tsBytes;

  // 3. Index: batch table section, then series section.
  const indexOffset = w.length;
  const bt = new ByteWriter(64 + nb * 128);
  bt.uvarint(nb);
  for (const b of input.batches) {
    bt.str(b.batchId).bytes(fromHex(b.sha256)).u8(ORIGIN_CODE[b.origin]).uvarint(b.shardId).str(b.hlc).uvarint(b.sampleCount);
    if (b.inference === null) bt.u8(0);
    else bt.u8(1).str(b.inference);
  }
  section(bt.finish(), w);
  const batchTableBytes = w.length - indexOffset;
  const si = new ByteWriter(1 << 16);
  si.uvarint(tsColumns.length);
  for (const t of tsColumns) writeObjectRef(si, t);
  si.uvarint(input.series.length);
  let chunkCount = 0;
  for (let s = 0; s < input.series.length; s++) {
    if (s % (4 * PIECES_PER_STEP) === 0) yield;
    const labels = input.series[s]!.labels;
    si.uvarint(labels.length);
    for (const [n, v] of labels) si.str(n).str(v);
    const chunks = chunkLists[s]!;
    si.uvarint(chunks.length);
    for (const c of chunks) {
      writeObjectRef(si, c);
      si.varint64(c.minTimeNs).varint64(c.maxTimeNs - c.minTimeNs).uvarint(c.tsColumn + 1);
      chunkCount++;
    }
  }
  section(si.finish(), w);
  yield;
  const indexLength = w.length - indexOffset;
  const all = w.finish();
  const indexCrc = crc32c(all.subarray(indexOffset, indexOffset + indexLength));

  // 4. Footer.
  yield;
  const root = blockMerkleRoot(tsColumns, chunkLists);
  yield;
  const footerAt = w.length;
  w.i64(BigInt(indexOffset)).u32(indexLength).u32(indexCrc);
  w.i64(minT).i64(maxT);
  w.u32(input.series.length).u32(chunkCount).u32(tsColumns.length).u32(nb).i64(BigInt(samples));
  w.bytes(root).u32(BLOCK_FORMAT_VERSION);
  const bytes0 = w.finish();
  w.u32(crc32c(bytes0.subarray(footerAt)));
  w.bytes(FOOTER_MAGIC);
  assert(w.length - footerAt === FOOTER_SIZE, "footer size");
  const bytes = w.finish();
  return {
    bytes,
    stats: {
      header: HEADER_SIZE,
      tsColumns: tsBytes,
      chunks: chunkBytes,
      batchTable: batchTableBytes,
      seriesIndex: indexLength - batchTableBytes,
      footer: FOOTER_SIZE,
      total: bytes.length,
      sharedTsColumns: tsColumns.length,
      chunkCount,
    },
  };
}

function writeObjectRef(w: ByteWriter, r: ObjectRef): void {
  w.uvarint(r.offset).uvarint(r.length).uvarint(r.count).u32(r.crc32c).bytes(r.sha256);
}

/** RFC 6962 Merkle root over the object digests: shared timestamp columns in table order, then chunks in index order. */
export function blockMerkleRoot(tsColumns: readonly ObjectRef[], chunksBySeries: readonly (readonly ChunkRef[])[]): Uint8Array {
  const leaves: Uint8Array[] = tsColumns.map((t) => t.sha256);
  for (const cs of chunksBySeries) for (const c of cs) leaves.push(c.sha256);
  return merkleRoot(leaves);
}

// ---------------------------------------------------------------------------
// Decoding. Every check failure is a CorruptionError naming the file offset.

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Checks the 16-byte header at offset 0. */
export function decodeHeader(bytes: Uint8Array, source: string): void {
  if (bytes.length < HEADER_SIZE) throw new CorruptionError("file too short for a block header", source, 0);
  if (crc32c(bytes.subarray(0, 12)) !== new DataView(bytes.buffer, bytes.byteOffset + 12, 4).getUint32(0, true))
    throw new CorruptionError("block header CRC32C mismatch", source, 0);
  if (!equalBytes(bytes.subarray(0, 8), HEADER_MAGIC)) throw new CorruptionError("not an HQ-TS block (bad magic)", source, 0);
  const version = new DataView(bytes.buffer, bytes.byteOffset + 8, 4).getUint32(0, true);
  if (version !== BLOCK_FORMAT_VERSION) throw new CorruptionError(`unsupported block format version ${version}`, source, 8);
}

/** Decodes and checks the footer: the last FOOTER_SIZE bytes of a file of fileSize bytes. */
export function decodeFooter(bytes: Uint8Array, fileSize: number, source: string): BlockFooter {
  const at = fileSize - FOOTER_SIZE;
  if (at < HEADER_SIZE || bytes.length !== FOOTER_SIZE) throw new CorruptionError("file too short for a block", source, 0);
  const r = new ByteReader(bytes, source);
  const crcStored = new DataView(bytes.buffer, bytes.byteOffset + FOOTER_SIZE - 12, 4).getUint32(0, true);
  if (crc32c(bytes.subarray(0, FOOTER_SIZE - 12)) !== crcStored) throw new CorruptionError("block footer CRC32C mismatch", source, at);
  if (!equalBytes(bytes.subarray(FOOTER_SIZE - 8), FOOTER_MAGIC)) throw new CorruptionError("bad block footer magic", source, at);
  const indexOffset = r.i64();
  const indexLength = r.u32();
  const indexCrc32c = r.u32();
  const minTimeNs = r.i64();
  const maxTimeNs = r.i64();
  const seriesCount = r.u32();
  const chunkCount = r.u32();
  const tsColumnCount = r.u32();
  const batchCount = r.u32();
  const sampleCount = r.i64();
  const root = r.bytes(32).slice();
  const version = r.u32();
  const bad = (what: string): never => {
    throw new CorruptionError(`block footer: ${what}`, source, at);
  };
  if (version !== BLOCK_FORMAT_VERSION) bad(`unsupported version ${version}`);
  if (indexOffset < BigInt(HEADER_SIZE) || indexOffset + BigInt(indexLength) !== BigInt(at)) bad("index range does not end at the footer");
  if (minTimeNs > maxTimeNs) bad("minTime > maxTime");
  if (sampleCount < 0n || sampleCount > BigInt(Number.MAX_SAFE_INTEGER)) bad("sample count out of range");
  if (chunkCount > 0 && (chunkCount < seriesCount || BigInt(chunkCount) > sampleCount)) bad("inconsistent counts");
  return {
    indexOffset: Number(indexOffset),
    indexLength,
    indexCrc32c,
    minTimeNs,
    maxTimeNs,
    seriesCount,
    chunkCount,
    tsColumnCount,
    batchCount,
    sampleCount: Number(sampleCount),
    merkleRoot: root,
  };
}

function readSection(r: ByteReader, source: string, base: number): ByteReader {
  const at = base + r.offset;
  const codec = r.u8();
  const rawLen = r.uvarint();
  if (rawLen > SECTION_RAW_MAX) throw new CorruptionError("index section too large", source, at);
  if (codec === SECTION_RAW) return new ByteReader(r.bytes(rawLen), source);
  if (codec !== SECTION_BROTLI) throw new CorruptionError(`unknown index section codec ${codec}`, source, at);
  const z = r.bytes(r.uvarint());
  let raw: Buffer;
  try {
    raw = brotliDecompressSync(z, { maxOutputLength: Math.max(1, rawLen) });
  } catch (e) {
    throw new CorruptionError("index section does not decompress", source, at, { cause: e });
  }
  if (raw.length !== rawLen) throw new CorruptionError("index section length mismatch", source, at);
  return new ByteReader(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), source);
}

/**
 * Decodes the index (the bytes [indexOffset, indexOffset + indexLength)),
 * verifying its CRC32C against the footer and every structural invariant.
 */
export function decodeIndex(indexBytes: Uint8Array, footer: BlockFooter, source: string): BlockIndex {
  const at = footer.indexOffset;
  if (crc32c(indexBytes) !== footer.indexCrc32c) throw new CorruptionError("block index CRC32C mismatch", source, at);
  try {
    return parseIndex(indexBytes, footer, source);
  } catch (e) {
    // The CRC matched, so this is a writer bug or a forged file: still never a crash.
    if (e instanceof CorruptionError) throw new CorruptionError(`malformed block index: ${e.message}`, source, at, { cause: e });
    throw new CorruptionError(`malformed block index: ${(e as Error)?.message ?? String(e)}`, source, at, { cause: e });
  }
}

function readObjectRef(r: ByteReader, dataEnd: number): ObjectRef {
  const offset = r.uvarint();
  const length = r.uvarint();
  const count = r.uvarint();
  const crc = r.u32();
  const digest = r.bytes(32).slice();
  if (offset < HEADER_SIZE || length < 1 || offset + length > dataEnd || count < 1) throw new Error(`object ref out of range (offset ${offset}, length ${length})`);
  return { offset, length, count, crc32c: crc, sha256: digest };
}

function parseIndex(bytes: Uint8Array, footer: BlockFooter, source: string): BlockIndex {
  const outer = new ByteReader(bytes, source);
  const dataEnd = footer.indexOffset;
  const bt = readSection(outer, source, footer.indexOffset);
  const si = readSection(outer, source, footer.indexOffset);
  if (outer.remaining !== 0) throw new Error("trailing bytes after the index sections");

  const nb = bt.uvarint();
  if (nb !== footer.batchCount) throw new Error("batch count differs from the footer");
  const batches: BlockBatchEntry[] = [];
  for (let i = 0; i < nb; i++) {
    const batchId = bt.str();
    const digest = toHex(bt.bytes(32));
    const origin = ORIGIN_BY_CODE[bt.u8()];
    if (origin === undefined) throw new Error("bad batch origin");
    const shardId = bt.uvarint();
    const hlc = bt.str();
    const sampleCount = bt.uvarint();
    const hasInf = bt.u8();
    if (hasInf > 1) throw new Error("bad inference flag");
    const inference = hasInf === 1 ? bt.str() : null;
    batches.push({ batchId, sha256: digest, origin, shardId, hlc, sampleCount, inference });
  }
  if (bt.remaining !== 0) throw new Error("trailing bytes in the batch table");

  const nts = si.uvarint();
  if (nts !== footer.tsColumnCount) throw new Error("timestamp column count differs from the footer");
  const tsColumns: ObjectRef[] = [];
  for (let i = 0; i < nts; i++) tsColumns.push(readObjectRef(si, dataEnd));
  const ns = si.uvarint();
  if (ns !== footer.seriesCount) throw new Error("series count differs from the footer");
  const series: BlockSeriesEntry[] = [];
  let chunkCount = 0;
  let samples = 0;
  let prevKey: string | null = null;
  for (let s = 0; s < ns; s++) {
    const nl = si.uvarint();
    const labels: [string, string][] = [];
    for (let j = 0; j < nl; j++) labels.push([si.str(), si.str()]);
    const key = seriesKey(labels);
    if (prevKey !== null && !(prevKey < key)) throw new Error(`series not sorted at ${key}`);
    prevKey = key;
    const nc = si.uvarint();
    if (nc < 1) throw new Error(`series ${key} has no chunks`);
    const chunks: ChunkRef[] = [];
    let prevMax: bigint | null = null;
    for (let c = 0; c < nc; c++) {
      const o = readObjectRef(si, dataEnd);
      const minTimeNs = si.varint64();
      const span = si.varint64();
      const tsColumn = si.uvarint() - 1;
      const maxTimeNs = minTimeNs + span;
      if (span < 0n || (o.count > 1 && span === 0n) || minTimeNs < footer.minTimeNs || maxTimeNs > footer.maxTimeNs)
        throw new Error(`chunk at ${o.offset}: time range out of bounds`);
      if (prevMax !== null && minTimeNs <= prevMax) throw new Error(`chunk at ${o.offset}: overlaps the previous chunk`);
      if (tsColumn >= nts || (tsColumn >= 0 && tsColumns[tsColumn]!.count !== o.count))
        throw new Error(`chunk at ${o.offset}: bad timestamp column ${tsColumn}`);
      prevMax = maxTimeNs;
      chunks.push({ ...o, minTimeNs, maxTimeNs, tsColumn });
      samples += o.count;
      chunkCount++;
    }
    series.push({ labels, key, chunks });
  }
  if (si.remaining !== 0) throw new Error("trailing bytes in the series index");
  if (chunkCount !== footer.chunkCount) throw new Error("chunk count differs from the footer");
  if (samples !== footer.sampleCount) throw new Error("sample count differs from the footer");
  return { tsColumns, series, batches };
}
