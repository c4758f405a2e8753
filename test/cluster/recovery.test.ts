// Replica catch-up and rebuild on real processes: SIGKILL one node during
// sustained writes and restart it; it catches up and every acked point is on
// every node, once. Then again with its data dir wiped: it rebuilds from its
// peers. The nodes cut their head into a block every 3000 samples, so what the
// node missed is mostly flushed on its peers by the time it returns: catch-up
// has to copy points (point sync), not batch bytes, and the test checks that
// this path ran. Each node is checked alone (`consistency=local`), not through
// the majority read, which would hide a replica that did not catch up.

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, test } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { cli, startPlayground, waitReplicationReady, type Playground } from "../helpers/playground.js";

let pg: Playground | null = null;
after(async () => {
  await pg?.cleanup();
});

const SERIES = 20;
const POINTS_PER_SERIES = 5;
const T0 = 1_700_000_000_000_000_000n;

/** What the writers were acked for: point key → value. */
const acked = new Map<string, number>();
const pointKey = (series: string, tNs: string): string => `${series}@${tNs}`;

/** Batch `seq`: SERIES series × POINTS_PER_SERIES points, timestamps no other batch uses. */
function batchBody(seq: number): { body: string; points: [string, string, number][] } {
  const lines: string[] = [];
  const points: [string, string, number][] = [];
  for (let s = 0; s < SERIES; s++)
    for (let j = 0; j < POINTS_PER_SERIES; j++) {
      const t = T0 + BigInt(seq * POINTS_PER_SERIES + j) * 1_000_000n;
      const v = seq * 1000 + s * 10 + j;
      lines.push(`rc,s=s${s} v=${v} ${t}`);
      points.push([`s${s}`, t.toString(), v]);
    }
  return { body: lines.join("\n"), points };
}

interface Writers {
  /** Batches acked so far. */
  acked(): number;
  stop(): Promise<void>;
}

/**
 * Writers that stream batches through every node in turn; a failed attempt (503, dropped connection) is retried
 * with the same Idempotency-Key through the next node until it is acked. A non-retryable answer fails the test.
 */
function startWriters(urls: () => string[], count: number, firstSeq: { next: number }): Writers {
  let stopping = false;
  let done = 0;
  const errors: string[] = [];
  const one = async (w: number): Promise<void> => {
    let rr = w;
    while (!stopping) {
      const seq = firstSeq.next++;
      const { body, points } = batchBody(seq);
      const deadline = Date.now() + 60_000;
      for (;;) {
        assert.ok(Date.now() < deadline, `batch ${seq} not acked within 60 s: ${errors.slice(-3).join("; ")}`);
        const list = urls();
        const url = list[rr++ % list.length]!;
        let status = 0;
        try {
          const a = await http(`${url}/api/v2/write?precision=ns`, { body, headers: { "Idempotency-Key": `rc-${seq}`, Accept: "application/json" } });
          status = a.status;
          if (status !== 200 && (status < 500 || status === 501) && status !== 429) assert.fail(`batch ${seq}: non-retryable ${status} ${a.text.slice(0, 300)}`);
          if (status !== 200) errors.push(`${status} ${a.text.slice(0, 120)}`);
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          errors.push(`batch ${seq} via ${url}: ${(e as Error).message}`);
        }
        if (status === 200) break;
        await new Promise((r) => setTimeout(r, 20)); // backoff between retries, not synchronisation
      }
      for (const [s, t, v] of points) acked.set(pointKey(s, t), v);
      done++;
    }
  };
  const all = Array.from({ length: count }, (_, w) => one(w));
  return {
    acked: () => done,
    async stop() {
      stopping = true;
      await Promise.all(all);
    },
  };
}

