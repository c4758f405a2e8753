// Composition of a replica's self-healing (docs/repairs.md): what the
// node does about damage found at open or by the scrubber, anti-entropy with
// its peers, and the record of every repair.
//
//   damage                         repair                                   recorded as
//   WAL records, found at open     rebuild from every peer (lost votes too) wal-damage/open, pending → repaired
//   WAL records, found by scrub    the records are intact in memory: cut    wal-damage/scrub, repaired
//                                  the head into a block, rewrite the WAL
//   block, found at open           rebuild from every peer                  block-damage/open, pending → repaired
//   block damaged/missing, scrub   detach it, rebuild from every peer       block-damage|block-missing/scrub, pending → repaired
//   no replica state at start      rebuild from every peer                  data-loss/open (when points came back)
//   replicas differ                anti-entropy point sync                  anti-entropy/anti-entropy
//   a read found points missing    read repair                              read-repair/read
//   catch-up met flushed batches   point sync                               catch-up/catch-up
//
// A rebuild is the protocol's (the replica stops voting until it has heard
// from every peer and copied their points): a node that lost stored data may
// have lost votes and conflict checks too, and must not vote on what it no
// longer knows.

import { relative } from "node:path";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { SyncReport } from "../cluster/point-sync.js";
import { AntiEntropy } from "../repair/anti-entropy.js";
import type { RepairInput, RepairKind, RepairLog, RepairTrigger, RepairWhere } from "../repair/log.js";
import { Scrubber, type ScrubFinding } from "../storage/scrubber.js";
import type { ReplicatedStorage, Replication } from "./cluster-node.js";

export interface IntegrityOptions {
  /** Scrub rate; null disables the scrubber. */
  readonly scrubBytesPerSecond: number | null;
  readonly scrubPassIntervalMs: number;
  /** Pause between anti-entropy rounds; null disables anti-entropy. */
  readonly antiEntropyIntervalMs: number | null;
}

/** What anti-entropy may pull from peers, per second (the copy's pace; comparing agreeing replicas costs bytes). */
const ANTI_ENTROPY_BYTES_PER_SECOND_MAX = 16 * 1024 * 1024;

interface PendingDamage {
  readonly kind: RepairKind;
  readonly trigger: RepairTrigger;
  readonly where: RepairWhere;
  readonly detail: string;
}

const sumInstall = (rs: readonly SyncReport[]): { stored: number; present: number; divergent: number } => ({
  stored: rs.reduce((a, r) => a + r.install.stored, 0),
  present: rs.reduce((a, r) => a + r.install.present, 0),
  divergent: rs.reduce((a, r) => a + r.install.divergent, 0),
});

export class NodeIntegrity {
  private scrubber: Scrubber | null = null;
  private antiEntropy: AntiEntropy | null = null;
  /** Damage waiting for the rebuild in progress to complete. */
  private pending: PendingDamage[] = [];
  /** Point syncs of the rebuild in progress. */
  private rebuildSyncs: SyncReport[] = [];
  private rebuildPeers = new Set<string>();
  private startedEmpty = false;

  constructor(
    private readonly rs: ReplicatedStorage,
    private readonly replication: Replication,
    private readonly repairs: RepairLog,
    private readonly dataDir: string,
    private readonly log: Logger,
    private readonly registry: Registry,
    private readonly opts: IntegrityOptions,
  ) {}

