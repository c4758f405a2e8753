// Self-healing of a replica (docs/repairs.md) on real processes: a disk that
// lies costs no data. On one replica of a 3-node playground: a byte flipped in a WAL segment while
// the node runs (found by the scrubber) and while it is down (found at open);
// a block file deleted under a running node; then 50 random byte flips across
// its WAL and blocks while it is down. Each time every acked point comes back
// (checked on each node alone, `consistency=local`), the damage is found, and
// the repair is recorded in /hq/v1/repairs.

import assert from "node:assert/strict";
import { readdir, rm, stat } from "node:fs/promises";
import { flipByte } from "../../src/chaos/scenarios.js";
import { join } from "node:path";
import { after, test } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { cli, startPlayground, waitReplicationReady, type Entry, type Playground } from "../helpers/playground.js";

let pg: Playground | null = null;
after(async () => {
  await pg?.cleanup();
});

const SERIES = 10;
const PER_SERIES = 5;
const T0 = 1_700_000_000_000_000_000n;
const acked = new Map<string, number>();
let nextSeq = 0;

interface Repair {
  id: string;
  kind: string;
  trigger: string;
  where: { file?: string; offset?: number; length?: number };
  outcome: string;
  fromPeer: string | null;
  points: { stored: number };
  detail: string;
}

/** Writes `n` batches (SERIES × PER_SERIES points each) through the given nodes in turn; every one must be acked. */
async function writeBatches(urls: string[], n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const seq = nextSeq++;
    const lines: string[] = [];
    const pts: [string, number][] = [];
    for (let s = 0; s < SERIES; s++)
      for (let j = 0; j < PER_SERIES; j++) {
        const t = T0 + BigInt(seq * PER_SERIES + j) * 1_000_000n;
        const v = seq * 1000 + s * 10 + j;
        lines.push(`ig,s=s${s} v=${v} ${t}`);
        pts.push([`s${s}@${t}`, v]);
      }
    const deadline = Date.now() + 30_000;
    for (let attempt = 0; ; attempt++) {
      const url = urls[(seq + attempt) % urls.length]!;
      const a = await http(`${url}/api/v2/write?precision=ns`, { body: lines.join("\n"), headers: { "Idempotency-Key": `ig-${seq}`, Accept: "application/json" } }).catch(
        (e: Error) => ({ status: 0, text: e.message }),
      );
      if (a.status === 200) break;
      assert.ok(a.status === 0 || a.status === 503 || a.status === 429, `batch ${seq}: non-retryable ${a.status} ${a.text.slice(0, 200)}`);
      assert.ok(Date.now() < deadline, `batch ${seq} not acked in 30 s: ${a.status} ${a.text.slice(0, 200)}`);
      await new Promise((r) => setTimeout(r, 50)); // backoff between retries
    }
    for (const [k, v] of pts) acked.set(k, v);
  }
}

