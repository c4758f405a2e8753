// The engine's Prometheus metrics and the totals stats() reports. Counters move once per batch (never per sample);
// gauges read the engine when scraped rather than being updated on every write.

import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { EngineStats } from "./engine-api.js";

export class EngineMetrics {
  readonly fsync: Histogram;
  readonly walDamage: Counter<"kind">;
  readonly repaired: Counter;
  readonly repairDivergent: Counter;
  private readonly samples: Counter;
  private readonly duplicates: Counter;
  private readonly batches: Counter<"outcome">;
  /** Since start, for stats(): moved with the counters above, by the methods below only. */
  readonly totals = { samples: 0, duplicates: 0, batches: 0, conflicts: 0 };

  constructor(reg: Registry, stats: () => EngineStats) {
    this.samples = new Counter({ name: "hqts_samples_ingested_total", help: "Samples newly stored.", registers: [reg] });
    this.duplicates = new Counter({ name: "hqts_duplicate_samples_total", help: "Samples received that were already stored with the same value.", registers: [reg] });
    this.batches = new Counter({ name: "hqts_batches_total", help: "Write batches by outcome.", labelNames: ["outcome"], registers: [reg] });
    this.fsync = new Histogram({
      name: "hqts_wal_fsync_duration_seconds",
      help: "WAL fsync latency (one fsync covers every write waiting: group commit).",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [reg],
    });
    this.walDamage = new Counter({ name: "hqts_wal_damage_total", help: "WAL damage found at open, by kind.", labelNames: ["kind"], registers: [reg] });
    this.repaired = new Counter({ name: "hqts_repaired_points_total", help: "Committed points copied from a peer replica and stored here (Engine.repair).", registers: [reg] });
    this.repairDivergent = new Counter({
      name: "hqts_repair_divergent_points_total",
      help: "Points a peer replica offered for repair that hold another value here (of the same origin class); not stored.",
      registers: [reg],
    });
    const series = new Gauge({ name: "hqts_series", help: "Series known (head and blocks).", registers: [reg], collect: () => collect() });
    const head = new Gauge({ name: "hqts_head_samples", help: "Samples in the in-memory head.", registers: [reg] });
    const blocks = new Gauge({ name: "hqts_blocks", help: "Immutable blocks on disk.", registers: [reg] });
    const disk = new Gauge({ name: "hqts_disk_bytes", help: "Bytes on disk by kind.", labelNames: ["kind"], registers: [reg] });
    const collect = (): void => {
      const s = stats();
      series.set(s.seriesCount);
      head.set(s.headSamples);
      blocks.set(s.blockCount);
      disk.set({ kind: "wal" }, s.walBytes);
      disk.set({ kind: "blocks" }, s.blockBytes);
    };
  }

  /** A batch stored: `accepted` samples new, `duplicates` already there with the same value. */
  stored(accepted: number, duplicates: number): void {
    this.batches.inc({ outcome: "stored" });
    this.samples.inc(accepted);
    this.totals.samples += accepted;
    this.totals.batches++;
    if (duplicates > 0) {
      this.duplicates.inc(duplicates);
      this.totals.duplicates += duplicates;
    }
  }

  /** A batch id known with the same digest: nothing stored. */
  duplicateBatch(samples: number): void {
    this.batches.inc({ outcome: "duplicate" });
    this.duplicates.inc(samples);
    this.totals.duplicates += samples;
  }

  /** A batch refused: a point holds another value, or its id another digest. */
  conflict(): void {
    this.batches.inc({ outcome: "conflict" });
    this.totals.conflicts++;
  }
}
