// Copying committed points from a peer (docs/protocol.md, "Point sync").
//
// Catch-up by batch id needs the batch's bytes, and a block keeps points, not
// batch bytes. So once a peer has flushed what this replica lacks, the copy
// goes by points: compare order-independent digests per time window
// (docs/format/point-digest.md), then per series inside the windows that
// differ, fetch only the series that differ, and store the points this node
// lacks as their own batches' (Engine.repair: same batch id, same origin).
// Read repair uses the same last step for points a majority read found
// missing here.
//
// Pull only: each replica copies what it lacks; a point only this node holds
// reaches the peer when the peer pulls.

import type { Logger } from "pino";
import { assert } from "../core/assert.js";
import { encodeBatch, type Batch, type BatchSeries } from "../core/batch.js";
import { ConflictError } from "../core/errors.js";
import type { Labels } from "../core/labels.js";
import type { ReplicaEngine } from "../storage/replica-api.js";
import type { SelectedSeries } from "../storage/engine-api.js";
import type { FlushedBatch } from "./protocol/messages.js";
import { ALL_SERIES, newMeter, setsForKeys, type BatchMeta, type PeerReader, type ReadMeter } from "./peer-read.js";
import { mergeSeries } from "./read-merge.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";


export interface InstallReport {
  stored: number;
  present: number;
  divergent: number;
  /** Points whose batch the peer did not describe (it forgot it): not stored. */
  unknownBatch: number;
  /** Batches undecided here: the protocol decides them, their points are not copied. */
  deferred: number;
}

const zeroInstall = (): InstallReport => ({ stored: 0, present: 0, divergent: 0, unknownBatch: 0, deferred: 0 });

function addInstall(a: InstallReport, b: InstallReport): void {
  a.stored += b.stored;
  a.present += b.present;
  a.divergent += b.divergent;
  a.unknownBatch += b.unknownBatch;
  a.deferred += b.deferred;
}

interface PartSeries {
  labels: Labels;
  ts: bigint[];
  vs: number[];
}

/** Repairs in flight at once: each is one WAL record riding the group commit. */
const REPAIRS_IN_FLIGHT_MAX = 32;

/**
 * Stores the given samples (a peer's committed points, with their batch ids) as their batches' points: the
 * samples are grouped per batch into canonical parts, each handed to Engine.repair, which skips what is present.
 */
export async function installPoints(engine: ReplicaEngine, series: readonly SelectedSeries[], batches: ReadonlyMap<string, BatchMeta>): Promise<InstallReport> {
  const report = zeroInstall();
  const parts = new Map<string, Map<string, PartSeries>>();
  for (const s of series)
    for (let i = 0; i < s.timestampsNs.length; i++) {
      const id = s.batchIds[s.batchRefs[i]!]!;
      const meta = batches.get(id);
      if (meta === undefined || meta.origin !== (s.origins[i] === 0 ? "original" : "inferred")) {
        report.unknownBatch++;
        continue;
      }
      let part = parts.get(id);
      if (part === undefined) parts.set(id, (part = new Map()));
      let ps = part.get(s.key);
      if (ps === undefined) part.set(s.key, (ps = { labels: s.labels, ts: [], vs: [] }));
      ps.ts.push(s.timestampsNs[i]!);
      ps.vs.push(s.values[i]!);
    }
  const jobs = [...parts].map(([id, part]) => () => repairOne(engine, batches.get(id)!, part));
  for (let k = 0; k < jobs.length; k += REPAIRS_IN_FLIGHT_MAX) {
    const results = await Promise.all(jobs.slice(k, k + REPAIRS_IN_FLIGHT_MAX).map((j) => j()));
    for (const r of results) addInstall(report, r);
  }
  return report;
}

async function repairOne(engine: ReplicaEngine, meta: BatchMeta, part: Map<string, PartSeries>): Promise<InstallReport> {
  const series: BatchSeries[] = [];
  let n = 0;
  for (const key of [...part.keys()].sort()) {
    const p = part.get(key)!;
    for (let i = 1; i < p.ts.length; i++) assert(p.ts[i - 1]! < p.ts[i]!, `point sync: series ${key} samples out of order`);
    series.push({ key, labels: p.labels, timestampsNs: BigInt64Array.from(p.ts), values: Float64Array.from(p.vs) });
    n += p.ts.length;
  }
  return adopt(engine, meta, { shardId: meta.shardId, origin: meta.origin, inference: meta.inference, series, sampleCount: n });
}

