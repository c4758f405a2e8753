// The gateway side of a write as a pure state machine: PREPARE fan-out to the
// shard's replicas, waiting for every reachable one (a slow one up to the lag
// limit, never fewer than a majority), the outcome, the COMMIT fan-out, and
// the receipt or a typed error. Events in, effects out; no I/O, no timers.

import { ConflictError, UnavailableError, type ConflictingPoint, type HqError } from "../../core/errors.js";
import type { Hlc } from "../../core/hlc.js";
import type { Receipt } from "../../core/receipt.js";
import { ballotEq, ballotText, compareBallot, maxBallot, type Ballot, type BatchPayload, type GatewayInbound, type Message, type NodeId, type PrepareAnswer } from "./messages.js";
import { majorityOf } from "./recovery.js";

export interface GatewayConfig {
  readonly node: NodeId;
  /**
   * Once a majority has voted, how long the other replicas are still waited for (measured from the fan-out): a slow
   * replica costs at most this much latency and is then left to catch up.
   */
  readonly lagLimitMs: number;
  /**
   * How long the gateway waits for a majority of votes at all (re-sending unanswered PREPAREs) before it answers 503.
   * A slow network (500 ms between nodes) makes writes slower, not failed. Default max(lagLimitMs, 3000).
   */
  readonly prepareTimeoutMs?: number;
  /** Unanswered PREPAREs and COMMITs are sent again this often (the network may lose them). */
  readonly retransmitMs: number;
  /** Give up waiting for a majority of commit acks after this long: 503 (the batch is committed; a retry gets its receipt). */
  readonly commitTimeoutMs: number;
  /** Attempts at a higher ballot when replicas hold the batch for another attempt. */
  readonly ballotRestartsMax: number;
  /** Bumped (durably, by the host) at every start of the node, so that ballots stay unique across restarts. */
  readonly incarnation: number;
}

export interface WriteRequest {
  readonly reqId: number;
  readonly batch: BatchPayload;
  readonly samples: number;
  readonly replicas: readonly NodeId[];
}

export type WriteResult = { readonly ok: true; readonly receipt: Receipt } | { readonly ok: false; readonly error: HqError };

export type GatewayEvent =
  | { readonly kind: "write"; readonly req: WriteRequest }
  | { readonly kind: "receive"; readonly msg: GatewayInbound }
  /** The transport could not connect to a replica: it drops out of this write at once. */
  | { readonly kind: "unreachable"; readonly node: NodeId }
  | { readonly kind: "tick"; readonly nowMs: number };

export type GatewayEffect =
  | { readonly kind: "send"; readonly to: NodeId; readonly msg: Message }
  | { readonly kind: "done"; readonly reqId: number; readonly result: WriteResult };

type Answer = PrepareAnswer | { readonly kind: "unreachable" };

interface Write {
  readonly req: WriteRequest;
  ballot: Ballot;
  phase: "prepare" | "commit";
  answers: Map<NodeId, Answer>;
  startedMs: number;
  lastSendMs: number;
  /** Re-sends in the current phase: the interval doubles with each (a slow network is not flooded with copies). */
  resends: number;
  restarts: number;
  duplicate: boolean;
  voters: NodeId[];
  commitAcks: Set<NodeId>;
  commitStartedMs: number;
  highest: Ballot;
}

export class GatewayMachine {
  private nowMs = 0;
  private out: GatewayEffect[] = [];
  private readonly writes = new Map<number, Write>();
  private readonly byBallot = new Map<string, number>();

  constructor(
    private readonly cfg: GatewayConfig,
    private readonly hlc: Hlc,
  ) {}

  get inflight(): number {
    return this.writes.size;
  }

