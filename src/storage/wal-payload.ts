// What the storage engine writes into a WAL record (docs/format/wal-payload.md).
// Pure encoding; the WAL itself treats payloads as opaque bytes.

import { assert } from "../core/assert.js";
import { decodeBatch, type Batch } from "../core/batch.js";
import { ByteReader, ByteWriter } from "../core/bytes.js";
import { CorruptionError } from "../core/errors.js";
import { fromHex, sha256, toHex } from "../core/hash.js";
import { seriesKey } from "../core/labels.js";

/** Record types the engine uses. Values are part of the on-disk format. */
export const WalRecordType = Object.freeze({
  /** Cluster: a prepared batch whose fate is decided by a later mark. */
  PREPARE: 1,
  COMMIT: 2,
  ABORT: 3,
  /** Standalone: a batch prepared and committed in one record. */
  COMMITTED_BATCH: 4,
  /** Cluster: a replication-protocol log record (src/cluster/engine-store.ts); opaque to the engine. */
  REPLICA_LOG: 5,
  /** Committed points of a batch copied from a peer replica (Engine.repair). */
  REPAIR: 6,
});

const VERSION = 1;

export interface WalBatchRecord {
  batchId: string;
  sha256: string; // hex
  hlc: bigint;
  batchBytes: Uint8Array; // canonical batch encoding (core/batch.ts)
}

export function encodeWalBatch(r: WalBatchRecord): Uint8Array {
  const digest = fromHex(r.sha256);
  const w = new ByteWriter(r.batchBytes.length + r.batchId.length + 64);
  w.u8(VERSION).str(r.batchId).bytes(digest).varint64(r.hlc).lenBytes(r.batchBytes);
  return w.finish();
}

/** Decodes and re-checks the batch digest: a CRC can miss what a digest cannot. */
export function decodeWalBatch(payload: Uint8Array, source: string): WalBatchRecord {
  const r = new ByteReader(payload, source);
  const version = r.u8();
  if (version !== VERSION) throw new CorruptionError(`unknown WAL payload version ${version}`, source, 0);
  const batchId = r.str();
  const digest = toHex(r.bytes(32));
  const hlc = r.varint64();
  const batchBytes = r.lenBytes();
  if (r.remaining !== 0) throw new CorruptionError(`${r.remaining} trailing bytes in WAL payload`, source, r.offset);
  if (toHex(sha256(batchBytes)) !== digest) throw new CorruptionError(`batch ${batchId}: SHA-256 mismatch`, source, 0);
  return { batchId, sha256: digest, hlc, batchBytes };
}

/** COMMIT and ABORT marks name the batch and its digest, so a mark can never decide another content. */
export interface WalMark {
  batchId: string;
  sha256: string; // hex
}

export function decodeWalMark(payload: Uint8Array, source: string): WalMark {
  const r = new ByteReader(payload, source);
  const version = r.u8();
  if (version !== VERSION) throw new CorruptionError(`unknown WAL mark version ${version}`, source, 0);
  const batchId = r.str();
  const sha256 = toHex(r.bytes(32));
  if (r.remaining !== 0) throw new CorruptionError(`${r.remaining} trailing bytes in WAL mark`, source, r.offset);
  return { batchId, sha256 };
}

/**
 * REPAIR: committed points of one batch copied from a peer replica (Engine.repair). The batch's bytes are gone on the
 * peer (flushed into a block), so the record names the original batch (id, digest, stamp, size) and carries a canonical
 * batch of a subset of its points.
 */
export interface WalRepairRecord {
  batchId: string;
  sha256: string; // hex, of the ORIGINAL full batch: not the digest of partBytes (a subset)
  hlc: bigint;
  sampleCount: number; // of the original batch
  partBytes: Uint8Array; // canonical batch encoding (core/batch.ts) of the points carried
}

export function encodeWalRepair(r: WalRepairRecord): Uint8Array {
  const digest = fromHex(r.sha256);
  assert(digest.length === 32, `repair of batch ${r.batchId}: sha256 is not 32 bytes of hex`);
  const w = new ByteWriter(r.partBytes.length + r.batchId.length + 64);
  w.u8(VERSION).str(r.batchId).bytes(digest).varint64(r.hlc).uvarint(r.sampleCount).lenBytes(r.partBytes);
  return w.finish();
}

/** A REPAIR payload and its part, decoded and checked: anything malformed is a CorruptionError naming `source`. */
export interface DecodedWalRepair extends WalRepairRecord {
  part: Batch;
}

/**
 * Decodes a REPAIR payload, its part included. There is no digest to re-check (the part is a subset of the batch the
 * digest names), so the part's canonical form is checked instead: the engine's head relies on it (one point per
 * timestamp, series sorted and unique), and a CRC32C that matched by chance must not become an invariant failure.
 */
export function decodeWalRepair(payload: Uint8Array, source: string): DecodedWalRepair {
  const r = new ByteReader(payload, source);
  const version = r.u8();
  if (version !== VERSION) throw new CorruptionError(`unknown WAL repair version ${version}`, source, 0);
  const batchId = r.str();
  const digest = toHex(r.bytes(32));
  const hlc = r.varint64();
  const sampleCount = r.uvarint();
  const partAt = r.offset;
  const partBytes = r.lenBytes();
  if (r.remaining !== 0) throw new CorruptionError(`${r.remaining} trailing bytes in WAL repair payload`, source, r.offset);
  let part: Batch;
  try {
    part = decodeBatch(partBytes, `${source}: repair of batch ${batchId}`);
  } catch (err) {
    if (err instanceof CorruptionError) throw err;
    throw new CorruptionError(`repair of batch ${batchId}: part does not decode: ${(err as Error).message}`, source, partAt, { cause: err });
  }
  const problem = nonCanonical(part) ?? (part.sampleCount > sampleCount ? `part holds ${part.sampleCount} samples of a batch of ${sampleCount}` : null);
  if (problem !== null) throw new CorruptionError(`repair of batch ${batchId}: ${problem}`, source, partAt);
  return { batchId, sha256: digest, hlc, sampleCount, partBytes, part };
}

/**
 * Why `b` is not in canonical form (docs/format/batch.md), or null. Checks what the engine relies on when it applies
 * a batch it did not build: keys match labels, series sorted and unique, timestamps strictly increasing, counts agree.
 */
export function nonCanonical(b: Batch): string | null {
  let total = 0;
  let prev: string | null = null;
  for (const s of b.series) {
    if (s.key !== seriesKey(s.labels)) return `series key ${JSON.stringify(s.key)} does not match its labels`;
    if (prev !== null && !(prev < s.key)) return `series not sorted and unique at ${s.key}`;
    prev = s.key;
    const ts = s.timestampsNs;
    if (s.values.length !== ts.length) return `series ${s.key}: ${ts.length} timestamps, ${s.values.length} values`;
    if (ts.length === 0) return `series ${s.key} has no samples`;
    for (let i = 1; i < ts.length; i++) if (!(ts[i - 1]! < ts[i]!)) return `series ${s.key}: timestamps not strictly increasing at ${ts[i]}`;
    total += ts.length;
  }
  if (total !== b.sampleCount) return `sample count ${b.sampleCount} differs from the ${total} samples held`;
  return null;
}
