// Majority reads (decision 7) and point sync against real engines served over
// real HTTP on loopback (in-process, no mocks): a replica that lacks points
// answers them anyway by merging a peer, stores them by read repair, copies a
// peer's flushed points by point sync, and refuses to answer (503) without a
// majority unless a partial answer is asked for.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { MajorityReader } from "../../src/cluster/majority-read.js";
import { PeerReader, peerReadRoute } from "../../src/cluster/peer-read.js";
import { PointSync } from "../../src/cluster/point-sync.js";
import { BatchBuilder, encodeWithDigest, type Batch } from "../../src/core/batch.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { createHqServer, type HqServer } from "../../src/server/server.js";
import { Engine, openEngine } from "../../src/storage/engine.js";
import type { SelectOptions } from "../../src/storage/engine-api.js";
import { freePort } from "../helpers/node-proc.js";

const log = pino({ level: "silent" });
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Replica {
  engine: Engine;
  url: string;
}

async function replica(): Promise<Replica> {
  const dir = await mkdtemp(join(tmpdir(), "hqts-mread-"));
  const engine = (await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log, metrics: new Registry() })) as Engine;
  const hq: HqServer = createHqServer({ limits: DEFAULT_LIMITS, log, registry: new Registry(), processMetrics: false, extraRoutes: [peerReadRoute(() => engine)] });
  hq.setEngine(engine);
  const { url } = await hq.listen("127.0.0.1", 0);
  cleanups.push(async () => {
    await hq.shutdown(1000);
    await rm(dir, { recursive: true, force: true });
  });
  return { engine, url };
}

function batchOf(points: [number, number][], metric = "m"): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [t, v] of points) b.add(canonicalLabels([["__name__", metric], ["host", "a"]], DEFAULT_LIMITS), BigInt(t), v);
  return b.build();
}

async function write(r: Replica, id: string, b: Batch): Promise<void> {
  await r.engine.write(b, id, encodeWithDigest(b));
}

const SETS = [[makeMatcher("__name__", "=", "m")]];
const ALL_TIME: SelectOptions = { startNs: -(1n << 63n), endNs: (1n << 63n) - 1n, includeInferred: true, seriesMax: 1000, samplesMax: 1_000_000 };

const localTimes = (r: Replica): number[] => r.engine.select(SETS, ALL_TIME).flatMap((s) => [...s.timestampsNs].map(Number));

