// WAL byte formats: segment header and record frame (docs/format/wal.md).
// Pure encoding and decoding, no I/O (Prometheus-tsdb style: the file handling
// lives in wal.ts). Every function here is deterministic and total: decoding
// never throws on damaged input, it reports what it found.

import { assert } from "../core/assert.js";
import { crc32c } from "../core/hash.js";

/** "HQWL": the first 4 bytes of every segment file. */
export const SEGMENT_MAGIC = Uint8Array.of(0x48, 0x51, 0x57, 0x4c);
export const SEGMENT_VERSION = 1;
/** magic(4) version(1) reserved(3, zero) segment sequence u32 LE (4) CRC32C of bytes 0..11 u32 LE (4). */
export const SEGMENT_HEADER_BYTES = 16;

/** Sync magic opening every frame; a reader resynchronises by searching for it. */
export const FRAME_MAGIC = Uint8Array.of(0xd7, 0x51, 0x3a, 0x9c);
/** magic(4) payload length u32 LE (4) type u8 (1) CRC32C u32 LE (4). */
export const FRAME_HEADER_BYTES = 13;
/**
 * Format limit on one payload. A frame whose length field exceeds it is invalid
 * whatever the writer's configured recordBytesMax was (lowering that setting
 * must never make old records look damaged).
 */
export const FRAME_PAYLOAD_BYTES_LIMIT = 1024 * 1024 * 1024;
export const RECORD_TYPE_MAX = 255;

const OFFSET_LENGTH = 4;
const OFFSET_TYPE = 8;
const OFFSET_CRC = 9;

