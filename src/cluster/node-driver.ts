// Runs one node's protocol machines for real (docs/protocol.md): the
// ReplicaMachine of the shard this node replicates and the GatewayMachine of
// the writes it accepts. The machines are pure (`step(event) → effects`); this
// driver is their host, as test/cluster/sim/world.ts is in the simulator:
//
//   - `send` effects go out through the transport (to the peer's base URL from
//     membership); sends to this node are delivered locally, asynchronously
//     (never re-entrantly inside a step);
//   - `persist` effects are handed to `persist()` in emission order, and
//     `durable(token)` is fed back once that record *and every record before
//     it* are durable (so durable events arrive in WAL order);
//   - the transport's "connection refused" becomes the gateway's
//     `unreachable{node}`;
//   - ticks come from a timer with the real (or an injected) clock;
//   - `done` effects settle the promises of `write()`.
//
// No protocol decision is taken here. Host-level rules only: bounded queues
// (pending writes → 429, inbound messages dropped while the WAL is backed up,
// the local delivery queue), a client-side write timeout (503, outcome
// unknown), and fail-stop: if the WAL refuses a record or a machine throws,
// the driver stops taking events (a replica must never answer for a promise
// it could not make durable) and fails every pending write with 503.

import type { Logger } from "pino";
import type { Batch, EncodedBatch } from "../core/batch.js";
import { BadInputError, HqError, OverloadError, UnavailableError } from "../core/errors.js";
import type { Hlc } from "../core/hlc.js";
import type { Receipt } from "../core/receipt.js";
import { GatewayMachine, type GatewayEffect, type GatewayEvent } from "./protocol/gateway.js";
import { isGatewayMessage, type BatchPayload, type FlushedBatch, type Message, type NodeId } from "./protocol/messages.js";
import { ReplicaMachine, type ReplicaEffect, type ReplicaEvent } from "./protocol/replica.js";
import type { ReplicaLogRecord, ReplicaStore } from "./protocol/store.js";

/** What the driver needs from the transport (src/cluster/transport.ts `Transport` fits). */
export interface MessageSender {
  send(peerUrl: string, msg: Message): Promise<void> | void;
}

export interface DriverConfig {
  /** Gateway: how long a slow replica is waited for after the PREPARE fan-out. */
  readonly lagLimitMs: number;
  /** Gateway: how long a majority of votes is waited for (PREPAREs re-sent meanwhile) before 503. Below recoveryAfterMs. */
  readonly prepareTimeoutMs: number;
  /** Gateway: unanswered PREPAREs/COMMITs are re-sent this often. */
  readonly retransmitMs: number;
  /** Gateway: no majority of commit acks by then → 503 (the batch is decided; a retry gets the receipt). */
  readonly commitTimeoutMs: number;
  /** Gateway: restarts at a higher ballot when another attempt holds the batch. */
  readonly ballotRestartsMax: number;
  /** Replica: a prepared batch undecided this long is recovered. Well above lagLimitMs + commitTimeoutMs. */
  readonly recoveryAfterMs: number;
  /** Replica: a recovery round without a decision is retried after this long. */
  readonly recoveryRetryMs: number;
  /** Replica: anti-entropy period (and retry of a stalled catch-up round). */
  readonly catchupIntervalMs: number;
  /** Tick timer period. */
  readonly tickMs: number;
  /** A write without an outcome by then rejects with UnavailableError (outcome unknown; a retry with the same id is safe). */
  readonly writeTimeoutMs: number;
  /** Writes in flight through this gateway; more → OverloadError (429). */
  readonly maxPendingWrites: number;
  /** WAL records handed to persist() and not yet settled; past it inbound messages are dropped (peers re-send). */
  readonly maxPendingPersists: number;
  /** Local deliveries (self-sends, unreachable notices) waiting for the next turn of the event loop; past it they are dropped. */
  readonly maxDeferred: number;
}

export const DEFAULT_DRIVER_CONFIG: DriverConfig = Object.freeze({
  lagLimitMs: 200,
  prepareTimeoutMs: 3000,
  retransmitMs: 100,
  commitTimeoutMs: 2000,
  ballotRestartsMax: 3,
  recoveryAfterMs: 5000,
  recoveryRetryMs: 1000,
  catchupIntervalMs: 10_000,
  tickMs: 50,
  writeTimeoutMs: 10_000,
  maxPendingWrites: 1024,
  maxPendingPersists: 65_536,
  maxDeferred: 65_536,
});

