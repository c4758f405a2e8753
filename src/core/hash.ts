// Checksums (CRC32C, for torn/flipped bytes) and digests (SHA-256, for identity
// and provenance). CRC32C comes from @node-rs/crc32 (hardware-accelerated).

import { createHash } from "node:crypto";
import { crc32c as crc32cNative } from "@node-rs/crc32";

export function crc32c(data: Uint8Array, initial = 0): number {
  return crc32cNative(Buffer.from(data.buffer, data.byteOffset, data.byteLength), initial) >>> 0;
}

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "hex"));
}

/** RFC 6962 Merkle tree hash: leaves H(0x00||d), nodes H(0x01||l||r), split at the largest power of two < n. */
export function merkleRoot(leafDigests: readonly Uint8Array[]): Uint8Array {
  if (leafDigests.length === 0) return sha256();
  const leaves = leafDigests.map((d) => sha256(new Uint8Array([0]), d));
  const rec = (lo: number, hi: number): Uint8Array => {
    if (hi - lo === 1) return leaves[lo]!;
    let k = 1;
    while (k * 2 < hi - lo) k *= 2;
    return sha256(new Uint8Array([1]), rec(lo, lo + k), rec(lo + k, hi));
  };
  return rec(0, leaves.length);
}
