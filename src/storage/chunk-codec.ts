// Chunk codec: the compressed column encoding of one run of samples of one
// series (docs/format/chunk.md). Pure: no I/O. Lossless for every int64
// timestamp and every IEEE-754 bit pattern (NaN payloads, -0, ±Inf,
// subnormals). decodeChunk never throws anything but CorruptionError.
//
// Layout: u8 version | uvarint n | u8 flags | [uvarint rawLength] | body
// body (after decompression) = [timestamps] values origins batchRefs.

import { brotliCompressSync, brotliDecompressSync, constants as zc, deflateRawSync, inflateRawSync } from "node:zlib";
import { assert } from "../core/assert.js";
import { CorruptionError } from "../core/errors.js";

export interface ChunkData {
  timestampsNs: BigInt64Array; // strictly increasing int64 ns
  values: Float64Array; // exact IEEE-754 bits preserved
  origins: Uint8Array; // 0 original, 1 inferred
  batchRefs: Uint32Array; // index into the block's batch table
}

export type ChunkCompression = "auto" | "none" | "deflate" | "brotli";

export interface EncodeChunkOptions {
  /**
   * "auto" (default) = "deflate": raw deflate level 6 when it makes the chunk
   * smaller, else none. "brotli": quality 11, ~12% smaller, ~3x slower to
   * encode (for cold data). "none": never compress.
   */
  compression?: ChunkCompression;
  /** Leave the timestamps out: the block stores them once in a shared timestamp column. */
  externalTimestamps?: boolean;
}

export const CHUNK_FORMAT_VERSION = 1;
/** Hard upper bound on samples in one chunk (decoders refuse more: bounds allocations). */
export const CHUNK_SAMPLES_LIMIT = 1 << 20;

// flags
const CODEC_MASK = 0x03;
const CODEC_NONE = 0;
const CODEC_DEFLATE = 1;
const CODEC_BROTLI = 2;
const FLAG_EXTERNAL_TS = 0x04; // body has no timestamps section
const FLAG_TS_ONLY = 0x08; // body is only a timestamps section (a shared timestamp column)
const FLAGS_KNOWN = CODEC_MASK | FLAG_EXTERNAL_TS | FLAG_TS_ONLY;

// timestamp modes
const TS_STEP = 0; // t0, constant step
const TS_DOD = 1; // t0, divisor, first delta, zigzag delta-of-delta (span < 2^51)
const TS_BIG = 2; // t0, n-1 unsigned 64-bit deltas

// value modes
const V_CONST = 0; // one bit pattern
const V_DECIMAL = 1; // m / 10^e with exceptions, delta or delta-of-delta zigzag varints
const V_XOR = 2; // XOR with previous bits, byte-trimmed

const TWO32 = 4294967296;
const TS_SPAN_MAX = 2 ** 51; // number path limit for timestamp offsets (ns)
const M_MAX = 2 ** 49; // |m| bound in decimal mode: deltas-of-deltas stay < 2^51, zigzag < 2^53
const E_MAX = 22; // 10^22 is the largest exactly representable power of ten
const P10: number[] = [];
for (let e = 0, p = 1; e <= E_MAX; e++, p *= 10) P10.push(p);

// All typed-array bit views assume a little-endian host (x86, arm64).
{
  const probe = new Uint32Array(new BigUint64Array([1n]).buffer);
  assert(probe[0] === 1, "chunk codec requires a little-endian host");
}

// ---------------------------------------------------------------------------
// Byte output

