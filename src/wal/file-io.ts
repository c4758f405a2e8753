// Durable file writes shared by the append-only logs (the WAL here, the batch
// archive in provenance/): a write that is not short, and a directory fsync
// so a created or renamed file survives a crash.

import * as fs from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { assert } from "../core/assert.js";

export async function syncDir(dir: string): Promise<void> {
  const h = await fs.open(dir, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Writes every byte of `bufs` at `position` (a short write is continued, not returned); answers the byte count. */
export async function writeFully(h: FileHandle, bufs: readonly Uint8Array[], position: number): Promise<number> {
  let total = 0;
  for (const b of bufs) total += b.length;
  let written = bufs.length === 1 ? (await h.write(bufs[0]!, 0, total, position)).bytesWritten : (await h.writev(bufs as Uint8Array[], position)).bytesWritten;
  if (written < total) {
    const rest = Buffer.concat(bufs as Uint8Array[]);
    while (written < total) {
      const n = (await h.write(rest, written, total - written, position + written)).bytesWritten;
      if (n <= 0) throw new Error(`write made no progress at byte ${position + written}`);
      written += n;
    }
  }
  assert(written === total, "a write wrote exactly what it was given");
  return total;
}
