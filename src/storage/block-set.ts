// The immutable blocks a node serves: their readers, the cache of decoded chunks, and the ways a block comes and goes
// (attached at open and by a flush; detached when found damaged; deleted past retention). Taking a block out is one
// synchronous step over every read path (series, batch locations, chunk cache, digest windows), so no read sees half
// of it.

import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Logger } from "pino";
import { assert } from "../core/assert.js";
import { ORIGIN_CODE } from "../core/batch.js";
import { CorruptionError, NotFoundError } from "../core/errors.js";
import type { BatchTable } from "./batch-table.js";
import type { ChunkRef } from "./block-format.js";
import { BlockReader, blockFileMinTimeNs, readBlockFooter } from "./block-io.js";
import type { ChunkData } from "./chunk-codec.js";
import type { DigestWindowCache } from "./digest-cache.js";
import type { DamagedBlock, DetachedBlock, ScrubTarget } from "./engine-api.js";
import type { Head } from "./engine-head.js";
import type { BlockRef, SeriesState } from "./engine-state.js";

/**
 * Decoded block chunks kept in memory, bounded by their decoded bytes (not by
 * count): a wide read touches one chunk per series (tens of thousands), and a
 * count bound small enough to be safe for large chunks made such reads evict
 * every chunk before its reuse, so each repetition re-read, re-verified and
 * re-decoded everything. 256 MiB holds ~12 M decoded samples (21 B each). A
 * chunk is verified (CRC32C and SHA-256) each time it is loaded from disk into
 * this cache; a hit serves the bytes that were verified at load.
 */
export const CHUNK_CACHE_BYTES_MAX = 256 * 1024 * 1024;

interface CachedChunk {
  readonly reader: BlockReader;
  readonly data: ChunkData;
  readonly bytes: number;
}

/** A block chunk of a series that may hold a point in a time range (BlockSet.overlapping). */
export interface ChunkCandidate {
  readonly ref: BlockRef;
  readonly chunk: ChunkRef;
}

/** A point as stored: its value, origin code and the id of the batch it belongs to. */
export interface StoredPoint {
  v: number;
  origin: number;
  batchId: string;
}

export class BlockSet {
  readonly dir: string;
  /**
   * Attached blocks, in attach order (file names at open, then each flush's). Changed by attach and unlink only;
   * every reader here has its series in SeriesState.blocks and is in its batches' blockPaths, and no other is.
   */
  readonly readers: BlockReader[] = [];
  /**
   * LRU (Map order) of decoded chunks, keyed by the index's ChunkRef objects (stable for a reader's life). Filled by
   * chunk(), emptied of a reader's chunks by unlink; chunkCacheBytes is the sum of its entries' bytes.
   */
  private readonly chunkCache = new Map<ChunkRef, CachedChunk>();
  private chunkCacheBytes = 0;

  constructor(
    private readonly dataDir: string,
    private readonly head: Head,
    private readonly batches: BatchTable,
    /** Forgets the windows of a block taken out (docs/format/point-digest.md, "Cache"). */
    private readonly digestCache: DigestWindowCache,
    private readonly log: Logger,
  ) {
    this.dir = join(dataDir, "blocks");
  }

