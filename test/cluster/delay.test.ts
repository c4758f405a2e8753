// `hqts cluster up --fault-proxy` on real processes: every node-to-node and
// etcd peer connection goes through a link proxy; `hqts cluster fault --delay
// 500ms` on every link (both directions) slows each quorum round trip to at
// least a second, writes still commit, and after `heal` every acked point is
// on every node.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { cli, startPlayground, type Playground } from "../helpers/playground.js";

let pg: Playground | null = null;
after(async () => {
  await pg?.cleanup();
});

const BASE_NS = 1_700_000_000_000_000_000n;
const POINTS_PER_BATCH = 5;

interface Batch {
  phase: string;
  seq: number;
  timestamps: string[];
}

/** Batch `seq` of `phase`: POINTS_PER_BATCH points of series delay_w_value{phase=...}, distinct timestamps. */
function batchBody(phase: string, seq: number): { body: string; timestamps: string[] } {
  const timestamps: string[] = [];
  const lines: string[] = [];
  for (let k = 0; k < POINTS_PER_BATCH; k++) {
    const ts = (BASE_NS + BigInt(seq * POINTS_PER_BATCH + k) * 1_000_000n).toString();
    timestamps.push(ts);
    lines.push(`delay_w,phase=${phase} value=${seq * 10 + k} ${ts}`);
  }
  return { body: lines.join("\n"), timestamps };
}