  /** Takes stock of what open found, then starts the scrubber and anti-entropy. */
  async start(): Promise<void> {
    const engine = this.rs.engine;
    const damage = engine.openDamage();
    this.startedEmpty = !this.rs.rebuilt && damage.wal.length === 0 && damage.blocks.length === 0;
    for (const f of damage.wal)
      this.pending.push({
        kind: "wal-damage",
        trigger: "open",
        where: { file: this.rel(f.file), offset: f.offset, length: f.length },
        detail: `${f.kind}: ${f.detail}; the records in this range are lost here and come back from the peers`,
      });
    for (const b of damage.blocks)
      this.pending.push({
        kind: "block-damage",
        trigger: "open",
        where: { file: this.rel(b.path), ...(b.minTimeNs !== null && b.maxTimeNs !== null ? { fromNs: b.minTimeNs.toString(), toNs: b.maxTimeNs.toString() } : {}) },
        detail: `${b.error}; quarantined to ${b.quarantinedTo ?? "(not moved)"}`,
      });
    if (this.pending.length > 0) {
      // Lost records may have held votes: rebuild before voting, as after a wiped disk.
      this.rs.rebuilt = false;
      for (const p of this.pending) await this.record({ ...p, fromPeer: null, outcome: "pending" });
      // The damaged segments stay until rewritten; what they held is lost either way and comes back by the rebuild.
      if (damage.wal.length > 0) await engine.rewriteWal();
    }
    this.rs.onRebuilt.push(() => void this.rebuilt());
    this.replication.onPointSync = (url, r, rebuilding) => void this.pointSynced(url, r, rebuilding);
    this.replication.onReadRepair = (url, r) =>
      void this.record({ kind: "read-repair", trigger: "read", where: {}, fromPeer: this.peerName(url), outcome: "repaired", points: { stored: r.stored, present: r.present, divergent: r.divergent }, detail: "a majority read found points this replica lacked" });

    if (this.opts.scrubBytesPerSecond !== null) {
      this.scrubber = new Scrubber({
        engine,
        log: this.log,
        metrics: this.registry,
        bytesPerSecond: this.opts.scrubBytesPerSecond,
        passIntervalMs: this.opts.scrubPassIntervalMs,
        onFinding: (f) => this.onScrubFinding(f),
      });
      this.scrubber.start();
    }
    if (this.opts.antiEntropyIntervalMs !== null) {
      this.antiEntropy = new AntiEntropy(
        {
          // Bounded: a replica far behind (restored from an old backup) converges over several rounds' time, not at once.
          sync: (url) => this.replication.pointSync.syncFrom(url, undefined, undefined, { bytesPerSecondMax: ANTI_ENTROPY_BYTES_PER_SECOND_MAX }),
          peers: () => (this.rs.rebuilt ? this.replication.peerList() : []), // a rebuild copies everything anyway
          log: this.log,
          registry: this.registry,
          onReport: async (peer, r) => {
            if (r.install.stored === 0 && r.install.divergent === 0) return;
            await this.record({
              kind: "anti-entropy",
              trigger: "anti-entropy",
              where: {},
              fromPeer: peer.id,
              outcome: "repaired",
              points: { stored: r.install.stored, present: r.install.present, divergent: r.install.divergent },
              digests: r.digests,
              detail: `${r.windowsDiffering} of ${r.windows} hour windows differed; ${r.seriesFetched} series compared point by point; ${r.traffic.bytesSent + r.traffic.bytesReceived} bytes exchanged`,
            });
          },
        },
        { intervalMs: this.opts.antiEntropyIntervalMs },
      );
      this.antiEntropy.start();
    }
  }

  stats(): unknown {
    const r = this.repairs.stats();
    return {
      scrub: this.scrubStats(),
      repairs: { total: Object.values(r.byKind).reduce((a, n) => a + n, 0), byKind: r.byKind, byOutcome: r.byOutcome, last: r.last },
      antiEntropy: this.antiEntropy?.stats() ?? null,
      rebuilding: !this.rs.rebuilt,
      pendingDamage: this.pending.length,
    };
  }

  private scrubStats(): unknown {
    const s = this.scrubber?.stats();
    if (s === undefined) return null;
    return {
      ...s,
      passes: s.passesTotal,
      findings: s.findingsTotal.wal + s.findingsTotal.block,
      lastPassAt: s.lastPassTimestampSeconds === null ? null : new Date(s.lastPassTimestampSeconds * 1000).toISOString(),
    };
  }

  async stop(): Promise<void> {
    await this.scrubber?.stop();
    await this.antiEntropy?.stop();
  }