  /**
   * Attaches every block file. A block that fails its checks (or that the system cannot read) refuses the open with
   * onDamage "fail"; with "quarantine" it is moved to <dataDir>/quarantine/ and reported.
   */
  async load(onDamage: "fail" | "quarantine"): Promise<DamagedBlock[]> {
    const damaged: DamagedBlock[] = [];
    const names = (await readdir(this.dir)).filter((n) => n.endsWith(".hqb")).sort();
    for (const name of names) {
      const path = join(this.dir, name);
      let reader: BlockReader | null = null;
      try {
        reader = await BlockReader.open(path);
        this.attach(reader);
      } catch (err) {
        // A checksum that fails, or a file the system cannot read (EIO on a bad sector): either way damage.
        if (!(err instanceof CorruptionError) && !isSystemError(err)) throw err;
        this.log.error({ file: path, err: err.message }, "corrupt block");
        if (onDamage === "fail") throw err;
        await reader?.close();
        // What is known of the loss, read before the move: the footer may hold even when the index does not.
        const footer = readBlockFooter(path);
        const quarantinedTo = await this.quarantine(path);
        damaged.push({
          path,
          quarantinedTo,
          error: err.message,
          minTimeNs: footer?.minTimeNs ?? null,
          maxTimeNs: footer?.maxTimeNs ?? null,
          seriesCount: footer?.seriesCount ?? null,
          sampleCount: footer?.sampleCount ?? null,
          nameMinTimeNs: blockFileMinTimeNs(name),
        });
        this.log.error({ file: path, quarantinedTo, err: err.message }, "corrupt block quarantined: every sample in it is lost on this node until repaired");
        continue;
      }
    }
    return damaged;
  }

  /** Adds a block's series and batches; a block naming a known batch id with another digest is refused whole (BatchTable.checkBlock). */
  attach(reader: BlockReader): void {
    this.batches.checkBlock(reader);
    this.readers.push(reader);
    for (const entry of reader.series()) this.head.seriesFor(entry.key, entry.labels).blocks.push({ reader, entry });
    this.batches.addBlock(reader);
  }

  /** Takes a block out of every read path, synchronously: series, batch locations, chunk cache, digest windows. */
  private unlink(r: BlockReader, batchesWithoutLocation: "forget" | "keep"): void {
    const at = this.readers.indexOf(r);
    assert(at >= 0, `unlink of a block not attached: ${r.meta.path}`);
    this.readers.splice(at, 1);
    for (const s of this.head.series.values()) if (s.blocks.some((b) => b.reader === r)) s.blocks = s.blocks.filter((b) => b.reader !== r);
    this.batches.dropBlock(r, batchesWithoutLocation);
    for (const [k, e] of [...this.chunkCache])
      if (e.reader === r) {
        this.chunkCache.delete(k);
        this.chunkCacheBytes -= e.bytes;
      }
    this.digestCache.forgetRange(r.meta.minTimeNs, r.meta.maxTimeNs);
  }

  /**
   * For a block found damaged (or missing) while running: stops reading it and moves the file to
   * <dataDir>/quarantine/ (a no-op when it is already gone). Its batches stay known (BatchTable.dropBlock "keep").
   */
  async detach(path: string): Promise<DetachedBlock> {
    const r = this.readers.find((x) => x.meta.path === path);
    if (r === undefined) throw new NotFoundError(`block ${path} is not attached here`);
    const m = r.meta;
    const batchIds = r.batches().map((b) => b.batchId);
    this.unlink(r, "keep");
    await r.close();
    const quarantinedTo = await this.quarantine(path);
    const lost: DetachedBlock = { path, quarantinedTo, minTimeNs: m.minTimeNs, maxTimeNs: m.maxTimeNs, seriesCount: m.seriesCount, sampleCount: m.sampleCount, batchIds };
    this.log.error(
      { block: path, quarantinedTo, minTimeNs: m.minTimeNs.toString(), maxTimeNs: m.maxTimeNs.toString(), samples: m.sampleCount, batches: batchIds.length },
      "damaged block detached: its samples are lost on this node until repaired from a peer",
    );
    return lost;
  }

  /** Deletes the blocks wholly older than `cutoffNs`, then the series left with no data. */
  async applyRetention(cutoffNs: bigint): Promise<void> {
    const expired = this.readers.filter((r) => r.meta.maxTimeNs < cutoffNs);
    for (const r of expired) {
      // detach may have taken it while an earlier one was being deleted.
      if (!this.readers.includes(r)) continue;
      // Forgotten once no block names it and it has no head points: its id may then take content again.
      this.unlink(r, "forget");
      await r.close();
      await rm(r.meta.path, { force: true });
      this.log.info({ block: r.meta.path }, "block past retention deleted");
    }
    this.head.dropEmptySeries();
  }

