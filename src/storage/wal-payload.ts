// What the storage engine writes into a WAL record (docs/format/wal-payload.md).
// Pure encoding; the WAL itself treats payloads as opaque bytes.

import { ByteReader, ByteWriter } from "../core/bytes.js";
import { CorruptionError } from "../core/errors.js";
import { fromHex, sha256, toHex } from "../core/hash.js";

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

export function encodeWalMark(m: WalMark): Uint8Array {
  return new ByteWriter(m.batchId.length + 40).u8(VERSION).str(m.batchId).bytes(fromHex(m.sha256)).finish();
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
