// A ConformanceEngine over a real HQ-TS store: every `load` of a promqltest
// script goes through the storage engine's public write path (canonical
// batches, WAL, dedup), every query reads back through its select, so the
// corpus measures the database, not an in-memory stand-in. `clear` starts a
// fresh store.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, encodeWithDigest } from "../../core/batch.js";
import { DEFAULT_LIMITS } from "../../core/limits.js";
import type { Matcher } from "../../core/matchers.js";
import { openEngine } from "../../storage/engine.js";
import type { StorageEngine } from "../../storage/engine-api.js";
import type { ConformanceEngine, EngineResult, LoadSeries } from "./conformance.js";
import { Evaluator, type SeriesSource } from "./eval.js";
import { parsePromQL } from "./parse.js";
import { STALE_NAN } from "./value.js";
import { nsColumnToMs } from "../../core/time.js";

/** Samples per write request while loading (well under the batch limit). */
const LOAD_BATCH_SAMPLES = 10_000;

export class StoreConformanceEngine implements ConformanceEngine {
  private engine: StorageEngine | null = null;
  private dir: string | null = null;
  private seq = 0;

  private async store(): Promise<StorageEngine> {
    if (this.engine === null) {
      this.dir = await mkdtemp(join(tmpdir(), "hqts-promql-conformance-"));
      this.engine = await openEngine({ dataDir: this.dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry() });
    }
    return this.engine;
  }

  async load(series: LoadSeries[]): Promise<void> {
    const engine = await this.store();
    let b = new BatchBuilder(DEFAULT_LIMITS);
    const flush = async (): Promise<void> => {
      if (b.sampleCount === 0) return;
      const batch = b.build();
      await engine.write(batch, `conformance-${this.seq++}`, encodeWithDigest(batch));
      b = new BatchBuilder(DEFAULT_LIMITS);
    };
    for (const s of series) {
      for (const p of s.samples) {
        if (b.sampleCount >= LOAD_BATCH_SAMPLES) await flush();
        b.add(s.labels, BigInt(p.tMs) * 1_000_000n, p.stale === true ? STALE_NAN : p.value);
      }
    }
    await flush();
  }

  async clear(): Promise<void> {
    await this.close();
  }

  private source(): SeriesSource {
    return {
      select: async (matchers: Matcher[], startMs: number, endMs: number) => {
        const engine = await this.store();
        const got = engine.select([matchers], {
          startNs: BigInt(Math.floor(startMs)) * 1_000_000n,
          endNs: BigInt(Math.ceil(endMs)) * 1_000_000n,
          includeInferred: true,
          seriesMax: DEFAULT_LIMITS.seriesPerReadMax,
          samplesMax: DEFAULT_LIMITS.samplesPerReadMax,
        });
        return got.map((s) => {
          return { labels: s.labels, tMs: nsColumnToMs(s.timestampsNs), values: s.values };
        });
      },
    };
  }

  async instant(query: string, tMs: number): Promise<EngineResult> {
    const r = await new Evaluator(this.source()).instant(parsePromQL(query), tMs, query);
    return { type: r.value.type, result: r.value.result, warnings: r.warnings, infos: r.infos };
  }

  async range(query: string, startMs: number, endMs: number, stepMs: number): Promise<{ type: "matrix"; result: unknown; warnings: string[]; infos: string[] }> {
    const r = await new Evaluator(this.source()).range(parsePromQL(query), startMs, endMs, stepMs, query);
    return { type: "matrix", result: r.value, warnings: r.warnings, infos: r.infos };
  }

  async close(): Promise<void> {
    if (this.engine !== null) await this.engine.close();
    if (this.dir !== null) await rm(this.dir, { recursive: true, force: true });
    this.engine = null;
    this.dir = null;
  }
}
