// RFC 6962 / RFC 9162 Merkle log: the tree behind signed checkpoints,
// inclusion proofs (a batch is in the log) and consistency proofs (the log
// only grew). Pure logic, no I/O: the caller persists leaf hashes and rebuilds
// with MerkleLog.fromLeafHashes at start-up.
//
// The hashing must match every other RFC 6962 implementation bit for bit, or
// a client's independent verifier proves nothing; see docs/format/merkle.md.
//
// Leaf counts stay below 2^32 (MERKLE_LEAVES_MAX), so every index is exact in
// a double and `Math.clz32` gives bit lengths; JavaScript's `>>`, `&` and `^`
// are avoided on sizes because they wrap at 2^31.

import { assert } from "../core/assert.js";
import { BadInputError, TooLargeError } from "../core/errors.js";
import { sha256, toHex } from "../core/hash.js";

export const MERKLE_HASH_BYTES = 32;
/** Leaves a log may hold; keeps indices below 2^32 so the bit arithmetic is exact. */
export const MERKLE_LEAVES_MAX = 2 ** 32 - 1;
/**
 * Longest proof any valid tree can need: an inclusion proof has at most 32
 * hashes below 2^32 leaves, a consistency proof at most 33 (RFC 9162 §2.1.4.1
 * adds the subtree root). Parsers refuse longer lists before decoding them.
 */
export const MERKLE_PROOF_HASHES_MAX = 64;

const LEAF_PREFIX = new Uint8Array([0x00]);
const NODE_PREFIX = new Uint8Array([0x01]);

/** RFC 6962 §2.1: MTH({}) = SHA-256 of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256();

/** SHA-256(0x00 || entry); the prefix keeps a leaf from posing as an interior node. */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(LEAF_PREFIX, entry);
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  assert(left.length === MERKLE_HASH_BYTES, `left child hash is ${left.length} bytes, not ${MERKLE_HASH_BYTES}`);
  assert(right.length === MERKLE_HASH_BYTES, `right child hash is ${right.length} bytes, not ${MERKLE_HASH_BYTES}`);
  return sha256(NODE_PREFIX, left, right);
}

// ---------------------------------------------------------------------------
// Integer helpers, exact for 0 <= n <= MERKLE_LEAVES_MAX.

/** Number of bits needed to write n (0 for 0). */
function bitLength(n: number): number {
  return 32 - Math.clz32(n);
}

/** floor(log2 n) for n >= 1. */
function floorLog2(n: number): number {
  return 31 - Math.clz32(n);
}

/** The largest power of two strictly below n (n >= 2): RFC 6962's split point k. */
function splitPoint(n: number): number {
  return 2 ** floorLog2(n - 1);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** floorLog2(n) === n;
}

function popCount(n: number): number {
  let count = 0;
  for (let v = n; v > 0; v = Math.floor(v / 2)) count += v % 2;
  return count;
}

function trailingZeros(n: number): number {
  let count = 0;
  for (let v = n; v > 0 && v % 2 === 0; v /= 2) count += 1;
  return count;
}

/** XOR of two values below 2^32 (the `^` operator returns a signed int32). */
function xor32(a: number, b: number): number {
  return (a ^ b) >>> 0;
}

function isLeafCount(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= MERKLE_LEAVES_MAX;
}

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === MERKLE_HASH_BYTES;
}

