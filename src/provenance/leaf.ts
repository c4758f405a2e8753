// The Merkle log's leaf entry (`HQL1`, docs/format/ledger.md): what the
// sequencer commits to for one committed batch. Encoding only, no I/O.
//
// The entry holds the batch's identity and digest, not its points: the
// points are proved through the batch's canonical bytes (the archive), whose
// SHA-256 the entry fixes.

import { ByteReader, ByteWriter } from "../core/bytes.js";
import { BadInputError } from "../core/errors.js";
import { fromHex, toHex } from "../core/hash.js";
import { BATCH_ID_BYTES_MAX, ORIGIN_BY_CODE, ORIGIN_CODE, type Origin } from "../core/batch.js";
import { leafHash } from "./merkle.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";

export const LEAF_MAGIC = 0x314c5148; // "HQL1" little-endian
export const LEAF_VERSION = 1;
/** Batch ids are at most BATCH_ID_BYTES_MAX (128) bytes; the rest is fixed: an entry stays well under this. */
export const LEAF_ENTRY_BYTES_MAX = 512;


export interface LeafEntry {
  batchId: string;
  /** 64 lowercase hex digits: SHA-256 of the batch's canonical bytes. */
  sha256: string;
  shardId: number;
  hlc: bigint;
  sampleCount: number;
  origin: Origin;
}

export function encodeLeaf(e: LeafEntry): Uint8Array {
  if (e.batchId.length === 0 || Buffer.byteLength(e.batchId) > BATCH_ID_BYTES_MAX)
    throw new BadInputError(`leaf: batch id of ${Buffer.byteLength(e.batchId)} bytes (1-${BATCH_ID_BYTES_MAX})`, { field: "batchId" });
  if (!/^[0-9a-f]{64}$/.test(e.sha256)) throw new BadInputError("leaf: sha256 must be 64 lowercase hex digits", { field: "sha256" });
  if (!Number.isInteger(e.shardId) || e.shardId < 0 || e.shardId > 0xffffffff) throw new BadInputError(`leaf: shard id ${e.shardId}`, { field: "shardId" });
  if (e.hlc < INT64_MIN || e.hlc > INT64_MAX) throw new BadInputError(`leaf: hlc ${e.hlc} is not an int64`, { field: "hlc" });
  if (!Number.isInteger(e.sampleCount) || e.sampleCount < 0 || e.sampleCount > 0xffffffff) throw new BadInputError(`leaf: sample count ${e.sampleCount}`, { field: "sampleCount" });
  const w = new ByteWriter(64 + e.batchId.length);
  w.u32(LEAF_MAGIC).u8(LEAF_VERSION).str(e.batchId).bytes(fromHex(e.sha256)).u32(e.shardId).i64(e.hlc).u32(e.sampleCount).u8(ORIGIN_CODE[e.origin]);
  return w.finish();
}

export function decodeLeaf(bytes: Uint8Array, source = "leaf"): LeafEntry {
  if (bytes.length > LEAF_ENTRY_BYTES_MAX) throw new BadInputError(`${source}: ${bytes.length} bytes (at most ${LEAF_ENTRY_BYTES_MAX})`, { field: "entry" });
  const r = new ByteReader(bytes, source);
  if (r.u32() !== LEAF_MAGIC) throw new BadInputError(`${source}: not an HQL1 leaf entry`, { field: "magic" });
  const version = r.u8();
  if (version !== LEAF_VERSION) throw new BadInputError(`${source}: leaf version ${version} (want ${LEAF_VERSION})`, { field: "version" });
  const batchId = r.str();
  const sha256 = toHex(r.bytes(32));
  const shardId = r.u32();
  const hlc = r.i64();
  const sampleCount = r.u32();
  const originCode = r.u8();
  const origin = ORIGIN_BY_CODE[originCode];
  if (origin === undefined) throw new BadInputError(`${source}: origin code ${originCode}`, { field: "origin" });
  if (r.remaining !== 0) throw new BadInputError(`${source}: ${r.remaining} bytes after the entry`, { field: "entry" });
  const e = { batchId, sha256, shardId, hlc, sampleCount, origin };
  // Canonical: re-encoding gives the same bytes (a non-canonical entry would have two hashes).
  const again = encodeLeaf(e);
  if (again.length !== bytes.length || !again.every((b, i) => b === bytes[i])) throw new BadInputError(`${source}: not in canonical form`, { field: "entry" });
  return e;
}

export const leafHashOf = (e: LeafEntry): Uint8Array => leafHash(encodeLeaf(e));

/** The sequencer's order: HLC, then batch id (bytewise, as UTF-8). */
export function compareLeaves(a: LeafEntry, b: LeafEntry): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  return Buffer.compare(Buffer.from(a.batchId), Buffer.from(b.batchId));
}
