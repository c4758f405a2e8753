// EngineStore: the storage engine as the protocol's ReplicaStore. The same store-level scenarios run against
// MemoryStore (the reference semantics) and EngineStore; then restart and flush through REPLICA_LOG records.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, batchDigest, encodeBatch } from "../../src/core/batch.js";
import { CorruptionError } from "../../src/core/errors.js";
import { Hlc } from "../../src/core/hlc.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { decodeLogRecord, encodeLogRecord, EngineStore } from "../../src/cluster/engine-store.js";
import type { Ballot, BatchPayload, Message, PrepareReplyMsg } from "../../src/cluster/protocol/messages.js";
import { ReplicaMachine, type ReplicaEffect } from "../../src/cluster/protocol/replica.js";
import { applyLogRecord, MemoryStore, type ReplicaLogRecord, type ReplicaStore } from "../../src/cluster/protocol/store.js";
import { Engine } from "../../src/storage/engine.js";
import { tempDirs } from "../helpers/temp-dirs.js";

const NODES = ["a", "b", "c"];
const ballot = (t: bigint, node = "g#1"): Ballot => ({ t, node });

function payload(id: string, points: [number, number][], hlc = 1n): BatchPayload {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [t, v] of points) b.add([["__name__", "m"]], BigInt(t), v);
  const bytes = encodeBatch(b.build());
  return { batchId: id, shardId: 0, sha256: batchDigest(bytes), hlc, bytes };
}

const tempDir = tempDirs("hqts-engine-store-");

interface Opened {
  engine: Engine;
  store: EngineStore;
  replayed: ReplicaLogRecord[];
}

/** An engine wired as a cluster host wires it: replica log replayed into the store on open, relogged on flush. */
async function openStore(dir: string): Promise<Opened> {
  let store: EngineStore | null = null;
  const replayed: ReplicaLogRecord[] = [];
  const engine = new Engine({
    dataDir: dir,
    limits: DEFAULT_LIMITS,
    retentionMs: null,
    acceptDataLoss: false,
    log: pino({ level: "silent" }),
    metrics: new Registry(),
    onReplicaLog: (p) => {
      const rec = decodeLogRecord(p, "test");
      replayed.push(rec);
      applyLogRecord(store!, rec);
    },
    relog: () => store!.relogRecords().map(encodeLogRecord),
  });
  store = new EngineStore(engine);
  await engine.open();
  return { engine, store, replayed };
}

const M = [[{ name: "__name__", op: "=" as const, value: "m", re: null }]];

/** Visible (committed) points as t → value. */
function visible(store: ReplicaStore, engine: Engine | null): Map<string, number> {
  const out = new Map<string, number>();
  if (store instanceof MemoryStore) {
    for (const [k, v] of store.committedPoints()) out.set(k.split("\u0000")[1]!, v);
    return out;
  }
  const sel = engine!.select(M, { startNs: 0n, endNs: 1n << 62n, includeInferred: true, seriesMax: 10, samplesMax: 1_000_000 });
  for (const s of sel) for (let i = 0; i < s.timestampsNs.length; i++) out.set(s.timestampsNs[i]!.toString(), s.values[i]!);
  return out;
}

const sorted = (m: Map<string, number>): [string, number][] => [...m].sort((a, b) => (a[0] < b[0] ? -1 : 1));

// ---- conformance: MemoryStore and EngineStore answer alike ------------------------------------------------------

interface Subject {
  store: ReplicaStore;
  points(): Map<string, number>;
  close(): Promise<void>;
}

const subjects: [string, () => Promise<Subject>][] = [
  ["MemoryStore", () => {
    const store = new MemoryStore();
    return Promise.resolve({ store, points: () => visible(store, null), close: () => Promise.resolve() });
  }],
  ["EngineStore", async () => {
    const o = await openStore(await tempDir());
    return { store: o.store, points: () => visible(o.store, o.engine), close: () => o.engine.close() };
  }],
];

