// What provenance costs on the write path, stage by stage, in one process on
// the same batches: canonical encoding (every write pays it: it is the batch's
// identity), its SHA-256, the gateway's Ed25519-signed receipt statement, the
// archive (deflate + CRC, synced every 1,000 batches), and a leaf append to
// the Merkle log. Prints samples/s for each stage alone and for the sum, so
// the ratio "with hashing and signing / without" can be read off.
//
//   npx tsc -p . && node --import tsx bench/provenance.ts [--batches N] [--samples S] [--series K]
//
// The end-to-end figure (a 3-node cluster with and without --provenance) is
// bench/cluster-ingest.ts --only cluster-rr,cluster-rr-noprov.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BatchBuilder, encodeBatch, type Batch } from "../src/core/batch.js";
import { sha256, toHex } from "../src/core/hash.js";
import { canonicalLabels } from "../src/core/labels.js";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { BatchArchive } from "../src/provenance/archive.js";
import { encodeLeaf } from "../src/provenance/leaf.js";
import { leafHash, MerkleLog } from "../src/provenance/merkle.js";
import { ed25519Signer, newSignerKey, parseSignerKey } from "../src/provenance/note.js";
import { signStatement } from "../src/provenance/statement.js";

const { values: args } = parseArgs({ options: { batches: { type: "string", default: "2000" }, samples: { type: "string", default: "1000" }, series: { type: "string", default: "100" } } });
const N = Number(args.batches);
const S = Number(args.samples);
const K = Number(args.series);

/** Batch i: K series × S/K points of 2-decimal random walks at 15 s steps (like node_exporter scrapes). */
function makeBatch(i: number): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  const per = Math.max(1, Math.floor(S / K));
  let x = i * 7919;
  for (let k = 0; k < K; k++) {
    const labels = canonicalLabels(
      [
        ["__name__", "node_cpu_seconds_total"],
        ["instance", `host-${k % 50}:9100`],
        ["cpu", String(k)],
        ["mode", "user"],
      ],
      DEFAULT_LIMITS,
    );
    let v = 1000 + k;
    for (let j = 0; j < per; j++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      v = Math.round((v + (x / 2147483648 - 0.5)) * 100) / 100;
      b.add(labels, BigInt(1_700_000_000_000 + (i * per + j) * 15_000) * 1_000_000n, v);
    }
  }
  return b.build();
}

async function main(): Promise<void> {
  const batches = Array.from({ length: N }, (_, i) => makeBatch(i));
  const samples = batches.reduce((a, b) => a + b.sampleCount, 0);
  const key = parseSignerKey(newSignerKey("bench/n1"));
  const signer = ed25519Signer(key.name, key.seed);
  const dir = await mkdtemp(join(tmpdir(), "hqts-bench-prov-"));
  const archive = await BatchArchive.open(dir);
  const log = new MerkleLog();
  const ms: Record<string, number> = { encode: 0, sha256: 0, sign: 0, archive: 0, leaf: 0 };
  try {
    for (const [i, b] of batches.entries()) {
      let t = performance.now();
      const bytes = encodeBatch(b);
      ms["encode"]! += performance.now() - t;
      t = performance.now();
      const digest = toHex(sha256(bytes));
      ms["sha256"]! += performance.now() - t;
      t = performance.now();
      await signStatement({ cluster: "bench", batchId: digest, sha256: digest, shardId: 0, hlc: String(i), samples: b.sampleCount, gateway: "n1", timeMs: Date.now(), mmdMs: 60_000 }, signer);
      ms["sign"]! += performance.now() - t;
      t = performance.now();
      archive.put(digest, digest, bytes);
      if (i % 1000 === 999) await archive.sync();
      ms["archive"]! += performance.now() - t;
      t = performance.now();
      log.append(leafHash(encodeLeaf({ batchId: digest, sha256: digest, shardId: 0, hlc: BigInt(i), sampleCount: b.sampleCount, origin: "original" })));
      ms["leaf"]! += performance.now() - t;
    }
    let t = performance.now();
    await archive.sync();
    ms["archive"]! += performance.now() - t;
    const st = archive.stats();
    const rate = (x: number): string => Math.round(samples / (x / 1000)).toLocaleString("en-US").padStart(13);
    console.log(`provenance cost: ${N} batches x ${S} samples (${K} series), ${samples.toLocaleString("en-US")} samples, one core`);
    for (const [k, v] of Object.entries(ms)) console.log(`  ${k.padEnd(8)} ${rate(v)} samples/s  (${((v / N) * 1000).toFixed(1)} µs/batch)`);
    const base = ms["encode"]!;
    const all = Object.values(ms).reduce((a, b) => a + b, 0);
    console.log(`  encode alone (no provenance): ${rate(base)} samples/s; with sha256 + sign + archive + leaf: ${rate(all)} samples/s; ratio ${(base / all).toFixed(2)}`);
    console.log(`  archive: ${(st.bytesOnDisk / samples).toFixed(2)} bytes/sample on disk (raw canonical ${(st.rawBytes / samples).toFixed(2)})`);
    t = performance.now();
    void log.root();
    console.log(`  merkle root of ${log.size} leaves: ${(performance.now() - t).toFixed(2)} ms`);
  } finally {
    await archive.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