async function until(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    assert.ok(Date.now() < deadline, `timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** This node's own points of the test's series (no majority merge): key → value, failing on a duplicated point. */
async function localPoints(url: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const l of await exportSeries(url, "rc_v", { consistency: "local" }))
    for (let i = 0; i < l.values.length; i++) {
      const k = pointKey(l.metric.s!, l.timestamps_ns[i]!);
      assert.ok(!out.has(k), `point ${k} twice on ${url}`);
      out.set(k, Number(l.values[i]));
    }
  return out;
}

/** True once the node holds every acked point with its acked value (extra, unacked-but-committed points allowed). */
async function holdsEveryAcked(url: string): Promise<{ ok: boolean; missing: number; wrong: number; total: number }> {
  const mine = await localPoints(url);
  let missing = 0;
  let wrong = 0;
  for (const [k, v] of acked) {
    const got = mine.get(k);
    if (got === undefined) missing++;
    else if (got !== v) wrong++;
  }
  assert.equal(wrong, 0, `${url}: ${wrong} acked points hold another value`);
  return { ok: missing === 0, missing, wrong, total: mine.size };
}

async function metric(url: string, name: string): Promise<number> {
  const a = await http(`${url}/metrics`);
  assert.equal(a.status, 200);
  let sum = 0;
  for (const l of a.text.split("\n")) if (l.startsWith(name) && (l[name.length] === " " || l[name.length] === "{")) sum += Number(l.slice(l.lastIndexOf(" ") + 1));
  return sum;
}

/** Every node's digests of its committed points, window by window, are the same: the replicas converged. */
async function digestsAgree(urls: string[]): Promise<boolean> {
  const ds = await Promise.all(
    urls.map(async (u) => {
      const a = await http(`${u}/hq/v1/internal/read`, {
        body: JSON.stringify({ op: "digestWindows", startNs: "-9223372036854775808", endNs: "9223372036854775807", windowNs: "3600000000000" }),
        headers: { "Content-Type": "application/json" },
      });
      assert.equal(a.status, 200, a.text);
      return a.text;
    }),
  );
  return ds.every((d) => d === ds[0]);
}

test("SIGKILL a node during sustained writes and restart it: it catches up (by points after flushes); again with its data dir wiped", { timeout: 420_000 }, async (t) => {
  pg = await startPlayground({ nodeArgs: ["--head-samples-max", "3000"] });
  const nodes = pg.nodes();
  const urls = nodes.map((n) => n.http);
  await waitReplicationReady(urls);
  const victim = nodes[2]!;
  const seq = { next: 0 };
  let live = urls;
  const writers = startWriters(() => live, 3, seq);
  try {
    await until("30 batches acked", 60_000, async () => writers.acked() >= 30);

    t.diagnostic(`phase: SIGKILL ${victim.id} while writing (${writers.acked()} batches acked)`);
    const stop = cli("cluster", "stop-node", victim.id, "--signal", "KILL", "--dir", pg.dir);
    assert.equal(stop.status, 0, stop.stderr);
    live = urls.filter((u) => u !== victim.http);
    const atKill = writers.acked();
    // 60 batches = 6000 samples while it is away: the others flush what it missed into blocks at least once.
    await until("60 more batches acked without the victim", 120_000, async () => writers.acked() >= atKill + 60);

    t.diagnostic(`phase: restart ${victim.id} (${writers.acked()} batches acked)`);
    const start = cli("cluster", "start-node", victim.id, "--dir", pg.dir);
    assert.equal(start.status, 0, start.stderr + start.stdout);
    live = urls;
    const atRestart = writers.acked();
    await until("30 more batches acked with the victim back", 120_000, async () => writers.acked() >= atRestart + 30);
  } finally {
    await writers.stop();
  }
  t.diagnostic(`writers stopped: ${acked.size} points acked in ${seq.next} batches`);

  let last = { ok: false, missing: -1, wrong: 0, total: 0 };
  await until("the restarted node holds every acked point", 90_000, async () => (last = await holdsEveryAcked(victim.http)).ok);
  for (const u of urls) assert.ok((await holdsEveryAcked(u)).ok, `${u} lacks acked points`);
  await until("every node's digests agree", 60_000, () => digestsAgree(urls));
  // `cluster status` shows the replica's lag: 0 batches behind once it caught up.
  await until("cluster status shows every replica 0 batches behind", 30_000, async () => {
    const st = cli("cluster", "status", "--dir", pg!.dir, "--json");
    assert.equal(st.status, 0, st.stderr);
    return (JSON.parse(st.stdout) as { nodes: { lag: string | null }[] }).nodes.every((n) => n.lag === "0");
  });
  const repaired = await metric(victim.http, "hqts_repaired_points_total");
  t.diagnostic(`restarted node: ${last.total} points; ${repaired} copied by point sync / read repair`);
  assert.ok(repaired > 0, "the restarted node copied flushed points from its peers (point sync ran)");

  // ---- again, with the victim's data dir wiped ----
  t.diagnostic("phase: SIGKILL and wipe the victim's data dir, during writes");
  const writers2 = startWriters(() => live, 3, seq);
  try {
    await until("10 batches acked", 60_000, async () => writers2.acked() >= 10);
    const stop = cli("cluster", "stop-node", victim.id, "--signal", "KILL", "--dir", pg.dir);
    assert.equal(stop.status, 0, stop.stderr);
    live = urls.filter((u) => u !== victim.http);
    await rm(victim.dataDir, { recursive: true, force: true });
    await rm(victim.walDir, { recursive: true, force: true });
    const atWipe = writers2.acked();
    await until("30 batches acked without the victim", 120_000, async () => writers2.acked() >= atWipe + 30);
    const start = cli("cluster", "start-node", victim.id, "--dir", pg.dir);
    assert.equal(start.status, 0, start.stderr + start.stdout);
    live = urls;
    const atRestart = writers2.acked();
    await until("20 more batches acked with the rebuilt node back", 120_000, async () => writers2.acked() >= atRestart + 20);
  } finally {
    await writers2.stop();
  }
  await waitReplicationReady([victim.http], 90_000);
  await until("the rebuilt node holds every acked point", 90_000, async () => (last = await holdsEveryAcked(victim.http)).ok);
  for (const u of urls) assert.ok((await holdsEveryAcked(u)).ok, `${u} lacks acked points`);
  await until("every node's digests agree after the rebuild", 60_000, () => digestsAgree(urls));
  const rebuilt = await metric(victim.http, "hqts_repaired_points_total");
  t.diagnostic(`rebuilt node: ${last.total} points, ${rebuilt} of them copied by point sync`);
  assert.ok(rebuilt > 0, "the wiped node rebuilt flushed data by point sync");
  // The rebuild is recorded in the node's repair log (a new log: the old one was wiped with the data dir).
  await until("the rebuild is recorded", 30_000, async () => {
    const a = await http(`${victim.http}/hq/v1/repairs`);
    const rs = (a.json() as { data: { kind: string; outcome: string; points: { stored: number }; fromPeer: string | null }[] }).data;
    return rs.some((r) => r.kind === "data-loss" && r.outcome === "repaired" && r.points.stored > 0 && r.fromPeer !== null);
  });
});