for (const [name, make] of subjects) {
  describe(`ReplicaStore semantics: ${name}`, () => {
    it("reserves, answers duplicate for the same content and id-conflict for other content", async () => {
      const { store, close } = await make();
      const x = payload("x", [[1, 1], [2, 2]], 5n);
      assert.deepEqual(store.tryReserve(x, ballot(10n), NODES), { kind: "ok" });
      assert.deepEqual(store.lookup("x"), { batchId: "x", sha256: x.sha256, state: "prepared", ballot: ballot(10n), replicas: NODES, hlc: 5n });
      assert.deepEqual(store.tryReserve(x, ballot(11n), NODES), { kind: "duplicate", state: "prepared" });
      const other = payload("x", [[3, 3]]);
      assert.deepEqual(store.tryReserve(other, ballot(12n), NODES), { kind: "id-conflict", sha256: x.sha256 });
      assert.deepEqual(store.payload("x"), x);
      assert.equal(store.lookup("nope"), null);
      assert.equal(store.payload("nope"), null);
      await close();
    });

    it("refuses a different value held by a prepared or committed batch, naming the points and holders", async () => {
      const { store, close } = await make();
      store.tryReserve(payload("x", [[1, 1]]), ballot(10n), NODES);
      store.tryReserve(payload("y", [[2, 2]]), ballot(10n), NODES);
      store.commit("y");
      const r = store.tryReserve(payload("z", [[1, 9], [2, 8], [3, 3]]), ballot(11n), NODES);
      assert.equal(r.kind, "conflict");
      assert.ok(r.kind === "conflict");
      assert.deepEqual(
        r.points.map((p) => [p.timestampNs, p.storedValue, p.offeredValue]),
        [["1", 1, 9], ["2", 2, 8]],
      );
      assert.deepEqual(r.holders, ["x", "y"]);
      assert.equal(store.lookup("z"), null, "nothing reserved");
      await close();
    });

    it("commit makes points visible; prepared ones stay invisible; list filters by state and hlc", async () => {
      const s = await make();
      const { store } = s;
      store.tryReserve(payload("x", [[1, 1]], 3n), ballot(10n), NODES);
      store.tryReserve(payload("y", [[2, 2]], 7n), ballot(10n), NODES);
      assert.deepEqual(sorted(s.points()), []);
      store.commit("x");
      store.commit("x"); // idempotent
      assert.deepEqual(sorted(s.points()), [["1", 1]]);
      assert.deepEqual(store.list("committed", 0n).map((b) => b.batchId), ["x"]);
      assert.deepEqual(store.list("prepared", 0n).map((b) => b.batchId), ["y"]);
      assert.deepEqual(store.list("prepared", 8n), []);
      assert.deepEqual(store.list("committed", 3n).map((b) => b.batchId), ["x"]);
      await s.close();
    });

    it("votes rise only; fences record and rise; a fenced id may still take content", async () => {
      const { store, close } = await make();
      store.tryReserve(payload("x", [[1, 1]]), ballot(10n), NODES);
      store.setVote("x", ballot(12n));
      store.setVote("x", ballot(11n));
      assert.deepEqual(store.lookup("x")?.ballot, ballot(12n));
      store.fence("f", ballot(5n));
      store.fence("f", ballot(7n));
      store.fence("f", ballot(6n));
      assert.deepEqual(store.lookup("f"), { batchId: "f", sha256: null, state: "fenced", ballot: ballot(7n), replicas: [], hlc: 0n });
      assert.equal(store.payload("f"), null);
      assert.deepEqual(store.tryReserve(payload("f", [[9, 9]]), ballot(8n), NODES), { kind: "ok" });
      assert.equal(store.lookup("f")?.state, "prepared");
      assert.deepEqual(store.lookup("f")?.ballot, ballot(8n));
      await close();
    });

    it("abort releases points at or above the vote, not below; no-op on committed; tombstones unknown ids", async () => {
      const s = await make();
      const { store } = s;
      store.tryReserve(payload("x", [[1, 1]]), ballot(10n), NODES);
      store.abort("x", ballot(9n));
      assert.equal(store.lookup("x")?.state, "prepared", "a vote above the decision belongs to a later attempt");
      store.abort("x", ballot(10n));
      assert.equal(store.lookup("x")?.state, "aborted");
      assert.equal(store.payload("x"), null);
      assert.deepEqual(store.tryReserve(payload("y", [[1, 2]]), ballot(11n), NODES), { kind: "ok" }, "point released");
      store.commit("y");
      store.abort("y", ballot(20n));
      assert.equal(store.lookup("y")?.state, "committed");
      store.abort("u", ballot(3n));
      assert.deepEqual(store.lookup("u"), { batchId: "u", sha256: null, state: "aborted", ballot: ballot(3n), replicas: [], hlc: 0n });
      store.fence("u", ballot(4n));
      assert.deepEqual(store.lookup("u")?.ballot, ballot(4n));
      // An aborted id may take content again (the caller checks the ballot against the tombstone).
      assert.deepEqual(store.tryReserve(payload("x", [[5, 5]]), ballot(30n), NODES), { kind: "ok" });
      assert.deepEqual(sorted(s.points()), [["1", 2]]);
      await s.close();
    });

    it("identical points are shared: aborting one holder keeps them for the other", async () => {
      const s = await make();
      const { store } = s;
      store.tryReserve(payload("x", [[1, 1], [2, 2]]), ballot(10n), NODES);
      store.tryReserve(payload("y", [[1, 1], [3, 3]]), ballot(10n), NODES);
      store.tryReserve(payload("w", [[2, 2]]), ballot(10n), NODES);
      store.commit("w"); // committed while x, which holds its point first, is undecided: visible anyway
      assert.deepEqual(sorted(s.points()), [["2", 2]]);
      store.abort("x", ballot(10n));
      const r = store.tryReserve(payload("z", [[1, 7]]), ballot(11n), NODES);
      assert.equal(r.kind, "conflict", "y still holds point 1");
      assert.deepEqual(r.kind === "conflict" && r.holders, ["y"]);
      store.commit("y");
      assert.deepEqual(sorted(s.points()), [["1", 1], ["2", 2], ["3", 3]]);
      await s.close();
    });

    it("install stores a fetched batch committed or prepared, with the same checks", async () => {
      const s = await make();
      const { store } = s;
      assert.deepEqual(store.install(payload("c", [[1, 1]]), "committed", ballot(4n), NODES), { kind: "ok" });
      assert.equal(store.lookup("c")?.state, "committed");
      assert.deepEqual(store.install(payload("p", [[2, 2]]), "prepared", ballot(6n), NODES), { kind: "ok" });
      assert.deepEqual(store.lookup("p")?.ballot, ballot(6n));
      assert.equal(store.install(payload("q", [[1, 5]]), "committed", ballot(7n), NODES).kind, "conflict");
      assert.deepEqual(store.install(payload("c", [[1, 1]]), "committed", ballot(4n), NODES), { kind: "duplicate", state: "committed" });
      assert.deepEqual(sorted(s.points()), [["1", 1]]);
      await s.close();
    });
  });
}