  /** Moves a block file to <dataDir>/quarantine/; null when the file is already gone. */
  private async quarantine(path: string): Promise<string | null> {
    const q = join(this.dataDir, "quarantine");
    await mkdir(q, { recursive: true });
    let to = join(q, basename(path));
    // Block names carry 48 random bits, but a block quarantined twice (restored by hand, damaged again) must not
    // overwrite the earlier copy.
    for (let n = 1; await exists(to); n++) to = join(q, `${basename(path)}.${n}`);
    try {
      await rename(path, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
    return to;
  }

  /** The chunks of a series' blocks that overlap [minT, maxT]. */
  overlapping(s: SeriesState, minT: bigint, maxT: bigint): ChunkCandidate[] {
    const out: ChunkCandidate[] = [];
    for (const ref of s.blocks)
      for (const c of ref.entry.chunks) if (c.maxTimeNs >= minT && c.minTimeNs <= maxT) out.push({ ref, chunk: c });
    return out;
  }

  /**
   * A chunk, decoded and verified. The arrays are shared with the cache (and, for timestamps, with every chunk of
   * the same shared column): readers must not write into them.
   */
  chunk(ref: BlockRef, c: ChunkRef): ChunkData {
    const hit = this.chunkCache.get(c);
    if (hit !== undefined) {
      this.chunkCache.delete(c);
      this.chunkCache.set(c, hit);
      return hit.data;
    }
    const d = ref.reader.readChunk(c, true);
    const n = d.timestampsNs.length;
    // Counts the timestamps even when shared with other chunks: an over-estimate keeps the bound an upper bound.
    const bytes = n * (8 + 8 + 1 + 4) + 64;
    this.chunkCache.set(c, { reader: ref.reader, data: d, bytes });
    this.chunkCacheBytes += bytes;
    while (this.chunkCacheBytes > CHUNK_CACHE_BYTES_MAX && this.chunkCache.size > 1) {
      const [oldest, e] = this.chunkCache.entries().next().value!;
      this.chunkCache.delete(oldest);
      this.chunkCacheBytes -= e.bytes;
    }
    return d;
  }

  /** The stored point at t in these chunks: an original wins over an inferred one. */
  find(cands: readonly ChunkCandidate[], t: bigint): StoredPoint | null {
    let found: StoredPoint | null = null;
    for (const { ref, chunk } of cands) {
      if (t < chunk.minTimeNs || t > chunk.maxTimeNs) continue;
      const d = this.chunk(ref, chunk);
      const i = bsearch(d.timestampsNs, t);
      if (i < 0) continue;
      const o = d.origins[i]!;
      if (found === null || (found.origin !== ORIGIN_CODE.original && o === ORIGIN_CODE.original))
        found = { v: d.values[i]!, origin: o, batchId: ref.reader.batches()[d.batchRefs[i]!]!.batchId };
    }
    return found;
  }

  scrubTargets(): ScrubTarget[] {
    return this.readers.map((r) => ({ kind: "block", path: r.meta.path, sizeBytes: r.meta.sizeBytes }));
  }

  bytes(): number {
    return this.readers.reduce((a, r) => a + r.meta.sizeBytes, 0);
  }

  samples(): number {
    return this.readers.reduce((a, r) => a + r.meta.sampleCount, 0);
  }

  async close(): Promise<void> {
    for (const r of this.readers) await r.close();
  }
}

function bsearch(a: BigInt64Array, t: bigint): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = a[mid]!;
    if (v < t) lo = mid + 1;
    else if (v > t) hi = mid - 1;
    else return mid;
  }
  return -1;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** An error from the operating system (it carries an errno), as opposed to a bug or a typed HqError. */
function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).errno === "number";
}