export interface DriverDeps {
  readonly nodeId: NodeId;
  readonly shardId: number;
  /** The shard's replica set (node ids from the shard map), this node included. */
  readonly replicas: readonly NodeId[];
  /** A node's base URL (membership); null = unknown (the message is dropped and counted). */
  peerUrl(nodeId: NodeId): string | null;
  /** The replica's storage (EngineStore, or MemoryStore in tests). Its state changes happen inside `step`. */
  readonly store: ReplicaStore;
  /**
   * Appends one record to the WAL. Called in emission order, never concurrently out of order. Resolves when the
   * record is durable (sync) or queued (not sync); a rejection stops the driver (fail-stop).
   */
  persist(record: ReplicaLogRecord, sync: boolean): Promise<void>;
  readonly transport: MessageSender;
  readonly hlc: Hlc;
  /** Bumped durably by the host at every start. */
  readonly incarnation: number;
  /** Started from an empty disk (no "rebuilt" record in the WAL): rebuild from every peer before voting. */
  readonly rebuilding: boolean;
  readonly clock?: { nowMs(): number };
  readonly log: Logger;
  readonly config?: Partial<DriverConfig>;
  /**
   * Copies every committed point the peer (base URL) holds that this node lacks, then adopts the ids of `flushed`
   * as committed, durably (a peer's flushed batches travel by points). Absent: such catch-up never completes.
   */
  syncPoints?(peerUrl: string, flushed: readonly FlushedBatch[]): Promise<void>;
}

export interface DriverStats {
  readonly nodeId: NodeId;
  readonly shardId: number;
  readonly state: "new" | "running" | "stopped" | "failed";
  readonly failure: string | null;
  /** write() calls waiting for an outcome (identical concurrent calls share one gateway attempt). */
  readonly pendingWrites: number;
  /** Writes the gateway machine still works on (includes those whose caller timed out). */
  readonly gatewayInflight: number;
  /** Batches held prepared here whose fate is not known yet. */
  readonly undecided: number;
  readonly upToDate: boolean;
  /** Batches behind the peers: outstanding in the catch-up round in progress, else fetched by the last one. */
  readonly lagBatches: number;
  readonly rebuilding: boolean;
  readonly persistsPending: number;
  readonly persisted: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  readonly localDelivered: number;
  readonly unreachable: number;
  readonly dropped: { readonly inboundBackpressure: number; readonly inboundNotRunning: number; readonly otherShard: number; readonly noPeerUrl: number; readonly deferredFull: number };
}

interface Waiter {
  readonly resolve: (r: Receipt) => void;
  readonly reject: (e: HqError) => void;
  readonly timer: NodeJS.Timeout;
}

/** One attempt of the gateway machine, and every write() call waiting for it (identical requests share it). */
interface PendingWrite {
  readonly key: string;
  readonly batchId: string;
  readonly waiters: Waiter[];
}

export class NodeDriver {
  private readonly cfg: DriverConfig;
  private readonly clock: { nowMs(): number };
  private readonly replica: ReplicaMachine;
  private readonly gateway: GatewayMachine;
  private readonly log: Logger;
  private state: "new" | "running" | "stopped" | "failed" = "new";
  private failure: Error | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stepping = false;
  private readonly syncingPeers = new Set<NodeId>();
  private deferred: (() => void)[] = [];
  private drainScheduled = false;
  private readonly pending = new Map<number, PendingWrite>();
  /** batchId + sha256 → the reqId of the attempt in flight for exactly that content. */
  private readonly inflightByKey = new Map<string, number>();
  private waiters = 0;
  private nextReq = 1;
  private persistChain: Promise<void> = Promise.resolve();
  private persistsPending = 0;
  private readonly counters = {
    persisted: 0,
    messagesIn: 0,
    messagesOut: 0,
    localDelivered: 0,
    unreachable: 0,
    inboundBackpressure: 0,
    inboundNotRunning: 0,
    otherShard: 0,
    noPeerUrl: 0,
    deferredFull: 0,
  };

  constructor(private readonly deps: DriverDeps) {
    this.cfg = { ...DEFAULT_DRIVER_CONFIG, ...deps.config };
    this.clock = deps.clock ?? { nowMs: () => Date.now() };
    this.log = deps.log.child({ component: "node-driver", node: deps.nodeId, shard: deps.shardId });
    if (!deps.replicas.includes(deps.nodeId)) throw new BadInputError(`node ${deps.nodeId} is not a replica of shard ${deps.shardId}`, { field: "replicas" });
    const c = this.cfg;
    this.replica = new ReplicaMachine(
      {
        node: deps.nodeId,
        shardId: deps.shardId,
        replicas: deps.replicas,
        recoveryAfterMs: c.recoveryAfterMs,
        recoveryRetryMs: c.recoveryRetryMs,
        catchupIntervalMs: c.catchupIntervalMs,
        rebuilding: deps.rebuilding,
        incarnation: deps.incarnation,
      },
      deps.store,
      deps.hlc,
    );
    this.gateway = new GatewayMachine(
      { node: deps.nodeId, lagLimitMs: c.lagLimitMs, prepareTimeoutMs: c.prepareTimeoutMs, retransmitMs: c.retransmitMs, commitTimeoutMs: c.commitTimeoutMs, ballotRestartsMax: c.ballotRestartsMax, incarnation: deps.incarnation },
      deps.hlc,
    );
  }

