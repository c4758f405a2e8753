// Complete reads (decision 7): a read answers from this replica merged with
// enough peers to make a majority of the shard's replicas (its own plus one,
// with three). A write is acked on a majority, so any majority holds every
// acked point (W + R > RF), even the points this replica missed while it was
// away or has not caught up yet. What a peer adds is also stored here (read
// repair), in the background and within a bound.
//
// Peers are asked one at a time, the next one when the first fails or is slow
// (hedging), so a healthy cluster pays one extra request per read, not two.
// Without a majority the read fails with 503 unless the caller accepts a
// partial answer (then it is flagged as partial).

import type { Logger } from "pino";
import { UnavailableError } from "../core/errors.js";
import type { Labels } from "../core/labels.js";
import { seriesKey } from "../core/labels.js";
import type { ReplicaEngine } from "../storage/replica-api.js";
import type { MetadataEntry } from "../core/metadata.js";
import type { MatcherSets, SelectedSeries, SelectOptions } from "../storage/engine-api.js";
import { mergeMetadata } from "../storage/metadata.js";
import type { BatchMeta, PeerReader } from "./peer-read.js";
import { majorityOf } from "./protocol/recovery.js";
import { mergeSelections, unionSorted, type MissingPoints } from "./read-merge.js";
import { installPoints, type InstallReport } from "./point-sync.js";

export interface ReadOutcome<T> {
  readonly value: T;
  /** Fewer replicas than a majority answered (only when the caller allowed it): acked points may be missing. */
  readonly partial: boolean;
  /** Replicas whose data the answer holds, this one included. */
  readonly replicasRead: number;
}

export interface MajorityReaderDeps {
  readonly engine: ReplicaEngine;
  readonly reader: PeerReader;
  /** Base URLs of the other replicas of this node's shard. */
  peers(): string[];
  /** The shard's replica count (the majority is of this). */
  replicationFactor(): number;
  /** False while this replica rebuilds after losing its data: it lost its votes, so it does not count in the majority. */
  selfCounts(): boolean;
  readonly log: Logger;
  /** Ask the next peer too when the ones asked have not answered by then. Default 500 ms. */
  readonly hedgeMs?: number;
  /** Read repairs running at once; more are dropped (anti-entropy and catch-up get them later). Default 4. */
  readonly repairsInFlightMax?: number;
  /** Told of every read repair that stored points (the node records it). */
  onRepair?(peerUrl: string, report: InstallReport): void;
}

export interface MajorityReadStats {
  reads: number;
  partial: number;
  unavailable: number;
  peerFailures: number;
  hedged: number;
  repairsStarted: number;
  repairsDropped: number;
  pointsRepaired: number;
  divergentPoints: number;
}

export class MajorityReader {
  private rotation = 0;
  private repairsInFlight = 0;
  private readonly counters: MajorityReadStats = { reads: 0, partial: 0, unavailable: 0, peerFailures: 0, hedged: 0, repairsStarted: 0, repairsDropped: 0, pointsRepaired: 0, divergentPoints: 0 };
  private readonly hedgeMs: number;
  private readonly repairsMax: number;

  constructor(private readonly deps: MajorityReaderDeps) {
    this.hedgeMs = deps.hedgeMs ?? 500;
    this.repairsMax = deps.repairsInFlightMax ?? 4;
  }

  stats(): MajorityReadStats {
    return { ...this.counters };
  }

  async select(sets: MatcherSets, opts: SelectOptions, allowPartial: boolean): Promise<ReadOutcome<SelectedSeries[]>> {
    const local = this.deps.engine.select(sets, opts).filter((s) => s.timestampsNs.length > 0);
    const g = await this.gather((url) => this.deps.reader.select(url, sets, opts), allowPartial);
    let merged = local;
    for (const [url, ans] of g.answers) {
      const m = mergeSelections(merged, ans.series);
      merged = m.series;
      this.counters.divergentPoints += m.divergent;
      if (m.missing.length > 0) this.readRepair(url, m.missing, ans.batches);
    }
    return { value: merged, partial: g.partial, replicasRead: g.answers.length + 1 };
  }

