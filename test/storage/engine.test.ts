import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, sameValue, type Batch, type Origin } from "../../src/core/batch.js";
import { ConflictError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { openEngine, type EngineOptions } from "../../src/storage/engine.js";
import type { StorageEngine } from "../../src/storage/engine-api.js";
import { tempDirs } from "../helpers/temp-dirs.js";

const tempDir = tempDirs("hqts-engine-");

function open(dataDir: string, extra: Partial<EngineOptions> = {}): Promise<StorageEngine> {
  return openEngine({ dataDir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry(), ...extra });
}

function batch(points: [string, bigint, number][], origin: Origin = "original"): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [name, t, v] of points) b.add(canonicalLabels([["__name__", name], ["job", "t"]], DEFAULT_LIMITS), t, v);
  return b.build({ origin, inference: origin === "inferred" ? '{"method":"linear"}' : null });
}

const ALL = [[makeMatcher("job", "=", "t")]];
const everything = { startNs: -(1n << 62n), endNs: 1n << 62n, includeInferred: true, seriesMax: 1e6, samplesMax: 1e8 };

function read(e: StorageEngine, name: string, includeInferred = true): { t: bigint; v: number; origin: number; batch: string }[] {
  const rs = e.select([[makeMatcher("__name__", "=", name)]], { ...everything, includeInferred });
  if (rs.length === 0) return [];
  assert.equal(rs.length, 1);
  const r = rs[0]!;
  return [...r.timestampsNs].map((t, i) => ({ t, v: r.values[i]!, origin: r.origins[i]!, batch: r.batchIds[r.batchRefs[i]!]! }));
}