// ---- the replica machine over EngineStore -------------------------------------------------------------------------

describe("ReplicaMachine over EngineStore", () => {
  const now = 1000;
  const clock = { nowMs: () => now };
  const machine = (store: ReplicaStore): ReplicaMachine =>
    new ReplicaMachine(
      { node: "a", shardId: 0, replicas: NODES, recoveryAfterMs: 100, recoveryRetryMs: 50, catchupIntervalMs: 1000, rebuilding: false, incarnation: 1 },
      store,
      new Hlc(clock),
    );
  const prepare = (b: BatchPayload, bl: Ballot) => ({ type: "prepare" as const, from: "g", hlc: 1n, shardId: 0, batch: b, ballot: bl, replicas: NODES });
  /** Steps the machine, appends its records to the engine's WAL as a host does, acknowledges them once durable. */
  async function step(m: ReplicaMachine, engine: Engine, ev: Parameters<ReplicaMachine["step"]>[0]): Promise<Message[]> {
    const sent: Message[] = [];
    const run = async (effects: ReplicaEffect[]): Promise<void> => {
      const waits: Promise<number | null>[] = [];
      for (const e of effects) {
        if (e.kind === "send") sent.push(e.msg);
        else if (e.kind === "persist") {
          const p = engine.appendReplicaLog(encodeLogRecord(e.record));
          waits.push(e.sync ? p.then(() => e.token) : p.then(() => null));
        }
      }
      for (const t of await Promise.all(waits)) if (t !== null) await run(m.step({ kind: "durable", token: t }));
    };
    await run(m.step(ev));
    return sent;
  }

  it("prepares, answers duplicate, refuses a conflicting batch and fences it; all of it survives a restart", async () => {
    const dir = await tempDir();
    const o = await openStore(dir);
    const m = machine(o.store);
    const x = payload("x", [[1, 1]]);
    let r = await step(m, o.engine, { kind: "receive", msg: prepare(x, ballot(10n)) });
    assert.deepEqual((r[0] as PrepareReplyMsg).answer, { kind: "prepared" });
    r = await step(m, o.engine, { kind: "receive", msg: prepare(x, ballot(11n)) });
    assert.deepEqual((r[0] as PrepareReplyMsg).answer, { kind: "duplicate", state: "prepared" });
    r = await step(m, o.engine, { kind: "receive", msg: prepare(payload("y", [[1, 2]]), ballot(12n)) });
    assert.equal((r[0] as PrepareReplyMsg).answer.kind, "conflict");
    assert.equal(o.store.lookup("y")?.state, "fenced");
    await step(m, o.engine, { kind: "receive", msg: { type: "commit", from: "g", hlc: 2n, shardId: 0, batchId: "x", sha256: x.sha256, ballot: ballot(11n) } });
    assert.equal(o.store.lookup("x")?.state, "committed");
    const before = { x: o.store.lookup("x"), y: o.store.lookup("y"), pts: sorted(visible(o.store, o.engine)) };
    await o.engine.close();
    const o2 = await openStore(dir);
    assert.deepEqual(o2.replayed.map((rec) => rec.type), ["prepare", "vote", "fence", "commit"]);
    assert.deepEqual({ x: o2.store.lookup("x"), y: o2.store.lookup("y"), pts: sorted(visible(o2.store, o2.engine)) }, before);
    await o2.engine.close();
  });
});

