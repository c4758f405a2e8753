// The durability checker against real standalone nodes: a clean run passes;
// loss, wrong values, extras and duplicates are detected (the checker can
// fail); an unknown-outcome batch's points are allowed extras; the writer
// fails over to a live endpoint and counts it.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { checkDurability, waitConverged } from "../../src/chaos/checker.js";
import { LoggingWriter, batchBody, batchKey, batchPoints, type WriterLedger } from "../../src/chaos/writer.js";
import { http } from "../helpers/http.js";
import { freePort, startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";

const SERIES = 3;
const POINTS = 4;
const PER_BATCH = SERIES * POINTS;

const procs: NodeProc[] = [];
async function node(): Promise<NodeProc> {
  const p = await startNode();
  procs.push(p);
  return p;
}

after(async () => {
  // Every process this file started, by pid (NodeProc.stop signals its own pid).
  await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
  await stopAll();
});

async function writeAll(w: LoggingWriter): Promise<WriterLedger> {
  w.start();
  await w.finished;
  return w.stop();
}

async function post(url: string, body: string, key: string): Promise<void> {
  const a = await http(`${url}/api/v2/write?precision=ns`, { body, headers: { "Idempotency-Key": key } });
  assert.ok(a.status === 204 || a.status === 200, `write answered ${a.status}: ${a.text}`);
}

describe("durability checker on real nodes", () => {
  let a: NodeProc;
  let ledgers: WriterLedger[];

  before(async () => {
    a = await node();
    const w1 = new LoggingWriter({ endpoints: [a.url], writer: "w1", seed: 7, seriesPerBatch: SERIES, pointsPerSeries: POINTS, batchesMax: 15 });
    const w2 = new LoggingWriter({ endpoints: [a.url, `${a.url}/`], writer: "w2", seed: 7, seriesPerBatch: SERIES, pointsPerSeries: POINTS, batchesMax: 10, rotateEveryBatch: true });
    ledgers = await Promise.all([writeAll(w1), writeAll(w2)]);
    const s1 = w1.stats();
    assert.equal(s1.ackedBatches, 15);
    assert.equal(s1.ackedPoints, 15 * PER_BATCH);
    assert.equal(s1.unknownBatches + s1.refusedBatches + s1.retries, 0);
    assert.equal(w2.stats().ackedBatches, 10);
    for (const b of ledgers[0]!.batches) assert.equal(b.receipt?.accepted, PER_BATCH, JSON.stringify(b));
  });

  it("a clean run: nothing lost, duplicated or wrong, no extras", async () => {
    const r = await checkDurability([a.url], ledgers);
    assert.equal(r.ok, true, r.problems.join("\n"));
    const n = r.nodes[0]!;
    assert.equal(n.error, undefined);
    assert.equal(n.ackedExpected, 25 * PER_BATCH);
    assert.equal(n.ackedPresent, 25 * PER_BATCH);
    assert.equal(n.points, 25 * PER_BATCH);
    assert.equal(n.series, 2 * SERIES);
    assert.deepEqual([n.lost, n.duplicates, n.wrongValues, n.extrasAllowed, n.extrasNotAllowed], [0, 0, 0, 0, 0]);
    assert.deepEqual(r.ledger, { writers: 2, batches: 25, ackedBatches: 25, ackedPoints: 25 * PER_BATCH, unknownBatches: 0, refusedBatches: 0 });
  });

  it("fails when a node lacks the acked points: every one lost there", async () => {
    const b = await node();
    const r = await checkDurability([a.url, b.url], ledgers);
    assert.equal(r.ok, false);
    assert.equal(r.nodes[0]!.lost, 0);
    assert.equal(r.nodes[1]!.lost, 25 * PER_BATCH);
    assert.equal(r.nodes[1]!.examples.lost.length, 10);
    assert.match(r.problems.join("\n"), new RegExp(`${b.url}: ${25 * PER_BATCH} of ${25 * PER_BATCH} acked points lost`));

    // waitConverged: a converged node at once; the empty one times out, then converges once it gets the data.
    const ok = await waitConverged([a.url], ledgers, 5_000);
    assert.equal(ok.converged, true);
    assert.equal(ok.rounds, 1);
    const no = await waitConverged([a.url, b.url], ledgers, { timeoutMs: 300, pollMs: 50 });
    assert.equal(no.converged, false);
    assert.ok(no.rounds >= 2, `rounds ${no.rounds}`);
    const pending = waitConverged([a.url, b.url], ledgers, { timeoutMs: 20_000, pollMs: 50 });
    for (const l of ledgers) for (const batch of l.batches) await post(b.url, batchBody(l, batch.seq), batchKey(l, batch.seq));
    const yes = await pending;
    assert.equal(yes.converged, true, yes.last.problems.join("\n"));
    assert.equal(yes.last.ok, true);
  });

  it("detects wrong values and points never acked", async () => {
    const c = await node();
    const l = ledgers[0]!;
    // Batch 0 with other values; batch 99 was never written by the writer.
    await post(c.url, batchBody(l, 0, (p) => p.value + 0.5), "wrong-0");
    await post(c.url, batchBody(l, 99), "never-99");
    const r = await checkDurability([c.url], l);
    const n = r.nodes[0]!;
    assert.equal(r.ok, false);
    assert.equal(n.wrongValues, PER_BATCH);
    assert.equal(n.extrasNotAllowed, PER_BATCH);
    assert.equal(n.extrasAllowed, 0);
    assert.equal(n.lost, 14 * PER_BATCH);
    assert.equal(n.ackedPresent, 0);
    const wrong = n.examples.wrongValues[0]!;
    assert.equal(wrong.got, (wrong.expected as number) + 0.5);
    assert.equal(n.examples.extrasNotAllowed[0]!.outcome, "never-written");
    assert.equal(n.examples.extrasNotAllowed[0]!.seq, 99);
    // A writer no ledger names: its points are extras unless told to ignore them.
    const foreign = await checkDurability([c.url], ledgers[1]!);
    assert.equal(foreign.nodes[0]!.extrasNotAllowed, 2 * PER_BATCH);
    const ignored = await checkDurability([c.url], ledgers[1]!, { ignoreForeignWriters: true });
    assert.equal(ignored.nodes[0]!.extrasNotAllowed, 0);
    assert.equal(ignored.nodes[0]!.lost, 10 * PER_BATCH);
  });

  it("an unknown-outcome batch's points are allowed extras; failover is counted", async () => {
    const d = await node();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const w = new LoggingWriter({
      endpoints: [dead, d.url],
      writer: "u",
      seed: 3,
      seriesPerBatch: SERIES,
      pointsPerSeries: POINTS,
      batchesMax: 6,
      batchDeadlineMs: 1_000,
      // Batch 2 reaches the node every time, but its answers are lost.
      dropResponse: (seq) => seq === 2,
    });
    const l = await writeAll(w);
    const s = w.stats();
    assert.equal(s.batches, 6);
    assert.equal(s.ackedBatches, 5);
    assert.equal(s.unknownBatches, 1);
    assert.equal(s.refusedBatches, 0);
    assert.ok(s.retries >= 2, `retries ${s.retries}`);
    assert.ok(s.longestFailoverMs > 0, `failover ${s.longestFailoverMs}`);
    assert.equal(s.failing, false);
    const b2 = l.batches[2]!;
    assert.equal(b2.outcome, "unknown");
    assert.equal(b2.maybeApplied, true);
    assert.ok(b2.attempts >= 2);
    // Batch 0 first went to the dead endpoint (refused: never sent), then to the node.
    assert.equal(l.batches[0]!.outcome, "acked");
    assert.equal(l.batches[0]!.attempts, 2);
    assert.equal(l.batches[0]!.ackedBy, d.url);

    const r = await checkDurability([d.url], l);
    assert.equal(r.ok, true, r.problems.join("\n"));
    const n = r.nodes[0]!;
    assert.equal(n.extrasAllowed, PER_BATCH);
    assert.equal(n.extrasNotAllowed, 0);
    assert.equal(n.lost, 0);
    assert.equal(r.ledger.unknownBatches, 1);

    // The same points with the batch recorded as refused (without a possible apply) are not allowed.
    const refused: WriterLedger = { ...l, batches: l.batches.map((b) => (b.seq === 2 ? { ...b, outcome: "refused", maybeApplied: false, status: 400 } : b)) };
    const r2 = await checkDurability([d.url], refused);
    assert.equal(r2.ok, false);
    assert.equal(r2.nodes[0]!.extrasNotAllowed, PER_BATCH);
    assert.match(r2.problems.join("\n"), /1 batches refused/);
  });
});

describe("durability checker on a scripted export", () => {
  let srv: Server;
  let url = "";
  let answer = "";
  before(async () => {
    srv = createServer((req, res) => {
      if (req.url?.startsWith("/api/v1/export") === true && req.url.includes("consistency=local")) {
        res.writeHead(200, { "Content-Type": "application/stream+json" });
        res.end(answer);
      } else {
        res.writeHead(404);
        res.end("no");
      }
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const addr = srv.address();
    url = `http://127.0.0.1:${typeof addr === "object" && addr !== null ? addr.port : 0}`;
  });
  after(() => new Promise<void>((r) => srv.close(() => r())));

  const ledger: WriterLedger = {
    writer: "x",
    seed: 1,
    seriesPerBatch: 1,
    pointsPerSeries: 3,
    baseNs: "1000",
    stepNs: "10",
    batches: [{ seq: 0, outcome: "acked", attempts: 1, maybeApplied: false }],
  };

  it("counts a timestamp twice in a series as a duplicate, and a NaN as a wrong value", async () => {
    const pts = [...batchPoints(ledger, 0)];
    const line = {
      metric: { __name__: "chaos_v", w: "x", s: "0" },
      values: [pts[0]!.value, pts[0]!.value, "NaN"],
      timestamps_ns: ["1000", "1000", "1020"],
    };
    answer = `${JSON.stringify(line)}\n`;
    const r = await checkDurability([url], ledger);
    const n = r.nodes[0]!;
    assert.equal(r.ok, false);
    assert.equal(n.duplicates, 1);
    assert.equal(n.wrongValues, 1);
    assert.equal(n.lost, 1); // ts 1010
    assert.equal(n.examples.lost[0]!.tNs, "1010");
    assert.equal(n.ackedPresent, 1);
  });

  it("reports a node it cannot read", async () => {
    const r = await checkDurability([`${url}/nope`], ledger);
    assert.equal(r.ok, false);
    assert.match(r.nodes[0]!.error ?? "", /export answered 404/);
  });
});