async function eventually(what: string, fn: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!fn()) {
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("majority reads over real replicas", () => {
  it("answer every point a majority holds, and read-repair the points this replica lacked", async () => {
    const [a, b] = [await replica(), await replica()];
    // Batch 1 on both; batch 2 only on b (a missed it while it was away).
    await write(a, "one", batchOf([[1, 1], [2, 2]]));
    await write(b, "one", batchOf([[1, 1], [2, 2]]));
    await write(b, "two", batchOf([[3, 3], [4, 4]]));
    const reader = new PeerReader();
    cleanups.push(async () => reader.close());
    const mr = new MajorityReader({ engine: a.engine, reader, peers: () => [b.url], replicationFactor: () => 3, selfCounts: () => true, log });
    assert.deepEqual(localTimes(a), [1, 2], "a alone lacks batch two");
    const r = await mr.select(SETS, ALL_TIME, false);
    assert.equal(r.partial, false);
    assert.equal(r.replicasRead, 2);
    assert.deepEqual(r.value.flatMap((s) => [...s.timestampsNs].map(Number)), [1, 2, 3, 4]);
    const s = r.value[0]!;
    assert.deepEqual([...s.batchRefs].map((i) => s.batchIds[i]), ["one", "one", "two", "two"], "provenance survives the merge");
    // Read repair stores what b had, as batch two's points, on a.
    await eventually("a holds batch two", () => localTimes(a).length === 4);
    assert.equal(a.engine.lookupBatch("two")?.phase, "committed");
    await eventually("the repair is counted once durable", () => mr.stats().pointsRepaired === 2);
    // Metadata reads merge too.
    await write(b, "three", batchOf([[5, 5]], "other"));
    const names = await mr.labelValues("__name__", null, ALL_TIME.startNs, ALL_TIME.endNs, false);
    assert.deepEqual(names.value, ["m", "other"]);
    const series = await mr.seriesLabels([[makeMatcher("host", "=", "a")]], ALL_TIME.startNs, ALL_TIME.endNs, 100, false);
    assert.equal(series.value.length, 2);
  });

  it("without a majority: 503 (retryable), or a partial answer flagged as such when asked for", async () => {
    const a = await replica();
    await write(a, "one", batchOf([[1, 1]]));
    const reader = new PeerReader({ timeoutMs: 2000 });
    cleanups.push(async () => reader.close());
    const dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
    const mr = new MajorityReader({ engine: a.engine, reader, peers: () => dead, replicationFactor: () => 3, selfCounts: () => true, log });
    await assert.rejects(mr.select(SETS, ALL_TIME, false), (e: { code?: string; retryable?: boolean; message: string }) => {
      assert.equal(e.code, "unavailable");
      assert.equal(e.retryable, true);
      assert.match(e.message, /needs 2 of 3 replicas and only 1 answered/);
      return true;
    });
    const p = await mr.select(SETS, ALL_TIME, true);
    assert.equal(p.partial, true);
    assert.equal(p.replicasRead, 1);
    assert.deepEqual(p.value.flatMap((s) => [...s.timestampsNs].map(Number)), [1]);
  });

  it("a replica rebuilding after data loss does not count itself: it needs a majority of the others", async () => {
    const [a, b] = [await replica(), await replica()];
    await write(b, "one", batchOf([[1, 1]]));
    const reader = new PeerReader({ timeoutMs: 2000 });
    cleanups.push(async () => reader.close());
    const dead = `http://127.0.0.1:${await freePort()}`;
    const mr = new MajorityReader({ engine: a.engine, reader, peers: () => [b.url, dead], replicationFactor: () => 3, selfCounts: () => false, log });
    await assert.rejects(mr.select(SETS, ALL_TIME, false), { code: "unavailable" });
  });
});

describe("point sync over real replicas", () => {
  it("copies exactly the points the peer holds and this replica lacks, flushed or not, with their batch ids", async () => {
    const [a, b] = [await replica(), await replica()];
    for (let i = 0; i < 20; i++) await write(b, `b${i}`, batchOf(Array.from({ length: 10 }, (_, j): [number, number] => [i * 3_600_000_000_000 + j, i * 100 + j])));
    await b.engine.flush(); // the batches' bytes are gone on b: only points remain
    for (let i = 0; i < 5; i++) await write(a, `b${i}`, batchOf(Array.from({ length: 10 }, (_, j): [number, number] => [i * 3_600_000_000_000 + j, i * 100 + j])));
    await write(b, "head", batchOf([[99 * 3_600_000_000_000, 1]]));
    const reader = new PeerReader();
    cleanups.push(async () => reader.close());
    const sync = new PointSync(a.engine, reader, log);
    const r1 = await sync.syncFrom(b.url);
    assert.equal(r1.install.stored, 15 * 10 + 1, JSON.stringify(r1));
    assert.equal(r1.windowsDiffering, 16, "only the windows a lacked were compared further");
    assert.equal(r1.install.divergent, 0);
    const all = { ...ALL_TIME, samplesMax: 10_000 };
    const mine = a.engine.select(SETS, all)[0]!;
    const theirs = b.engine.select(SETS, all)[0]!;
    assert.deepEqual([...mine.timestampsNs], [...theirs.timestampsNs]);
    assert.deepEqual([...mine.values], [...theirs.values]);
    assert.deepEqual(
      [...mine.batchRefs].map((i) => mine.batchIds[i]),
      [...theirs.batchRefs].map((i) => theirs.batchIds[i]),
    );
    assert.deepEqual(a.engine.digestWindows(all.startNs, all.endNs, 3_600_000_000_000n), b.engine.digestWindows(all.startNs, all.endNs, 3_600_000_000_000n));
    // Converged: a second sync finds nothing to do.
    const r2 = await sync.syncFrom(b.url);
    assert.equal(r2.windowsDiffering, 0);
    assert.equal(r2.install.stored, 0);
  });
});