function isProof(proof: unknown): proof is readonly Uint8Array[] {
  if (!Array.isArray(proof) || proof.length > MERKLE_PROOF_HASHES_MAX) return false;
  // An index loop, not every(): every() skips the holes of a sparse array.
  for (let i = 0; i < proof.length; i++) if (!isHash(proof[i])) return false;
  return true;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The number of hashes in PATH(index, D[size]) (RFC 9162 §2.1.3.1): one per
 * level below the point where the leaf's path and the right edge part
 * (`inner`), plus one per perfect left subtree along the right edge (`border`).
 */
function inclusionProofLength(index: number, size: number): number {
  assert(isLeafCount(size) && size >= 1 && isLeafCount(index) && index < size, `inclusion proof length for ${index} of ${size}`);
  const inner = bitLength(xor32(index, size - 1));
  return inner + popCount(Math.floor(index / 2 ** inner));
}

/** The number of hashes in PROOF(first, D[second]) (RFC 9162 §2.1.4.1) for 0 < first < second. */
function consistencyProofLength(first: number, second: number): number {
  assert(isLeafCount(second) && isLeafCount(first) && first >= 1 && first < second, `consistency proof length for ${first} to ${second}`);
  const inner = bitLength(xor32(first - 1, second - 1));
  const border = popCount(Math.floor((first - 1) / 2 ** inner));
  const shift = trailingZeros(first);
  // A first tree that is itself a perfect subtree is the verifier's seed; otherwise the proof carries it.
  const seed = isPowerOfTwo(first) ? 0 : 1;
  return seed + (inner - shift) + border;
}

// ---------------------------------------------------------------------------
// Storage: one column of hashes per tree level.

/** Hashes per chunk: chunks avoid copying the whole level on growth and stay under typed-array size limits. */
const CHUNK_HASHES = 1 << 15;

/** An append-only array of 32-byte hashes in chunked, growable Uint8Array buffers. */
class HashColumn {
  private readonly chunks: Uint8Array[] = [];
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(hash: Uint8Array): void {
    assert(hash.length === MERKLE_HASH_BYTES, `hash is ${hash.length} bytes, not ${MERKLE_HASH_BYTES}`);
    const chunkIndex = Math.floor(this.count / CHUNK_HASHES);
    const slot = this.count % CHUNK_HASHES;
    let chunk = this.chunks[chunkIndex];
    if (chunk === undefined) {
      // Small logs (and the upper levels of big ones) start small and double up to a full chunk.
      chunk = new Uint8Array(MERKLE_HASH_BYTES * (chunkIndex === 0 ? 1 : CHUNK_HASHES));
      this.chunks.push(chunk);
    } else if (chunk.length < (slot + 1) * MERKLE_HASH_BYTES) {
      const grown = new Uint8Array(Math.min(chunk.length * 2, CHUNK_HASHES * MERKLE_HASH_BYTES));
      grown.set(chunk);
      chunk = grown;
      this.chunks[chunkIndex] = chunk;
    }
    chunk.set(hash, slot * MERKLE_HASH_BYTES);
    this.count += 1;
  }

  /** Forgets every hash from `count` on (the storage stays allocated; later pushes overwrite it). */
  truncate(count: number): void {
    assert(Number.isInteger(count) && count >= 0 && count <= this.count, `truncate to ${count} of ${this.count}`);
    this.count = count;
  }

  /** A view into the column: callers copy before handing it out. */
  at(i: number): Uint8Array {
    assert(Number.isInteger(i) && i >= 0 && i < this.count, `hash ${i} of ${this.count}`);
    const chunk = this.chunks[Math.floor(i / CHUNK_HASHES)];
    assert(chunk !== undefined, `chunk for hash ${i}`);
    const offset = (i % CHUNK_HASHES) * MERKLE_HASH_BYTES;
    return chunk.subarray(offset, offset + MERKLE_HASH_BYTES);
  }
}

function checkLeafCountArg(value: number, field: string): void {
  if (!isLeafCount(value)) {
    throw new BadInputError(`must be an integer from 0 to ${MERKLE_LEAVES_MAX}, got ${String(value)}`, { field });
  }
}

/**
 * An append-only Merkle log held in memory. Level k holds the hash of every
 * complete subtree of 2^k leaves (level 0: the leaf hashes), so roots and
 * proofs for any size up to the current one need O(log n) hashing.
 */
export class MerkleLog {
  private readonly levels: HashColumn[] = [new HashColumn()];

  static fromLeafHashes(hashes: Iterable<Uint8Array>): MerkleLog {
    const log = new MerkleLog();
    for (const h of hashes) log.append(h);
    return log;
  }

  get size(): number {
    return this.levels[0]!.length;
  }

  /** Appends a leaf hash (see leafHash) and returns its index. Amortised O(1) hashing. */
  append(leafHashBytes: Uint8Array): number {
    assert(leafHashBytes.length === MERKLE_HASH_BYTES, `leaf hash is ${leafHashBytes.length} bytes, not ${MERKLE_HASH_BYTES}`);
    const index = this.size;
    if (index >= MERKLE_LEAVES_MAX) throw new TooLargeError("merkle log leaf count", MERKLE_LEAVES_MAX);
    this.levels[0]!.push(leafHashBytes);
    // Each even count at level k completes a subtree of 2^(k+1) leaves.
    for (let level = 0; this.levels[level]!.length % 2 === 0; level++) {
      const column = this.levels[level]!;
      const n = column.length;
      if (this.levels[level + 1] === undefined) this.levels.push(new HashColumn());
      const parent = this.levels[level + 1]!;
      assert(parent.length === n / 2 - 1, `level ${level + 1} holds ${parent.length} hashes, expected ${n / 2 - 1}`);
      parent.push(nodeHash(column.at(n - 2), column.at(n - 1)));
    }
    return index;
  }

  /**
   * Drops every leaf from `size` on: O(log n), since a complete subtree of the first `size` leaves never depends on a
   * later leaf, only the columns' lengths change. For undoing an append whose checkpoint was not published.
   */
  truncate(size: number): void {
    this.checkSize(size, "size");
    for (let level = 0; level < this.levels.length; level++) this.levels[level]!.truncate(Math.floor(size / 2 ** level));
  }

  leafHashAt(index: number): Uint8Array {
    checkLeafCountArg(index, "index");
    if (index >= this.size) throw new BadInputError(`leaf ${index} is not in a log of ${this.size} leaves`, { field: "index" });
    return this.levels[0]!.at(index).slice();
  }

  /** MTH(D[0:size]) for the current or any earlier size. */
  root(size: number = this.size): Uint8Array {
    this.checkSize(size, "size");
    if (size === 0) return EMPTY_ROOT.slice();
    return this.rangeHash(0, size).slice();
  }

  /** PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf end first. */
  inclusionProof(index: number, size: number): Uint8Array[] {
    this.checkSize(size, "size");
    checkLeafCountArg(index, "index");
    if (index >= size) throw new BadInputError(`leaf ${index} is not in a tree of ${size} leaves`, { field: "index" });
    // Walk down from the root, collecting siblings root end first.
    const siblings: Uint8Array[] = [];
    let lo = 0;
    let hi = size;
    while (hi - lo > 1) {
      const k = splitPoint(hi - lo);
      if (index < lo + k) {
        siblings.push(this.rangeHash(lo + k, hi));
        hi = lo + k;
      } else {
        siblings.push(this.rangeHash(lo, lo + k));
        lo += k;
      }
    }
    const proof = siblings.reverse().map((h) => h.slice());
    assert(proof.length === inclusionProofLength(index, size), `inclusion proof of ${proof.length} hashes for ${index} of ${size}`);
    return proof;
  }

  /**
   * PROOF(first, D[0:second]) = SUBPROOF(first, D[0:second], true) of RFC 9162
   * §2.1.4.1. Empty when first is 0 or equals second (see verifyConsistency).
   */
  consistencyProof(first: number, second: number): Uint8Array[] {
    this.checkSize(second, "second");
    checkLeafCountArg(first, "first");
    if (first > second) throw new BadInputError(`first size ${first} exceeds second size ${second}`, { field: "first" });
    if (first === 0 || first === second) return [];
    const hashes: Uint8Array[] = [];
    let lo = 0;
    let hi = second;
    let m = first;
    let startsAtOldRoot = true; // the `b` flag of SUBPROOF
    while (m !== hi - lo) {
      const k = splitPoint(hi - lo);
      if (m <= k) {
        hashes.push(this.rangeHash(lo + k, hi));
        hi = lo + k;
      } else {
        hashes.push(this.rangeHash(lo, lo + k));
        lo += k;
        m -= k;
        startsAtOldRoot = false;
      }
    }
    if (!startsAtOldRoot) hashes.push(this.rangeHash(lo, hi));
    const proof = hashes.reverse().map((h) => h.slice());
    assert(proof.length === consistencyProofLength(first, second), `consistency proof of ${proof.length} hashes for ${first} to ${second}`);
    return proof;
  }

  private checkSize(size: number, field: string): void {
    checkLeafCountArg(size, field);
    if (size > this.size) throw new BadInputError(`tree size ${size} exceeds the log's ${this.size} leaves`, { field });
  }

  /**
   * MTH(D[lo:hi]) for a range the RFC recursion produces: lo is a multiple of
   * a power of two >= hi - lo, so the range splits into cached perfect
   * subtrees, largest first, folded from the right. May return a view.
   */
  private rangeHash(lo: number, hi: number): Uint8Array {
    assert(lo < hi && hi <= this.size, `range [${lo}, ${hi}) of ${this.size} leaves`);
    const pieces: Uint8Array[] = [];
    let offset = lo;
    while (offset < hi) {
      const level = floorLog2(hi - offset);
      const width = 2 ** level;
      assert(offset % width === 0, `subtree of ${width} leaves at ${offset} is not aligned`);
      const column = this.levels[level];
      assert(column !== undefined, `level ${level} exists`);
      pieces.push(column.at(offset / width));
      offset += width;
    }
    let hash = pieces[pieces.length - 1]!;
    for (let i = pieces.length - 2; i >= 0; i--) hash = nodeHash(pieces[i]!, hash);
    return hash;
  }
}

// ---------------------------------------------------------------------------
// Verification: what a client runs. Every argument may come from an attacker,
// so malformed input yields false (or null), never an exception.

/**
 * The root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4), or
 * null when the arguments are malformed or the proof has the wrong length.
 */
export function rootFromInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[]): Uint8Array | null {
  if (!isHash(leaf) || !isLeafCount(index) || !isLeafCount(size) || !isProof(proof)) return null;
  if (index >= size) return null; // also rejects size 0
  if (proof.length !== inclusionProofLength(index, size)) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

/** RFC 9162 §2.1.3.2: does `proof` show leaf hash `leaf` at `index` in the tree of `size` leaves with `root`? */
export function verifyInclusion(leaf: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!isHash(root)) return false;
  const computed = rootFromInclusion(leaf, index, size, proof);
  return computed !== null && bytesEqual(computed, root);
}

