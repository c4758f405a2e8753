// Targeted tests of the protocol machines, one rule at a time.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BatchBuilder, batchDigest, encodeBatch } from "../../src/core/batch.js";
import { ConflictError, UnavailableError } from "../../src/core/errors.js";
import { Hlc } from "../../src/core/hlc.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { GatewayMachine, type GatewayEffect, type WriteResult } from "../../src/cluster/protocol/gateway.js";
import type { Ballot, BatchPayload, FlushedBatch, Message, PrepareReplyMsg, StatusAnswer } from "../../src/cluster/protocol/messages.js";
import { decideRecovery } from "../../src/cluster/protocol/recovery.js";
import { ReplicaMachine, type ReplicaEffect } from "../../src/cluster/protocol/replica.js";
import { MemoryStore } from "../../src/cluster/protocol/store.js";

const NODES = ["a", "b", "c"];

function payload(id: string, points: [number, number][]): BatchPayload {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [t, v] of points) b.add([["__name__", "m"]], BigInt(t), v);
  const bytes = encodeBatch(b.build());
  return { batchId: id, shardId: 0, sha256: batchDigest(bytes), hlc: 1n, bytes };
}

let now = 1000;
const clock = { nowMs: () => now };

function replica(node: string, opts: { rebuilding?: boolean } = {}): { m: ReplicaMachine; store: MemoryStore } {
  const store = new MemoryStore();
  const m = new ReplicaMachine(
    { node, shardId: 0, replicas: NODES, recoveryAfterMs: 100, recoveryRetryMs: 50, catchupIntervalMs: 1000, rebuilding: opts.rebuilding ?? false, incarnation: 1 },
    store,
    new Hlc(clock),
  );
  return { m, store };
}

/** Steps a replica and acknowledges every sync record at once (an instant disk). */
function stepDurable(m: ReplicaMachine, ev: Parameters<ReplicaMachine["step"]>[0]): Message[] {
  const sent: Message[] = [];
  const run = (effects: ReplicaEffect[]): void => {
    const tokens: number[] = [];
    for (const e of effects) {
      if (e.kind === "send") sent.push(e.msg);
      else if (e.kind === "sync-points") assert.fail("MemoryStore keeps every batch's bytes: no point sync expected");
      else if (e.sync) tokens.push(e.token);
    }
    for (const t of tokens) run(m.step({ kind: "durable", token: t }));
  };
  run(m.step(ev));
  return sent;
}

const ballot = (t: bigint, node = "g#1"): Ballot => ({ t, node });
const prepare = (b: BatchPayload, bl: Ballot) => ({ type: "prepare" as const, from: "g", hlc: 1n, shardId: 0, batch: b, ballot: bl, replicas: NODES });

function gateway(lagLimitMs = 50): GatewayMachine {
  return new GatewayMachine({ node: "g", lagLimitMs, retransmitMs: 1000, commitTimeoutMs: 500, ballotRestartsMax: 2, incarnation: 1 }, new Hlc(clock));
}
const sends = (fx: GatewayEffect[]) => fx.filter((e): e is Extract<GatewayEffect, { kind: "send" }> => e.kind === "send").map((e) => e.msg);
const done = (fx: GatewayEffect[]): WriteResult | undefined => fx.find((e) => e.kind === "done")?.result as WriteResult | undefined;

