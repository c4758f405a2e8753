// Quorum writes on real processes (a 3-node playground: real etcd, real nodes):
// no ack below a majority, and an idempotent retry that succeeds exactly once
// when a majority is back; and writes that do not need etcd at all.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { exportSeries, http, type ReceiptJson } from "../helpers/http.js";
import { alive, cli, healthy, startPlayground, type Playground } from "../helpers/playground.js";

const playgrounds: Playground[] = [];
after(async () => {
  await Promise.all(playgrounds.map((pg) => pg.cleanup()));
});

async function start(): Promise<Playground> {
  const pg = await startPlayground();
  playgrounds.push(pg);
  return pg;
}

interface WriteAnswer {
  status: number;
  headers: Headers;
  text: string;
  receipt: ReceiptJson | null;
}

const line = (name: string, t: bigint, v: number): string => `${name} value=${v} ${t}`;

async function write(url: string, body: string, key: string): Promise<WriteAnswer> {
  const a = await http(`${url}/api/v2/write?precision=ns`, { body, headers: { "Idempotency-Key": key, Accept: "application/json" } });
  return { status: a.status, headers: a.headers, text: a.text, receipt: a.status === 200 ? (a.json() as ReceiptJson) : null };
}

/** Polls fn until it returns a value, with a deadline; the message names what was awaited and the last state. */
async function until<T>(what: string, deadlineMs: number, fn: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown = "no attempt yet";
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
      last = "not yet";
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}: ${last instanceof Error ? last.message : String(last)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The (timestamp ns → value) pairs a node answers for a metric. */
async function pointsOf(url: string, metric: string, extra: Record<string, string> = {}): Promise<Map<string, number | string>> {
  const out = new Map<string, number | string>();
  for (const l of await exportSeries(url, metric, extra))
    l.timestamps_ns.forEach((t, i) => {
      assert.ok(!out.has(t), `${url} answers ${metric} @ ${t} twice`);
      out.set(t, l.values[i]!);
    });
  return out;
}

/** Polls until every node answers exactly `expected` for the metric (a replica may learn a commit a moment later). */
async function readableEverywhere(urls: readonly string[], metric: string, expected: ReadonlyMap<string, number>): Promise<void> {
  const want = JSON.stringify([...expected].sort());
  await until(`${metric}: ${expected.size} points on ${urls.join(", ")}`, 15_000, async () => {
    const got = await Promise.all(urls.map(async (u) => JSON.stringify([...(await pointsOf(u, metric))].sort())));
    if (got.every((g) => g === want)) return true;
    throw new Error(`expected ${want} everywhere, got ${got.join(" | ")}`);
  });
}

test("2 of 3 nodes down: a write is refused with a retryable 503 and stored nowhere; with a majority back the same idempotent write succeeds, stored exactly once", { timeout: 180_000 }, async (t) => {
  const pg = await start();
  const [n1, n2, n3] = pg.nodes();
  assert.ok(n1 !== undefined && n2 !== undefined && n3 !== undefined);

  // `cluster up` returned only once every node's replication runs: a write right away is acked by a majority.
  const warm = await write(n1.http, line("quorum_warm", 1_700_000_000_000_000_000n, 1), "warm");
  assert.equal(warm.status, 200, `first write right after cluster up: ${warm.text}`);
  assert.ok(warm.receipt!.replicas.length >= 2, JSON.stringify(warm.receipt));

  // SIGKILL n2 and n3 (with their etcd members: etcd loses its quorum too; writes do not need it).
  for (const n of [n2, n3]) {
    const r = cli("cluster", "stop-node", n.id, "--signal", "KILL", "--dir", pg.dir);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.ok(!alive(n.pid) && !alive(n.etcd.pid), `${n.id} and its etcd member are gone`);
  }

  const metric = "quorum_minority";
  const ts = 1_700_000_100_000_000_000n;
  const body = line(metric, ts, 7);
  const key = "minority-write";
  const t0 = Date.now();
  const refused = await write(n1.http, body, key);
  t.diagnostic(`refused in ${Date.now() - t0} ms: ${refused.status} ${refused.text}`);
  assert.equal(refused.status, 503, refused.text);
  assert.match(refused.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/, "Retry-After: a positive number of seconds");
  const err = JSON.parse(refused.text) as { status: string; code: string; errorType: string; retryable: boolean; error: string };
  assert.equal(err.status, "error");
  assert.equal(err.code, "unavailable");
  assert.equal(err.errorType, "unavailable");
  assert.equal(err.retryable, true);
  assert.equal(typeof err.error, "string");
  // Not acked, so not readable: a read through n1 alone is refused (a complete read needs a majority too), or, asked
  // for what n1 alone holds (partial_response=true), does not show the point (its prepared-but-undecided copy is never
  // answered).
  const plain = await http(`${n1.http}/api/v1/export?${new URLSearchParams({ "match[]": `${metric}_value` }).toString()}`);
  assert.ok(plain.status === 503 || (plain.status === 200 && plain.text.trim() === ""), `read of the refused write: ${plain.status} ${plain.text}`);
  assert.equal((await pointsOf(n1.http, `${metric}_value`, { partial_response: "true" })).size, 0, "the refused write is not readable, even partially");

  // n2 (and its etcd member) back: start-node returns once its replication runs.
  const t1 = Date.now();
  const started = cli("cluster", "start-node", n2.id, "--dir", pg.dir);
  assert.equal(started.status, 0, started.stderr + started.stdout);
  t.diagnostic(`start-node ${n2.id} took ${Date.now() - t1} ms`);
  assert.match(started.stdout, /replication running/);
  assert.ok(await healthy(n2.http));

  // The client's retry: the same body, the same Idempotency-Key, through the same node, until acked.
  let attempts = 0;
  const t2 = Date.now();
  const accepted = await until("the retried write to be acked", 30_000, async () => {
    attempts++;
    const r = await write(n1.http, body, key);
    if (r.status === 200) return r;
    assert.ok(r.status === 503 || r.status === 429, `only retryable refusals while the majority comes back: ${r.status} ${r.text}`);
    return undefined;
  });
  t.diagnostic(`retry acked after ${attempts} attempt(s), ${Date.now() - t2} ms after start-node returned`);
  assert.ok(accepted.receipt!.replicas.length >= 2, `acked by a majority: ${JSON.stringify(accepted.receipt)}`);
  // The one sample is accounted for once. (Not `accepted === 1`: the refused attempt left a prepared copy on n1, so
  // the receipt of this first ack counts the sample as a duplicate and says duplicate: true.)
  assert.equal(accepted.receipt!.samples, 1, JSON.stringify(accepted.receipt));
  assert.equal(accepted.receipt!.accepted + accepted.receipt!.duplicates, 1, JSON.stringify(accepted.receipt));
  t.diagnostic(`acked receipt: ${JSON.stringify(accepted.receipt)}`);

  // Stored exactly once, readable through both running nodes.
  await readableEverywhere([n1.http, n2.http], `${metric}_value`, new Map([[ts.toString(), 7]]));
  // One more replay through the other node: the same batch, nothing stored twice.
  const replay = await write(n2.http, body, key);
  assert.equal(replay.status, 200, replay.text);
  assert.equal(replay.receipt!.batchId, accepted.receipt!.batchId);
  assert.equal(replay.receipt!.sha256, accepted.receipt!.sha256);
  await readableEverywhere([n1.http, n2.http], `${metric}_value`, new Map([[ts.toString(), 7]]));
});

test("etcd entirely down: writes through every node are acked by a majority and readable from every node", { timeout: 180_000 }, async (t) => {
  const pg = await start();
  const nodes = pg.nodes();
  const urls = nodes.map((n) => n.http);

  // SIGKILL every etcd member (by the pids in cluster.json) and wait until they are gone.
  const etcdPids = nodes.map((n) => n.etcd.pid);
  for (const p of etcdPids) {
    assert.ok(alive(p), `etcd pid ${p} runs`);
    process.kill(p!, "SIGKILL");
  }
  await until("every etcd member to be gone", 10_000, async () => (etcdPids.every((p) => !alive(p)) ? true : undefined), 50);
  for (const n of nodes) assert.ok(!(await healthy(n.etcd.clientUrl)), `${n.etcd.name} does not answer`);
  // Every node has noticed (so the writes below run with etcd known to be down, not on a stale "reachable").
  await until("every node to see etcd unreachable", 15_000, async () => {
    const views = await Promise.all(urls.map(async (u) => (await http(`${u}/hq/v1/cluster`)).json() as { etcd: { reachable: boolean } }));
    return views.every((v) => !v.etcd.reachable) ? true : undefined;
  });
  t.diagnostic("etcd down, and every node knows it");

  const metric = "quorum_no_etcd";
  const expected = new Map<string, number>();
  let seq = 0;
  for (let round = 0; round < 3; round++)
    for (const [i, n] of nodes.entries()) {
      const ts = 1_700_000_200_000_000_000n + BigInt(seq);
      const value = 100 * (i + 1) + round;
      const r = await write(n.http, line(metric, ts, value), `no-etcd-${seq}`);
      assert.equal(r.status, 200, `write ${seq} through ${n.id}: ${r.text}`);
      assert.ok(r.receipt!.replicas.length >= 2, `write ${seq} through ${n.id} acked by a majority: ${JSON.stringify(r.receipt)}`);
      assert.equal(r.receipt!.accepted, 1, JSON.stringify(r.receipt));
      expected.set(ts.toString(), value);
      seq++;
    }
  await readableEverywhere(urls, `${metric}_value`, expected);
  t.diagnostic(`${seq} writes through ${nodes.length} nodes with etcd down, all readable everywhere`);
});
