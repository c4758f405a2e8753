// Rewrites one stored value in a block file the way an attacker with the disk
// would: every CRC, digest and Merkle root of the block recomputed, so that no
// checksum can tell. Only the cryptographic layer (the point against its
// signed batch) can.

import { BlockReader, writeBlock } from "../../src/storage/block-io.js";
import type { BlockSeriesInput } from "../../src/storage/block-format.js";
import { rename } from "node:fs/promises";
import { dirname } from "node:path";

export interface Tampered {
  series: string;
  tsNs: bigint;
  before: number;
  after: number;
  batchId: string;
}

/** Changes the first point of the first series whose key passes `pick` to `f(value)`; answers what changed. */
export async function rewriteBlockValue(path: string, pick: (seriesKey: string) => boolean, f: (v: number) => number): Promise<Tampered> {
  const r = await BlockReader.open(path);
  let done: Tampered | null = null;
  const series: BlockSeriesInput[] = [];
  try {
    for (const s of r.series()) {
      const data = r.readSeriesData(s);
      const n = data.timestampsNs.length;
      if (done === null && n > 0 && pick(s.key)) {
        const before = data.values[0]!;
        data.values[0] = f(before);
        done = { series: s.key, tsNs: data.timestampsNs[0]!, before, after: data.values[0]!, batchId: r.batches()[data.batchRefs[0]!]!.batchId };
      }
      series.push({ labels: s.labels, data });
    }
    if (done === null) throw new Error(`no series in ${path} passes the pick`);
    const batches = [...r.batches()];
    await r.close();
    // writeBlock names a new file (random suffix): move it over the old one, as an attacker would.
    const meta = await writeBlock(dirname(path), { series, batches });
    await rename(meta.path, path);
    return done;
  } catch (e) {
    await r.close().catch(() => undefined);
    throw e;
  }
}