async function adopt(engine: ReplicaEngine, meta: BatchMeta, part: Batch): Promise<InstallReport> {
  try {
    const r = await engine.repair({ batchId: meta.batchId, sha256: meta.sha256, hlc: meta.hlc, sampleCount: meta.sampleCount }, part, encodeBatch(part));
    return { stored: r.stored, present: r.present, divergent: r.divergent.length, unknownBatch: 0, deferred: r.deferred ? 1 : 0 };
  } catch (e) {
    // The id holds other content here: a peer and this node disagree on what the id means. Keep ours, report it.
    if (!(e instanceof ConflictError)) throw e;
    return { ...zeroInstall(), divergent: part.sampleCount };
  }
}

/** Adopts a flushed batch's id as committed, with no points of its own (they arrived by point sync or were shared). */
export async function adoptFlushed(engine: ReplicaEngine, f: FlushedBatch): Promise<void> {
  if (engine.lookupBatch(f.batchId) !== null) return;
  await adopt(engine, f, { shardId: f.shardId, origin: f.origin, inference: f.inference, series: [], sampleCount: 0 });
}

export interface SyncReport {
  peer: string;
  windows: number;
  windowsDiffering: number;
  seriesFetched: number;
  samplesFetched: number;
  install: InstallReport;
  /** What the comparison and copy cost on the wire (both directions, HTTP bodies). */
  traffic: ReadMeter;
  /** Summary digests of the synced range, "count:hash" (hash = sum of the window hashes mod 2^64, hex): before, after, the peer's. */
  digests: { before: string; after: string; peer: string };
  ms: number;
}

export interface PointSyncOptions {
  /** Digest window. Smaller: finer comparison, more digests exchanged. */
  windowNs?: bigint;
  /** Series per fetch. */
  seriesPerFetchMax?: number;
  /** Samples per fetch (the peer refuses more with 413: the fetch is split by series first). */
  samplesPerFetchMax?: number;
}

export interface SyncOptions {
  /** Pace the copy to at most this many bytes received per second (anti-entropy); absent: as fast as it goes. */
  bytesPerSecondMax?: number;
}

const HOUR_NS = 3_600_000_000_000n;
const U64 = (1n << 64n) - 1n;

/** One line for a set of window digests: total count and the sum of their hashes (mod 2^64). */
function summary(ws: readonly { count: number; hash: bigint }[]): string {
  let n = 0;
  let h = 0n;
  for (const w of ws) {
    n += w.count;
    h = (h + w.hash) & U64;
  }
  return `${n}:${h.toString(16).padStart(16, "0")}`;
}

export class PointSync {
  private readonly windowNs: bigint;
  private readonly seriesPerFetch: number;
  private readonly samplesPerFetch: number;

  constructor(
    private readonly engine: ReplicaEngine,
    private readonly reader: PeerReader,
    private readonly log: Logger,
    opts: PointSyncOptions = {},
  ) {
    this.windowNs = opts.windowNs ?? HOUR_NS;
    this.seriesPerFetch = opts.seriesPerFetchMax ?? 1000;
    this.samplesPerFetch = opts.samplesPerFetchMax ?? 5_000_000;
    assert(this.windowNs > 0n && this.seriesPerFetch > 0 && this.samplesPerFetch > 0, "point sync options");
  }