  /** A block the provenance audit found rewritten (points that differ from their signed batches): repaired as damage. */
  reportBlockDamage(path: string, sizeBytes: number, detail: string): Promise<void> {
    return this.onScrubFinding({ kind: "block", path, offset: 0, length: sizeBytes, detail, detectedAt: Date.now() }, "audit");
  }

  private async onScrubFinding(f: ScrubFinding, trigger: "scrub" | "audit" = "scrub"): Promise<void> {
    const engine = this.rs.engine;
    const where: RepairWhere = { file: this.rel(f.path), offset: f.offset, length: f.length };
    if (f.kind === "wal") {
      await engine.rewriteWal();
      await this.record({
        kind: "wal-damage",
        trigger: "scrub",
        where,
        fromPeer: null,
        outcome: "repaired",
        detail: `${f.detail}; the records were intact in memory: the head was cut into a block and the WAL rewritten without the damaged segment`,
      });
      return;
    }
    let detached;
    try {
      detached = await engine.detachBlock(f.path);
    } catch (e) {
      if ((e as { code?: string }).code === "not_found") return; // detached already (reported once)
      throw e;
    }
    const kind: RepairKind = detached.quarantinedTo === null ? "block-missing" : "block-damage";
    const p: PendingDamage = {
      kind,
      trigger,
      where: { ...where, fromNs: detached.minTimeNs.toString(), toNs: detached.maxTimeNs.toString() },
      detail: `${f.detail}; ${detached.sampleCount} samples of ${detached.seriesCount} series lost here until copied from the peers${detached.quarantinedTo !== null ? `; quarantined to ${detached.quarantinedTo}` : ""}`,
    };
    this.pending.push(p);
    await this.record({ ...p, fromPeer: null, outcome: "pending", batches: detached.batchIds });
    this.replication.dataLost();
  }

  private pointSynced(url: string, r: SyncReport, rebuilding: boolean): void {
    if (rebuilding) {
      this.rebuildSyncs.push(r);
      this.rebuildPeers.add(this.peerName(url));
      return;
    }
    if (r.install.stored === 0) return;
    void this.record({
      kind: "catch-up",
      trigger: "catch-up",
      where: {},
      fromPeer: this.peerName(url),
      outcome: "repaired",
      points: { stored: r.install.stored, present: r.install.present, divergent: r.install.divergent },
      digests: r.digests,
      detail: "catch-up met batches the peer had flushed: their points were copied",
    });
  }

  /** A rebuild completed: everything lost is back from the peers. */
  private async rebuilt(): Promise<void> {
    const points = sumInstall(this.rebuildSyncs);
    const from = [...this.rebuildPeers].join(",") || null;
    const pending = this.pending;
    this.pending = [];
    this.rebuildPeers = new Set();
    const last = this.rebuildSyncs.at(-1);
    const digests = last === undefined ? {} : { after: last.digests.after, peer: last.digests.peer };
    for (const p of pending) await this.record({ ...p, fromPeer: from, outcome: "repaired", points, digests, detail: `${p.detail}; rebuilt from every peer` });
    if (this.startedEmpty && points.stored > 0)
      await this.record({
        kind: "data-loss",
        trigger: "open",
        where: {},
        fromPeer: from,
        outcome: "repaired",
        points,
        digests,
        detail: "started with no replica state (a new or wiped data dir); rebuilt from every peer",
      });
    this.startedEmpty = false;
    this.rebuildSyncs = [];
  }

  private async record(r: RepairInput): Promise<void> {
    try {
      await this.repairs.record(r);
    } catch (e) {
      this.log.error({ err: e instanceof Error ? e.message : String(e), repair: r.kind }, "could not record a repair");
    }
  }

  private rel(path: string): string {
    const r = relative(this.dataDir, path);
    return r.startsWith("..") ? path : r;
  }

  private peerName(url: string): string {
    return this.replication.peerList().find((p) => p.url === url)?.id ?? url;
  }
}