  /** Starts the clock: a first tick at once (catch-up begins), then every tickMs (unref'd timer). */
  start(): void {
    if (this.state !== "new") return;
    this.state = "running";
    this.tick();
    this.timer = setInterval(() => this.tick(), this.cfg.tickMs);
    this.timer.unref();
  }

  /** An inbound message (from the transport's route). Dispatched to the gateway or replica machine by type. */
  onMessage(msg: Message): void {
    if (this.state !== "running") {
      this.counters.inboundNotRunning++;
      return;
    }
    if (msg.shardId !== this.deps.shardId) {
      this.counters.otherShard++;
      this.log.debug({ type: msg.type, from: msg.from, msgShard: msg.shardId }, "message for another shard dropped");
      return;
    }
    if (this.persistsPending >= this.cfg.maxPendingPersists) {
      // The WAL is behind: taking more work would grow memory without bound. Peers re-send (retransmit, recovery).
      this.counters.inboundBackpressure++;
      return;
    }
    this.counters.messagesIn++;
    this.dispatch(msg);
  }

  /** Stored data was lost while running (a damaged block taken out): stop voting and rebuild from every peer. */
  dataLost(): void {
    this.log.warn("stored data lost: rebuilding from every peer before voting again");
    this.stepReplica({ kind: "data-lost" });
  }

  /** The transport could not connect to `peerUrl` (wire it to Transport's `onUnreachable`). */
  onUnreachable(peerUrl: string): void {
    if (this.state !== "running") return;
    const nodes = this.nodesAt(peerUrl);
    if (nodes.length === 0) return;
    this.counters.unreachable++;
    // Deferred: the transport may call back while we execute effects; never step re-entrantly.
    for (const node of nodes) this.defer(() => this.stepGateway({ kind: "unreachable", node }));
  }

  /**
   * Writes one batch through this node's gateway. `encoded` must be `encodeWithDigest(batch)` (its digest names
   * the content). Resolves with the receipt; rejects with the machine's typed error (ConflictError 409,
   * UnavailableError 503 retryable), OverloadError (429) when too many writes are pending, or UnavailableError
   * when no outcome came within writeTimeoutMs (outcome unknown: retry with the same batch id).
   * A call identical (batch id and digest) to one in flight on this node joins that attempt rather than starting a
   * competing one; its receipt is marked `duplicate` (accepted 0).
   */
  write(batch: Batch, batchId: string, encoded: EncodedBatch): Promise<Receipt> {
    if (this.state !== "running")
      return Promise.reject(new UnavailableError(`node ${this.deps.nodeId} is not accepting writes (${this.state})`, 1, { details: { batchId } }));
    if (batch.shardId !== this.deps.shardId)
      return Promise.reject(new BadInputError(`batch for shard ${batch.shardId} sent to the driver of shard ${this.deps.shardId}`, { field: "shardId" }));
    if (this.waiters >= this.cfg.maxPendingWrites)
      return Promise.reject(new OverloadError(`${this.waiters} writes pending on node ${this.deps.nodeId}; retry later`));
    const { sha256 } = encoded;
    const key = `${batchId}\u0000${sha256}`;
    return new Promise<Receipt>((resolve, reject) => {
      // Single flight: a request identical (id and content) to one this gateway is already writing joins that attempt
      // instead of starting a competing one at another ballot. Its receipt then says duplicate (the other stored it).
      const joined = this.inflightByKey.get(key);
      const reqId = joined ?? this.nextReq++;
      let pw = joined === undefined ? undefined : this.pending.get(joined);
      if (pw === undefined) {
        pw = { key, batchId, waiters: [] };
        this.pending.set(reqId, pw);
        this.inflightByKey.set(key, reqId);
      }
      const entry = pw;
      const follower = joined !== undefined;
      const waiter: Waiter = {
        resolve: follower ? (r) => resolve({ ...r, duplicate: true, accepted: 0, duplicates: r.samples }) : resolve,
        reject,
        timer: setTimeout(() => {
          const i = entry.waiters.indexOf(waiter);
          if (i < 0) return;
          entry.waiters.splice(i, 1);
          this.waiters--;
          reject(
            new UnavailableError(`batch ${batchId}: no outcome within ${this.cfg.writeTimeoutMs} ms; its fate is unknown, retry with the same batch id`, 1, {
              details: { batchId },
            }),
          );
        }, this.cfg.writeTimeoutMs),
      };
      entry.waiters.push(waiter);
      this.waiters++;
      if (follower) return;
      const payload: BatchPayload = { batchId, shardId: this.deps.shardId, sha256, hlc: this.deps.hlc.now(), bytes: encoded.bytes };
      this.stepGateway({ kind: "write", req: { reqId, batch: payload, samples: batch.sampleCount, replicas: this.deps.replicas } });
    });
  }

