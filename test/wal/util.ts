// Shared helpers for the WAL tests.
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "hq-wal-"));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Deterministic payload: a 4-byte id then bytes derived from it. */
export function payloadFor(id: number, size: number): Uint8Array {
  const p = new Uint8Array(Math.max(4, size));
  new DataView(p.buffer).setUint32(0, id, true);
  for (let i = 4; i < p.length; i++) p[i] = (id * 31 + i * 7) & 0xff;
  return p;
}

export function idOf(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0, true);
}

export function samePayload(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

export async function flipByte(file: string, offset: number, mask = 0xff): Promise<void> {
  const h = await fs.open(file, "r+");
  try {
    const b = Buffer.alloc(1);
    await h.read(b, 0, 1, offset);
    b[0] = b[0]! ^ mask;
    await h.write(b, 0, 1, offset);
  } finally {
    await h.close();
  }
}