describe("replica: prepare", () => {
  it("answers prepared only once durable, then duplicate for the same batch", () => {
    const { m } = replica("a");
    const b = payload("x", [[1, 1]]);
    const fx = m.step({ kind: "receive", msg: prepare(b, ballot(10n)) });
    assert.equal(fx.filter((e) => e.kind === "send").length, 0, "no answer before fsync");
    const p = fx.find((e) => e.kind === "persist")!;
    assert.equal(p.kind === "persist" && p.record.type, "prepare");
    const after = m.step({ kind: "durable", token: (p as { token: number }).token });
    assert.deepEqual((after[0] as { msg: PrepareReplyMsg }).msg.answer, { kind: "prepared" });
    const dup = stepDurable(m, { kind: "receive", msg: prepare(b, ballot(11n)) });
    assert.deepEqual((dup[0] as PrepareReplyMsg).answer, { kind: "duplicate", state: "prepared" });
  });
  it("refuses a different value for a point held by a prepared batch, naming it, and fences", () => {
    const { m, store } = replica("a");
    stepDurable(m, { kind: "receive", msg: prepare(payload("x", [[1, 1]]), ballot(10n)) });
    const r = stepDurable(m, { kind: "receive", msg: prepare(payload("y", [[1, 2], [2, 5]]), ballot(11n)) });
    const a = (r[0] as PrepareReplyMsg).answer;
    assert.equal(a.kind, "conflict");
    assert.equal(a.kind === "conflict" && a.points[0]!.timestampNs, "1");
    assert.equal(store.lookup("y")?.state, "fenced");
    // an identical value is a no-op, not a conflict
    const ok = stepDurable(m, { kind: "receive", msg: prepare(payload("z", [[1, 1], [3, 3]]), ballot(12n)) });
    assert.equal((ok[0] as PrepareReplyMsg).answer.kind, "prepared");
  });
  it("refuses a known id with another digest", () => {
    const { m } = replica("a");
    stepDurable(m, { kind: "receive", msg: prepare(payload("x", [[1, 1]]), ballot(10n)) });
    const r = stepDurable(m, { kind: "receive", msg: prepare(payload("x", [[5, 1]]), ballot(11n)) });
    assert.equal((r[0] as PrepareReplyMsg).answer.kind, "id-conflict");
  });
  it("does not vote while rebuilding after data loss", () => {
    const { m } = replica("a", { rebuilding: true });
    const r = stepDurable(m, { kind: "receive", msg: prepare(payload("x", [[1, 1]]), ballot(10n)) });
    assert.equal((r[0] as PrepareReplyMsg).answer.kind, "unavailable");
  });
});

function reply(from: string, batchId: string, bl: Ballot, answer: PrepareReplyMsg["answer"]): PrepareReplyMsg {
  return { type: "prepare-reply", from, hlc: 1n, shardId: 0, batchId, ballot: bl, answer };
}

