// The replica side of the protocol as a pure state machine (etcd/raft style):
// `step(event)` takes a received message, a durable completion or a clock tick
// and returns effects (messages to send, log records to append). No I/O, no
// timers, no randomness: the host (the node, or the simulator) does those.
//
// Every answer that promises something (a vote, a fence) is sent only after
// the log records behind it are durable: replies wait in `afterDurable`.

import { assert } from "../../core/assert.js";
import { Hlc } from "../../core/hlc.js";
import { CatchupRound, digestMatches, missingFrom } from "./catchup.js";
import {
  compareBallot,
  type Ballot,
  type FetchedBatch,
  type Message,
  type NodeId,
  type ReplicaInbound,
  type StatusAnswer,
  type StatusMsg,
  type PrepareMsg,
  type PrepareAnswer,
  type CommitMsg,
  type AbortMsg,
  type StatusReplyMsg,
  type CatchupListMsg,
  type CatchupListReplyMsg,
  type FetchMsg,
  type FetchReplyMsg,
  type FlushedBatch,
  type PrepareReplyMsg,
} from "./messages.js";
import { decideRecovery, majorityOf } from "./recovery.js";
import type { ReplicaLogRecord, ReplicaStore } from "./store.js";

export interface ReplicaConfig {
  readonly node: NodeId;
  readonly shardId: number;
  /** The shard's replica set, this node included. */
  readonly replicas: readonly NodeId[];
  /** A prepared batch undecided this long (local time) is recovered. Well above a gateway's lag limit. */
  readonly recoveryAfterMs: number;
  /** A recovery round without a decision is retried after this long. */
  readonly recoveryRetryMs: number;
  /** Anti-entropy: a catch-up round this often once up to date; a stalled round is retried after this long. */
  readonly catchupIntervalMs: number;
  /**
   * After a complete round, later rounds list only batches stamped from (that round's start - this overlap): the
   * lists stay small however many batches the shard holds. A batch committed later than this after its stamp is
   * not seen by id (point sync and anti-entropy compare points instead). Default 10 minutes.
   */
  readonly catchupOverlapMs?: number;
  /** Started from an empty disk (new or wiped): rebuild from every peer before voting. */
  readonly rebuilding: boolean;
  /** Bumped (durably, by the host) at every start of the node, so that ballots stay unique across restarts. */
  readonly incarnation: number;
}

export type ReplicaEvent =
  | { readonly kind: "receive"; readonly msg: ReplicaInbound }
  | { readonly kind: "durable"; readonly token: number }
  | { readonly kind: "tick"; readonly nowMs: number }
  /** The host finished (ok) or gave up on a "sync-points" effect: the peer's committed points are copied here. */
  | { readonly kind: "points-synced"; readonly peer: NodeId; readonly round: number; readonly ok: boolean }
  /**
   * The host lost stored data while running (a damaged block taken out): rebuild as after a wiped disk — stop voting,
   * hear from every peer, copy their points — before voting again.
   */
  | { readonly kind: "data-lost" };

export type ReplicaEffect =
  | { readonly kind: "send"; readonly to: NodeId; readonly msg: Message }
  /** Append to the WAL in this order. sync: report `durable(token)` once fsynced (one fsync may cover many). */
  | { readonly kind: "persist"; readonly token: number; readonly record: ReplicaLogRecord; readonly sync: boolean }
  /**
   * Copy every committed point `peer` holds that this replica lacks (point sync: the batches' bytes are gone there),
   * then adopt the ids of `flushed` as committed here (durably), and report "points-synced".
   */
  | { readonly kind: "sync-points"; readonly peer: NodeId; readonly round: number; readonly flushed: readonly FlushedBatch[] };

interface RecoveryRound {
  readonly ballot: Ballot;
  readonly sha256: string;
  readonly replicas: readonly NodeId[];
  readonly startedMs: number;
  readonly answers: Map<NodeId, StatusAnswer>;
  asked: boolean;
}

export class ReplicaMachine {
  private nowMs = 0;
  private out: ReplicaEffect[] = [];
  private nextToken = 1;
  /** Sync records not yet durable, per batch id (and "" for machine-wide records). */
  private readonly unsynced = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();
  private readonly tokenKey = new Map<number, string>();
  private readonly touched = new Map<string, number>();
  private readonly recovering = new Map<string, RecoveryRound>();
  private rebuilding: boolean;
  private upToDate = false;
  private catchup: CatchupRound | null = null;
  private catchupRounds = 0;
  private lastCatchupDoneMs = -Infinity;
  private lastRoundFetched = 0;
  /** HLC lower bound of the next round's lists: 0 (everything) until a round completes. */
  private catchupFromHlc = 0n;
  private catchupStartHlc = 0n;