  /** Copies what `peerUrl` holds committed in [startNs, endNs] and this node lacks. */
  async syncFrom(peerUrl: string, startNs = INT64_MIN, endNs = INT64_MAX, opts: SyncOptions = {}): Promise<SyncReport> {
    const started = Date.now();
    const report: SyncReport = {
      peer: peerUrl,
      windows: 0,
      windowsDiffering: 0,
      seriesFetched: 0,
      samplesFetched: 0,
      install: zeroInstall(),
      traffic: newMeter(),
      digests: { before: "", after: "", peer: "" },
      ms: 0,
    };
    const theirs = await this.reader.digestWindows(peerUrl, startNs, endNs, this.windowNs, report.traffic);
    const ours = new Map<bigint, { count: number; hash: bigint }>();
    const mineBefore = this.engine.digestWindows(startNs, endNs, this.windowNs);
    for (const w of mineBefore) ours.set(w.startNs, w);
    report.digests.before = summary(mineBefore);
    report.digests.peer = summary(theirs);
    report.windows = theirs.length;
    for (const w of theirs) {
      const mine = ours.get(w.startNs);
      if (mine !== undefined && mine.count === w.count && mine.hash === w.hash) continue;
      report.windowsDiffering++;
      const lo = w.startNs > startNs ? w.startNs : startNs;
      const hiWindow = w.startNs + this.windowNs - 1n;
      const hi = hiWindow < endNs ? hiWindow : endNs;
      await this.syncWindow(peerUrl, lo, hi, report, started, opts);
    }
    report.digests.after = report.windowsDiffering === 0 ? report.digests.before : summary(this.engine.digestWindows(startNs, endNs, this.windowNs));
    report.ms = Date.now() - started;
    return report;
  }

  private async syncWindow(peerUrl: string, lo: bigint, hi: bigint, report: SyncReport, started: number, opts: SyncOptions): Promise<void> {
    const theirs = await this.reader.digestSeries(peerUrl, lo, hi, report.traffic);
    const ours = new Map<string, { count: number; hash: bigint }>();
    for (const s of this.engine.digestSeries(lo, hi)) ours.set(s.key, s);
    const keys = theirs.filter((s) => {
      const m = ours.get(s.key);
      return m === undefined || m.count !== s.count || m.hash !== s.hash;
    });
    // Group series so that a fetch stays under the sample bound (a series bigger than it goes alone).
    let group: string[] = [];
    let groupSamples = 0;
    const flush = async (): Promise<void> => {
      if (group.length === 0) return;
      const ans = await this.reader.select(
        peerUrl,
        ALL_SERIES,
        { startNs: lo, endNs: hi, includeInferred: true, seriesMax: group.length + 1, samplesMax: Math.max(this.samplesPerFetch, groupSamples) },
        group,
        report.traffic,
      );
      report.seriesFetched += ans.series.length;
      for (const s of ans.series) report.samplesFetched += s.timestampsNs.length;
      // Only what this replica lacks goes to Engine.repair (which would skip the rest one point at a time).
      const mine = new Map<string, SelectedSeries>();
      if (ans.series.length > 0)
        for (const s of this.engine.select(setsForKeys(ans.series.map((x) => x.labels), this.engine.labelNames(null, lo, hi)), {
          startNs: lo,
          endNs: hi,
          includeInferred: true,
          seriesMax: ans.series.length + 1,
          samplesMax: Number.MAX_SAFE_INTEGER,
        }))
          mine.set(s.key, s);
      const lacking: SelectedSeries[] = [];
      for (const theirs of ans.series) {
        const m = mine.get(theirs.key);
        if (m === undefined) lacking.push(theirs);
        else {
          const merged = mergeSeries(m, theirs);
          if (merged.missing !== null) lacking.push(merged.missing);
          report.install.divergent += merged.divergent;
        }
      }
      addInstall(report.install, await installPoints(this.engine, lacking, ans.batches));
      group = [];
      groupSamples = 0;
      const rate = opts.bytesPerSecondMax;
      if (rate !== undefined) {
        const aheadMs = (report.traffic.bytesReceived / rate) * 1000 - (Date.now() - started);
        if (aheadMs > 0) await new Promise((r) => setTimeout(r, aheadMs)); // pacing, not synchronisation
      }
    };
    for (const s of keys) {
      if (group.length >= this.seriesPerFetch || (group.length > 0 && groupSamples + s.count > this.samplesPerFetch)) await flush();
      group.push(s.key);
      groupSamples += s.count;
    }
    await flush();
  }
}
