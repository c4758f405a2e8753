// The node driver for real: 3 NodeDrivers in one process, each with its own
// MemoryStore, a persist() that records the WAL records (resolving after a
// small, varying delay for sync ones, so completions come out of order), a
// real Transport and a real node:http server on 127.0.0.1 port 0 serving the
// inbound handler. Servers are closed (connections refused) to take nodes out.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { BatchBuilder, encodeWithDigest, type Batch, type EncodedBatch } from "../../src/core/batch.js";
import { ConflictError, HqError, UnavailableError } from "../../src/core/errors.js";
import { Hlc } from "../../src/core/hlc.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import type { Receipt } from "../../src/core/receipt.js";
import { NodeDriver, type DriverConfig } from "../../src/cluster/node-driver.js";
import { applyLogRecord, MemoryStore, type ReplicaLogRecord } from "../../src/cluster/protocol/store.js";
import { INTERNAL_MSG_PATH, Transport, makeInboundHandler } from "../../src/cluster/transport.js";
import { STATUS_BY_CODE } from "../../src/server/http-errors.js";

const SHARD = 0;
const IDS = ["a", "b", "c"] as const;
// A generous lag limit: under a loaded test machine a cold HTTP round trip can take a while, and a 503 at the lag
// limit is a legitimate outcome the happy-path tests do not want. Refused connections drop a replica at once.
const CONFIG: Partial<DriverConfig> = {
  lagLimitMs: 1000,
  retransmitMs: 50,
  commitTimeoutMs: 1500,
  recoveryAfterMs: 3000,
  recoveryRetryMs: 300,
  catchupIntervalMs: 300,
  tickMs: 10,
  writeTimeoutMs: 5000,
};
const log = pino({ level: "silent" });

interface TestNode {
  id: string;
  url: string;
  server: Server;
  serverOpen: boolean;
  transport: Transport;
  store: MemoryStore;
  wal: { record: ReplicaLogRecord; sync: boolean }[];
  driver: NodeDriver;
  incarnation: number;
}

const nodes = new Map<string, TestNode>();
const node = (id: string): TestNode => nodes.get(id)!;

function persistInto(n: { wal: TestNode["wal"] }): (record: ReplicaLogRecord, sync: boolean) => Promise<void> {
  let i = 0;
  return (record, sync) => {
    n.wal.push({ record, sync });
    // MemoryStore already changed inside step; "fsync" takes 0–2 ms, so completions may come out of order.
    const delay = sync ? i++ % 3 : 0;
    return new Promise<void>((resolve) => setTimeout(resolve, delay));
  };
}

function makeDriver(n: TestNode, store: MemoryStore, hlc: Hlc): NodeDriver {
  return new NodeDriver({
    nodeId: n.id,
    shardId: SHARD,
    replicas: IDS,
    peerUrl: (id) => nodes.get(id)?.url ?? null,
    store,
    persist: persistInto(n),
    transport: n.transport,
    hlc,
    incarnation: n.incarnation,
    rebuilding: false,
    log,
    config: CONFIG,
  });
}

function closeServer(n: TestNode): Promise<void> {
  if (!n.serverOpen) return Promise.resolve();
  n.serverOpen = false;
  return new Promise<void>((resolve) => {
    n.server.closeAllConnections();
    n.server.close(() => resolve());
  });
}

function batchOf(points: [series: number, ts: number, value: number][]): { batch: Batch; encoded: EncodedBatch } {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [s, t, v] of points)
    b.add(
      [
        ["__name__", "m"],
        ["s", String(s)],
      ],
      BigInt(t),
      v,
    );
  const batch = b.build({ shardId: SHARD });
  return { batch, encoded: encodeWithDigest(batch) };
}

let retries = 0;

/** A client that retries retryable errors (503, 429) with the same batch id until a final outcome or the deadline. */
async function writeRetrying(via: () => NodeDriver, b: { batch: Batch; encoded: EncodedBatch }, id: string, deadlineMs = 15_000): Promise<Receipt> {
  const end = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await via().write(b.batch, id, b.encoded);
    } catch (e) {
      if (!(e instanceof HqError) || !e.retryable || Date.now() > end) throw e;
      retries++;
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40 * Math.min(attempt + 1, 4))); // jitter breaks duelling retries
    }
  }
}

