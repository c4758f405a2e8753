// How fast `hqts verify` checks stored points against the signed log, on the
// shared real recording (node_exporter, 1 s scrapes, 55 min): a 3-node
// playground, the file written through `hqts write`, every batch sequenced
// into a checkpoint, then `hqts verify --url` (one replica's own data, over
// HTTP), `hqts export-bundle` and `hqts verify --bundle` (offline). Prints
// samples/s for each.
//
//   npx tsc -p . && node --import tsx bench/verify.ts [--file PATH]

import { spawnSync } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { CLI_MAIN } from "../test/helpers/node-proc.js";
import { startPlayground, waitReplicationReady } from "../test/helpers/playground.js";

const { values: args } = parseArgs({ options: { file: { type: "string", default: resolve("../shared/data/node-exporter-1s-55min.jsonl.gz") } } });

function hqts(...a: string[]): { stdout: string; stderr: string; status: number | null; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI_MAIN, ...a], { encoding: "utf8", timeout: 1_800_000, maxBuffer: 1 << 28 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status, ms: performance.now() - t0 };
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), "hqts-bench-verify-"));
  const pg = await startPlayground({ readyTimeoutMs: 60_000, nodeArgs: ["--checkpoint-interval", "1s"] });
  try {
    const urls = pg.nodes().map((n) => n.http);
    await waitReplicationReady(urls, 60_000);
    const w = hqts("write", args.file!, "--url", urls[0]!);
    if (w.status !== 0) throw new Error(`write failed: ${w.stderr.slice(-2000)}`);
    const receipts = w.stdout.split("\n").filter((l) => l.startsWith("{"));
    console.log(`wrote ${args.file} through ${urls[0]}: ${receipts.length} batches in ${(w.ms / 1000).toFixed(1)} s`);
    // Every batch in a checkpoint on n1 (its own replica: what verify --url reads).
    const deadline = Date.now() + 300_000;
    for (;;) {
      type Prov = { unsequenced: number; treeSize: number };
      let p: Prov | null = null;
      try {
        p = ((await (await fetch(`${urls[0]}/hq/v1/cluster`, { signal: AbortSignal.timeout(5000) })).json()) as { provenance?: Prov | null }).provenance ?? null;
      } catch {
        // busy or a stale keep-alive socket: ask again
      }
      if (p !== null && p.unsequenced === 0 && p.treeSize >= receipts.length) break;
      if (Date.now() > deadline) throw new Error(`not sequenced in time: ${JSON.stringify(p)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const state = join(scratch, "trust.json");
    const v = hqts("verify", "--url", urls[0]!, "--state", state, "--json");
    const rep = JSON.parse(v.stdout) as { ok: boolean; samples: number; samplesVerified: number; batches: { verified: number }; samplesPerSecond: number };
    console.log(`verify --url: ok ${rep.ok}, ${rep.samplesVerified.toLocaleString("en-US")} of ${rep.samples.toLocaleString("en-US")} samples in ${rep.batches.verified} batches, ${(v.ms / 1000).toFixed(1)} s wall (CLI start included): ${Math.round(rep.samples / (v.ms / 1000)).toLocaleString("en-US")} samples/s (the CLI's own figure: ${Math.round(rep.samplesPerSecond).toLocaleString("en-US")})`);
    const bundle = join(scratch, "b.bundle");
    const e = hqts("export-bundle", "--url", urls[0]!, "--out", bundle);
    if (e.status !== 0) throw new Error(`export-bundle failed: ${e.stderr.slice(-2000)}`);
    const size = (await stat(bundle)).size;
    const vb = hqts("verify", "--bundle", bundle, "--state", state, "--json");
    const rb = JSON.parse(vb.stdout) as { ok: boolean; samples: number };
    console.log(`export-bundle: ${(e.ms / 1000).toFixed(1)} s, ${(size / 1048576).toFixed(1)} MiB (${(size / rb.samples).toFixed(2)} B/sample); verify --bundle: ok ${rb.ok}, ${(vb.ms / 1000).toFixed(1)} s: ${Math.round(rb.samples / (vb.ms / 1000)).toLocaleString("en-US")} samples/s`);
  } finally {
    await pg.cleanup();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
