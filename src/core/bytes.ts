// Growable byte writer and bounds-checked reader, shared by every binary
// format (batch encoding, WAL records, chunks, blocks). Encoding only: no I/O.

import { assert } from "./assert.js";
import { CorruptionError } from "./errors.js";

// ignoreBOM: a leading U+FEFF is part of the string (a label value may start with one), not a marker to drop.
const utf8d = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export class ByteWriter {
  // A Buffer, not a plain Uint8Array: str() encodes UTF-8 straight into it (TextEncoder.encode allocates an array
  // per string, which dominated the write path). Unsafe allocation is fine: finish() returns only what was written.
  private buf: Buffer;
  private view: DataView;
  length = 0;

  constructor(initialBytes = 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialBytes));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = Buffer.allocUnsafe(cap);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.length++] = v;
    return this;
  }
  u32(v: number): this {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
    return this;
  }
  i64(v: bigint): this {
    this.ensure(8);
    this.view.setBigInt64(this.length, v, true);
    this.length += 8;
    return this;
  }
  f64(v: number): this {
    this.ensure(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
    return this;
  }
  /** Unsigned LEB128 of a non-negative safe integer. */
  uvarint(v: number): this {
    assert(Number.isSafeInteger(v) && v >= 0, `uvarint of ${v}: not a non-negative safe integer`);
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
    return this;
  }
  /** Zigzag + LEB128 of a signed bigint (int64 range). */
  varint64(v: bigint): this {
    let z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    this.ensure(10);
    while (z >= 0x80n) {
      this.buf[this.length++] = Number(z & 0x7fn) | 0x80;
      z >>= 7n;
    }
    this.buf[this.length++] = Number(z);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    // A loop beats set() on the short arrays most callers give (a series' label section).
    if (b.length <= 64) for (let i = 0; i < b.length; i++) this.buf[this.length + i] = b[i]!;
    else this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  /** uvarint length prefix + bytes. */
  lenBytes(b: Uint8Array): this {
    return this.uvarint(b.length).bytes(b);
  }
  str(s: string): this {
    const n = s.length < 128 && isAscii(s) ? s.length : Buffer.byteLength(s, "utf8");
    this.uvarint(n);
    this.ensure(n);
    this.length += this.buf.write(s, this.length, n, "utf8");
    return this;
  }
  /** A copy of what was written, in an ArrayBuffer of its own. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    out.set(this.buf.subarray(0, this.length));
    return out;
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Reads a buffer; every overrun is a CorruptionError naming the offset. */
export class ByteReader {
  offset: number;
  private readonly view: DataView;

  constructor(
    readonly buf: Uint8Array,
    readonly source = "buffer",
    start = 0,
  ) {
    this.offset = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number): void {
    if (n < 0 || this.offset + n > this.buf.length)
      throw new CorruptionError(`truncated: need ${n} bytes, have ${this.buf.length - this.offset}`, this.source, this.offset);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.offset++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.view.getBigInt64(this.offset, true);
    this.offset += 8;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.offset, true);
    this.offset += 8;
    return v;
  }
  uvarint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (!Number.isSafeInteger(result)) break;
        return result;
      }
      mul *= 0x80;
    }
    throw new CorruptionError("bad uvarint", this.source, this.offset);
  }
  varint64(): bigint {
    let z = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      // The 10th byte may carry only bit 63: anything more would alias another value.
      if (i === 9 && b > 1) break;
      z |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asIntN(64, (z >> 1n) ^ -(z & 1n));
      shift += 7n;
    }
    throw new CorruptionError("bad varint", this.source, this.offset);
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
  lenBytes(): Uint8Array {
    return this.bytes(this.uvarint());
  }
  /** Steps over n bytes (bounds-checked). */
  skip(n: number): void {
    this.need(n);
    this.offset += n;
  }
  /** Steps over a uvarint length and that many bytes (bounds-checked), without making a view of them. */
  skipLenBytes(): void {
    const n = this.uvarint();
    this.need(n);
    this.offset += n;
  }
  str(): string {
    const at = this.offset;
    const b = this.lenBytes();
    try {
      return utf8d.decode(b);
    } catch (e) {
      throw new CorruptionError("invalid UTF-8 string", this.source, at, { cause: e });
    }
  }
}