/**
 * RFC 9162 §2.1.4.2: does `proof` show that the tree of `second` leaves with
 * `secondRoot` extends the tree of `first` leaves with `firstRoot`?
 *
 * Edge cases (RFC 9162 only defines 0 < first < second):
 * - first == second: the proof must be empty and the roots equal;
 * - first == 0: the proof must be empty and firstRoot must be EMPTY_ROOT
 *   (every tree extends the empty one, but a forged "empty" root is refused);
 *   with second == 0 as well, both roots must be EMPTY_ROOT.
 */
export function verifyConsistency(
  first: number,
  second: number,
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isLeafCount(first) || !isLeafCount(second) || first > second) return false;
  if (!isHash(firstRoot) || !isHash(secondRoot) || !isProof(proof)) return false;
  if (first === 0) return proof.length === 0 && bytesEqual(firstRoot, EMPTY_ROOT) && (second > 0 || bytesEqual(secondRoot, EMPTY_ROOT));
  if (first === second) return proof.length === 0 && bytesEqual(firstRoot, secondRoot);
  // Step 1, and the exact length a valid proof has (which also bounds the loop below).
  if (proof.length === 0 || proof.length !== consistencyProofLength(first, second)) return false;
  // Step 2.
  const path = isPowerOfTwo(first) ? [firstRoot, ...proof] : proof;
  // Steps 3-4.
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 5.
  let fr = path[0]!;
  let sr = path[0]!;
  // Step 6.
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 7.
  return sn === 0 && bytesEqual(fr, firstRoot) && bytesEqual(sr, secondRoot);
}