describe("gateway: write concern", () => {
  const b = payload("w", [[1, 1]]);
  const start = (g: GatewayMachine) => sends(g.step({ kind: "write", req: { reqId: 1, batch: b, samples: 1, replicas: NODES } }));
  it("commits with every replica prepared and acks after a majority of commit acks", () => {
    const g = gateway();
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "prepared" }) });
    assert.equal(sends(g.step({ kind: "receive", msg: reply("b", "w", bl, { kind: "prepared" }) })).length, 0, "waits for the third reachable replica");
    const commits = sends(g.step({ kind: "receive", msg: reply("c", "w", bl, { kind: "prepared" }) }));
    assert.equal(commits.filter((m) => m.type === "commit").length, 3);
    g.step({ kind: "receive", msg: { type: "commit-reply", from: "a", hlc: 1n, shardId: 0, batchId: "w", ballot: bl, committed: true } });
    const r = done(g.step({ kind: "receive", msg: { type: "commit-reply", from: "b", hlc: 1n, shardId: 0, batchId: "w", ballot: bl, committed: true } }));
    assert.ok(r?.ok);
    assert.deepEqual(r.ok && r.receipt.replicas, ["a", "b", "c"]);
  });
  it("drops an unreachable replica at once and waits for a slow one up to the lag limit", () => {
    const g = gateway(50);
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    g.step({ kind: "unreachable", node: "c" });
    g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "prepared" }) });
    const fx = sends(g.step({ kind: "receive", msg: reply("b", "w", bl, { kind: "prepared" }) }));
    assert.ok(fx.some((m) => m.type === "commit"), "c refused connections: a majority of the rest suffices");
    const g2 = gateway(50);
    now = 2000;
    g2.step({ kind: "tick", nowMs: now });
    const bl2 = (start(g2)[0] as { ballot: Ballot }).ballot;
    g2.step({ kind: "receive", msg: reply("a", "w", bl2, { kind: "prepared" }) });
    assert.equal(sends(g2.step({ kind: "receive", msg: reply("b", "w", bl2, { kind: "prepared" }) })).length, 0, "c is slow: wait");
    now = 2049;
    assert.equal(sends(g2.step({ kind: "tick", nowMs: now })).filter((m) => m.type === "commit").length, 0);
    now = 2050;
    assert.ok(sends(g2.step({ kind: "tick", nowMs: now })).some((m) => m.type === "commit"), "lag limit passed: commit with the majority");
  });
  it("fails with a retryable 503 below a majority", () => {
    const g = gateway();
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    g.step({ kind: "unreachable", node: "b" });
    g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "prepared" }) });
    const r = done(g.step({ kind: "unreachable", node: "c" }));
    assert.ok(r !== undefined && !r.ok && r.error instanceof UnavailableError && r.error.retryable);
  });
  it("answers 409 with the points when a majority refuses with conflicts, and aborts its copies", () => {
    const g = gateway();
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    const pts = [{ series: "m", timestampNs: "1", storedValue: 2, offeredValue: 1 }];
    g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "prepared" }) });
    g.step({ kind: "receive", msg: reply("b", "w", bl, { kind: "conflict", points: pts }) });
    const fx = g.step({ kind: "receive", msg: reply("c", "w", bl, { kind: "conflict", points: pts }) });
    const r = done(fx);
    // Both refusing replicas name the same point: it is listed once.
    assert.ok(r !== undefined && !r.ok && r.error instanceof ConflictError);
    assert.deepEqual(r.error.points, pts);
    assert.equal(sends(fx).filter((m) => m.type === "abort").length, 3);
  });
  it("a receipt is not a duplicate when replicas answer duplicate(prepared) to a re-sent PREPARE", () => {
    const g = gateway();
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "duplicate", state: "prepared" }) });
    g.step({ kind: "receive", msg: reply("b", "w", bl, { kind: "duplicate", state: "prepared" }) });
    g.step({ kind: "receive", msg: reply("c", "w", bl, { kind: "prepared" }) });
    let r: WriteResult | undefined;
    for (const n of ["a", "b"]) r = done(g.step({ kind: "receive", msg: { type: "commit-reply", from: n, hlc: 1n, shardId: 0, batchId: "w", ballot: bl, committed: true } }));
    assert.ok(r !== undefined && r.ok, "committed");
    assert.equal(r.receipt.duplicate, false);
  });
  it("commits when a majority prepared even if a minority saw a conflicting writer", () => {
    const g = gateway();
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "prepared" }) });
    g.step({ kind: "receive", msg: reply("b", "w", bl, { kind: "duplicate", state: "prepared" }) });
    const fx = sends(g.step({ kind: "receive", msg: reply("c", "w", bl, { kind: "conflict", points: [] }) }));
    assert.ok(fx.some((m) => m.type === "commit"));
  });
  it("treats duplicate(committed) as decided", () => {
    const g = gateway();
    const bl = (start(g)[0] as { ballot: Ballot }).ballot;
    assert.ok(sends(g.step({ kind: "receive", msg: reply("a", "w", bl, { kind: "duplicate", state: "committed" }) })).some((m) => m.type === "commit"));
  });
});