// ---- restart and flush --------------------------------------------------------------------------------------------

/** Applies records to the store (as the machine would) and appends them to the WAL (as the host would). */
async function act(o: Opened, recs: ReplicaLogRecord[]): Promise<void> {
  for (const rec of recs) applyLogRecord(o.store, rec);
  await Promise.all(recs.map((rec) => o.engine.appendReplicaLog(encodeLogRecord(rec))));
}

const IDS = ["a", "b", "c", "d", "e", "f", "g", "h", "s1", "s2"];
/** The store's observable state. Of an abort tombstone a flush relogs only the ballot (nothing reads the rest). */
function snapshot(o: Opened): unknown {
  return {
    lookup: IDS.map((id) => {
      const r = o.store.lookup(id);
      return r?.state === "aborted" ? { batchId: r.batchId, state: r.state, ballot: r.ballot } : r;
    }),
    committed: o.store.list("committed", 0n),
    prepared: o.store.list("prepared", 0n),
    payloads: IDS.map((id) => o.store.payload(id)?.sha256 ?? null),
    points: sorted(visible(o.store, o.engine)),
  };
}

const history = (): ReplicaLogRecord[] => [
  { type: "prepare", batch: payload("a", [[1, 1], [2, 2]], 3n), ballot: ballot(10n), replicas: NODES },
  { type: "prepare", batch: payload("b", [[3, 3]], 4n), ballot: ballot(10n), replicas: NODES },
  { type: "vote", batchId: "b", ballot: ballot(15n) },
  { type: "commit", batchId: "a" },
  { type: "fence", batchId: "c", ballot: ballot(20n) },
  { type: "prepare", batch: payload("d", [[4, 4]], 5n), ballot: ballot(10n), replicas: NODES },
  { type: "abort", batchId: "d", ballot: ballot(11n) },
  { type: "abort", batchId: "e", ballot: ballot(12n) },
  { type: "install", fetched: { batch: payload("f", [[5, 5]], 6n), state: "committed", ballot: ballot(9n), replicas: NODES } },
  { type: "install", fetched: { batch: payload("g", [[6, 6]], 7n), state: "prepared", ballot: ballot(13n), replicas: NODES } },
  { type: "prepare", batch: payload("s1", [[7, 7]], 8n), ballot: ballot(10n), replicas: NODES },
  { type: "prepare", batch: payload("s2", [[7, 7], [8, 8]], 8n), ballot: ballot(10n), replicas: NODES },
  { type: "abort", batchId: "s1", ballot: ballot(10n) },
  { type: "rebuilt" },
];