describe("storage engine", () => {
  it("stores and reads back points with exact ns timestamps and value bits", async () => {
    const e = await open(await tempDir());
    // JS quiets signalling NaNs on every read, so the stale marker lives as its quiet form (payload 2 kept).
    const stale = new Float64Array(new BigUint64Array([0x7ff8000000000002n]).buffer)[0]!;
    const r = await e.write(batch([["m", 1700000000123456789n, 1.5], ["m", 1700000000123456790n, stale], ["m", 5n, -0]]), "b1");
    assert.equal(r.accepted, 3);
    assert.equal(r.duplicate, false);
    const pts = read(e, "m");
    assert.deepEqual(pts.map((p) => p.t), [5n, 1700000000123456789n, 1700000000123456790n]);
    assert.ok(Object.is(pts[0]!.v, -0));
    assert.ok(sameValue(pts[2]!.v, stale));
    assert.ok(pts.every((p) => p.batch === "b1" && p.origin === 0));
    await e.close();
  });

  it("stores one point however often a batch is replayed, and answers with the same receipt", async () => {
    const e = await open(await tempDir());
    const b = batch([["m", 1n, 1], ["m", 2n, 2]]);
    const receipts = [];
    for (let i = 0; i < 50; i++) receipts.push(await e.write(b, "key-1"));
    receipts.push(...(await Promise.all(Array.from({ length: 50 }, () => e.write(b, "key-1")))));
    assert.equal(new Set(receipts.map((r) => `${r.batchId}/${r.sha256}/${r.hlc}`)).size, 1);
    assert.equal(receipts.filter((r) => !r.duplicate).length, 1);
    assert.equal(read(e, "m").length, 2);
    // The same content under another key stores nothing new either.
    const other = await e.write(b, "key-2");
    assert.equal(other.accepted, 0);
    assert.equal(other.duplicates, 2);
    assert.equal(read(e, "m").length, 2);
    await e.close();
  });

  it("refuses a whole batch holding a different value for a stored point, naming it", async () => {
    const e = await open(await tempDir());
    await e.write(batch([["m", 1n, 1]]), "a");
    await assert.rejects(e.write(batch([["m", 2n, 2], ["m", 1n, 9]]), "b"), (err: unknown) => {
      assert.ok(err instanceof ConflictError);
      assert.equal(err.points.length, 1);
      assert.equal(err.points[0]!.timestampNs, "1");
      assert.equal(err.points[0]!.storedValue, 1);
      assert.equal(err.points[0]!.offeredValue, 9);
      return true;
    });
    assert.deepEqual(read(e, "m").map((p) => p.t), [1n]); // nothing of batch b stored
    await assert.rejects(e.write(batch([["m", 3n, 3]]), "a"), ConflictError); // batch id reused for other content
    await e.close();
  });

  it("lets exactly one of two concurrent conflicting writers win", async () => {
    const e = await open(await tempDir());
    const results = await Promise.allSettled([e.write(batch([["m", 1n, 1]]), "w1"), e.write(batch([["m", 1n, 2]]), "w2")]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert.ok(lost.reason instanceof ConflictError);
    const pts = read(e, "m");
    assert.equal(pts.length, 1);
    assert.equal(pts[0]!.batch, results[0]!.status === "fulfilled" ? "w1" : "w2");
    await e.close();
  });

  it("lets an original replace an inferred point, never the reverse", async () => {
    const e = await open(await tempDir());
    await e.write(batch([["m", 1n, 10], ["m", 2n, 20]], "inferred"), "inf");
    await e.write(batch([["m", 1n, 11]]), "orig");
    let pts = read(e, "m");
    assert.deepEqual(pts.map((p) => [p.t, p.v, p.origin, p.batch]), [[1n, 11, 0, "orig"], [2n, 20, 1, "inf"]]);
    const r = await e.write(batch([["m", 1n, 99], ["m", 3n, 30]], "inferred"), "inf2");
    assert.equal(r.accepted, 1); // only t=3; t=1 holds an original
    pts = read(e, "m", false);
    assert.deepEqual(pts.map((p) => p.t), [1n]);
    await e.close();
  });

  it("recovers everything acked after a restart, from the WAL and from blocks", async () => {
    const dir = await tempDir();
    let e = await open(dir);
    await e.write(batch([["m", 1n, 1], ["m", 2n, 2]]), "b1");
    const f = await e.flush();
    assert.ok(f.blockPath !== null);
    assert.equal(f.samples, 2);
    await e.write(batch([["m", 3n, 3], ["n", 1n, 1]]), "b2");
    await e.close();
    e = await open(dir);
    assert.deepEqual(read(e, "m").map((p) => [p.t, p.batch]), [[1n, "b1"], [2n, "b1"], [3n, "b2"]]);
    // Idempotency survives the flush and the restart.
    const again = await e.write(batch([["m", 1n, 1], ["m", 2n, 2]]), "b1");
    assert.equal(again.duplicate, true);
    await assert.rejects(e.write(batch([["m", 2n, 5]]), "b3"), ConflictError); // conflict against a block
    assert.equal(e.stats().seriesCount, 2);
    await e.close();
  });

  it("merges overlapping blocks and head on read, original over inferred", async () => {
    const dir = await tempDir();
    const e = await open(dir);
    await e.write(batch([["m", 10n, 1], ["m", 20n, 2]], "inferred"), "i1");
    await e.flush();
    await e.write(batch([["m", 10n, 5], ["m", 15n, 6]]), "o1"); // out of order, into the head
    await e.flush();
    await e.write(batch([["m", 5n, 7]]), "o2");
    assert.deepEqual(read(e, "m").map((p) => [p.t, p.v, p.origin]), [[5n, 7, 0], [10n, 5, 0], [15n, 6, 0], [20n, 2, 1]]);
    assert.equal(e.stats().blockCount, 2);
    await e.close();
  });

  it("drops the WAL a flush covered and keeps what came after", async () => {
    const dir = await tempDir();
    const e = await open(dir);
    for (let i = 0; i < 5; i++) await e.write(batch([["m", BigInt(i), i]]), `b${i}`);
    await e.flush();
    await e.write(batch([["m", 100n, 1]]), "after");
    const segs = (await readdir(join(dir, "wal"))).filter((n) => n.endsWith(".seg"));
    assert.equal(segs.length, 1);
    await e.close();
    const e2 = await open(dir);
    assert.equal(read(e2, "m").length, 6);
    await e2.close();
  });

  it("takes writes while a flush writes its block, and keeps both the block's points and the new ones", async () => {
    const dir = await tempDir();
    const e = await open(dir);
    // A head big enough that encoding and writing its block takes far longer than one small write's fsync.
    const SERIES = 2000;
    const STEPS = 100;
    for (let k = 0; k < STEPS; k++) {
      const b = new BatchBuilder(DEFAULT_LIMITS);
      for (let i = 0; i < SERIES; i++) b.add(canonicalLabels([["__name__", "big"], ["job", "t"], ["i", String(i)]], DEFAULT_LIMITS), BigInt(k) * 1_000_000_000n, i + k);
      await e.write(b.build(), `big-${k}`);
    }
    let flushed = false;
    const flushing = e.flush().then((r) => {
      flushed = true;
      return r;
    });
    const during: boolean[] = [];
    for (let k = 0; k < 5; k++) {
      await e.write(batch([["during", BigInt(k), k]]), `during-${k}`);
      during.push(flushed);
    }
    const r = await flushing;
    assert.equal(r.samples, SERIES * STEPS, "the block holds exactly the head as it was when the flush began");
    assert.equal(during[0], false, "a write issued during the flush was answered before the flush ended");
    assert.deepEqual(read(e, "during").map((p) => p.v), [0, 1, 2, 3, 4]);
    await e.close();
    const again = await open(dir);
    assert.deepEqual(read(again, "during").map((p) => p.v), [0, 1, 2, 3, 4], "the writes made during the flush survive a restart (their WAL records were kept)");
    assert.equal(again.select([[makeMatcher("__name__", "=", "big")]], everything).length, SERIES);
    await again.close();
  });

  it("deletes blocks past retention", async () => {
    const dir = await tempDir();
    const e = await open(dir, { retentionMs: 3_600_000 });
    const now = BigInt(Date.now()) * 1_000_000n;
    await e.write(batch([["old", now - 7_200_000_000_000n, 1]]), "old");
    await e.flush();
    await e.write(batch([["new", now, 1]]), "new");
    await e.flush();
    await e.close();
    const e2 = await open(dir, { retentionMs: 3_600_000 });
    assert.equal(read(e2, "old").length, 0);
    assert.equal(read(e2, "new").length, 1);
    assert.equal(e2.stats().blockCount, 1);
    await e2.close();
  });

  it("answers labels, label values and series within a time range", async () => {
    const e = await open(await tempDir());
    await e.write(batch([["a", 10n, 1], ["b", 20n, 1]]), "x");
    assert.deepEqual(e.labelNames(null, 0n, 100n), ["__name__", "job"]);
    assert.deepEqual(e.labelValues("__name__", null, 15n, 100n), ["b"]);
    assert.deepEqual(e.seriesLabels(ALL, 0n, 100n, 10).length, 2);
    await e.close();
  });
});