describe("recovery rule", () => {
  const r = ballot(50n, "a#1");
  const ans = (xs: [string, StatusAnswer][]) => new Map(xs);
  it("commits when committed anywhere or voted on a majority at its ballot", () => {
    assert.equal(decideRecovery(r, ans([["a", { kind: "prepared", ballot: r }], ["c", { kind: "committed" }]]), 3), "commit");
    assert.equal(decideRecovery(r, ans([["a", { kind: "prepared", ballot: r }], ["b", { kind: "prepared", ballot: r }]]), 3), "commit");
  });
  it("aborts only when a majority fenced at its ballot", () => {
    assert.equal(decideRecovery(r, ans([["a", { kind: "prepared", ballot: r }], ["b", { kind: "fenced", ballot: r }]]), 3), "wait");
    assert.equal(decideRecovery(r, ans([["a", { kind: "prepared", ballot: r }], ["b", { kind: "fenced", ballot: r }], ["c", { kind: "fenced", ballot: r }]]), 3), "abort");
    assert.equal(decideRecovery(r, ans([["a", { kind: "prepared", ballot: r }], ["b", { kind: "unknown" }], ["c", { kind: "fenced", ballot: r }]]), 3), "wait");
    assert.equal(decideRecovery(r, ans([["a", { kind: "prepared", ballot: r }], ["b", { kind: "prepared", ballot: ballot(60n) }]]), 3), "higher");
  });
  it("a replica holding the batch raises its vote instead of fencing; one without it fences durably", () => {
    const { m, store } = replica("b");
    const b = payload("x", [[1, 1]]);
    stepDurable(m, { kind: "receive", msg: prepare(b, ballot(10n)) });
    const st = { type: "status" as const, from: "a", hlc: 1n, shardId: 0, batchId: "x", sha256: b.sha256, ballot: r };
    assert.deepEqual((stepDurable(m, { kind: "receive", msg: st })[0] as { answer: StatusAnswer }).answer, { kind: "prepared", ballot: r });
    const other = replica("c");
    assert.deepEqual((stepDurable(other.m, { kind: "receive", msg: st })[0] as { answer: StatusAnswer }).answer, { kind: "fenced", ballot: r });
    assert.equal(other.store.lookup("x")?.state, "fenced");
    // the fence refuses the old attempt's late PREPARE
    const late = stepDurable(other.m, { kind: "receive", msg: prepare(b, ballot(10n)) });
    assert.equal((late[0] as PrepareReplyMsg).answer.kind, "fenced");
    assert.equal(store.lookup("x")?.state, "prepared");
  });
  it("a replica with an undecided batch asks its peers after the timeout", () => {
    const { m } = replica("a");
    stepDurable(m, { kind: "receive", msg: prepare(payload("x", [[1, 1]]), ballot(10n)) });
    now = 5000;
    stepDurable(m, { kind: "tick", nowMs: now });
    now = 5200;
    const out = stepDurable(m, { kind: "tick", nowMs: now });
    assert.deepEqual(out.filter((x) => x.type === "status").map((x) => (x as { from: string }).from && x.type), ["status", "status"]);
  });
});

describe("catch-up", () => {
  it("a replica that was away fetches committed batches, checks digests, and is then up to date", () => {
    const src = replica("b");
    const b = payload("x", [[1, 1]]);
    stepDurable(src.m, { kind: "receive", msg: prepare(b, ballot(10n)) });
    stepDurable(src.m, { kind: "receive", msg: { type: "commit", from: "g", hlc: 1n, shardId: 0, batchId: "x", sha256: b.sha256, ballot: ballot(10n) } });
    const lag = replica("a");
    now = 9000;
    let msgs = stepDurable(lag.m, { kind: "tick", nowMs: now });
    assert.equal(lag.m.isUpToDate, false);
    // route between a and b until nothing moves
    for (let i = 0; i < 10 && msgs.length > 0; i++) {
      const next: Message[] = [];
      for (const msg of msgs) {
        if ((msg as { type: string }).type === "catchup-list" || msg.type === "fetch") next.push(...stepDurable(src.m, { kind: "receive", msg: msg as never }));
        else if (msg.type === "catchup-list-reply" || msg.type === "fetch-reply") next.push(...stepDurable(lag.m, { kind: "receive", msg }));
      }
      msgs = next;
    }
    assert.equal(lag.store.lookup("x")?.state, "committed");
    assert.equal(lag.m.isUpToDate, true);
  });
});