  /**
   * Stops ticking and taking events; pending writes reject with UnavailableError (outcome unknown). Resolves once
   * every persist() handed out has settled. The transport is not closed (it may be shared).
   */
  async stop(): Promise<void> {
    if (this.state === "new" || this.state === "running") this.state = "stopped";
    this.halt(new UnavailableError(`node ${this.deps.nodeId} is stopping; the write's fate is unknown, retry with the same batch id`));
    await this.persistChain.catch(() => undefined);
  }

  stats(): DriverStats {
    const c = this.counters;
    return {
      nodeId: this.deps.nodeId,
      shardId: this.deps.shardId,
      state: this.state,
      failure: this.failure === null ? null : this.failure.message,
      pendingWrites: this.waiters,
      gatewayInflight: this.gateway.inflight,
      undecided: this.replica.undecided,
      upToDate: this.replica.isUpToDate,
      lagBatches: this.replica.lagBatches,
      rebuilding: this.replica.isRebuilding,
      persistsPending: this.persistsPending,
      persisted: c.persisted,
      messagesIn: c.messagesIn,
      messagesOut: c.messagesOut,
      localDelivered: c.localDelivered,
      unreachable: c.unreachable,
      dropped: { inboundBackpressure: c.inboundBackpressure, inboundNotRunning: c.inboundNotRunning, otherShard: c.otherShard, noPeerUrl: c.noPeerUrl, deferredFull: c.deferredFull },
    };
  }

  // ---- events --------------------------------------------------------------

  private tick(): void {
    const nowMs = this.clock.nowMs();
    this.stepReplica({ kind: "tick", nowMs });
    this.stepGateway({ kind: "tick", nowMs });
  }

  private dispatch(msg: Message): void {
    if (isGatewayMessage(msg)) this.stepGateway({ kind: "receive", msg });
    else this.stepReplica({ kind: "receive", msg });
  }

  private stepReplica(ev: ReplicaEvent): void {
    this.run(() => this.replica.step(ev), (effects) => this.replicaEffects(effects));
  }

  private stepGateway(ev: GatewayEvent): void {
    this.run(() => this.gateway.step(ev), (effects) => this.gatewayEffects(effects));
  }

  /** One step and its effects, never nested: an event arriving meanwhile (a synchronous callback) is deferred. */
  private run<E>(step: () => E[], execute: (effects: E[]) => void): void {
    if (this.state !== "running") return;
    if (this.stepping) {
      this.defer(() => this.run(step, execute));
      return;
    }
    this.stepping = true;
    try {
      execute(step());
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    } finally {
      this.stepping = false;
    }
  }

  private defer(fn: () => void): void {
    if (this.deferred.length >= this.cfg.maxDeferred) {
      this.counters.deferredFull++; // like a lost message: the protocol re-sends what it must
      return;
    }
    this.deferred.push(fn);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.drainScheduled = false;
    // Only what is queued now: deliveries these cause wait for the next turn, so I/O is not starved.
    const batch = this.deferred;
    this.deferred = [];
    for (const fn of batch) {
      if (this.state !== "running") return;
      fn();
    }
  }

  // ---- effects ---------------------------------------------------------------

  private replicaEffects(effects: ReplicaEffect[]): void {
    for (const e of effects) {
      if (e.kind === "send") this.send(e.to, e.msg);
      else if (e.kind === "sync-points") this.syncPoints(e.peer, e.round, e.flushed);
      else this.persist(e.token, e.record, e.sync);
    }
  }

