// Deterministic simulation of one shard replicated on 3 nodes (docs/protocol.md,
// "Simulation"): simulated clock, a network that loses, delays, duplicates and
// reorders messages and partitions nodes, disks whose unsynced tail is lost
// (or torn) in a crash, restarts from the durable log, wipes, and clients that
// write, retry through other gateways and race conflicting writes.

import { BatchBuilder, batchDigest, encodeBatch } from "../../../src/core/batch.js";
import { ConflictError, type HqError } from "../../../src/core/errors.js";
import { Hlc } from "../../../src/core/hlc.js";
import { DEFAULT_LIMITS } from "../../../src/core/limits.js";
import { GatewayMachine, type GatewayEffect, type WriteResult } from "../../../src/cluster/protocol/gateway.js";
import { isGatewayMessage, type BatchPayload, type Message, type NodeId } from "../../../src/cluster/protocol/messages.js";
import { ReplicaMachine, type ReplicaEffect } from "../../../src/cluster/protocol/replica.js";
import { applyLogRecord, MemoryStore, type ReplicaLogRecord } from "../../../src/cluster/protocol/store.js";
import { Prng } from "./prng.js";

export interface SimOptions {
  seed: number;
  nodes: number;
  writes: number;
  chaosMs: number;
  healMs: number; // after chaos: network healed, everyone restarted; recovery + catch-up must quiesce within this
  dropP: number;
  dupP: number;
  slowP: number;
  crashP: number; // per node per tick-interval during chaos
  wipeP: number; // chance a restart comes back with an empty disk
  partitionP: number;
  verbose: boolean;
}

export const DEFAULT_SIM: Omit<SimOptions, "seed"> = {
  nodes: 3,
  writes: 8,
  chaosMs: 400,
  healMs: 3000,
  dropP: 0.05,
  dupP: 0.03,
  slowP: 0.05,
  crashP: 0.01,
  wipeP: 0.2,
  partitionP: 0.01,
  verbose: false,
};

const TICK_MS = 5;
const SHARD = 0;

interface DiskRec {
  record: ReplicaLogRecord;
  token: number;
  sync: boolean;
}

interface SimNode {
  id: NodeId;
  alive: boolean;
  epoch: number; // bumped at every crash: events scheduled before it are void
  incarnation: number;
  disk: DiskRec[];
  durableLen: number;
  reported: number; // sync tokens reported durable up to this disk index
  hlc: Hlc;
  store: MemoryStore;
  replica: ReplicaMachine;
  gateway: GatewayMachine;
  wiped: boolean;
}

interface Ev {
  at: number;
  seq: number;
  run: () => void;
}

export interface ClientOp {
  opId: number;
  writeNo: number;
  batch: BatchPayload;
  samples: number;
  attempts: number;
  outcome: "pending" | "acked" | "conflict" | "unavailable" | "gave-up";
  error?: HqError;
}

export interface SimResult {
  seed: number;
  ops: ClientOp[];
  nodes: SimNode[];
  log: string[];
  quiescent: boolean;
  endMs: number;
  messages: number;
}

export class World {
  readonly rng: Prng;
  now = 0;
  private seq = 0;
  private queue: Ev[] = [];
  readonly nodes: SimNode[] = [];
  readonly ids: NodeId[];
  private blocked = new Set<string>();
  readonly ops: ClientOp[] = [];
  private nextReq = 1;
  private reqToOp = new Map<number, { op: ClientOp; node: NodeId; epoch: number }>();
  readonly log: string[] = [];
  messages = 0;
  healed = false;

  constructor(readonly o: SimOptions) {
    this.rng = new Prng(o.seed);
    this.ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
    for (const id of this.ids) {
      // A bootstrapped cluster: every node starts with an empty, already "rebuilt" log.
      const n = { id, alive: false, epoch: 0, incarnation: 0, disk: [{ record: { type: "rebuilt" }, token: 0, sync: true }], durableLen: 1, reported: 1, wiped: false } as unknown as SimNode;
      this.nodes.push(n);
      this.boot(n);
    }
  }

  trace(s: string): void {
    if (this.o.verbose) this.log.push(`${String(this.now).padStart(5)} ${s}`);
  }