// ---------------------------------------------------------------------------
// Proofs on the wire: JSON arrays of strings, one hash each.

/** Standard base64 with padding, one string per hash. */
export function proofToBase64(hashes: readonly Uint8Array[]): string[] {
  return hashes.map((h) => {
    assert(h.length === MERKLE_HASH_BYTES, `proof hash is ${h.length} bytes`);
    return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString("base64");
  });
}

export function proofToHex(hashes: readonly Uint8Array[]): string[] {
  return hashes.map((h) => {
    assert(h.length === MERKLE_HASH_BYTES, `proof hash is ${h.length} bytes`);
    return toHex(h);
  });
}

const BASE64_HASH = /^[A-Za-z0-9+/]{43}=$/;
const HEX_HASH = /^[0-9a-fA-F]{64}$/;

/** One 32-byte hash in canonical padded base64; anything else is BadInputError naming `field`. */
export function hashFromBase64(text: unknown, field: string): Uint8Array {
  // Buffer's decoder skips junk silently, so the shape is checked first and the round trip after.
  if (typeof text !== "string" || !BASE64_HASH.test(text)) {
    throw new BadInputError(`must be a ${MERKLE_HASH_BYTES}-byte hash in padded base64`, { field });
  }
  const bytes = new Uint8Array(Buffer.from(text, "base64"));
  if (bytes.length !== MERKLE_HASH_BYTES || Buffer.from(bytes).toString("base64") !== text) {
    throw new BadInputError(`must be a ${MERKLE_HASH_BYTES}-byte hash in canonical base64`, { field });
  }
  return bytes;
}

/** One 32-byte hash as 64 hex digits (either case); anything else is BadInputError naming `field`. */
export function hashFromHex(text: unknown, field: string): Uint8Array {
  if (typeof text !== "string" || !HEX_HASH.test(text)) {
    throw new BadInputError(`must be a ${MERKLE_HASH_BYTES}-byte hash as ${MERKLE_HASH_BYTES * 2} hex digits`, { field });
  }
  return new Uint8Array(Buffer.from(text, "hex"));
}

function proofFrom(list: unknown, field: string, parse: (text: unknown, field: string) => Uint8Array): Uint8Array[] {
  if (!Array.isArray(list)) throw new BadInputError("must be an array of hashes", { field });
  if (list.length > MERKLE_PROOF_HASHES_MAX) throw new TooLargeError("proof hash count", MERKLE_PROOF_HASHES_MAX, { field });
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < list.length; i++) hashes.push(parse(list[i], `${field}[${i}]`));
  return hashes;
}

/** Decodes a proof sent as base64 strings; errors name `field[i]`. */
export function proofFromBase64(list: unknown, field: string): Uint8Array[] {
  return proofFrom(list, field, hashFromBase64);
}

/** Decodes a proof sent as hex strings; errors name `field[i]`. */
export function proofFromHex(list: unknown, field: string): Uint8Array[] {
  return proofFrom(list, field, hashFromHex);
}