class Out {
  buf: Uint8Array;
  len = 0;
  constructor(cap: number) {
    this.buf = new Uint8Array(Math.max(16, cap));
  }
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }
  /** Unsigned LEB128 of a non-negative integer ≤ 2^53. */
  uv(v: number): void {
    this.ensure(8);
    const b = this.buf;
    let p = this.len;
    while (v >= 0x80) {
      if (v < TWO32) {
        while (v >= 0x80) {
          b[p++] = (v & 0x7f) | 0x80;
          v >>>= 7;
        }
        break;
      }
      b[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    b[p++] = v;
    this.len = p;
  }
  /** Zigzag + LEB128 of an integer with |v| < 2^52. */
  zz(v: number): void {
    this.uv(v >= 0 ? v * 2 : -v * 2 - 1);
  }
  /** LEB128 of an unsigned 64-bit bigint. */
  uv64(v: bigint): void {
    this.ensure(10);
    while (v >= 0x80n) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }
  /** Zigzag + LEB128 of a signed 64-bit bigint. */
  zz64(v: bigint): void {
    this.uv64(BigInt.asUintN(64, (v << 1n) ^ (v >> 63n)));
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** 8 raw bytes: lo then hi 32-bit words, little-endian. */
  bits(lo: number, hi: number): void {
    this.ensure(8);
    const b = this.buf;
    let p = this.len;
    b[p++] = lo & 0xff;
    b[p++] = (lo >>> 8) & 0xff;
    b[p++] = (lo >>> 16) & 0xff;
    b[p++] = lo >>> 24;
    b[p++] = hi & 0xff;
    b[p++] = (hi >>> 8) & 0xff;
    b[p++] = (hi >>> 16) & 0xff;
    b[p++] = hi >>> 24;
    this.len = p;
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

// ---------------------------------------------------------------------------
// Byte input: every overrun or malformed varint is a CorruptionError.

class In {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    readonly source: string,
    readonly base: number, // offset of buf[0] in the file (for error offsets)
    start = 0,
    readonly fixedOffset = false, // a decompressed body: report the compressed payload's offset
  ) {
    this.pos = start;
  }
  fail(msg: string, at = this.pos): never {
    if (this.fixedOffset) throw new CorruptionError(`${msg} (at byte ${at} of the decompressed body)`, this.source, this.base);
    throw new CorruptionError(msg, this.source, this.base + at);
  }
  u8(): number {
    if (this.pos >= this.buf.length) this.fail("truncated");
    return this.buf[this.pos++]!;
  }
  uv(): number {
    const b = this.buf;
    let p = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (p >= b.length) this.fail("truncated varint");
      const c = b[p++]!;
      result += (c & 0x7f) * mul;
      if (c < 0x80) {
        if (result > 2 ** 53) this.fail("varint out of range", this.pos);
        this.pos = p;
        return result;
      }
      mul *= 0x80;
    }
    return this.fail("varint too long");
  }
  zz(): number {
    const z = this.uv();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }
  uv64(): bigint {
    let v = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      const c = this.u8();
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) {
        if (v >= 1n << 64n) this.fail("varint64 out of range");
        return v;
      }
      shift += 7n;
    }
    return this.fail("varint64 too long");
  }
  zz64(): bigint {
    const z = this.uv64();
    return BigInt.asIntN(64, (z >> 1n) ^ -(z & 1n));
  }
  /** Reads 8 raw bytes into words[i*2], words[i*2+1]. */
  bitsInto(words: Uint32Array, i: number): void {
    if (this.pos + 8 > this.buf.length) this.fail("truncated");
    const b = this.buf;
    const p = this.pos;
    words[i * 2] = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
    words[i * 2 + 1] = b[p + 4]! | (b[p + 5]! << 8) | (b[p + 6]! << 16) | (b[p + 7]! << 24);
    this.pos = p + 8;
  }
}

// ---------------------------------------------------------------------------
// Timestamps

function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