  at(delay: number, run: () => void): void {
    const ev = { at: this.now + delay, seq: this.seq++, run };
    // insertion keeping (at, seq) order; queues stay small
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const q = this.queue[mid]!;
      if (q.at < ev.at || (q.at === ev.at && q.seq < ev.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, ev);
  }

  node(id: NodeId): SimNode {
    return this.nodes.find((n) => n.id === id)!;
  }

  // ---- node lifecycle ------------------------------------------------------

  private boot(n: SimNode): void {
    n.incarnation++;
    n.alive = true;
    const clock = { nowMs: () => this.now };
    n.hlc = new Hlc(clock);
    n.store = new MemoryStore();
    let maxT = 0n;
    for (const d of n.disk) {
      applyLogRecord(n.store, d.record);
      const r = d.record;
      if ("ballot" in r) maxT = r.ballot.t > maxT ? r.ballot.t : maxT;
      if (r.type === "prepare" && r.batch.hlc > maxT) maxT = r.batch.hlc;
    }
    n.hlc.observe(maxT);
    const rebuilding = !n.disk.some((d) => d.record.type === "rebuilt");
    n.replica = new ReplicaMachine(
      { node: n.id, shardId: SHARD, replicas: this.ids, recoveryAfterMs: 80, recoveryRetryMs: 40, catchupIntervalMs: 100, rebuilding, incarnation: n.incarnation },
      n.store,
      n.hlc,
    );
    n.gateway = new GatewayMachine({ node: n.id, lagLimitMs: 25, prepareTimeoutMs: 100, retransmitMs: 10, commitTimeoutMs: 80, ballotRestartsMax: 3, incarnation: n.incarnation }, n.hlc);
    this.trace(`${n.id} boot #${n.incarnation}${rebuilding ? " (rebuilding: empty disk)" : ""} records=${n.disk.length}`);
  }

  crash(n: SimNode): void {
    if (!n.alive) return;
    n.alive = false;
    n.epoch++;
    // Lost: everything not fsynced, except a random prefix of the unsynced tail the OS happened to write; the last of
    // those may be torn, which loses it too (CRC check at replay).
    const extra = this.rng.chance(0.5) ? 0 : this.rng.int(0, n.disk.length - n.durableLen);
    const keep = n.durableLen + extra;
    const lost = n.disk.length - keep;
    n.disk = n.disk.slice(0, keep);
    n.durableLen = keep;
    n.reported = keep;
    this.trace(`${n.id} CRASH (lost ${lost} unsynced records)`);
    for (const [req, r] of this.reqToOp) if (r.node === n.id) this.reqToOp.delete(req); // the client sees a dropped connection (timeout)
  }

  restart(n: SimNode, wipe: boolean): void {
    if (n.alive) return;
    // The fault model: at most one replica's disk lost at a time. Wiping a second before the first has rebuilt can
    // destroy both copies of a batch acked on exactly a majority, which no majority protocol survives.
    if (wipe && this.nodes.some((x) => x !== n && (!x.alive || x.replica.isRebuilding))) wipe = false;
    if (wipe) {
      n.disk = [];
      n.durableLen = 0;
      n.reported = 0;
      this.trace(`${n.id} WIPED`);
    }
    this.boot(n);
  }

  // ---- effects -------------------------------------------------------------

  private replicaEffects(n: SimNode, effects: ReplicaEffect[]): void {
    for (const e of effects) {
      if (e.kind === "send") this.sendMsg(n.id, e.to, e.msg);
      else if (e.kind === "sync-points") {
        // MemoryStore keeps every batch's bytes, so a flushed batch never comes up; a rebuild still asks for a full
        // point sync with every peer, which catch-up by id has already made a no-op here: report it done, later.
        if (e.flushed.length !== 0) throw new Error("the simulator's MemoryStore never reports flushed batches");
        const epoch = n.epoch;
        this.at(this.rng.int(1, 8), () => {
          if (n.epoch === epoch && n.alive) this.replicaEffects(n, n.replica.step({ kind: "points-synced", peer: e.peer, round: e.round, ok: true }));
        });
      }
      else {
        n.disk.push({ record: e.record, token: e.token, sync: e.sync });
        if (e.sync) {
          const upto = n.disk.length;
          const epoch = n.epoch;
          this.at(this.rng.int(1, 8), () => this.fsyncDone(n, epoch, upto));
        }
      }
    }
  }

  private fsyncDone(n: SimNode, epoch: number, upto: number): void {
    if (n.epoch !== epoch || !n.alive) return;
    if (upto > n.durableLen) n.durableLen = upto;
    const tokens: number[] = [];
    for (let i = n.reported; i < n.durableLen; i++) if (n.disk[i]!.sync) tokens.push(n.disk[i]!.token);
    n.reported = Math.max(n.reported, n.durableLen);
    for (const t of tokens) this.replicaEffects(n, n.replica.step({ kind: "durable", token: t }));
  }

  private gatewayEffects(n: SimNode, effects: GatewayEffect[]): void {
    for (const e of effects) {
      if (e.kind === "send") this.sendMsg(n.id, e.to, e.msg);
      else this.writeDone(e.reqId, e.result);
    }
  }

  private link(a: NodeId, b: NodeId): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  private sendMsg(from: NodeId, to: NodeId, msg: Message): void {
    this.messages++;
    const src = this.node(from);
    const dst = this.node(to);
    const srcEpoch = src.epoch;
    if (from === to) {
      this.at(0, () => src.epoch === srcEpoch && this.deliver(dst, msg));
      return;
    }
    if (!dst.alive) {
      // Connection refused (most of the time) or a silent loss.
      if (isGatewayMessage(msg) || msg.type !== "prepare" || this.rng.chance(0.3)) return;
      this.at(1, () => src.alive && src.epoch === srcEpoch && this.gatewayEffects(src, src.gateway.step({ kind: "unreachable", node: to })));
      return;
    }
    if (this.blocked.has(this.link(from, to))) return;
    const chaos = !this.healed;
    if (chaos && this.rng.chance(this.o.dropP)) return;
    const copies = chaos && this.rng.chance(this.o.dupP) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = chaos && this.rng.chance(this.o.slowP) ? this.rng.int(20, 60) : this.rng.int(1, 6);
      this.at(delay, () => this.deliver(dst, msg));
    }
  }