  async seriesLabels(sets: MatcherSets, startNs: bigint, endNs: bigint, seriesMax: number, allowPartial: boolean): Promise<ReadOutcome<Labels[]>> {
    const local = this.deps.engine.seriesLabels(sets, startNs, endNs, seriesMax);
    const g = await this.gather((url) => this.deps.reader.series(url, sets, startNs, endNs, seriesMax), allowPartial);
    const byKey = new Map<string, Labels>();
    for (const l of local) byKey.set(seriesKey(l), l);
    for (const [, ans] of g.answers) for (const l of ans) if (!byKey.has(seriesKey(l))) byKey.set(seriesKey(l), l);
    const value = [...byKey].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, l]) => l);
    return { value, partial: g.partial, replicasRead: g.answers.length + 1 };
  }

  async labelNames(sets: MatcherSets | null, startNs: bigint, endNs: bigint, allowPartial: boolean): Promise<ReadOutcome<string[]>> {
    const local = this.deps.engine.labelNames(sets, startNs, endNs);
    const g = await this.gather((url) => this.deps.reader.labelNames(url, sets, startNs, endNs), allowPartial);
    return { value: unionSorted([local, ...g.answers.map(([, a]) => a)]), partial: g.partial, replicasRead: g.answers.length + 1 };
  }

  async labelValues(name: string, sets: MatcherSets | null, startNs: bigint, endNs: bigint, allowPartial: boolean): Promise<ReadOutcome<string[]>> {
    const local = this.deps.engine.labelValues(name, sets, startNs, endNs);
    const g = await this.gather((url) => this.deps.reader.labelValues(url, name, sets, startNs, endNs), allowPartial);
    return { value: unionSorted([local, ...g.answers.map(([, a]) => a)]), partial: g.partial, replicasRead: g.answers.length + 1 };
  }

  /**
   * Metric metadata is not replicated (each replica keeps what the writes it received carried), so every peer is
   * asked, not a majority; the answer is complete when a majority answered, as for any read.
   */
  async metadata(metric: string | null, limit: number, limitPerMetric: number, allowPartial: boolean): Promise<ReadOutcome<Record<string, MetadataEntry[]>>> {
    const local = this.deps.engine.metadata(metric, -1, -1);
    const g = await this.gather((url) => this.deps.reader.metadata(url, metric), allowPartial, true);
    return { value: mergeMetadata([local, ...g.answers.map(([, a]) => a)], limit, limitPerMetric), partial: g.partial, replicasRead: g.answers.length + 1 };
  }

  /**
   * Answers from enough peers to make a majority with this replica (with `askAll`, from every peer that answers).
   * Peers are asked one by one (rotating, so the load spreads), the next one as soon as one fails or every one
   * asked is slower than hedgeMs.
   */
  private gather<T>(ask: (url: string) => Promise<T>, allowPartial: boolean, askAll = false): Promise<{ answers: [string, T][]; partial: boolean }> {
    this.counters.reads++;
    const needed = majorityOf(this.deps.replicationFactor()) - (this.deps.selfCounts() ? 1 : 0);
    const all = this.deps.peers();
    if (needed <= 0 && (!askAll || all.length === 0)) return Promise.resolve({ answers: [], partial: false });
    const wanted = askAll ? all.length : needed;
    const start = all.length === 0 ? 0 : this.rotation++ % all.length;
    const peers = [...all.slice(start), ...all.slice(0, start)];
    return new Promise((resolve, reject) => {
      const answers: [string, T][] = [];
      const errors: string[] = [];
      let next = 0;
      let inFlight = 0;
      let done = false;
      const hedge = setInterval(() => {
        // Asking every peer: a slow one is not waited for past a hedge interval once a majority has answered.
        if (askAll && !done && answers.length >= needed) return finish();
        if (done || next >= peers.length) return;
        this.counters.hedged++;
        launch();
      }, this.hedgeMs);
      const finish = (): void => {
        if (done) return;
        done = true;
        clearInterval(hedge);
        if (answers.length >= needed) return resolve({ answers, partial: false });
        if (allowPartial) {
          this.counters.partial++;
          return resolve({ answers, partial: true });
        }
        this.counters.unavailable++;
        reject(
          new UnavailableError(
            `a complete read needs ${majorityOf(this.deps.replicationFactor())} of ${this.deps.replicationFactor()} replicas and only ${answers.length + (this.deps.selfCounts() ? 1 : 0)} answered` +
              (errors.length > 0 ? ` (${errors.join("; ")})` : "") +
              "; retry, or ask for a partial answer with partial_response=true",
            1,
          ),
        );
      };
      const check = (): void => {
        if (answers.length >= wanted || (inFlight === 0 && next >= peers.length)) finish();
      };
      const launch = (): void => {
        if (next >= peers.length) return;
        const url = peers[next++]!;
        inFlight++;
        ask(url).then(
          (v) => {
            inFlight--;
            if (done) return;
            answers.push([url, v]);
            check();
          },
          (e: unknown) => {
            inFlight--;
            this.counters.peerFailures++;
            if (done) return;
            errors.push(e instanceof Error ? e.message : String(e));
            launch();
            check();
          },
        );
      };
      for (let i = 0; i < wanted; i++) launch();
      check();
    });
  }

  private readRepair(peerUrl: string, missing: readonly MissingPoints[], batches: ReadonlyMap<string, BatchMeta>): void {
    if (this.repairsInFlight >= this.repairsMax) {
      this.counters.repairsDropped++;
      return;
    }
    this.repairsInFlight++;
    this.counters.repairsStarted++;
    installPoints(
      this.deps.engine,
      missing.map((m) => m.series),
      batches,
    ).then(
      (r) => {
        this.repairsInFlight--;
        this.counters.pointsRepaired += r.stored;
        if (r.stored > 0) {
          this.deps.log.info({ ...r, peer: peerUrl }, "read repair: stored points a peer had and this replica lacked");
          this.deps.onRepair?.(peerUrl, r);
        }
      },
      (e: unknown) => {
        this.repairsInFlight--;
        this.deps.log.warn({ err: e instanceof Error ? e.message : String(e) }, "read repair failed (catch-up and anti-entropy will retry)");
      },
    );
  }
}
