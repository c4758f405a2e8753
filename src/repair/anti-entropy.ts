// Anti-entropy: replicas converge whatever made them diverge (a point on 2 of
// 3, a replica restored from an old backup, a repair that failed), all the
// time, at a bounded cost (docs/repairs.md, "Anti-entropy").
//
// One round: for each peer in turn, point sync (src/cluster/point-sync.ts)
// compares the engines' digests per hour window, descends into the windows
// that differ to per-series digests, and copies only the series that differ.
// When the replicas agree a round exchanges one digest per stored hour window
// and nothing else; the engine keeps those window digests cached, so it costs
// little CPU either. Rounds never overlap; the next starts `intervalMs` after
// the last one ended, so a slow round (much to copy) cannot pile up work.

import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { SyncReport } from "../cluster/point-sync.js";

export interface AntiEntropyPeer {
  readonly id: string;
  readonly url: string;
}

export interface AntiEntropyDeps {
  /** Point sync of everything this node lacks and `peerUrl` holds. */
  sync(peerUrl: string): Promise<SyncReport>;
  /** The other replicas of this node's shard, as known now. */
  peers(): AntiEntropyPeer[];
  readonly log: Logger;
  readonly registry?: Registry;
  /** Called for every peer's report (the node records the ones that stored points as repairs). */
  onReport?(peer: AntiEntropyPeer, report: SyncReport): Promise<void> | void;
}

export interface AntiEntropyOptions {
  /** Pause between the end of one round and the start of the next. Default 60 s. */
  intervalMs?: number;
  /** Delay before the first round (let the node catch up first). Default: intervalMs. */
  firstRoundAfterMs?: number;
}

export interface AntiEntropyStats {
  rounds: number;
  peersFailed: number;
  pointsStored: number;
  windowsDiffering: number;
  bytesExchanged: number;
  lastRoundAt: string | null;
  lastRoundMs: number | null;
}

export class AntiEntropy {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly intervalMs: number;
  private readonly firstMs: number;
  private readonly s: AntiEntropyStats = { rounds: 0, peersFailed: 0, pointsStored: 0, windowsDiffering: 0, bytesExchanged: 0, lastRoundAt: null, lastRoundMs: null };
  private readonly m: { rounds: Counter; stored: Counter; bytes: Counter; failed: Counter; last: Gauge } | null;

  constructor(
    private readonly deps: AntiEntropyDeps,
    opts: AntiEntropyOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.firstMs = opts.firstRoundAfterMs ?? this.intervalMs;
    const reg = deps.registry;
    this.m =
      reg === undefined
        ? null
        : {
            rounds: new Counter({ name: "hqts_anti_entropy_rounds_total", help: "Anti-entropy rounds finished.", registers: [reg] }),
            stored: new Counter({ name: "hqts_anti_entropy_points_stored_total", help: "Points anti-entropy copied from a peer.", registers: [reg] }),
            bytes: new Counter({ name: "hqts_anti_entropy_bytes_total", help: "Bytes anti-entropy exchanged with peers (request and answer bodies).", registers: [reg] }),
            failed: new Counter({ name: "hqts_anti_entropy_peer_failures_total", help: "Peers anti-entropy could not compare with in a round.", registers: [reg] }),
            last: new Gauge({ name: "hqts_anti_entropy_last_round_timestamp_seconds", help: "When the last anti-entropy round ended.", registers: [reg] }),
          };
  }

  start(): void {
    if (this.timer !== null || this.stopped) return;
    this.schedule(this.firstMs);
  }

  stats(): AntiEntropyStats {
    return { ...this.s };
  }

  /** One round now (tests, operators); waits for a round in progress first. */
  async runOnce(): Promise<{ peer: AntiEntropyPeer; report: SyncReport | null; error: string | null }[]> {
    while (this.running !== null) await this.running;
    let results: { peer: AntiEntropyPeer; report: SyncReport | null; error: string | null }[] = [];
    this.running = (async () => {
      results = await this.round();
    })();
    try {
      await this.running;
    } finally {
      this.running = null;
    }
    return results;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    while (this.running !== null) await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runOnce()
        .catch((e: unknown) => this.deps.log.error({ err: e instanceof Error ? e.message : String(e) }, "anti-entropy round failed"))
        .finally(() => this.schedule(this.intervalMs));
    }, ms);
    this.timer.unref();
  }

  private async round(): Promise<{ peer: AntiEntropyPeer; report: SyncReport | null; error: string | null }[]> {
    const started = Date.now();
    const out: { peer: AntiEntropyPeer; report: SyncReport | null; error: string | null }[] = [];
    for (const peer of this.deps.peers()) {
      if (this.stopped) break;
      try {
        const r = await this.deps.sync(peer.url);
        out.push({ peer, report: r, error: null });
        this.s.pointsStored += r.install.stored;
        this.s.windowsDiffering += r.windowsDiffering;
        const bytes = r.traffic.bytesSent + r.traffic.bytesReceived;
        this.s.bytesExchanged += bytes;
        this.m?.stored.inc(r.install.stored);
        this.m?.bytes.inc(bytes);
        if (r.install.stored > 0 || r.install.divergent > 0)
          this.deps.log.info({ ...r, peer: peer.id, install: r.install, traffic: r.traffic }, "anti-entropy: copied points this replica lacked");
        await this.deps.onReport?.(peer, r);
      } catch (e) {
        this.s.peersFailed++;
        this.m?.failed.inc();
        const msg = e instanceof Error ? e.message : String(e);
        out.push({ peer, report: null, error: msg });
        this.deps.log.warn({ peer: peer.id, err: msg }, "anti-entropy: could not compare with a peer this round");
      }
    }
    this.s.rounds++;
    this.s.lastRoundAt = new Date().toISOString();
    this.s.lastRoundMs = Date.now() - started;
    this.m?.rounds.inc();
    this.m?.last.set(Date.now() / 1000);
    return out;
  }
}