  private deliver(n: SimNode, msg: Message): void {
    if (!n.alive) return;
    if (isGatewayMessage(msg)) this.gatewayEffects(n, n.gateway.step({ kind: "receive", msg }));
    else this.replicaEffects(n, n.replica.step({ kind: "receive", msg }));
  }

  // ---- clients -------------------------------------------------------------

  makeBatch(writeNo: number): { batch: BatchPayload; samples: number } {
    const b = new BatchBuilder(DEFAULT_LIMITS);
    const k = this.rng.int(1, 3);
    for (let i = 0; i < k; i++) {
      const s = this.rng.int(0, 2);
      b.add(
        [
          ["__name__", "m"],
          ["s", String(s)],
        ],
        BigInt(this.rng.int(1, 8)),
        this.rng.int(1, 2),
      );
    }
    let built;
    try {
      built = b.build({ shardId: SHARD });
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      return this.makeBatch(writeNo);
    }
    const bytes = encodeBatch(built);
    const sha = batchDigest(bytes);
    return { batch: { batchId: `w${writeNo}`, shardId: SHARD, sha256: sha, hlc: 0n, bytes }, samples: built.sampleCount };
  }

  submit(op: ClientOp): void {
    const alive = this.nodes.filter((n) => n.alive);
    if (alive.length === 0) {
      this.at(20, () => this.submit(op));
      return;
    }
    const g = this.rng.pick(alive);
    op.attempts++;
    const reqId = this.nextReq++;
    this.latestReq.set(op.opId, reqId);
    this.reqToOp.set(reqId, { op, node: g.id, epoch: g.epoch });
    const batch = { ...op.batch, hlc: g.hlc.now() };
    this.trace(`client op${op.opId} (${op.batch.batchId}) attempt ${op.attempts} via ${g.id} req${reqId}`);
    this.gatewayEffects(g, g.gateway.step({ kind: "write", req: { reqId, batch, samples: op.samples, replicas: this.ids } }));
    // A client timeout: the gateway died or hangs.
    this.at(400, () => {
      if (!this.reqToOp.has(reqId) && op.outcome === "pending" && this.isLatest(op, reqId)) this.retry(op);
    });
  }

  private latestReq = new Map<number, number>();
  private isLatest(op: ClientOp, reqId: number): boolean {
    return this.latestReq.get(op.opId) === reqId;
  }

  private retry(op: ClientOp): void {
    if (op.attempts >= 6) {
      op.outcome = "gave-up";
      return;
    }
    this.at(this.rng.int(10, 60), () => this.submit(op));
  }