  constructor(
    private readonly cfg: ReplicaConfig,
    readonly store: ReplicaStore,
    private readonly hlc: Hlc,
  ) {
    this.rebuilding = cfg.rebuilding;
  }

  /** Up to date: caught up from peers since it started (may then answer reads alone). */
  get isUpToDate(): boolean {
    return this.upToDate && !this.rebuilding;
  }
  get isRebuilding(): boolean {
    return this.rebuilding;
  }
  /**
   * How far behind its peers this replica is, in batches: what the catch-up round in progress still waits for, else
   * what the last complete round had to fetch (0: it lacked nothing).
   */
  get lagBatches(): number {
    return this.catchup !== null && this.catchup.outstanding.size > 0 ? this.catchup.outstanding.size : this.lastRoundFetched;
  }
  /** Batches this replica holds prepared whose fate it does not know yet. */
  get undecided(): number {
    return this.store.list("prepared", 0n).length;
  }

  step(ev: ReplicaEvent): ReplicaEffect[] {
    this.out = [];
    switch (ev.kind) {
      case "tick":
        this.nowMs = Math.max(this.nowMs, ev.nowMs);
        this.onTick();
        break;
      case "durable":
        this.onDurable(ev.token);
        break;
      case "receive":
        this.hlc.observe(ev.msg.hlc);
        this.onMessage(ev.msg);
        break;
      case "points-synced":
        this.onPointsSynced(ev.peer, ev.round, ev.ok);
        break;
      case "data-lost":
        this.rebuilding = true;
        this.upToDate = false;
        this.catchup = null; // the next tick starts a rebuild round with every peer
        break;
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  // ---- plumbing ----------------------------------------------------------

  private send(to: NodeId, body: Record<string, unknown> & { type: Message["type"] }): void {
    const msg = { ...body, from: this.cfg.node, hlc: this.hlc.now(), shardId: this.cfg.shardId } as unknown as Message;
    this.out.push({ kind: "send", to, msg });
  }

  private persist(key: string, record: ReplicaLogRecord, sync: boolean): void {
    const token = this.nextToken++;
    this.out.push({ kind: "persist", token, record, sync });
    if (!sync) return;
    this.unsynced.set(key, (this.unsynced.get(key) ?? 0) + 1);
    this.tokenKey.set(token, key);
  }

  /** Runs `fn` once every sync record about `key` logged so far is durable (at once if none is pending). */
  private afterDurable(key: string, fn: () => void): void {
    if ((this.unsynced.get(key) ?? 0) === 0) fn();
    else {
      const q = this.waiting.get(key) ?? [];
      q.push(fn);
      this.waiting.set(key, q);
    }
  }

  private onDurable(token: number): void {
    const key = this.tokenKey.get(token);
    if (key === undefined) return; // not a sync record, or already reported
    this.tokenKey.delete(token);
    const n = (this.unsynced.get(key) ?? 1) - 1;
    if (n > 0) {
      this.unsynced.set(key, n);
      return;
    }
    this.unsynced.delete(key);
    const q = this.waiting.get(key);
    this.waiting.delete(key);
    for (const fn of q ?? []) fn();
  }

  private peers(replicas: readonly NodeId[] = this.cfg.replicas): NodeId[] {
    return replicas.filter((n) => n !== this.cfg.node);
  }

  private onMessage(m: ReplicaInbound): void {
    switch (m.type) {
      case "prepare":
        return this.onPrepare(m);
      case "commit":
        return this.onCommit(m);
      case "abort":
        return this.onAbort(m);
      case "status":
        return this.onStatus(m);
      case "status-reply":
        return this.onStatusReply(m);
      case "catchup-list":
        return this.onCatchupList(m);
      case "catchup-list-reply":
        return this.onCatchupListReply(m);
      case "fetch":
        return this.onFetch(m);
      case "fetch-reply":
        return this.onFetchReply(m);
    }
  }

  // ---- prepare -----------------------------------------------------------

  private onPrepare(m: PrepareMsg): void {
    const b = m.batch;
    const reply = (answer: PrepareAnswer): void =>
      this.send(m.from, { type: "prepare-reply", batchId: b.batchId, ballot: m.ballot, answer } satisfies Omit<PrepareReplyMsg, "from" | "hlc" | "shardId">);
    if (this.rebuilding) return reply({ kind: "unavailable", reason: "rebuilding from peers after data loss" });
    const rec = this.store.lookup(b.batchId);
    if (rec !== null && (rec.state === "prepared" || rec.state === "committed") && rec.sha256 !== b.sha256)
      return reply({ kind: "id-conflict", sha256: rec.sha256! });
    if (rec?.state === "committed") return this.afterDurable(b.batchId, () => reply({ kind: "duplicate", state: "committed" }));
    if (rec?.state === "prepared") {
      const c = compareBallot(rec.ballot, m.ballot);
      if (c > 0) return reply({ kind: "voted-higher", ballot: rec.ballot });
      if (c < 0) {
        this.store.setVote(b.batchId, m.ballot);
        this.persist(b.batchId, { type: "vote", batchId: b.batchId, ballot: m.ballot }, true);
      }
      this.touched.set(b.batchId, this.nowMs);
      return this.afterDurable(b.batchId, () => reply({ kind: "duplicate", state: "prepared" }));
    }
    if (rec !== null && compareBallot(rec.ballot, m.ballot) >= 0) {
      const f = rec.ballot;
      return this.afterDurable(b.batchId, () => reply({ kind: "fenced", ballot: f }));
    }
    const r = this.store.tryReserve(b, m.ballot, m.replicas);
    switch (r.kind) {
      case "ok":
        this.persist(b.batchId, { type: "prepare", batch: b, ballot: m.ballot, replicas: m.replicas }, true);
        this.touched.set(b.batchId, this.nowMs);
        return this.afterDurable(b.batchId, () => reply({ kind: "prepared" }));
      case "conflict": {
        // Refused for good at this ballot: fence it, so that a majority of refusals lets the gateway abort (409).
        this.store.fence(b.batchId, m.ballot);
        this.persist(b.batchId, { type: "fence", batchId: b.batchId, ballot: m.ballot }, true);
        const points = r.points;
        return this.afterDurable(b.batchId, () => reply({ kind: "conflict", points }));
      }
      case "id-conflict":
        return reply({ kind: "id-conflict", sha256: r.sha256 });
      case "duplicate":
        assert(false, "tryReserve answered duplicate for a batch lookup did not hold");
    }
  }

  // ---- decisions ---------------------------------------------------------

  private onCommit(m: CommitMsg): void {
    const rec = this.store.lookup(m.batchId);
    const ack = (committed: boolean): void => this.send(m.from, { type: "commit-reply", batchId: m.batchId, ballot: m.ballot, committed });
    if (rec?.state === "committed" && rec.sha256 === m.sha256) return this.afterDurable(m.batchId, () => ack(true));
    if (rec?.state === "prepared" && rec.sha256 === m.sha256) {
      this.commitLocal(m.batchId);
      return this.afterDurable(m.batchId, () => ack(true));
    }
    if (rec?.state === "prepared") {
      // Other content under this id was decided committed: ours can never gather a majority. Drop it, fetch theirs.
      this.abortLocal(m.batchId, rec.ballot);
    }
    ack(false);
    this.send(m.from, { type: "fetch", round: 0, batchIds: [m.batchId] });
  }

  private commitLocal(batchId: string): void {
    this.store.commit(batchId);
    this.persist(batchId, { type: "commit", batchId }, false); // no fsync: a lost commit mark is found again by recovery
    this.recovering.delete(batchId);
    this.touched.delete(batchId);
  }

  private abortLocal(batchId: string, ballot: Ballot): void {
    this.store.abort(batchId, ballot);
    // No fsync: if lost, the batch is prepared again after a restart and recovery aborts it again. WAL order keeps it
    // before any later record that uses the released points.
    this.persist(batchId, { type: "abort", batchId, ballot }, false);
    if (this.store.lookup(batchId)?.state !== "prepared") {
      this.recovering.delete(batchId);
      this.touched.delete(batchId);
    }
  }

  private onAbort(m: AbortMsg): void {
    const rec = this.store.lookup(m.batchId);
    if (rec?.state === "committed") return;
    if (rec?.state === "prepared" && compareBallot(rec.ballot, m.ballot) > 0) return; // a later attempt's vote
    this.abortLocal(m.batchId, m.ballot);
  }

  // ---- recovery: the peer side ---------------------------------------------

  private onStatus(m: StatusMsg): void {
    const answer = (a: StatusAnswer): void => this.send(m.from, { type: "status-reply", batchId: m.batchId, ballot: m.ballot, answer: a });
    if (this.rebuilding) return answer({ kind: "unknown" });
    const rec = this.store.lookup(m.batchId);
    const held = rec !== null && (rec.state === "prepared" || rec.state === "committed");
    // Other content under this id: we can promise nothing about the asker's content; abstain.
    if (held && rec.sha256 !== m.sha256) return answer({ kind: "unknown" });
    if (rec?.state === "committed") return this.afterDurable(m.batchId, () => answer({ kind: "committed" }));
    if (rec?.state === "prepared") {
      if (compareBallot(rec.ballot, m.ballot) < 0) {
        this.store.setVote(m.batchId, m.ballot);
        this.persist(m.batchId, { type: "vote", batchId: m.batchId, ballot: m.ballot }, true);
      }
      const v = this.store.lookup(m.batchId)!.ballot;
      return this.afterDurable(m.batchId, () => answer({ kind: "prepared", ballot: v }));
    }
    if (rec !== null && compareBallot(rec.ballot, m.ballot) >= 0) {
      const f = rec.ballot;
      return this.afterDurable(m.batchId, () => answer({ kind: "fenced", ballot: f }));
    }
    this.store.fence(m.batchId, m.ballot);
    this.persist(m.batchId, { type: "fence", batchId: m.batchId, ballot: m.ballot }, true);
    this.afterDurable(m.batchId, () => answer({ kind: "fenced", ballot: m.ballot }));
  }

  // ---- recovery: the asking side -------------------------------------------

  private startRecovery(batchId: string): void {
    const rec = this.store.lookup(batchId);
    assert(rec !== null && rec.state === "prepared", "recovery of a batch not prepared here");
    this.hlc.observe(rec.ballot.t); // after a restart the HLC may be behind the ballots in the log
    const ballot: Ballot = { t: this.hlc.now(), node: `${this.cfg.node}#${this.cfg.incarnation}` };
    assert(compareBallot(ballot, rec.ballot) > 0, "recovery ballot not above the vote it holds");
    this.store.setVote(batchId, ballot);
    this.persist(batchId, { type: "vote", batchId, ballot }, true);
    const round: RecoveryRound = { ballot, sha256: rec.sha256!, replicas: rec.replicas, startedMs: this.nowMs, answers: new Map(), asked: false };
    round.answers.set(this.cfg.node, { kind: "prepared", ballot });
    this.recovering.set(batchId, round);
    this.afterDurable(batchId, () => {
      if (this.recovering.get(batchId) !== round) return;
      round.asked = true;
      for (const p of this.peers(round.replicas)) this.send(p, { type: "status", batchId, sha256: round.sha256, ballot });
    });
  }

  private onStatusReply(m: StatusReplyMsg): void {
    const round = this.recovering.get(m.batchId);
    if (round === undefined || compareBallot(round.ballot, m.ballot) !== 0) return;
    round.answers.set(m.from, m.answer);
    const rec = this.store.lookup(m.batchId);
    if (rec?.state !== "prepared") {
      this.recovering.delete(m.batchId);
      return;
    }
    switch (decideRecovery(round.ballot, round.answers, round.replicas.length)) {
      case "commit":
        this.commitLocal(m.batchId);
        for (const p of this.peers(round.replicas)) this.send(p, { type: "commit", batchId: m.batchId, sha256: round.sha256, ballot: round.ballot });
        return;
      case "abort":
        this.abortLocal(m.batchId, round.ballot);
        for (const p of this.peers(round.replicas)) this.send(p, { type: "abort", batchId: m.batchId, sha256: round.sha256, ballot: round.ballot });
        return;
      case "higher":
        // Another attempt is above us: let it work; try again later (our next ballot will be above what we saw).
        this.recovering.delete(m.batchId);
        this.touched.set(m.batchId, this.nowMs);
        return;
      case "wait":
        return;
    }
  }

  // ---- catch-up ------------------------------------------------------------

  private startCatchup(): void {
    const peers = this.peers();
    // Rebuilding: every peer (our old votes are gone and any of them may hold the other copy of an acked batch).
    // Otherwise: enough peers to make a majority with us.
    const needed = this.rebuilding ? peers.length : majorityOf(this.cfg.replicas.length) - 1;
    this.catchup = new CatchupRound(++this.catchupRounds, this.nowMs, needed);
    this.catchupStartHlc = this.hlc.now();
    const fromHlc = this.rebuilding ? 0n : this.catchupFromHlc;
    for (const p of peers) this.send(p, { type: "catchup-list", round: this.catchup.round, includePrepared: this.rebuilding, fromHlc });
    this.maybeFinishCatchup();
  }

  private onCatchupList(m: CatchupListMsg): void {
    const committed = this.store.list("committed", m.fromHlc).map((r) => ({ batchId: r.batchId, sha256: r.sha256!, hlc: r.hlc }));
    const prepared = m.includePrepared
      ? this.store.list("prepared", m.fromHlc).map((r) => ({ batchId: r.batchId, sha256: r.sha256!, hlc: r.hlc, ballot: r.ballot }))
      : [];
    this.send(m.from, { type: "catchup-list-reply", round: m.round, committed, prepared } satisfies Omit<CatchupListReplyMsg, "from" | "hlc" | "shardId">);
  }

  private onCatchupListReply(m: CatchupListReplyMsg): void {
    const round = this.catchup;
    if (round === null || round.round !== m.round || round.listed.has(m.from)) return;
    round.listed.add(m.from);
    const want = missingFrom(this.store, m.committed, this.rebuilding ? m.prepared : []).filter((id) => !round.outstanding.has(id));
    for (const id of want) round.outstanding.add(id);
    round.fetched += want.length;
    if (want.length > 0) this.send(m.from, { type: "fetch", round: m.round, batchIds: want });
    this.maybeFinishCatchup();
  }

  private onFetch(m: FetchMsg): void {
    const batches: FetchedBatch[] = [];
    const flushed: FlushedBatch[] = [];
    for (const id of m.batchIds) {
      const rec = this.store.lookup(id);
      if (rec === null || (rec.state !== "committed" && rec.state !== "prepared")) continue;
      const payload = this.store.payload(id);
      if (payload !== null) batches.push({ batch: payload, state: rec.state, ballot: rec.ballot, replicas: rec.replicas });
      else if (rec.state === "committed") {
        const meta = this.store.flushedMeta(id);
        if (meta !== null) flushed.push(meta);
      }
    }
    this.send(m.from, { type: "fetch-reply", round: m.round, batches, flushed } satisfies Omit<FetchReplyMsg, "from" | "hlc" | "shardId">);
  }

  private onFetchReply(m: FetchReplyMsg): void {
    const round = this.catchup !== null && this.catchup.round === m.round ? this.catchup : null;
    if (round !== null && m.flushed.length > 0) {
      for (const f of m.flushed) {
        // Held here prepared, committed there (a flushed batch is committed): decide it here too. Same content: commit
        // (its points are reserved here already); other content: ours can never commit, and point sync brings theirs.
        const r = this.store.lookup(f.batchId);
        if (r?.state !== "prepared") continue;
        if (r.sha256 === f.sha256) this.commitLocal(f.batchId);
        else this.abortLocal(f.batchId, r.ballot);
      }
      const want = m.flushed.filter((f) => !this.holdsCommitted(f.batchId, f.sha256) && round.outstanding.has(f.batchId));
      for (const f of m.flushed) if (this.holdsCommitted(f.batchId, f.sha256)) round.outstanding.delete(f.batchId);
      if (want.length > 0 && !round.syncing.has(m.from)) {
        round.syncing.set(m.from, want.map((f) => f.batchId));
        this.out.push({ kind: "sync-points", peer: m.from, round: round.round, flushed: want });
      }
      this.maybeFinishCatchup();
    }
    for (const f of m.batches) {
      if (f.state === "prepared" && !this.rebuilding) continue;
      if (!digestMatches(f)) continue; // damaged in transit or at the peer: another round asks again
      this.installFetched(f);
      if (round !== null) {
        const id = f.batch.batchId;
        const key = id;
        this.afterDurable(key, () => {
          round.outstanding.delete(id);
          this.maybeFinishCatchup();
        });
      }
    }
  }

  private holdsCommitted(batchId: string, sha256: string): boolean {
    const r = this.store.lookup(batchId);
    return r !== null && r.state === "committed" && r.sha256 === sha256;
  }

  /** The host copied a peer's points and adopted the flushed ids it was given: those are no longer outstanding. */
  private onPointsSynced(peer: NodeId, roundNo: number, ok: boolean): void {
    const round = this.catchup;
    if (round === null || round.round !== roundNo) return;
    const ids = round.syncing.get(peer) ?? [];
    if (!ok) return; // the round stalls and is retried after catchupIntervalMs
    round.synced.add(peer);
    for (const id of ids) if (this.store.lookup(id)?.state === "committed") round.outstanding.delete(id);
    this.maybeFinishCatchup();
  }

  private installFetched(f: FetchedBatch): void {
    const id = f.batch.batchId;
    let rec = this.store.lookup(id);
    if (rec?.state === "committed") return;
    if (rec?.state === "prepared") {
      if (rec.sha256 === f.batch.sha256) {
        if (f.state === "committed") this.commitLocal(id);
        return;
      }
      if (f.state !== "committed") return;
      this.abortLocal(id, rec.ballot); // other content committed under this id: ours never can be
      rec = this.store.lookup(id);
    }
    let r = this.store.install(f.batch, f.state, f.ballot, f.replicas);
    if (r.kind === "conflict" && f.state === "committed") {
      // A committed batch's voters (a majority) refuse anything conflicting with it forever, so a conflicting batch
      // prepared here can never be committed: abort it here and store the committed one.
      for (const h of r.holders) {
        const hr = this.store.lookup(h);
        assert(hr !== null && hr.state === "prepared", `committed batch ${id} conflicts with committed batch ${h}`);
        this.abortLocal(h, hr.ballot);
      }
      r = this.store.install(f.batch, f.state, f.ballot, f.replicas);
    }
    if (r.kind !== "ok") return;
    this.persist(id, { type: "install", fetched: f }, true);
    if (f.state === "prepared") this.touched.set(id, this.nowMs);
  }

  private maybeFinishCatchup(): void {
    const round = this.catchup;
    if (round === null || !round.complete) return;
    if (this.rebuilding) {
      // Batches listed by id are here now; what the peers hold only as points (flushed, or shared with other batches)
      // is compared and copied by a full point sync with every peer before this replica votes again.
      const pending = [...round.listed].filter((p) => !round.synced.has(p));
      if (pending.length > 0) {
        for (const p of pending)
          if (!round.syncing.has(p)) {
            round.syncing.set(p, []);
            this.out.push({ kind: "sync-points", peer: p, round: round.round, flushed: [] });
          }
        return;
      }
    }
    this.catchup = null;
    this.lastCatchupDoneMs = this.nowMs;
    this.lastRoundFetched = round.fetched;
    const overlap = Hlc.spanOfMs(this.cfg.catchupOverlapMs ?? 600_000);
    const from = this.catchupStartHlc - overlap;
    this.catchupFromHlc = from > 0n ? from : 0n;
    if (!this.rebuilding) {
      this.upToDate = true;
      return;
    }
    this.persist("", { type: "rebuilt" }, true);
    this.afterDurable("", () => {
      this.rebuilding = false;
      this.upToDate = true;
    });
  }

  // ---- time --------------------------------------------------------------

  private onTick(): void {
    const cfg = this.cfg;
    const c = this.catchup;
    if (c === null ? this.nowMs - this.lastCatchupDoneMs >= cfg.catchupIntervalMs || !this.upToDate : this.nowMs - c.startedMs >= cfg.catchupIntervalMs)
      if (!(this.rebuilding && (this.unsynced.get("") ?? 0) > 0)) this.startCatchup();
    if (this.rebuilding) return;
    for (const rec of this.store.list("prepared", 0n)) {
      const id = rec.batchId;
      if ((this.unsynced.get(id) ?? 0) > 0) continue;
      const round = this.recovering.get(id);
      if (round !== undefined) {
        if (this.nowMs - round.startedMs < cfg.recoveryRetryMs) continue;
        this.recovering.delete(id);
      } else {
        const since = this.touched.get(id);
        if (since === undefined) {
          this.touched.set(id, this.nowMs); // restored at restart: give its gateway a chance first
          continue;
        }
        if (this.nowMs - since < cfg.recoveryAfterMs) continue;
      }
      this.startRecovery(id);
    }
  }
}