  step(ev: GatewayEvent): GatewayEffect[] {
    this.out = [];
    switch (ev.kind) {
      case "write":
        this.start(ev.req);
        break;
      case "receive":
        this.hlc.observe(ev.msg.hlc);
        this.onReply(ev.msg);
        break;
      case "unreachable":
        for (const w of this.writes.values()) {
          if (w.phase !== "prepare" || !w.req.replicas.includes(ev.node) || w.answers.has(ev.node)) continue;
          w.answers.set(ev.node, { kind: "unreachable" });
          this.evaluate(w);
        }
        break;
      case "tick":
        this.nowMs = Math.max(this.nowMs, ev.nowMs);
        for (const w of [...this.writes.values()]) this.onTick(w);
        break;
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  private send(to: NodeId, body: Record<string, unknown> & { type: Message["type"] }, shardId: number): void {
    const msg = { ...body, from: this.cfg.node, hlc: this.hlc.now(), shardId } as unknown as Message;
    this.out.push({ kind: "send", to, msg });
  }

  private key(batchId: string, b: Ballot): string {
    return `${batchId}|${ballotText(b)}`;
  }

  private start(req: WriteRequest): void {
    const ballot: Ballot = { t: this.hlc.now(), node: `${this.cfg.node}#${this.cfg.incarnation}` };
    const w: Write = {
      req,
      ballot,
      phase: "prepare",
      answers: new Map(),
      startedMs: this.nowMs,
      lastSendMs: this.nowMs,
      resends: 0,
      restarts: 0,
      duplicate: false,
      voters: [],
      commitAcks: new Set(),
      commitStartedMs: 0,
      highest: ballot,
    };
    this.writes.set(req.reqId, w);
    this.byBallot.set(this.key(req.batch.batchId, ballot), req.reqId);
    this.sendPrepares(w, req.replicas);
  }

  private sendPrepares(w: Write, to: readonly NodeId[]): void {
    for (const r of to)
      this.send(r, { type: "prepare", batch: w.req.batch, ballot: w.ballot, replicas: w.req.replicas }, w.req.batch.shardId);
  }

  private sendCommits(w: Write, to: readonly NodeId[]): void {
    for (const r of to) this.send(r, { type: "commit", batchId: w.req.batch.batchId, sha256: w.req.batch.sha256, ballot: w.ballot }, w.req.batch.shardId);
  }

  private onReply(m: GatewayInbound): void {
    const id = this.byBallot.get(this.key(m.batchId, m.ballot));
    const w = id === undefined ? undefined : this.writes.get(id);
    if (w === undefined || !ballotEq(w.ballot, m.ballot)) return;
    if (m.type === "prepare-reply") {
      if (w.phase !== "prepare") {
        // A late vote: record it in the receipt's replica list if the commit is still being acked.
        if ((m.answer.kind === "prepared" || (m.answer.kind === "duplicate" && m.answer.state === "prepared")) && !w.voters.includes(m.from))
          w.voters.push(m.from);
        return;
      }
      const prev = w.answers.get(m.from);
      if (prev !== undefined && prev.kind !== "unreachable") return;
      w.answers.set(m.from, m.answer);
      if (m.answer.kind === "fenced" || m.answer.kind === "voted-higher") w.highest = maxBallot(w.highest, m.answer.ballot);
      this.evaluate(w);
    } else {
      if (w.phase !== "commit" || !m.committed) return;
      w.commitAcks.add(m.from);
      if (w.commitAcks.size >= majorityOf(w.req.replicas.length)) this.finish(w, { ok: true, receipt: this.receipt(w) });
    }
  }

  private onTick(w: Write): void {
    if (w.phase === "prepare") {
      if (this.nowMs - w.lastSendMs >= this.resendAfterMs(w)) {
        w.lastSendMs = this.nowMs;
        w.resends++;
        this.sendPrepares(w, w.req.replicas.filter((r) => !w.answers.has(r)));
      }
      if (this.nowMs - w.startedMs >= this.cfg.lagLimitMs) this.evaluate(w);
      return;
    }
    if (this.nowMs - w.commitStartedMs >= this.cfg.commitTimeoutMs) {
      return this.finish(w, {
        ok: false,
        error: new UnavailableError(
          `batch ${w.req.batch.batchId} is committed but only ${w.commitAcks.size} replicas confirmed the commit in time; retry with the same batch id for its receipt`,
          1,
          { details: { batchId: w.req.batch.batchId } },
        ),
      });
    }
    if (this.nowMs - w.lastSendMs >= this.resendAfterMs(w)) {
      w.lastSendMs = this.nowMs;
      w.resends++;
      this.sendCommits(w, w.req.replicas.filter((r) => !w.commitAcks.has(r)));
    }
  }

  /** The outcome rule (docs/protocol.md, "Write concern"). */
  private evaluate(w: Write): void {
    if (w.phase !== "prepare") return;
    const n = w.req.replicas.length;
    const maj = majorityOf(n);
    let votes = 0;
    let fences = 0;
    let committed = false;
    let pending = 0;
    let higher = false;
    const conflicts: ConflictingPoint[] = [];
    const conflictKeys = new Set<string>();
    let idConflict: string | null = null;
    for (const r of w.req.replicas) {
      const a = w.answers.get(r);
      if (a === undefined) {
        pending++;
        continue;
      }
      switch (a.kind) {
        case "prepared":
          votes++;
          break;
        case "duplicate":
          if (a.state === "committed") committed = true;
          else votes++;
          break;
        case "conflict":
          fences++;
          // Each refusing replica names the same points: list each point once.
          for (const p of a.points) {
            const k = `${p.series}\u0000${p.timestampNs}`;
            if (conflicts.length < 100 && !conflictKeys.has(k)) {
              conflictKeys.add(k);
              conflicts.push(p);
            }
          }
          break;
        case "id-conflict":
          fences++;
          idConflict = a.sha256;
          break;
        case "fenced":
          if (compareBallot(a.ballot, w.ballot) > 0) higher = true;
          fences++;
          break;
        case "voted-higher":
          higher = true;
          break;
        case "unavailable":
        case "unreachable":
          break;
      }
    }
    const lagPassed = this.nowMs - w.startedMs >= this.cfg.lagLimitMs;
    const timedOut = this.nowMs - w.startedMs >= (this.cfg.prepareTimeoutMs ?? Math.max(this.cfg.lagLimitMs, 3000));
    if (committed) {
      w.duplicate = true;
      return this.toCommit(w);
    }
    // Every reachable replica answered (or the lag limit passed) and a majority holds a durable vote at our ballot.
    // "duplicate" in the receipt means committed before this write: a replica that already held the batch only
    // prepared (often our own re-sent PREPARE answering first) says nothing of that, so it does not count.
    if (votes >= maj && (pending === 0 || lagPassed)) return this.toCommit(w);
    if (fences >= maj) {
      // A majority promised never to vote for our ballot: it can never commit. Tell the voters (abort <= our ballot).
      for (const r of w.req.replicas)
        this.send(r, { type: "abort", batchId: w.req.batch.batchId, sha256: w.req.batch.sha256, ballot: w.ballot }, w.req.batch.shardId);
      if (conflicts.length > 0 || idConflict !== null) {
        const msg =
          idConflict !== null && conflicts.length === 0
            ? `batch id "${w.req.batch.batchId}" was already used for different content (stored SHA-256 ${idConflict}, offered ${w.req.batch.sha256})`
            : `${conflicts.length} points already hold different values`;
        return this.finish(w, { ok: false, error: new ConflictError(msg, conflicts, { batchId: w.req.batch.batchId }) });
      }
      if (higher) return this.restart(w);
      return this.unavailable(w, `batch ${w.req.batch.batchId}: a majority of replicas refused this attempt; retry`);
    }
    if (votes + pending >= maj && !timedOut) return; // a majority is still possible: keep waiting
    if (higher) return this.restart(w);
    return this.unavailable(
      w,
      timedOut
        ? `batch ${w.req.batch.batchId}: ${votes} of ${n} replicas prepared it within ${this.cfg.prepareTimeoutMs ?? Math.max(this.cfg.lagLimitMs, 3000)} ms, ${maj} needed`
        : `batch ${w.req.batch.batchId}: ${votes} of ${n} replicas prepared it, ${maj} needed`,
    );
  }

  private resendAfterMs(w: Write): number {
    return this.cfg.retransmitMs * 2 ** Math.min(w.resends, 4);
  }

  private restart(w: Write): void {
    if (w.restarts >= this.cfg.ballotRestartsMax)
      return this.unavailable(w, `batch ${w.req.batch.batchId} is being written by another attempt; retry`);
    this.byBallot.delete(this.key(w.req.batch.batchId, w.ballot));
    this.hlc.observe(w.highest.t);
    w.ballot = { t: this.hlc.now(), node: `${this.cfg.node}#${this.cfg.incarnation}` };
    w.restarts++;
    w.answers = new Map();
    w.startedMs = this.nowMs;
    w.lastSendMs = this.nowMs;
    w.resends = 0;
    this.byBallot.set(this.key(w.req.batch.batchId, w.ballot), w.req.reqId);
    this.sendPrepares(w, w.req.replicas);
  }

  private toCommit(w: Write): void {
    w.phase = "commit";
    w.voters = w.req.replicas.filter((r) => {
      const a = w.answers.get(r);
      return a !== undefined && (a.kind === "prepared" || a.kind === "duplicate");
    });
    w.commitStartedMs = this.nowMs;
    w.lastSendMs = this.nowMs;
    w.resends = 0;
    this.sendCommits(w, w.req.replicas);
  }

  private unavailable(w: Write, message: string): void {
    this.finish(w, { ok: false, error: new UnavailableError(message, 1, { details: { batchId: w.req.batch.batchId } }) });
  }

  private receipt(w: Write): Receipt {
    const b = w.req.batch;
    return {
      batchId: b.batchId,
      sha256: b.sha256,
      shardId: b.shardId,
      hlc: b.hlc.toString(),
      samples: w.req.samples,
      accepted: w.duplicate ? 0 : w.req.samples,
      duplicates: w.duplicate ? w.req.samples : 0,
      conflicts: [],
      duplicate: w.duplicate,
      replicas: [...w.voters].sort(),
    };
  }

  private finish(w: Write, result: WriteResult): void {
    this.writes.delete(w.req.reqId);
    this.byBallot.delete(this.key(w.req.batch.batchId, w.ballot));
    this.out.push({ kind: "done", reqId: w.req.reqId, result });
  }
}