describe("EngineStore durability through REPLICA_LOG records", () => {
  it("encodes and decodes every record type exactly, and refuses damage", () => {
    for (const rec of history()) {
      const bytes = encodeLogRecord(rec);
      assert.deepEqual(decodeLogRecord(bytes, "t"), rec);
      assert.deepEqual(encodeLogRecord(decodeLogRecord(bytes, "t")), bytes);
    }
    const bytes = encodeLogRecord(history()[0]!);
    const bad = bytes.slice();
    bad[45]! ^= 1; // inside the batch bytes
    assert.throws(() => decodeLogRecord(bad, "t"), CorruptionError);
    assert.throws(() => decodeLogRecord(Uint8Array.of(1, 99), "t"), CorruptionError);
    assert.throws(() => decodeLogRecord(Uint8Array.of(1, 4, 1, 0x41, 0), "t"), CorruptionError, "trailing bytes");
  });

  it("a restart replays the log into an equal store", async () => {
    const dir = await tempDir();
    const o = await openStore(dir);
    await act(o, history());
    const before = snapshot(o);
    assert.equal(o.store.lookup("b")?.state, "prepared");
    assert.deepEqual(o.store.lookup("b")?.ballot, ballot(15n));
    await o.engine.close();
    const o2 = await openStore(dir);
    assert.equal(o2.replayed.length, history().length);
    assert.deepEqual(snapshot(o2), before);
    await o2.engine.close();
  });

  it("a flush keeps undecided batches, votes, fences and tombstones through a restart", async () => {
    const dir = await tempDir();
    const o = await openStore(dir);
    await act(o, history());
    const before = snapshot(o) as { lookup: unknown[] };
    const flushed = await o.engine.flush();
    assert.equal(flushed.samples, 3, "a's and f's points; s2 (holding point 7 after s1's abort) stays in the head");
    // Committed and flushed: answered from the engine, bytes gone.
    assert.equal(o.store.payload("a"), null);
    assert.deepEqual(o.store.lookup("a"), { batchId: "a", sha256: payload("a", [[1, 1], [2, 2]]).sha256, state: "committed", ballot: { t: 0n, node: "" }, replicas: [], hlc: 3n });
    // Work after the flush lands in the new segment.
    await act(o, [{ type: "vote", batchId: "g", ballot: ballot(16n) }, { type: "fence", batchId: "h", ballot: ballot(2n) }]);
    const mid = snapshot(o);
    await o.engine.close();
    const o2 = await openStore(dir);
    assert.ok(o2.replayed.length < history().length + 2, "old segments deleted: the relogged state was replayed");
    assert.deepEqual(snapshot(o2), mid);
    const lk = (id: string) => o2.store.lookup(id);
    assert.deepEqual([lk("b")?.state, lk("b")?.ballot], ["prepared", ballot(15n)]);
    assert.deepEqual([lk("g")?.state, lk("g")?.ballot], ["prepared", ballot(16n)]);
    assert.deepEqual([lk("c")?.state, lk("c")?.ballot], ["fenced", ballot(20n)]);
    assert.deepEqual([lk("h")?.state, lk("h")?.ballot], ["fenced", ballot(2n)]);
    assert.deepEqual([lk("d")?.state, lk("d")?.ballot], ["aborted", ballot(11n)]);
    assert.deepEqual([lk("e")?.state, lk("e")?.ballot], ["aborted", ballot(12n)]);
    assert.equal(o2.store.payload("b")?.sha256, payload("b", [[3, 3]]).sha256);
    // The prepared batches still hold their points after the restart.
    assert.equal(o2.store.tryReserve(payload("z", [[3, 9]]), ballot(30n), NODES).kind, "conflict");
    assert.deepEqual(snapshot(o2), mid);
    assert.notDeepEqual(before.lookup, (mid as { lookup: unknown[] }).lookup);
    await o2.engine.close();
  });
});
