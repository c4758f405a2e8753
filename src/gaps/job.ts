// The gap job (docs/gaps.md): finds gaps, records them, fills them
// per policy with inferred points, notices backfills and stale series.
//
// One node runs it at a time (the cluster's coordinator, elected in etcd; a
// standalone node runs it itself). Everything it writes goes through the
// normal write path (the quorum in a cluster) under an idempotency key derived
// from what it describes, so a job that dies mid-scan and is finished by
// another node writes nothing twice: a gap is recorded once, an inferred
// point stored once, whoever writes it and however often.
//
// Gaps are stored as points of reserved series, replicated and checked like
// any data, readable with the ordinary read API:
//   hqts_gap_length_ns{target="<series key>"}      at the gap's start: end - start
//   hqts_gap_missing_slots{target=…}                at the gap's start: slots missing
//   hqts_gap_filled{target=…,method=…}              at the gap's start: inferred points written
//   hqts_gap_backfilled{target=…}                   at the gap's start: 1 once originals came
//   hqts_gap_stale{target=…}                        at the series' last point: slots since then

import type { Logger } from "pino";
import { assert } from "../core/assert.js";
import { BatchBuilder, type Batch } from "../core/batch.js";
import { sha256, toHex } from "../core/hash.js";
import { canonicalLabels, type Labels } from "../core/labels.js";
import { DEFAULT_LIMITS } from "../core/limits.js";
import type { MatcherSets, SelectedSeries, SelectOptions } from "../storage/engine-api.js";
import { findGaps, staleSince } from "./detect.js";
import { buildInferredBatch, fillGap } from "./fill.js";
import { LEARN_DELTAS_MAX_DEFAULT, learnIntervalNs } from "./interval.js";
import { MAX_FILL_NS_DEFAULT, ruleFor, type GapRule } from "./rules.js";

export const GAP_SERIES_PREFIX = "hqts_gap_";
const NS_PER_S = 1_000_000_000n;
/** Gap lengths are stored as float64 ns: exact up to 2^53 ns (104 days); longer gaps are recorded clamped. */
const LENGTH_NS_MAX = 2n ** 53n;

export interface GapJobDeps {
  /** Complete reads (a majority in a cluster). */
  select(sets: MatcherSets, opts: SelectOptions): Promise<SelectedSeries[]>;
  /** The normal write path (the quorum in a cluster); resolves with the receipt. */
  write(batch: Batch, batchId: string): Promise<unknown>;
  /** Whether this node runs the job now (the coordinator). */
  isLeader(): boolean;
  rules(): readonly GapRule[];
  nowNs(): bigint;
  readonly log: Logger;
}

export interface GapJobOptions {
  /** How far back each scan looks for gaps (a gap is found once the point after it is stored). Default 24 h. */
  lookbackNs?: bigint;
  /** Pause between scans. Default 60 s. */
  intervalMs?: number;
  /** Series read per request. Default 10,000. */
  samplesMax?: number;
}

export interface GapScanReport {
  series: number;
  gapsFound: number;
  gapsRecorded: number;
  filled: number;
  inferredPoints: number;
  backfilled: number;
  stale: number;
  ms: number;
}

interface Recorded {
  lengthNs: bigint;
  filled: boolean;
  backfilled: boolean;
}

const idOf = (kind: string, target: string, tNs: bigint): string => `hqts-gap-${kind}-${toHex(sha256(new TextEncoder().encode(target))).slice(0, 32)}-${tNs}`;

export class GapJob {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<GapScanReport | null> | null = null;
  private stopped = false;
  private readonly lookbackNs: bigint;
  private readonly intervalMs: number;
  private readonly samplesMax: number;
  private readonly counters = { scans: 0, gapsRecorded: 0, filled: 0, inferredPoints: 0, backfilled: 0, stale: 0, lastScanAt: null as string | null };

  constructor(
    private readonly deps: GapJobDeps,
    opts: GapJobOptions = {},
  ) {
    this.lookbackNs = opts.lookbackNs ?? 24n * 3600n * NS_PER_S;
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.samplesMax = opts.samplesMax ?? 50_000_000;
    assert(this.lookbackNs > 0n && this.intervalMs > 0, "gap job options");
  }

