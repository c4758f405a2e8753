// Quorum replication on real processes: a 3-node playground (real etcd, real
// nodes), quorum writes through any node, exactly-once under replays through
// different nodes, failover in a retry when the node beside etcd's leader is
// SIGKILLed mid-write, and no ack below a majority.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { alive, cli, healthy, startPlayground, waitReplicationReady, type Playground } from "../helpers/playground.js";

let pg: Playground | null = null;
after(async () => {
  await pg?.cleanup();
});

interface Receipt {
  batchId: string;
  sha256: string;
  replicas: string[];
  duplicate: boolean;
}

const line = (name: string, t: bigint, v: number): string => `${name} value=${v} ${t}`;

async function write(url: string, body: string, key: string): Promise<{ status: number; receipt: Receipt | null; text: string }> {
  const a = await http(`${url}/api/v2/write?precision=ns`, { body, headers: { "Idempotency-Key": key, Accept: "application/json" } });
  return { status: a.status, receipt: a.status === 200 ? (a.json() as Receipt) : null, text: a.text };
}

/** Polls until every node answers the point, with a deadline (replicas commit as the COMMIT reaches them). */
async function pointsOn(urls: string[], metric: string, expected: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const counts = await Promise.all(urls.map(async (u) => (await exportSeries(u, metric)).reduce((a, l) => a + l.values.length, 0)));
    if (counts.every((c) => c === expected)) return;
    assert.ok(Date.now() < deadline, `${metric}: expected ${expected} points on every node, got ${counts.join(", ")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("quorum writes, exactly-once replays, failover in a retry, no ack below a majority", { timeout: 180_000 }, async (t) => {
  pg = await startPlayground();
  const nodes = pg.nodes();
  const urls = nodes.map((n) => n.http);

  // Fresh replicas rebuild from their peers before they vote; until then a write is (rightly) a retryable 503.
  await waitReplicationReady(urls);
  t.diagnostic("replication ready on every node");

  // A write through one node is acked after a majority made it durable, and every replica ends up with it.
  const first = await write(urls[0]!, line("q_first", 1_700_000_000_000_000_001n, 1.5), "first");
  assert.equal(first.status, 200, first.text);
  assert.ok(first.receipt!.replicas.length >= 2, `acked by a majority: ${JSON.stringify(first.receipt)}`);
  await pointsOn(urls, "q_first_value", 1);

  t.diagnostic("phase: replay");
  // The same write 100 times, sequentially and concurrently, through different nodes: one stored point, one batch id.
  const body = line("q_replay", 1_700_000_000_000_000_000n, 42);
  const receipts: Receipt[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await write(urls[i % 3]!, body, "replayed");
    assert.equal(r.status, 200, r.text);
    receipts.push(r.receipt!);
  }
  const concurrent = await Promise.all(Array.from({ length: 50 }, (_, i) => write(urls[i % 3]!, body, "replayed")));
  for (const r of concurrent) {
    assert.equal(r.status, 200, r.text);
    receipts.push(r.receipt!);
  }
  assert.equal(receipts.length, 100);
  assert.equal(new Set(receipts.map((r) => `${r.batchId}/${r.sha256}`)).size, 1);
  await pointsOn(urls, "q_replay_value", 1);

  t.diagnostic("phase: race");
  // Two writers, different values for the same point, at once: exactly one value is acked and stored everywhere.
  const [a, b] = await Promise.all([
    write(urls[0]!, line("q_race", 1_700_000_000_000_000_000n, 1), "race-a"),
    write(urls[1]!, line("q_race", 1_700_000_000_000_000_000n, 2), "race-b"),
  ]);
  const oks = [a, b].filter((r) => r.status === 200);
  assert.ok(oks.length <= 1, "never both acked");
  for (const r of [a, b]) if (r.status !== 200) assert.ok(r.status === 409 || r.status === 503, `the loser gets 409 (or a retryable 503): ${r.status} ${r.text}`);
  if (oks.length === 1) {
    await pointsOn(urls, "q_race_value", 1);
    const v = (await exportSeries(urls[2]!, "q_race_value"))[0]!.values[0];
    assert.equal(v, oks[0] === a ? 1 : 2);
  }

  t.diagnostic("phase: kill-leader");
  // Kill the node beside etcd's leader, mid-write: the writer's retry through another node succeeds within 2 s.
  const st = cli("cluster", "status", "--dir", pg.dir, "--json");
  assert.equal(st.status, 0, st.stderr);
  const leader = (JSON.parse(st.stdout) as { etcdLeader: string }).etcdLeader;
  const victim = nodes.find((n) => n.etcd.name === leader)!;
  const others = urls.filter((u) => u !== victim.http);
  let seq = 0;
  let killedAtMs = 0;
  let recoveredAfterMs = -1;
  const nonRetryable: string[] = [];
  const writerDeadline = Date.now() + 60_000;
  const writer = (async () => {
    let target = victim.http;
    for (;;) {
      assert.ok(Date.now() < writerDeadline, `the writer made no progress: seq ${seq}, killed ${killedAtMs > 0}, non-retryable ${nonRetryable.join("; ")}`);
      const key = `stream-${seq}`;
      const bodyN = line("q_stream", 1_700_000_100_000_000_000n + BigInt(seq), seq);
      let ok = false;
      try {
        const r = await write(target, bodyN, key);
        if (r.status === 200) ok = true;
        else if (r.status < 500 && r.status !== 429) {
          nonRetryable.push(`${r.status} ${r.text.slice(0, 300)}`);
          return;
        }
      } catch {
        // a dropped connection: the outcome is unknown, the retry with the same key is safe
      }
      if (ok) {
        if (killedAtMs > 0) {
          recoveredAfterMs = Date.now() - killedAtMs;
          return;
        }
        seq++;
        continue;
      }
      target = others[seq % others.length]!; // retry the same key through another node
    }
  })();
  while (seq < 20) {
    assert.ok(Date.now() < writerDeadline, `only ${seq} writes through ${victim.id} before the kill`);
    await new Promise((r) => setTimeout(r, 10));
  }
  t.diagnostic(`killing ${victim.id} (beside ${leader}) after ${seq} writes`);
  killedAtMs = Date.now();
  const kill = cli("cluster", "stop-node", victim.id, "--signal", "KILL", "--dir", pg.dir);
  assert.equal(kill.status, 0, kill.stderr);
  t.diagnostic("killed; waiting for the writer's retry");
  await writer;
  t.diagnostic(`recovered ${recoveredAfterMs} ms after the kill`);
  assert.deepEqual(nonRetryable, [], "the writer saw only retryable errors");
  assert.ok(recoveredAfterMs >= 0 && recoveredAfterMs < 2000, `retry succeeded ${recoveredAfterMs} ms after the kill`);
  const streamed = seq + 1;
  await pointsOn(others, "q_stream_value", streamed);

  t.diagnostic("phase: minority");
  // With 2 of 3 nodes dead a write fails with 503 (no ack below a majority), and succeeds once a second node is back.
  const second = nodes.find((n) => n.http === others[1])!;
  assert.equal(cli("cluster", "stop-node", second.id, "--signal", "KILL", "--dir", pg.dir).status, 0);
  const alone = others[0]!;
  const refused = await write(alone, line("q_minority", 1_700_000_200_000_000_000n, 1), "minority");
  assert.equal(refused.status, 503, refused.text);
  assert.equal(cli("cluster", "start-node", victim.id, "--dir", pg.dir).status, 0);
  assert.ok(await healthy(victim.http));
  const deadline = Date.now() + 20_000;
  let accepted = await write(alone, line("q_minority", 1_700_000_200_000_000_000n, 1), "minority");
  while (accepted.status !== 200 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    accepted = await write(alone, line("q_minority", 1_700_000_200_000_000_000n, 1), "minority");
  }
  assert.equal(accepted.status, 200, accepted.text);

  assert.equal(await pg.stop(), 0);
  for (const n of pg.nodes()) assert.ok(!alive(n.pid) && !alive(n.etcd.pid));
});