async function eventually(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const stateOn = (id: string, batchId: string): string | undefined => node(id).store.lookup(batchId)?.state;
const committedEverywhere = (batchId: string): boolean => IDS.every((id) => stateOn(id, batchId) === "committed");

describe("NodeDriver: 3 nodes over real HTTP", () => {
  before(async () => {
    for (const id of IDS) {
      const n = { id, incarnation: 1, wal: [], serverOpen: true } as unknown as TestNode;
      n.transport = new Transport({ onUnreachable: (u) => n.driver.onUnreachable(u), defaultTimeoutMs: 2000 });
      const handler = makeInboundHandler((msg) => n.driver.onMessage(msg));
      n.server = createServer((req, res) => {
        const url = new URL(req.url ?? "/", "http://localhost");
        if (url.pathname !== INTERNAL_MSG_PATH || req.method !== "POST") {
          req.resume();
          res.writeHead(404).end();
          return;
        }
        handler(undefined, req, res, url, []).catch(() => {
          if (!res.headersSent) res.writeHead(500).end();
        });
      });
      await new Promise<void>((resolve) => n.server.listen(0, "127.0.0.1", resolve));
      n.url = `http://127.0.0.1:${(n.server.address() as AddressInfo).port}`;
      nodes.set(id, n);
    }
    for (const n of nodes.values()) {
      n.store = new MemoryStore();
      n.driver = makeDriver(n, n.store, new Hlc());
    }
    for (const n of nodes.values()) n.driver.start();
    await eventually("every replica up to date", () => IDS.every((id) => node(id).driver.stats().upToDate));
  });

  after(async () => {
    for (const n of nodes.values()) await n.driver.stop();
    for (const n of nodes.values()) n.transport.close();
    for (const n of nodes.values()) await closeServer(n);
  });

  it("a write through one node returns a receipt and is committed on all 3 stores", async () => {
    const b = batchOf([
      [1, 1, 10],
      [1, 2, 11],
      [2, 1, 12],
    ]);
    const r = await node("a").driver.write(b.batch, "first", b.encoded);
    assert.equal(r.batchId, "first");
    assert.equal(r.samples, 3);
    assert.equal(r.duplicate, false, "the first write of a batch is never a duplicate");
    assert.equal(r.accepted, 3);
    assert.ok(r.replicas.length >= 2, `fsynced on a majority: ${r.replicas.join(",")}`);
    const sha = r.sha256;
    await eventually("committed on all 3", () => committedEverywhere("first"));
    for (const id of IDS) assert.equal(node(id).store.lookup("first")!.sha256, sha);
    const s = node("a").driver.stats();
    assert.equal(s.pendingWrites, 0);
    assert.ok(s.messagesOut > 0 && s.messagesIn > 0 && s.localDelivered > 0);
    assert.equal(s.state, "running");
  });

  it("100 sequential replays of one batch id: one committed copy, a receipt every time", async () => {
    const b = batchOf([[3, 5, 1.5]]);
    const receipts: Receipt[] = [];
    for (let i = 0; i < 100; i++) receipts.push(await node("a").driver.write(b.batch, "seq-replay", b.encoded));
    assert.ok(receipts.every((r) => r.batchId === "seq-replay" && r.sha256 === receipts[0]!.sha256));
    assert.ok(receipts.slice(1).every((r) => r.duplicate && r.accepted === 0 && r.duplicates === 1));
    await eventually("committed on all 3", () => committedEverywhere("seq-replay"));
    for (const id of IDS) assert.equal(node(id).store.summaries("committed").filter((s) => s.batchId === "seq-replay").length, 1);
  });

  it("100 concurrent replays through different drivers: one committed copy, all receipts for the same batch", async (t) => {
    retries = 0;
    const b = batchOf([
      [4, 1, 2],
      [4, 2, 3],
    ]);
    const receipts = await Promise.all(Array.from({ length: 100 }, (_, i) => writeRetrying(() => node(IDS[i % 3]!).driver, b, "conc-replay")));
    assert.equal(receipts.length, 100);
    assert.ok(receipts.every((r) => r.batchId === "conc-replay" && r.sha256 === receipts[0]!.sha256));
    await eventually("committed on all 3", () => committedEverywhere("conc-replay"));
    for (const id of IDS) {
      assert.equal(node(id).store.summaries("committed").filter((s) => s.batchId === "conc-replay").length, 1);
      assert.equal(node(id).store.committedPoints().get(`${batchOf([[4, 1, 2]]).batch.series[0]!.key}\u00001`), 2);
    }
    for (const id of IDS) await eventually(`no pending writes on ${id}`, () => node(id).driver.stats().pendingWrites === 0);
    t.diagnostic(`retried 503s: ${retries}; duplicate receipts: ${receipts.filter((r) => r.duplicate).length}`);
  });

  it("two concurrent writers of different values for one point: exactly one acked, the other 409", async (t) => {
    retries = 0;
    for (let round = 0; round < 5; round++) {
      const x = batchOf([[5, 100 + round, 1]]);
      const y = batchOf([[5, 100 + round, 2]]);
      const ids = [`split-x${round}`, `split-y${round}`] as const;
      const settle = async (via: string, b: typeof x, id: string): Promise<Receipt | HqError> => {
        try {
          return await writeRetrying(() => node(via).driver, b, id);
        } catch (e) {
          assert.ok(e instanceof HqError, String(e));
          return e;
        }
      };
      const [rx, ry] = await Promise.all([settle("a", x, ids[0]), settle(round % 2 === 0 ? "b" : "c", y, ids[1])]);
      const acked = [rx, ry].filter((r) => !(r instanceof HqError)) as Receipt[];
      const refused = [rx, ry].filter((r) => r instanceof HqError);
      assert.equal(acked.length, 1, `round ${round}: one acked (${String(rx instanceof HqError ? rx.message : "ack")} / ${String(ry instanceof HqError ? ry.message : "ack")})`);
      assert.equal(refused.length, 1);
      assert.ok(refused[0] instanceof ConflictError, `the loser gets 409: ${refused[0]!.message}`);
      // Each refusing replica names the point (the gateway lists them per answer).
      assert.ok(refused[0].points.length >= 1);
      for (const p of refused[0].points) assert.equal(p.timestampNs, String(100 + round));
      const winner = acked[0]!.batchId;
      const loser = winner === ids[0] ? ids[1] : ids[0];
      await eventually("winner committed everywhere", () => committedEverywhere(winner));
      for (const id of IDS) assert.notEqual(stateOn(id, loser), "committed", `${loser} never committed on ${id}`);
    }
    t.diagnostic(`retried 503s over 5 rounds: ${retries}`);
  });

  it("a restarted node (WAL replayed into a fresh store) keeps its batches and answers replays", async () => {
    const n = node("a");
    await n.driver.stop();
    assert.equal(n.driver.stats().state, "stopped");
    const store = new MemoryStore();
    let maxT = 0n;
    for (const { record } of n.wal) {
      applyLogRecord(store, record);
      if ("ballot" in record && record.ballot.t > maxT) maxT = record.ballot.t;
    }
    assert.deepEqual(
      store.summaries("committed").map((s) => s.batchId).sort(),
      n.store.summaries("committed").map((s) => s.batchId).sort(),
    );
    const hlc = new Hlc();
    hlc.observe(maxT);
    n.incarnation++;
    n.store = store;
    n.driver = makeDriver(n, store, hlc);
    n.driver.start();
    const b = batchOf([
      [1, 1, 10],
      [1, 2, 11],
      [2, 1, 12],
    ]);
    const r = await n.driver.write(b.batch, "first", b.encoded);
    assert.equal(r.duplicate, true);
    const fresh = batchOf([[6, 1, 7]]);
    const r2 = await n.driver.write(fresh.batch, "after-restart", fresh.encoded);
    assert.equal(r2.batchId, "after-restart");
    await eventually("committed on all 3", () => committedEverywhere("after-restart"));
  });

  it("with one server down (connections refused) writes still succeed on 2 of 3", async () => {
    await closeServer(node("c"));
    for (let i = 0; i < 5; i++) {
      const b = batchOf([[7, i, i]]);
      const started = Date.now();
      const r = await node("a").driver.write(b.batch, `two-of-three-${i}`, b.encoded);
      assert.ok(Date.now() - started < 1000, "the refused replica drops out at once, not at the lag limit");
      assert.deepEqual(r.replicas, ["a", "b"]);
      assert.equal(stateOn("a", r.batchId), "committed");
      await eventually("committed on b", () => stateOn("b", r.batchId) === "committed");
    }
    assert.ok(node("a").driver.stats().unreachable > 0);
  });

  it("with two servers down a write fails with a retryable 503", async () => {
    await closeServer(node("b"));
    const b = batchOf([[8, 1, 1]]);
    await assert.rejects(node("a").driver.write(b.batch, "no-quorum", b.encoded), (e: unknown) => {
      assert.ok(e instanceof UnavailableError, String(e));
      assert.equal(e.retryable, true);
      assert.equal(STATUS_BY_CODE[e.code], 503);
      return true;
    });
    assert.notEqual(stateOn("b", "no-quorum"), "committed");
    assert.notEqual(stateOn("c", "no-quorum"), "committed");
    assert.notEqual(stateOn("a", "no-quorum"), "committed");
  });
});

describe("NodeDriver: host rules (no network)", () => {
  const silentSender = { send: (): void => undefined };
  const solo = (over: { persist?: (r: ReplicaLogRecord, sync: boolean) => Promise<void>; replicas?: readonly string[]; config?: Partial<DriverConfig> }): NodeDriver =>
    new NodeDriver({
      nodeId: "solo",
      shardId: SHARD,
      replicas: over.replicas ?? ["solo"],
      peerUrl: () => null,
      store: new MemoryStore(),
      persist: over.persist ?? (() => Promise.resolve()),
      transport: silentSender,
      hlc: new Hlc(),
      incarnation: 1,
      rebuilding: false,
      log,
      config: { ...CONFIG, ...over.config },
    });

  it("a one-replica shard commits through local delivery only; writes before start or after stop are 503", async () => {
    const d = solo({});
    const b = batchOf([[1, 1, 1]]);
    await assert.rejects(d.write(b.batch, "early", b.encoded), UnavailableError);
    d.start();
    const r = await d.write(b.batch, "solo-1", b.encoded);
    assert.deepEqual(r.replicas, ["solo"]);
    assert.equal(d.stats().messagesIn, 0);
    assert.ok(d.stats().localDelivered >= 2);
    await d.stop();
    await assert.rejects(d.write(b.batch, "late", b.encoded), UnavailableError);
  });

  it("durable events follow WAL order even when persists complete out of order", async () => {
    const order: number[] = [];
    let n = 0;
    const d = solo({
      persist: (_r, sync) => {
        const i = n++;
        return new Promise<void>((resolve) =>
          setTimeout(
            () => {
              order.push(i);
              resolve();
            },
            sync ? 5 - (i % 5) : 0,
          ),
        );
      },
    });
    d.start();
    const writes = Array.from({ length: 10 }, (_, i) => {
      const b = batchOf([[2, i, i]]);
      return d.write(b.batch, `ooo-${i}`, b.encoded);
    });
    const receipts = await Promise.all(writes);
    assert.equal(receipts.length, 10);
    assert.notDeepEqual(order, [...order].sort((a, b) => a - b), "the fake WAL did complete out of order");
    await d.stop();
  });

  it("bounded pending writes (429), the write timeout (503, outcome unknown) and stop() rejecting what is pending", async () => {
    // Peers never answer: a write waits for the lag limit (long here), so writes pile up.
    const d = solo({ replicas: ["solo", "p1", "p2"], config: { maxPendingWrites: 3, writeTimeoutMs: 150, lagLimitMs: 60_000 } });
    d.start();
    const b1 = batchOf([[3, 1, 1]]);
    const b2 = batchOf([[3, 2, 1]]);
    const w1 = d.write(b1.batch, "p-1", b1.encoded);
    const w1again = d.write(b1.batch, "p-1", b1.encoded); // joins w1's attempt
    const w2 = d.write(b2.batch, "p-2", b2.encoded);
    assert.equal(d.stats().pendingWrites, 3);
    assert.equal(d.stats().gatewayInflight, 2, "the identical call shares one gateway attempt");
    await assert.rejects(d.write(b2.batch, "p-3", b2.encoded), (e: unknown) => e instanceof HqError && e.code === "overloaded" && STATUS_BY_CODE[e.code] === 429);
    for (const w of [w1, w1again, w2])
      await assert.rejects(w, (e: unknown) => e instanceof UnavailableError && e.retryable && /no outcome within 150 ms/.test(e.message));
    assert.equal(d.stats().pendingWrites, 0);
    const w4 = d.write(b2.batch, "p-4", b2.encoded);
    await d.stop();
    await assert.rejects(w4, (e: unknown) => e instanceof UnavailableError && /stopping/.test(e.message));
  });

  it("fail-stop when the WAL refuses a record: pending writes get 503, no further events are taken", async () => {
    const d = solo({ persist: () => Promise.reject(new Error("disk full")) });
    d.start();
    const b = batchOf([[4, 1, 1]]);
    await assert.rejects(d.write(b.batch, "f-1", b.encoded), (e: unknown) => e instanceof UnavailableError && /disk full/.test(e.message));
    assert.equal(d.stats().state, "failed");
    assert.equal(d.stats().failure, "disk full");
    await assert.rejects(d.write(b.batch, "f-2", b.encoded), UnavailableError);
    await d.stop();
  });
});
