// Block files: atomic write (tmp, fsync, rename, fsync dir) and a reader that
// verifies everything it hands out (docs/format/block.md).

import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { CorruptionError } from "../core/errors.js";
import { crc32c, sha256, toHex } from "../core/hash.js";
import {
  blockMerkleRoot,
  decodeFooter,
  decodeHeader,
  decodeIndex,
  encodeBlockYielding,
  FOOTER_SIZE,
  HEADER_SIZE,
  type BlockBatchEntry,
  type BlockFooter,
  type BlockIndex,
  type BlockInput,
  type BlockSeriesEntry,
  type ChunkRef,
  type EncodeBlockOptions,
  type ObjectRef,
} from "./block-format.js";
import { decodeChunk, decodeTimestampColumn, type ChunkData } from "./chunk-codec.js";

export interface BlockMeta {
  readonly path: string;
  readonly minTimeNs: bigint;
  readonly maxTimeNs: bigint;
  readonly seriesCount: number;
  readonly chunkCount: number;
  readonly sampleCount: number;
  readonly batchCount: number;
  readonly sizeBytes: number;
  readonly merkleRootHex: string;
  /** Where the index (batch table first) starts: what a CorruptionError about the batch table names. */
  readonly indexOffset: number;
}

export interface VerifyFinding {
  file: string;
  offset: number;
  length: number;
  what: string;
}

export interface VerifyResult {
  ok: boolean;
  findings: VerifyFinding[];
}

const INT64_BIAS = 1n << 63n;

/**
 * `b-<16 hex digits: minTime in ms + 2^63>-<12 hex random>.hqb`: sorts by
 * minimum time as plain strings (negative times included).
 */
export function blockFileName(minTimeNs: bigint): string {
  let ms = minTimeNs / 1_000_000n;
  if (minTimeNs < 0n && ms * 1_000_000n !== minTimeNs) ms -= 1n;
  const key = (ms + INT64_BIAS).toString(16).padStart(16, "0");
  return `b-${key}-${randomBytes(6).toString("hex")}.hqb`;
}

/** The minimum time a block file name carries (ms precision, floored), or null for another name. */
export function blockFileMinTimeNs(name: string): bigint | null {
  const m = /^b-([0-9a-f]{16})-[0-9a-f]{12}\.hqb$/.exec(name);
  if (m === null) return null;
  return (BigInt(`0x${m[1]}`) - INT64_BIAS) * 1_000_000n;
}

/** Writes a block atomically: tmp file, fsync, rename to its final name, fsync the directory. */
export async function writeBlock(dir: string, input: BlockInput, opts: EncodeBlockOptions = {}): Promise<BlockMeta> {
  const bytes = await encodeBlockYielding(input, opts);
  const footer = decodeFooter(bytes.subarray(bytes.length - FOOTER_SIZE), bytes.length, "(new block)");
  const name = blockFileName(footer.minTimeNs);
  const tmp = join(dir, `.tmp-${name}`);
  const path = join(dir, name);
  const fh = await open(tmp, "wx");
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
  return metaOf(path, footer, bytes.length);
}

function metaOf(path: string, f: BlockFooter, sizeBytes: number): BlockMeta {
  return {
    path,
    minTimeNs: f.minTimeNs,
    maxTimeNs: f.maxTimeNs,
    seriesCount: f.seriesCount,
    chunkCount: f.chunkCount,
    sampleCount: f.sampleCount,
    batchCount: f.batchCount,
    sizeBytes,
    merkleRootHex: toHex(f.merkleRoot),
    indexOffset: f.indexOffset,
  };
}

function pread(fd: number, offset: number, length: number, path: string): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) throw new CorruptionError(`file ends early: wanted ${length} bytes`, path, offset + done);
    done += n;
  }
  return buf;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reads the structure (header, footer, index) of a block file, checking every checksum. */
function readStructure(fd: number, path: string): { footer: BlockFooter; index: BlockIndex; size: number } {
  const size = fstatSync(fd).size;
  if (size < HEADER_SIZE + FOOTER_SIZE) throw new CorruptionError(`file of ${size} bytes is too short for a block`, path, 0);
  decodeHeader(pread(fd, 0, HEADER_SIZE, path), path);
  const footer = decodeFooter(pread(fd, size - FOOTER_SIZE, FOOTER_SIZE, path), size, path);
  const index = decodeIndex(pread(fd, footer.indexOffset, footer.indexLength, path), footer, path);
  return { footer, index, size };
}