  /** At most one point sync per peer at a time; a request meanwhile fails its round (retried by the next one). */
  private syncPoints(peer: NodeId, round: number, flushed: readonly FlushedBatch[]): void {
    const url = this.deps.peerUrl(peer);
    const done = (ok: boolean): void => this.defer(() => this.stepReplica({ kind: "points-synced", peer, round, ok }));
    if (url === null || this.deps.syncPoints === undefined || this.syncingPeers.has(peer)) return done(false);
    this.syncingPeers.add(peer);
    const started = Date.now();
    this.deps.syncPoints(url, flushed).then(
      () => {
        this.syncingPeers.delete(peer);
        this.log.info({ peer, round, flushed: flushed.length, ms: Date.now() - started }, "point sync done");
        done(true);
      },
      (e: unknown) => {
        this.syncingPeers.delete(peer);
        this.log.warn({ peer, round, err: e instanceof Error ? e.message : String(e) }, "point sync failed; the next catch-up round retries");
        done(false);
      },
    );
  }

  private gatewayEffects(effects: GatewayEffect[]): void {
    for (const e of effects) {
      if (e.kind === "send") {
        this.send(e.to, e.msg);
        continue;
      }
      const p = this.takePending(e.reqId);
      if (p === undefined) continue; // the driver stopped
      for (const w of p.waiters) {
        clearTimeout(w.timer);
        if (e.result.ok) w.resolve(e.result.receipt);
        else w.reject(e.result.error);
      }
    }
  }

  private send(to: NodeId, msg: Message): void {
    this.counters.messagesOut++;
    if (to === this.deps.nodeId) {
      this.defer(() => {
        this.counters.localDelivered++;
        this.dispatch(msg);
      });
      return;
    }
    const url = this.deps.peerUrl(to);
    if (url === null) {
      this.counters.noPeerUrl++;
      this.log.debug({ to, type: msg.type }, "no URL known for the peer; message dropped");
      return;
    }
    try {
      const r = this.deps.transport.send(url, msg);
      if (r instanceof Promise) r.catch((e: unknown) => this.log.warn({ err: e, to, type: msg.type }, "send failed"));
    } catch (e) {
      this.log.warn({ err: e, to, type: msg.type }, "send failed");
    }
  }

  /**
   * Hands the record to the WAL now (emission order); feeds `durable(token)` back once it and every earlier record
   * are settled, so durable events arrive in log order. Non-sync records need no answer (the machine ignores them).
   */
  private persist(token: number, record: ReplicaLogRecord, sync: boolean): void {
    let p: Promise<void>;
    try {
      p = this.deps.persist(record, sync);
    } catch (e) {
      p = Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    this.persistsPending++;
    const prev = this.persistChain;
    this.persistChain = Promise.all([prev, p]).then(
      () => {
        this.persistsPending--;
        this.counters.persisted++;
        if (sync) this.stepReplica({ kind: "durable", token });
      },
      (e: unknown) => {
        this.persistsPending--;
        this.fail(e instanceof Error ? e : new Error(String(e)));
        throw e; // every later record in the chain fails too: nothing after a lost record is reported durable
      },
    );
    this.persistChain.catch(() => undefined);
  }

  // ---- failure -----------------------------------------------------------------

  private fail(err: Error): void {
    if (this.state === "failed") return;
    const wasRunning = this.state === "running";
    this.state = "failed";
    this.failure = err;
    if (wasRunning) this.log.error({ err }, "node driver stopped: a WAL record or a protocol step failed (fail-stop)");
    this.halt(new UnavailableError(`node ${this.deps.nodeId} failed (${err.message}); the write's fate is unknown, retry with the same batch id`, 1, { cause: err }));
  }

  private halt(err: UnavailableError): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.deferred = [];
    const pending = [...this.pending.keys()].map((id) => this.takePending(id)!);
    for (const p of pending)
      for (const w of p.waiters) {
        clearTimeout(w.timer);
        w.reject(new UnavailableError(err.message, 1, { cause: err.cause, details: { batchId: p.batchId } }));
      }
  }

  private takePending(reqId: number): PendingWrite | undefined {
    const p = this.pending.get(reqId);
    if (p === undefined) return undefined;
    this.pending.delete(reqId);
    if (this.inflightByKey.get(p.key) === reqId) this.inflightByKey.delete(p.key);
    this.waiters -= p.waiters.length;
    return p;
  }

  private nodesAt(peerUrl: string): NodeId[] {
    const norm = (u: string): string => {
      try {
        return new URL(u).href;
      } catch {
        return u;
      }
    };
    const want = norm(peerUrl);
    return this.deps.replicas.filter((n) => {
      if (n === this.deps.nodeId) return false;
      const u = this.deps.peerUrl(n);
      return u !== null && (u === peerUrl || norm(u) === want);
    });
  }
}