/** Writes one batch through urls[start], moving to the next node and retrying with the same key on 503 or a connection error. */
async function writeBatch(urls: readonly string[], start: number, phase: string, seq: number, deadlineMs = 60_000): Promise<{ batch: Batch; latencyMs: number; attempts: number }> {
  const { body, timestamps } = batchBody(phase, seq);
  const key = `delay-${phase}-${seq}`;
  const t0 = performance.now();
  const until = Date.now() + deadlineMs;
  let last = "";
  for (let attempt = 0; ; attempt++) {
    const url = urls[(start + attempt) % urls.length]!;
    try {
      const a = await http(`${url}/api/v2/write?precision=ns`, { body, headers: { "Idempotency-Key": key, Accept: "application/json" } });
      if (a.status === 200 || a.status === 204) return { batch: { phase, seq, timestamps }, latencyMs: performance.now() - t0, attempts: attempt + 1 };
      assert.ok(a.status === 503 || a.status === 429, `batch ${key} via ${url}: HTTP ${a.status} ${a.text}`);
      last = `HTTP ${a.status} ${a.text.slice(0, 200)}`;
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      last = (e as Error).message;
    }
    assert.ok(Date.now() < until, `batch ${key} not acked within ${deadlineMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Polls every node (consistency=local: one replica alone) until it holds every acked point. */
async function allOnEveryNode(urls: readonly string[], acked: readonly Batch[], timeoutMs = 30_000): Promise<void> {
  const want = new Map<string, Set<string>>();
  for (const b of acked) {
    const s = want.get(b.phase) ?? new Set<string>();
    for (const ts of b.timestamps) s.add(ts);
    want.set(b.phase, s);
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const missing = await Promise.all(
      urls.map(async (u) => {
        let n = 0;
        for (const [phase, ts] of want) {
          const lines = await exportSeries(u, `delay_w_value{phase="${phase}"}`, { consistency: "local" });
          const have = new Set(lines.flatMap((l) => l.timestamps_ns));
          for (const t of ts) if (!have.has(t)) n++;
        }
        return n;
      }),
    );
    if (missing.every((n) => n === 0)) return;
    assert.ok(Date.now() < deadline, `acked points missing per node after ${timeoutMs} ms: ${missing.join(", ")}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

test("--fault-proxy: 500 ms on every link, writes commit; after heal every acked point is on every node", { timeout: 300_000 }, async (t) => {
  pg = await startPlayground({ faultProxy: true });
  const nodes = pg.nodes();
  const urls = nodes.map((n) => n.http);
  const file = JSON.parse(readFileSync(join(pg.dir, "cluster.json"), "utf8")) as {
    faultProxy: { control: string; links: Record<string, { listen: string; target: string }> } | null;
    nodes: { id: string; http: string; advertise?: string; peerRoutes?: Record<string, string>; etcd: { peerUrl: string; advertisePeerUrl?: string } }[];
  };
  // Each node reaches each peer through its own link proxy (one per ordered pair), each etcd member through the
  // proxy in front of it; clients keep the direct ports.
  assert.ok(file.faultProxy !== null, "cluster.json records faultProxy");
  const pairs = file.nodes.flatMap((a) => file.nodes.filter((b) => b.id !== a.id).map((b) => `${a.id}->${b.id}`));
  assert.equal(pairs.length, 6);
  assert.deepEqual(Object.keys(file.faultProxy.links).sort(), [...file.nodes.map((n) => `*->etcd-${n.id}`), ...pairs].sort());
  for (const n of file.nodes) {
    assert.equal(n.advertise ?? n.http, n.http, "nodes advertise their direct URL");
    for (const m of file.nodes.filter((x) => x.id !== n.id)) {
      const route: { listen: string; target: string } = file.faultProxy.links[`${n.id}->${m.id}`]!;
      assert.equal(n.peerRoutes?.[m.id], `http://${route.listen}`, `${n.id} reaches ${m.id} through its own proxy`);
      assert.equal(route.target, m.http.replace("http://", ""));
    }
    assert.equal(`http://${file.faultProxy.links[`*->etcd-${n.id}`]!.listen}`, n.etcd.advertisePeerUrl);
    assert.equal(file.faultProxy.links[`*->etcd-${n.id}`]!.target, n.etcd.peerUrl.replace("http://", ""));
  }

  // Normal operation first.
  const acked: Batch[] = [];
  const normal: number[] = [];
  for (let seq = 0; seq < 5; seq++) {
    const r = await writeBatch(urls, seq, "normal", seq);
    acked.push(r.batch);
    normal.push(r.latencyMs);
  }
  await allOnEveryNode(urls, acked);
  // Writes went through every node as gateway: node-to-node traffic really flows through every pair's proxy.
  const links = ((await (await fetch(`${file.faultProxy.control}/links`)).json()) as { links: { name: string; counters: { bytesUp: number; bytesDown: number } }[] }).links;
  for (const p of pairs) {
    const l = links.find((x) => x.name === p);
    assert.ok(l !== undefined && l.counters.bytesUp > 0 && l.counters.bytesDown > 0, `link ${p} carried traffic both ways: ${JSON.stringify(l?.counters)}`);
  }
  t.diagnostic(`no fault: write latency ms ${normal.map((x) => x.toFixed(0)).join(", ")}`);

  // 500 ms each way on every link: node-to-node and etcd peers.
  const f = cli("cluster", "fault", "--dir", pg.dir, "--delay", "500ms");
  assert.equal(f.status, 0, f.stderr);
  assert.match(f.stdout, /n2->n1\s.*delay 500ms\s+delay 500ms/);
  assert.match(f.stdout, /\*->etcd-n3\s.*delay 500ms\s+delay 500ms/);
  const st = cli("cluster", "status", "--dir", pg.dir);
  assert.equal(st.status, 0, st.stderr);
  assert.match(st.stdout, /^faults: .*\*->etcd-n1 delay 500ms.*n2->n3 delay 500ms/m);

  const delayed: number[] = [];
  let retries = 0;
  for (let seq = 0; seq < 20; seq++) {
    const r = await writeBatch(urls, seq, "delayed", seq);
    acked.push(r.batch);
    delayed.push(r.latencyMs);
    retries += r.attempts - 1;
  }
  const sorted = [...delayed].sort((a, b) => a - b);
  t.diagnostic(`500 ms each way: 20 writes acked, retries ${retries}; latency ms p50 ${pct(sorted, 0.5).toFixed(0)}, max ${sorted.at(-1)!.toFixed(0)}, min ${sorted[0]!.toFixed(0)}`);
  t.diagnostic(`latencies ms: ${delayed.map((x) => x.toFixed(0)).join(", ")}`);
  // A quorum round trip through a link with 500 ms each way takes a second at least: the faults applied.
  assert.ok(sorted.at(-1)! >= 1000, `no write took 1 s or more under 500 ms delay each way: ${delayed.join(", ")}`);

  const h = cli("cluster", "heal", "--dir", pg.dir);
  assert.equal(h.status, 0, h.stderr);
  assert.doesNotMatch(h.stdout, /delay/);
  const t0 = Date.now();
  await allOnEveryNode(urls, acked);
  t.diagnostic(`after heal: every acked point (${acked.length} batches) on every node in ${Date.now() - t0} ms`);

  const code = await pg.stop();
  assert.equal(code, 0, pg.output());
});