function encodeTimestamps(ts: BigInt64Array, out: Out): void {
  const n = ts.length;
  out.zz64(ts[0]!);
  if (n === 1) {
    out.u8(TS_STEP);
    return;
  }
  const span = ts[n - 1]! - ts[0]!;
  assert(span > 0n, "timestamps must be strictly increasing");
  if (span >= BigInt(TS_SPAN_MAX)) {
    // Rare: a chunk spanning > 26 days of ns. Exact bigint deltas.
    for (let i = 1; i < n; i++) assert(ts[i]! > ts[i - 1]!, "timestamps must be strictly increasing");
    out.u8(TS_BIG);
    for (let i = 1; i < n; i++) out.uv64(ts[i]! - ts[i - 1]!);
    return;
  }
  // Number path: offsets from t0 via 32-bit halves (no per-sample bigint).
  const lo = new Uint32Array(ts.buffer, ts.byteOffset, n * 2);
  const hi = new Int32Array(ts.buffer, ts.byteOffset, n * 2);
  const lo0 = lo[0]!;
  const hi0 = hi[1]!;
  const deltas = new Float64Array(n - 1);
  let prev = 0;
  let g = 0;
  let constant = true;
  for (let i = 1; i < n; i++) {
    const off = (hi[i * 2 + 1]! - hi0) * TWO32 + (lo[i * 2]! - lo0);
    const d = off - prev;
    assert(d > 0, "timestamps must be strictly increasing");
    deltas[i - 1] = d;
    if (d !== deltas[0]) constant = false;
    prev = off;
    if (g !== 1) g = gcd(d, g);
  }
  if (constant) {
    out.u8(TS_STEP);
    out.uv(deltas[0]!);
    return;
  }
  out.u8(TS_DOD);
  out.uv(g);
  let pk = deltas[0]! / g;
  out.uv(pk);
  for (let i = 1; i < n - 1; i++) {
    const k = deltas[i]! / g;
    out.zz(k - pk);
    pk = k;
  }
}