describe("catch-up of flushed batches (point sync)", () => {
  /** A peer store that has flushed "x" into a block: no bytes, only its description. */
  class FlushedStore extends MemoryStore {
    override payload(batchId: string): BatchPayload | null {
      return batchId === "x" ? null : super.payload(batchId);
    }
    override flushedMeta(batchId: string): FlushedBatch | null {
      const r = this.lookup(batchId);
      if (batchId !== "x" || r?.state !== "committed") return null;
      return { batchId, sha256: r.sha256!, hlc: r.hlc, shardId: 0, sampleCount: 1, origin: "original", inference: null };
    }
  }

  function route(lag: { m: ReplicaMachine }, src: { m: ReplicaMachine }, first: ReplicaEffect[], onSync: (e: Extract<ReplicaEffect, { kind: "sync-points" }>) => void): void {
    let effects = first;
    for (let i = 0; i < 20 && effects.length > 0; i++) {
      const next: ReplicaEffect[] = [];
      for (const e of effects) {
        if (e.kind === "sync-points") onSync(e);
        else if (e.kind === "persist") {
          if (e.sync) next.push(...lag.m.step({ kind: "durable", token: e.token }));
        } else if (e.to === "b") {
          for (const msg of stepDurable(src.m, { kind: "receive", msg: e.msg as never })) next.push(...lag.m.step({ kind: "receive", msg: msg as never }));
        }
      }
      effects = next;
    }
  }

  it("asks its host to copy the peer's points, adopts the id, and only then is up to date", () => {
    const src = { store: new FlushedStore(), m: null as unknown as ReplicaMachine };
    src.m = new ReplicaMachine(
      { node: "b", shardId: 0, replicas: NODES, recoveryAfterMs: 100, recoveryRetryMs: 50, catchupIntervalMs: 1000, rebuilding: false, incarnation: 1 },
      src.store,
      new Hlc(clock),
    );
    const b = payload("x", [[1, 1]]);
    stepDurable(src.m, { kind: "receive", msg: prepare(b, ballot(10n)) });
    stepDurable(src.m, { kind: "receive", msg: { type: "commit", from: "g", hlc: 1n, shardId: 0, batchId: "x", sha256: b.sha256, ballot: ballot(10n) } });
    const lag = replica("a");
    now = 20_000;
    const asked: Extract<ReplicaEffect, { kind: "sync-points" }>[] = [];
    route(lag, src, lag.m.step({ kind: "tick", nowMs: now }), (e) => asked.push(e));
    assert.equal(asked.length, 1, "one point sync asked of the peer");
    assert.equal(asked[0]!.peer, "b");
    assert.deepEqual(
      asked[0]!.flushed.map((f) => f.batchId),
      ["x"],
    );
    assert.equal(lag.m.isUpToDate, false, "not up to date while the points are not copied");
    // A failed sync leaves the round open.
    lag.m.step({ kind: "points-synced", peer: "b", round: asked[0]!.round, ok: false });
    assert.equal(lag.m.isUpToDate, false);
    // The host copies the points and adopts the id (here: installs the batch as the engine's repair would).
    const installed = lag.store.install(b, "committed", ballot(0n, ""), []);
    assert.equal(installed.kind, "ok");
    lag.m.step({ kind: "points-synced", peer: "b", round: asked[0]!.round, ok: true });
    assert.equal(lag.m.isUpToDate, true);
  });

  it("a batch held prepared here that the peer committed and flushed is committed here at once (a rebuild is not left waiting)", () => {
    const src = { store: new FlushedStore(), m: null as unknown as ReplicaMachine };
    src.m = new ReplicaMachine(
      { node: "b", shardId: 0, replicas: NODES, recoveryAfterMs: 100_000, recoveryRetryMs: 50, catchupIntervalMs: 1000, rebuilding: false, incarnation: 1 },
      src.store,
      new Hlc(clock),
    );
    const b = payload("x", [[1, 1]]);
    stepDurable(src.m, { kind: "receive", msg: prepare(b, ballot(10n)) });
    stepDurable(src.m, { kind: "receive", msg: { type: "commit", from: "g", hlc: 1n, shardId: 0, batchId: "x", sha256: b.sha256, ballot: ballot(10n) } });
    const lag = replica("a");
    stepDurable(lag.m, { kind: "receive", msg: prepare(b, ballot(10n)) }); // prepared here; the commit never came
    assert.equal(lag.store.lookup("x")?.state, "prepared");
    now = 40_000;
    const asked: Extract<ReplicaEffect, { kind: "sync-points" }>[] = [];
    route(lag, src, lag.m.step({ kind: "tick", nowMs: now }), (e) => asked.push(e));
    assert.equal(lag.store.lookup("x")?.state, "committed", "decided by the peer's answer, not left outstanding");
    assert.equal(asked.length, 0, "nothing left to copy by points");
    assert.equal(lag.m.isUpToDate, true);
  });
});