  private writeDone(reqId: number, result: WriteResult): void {
    const r = this.reqToOp.get(reqId);
    if (r === undefined) return;
    this.reqToOp.delete(reqId);
    const op = r.op;
    if (result.ok) {
      this.trace(`client op${op.opId} ${op.batch.batchId} ACKED dup=${result.receipt.duplicate} replicas=${result.receipt.replicas.join(",")}`);
      if (op.outcome === "pending" || op.outcome === "unavailable") op.outcome = "acked";
      return;
    }
    op.error = result.error;
    this.trace(`client op${op.opId} ${op.batch.batchId} ${result.error.code}: ${result.error.message}`);
    if (result.error.code === "conflict") {
      if (op.outcome === "pending" || op.outcome === "unavailable") op.outcome = "conflict";
      return;
    }
    if (op.outcome === "pending") op.outcome = "unavailable";
    if (this.isLatest(op, reqId)) {
      op.outcome = "pending";
      this.retry(op);
    }
  }

  // ---- the run -------------------------------------------------------------

  run(): SimResult {
    const o = this.o;
    let opId = 0;
    for (let w = 0; w < o.writes; w++) {
      const { batch, samples } = this.makeBatch(w);
      const first = this.rng.int(0, o.chaosMs - 50);
      const op: ClientOp = { opId: opId++, writeNo: w, batch, samples, attempts: 0, outcome: "pending" };
      this.ops.push(op);
      this.at(first, () => this.submit(op));
      // Sometimes a second client sends the very same batch (same id, same content) at about the same time.
      if (this.rng.chance(0.25)) {
        const twin: ClientOp = { opId: opId++, writeNo: w, batch, samples, attempts: 0, outcome: "pending" };
        this.ops.push(twin);
        this.at(first + this.rng.int(0, 30), () => this.submit(twin));
      }
    }
    for (let t = 0; t <= o.chaosMs + o.healMs; t += TICK_MS) this.at(t, () => this.tick());
    this.at(o.chaosMs, () => this.heal());
    let quiescentAt = -1;
    while (this.queue.length > 0) {
      const ev = this.queue.shift()!;
      this.now = ev.at;
      ev.run();
      if (this.healed && this.now % 50 === 0 && this.isQuiescent()) {
        quiescentAt = this.now;
        break;
      }
    }
    return { seed: o.seed, ops: this.ops, nodes: this.nodes, log: this.log, quiescent: quiescentAt >= 0, endMs: this.now, messages: this.messages };
  }

  private tick(): void {
    if (!this.healed) this.chaos();
    for (const n of this.nodes) {
      if (!n.alive) continue;
      this.replicaEffects(n, n.replica.step({ kind: "tick", nowMs: this.now }));
      this.gatewayEffects(n, n.gateway.step({ kind: "tick", nowMs: this.now }));
    }
  }

  private chaos(): void {
    const o = this.o;
    for (const n of this.nodes) {
      if (n.alive && this.rng.chance(o.crashP)) {
        // Keep a majority possible most of the time: at most one node down during chaos, now and then two.
        const down = this.nodes.filter((x) => !x.alive).length;
        if (down === 0 || this.rng.chance(0.2)) {
          this.crash(n);
          const wipe = this.rng.chance(o.wipeP);
          this.at(this.rng.int(20, 150), () => this.restart(n, wipe));
        }
      }
    }
    if (this.rng.chance(o.partitionP)) {
      const a = this.rng.pick(this.ids);
      const b = this.rng.pick(this.ids.filter((x) => x !== a));
      const l = this.link(a, b);
      this.blocked.add(l);
      this.trace(`partition ${l}`);
      this.at(this.rng.int(20, 200), () => this.blocked.delete(l));
    }
  }

  private heal(): void {
    this.healed = true;
    this.blocked.clear();
    this.trace("HEAL: network healed, everyone restarted");
    for (const n of this.nodes) if (!n.alive) this.restart(n, false);
  }

  isQuiescent(): boolean {
    if (this.ops.some((op) => op.outcome === "pending")) return false;
    for (const n of this.nodes) {
      if (!n.alive || !n.replica.isUpToDate || n.replica.undecided > 0 || n.gateway.inflight > 0) return false;
    }
    // every replica holds the same committed set
    // (by id: different attempts of one batch carry different gateway HLCs; see docs/protocol.md, open questions)
    const sets = this.nodes.map((n) => n.store.summaries("committed").map((s) => `${s.batchId}:${s.sha256}`).sort().join(","));
    return sets.every((s) => s === sets[0]);
  }
}