  start(): void {
    if (this.timer !== null || this.stopped) return;
    const tick = (): void => {
      this.timer = setTimeout(() => {
        void this.scanOnce()
          .catch((e: unknown) => this.deps.log.warn({ err: e instanceof Error ? e.message : String(e) }, "gap scan failed; the next one retries"))
          .finally(() => {
            if (!this.stopped) tick();
          });
      }, this.intervalMs);
      this.timer.unref();
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => null);
  }

  stats(): unknown {
    return { ...this.counters, leader: this.deps.isLeader() };
  }

  /** One scan if this node is the leader (else null). Never two at once. */
  async scanOnce(): Promise<GapScanReport | null> {
    while (this.running !== null) await this.running.catch(() => null);
    if (!this.deps.isLeader() || this.stopped) return null;
    this.running = this.scan();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  private async scan(): Promise<GapScanReport> {
    const started = Date.now();
    const now = this.deps.nowNs();
    const from = now - this.lookbackNs;
    const report: GapScanReport = { series: 0, gapsFound: 0, gapsRecorded: 0, filled: 0, inferredPoints: 0, backfilled: 0, stale: 0, ms: 0 };
    const all = await this.deps.select([[]], { startNs: from, endNs: now, includeInferred: true, seriesMax: Number.MAX_SAFE_INTEGER, samplesMax: this.samplesMax });
    // What is recorded already, per target series.
    const recorded = new Map<string, Map<bigint, Recorded>>();
    const staleAt = new Map<string, Set<bigint>>();
    const rec = (target: string, t: bigint): Recorded => {
      let m = recorded.get(target);
      if (m === undefined) recorded.set(target, (m = new Map()));
      let r = m.get(t);
      if (r === undefined) m.set(t, (r = { lengthNs: 0n, filled: false, backfilled: false }));
      return r;
    };
    const targets: SelectedSeries[] = [];
    for (const s of all) {
      const name = s.labels.find(([n]) => n === "__name__")?.[1] ?? "";
      if (!name.startsWith(GAP_SERIES_PREFIX)) {
        targets.push(s);
        continue;
      }
      const target = s.labels.find(([n]) => n === "target")?.[1];
      if (target === undefined) continue;
      for (let i = 0; i < s.timestampsNs.length; i++) {
        const t = s.timestampsNs[i]!;
        if (name === "hqts_gap_length_ns") rec(target, t).lengthNs = BigInt(Math.round(s.values[i]!));
        else if (name === "hqts_gap_filled") rec(target, t).filled = true;
        else if (name === "hqts_gap_backfilled") rec(target, t).backfilled = true;
        else if (name === "hqts_gap_stale") {
          let set = staleAt.get(target);
          if (set === undefined) staleAt.set(target, (set = new Set()));
          set.add(t);
        }
      }
    }
    const rules = this.deps.rules();
    for (const s of targets) {
      if (!this.deps.isLeader() || this.stopped) break; // lost the role mid-scan: the new leader takes over
      report.series++;
      const originals: bigint[] = [];
      const values: number[] = [];
      for (let i = 0; i < s.timestampsNs.length; i++)
        if (s.origins[i] === 0) {
          originals.push(s.timestampsNs[i]!);
          values.push(s.values[i]!);
        }
      const rule = ruleFor(s.labels, rules);
      const intervalNs = rule?.intervalNs ?? learnIntervalNs(originals);
      if (intervalNs === null || intervalNs === undefined || originals.length < 2) continue;
      const gaps = findGaps(originals, intervalNs);
      const mine = recorded.get(s.key) ?? new Map<bigint, Recorded>();
      const current = new Set<bigint>();
      for (const g of gaps) {
        report.gapsFound++;
        current.add(g.startNs);
        const r = mine.get(g.startNs);
        // A gap is recorded as first seen: a later partial backfill shows as the gaps that remain, not as an edit.
        if (r === undefined) {
          await this.recordGap(s.key, g.startNs, g.endNs, g.missingSlots);
          report.gapsRecorded++;
        }
        const policy = rule?.policy ?? "none";
        const maxFill = rule?.maxFillNs ?? MAX_FILL_NS_DEFAULT;
        if (policy !== "none" && !(r?.filled ?? false) && g.endNs - g.startNs <= maxFill) {
          const bi = originals.indexOf(g.startNs);
          const ai = originals.indexOf(g.endNs);
          assert(bi >= 0 && ai === bi + 1, "a gap lies between two consecutive original points");
          // A learned interval is taken from the points just before the gap, which do not change as new points
          // arrive: a retry (another scan, another node) then builds the same batch bytes under the same key.
          const fillInterval = rule?.intervalNs ?? learnIntervalNs(originals.slice(Math.max(0, bi - LEARN_DELTAS_MAX_DEFAULT), bi + 1)) ?? intervalNs;
          let fill: ReturnType<typeof fillGap> | null = null;
          try {
            fill = fillGap(g, { tNs: g.startNs, value: values[bi]! }, { tNs: g.endNs, value: values[ai]! }, fillInterval, policy);
          } catch (e) {
            // Too many slots, or an end value that cannot be interpolated (NaN, ±Inf): recorded, not filled.
            const code = (e as { code?: string }).code;
            if (code !== "too_large" && code !== "bad_input") throw e;
            this.deps.log.info({ series: s.key, startNs: g.startNs.toString(), err: (e as Error).message }, "gap job: gap recorded, not filled");
          }
          if (fill !== null && fill.timestampsNs.length > 0) {
            await this.write(buildInferredBatch(s.labels, fill), idOf("fill", s.key, g.startNs));
            await this.marker("hqts_gap_filled", s.key, g.startNs, fill.timestampsNs.length, [["method", policy]]);
            report.filled++;
            report.inferredPoints += fill.timestampsNs.length;
          }
        }
      }
      // A recorded gap no longer among the originals' gaps: originals arrived in it (backfill).
      for (const [start, r] of mine) {
        if (current.has(start) || r.backfilled || r.lengthNs === 0n) continue;
        if (start < (originals[0] ?? start) || start + r.lengthNs > originals[originals.length - 1]!) continue; // outside what was read
        await this.marker("hqts_gap_backfilled", s.key, start, 1);
        report.backfilled++;
      }
      // A series that stopped: reported stale (once per last point), never filled.
      const last = originals[originals.length - 1]!;
      if (staleSince(last, now, intervalNs) && !(staleAt.get(s.key)?.has(last) ?? false)) {
        await this.marker("hqts_gap_stale", s.key, last, Number((now - last) / intervalNs));
        report.stale++;
      }
    }
    report.ms = Date.now() - started;
    this.counters.scans++;
    this.counters.gapsRecorded += report.gapsRecorded;
    this.counters.filled += report.filled;
    this.counters.inferredPoints += report.inferredPoints;
    this.counters.backfilled += report.backfilled;
    this.counters.stale += report.stale;
    this.counters.lastScanAt = new Date().toISOString();
    if (report.gapsRecorded + report.filled + report.backfilled + report.stale > 0) this.deps.log.info({ ...report }, "gap scan");
    return report;
  }

  private async recordGap(target: string, startNs: bigint, endNs: bigint, missingSlots: number): Promise<void> {
    const len = endNs - startNs;
    const b = new BatchBuilder(DEFAULT_LIMITS);
    b.add(this.labels("hqts_gap_length_ns", target), startNs, Number(len < LENGTH_NS_MAX ? len : LENGTH_NS_MAX));
    b.add(this.labels("hqts_gap_missing_slots", target), startNs, missingSlots);
    await this.write(b.build(), idOf("gap", target, startNs));
  }

  private async marker(name: string, target: string, tNs: bigint, value: number, extra: [string, string][] = []): Promise<void> {
    const b = new BatchBuilder(DEFAULT_LIMITS);
    b.add(this.labels(name, target, extra), tNs, value);
    await this.write(b.build(), idOf(name.slice(GAP_SERIES_PREFIX.length), target, tNs));
  }

  /**
   * A write the job makes. A conflict (409) means the point already holds another value (e.g. an original arrived
   * in a slot between the scan's read and the fill): the stored value stands, the job goes on.
   */
  private async write(batch: Batch, id: string): Promise<void> {
    try {
      await this.deps.write(batch, id);
    } catch (e) {
      if ((e as { code?: string }).code !== "conflict") throw e;
      this.deps.log.info({ batchId: id, err: (e as Error).message }, "gap job: a point it would write holds another value; left as stored");
    }
  }

  private labels(name: string, target: string, extra: [string, string][] = []): Labels {
    return canonicalLabels([["__name__", name], ["target", target], ...extra], DEFAULT_LIMITS);
  }
}