/**
 * Decoded shared timestamp columns kept per reader, bounded by bytes: a block
 * has one column per group of series scraped together (hundreds on a large
 * block), and a bound by count below that made a wide read re-read, re-verify
 * and re-decode a column for nearly every chunk. 32 MiB = 4 M timestamps.
 */
const TS_CACHE_BYTES_MAX = 32 * 1024 * 1024;

export class BlockReader {
  private fd: number | null;
  private readonly index: BlockIndex;
  private readonly tsCache = new Map<number, BigInt64Array>();
  private tsCacheBytes = 0;

  private constructor(
    fd: number,
    readonly meta: BlockMeta,
    index: BlockIndex,
  ) {
    this.fd = fd;
    this.index = index;
  }

  /** Opens a block, verifying the header, footer and index checksums (chunks are checked when read). */
  static async open(path: string): Promise<BlockReader> {
    const fd = openSync(path, "r");
    try {
      const { footer, index, size } = readStructure(fd, path);
      return new BlockReader(fd, metaOf(path, footer, size), index);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  series(): readonly BlockSeriesEntry[] {
    return this.index.series;
  }

  batches(): readonly BlockBatchEntry[] {
    return this.index.batches;
  }

  /** Shared timestamp columns (for tools and tests). */
  timestampColumns(): readonly ObjectRef[] {
    return this.index.tsColumns;
  }

  private handle(): number {
    if (this.fd === null) throw new Error(`block ${this.meta.path} is closed`);
    return this.fd;
  }

  private readObject(ref: ObjectRef, what: string): Uint8Array {
    const path = this.meta.path;
    const bytes = pread(this.handle(), ref.offset, ref.length, path);
    if (crc32c(bytes) !== ref.crc32c) throw new CorruptionError(`${what} CRC32C mismatch`, path, ref.offset);
    if (!equalBytes(sha256(bytes), ref.sha256)) throw new CorruptionError(`${what} SHA-256 mismatch`, path, ref.offset);
    return bytes;
  }

  private timestamps(col: number): BigInt64Array {
    let ts = this.tsCache.get(col);
    if (ts === undefined) {
      const ref = this.index.tsColumns[col]!;
      ts = decodeTimestampColumn(this.readObject(ref, "timestamp column"), this.meta.path, ref.offset);
      if (ts.length !== ref.count) throw new CorruptionError("timestamp column sample count differs from the index", this.meta.path, ref.offset);
      this.tsCache.set(col, ts);
      this.tsCacheBytes += ts.byteLength;
      while (this.tsCacheBytes > TS_CACHE_BYTES_MAX && this.tsCache.size > 1) {
        const [oldest, old] = this.tsCache.entries().next().value!;
        this.tsCache.delete(oldest);
        this.tsCacheBytes -= old.byteLength;
      }
    }
    return ts;
  }

  /**
   * Reads one chunk, verifying its CRC32C, SHA-256 and its agreement with the index. The arrays are the caller's,
   * unless `shareTimestamps`: then a chunk stored against a shared timestamp column gets the reader's decoded column
   * itself (no copy per chunk), for callers that never write into it (the engine's chunk cache).
   */
  readChunk(ref: ChunkRef, shareTimestamps = false): ChunkData {
    const path = this.meta.path;
    const bytes = this.readObject(ref, "chunk");
    let shared: BigInt64Array | undefined;
    if (ref.tsColumn >= 0) {
      const col = this.timestamps(ref.tsColumn);
      shared = shareTimestamps ? col : col.slice();
    }
    const d = decodeChunk(bytes, path, ref.offset, shared);
    const n = d.timestampsNs.length;
    if (n !== ref.count || d.timestampsNs[0] !== ref.minTimeNs || d.timestampsNs[n - 1] !== ref.maxTimeNs)
      throw new CorruptionError("chunk disagrees with the index (count or time range)", path, ref.offset);
    const nb = this.index.batches.length;
    for (let i = 0; i < n; i++)
      if (d.batchRefs[i]! >= nb) throw new CorruptionError(`chunk batch ref ${d.batchRefs[i]} out of range`, path, ref.offset);
    return d;
  }

  /** All of one series' chunks, read (and verified) as readChunk does, as one column set in time order. */
  readSeriesData(entry: BlockSeriesEntry): ChunkData {
    const parts = entry.chunks.map((c) => this.readChunk(c));
    const n = parts.reduce((k, p) => k + p.timestampsNs.length, 0);
    const d: ChunkData = { timestampsNs: new BigInt64Array(n), values: new Float64Array(n), origins: new Uint8Array(n), batchRefs: new Uint32Array(n) };
    let at = 0;
    for (const p of parts) {
      d.timestampsNs.set(p.timestampsNs, at);
      d.values.set(p.values, at);
      d.origins.set(p.origins, at);
      d.batchRefs.set(p.batchRefs, at);
      at += p.timestampsNs.length;
    }
    return d;
  }

  /** Scrubs the whole file from disk: every checksum, every chunk decode, the layout and the Merkle root. */
  verify(): VerifyResult {
    return verifyFd(this.handle(), this.meta.path);
  }

  async close(): Promise<void> {
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      this.tsCache.clear();
      this.tsCacheBytes = 0;
      closeSync(fd);
    }
  }
}

/** Scrubs a block file without opening it as a reader: never throws for corruption, reports findings. */
export async function verifyBlockFile(path: string): Promise<VerifyResult> {
  const fd = openSync(path, "r");
  try {
    return verifyFd(fd, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * verifyBlockFile in steps, for a caller that paces its reads (the scrubber): yields the bytes read by each step
 * (the structure, then one object at a time) and returns the result. The file is opened at the first next() (an
 * absent file throws ENOENT there) and closed when the generator finishes or is returned early.
 */
export function* verifyBlockFileSteps(path: string): Generator<number, VerifyResult, void> {
  const fd = openSync(path, "r");
  try {
    return yield* verifySteps(fd, path);
  } finally {
    closeSync(fd);
  }
}

function verifyFd(fd: number, path: string): VerifyResult {
  const steps = verifySteps(fd, path);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/** What a footer whose own checksum holds says, even when the rest of the block is damaged. */
export interface BlockFooterSummary {
  minTimeNs: bigint;
  maxTimeNs: bigint;
  seriesCount: number;
  sampleCount: number;
  batchCount: number;
}

/** The footer of a block file if it is readable and its checksum holds, else null (a damaged block's report). */
export function readBlockFooter(path: string): BlockFooterSummary | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    if (size < HEADER_SIZE + FOOTER_SIZE) return null;
    const f = decodeFooter(pread(fd, size - FOOTER_SIZE, FOOTER_SIZE, path), size, path);
    return { minTimeNs: f.minTimeNs, maxTimeNs: f.maxTimeNs, seriesCount: f.seriesCount, sampleCount: f.sampleCount, batchCount: f.batchCount };
  } catch (e) {
    if (e instanceof CorruptionError) return null;
    throw e;
  } finally {
    closeSync(fd);
  }
}

function* verifySteps(fd: number, path: string): Generator<number, VerifyResult, void> {
  const findings: VerifyFinding[] = [];
  const found = (offset: number, length: number, what: string): void => {
    findings.push({ file: path, offset, length, what });
  };
  let structure: { footer: BlockFooter; index: BlockIndex; size: number };
  const size = fstatSync(fd).size;
  try {
    structure = readStructure(fd, path);
  } catch (e) {
    if (!(e instanceof CorruptionError)) throw e;
    // Name the region whose check failed.
    let length = 1;
    if (e.offset === 0) length = HEADER_SIZE;
    else if (e.offset >= size - FOOTER_SIZE) length = size - e.offset;
    else length = Math.max(1, size - FOOTER_SIZE - e.offset);
    found(e.offset, length, e.message);
    yield size;
    return { ok: false, findings };
  }
  const { footer, index } = structure;
  yield HEADER_SIZE + FOOTER_SIZE + footer.indexLength;
  const objects: { ref: ObjectRef; what: string }[] = index.tsColumns.map((ref, i) => ({ ref, what: `timestamp column ${i}` }));
  for (const s of index.series) for (const c of s.chunks) objects.push({ ref: c, what: `chunk of ${s.key}` });
  // Layout: the objects tile [HEADER_SIZE, indexOffset) exactly.
  const sorted = [...objects].sort((a, b) => a.ref.offset - b.ref.offset);
  let at = HEADER_SIZE;
  for (const o of sorted) {
    if (o.ref.offset !== at) found(Math.min(at, o.ref.offset), Math.max(1, Math.abs(o.ref.offset - at)), `layout: gap or overlap before ${o.what}`);
    at = o.ref.offset + o.ref.length;
  }
  if (at !== footer.indexOffset) found(Math.min(at, footer.indexOffset), Math.max(1, Math.abs(footer.indexOffset - at)), "layout: objects do not end at the index");
  // Objects: CRC32C, SHA-256, decode.
  const tsDecoded: (BigInt64Array | null)[] = [];
  for (let i = 0; i < index.tsColumns.length; i++) {
    const ref = index.tsColumns[i]!;
    const r = checkObject(fd, path, ref, `timestamp column ${i}`, found);
    let ts: BigInt64Array | null = null;
    if (r !== null) {
      try {
        ts = decodeTimestampColumn(r, path, ref.offset);
        if (ts.length !== ref.count) {
          found(ref.offset, ref.length, `timestamp column ${i}: sample count differs from the index`);
          ts = null;
        }
      } catch (e) {
        if (!(e instanceof CorruptionError)) throw e;
        found(ref.offset, ref.length, `timestamp column ${i}: ${e.message}`);
      }
    }
    tsDecoded.push(ts);
    yield ref.length;
  }
  for (const s of index.series) {
    for (const c of s.chunks) {
      const bytes = checkObject(fd, path, c, `chunk of ${s.key}`, found);
      if (bytes !== null) checkChunk(path, s.key, c, bytes, tsDecoded, index.batches.length, found);
      yield c.length;
    }
  }
  const root = blockMerkleRoot(index.tsColumns, index.series.map((s) => s.chunks));
  if (!equalBytes(root, footer.merkleRoot)) found(size - FOOTER_SIZE, FOOTER_SIZE, "Merkle root in the footer does not match the object digests");
  findings.sort((a, b) => a.offset - b.offset);
  return { ok: findings.length === 0, findings };
}

/** Decodes a chunk whose checksums held and checks it against the index. */
function checkChunk(
  path: string,
  key: string,
  c: ChunkRef,
  bytes: Uint8Array,
  tsDecoded: readonly (BigInt64Array | null)[],
  batchCount: number,
  found: (o: number, l: number, w: string) => void,
): void {
  if (c.tsColumn >= 0 && tsDecoded[c.tsColumn] === null) {
    found(c.offset, c.length, `chunk of ${key}: its timestamp column ${c.tsColumn} is damaged`);
    return;
  }
  try {
    const shared = c.tsColumn >= 0 ? tsDecoded[c.tsColumn]! : undefined;
    const d = decodeChunk(bytes, path, c.offset, shared);
    const n = d.timestampsNs.length;
    if (n !== c.count || d.timestampsNs[0] !== c.minTimeNs || d.timestampsNs[n - 1] !== c.maxTimeNs)
      found(c.offset, c.length, `chunk of ${key}: disagrees with the index (count or time range)`);
    for (let i = 0; i < n; i++)
      if (d.batchRefs[i]! >= batchCount) {
        found(c.offset, c.length, `chunk of ${key}: batch ref out of range`);
        break;
      }
  } catch (e) {
    if (!(e instanceof CorruptionError)) throw e;
    found(c.offset, c.length, `chunk of ${key}: ${e.message}`);
  }
}

function checkObject(fd: number, path: string, ref: ObjectRef, what: string, found: (o: number, l: number, w: string) => void): Uint8Array | null {
  let bytes: Uint8Array;
  try {
    bytes = pread(fd, ref.offset, ref.length, path);
  } catch (e) {
    if (!(e instanceof CorruptionError)) throw e;
    found(ref.offset, ref.length, `${what}: ${e.message}`);
    return null;
  }
  if (crc32c(bytes) !== ref.crc32c) {
    found(ref.offset, ref.length, `${what}: CRC32C mismatch`);
    return null;
  }
  if (!equalBytes(sha256(bytes), ref.sha256)) {
    found(ref.offset, ref.length, `${what}: SHA-256 mismatch`);
    return null;
  }
  return bytes;
}

export type { BlockBatchEntry, BlockSeriesEntry, ChunkRef, BlockInput, EncodeBlockOptions };