function u32le(buf: Uint8Array, at: number): number {
  return (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
}

function putU32le(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v & 0xff;
  buf[at + 1] = (v >>> 8) & 0xff;
  buf[at + 2] = (v >>> 16) & 0xff;
  buf[at + 3] = (v >>> 24) & 0xff;
}

function magicAt(buf: Uint8Array, at: number, magic: Uint8Array): boolean {
  if (at + magic.length > buf.length) return false;
  for (let i = 0; i < magic.length; i++) if (buf[at + i] !== magic[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Segment header

export function encodeSegmentHeader(segment: number): Uint8Array {
  assert(Number.isInteger(segment) && segment >= 1 && segment <= 0xffffffff, `segment sequence ${segment} out of range`);
  const h = new Uint8Array(SEGMENT_HEADER_BYTES);
  h.set(SEGMENT_MAGIC, 0);
  h[4] = SEGMENT_VERSION;
  putU32le(h, 8, segment);
  putU32le(h, 12, crc32c(h.subarray(0, 12)));
  return h;
}

export type SegmentHeaderDecode =
  | { readonly status: "ok"; readonly segment: number; readonly version: number }
  | { readonly status: "truncated" } // fewer than SEGMENT_HEADER_BYTES bytes
  | { readonly status: "bad_magic" }
  | { readonly status: "bad_crc" }
  | { readonly status: "bad_version"; readonly version: number }; // CRC valid, version unknown

export function decodeSegmentHeader(buf: Uint8Array): SegmentHeaderDecode {
  if (buf.length < SEGMENT_HEADER_BYTES) return { status: "truncated" };
  if (!magicAt(buf, 0, SEGMENT_MAGIC)) return { status: "bad_magic" };
  if (u32le(buf, 12) !== crc32c(buf.subarray(0, 12))) return { status: "bad_crc" };
  const version = buf[4]!;
  if (version !== SEGMENT_VERSION || buf[5] !== 0 || buf[6] !== 0 || buf[7] !== 0) return { status: "bad_version", version };
  return { status: "ok", segment: u32le(buf, 8), version };
}

// ---------------------------------------------------------------------------
// Frames

export function frameBytes(payloadBytes: number): number {
  return FRAME_HEADER_BYTES + payloadBytes;
}

function frameCrc(header: Uint8Array, payload: Uint8Array): number {
  // Covers length (4) + type (1), then the payload.
  return crc32c(payload, crc32c(header.subarray(OFFSET_LENGTH, OFFSET_CRC)));
}

/** One contiguous frame holding a copy of the payload (the caller may reuse its buffer). */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  assert(Number.isInteger(type) && type >= 0 && type <= RECORD_TYPE_MAX, `record type ${type} is not a u8`);
  assert(payload.length <= FRAME_PAYLOAD_BYTES_LIMIT, `payload of ${payload.length} bytes exceeds the format limit`);
  const f = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  f.set(FRAME_MAGIC, 0);
  putU32le(f, OFFSET_LENGTH, payload.length);
  f[OFFSET_TYPE] = type;
  f.set(payload, FRAME_HEADER_BYTES);
  // CRC computed over the copy: what is checksummed is exactly what is written.
  putU32le(f, OFFSET_CRC, frameCrc(f, f.subarray(FRAME_HEADER_BYTES)));
  return f;
}

export type FrameDecode =
  | { readonly status: "ok"; readonly type: number; readonly payload: Uint8Array; readonly frameBytes: number }
  /** Fewer bytes than a frame header left in the buffer. */
  | { readonly status: "short_header" }
  | { readonly status: "bad_magic" }
  /** Length field above the format limit. */
  | { readonly status: "bad_length"; readonly payloadBytes: number }
  /** Length field is plausible but the frame would run past the end of the buffer. */
  | { readonly status: "past_end"; readonly payloadBytes: number }
  | { readonly status: "bad_crc"; readonly frameBytes: number };

/** Decodes the frame starting at `offset`. Never throws on damaged bytes; the payload is a view into `buf`. */
export function decodeFrame(buf: Uint8Array, offset: number): FrameDecode {
  assert(Number.isInteger(offset) && offset >= 0 && offset <= buf.length, `decode offset ${offset} outside the buffer`);
  if (buf.length - offset < FRAME_HEADER_BYTES) {
    // A partial magic is still "bad magic" when the bytes present disagree with it.
    for (let i = 0; i < Math.min(FRAME_MAGIC.length, buf.length - offset); i++)
      if (buf[offset + i] !== FRAME_MAGIC[i]) return { status: "bad_magic" };
    return { status: "short_header" };
  }
  if (!magicAt(buf, offset, FRAME_MAGIC)) return { status: "bad_magic" };
  const payloadBytes = u32le(buf, offset + OFFSET_LENGTH);
  if (payloadBytes > FRAME_PAYLOAD_BYTES_LIMIT) return { status: "bad_length", payloadBytes };
  const total = FRAME_HEADER_BYTES + payloadBytes;
  if (offset + total > buf.length) return { status: "past_end", payloadBytes };
  const header = buf.subarray(offset, offset + FRAME_HEADER_BYTES);
  const payload = buf.subarray(offset + FRAME_HEADER_BYTES, offset + total);
  if (frameCrc(header, payload) !== u32le(buf, offset + OFFSET_CRC)) return { status: "bad_crc", frameBytes: total };
  return { status: "ok", type: buf[offset + OFFSET_TYPE]!, payload, frameBytes: total };
}

/** Offset of the next valid frame at or after `from`, or -1. */
export function findNextFrame(buf: Uint8Array, from: number): number {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = from;
  while (at < buf.length) {
    const hit = b.indexOf(FRAME_MAGIC, at);
    if (hit < 0) return -1;
    if (decodeFrame(buf, hit).status === "ok") return hit;
    at = hit + 1;
  }
  return -1;
}

function allZero(buf: Uint8Array): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Scanning a whole segment image

export type DamageKind =
  | "bad_header" // segment header missing, unreadable, or naming another segment
  | "garbage" // bytes that do not start a frame
  | "bad_length" // a frame whose length field is impossible or runs past the end of the file
  | "crc_mismatch"; // a complete frame whose CRC does not match

export interface ScannedRecord {
  readonly type: number;
  readonly payload: Uint8Array; // view into the scanned buffer
  readonly offset: number; // of the frame in the segment
  readonly frameBytes: number;
}

export interface ScannedDamage {
  readonly offset: number;
  readonly length: number;
  readonly kind: DamageKind;
  readonly detail: string;
}

export interface SegmentScan {
  /** Segment number from a valid header, or null. */
  readonly headerSegment: number | null;
  readonly records: readonly ScannedRecord[];
  /** Damaged ranges that are followed by at least one valid frame (or a bad header followed by valid frames). */
  readonly damage: readonly ScannedDamage[];
  /**
   * The bytes after the last valid frame when they do not form a valid frame and
   * no valid frame follows them; null when the image ends exactly on a frame.
   * In the last segment this is a torn tail; anywhere else it is corruption.
   * offset 0 means the header itself is missing or unreadable and no frame is valid.
   */
  readonly tail: ScannedDamage | null;
  /** End of the last valid frame (or of the header); where appends would continue. */
  readonly validEnd: number;
}

function describe(d: FrameDecode): { kind: DamageKind; detail: string } {
  switch (d.status) {
    case "bad_magic":
      return { kind: "garbage", detail: "no frame magic" };
    case "short_header":
      return { kind: "bad_length", detail: "incomplete frame header" };
    case "bad_length":
      return { kind: "bad_length", detail: `length field ${d.payloadBytes} exceeds the format limit` };
    case "past_end":
      return { kind: "bad_length", detail: `frame of ${d.payloadBytes} payload bytes runs past the end of the file` };
    case "bad_crc":
      return { kind: "crc_mismatch", detail: "frame CRC32C mismatch" };
    case "ok":
      assert(false, "describe() called on a valid frame");
  }
}

/**
 * Scans a segment image. Valid records are returned in order; every other byte
 * range is reported as damage (resynchronising on the next frame magic whose
 * frame validates) or as the tail. Never throws on damaged input.
 */
export function scanSegment(buf: Uint8Array, expectedSegment: number, onRecord?: (r: ScannedRecord) => void): SegmentScan {
  const records: ScannedRecord[] = [];
  const damage: ScannedDamage[] = [];
  const header = decodeSegmentHeader(buf);
  let headerSegment: number | null = null;
  let headerDamage: ScannedDamage | null = null;
  if (header.status === "ok") {
    headerSegment = header.segment;
    if (header.segment !== expectedSegment)
      headerDamage = { offset: 0, length: SEGMENT_HEADER_BYTES, kind: "bad_header", detail: `header names segment ${header.segment}, file name says ${expectedSegment}` };
  } else {
    const len = Math.min(SEGMENT_HEADER_BYTES, buf.length);
    headerDamage = { offset: 0, length: len, kind: "bad_header", detail: `segment header: ${header.status}` };
  }

  let pos = Math.min(SEGMENT_HEADER_BYTES, buf.length);
  let validEnd = pos;
  let tail: ScannedDamage | null = null;
  while (pos < buf.length) {
    const d = decodeFrame(buf, pos);
    if (d.status === "ok") {
      const r: ScannedRecord = { type: d.type, payload: d.payload, offset: pos, frameBytes: d.frameBytes };
      if (onRecord) onRecord(r);
      else records.push(r);
      pos += d.frameBytes;
      validEnd = pos;
      continue;
    }
    const next = findNextFrame(buf, pos + 1);
    const { kind, detail } = describe(d);
    if (next < 0) {
      const rest = buf.subarray(pos);
      tail = { offset: pos, length: rest.length, kind, detail: allZero(rest) ? `zero fill (${detail})` : detail };
      break;
    }
    assert(next > pos, "resynchronisation must move forward");
    damage.push({ offset: pos, length: next - pos, kind, detail });
    pos = next;
  }
  const sawRecord = validEnd > SEGMENT_HEADER_BYTES;
  if (headerDamage !== null) {
    if (!sawRecord && header.status !== "ok") {
      // Nothing valid in the file at all: header and everything after it is one tail.
      assert(damage.length === 0, "no records means no resynchronisation happened");
      return { headerSegment, records, damage, tail: { offset: 0, length: buf.length, kind: "bad_header", detail: headerDamage.detail }, validEnd: 0 };
    }
    damage.unshift(headerDamage);
  }
  assert(validEnd <= buf.length, "valid end inside the image");
  assert(tail === null || tail.offset + tail.length === buf.length, "tail reaches the end of the image");
  return { headerSegment, records, damage, tail, validEnd };
}