function decodeTimestamps(inp: In, n: number): BigInt64Array {
  const out = new BigInt64Array(n);
  const t0 = inp.zz64();
  out[0] = t0;
  const mode = inp.u8();
  if (n === 1) {
    if (mode !== TS_STEP) inp.fail("bad timestamp mode", inp.pos - 1);
    return out;
  }
  if (mode === TS_BIG) {
    let t = t0;
    for (let i = 1; i < n; i++) {
      const d = inp.uv64();
      if (d <= 0n) inp.fail("timestamps not strictly increasing");
      t += d;
      if (t > 0x7fffffffffffffffn) inp.fail("timestamp overflows int64");
      out[i] = t;
    }
    return out;
  }
  const w = new Uint32Array(out.buffer);
  const lo0 = w[0]!;
  const hi0 = w[1]! | 0;
  const put = (i: number, off: number): void => {
    const offHi = Math.floor(off / TWO32);
    let lo = lo0 + (off - offHi * TWO32);
    let hi = hi0 + offHi;
    if (lo >= TWO32) {
      lo -= TWO32;
      hi += 1;
    }
    if (hi > 0x7fffffff) inp.fail("timestamp overflows int64");
    w[i * 2] = lo;
    w[i * 2 + 1] = hi;
  };
  if (mode === TS_STEP) {
    const step = inp.uv();
    if (step <= 0 || step * (n - 1) >= TS_SPAN_MAX) inp.fail("bad timestamp step");
    for (let i = 1; i < n; i++) put(i, step * i);
    return out;
  }
  if (mode !== TS_DOD) inp.fail("bad timestamp mode", inp.pos - 1);
  const g = inp.uv();
  if (g < 1 || g > TS_SPAN_MAX) inp.fail("bad timestamp divisor");
  let k = inp.uv();
  let acc = k;
  if (k < 1) inp.fail("timestamps not strictly increasing");
  if (acc * g >= TS_SPAN_MAX) inp.fail("timestamp span out of range");
  put(1, acc * g);
  const b = inp.buf;
  for (let i = 2; i < n; i++) {
    // inline fast path for one-byte zigzag varints
    let dd: number;
    const c = b[inp.pos];
    if (c !== undefined && c < 0x80) {
      inp.pos++;
      dd = c & 1 ? -((c + 1) >>> 1) : c >>> 1;
    } else dd = inp.zz();
    k += dd;
    if (k < 1) inp.fail("timestamps not strictly increasing");
    acc += k;
    const off = acc * g;
    if (off >= TS_SPAN_MAX) inp.fail("timestamp span out of range");
    put(i, off);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Values

function isNegZero(v: number): boolean {
  return v === 0 && 1 / v < 0;
}

/** Smallest e in [0, E_MAX] with v == round(v*10^e)/10^e exactly and |m| ≤ M_MAX, else -1. */
function minExp(v: number, guess: number): number {
  if (!(Math.abs(v) <= M_MAX) || isNegZero(v)) return -1; // NaN, ±Inf, huge, -0
  const fits = (e: number): boolean => {
    const p = P10[e]!;
    const m = Math.round(v * p);
    return Math.abs(m) <= M_MAX && m / p === v && !isNegZero(m / p);
  };
  let e = guess;
  if (fits(e)) {
    while (e > 0 && fits(e - 1)) e--;
    return e;
  }
  while (++e <= E_MAX) {
    if (fits(e)) return e;
    if (Math.abs(v) * P10[e]! > M_MAX) return -1;
  }
  return -1;
}

function uvLen(z: number): number {
  return z < 0x80 ? 1 : z < 0x4000 ? 2 : z < 0x200000 ? 3 : z < 0x10000000 ? 4 : Math.ceil(Math.log2(z + 1) / 7);
}
function zzLen(v: number): number {
  return uvLen(v >= 0 ? v * 2 : -v * 2 - 1);
}

function encodeValues(vs: Float64Array, out: Out): void {
  const n = vs.length;
  const words = new Uint32Array(vs.buffer, vs.byteOffset, n * 2);
  const lo0 = words[0]!;
  const hi0 = words[1]!;
  let constant = true;
  for (let i = 1; i < n; i++) {
    if (words[i * 2] !== lo0 || words[i * 2 + 1] !== hi0) {
      constant = false;
      break;
    }
  }
  if (constant) {
    out.u8(V_CONST);
    out.bits(lo0, hi0);
    return;
  }
  // Decimal scaling: per-value minimal exponent, then the common exponent E
  // minimising (10 bytes per exception + ~0.415 bytes per sample per decimal digit).
  const hist = new Float64Array(E_MAX + 2); // [e] counts, [E_MAX+1] = never fits
  let guess = 0;
  let maxE = 0;
  for (let i = 0; i < n; i++) {
    const e = minExp(vs[i]!, guess);
    if (e < 0) hist[E_MAX + 1]!++;
    else {
      hist[e]!++;
      guess = e;
      if (e > maxE) maxE = e;
    }
  }
  let bestE = maxE;
  let bestCost = Infinity;
  let above = hist[E_MAX + 1]!;
  for (let e = E_MAX; e >= 0; e--) {
    if (e <= maxE) {
      const cost = above * 10 + n * 0.415 * e;
      if (cost < bestCost) {
        bestCost = cost;
        bestE = e;
      }
    }
    above += hist[e]!;
  }
  const p = P10[bestE]!;
  const ms = new Float64Array(n);
  const exc: number[] = [];
  let prevM = 0;
  for (let i = 0; i < n; i++) {
    const v = vs[i]!;
    const m = Math.round(v * p);
    if (Math.abs(m) <= M_MAX && m / p === v && !isNegZero(v)) {
      ms[i] = m;
      prevM = m;
    } else {
      exc.push(i);
      ms[i] = prevM;
    }
  }
  if (exc.length * 3 > n) {
    encodeXor(words, n, out);
    return;
  }
  // order 1 (delta) vs order 2 (delta of delta): pick the shorter varint stream.
  let s1 = 0;
  let s2 = 0;
  for (let i = 1; i < n; i++) {
    const d = ms[i]! - ms[i - 1]!;
    s1 += zzLen(d);
    s2 += i === 1 ? zzLen(d) : zzLen(d - (ms[i - 1]! - ms[i - 2]!));
  }
  const order = s2 < s1 ? 2 : 1;
  out.u8(V_DECIMAL);
  out.u8(bestE);
  out.u8(order);
  out.uv(exc.length);
  let last = -1;
  for (const i of exc) {
    out.uv(i - last - 1);
    last = i;
    out.bits(words[i * 2]!, words[i * 2 + 1]!);
  }
  out.ensure(n * 8);
  out.zz(ms[0]!);
  if (n > 1) out.zz(ms[1]! - ms[0]!);
  if (order === 1) for (let i = 2; i < n; i++) out.zz(ms[i]! - ms[i - 1]!);
  else for (let i = 2; i < n; i++) out.zz(ms[i]! - 2 * ms[i - 1]! + ms[i - 2]!);
}

/** XOR with the previous bit pattern; control byte = leading zero bytes << 4 | trailing zero bytes. */
function encodeXor(words: Uint32Array, n: number, out: Out): void {
  out.u8(V_XOR);
  out.ensure(n * 9);
  let plo = 0;
  let phi = 0;
  const tmp = new Uint8Array(8);
  for (let i = 0; i < n; i++) {
    const lo = words[i * 2]!;
    const hi = words[i * 2 + 1]!;
    const xlo = (lo ^ plo) >>> 0;
    const xhi = (hi ^ phi) >>> 0;
    plo = lo;
    phi = hi;
    tmp[0] = xlo & 0xff;
    tmp[1] = (xlo >>> 8) & 0xff;
    tmp[2] = (xlo >>> 16) & 0xff;
    tmp[3] = xlo >>> 24;
    tmp[4] = xhi & 0xff;
    tmp[5] = (xhi >>> 8) & 0xff;
    tmp[6] = (xhi >>> 16) & 0xff;
    tmp[7] = xhi >>> 24;
    let lead = 0; // zero bytes at the top (most significant)
    while (lead < 8 && tmp[7 - lead] === 0) lead++;
    let trail = 0;
    if (lead < 8) while (tmp[trail] === 0) trail++;
    else trail = 0;
    out.u8((lead << 4) | trail);
    for (let j = trail; j < 8 - lead; j++) out.buf[out.len++] = tmp[j]!;
  }
}

function decodeValues(inp: In, n: number): Float64Array {
  const out = new Float64Array(n);
  const words = new Uint32Array(out.buffer);
  const modeAt = inp.pos;
  const mode = inp.u8();
  if (mode === V_CONST) {
    inp.bitsInto(words, 0);
    const lo = words[0]!;
    const hi = words[1]!;
    for (let i = 1; i < n; i++) {
      words[i * 2] = lo;
      words[i * 2 + 1] = hi;
    }
    return out;
  }
  if (mode === V_XOR) {
    let plo = 0;
    let phi = 0;
    const b = inp.buf;
    for (let i = 0; i < n; i++) {
      const c = inp.u8();
      const lead = c >>> 4;
      const trail = c & 0x0f;
      if (lead > 8 || trail > 8 || lead + trail > 8 || (lead === 8 && trail !== 0)) inp.fail("bad xor control byte", inp.pos - 1);
      const len = 8 - lead - trail;
      if (inp.pos + len > b.length) inp.fail("truncated");
      let xlo = 0;
      let xhi = 0;
      for (let j = trail; j < 8 - lead; j++) {
        const byte = b[inp.pos++]!;
        if (j < 4) xlo |= byte << (j * 8);
        else xhi |= byte << ((j - 4) * 8);
      }
      plo = (plo ^ xlo) >>> 0;
      phi = (phi ^ xhi) >>> 0;
      words[i * 2] = plo;
      words[i * 2 + 1] = phi;
    }
    return out;
  }
  if (mode !== V_DECIMAL) inp.fail("bad value mode", modeAt);
  const e = inp.u8();
  if (e > E_MAX) inp.fail("bad decimal exponent", inp.pos - 1);
  const p = P10[e]!;
  const order = inp.u8();
  if (order !== 1 && order !== 2) inp.fail("bad delta order", inp.pos - 1);
  const nexc = inp.uv();
  if (nexc > n) inp.fail("too many exceptions");
  const excIdx = new Float64Array(nexc);
  const excWords = new Uint32Array(nexc * 2);
  let last = -1;
  for (let j = 0; j < nexc; j++) {
    const i = last + 1 + inp.uv();
    if (i >= n) inp.fail("exception index out of range");
    excIdx[j] = i;
    last = i;
    inp.bitsInto(excWords, j);
  }
  const b = inp.buf;
  const next = (): number => {
    const c = b[inp.pos];
    if (c !== undefined && c < 0x80) {
      inp.pos++;
      return c & 1 ? -((c + 1) >>> 1) : c >>> 1;
    }
    return inp.zz();
  };
  let m = next();
  let d = 0;
  if (Math.abs(m) > M_MAX) inp.fail("decimal value out of range");
  out[0] = m / p;
  for (let i = 1; i < n; i++) {
    if (i === 1 || order === 1) d = next();
    else d += next();
    m += d;
    if (!(Math.abs(m) <= M_MAX)) inp.fail("decimal value out of range");
    out[i] = m / p;
  }
  for (let j = 0; j < nexc; j++) {
    const i = excIdx[j]!;
    words[i * 2] = excWords[j * 2]!;
    words[i * 2 + 1] = excWords[j * 2 + 1]!;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Origins and batch refs: run-length encoded deltas (first delta from 0).
// A constant column is 1 run of 1 + 1 run of n-1 zero deltas; batch refs that
// grow by one per sample (one remote-write request per sample) are also 2 runs.

function encodeRuns(col: Uint8Array | Uint32Array, out: Out): void {
  const n = col.length;
  const runs: number[] = [];
  let prev = 0;
  let curD = col[0]! - 0;
  let curLen = 0;
  for (let i = 0; i < n; i++) {
    const d = col[i]! - prev;
    prev = col[i]!;
    if (i > 0 && d === curD) curLen++;
    else {
      if (i > 0) runs.push(curD, curLen);
      curD = d;
      curLen = 1;
    }
  }
  runs.push(curD, curLen);
  out.uv(runs.length / 2);
  for (let j = 0; j < runs.length; j += 2) {
    out.zz(runs[j]!);
    out.uv(runs[j + 1]!);
  }
}

function decodeRuns<T extends Uint8Array | Uint32Array>(inp: In, col: T, max: number, what: string): void {
  const n = col.length;
  const nruns = inp.uv();
  if (nruns < 1 || nruns > n) inp.fail(`bad ${what} run count`);
  let i = 0;
  let v = 0;
  for (let r = 0; r < nruns; r++) {
    const d = inp.zz();
    const len = inp.uv();
    if (len < 1 || i + len > n) inp.fail(`bad ${what} run length`);
    const end = v + d * len;
    if (v + d < 0 || v + d > max || end < 0 || end > max) inp.fail(`${what} out of range`);
    if (d === 0) {
      col.fill(v, i, i + len);
      i += len;
    } else {
      for (let k = 0; k < len; k++) {
        v += d;
        col[i++] = v;
      }
    }
  }
  if (i !== n) inp.fail(`${what} runs cover ${i} of ${n} samples`);
}

// ---------------------------------------------------------------------------
// Framing

function frame(n: number, flags: number, body: Uint8Array, compression: ChunkCompression): Uint8Array {
  let codec = CODEC_NONE;
  let payload = body;
  if (compression !== "none" && body.length > 16) {
    const tries: [number, Uint8Array][] = [];
    if (compression === "auto" || compression === "deflate") tries.push([CODEC_DEFLATE, deflateRawSync(body, { level: 6 })]);
    if (compression === "brotli")
      tries.push([
        CODEC_BROTLI,
        brotliCompressSync(body, {
          params: {
            [zc.BROTLI_PARAM_QUALITY]: 11,
            [zc.BROTLI_PARAM_LGWIN]: 22,
            [zc.BROTLI_PARAM_SIZE_HINT]: body.length,
          },
        }),
      ]);
    for (const [c, z] of tries) {
      if (z.length + uvLen(body.length) < payload.length) {
        codec = c;
        payload = z;
      }
    }
  }
  const out = new Out(payload.length + 16);
  out.u8(CHUNK_FORMAT_VERSION);
  out.uv(n);
  out.u8(flags | codec);
  if (codec !== CODEC_NONE) out.uv(body.length);
  out.bytes(payload);
  return out.buf.slice(0, out.len);
}

function checkColumns(c: ChunkData): number {
  const n = c.timestampsNs.length;
  assert(n >= 1 && n <= CHUNK_SAMPLES_LIMIT, `chunk sample count ${n} out of [1, ${CHUNK_SAMPLES_LIMIT}]`);
  assert(c.values.length === n && c.origins.length === n && c.batchRefs.length === n, "chunk columns differ in length");
  for (let i = 0; i < n; i++) assert(c.origins[i]! <= 1, "origin must be 0 or 1");
  return n;
}

/** Encodes a chunk. Timestamps must be strictly increasing (an invariant: asserted). */
export function encodeChunk(c: ChunkData, opts: EncodeChunkOptions = {}): Uint8Array {
  const n = checkColumns(c);
  const body = new Out(n * 3 + 64);
  if (opts.externalTimestamps !== true) encodeTimestamps(c.timestampsNs, body);
  else {
    for (let i = 1; i < n; i++) assert(c.timestampsNs[i]! > c.timestampsNs[i - 1]!, "timestamps must be strictly increasing");
  }
  encodeValues(c.values, body);
  encodeRuns(c.origins, body);
  encodeRuns(c.batchRefs, body);
  return frame(n, opts.externalTimestamps === true ? FLAG_EXTERNAL_TS : 0, body.view(), opts.compression ?? "auto");
}

/** Encodes a timestamp column alone (a block's shared timestamp column). */
export function encodeTimestampColumn(ts: BigInt64Array, opts: { compression?: ChunkCompression } = {}): Uint8Array {
  const n = ts.length;
  assert(n >= 1 && n <= CHUNK_SAMPLES_LIMIT, `timestamp column length ${n} out of range`);
  const body = new Out(n * 2 + 32);
  encodeTimestamps(ts, body);
  return frame(n, FLAG_TS_ONLY, body.view(), opts.compression ?? "auto");
}

interface Framed {
  n: number;
  flags: number;
  body: In;
}

function unframe(bytes: Uint8Array, source: string, base: number): Framed {
  const hdr = new In(bytes, source, base);
  const version = hdr.u8();
  if (version !== CHUNK_FORMAT_VERSION) hdr.fail(`unknown chunk format version ${version}`, 0);
  const n = hdr.uv();
  if (n < 1 || n > CHUNK_SAMPLES_LIMIT) hdr.fail(`chunk sample count ${n} out of range`, 1);
  const flagsAt = hdr.pos;
  const flags = hdr.u8();
  const codec = flags & CODEC_MASK;
  if ((flags & ~FLAGS_KNOWN) !== 0 || codec === 3 || (flags & FLAG_EXTERNAL_TS && flags & FLAG_TS_ONLY))
    hdr.fail(`bad chunk flags 0x${flags.toString(16)}`, flagsAt);
  if (codec === CODEC_NONE) return { n, flags, body: new In(bytes, source, base, hdr.pos) };
  const rawLen = hdr.uv();
  // Upper bound of any valid body for n samples (xor values 9 B, varint timestamps 10 B, runs 2×(n runs × 16 B)).
  if (rawLen > n * 64 + 64) hdr.fail("implausible uncompressed length");
  const at = hdr.pos;
  const z = bytes.subarray(at);
  let raw: Uint8Array;
  try {
    raw =
      codec === CODEC_DEFLATE
        ? inflateRawSync(z, { maxOutputLength: Math.max(1, rawLen) })
        : brotliDecompressSync(z, { maxOutputLength: Math.max(1, rawLen) });
  } catch (e) {
    throw new CorruptionError(`chunk does not decompress: ${(e as Error).message}`, source, base + at, { cause: e });
  }
  if (raw.length !== rawLen) hdr.fail(`decompressed ${raw.length} bytes, header says ${rawLen}`, at);
  // Offsets inside a decompressed body are reported at the start of the compressed payload.
  return { n, flags, body: new In(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), source, base + at, 0, true) };
}

function guard<T>(source: string, base: number, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CorruptionError) throw e;
    throw new CorruptionError(`malformed chunk: ${(e as Error)?.message ?? String(e)}`, source, base, { cause: e });
  }
}

/**
 * Decodes a chunk. `source` names the file (for errors), `baseOffset` is the
 * chunk's offset in it. A chunk written with externalTimestamps needs the
 * decoded shared column in `sharedTimestamps`.
 */
export function decodeChunk(bytes: Uint8Array, source: string, baseOffset = 0, sharedTimestamps?: BigInt64Array): ChunkData {
  return guard(source, baseOffset, () => {
    const f = unframe(bytes, source, baseOffset);
    if (f.flags & FLAG_TS_ONLY) throw new CorruptionError("a timestamp column, not a chunk", source, baseOffset);
    const inp = f.body;
    let timestampsNs: BigInt64Array;
      if (f.flags & FLAG_EXTERNAL_TS) {
        if (sharedTimestamps === undefined) throw new CorruptionError("chunk needs its block's shared timestamp column", source, baseOffset);
        if (sharedTimestamps.length !== f.n)
          throw new CorruptionError(`shared timestamp column has ${sharedTimestamps.length} samples, chunk ${f.n}`, source, baseOffset);
        timestampsNs = sharedTimestamps;
      } else timestampsNs = decodeTimestamps(inp, f.n);
      const values = decodeValues(inp, f.n);
      const origins = new Uint8Array(f.n);
      decodeRuns(inp, origins, 1, "origins");
      const batchRefs = new Uint32Array(f.n);
      decodeRuns(inp, batchRefs, 0xffffffff, "batch refs");
      if (inp.pos !== inp.buf.length) inp.fail(`${inp.buf.length - inp.pos} trailing bytes`);
      return { timestampsNs, values, origins, batchRefs };
  });
}

/** Decodes a timestamp column written by encodeTimestampColumn. */
export function decodeTimestampColumn(bytes: Uint8Array, source: string, baseOffset = 0): BigInt64Array {
  return guard(source, baseOffset, () => {
    const f = unframe(bytes, source, baseOffset);
    if (!(f.flags & FLAG_TS_ONLY)) throw new CorruptionError("a chunk, not a timestamp column", source, baseOffset);
    const ts = decodeTimestamps(f.body, f.n);
    if (f.body.pos !== f.body.buf.length) f.body.fail(`${f.body.buf.length - f.body.pos} trailing bytes`);
    return ts;
  });
}

/** Sample count from a chunk's header, without decoding it. */
export function chunkSampleCount(bytes: Uint8Array, source: string, baseOffset = 0): number {
  return guard(source, baseOffset, () => {
    const h = new In(bytes, source, baseOffset);
    if (h.u8() !== CHUNK_FORMAT_VERSION) h.fail("unknown chunk format version", 0);
    const n = h.uv();
    if (n < 1 || n > CHUNK_SAMPLES_LIMIT) h.fail("chunk sample count out of range", 1);
    return n;
  });
}