async function until(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      if (await fn()) return;
    } catch (e) {
      // A request that fails at the connection (a keep-alive socket to a node killed and restarted on the same port)
      // is a poll that has not seen the state yet; anything else is a failure of the test.
      if (!(e instanceof TypeError && e.message === "fetch failed")) throw e;
      lastError = `; last request failed: ${String((e as { cause?: unknown }).cause ?? e.message)}`;
    }
    assert.ok(Date.now() < deadline, `timed out after ${timeoutMs} ms waiting until ${what}${lastError}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Acked points this node lacks on its own (no majority merge); a wrong value or a duplicate fails at once. */
async function missingOn(url: string): Promise<number> {
  const mine = new Map<string, number>();
  for (const l of await exportSeries(url, "ig_v", { consistency: "local" }))
    for (let i = 0; i < l.values.length; i++) {
      const k = `${l.metric.s!}@${l.timestamps_ns[i]!}`;
      assert.ok(!mine.has(k), `${url}: point ${k} twice`);
      mine.set(k, Number(l.values[i]));
    }
  let missing = 0;
  for (const [k, v] of acked) {
    const got = mine.get(k);
    if (got === undefined) missing++;
    else assert.equal(got, v, `${url}: point ${k} holds another value`);
  }
  return missing;
}

async function everyNodeHoldsEveryAcked(urls: string[], what: string): Promise<void> {
  await until(`${what}: every node holds every acked point`, 60_000, async () => {
    for (const u of urls) if ((await missingOn(u)) > 0) return false;
    return true;
  });
}

async function repairs(url: string): Promise<Repair[]> {
  const a = await http(`${url}/hq/v1/repairs?limit=10000`);
  assert.equal(a.status, 200, a.text);
  return (a.json() as { data: Repair[] }).data;
}

async function integrity(url: string): Promise<{ scrub: { passesTotal: number; findingsTotal: Record<string, number> } }> {
  const a = await http(`${url}/hq/v1/cluster`);
  assert.equal(a.status, 200, a.text);
  return (a.json() as { integrity: { scrub: { passesTotal: number; findingsTotal: Record<string, number> } } }).integrity;
}

async function files(dir: string, suffix: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => n.endsWith(suffix)).map((n) => join(dir, n));
  } catch {
    return [];
  }
}


/** The relative file names a record may use: compare by the file's base name and parent folder. */
const sameFile = (recorded: string | undefined, path: string): boolean => recorded !== undefined && path.endsWith(recorded.replace(/^.*?(wal|blocks)\//, "$1/"));

const stopNode = (n: Entry, signal: string): void => {
  const r = cli("cluster", "stop-node", n.id, "--signal", signal, "--dir", pg!.dir);
  assert.equal(r.status, 0, r.stderr);
};
const startNode = (n: Entry): void => {
  const r = cli("cluster", "start-node", n.id, "--dir", pg!.dir);
  assert.equal(r.status, 0, r.stderr + r.stdout);
};

test("a lying disk costs no data: WAL and block damage found, repaired from peers, recorded", { timeout: 420_000 }, async (t) => {
  // Small heads (blocks every 1000 samples), a scrub pass every second, anti-entropy every 2 s.
  pg = await startPlayground({ nodeArgs: ["--head-samples-max", "1000", "--scrub-pass-interval", "1s", "--scrub-rate", "67108864", "--anti-entropy-interval", "2s"] });
  const nodes = pg.nodes();
  const urls = nodes.map((n) => n.http);
  await waitReplicationReady(urls);
  const victim = nodes[2]!;
  const walDir = victim.walDir;
  const blocksDir = join(victim.dataDir, "blocks");

  // ---- 1. a flipped byte in a closed WAL segment while the node runs: the scrubber finds it ----
  await writeBatches(urls, 15); // 750 samples: all in the head and the WAL
  const segs = (await files(walDir, ".seg")).sort();
  assert.ok(segs.length > 0, `WAL segments in ${walDir}`);
  const seg = segs[segs.length - 1]!;
  const segSize = (await stat(seg)).size;
  const at1 = Math.floor(segSize / 3); // a record in the middle: valid records follow it, so it is damage, not a torn tail
  await flipByte(seg, at1);
  t.diagnostic(`flipped byte ${at1} of ${seg} (${segSize} bytes) while running`);
  await until("the scrubber found and repaired the WAL damage", 30_000, async () =>
    (await repairs(victim.http)).some((r) => r.kind === "wal-damage" && r.trigger === "scrub" && r.outcome === "repaired" && sameFile(r.where.file, seg)),
  );
  await everyNodeHoldsEveryAcked(urls, "after the WAL repair while running");
  // The repair left nothing damaged behind: the node restarts cleanly and still holds everything.
  stopNode(victim, "TERM");
  startNode(victim);
  assert.equal((await repairs(victim.http)).filter((r) => r.trigger === "open").length, 0, "nothing damaged found at the restart");
  await everyNodeHoldsEveryAcked(urls, "after a clean restart");

  // ---- 2. a flipped byte in the WAL while the node is down: found at open, data fetched from peers ----
  await writeBatches(urls, 10);
  stopNode(victim, "KILL");
  const segs2 = (await files(walDir, ".seg")).sort();
  const seg2 = segs2[segs2.length - 1]!;
  const at2 = Math.floor((await stat(seg2)).size / 3);
  await flipByte(seg2, at2);
  t.diagnostic(`flipped byte ${at2} of ${seg2} while down`);
  startNode(victim);
  await until("the damage found at open is repaired and recorded", 60_000, async () =>
    (await repairs(victim.http)).some((r) => r.kind === "wal-damage" && r.trigger === "open" && r.outcome === "repaired"),
  );
  await everyNodeHoldsEveryAcked(urls, "after the WAL repair at open");

  // ---- 3. a block file deleted under the running node ----
  await writeBatches(urls, 30); // 1500 samples: at least one more block on every node
  await until("the victim has a block", 30_000, async () => (await files(blocksDir, ".hqb")).length > 0);
  const blocks = (await files(blocksDir, ".hqb")).sort();
  const gone = blocks[0]!;
  await rm(gone);
  t.diagnostic(`deleted ${gone}`);
  await until("the missing block is repaired from peers and recorded", 60_000, async () =>
    (await repairs(victim.http)).some((r) => (r.kind === "block-missing" || r.kind === "block-damage") && r.outcome === "repaired" && sameFile(r.where.file, gone)),
  );
  await everyNodeHoldsEveryAcked(urls, "after the block repair");

  // ---- 4. 50 random byte flips across the WAL and the blocks while the node is down ----
  await writeBatches(urls, 20);
  stopNode(victim, "KILL");
  const targets: { path: string; size: number }[] = [];
  for (const p of [...(await files(walDir, ".seg")), ...(await files(blocksDir, ".hqb"))]) targets.push({ path: p, size: (await stat(p)).size });
  const totalBytes = targets.reduce((a, x) => a + x.size, 0);
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const flips = new Map<string, Set<number>>();
  while ([...flips.values()].reduce((a, s) => a + s.size, 0) < 50) {
    let x = Math.floor(rand() * totalBytes);
    const f = targets.find((tg) => (x < tg.size ? true : ((x -= tg.size), false)))!;
    const set = flips.get(f.path) ?? new Set<number>();
    set.add(x);
    flips.set(f.path, set);
  }
  for (const [p, offs] of flips) for (const o of offs) await flipByte(p, o);
  t.diagnostic(`50 flips in ${flips.size} files (${targets.length} files, ${totalBytes} bytes)`);
  const before = (await repairs(victim.http).catch(() => [] as Repair[])).length;
  void before;
  startNode(victim);
  await waitReplicationReady([victim.http], 90_000);
  // Every damaged file is found: at open (WAL, block structure) or by the first scrub pass (block chunks).
  await until("a scrub pass completed after the restart", 60_000, async () => (await integrity(victim.http)).scrub.passesTotal >= 1);
  await until("every flipped file is reported damaged", 60_000, async () => {
    const rs = await repairs(victim.http);
    for (const [p, offs] of flips) {
      const forFile = rs.filter((r) => sameFile(r.where.file, p));
      if (forFile.length === 0) return false;
      if (p.endsWith(".seg"))
        for (const o of offs)
          if (!forFile.some((r) => r.where.offset !== undefined && r.where.length !== undefined && o >= r.where.offset && o < r.where.offset + Math.max(1, r.where.length))) return false;
    }
    return true;
  });
  await everyNodeHoldsEveryAcked(urls, "after 50 flips");
  const rs = await repairs(victim.http);
  t.diagnostic(`victim's repair log: ${rs.length} records: ${[...new Set(rs.map((r) => `${r.kind}/${r.trigger}/${r.outcome}`))].join(", ")}`);
  assert.ok(rs.every((r) => r.outcome !== "failed"), `no failed repair: ${JSON.stringify(rs.filter((r) => r.outcome === "failed"))}`);
});
