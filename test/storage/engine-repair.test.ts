// Engine.repair: committed points of a batch copied from a peer replica once the
// batch bytes are gone there. Identity rules per point, the batch id's fate,
// durability through REPAIR WAL records, and a batch split among blocks.

import assert from "node:assert/strict";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, encodeBatch, encodeWithDigest, type Batch, type Origin } from "../../src/core/batch.js";
import { BadInputError, ConflictError, CorruptionError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { BlockReader, writeBlock } from "../../src/storage/block-io.js";
import { Engine, openEngine, type RepairMeta } from "../../src/storage/engine.js";
import { decodeWalRepair, encodeWalRepair, WalRecordType } from "../../src/storage/wal-payload.js";
import { Wal } from "../../src/wal/wal.js";
import { tempDirs } from "../helpers/temp-dirs.js";
import { openHost } from "./replica-host.js";

const tempDir = tempDirs("hqts-repair-");

interface Opened {
  e: Engine;
  metrics: Registry;
}

async function open(dir: string, acceptDataLoss = false): Promise<Opened> {
  const metrics = new Registry();
  const e = (await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss, log: pino({ level: "silent" }), metrics })) as Engine;
  return { e, metrics };
}

async function counter(m: Registry, name: string): Promise<number> {
  const metric = m.getSingleMetric(name);
  assert.ok(metric !== undefined, `metric ${name}`);
  const got = await metric.get();
  return got.values.reduce((a, v) => a + v.value, 0);
}

const INFERENCE = '{"method":"linear"}';

function batch(points: [string, bigint, number][], origin: Origin = "original"): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [name, t, v] of points) b.add(canonicalLabels([["__name__", name], ["job", "t"]], DEFAULT_LIMITS), t, v);
  return b.build({ origin, inference: origin === "inferred" ? INFERENCE : null });
}

/** The canonical batch of the points of `full` that `keep` selects: what a peer sends as a repair part. */
function partOf(full: Batch, keep: (name: string, t: bigint) => boolean): Batch {
  const series = [];
  let n = 0;
  for (const s of full.series) {
    const name = s.labels.find(([k]) => k === "__name__")![1];
    const ts: bigint[] = [];
    const vs: number[] = [];
    s.timestampsNs.forEach((t, i) => {
      if (!keep(name, t)) return;
      ts.push(t);
      vs.push(s.values[i]!);
    });
    if (ts.length === 0) continue;
    series.push({ key: s.key, labels: s.labels, timestampsNs: BigInt64Array.from(ts), values: Float64Array.from(vs) });
    n += ts.length;
  }
  return { shardId: full.shardId, origin: full.origin, inference: full.inference, series, sampleCount: n };
}

function metaOf(full: Batch, batchId: string, hlc = 1000n): RepairMeta {
  return { batchId, sha256: encodeWithDigest(full).sha256, hlc, sampleCount: full.sampleCount };
}

function repair(e: Engine, full: Batch, batchId: string, keep: (name: string, t: bigint) => boolean = () => true) {
  const part = partOf(full, keep);
  return e.repair(metaOf(full, batchId), part, encodeBatch(part));
}

const everything = { startNs: -(1n << 62n), endNs: 1n << 62n, includeInferred: true, seriesMax: 1e6, samplesMax: 1e8 };

function read(e: Engine, name: string): { t: bigint; v: number; origin: number; batch: string }[] {
  const rs = e.select([[makeMatcher("__name__", "=", name)]], everything);
  if (rs.length === 0) return [];
  assert.equal(rs.length, 1);
  const r = rs[0]!;
  return [...r.timestampsNs].map((t, i) => ({ t, v: r.values[i]!, origin: r.origins[i]!, batch: r.batchIds[r.batchRefs[i]!]! }));
}

const FULL = batch([["m", 1n, 1], ["m", 2n, 2], ["m", 3n, 3], ["n", 1n, 10], ["n", 5n, 50]]);
const ALL_OF_FULL = [
  { t: 1n, v: 1, origin: 0, batch: "B" },
  { t: 2n, v: 2, origin: 0, batch: "B" },
  { t: 3n, v: 3, origin: 0, batch: "B" },
];

describe("Engine.repair", () => {
  it("installs a peer's points into an empty engine as the batch's: visible, committed, and the batch id answers duplicate", async () => {
    const { e, metrics } = await open(await tempDir());
    const r = await repair(e, FULL, "B", (name, t) => name === "m" || t === 5n);
    assert.deepEqual(r, { stored: 4, present: 0, divergent: [], deferred: false });
    assert.deepEqual(read(e, "m"), ALL_OF_FULL);
    assert.deepEqual(read(e, "n"), [{ t: 5n, v: 50, origin: 0, batch: "B" }]);
    const info = e.lookupBatch("B");
    assert.deepEqual(info, {
      batchId: "B",
      sha256: encodeWithDigest(FULL).sha256,
      hlc: 1000n,
      shardId: 0,
      sampleCount: 5,
      phase: "committed",
      origin: "original",
      inference: null,
    });
    assert.deepEqual(
      e.listBatches("committed", 0n).map((b) => b.batchId),
      ["B"],
    );
    // The whole batch written later under its id is a duplicate: nothing more is stored (n@1 stays absent here).
    const w = await e.write(FULL, "B");
    assert.equal(w.duplicate, true);
    assert.equal(w.accepted, 0);
    assert.equal(read(e, "n").length, 1);
    assert.equal(await counter(metrics, "hqts_repaired_points_total"), 4);
    assert.equal(await counter(metrics, "hqts_repair_divergent_points_total"), 0);
    await e.close();
  });

  it("is idempotent: a repeated part finds everything present", async () => {
    const { e, metrics } = await open(await tempDir());
    assert.equal((await repair(e, FULL, "B")).stored, 5);
    const walBytes = e.stats().walBytes;
    assert.deepEqual(await repair(e, FULL, "B"), { stored: 0, present: 5, divergent: [], deferred: false });
    assert.equal(e.stats().walBytes, walBytes, "nothing new: no record");
    // Concurrent copies of one part: one stores, the others find it present; none resolves before the record is durable.
    const [a, b] = await Promise.all([repair(e, FULL, "C"), repair(e, FULL, "C")]);
    assert.equal(a.stored + b.stored, 0, "C holds B's points: present");
    assert.equal(a.present + b.present, 10);
    assert.deepEqual(read(e, "m"), ALL_OF_FULL);
    assert.equal(await counter(metrics, "hqts_repaired_points_total"), 5);
    await e.close();
  });

  it("replaces an inferred point with an original and keeps an original against an inferred one, in the head and in blocks", async () => {
    const { e } = await open(await tempDir());
    await e.write(batch([["m", 1n, 100], ["m", 2n, 200]], "inferred"), "inf");
    await e.write(batch([["m", 3n, 3]]), "orig");
    await e.flush();
    await e.write(batch([["m", 4n, 400]], "inferred"), "inf2");
    // An original part over inferred points (one in a block, one in the head) replaces them.
    const orig = batch([["m", 1n, 1], ["m", 4n, 4]]);
    assert.deepEqual(await repair(e, orig, "O"), { stored: 2, present: 0, divergent: [], deferred: false });
    // An inferred part where an original stands (in a block, then in the head) keeps the original.
    const inf = batch([["m", 3n, 333], ["m", 4n, 444], ["m", 5n, 555]], "inferred");
    assert.deepEqual(await repair(e, inf, "I"), { stored: 1, present: 2, divergent: [], deferred: false });
    assert.deepEqual(read(e, "m"), [
      { t: 1n, v: 1, origin: 0, batch: "O" },
      { t: 2n, v: 200, origin: 1, batch: "inf" },
      { t: 3n, v: 3, origin: 0, batch: "orig" },
      { t: 4n, v: 4, origin: 0, batch: "O" },
      { t: 5n, v: 555, origin: 1, batch: "I" },
    ]);
    assert.equal(e.lookupBatch("I")?.inference, INFERENCE);
    assert.equal(e.lookupBatch("I")?.origin, "inferred");
    await e.close();
  });

  it("reports a point holding another value as divergent and does not store it", async () => {
    const { e, metrics } = await open(await tempDir());
    await e.write(batch([["m", 1n, 1]]), "w");
    const other = batch([["m", 1n, 7], ["m", 2n, 2]]);
    const r = await repair(e, other, "X");
    assert.equal(r.stored, 1);
    assert.equal(r.present, 0);
    assert.deepEqual(r.divergent, [{ series: 'm{job="t"}', timestampNs: "1", storedValue: 1, offeredValue: 7 }]);
    assert.deepEqual(read(e, "m").map((p) => [p.t, p.v, p.batch]), [
      [1n, 1, "w"],
      [2n, 2, "X"],
    ]);
    assert.equal(await counter(metrics, "hqts_repair_divergent_points_total"), 1);
    // At most 100 listed, every one counted.
    const many = batch(Array.from({ length: 150 }, (_, i): [string, bigint, number] => ["k", BigInt(i), i]));
    await e.write(many, "many");
    const r2 = await repair(e, batch(Array.from({ length: 150 }, (_, i): [string, bigint, number] => ["k", BigInt(i), -i - 1])), "Y");
    assert.equal(r2.divergent.length, 100);
    assert.equal(await counter(metrics, "hqts_repair_divergent_points_total"), 151);
    await e.close();
  });

  it("refuses a batch id held with another digest, storing nothing", async () => {
    const { e, metrics } = await open(await tempDir());
    await e.write(batch([["m", 1n, 1]]), "B");
    await assert.rejects(repair(e, FULL, "B"), (err: unknown) => err instanceof ConflictError && err.details.batchId === "B");
    assert.deepEqual(read(e, "m").map((p) => p.t), [1n]);
    assert.deepEqual(read(e, "n"), []);
    assert.equal(await counter(metrics, "hqts_repaired_points_total"), 0);
    // Same digest, but a part describing the batch otherwise (another origin) is not a part of it.
    await repair(e, FULL, "F0", (name) => name === "n");
    const forged = { ...partOf(FULL, (name) => name === "m"), origin: "inferred" as const, inference: INFERENCE };
    await assert.rejects(e.repair(metaOf(FULL, "F0"), forged, encodeBatch(forged)), BadInputError);
    assert.deepEqual(read(e, "m").map((p) => p.t), [1n]);
    // A part that is not canonical is refused before anything is applied.
    const unsorted = partOf(FULL, () => true);
    const bad = { ...unsorted, series: [unsorted.series[0]!, { ...unsorted.series[1]!, timestampsNs: BigInt64Array.from([5n, 1n]) }] };
    await assert.rejects(e.repair(metaOf(FULL, "F1"), bad, encodeBatch(bad)), BadInputError);
    assert.equal(e.lookupBatch("F1"), null);
    await e.close();
  });

  it("defers a batch undecided here, and takes over points other undecided batches reserve", async () => {
    const dir = await tempDir();
    const h = await openHost(dir);
    const e = h.engine;
    assert.equal((await h.prepare(FULL, "P", 500n)).kind, "ok");
    assert.deepEqual(await repair(e, FULL, "P"), { stored: 0, present: 0, divergent: [], deferred: true });
    assert.deepEqual(read(e, "m"), []);
    assert.equal(e.lookupBatch("P")?.phase, "prepared");
    // Another batch holding the same points (committed on a peer) finds them present and makes them visible.
    const r = await repair(e, FULL, "R", (name) => name === "m");
    assert.deepEqual(r, { stored: 0, present: 3, divergent: [], deferred: false });
    const byR = ALL_OF_FULL.map((p) => ({ ...p, batch: "R" }));
    assert.deepEqual(read(e, "m"), byR);
    // They outlive the abort of the batch that reserved them first, here and after a restart (which replays P's
    // reservation, R's repair and P's abort in that order).
    await h.abort("P");
    assert.deepEqual(read(e, "m"), byR);
    assert.deepEqual(read(e, "n"), []);
    await e.close();
    const again = (await openHost(dir)).engine;
    assert.deepEqual(read(again, "m"), byR);
    assert.deepEqual(read(again, "n"), []);
    assert.equal(again.lookupBatch("P"), null);
    await again.close();
  });

  it("keeps repaired points across a restart (WAL replay) and a flush (block), and replay stores nothing twice", async () => {
    const dir = await tempDir();
    const first = await open(dir);
    await repair(first.e, FULL, "B", (name, t) => name === "m" && t <= 2n);
    // Overlapping the first: m@2 present, m@3 new; replayed in order, the second record stores only m@3.
    assert.equal((await repair(first.e, FULL, "B", (name, t) => name === "m" && t >= 2n)).stored, 1);
    // An empty part registers the id only (a peer's flushed batch whose points came otherwise).
    const empty = partOf(FULL, () => false);
    assert.deepEqual(await first.e.repair(metaOf(FULL, "E"), empty, encodeBatch(empty)), { stored: 0, present: 0, divergent: [], deferred: false });
    await first.e.close();

    const second = await open(dir);
    assert.deepEqual(read(second.e, "m"), ALL_OF_FULL);
    assert.equal(second.e.lookupBatch("B")?.phase, "committed");
    assert.equal(second.e.lookupBatch("E")?.phase, "committed");
    assert.equal(second.e.stats().headSamples, 3);
    assert.equal((await second.e.write(FULL, "B")).duplicate, true);
    const f = await second.e.flush();
    assert.equal(f.samples, 3);
    await second.e.close();

    const third = await open(dir);
    assert.equal(third.e.stats().headSamples, 0);
    assert.deepEqual(read(third.e, "m"), ALL_OF_FULL);
    assert.equal(third.e.lookupBatch("E")?.sampleCount, 5);
    assert.equal((await third.e.write(FULL, "E")).duplicate, true);
    await third.e.close();
  });

  it("splits one batch between an older block and a repaired head, then between two blocks", async () => {
    const dir = await tempDir();
    const { e } = await open(dir);
    await repair(e, FULL, "B", (_, t) => t <= 1n);
    await e.flush();
    // Flushed: the batch re-enters the head for the points it still lacks here.
    assert.deepEqual(await repair(e, FULL, "B"), { stored: 3, present: 2, divergent: [], deferred: false });
    assert.deepEqual(read(e, "m"), ALL_OF_FULL);
    await e.close();

    const replayed = await open(dir); // block 1 + REPAIR records
    assert.deepEqual(read(replayed.e, "m"), ALL_OF_FULL);
    assert.equal(replayed.e.stats().headSamples, 3);
    assert.equal((await replayed.e.flush()).samples, 3);
    await replayed.e.close();

    const blocks = (await readdir(join(dir, "blocks"))).filter((n) => n.endsWith(".hqb"));
    assert.equal(blocks.length, 2);
    for (const name of blocks) {
      const r = await BlockReader.open(join(dir, "blocks", name));
      assert.deepEqual(
        r.batches().map((b) => [b.batchId, b.sha256]),
        [["B", encodeWithDigest(FULL).sha256]],
      );
      await r.close();
    }
    const reopened = await open(dir);
    assert.equal(reopened.e.stats().blockCount, 2);
    assert.deepEqual(read(reopened.e, "m"), ALL_OF_FULL);
    assert.deepEqual(read(reopened.e, "n"), [
      { t: 1n, v: 10, origin: 0, batch: "B" },
      { t: 5n, v: 50, origin: 0, batch: "B" },
    ]);
    assert.equal(reopened.e.lookupBatch("B")?.phase, "committed");
    assert.equal((await reopened.e.write(FULL, "B")).duplicate, true);
    assert.deepEqual(await repair(reopened.e, FULL, "B"), { stored: 0, present: 5, divergent: [], deferred: false });
    await reopened.e.close();
  });

  it("refuses to open two blocks naming one batch id with two digests (quarantines the later with --accept-data-loss)", async () => {
    const dir = await tempDir();
    const blocksDir = join(dir, "blocks");
    const { e } = await open(dir);
    await e.close();
    const entry = (sha: string) => ({ batchId: "B", sha256: sha, origin: "original" as const, shardId: 0, hlc: "1", sampleCount: 1, inference: null });
    const series = (t: bigint) => [
      { labels: canonicalLabels([["__name__", "m"]], DEFAULT_LIMITS), data: { timestampsNs: BigInt64Array.from([t]), values: Float64Array.from([1]), origins: Uint8Array.from([0]), batchRefs: Uint32Array.from([0]) } },
    ];
    await writeBlock(blocksDir, { series: series(1_000_000n), batches: [entry("aa".repeat(32))] });
    await writeBlock(blocksDir, { series: series(9_000_000n), batches: [entry("bb".repeat(32))] });
    await assert.rejects(open(dir), (err: unknown) => err instanceof CorruptionError && /batch B is named with SHA-256/.test(err.message));
    const lossy = await open(dir, true);
    assert.equal(lossy.e.stats().blockCount, 1);
    assert.equal(lossy.e.lookupBatch("B")?.sha256, "aa".repeat(32));
    await lossy.e.close();
    assert.equal((await readdir(join(dir, "quarantine"))).length, 1);
  });

  it("installs a repair racing a flush, without losing its points", async () => {
    const dir = await tempDir();
    const { e } = await open(dir);
    await e.write(batch([["z", 1n, 1]]), "w");
    const [f, r] = await Promise.all([e.flush(), repair(e, FULL, "B")]);
    assert.equal(f.samples, 1);
    assert.equal(r.stored, 5);
    assert.deepEqual(read(e, "m"), ALL_OF_FULL);
    await e.flush();
    await e.close();
    const again = await open(dir);
    assert.deepEqual(read(again.e, "m"), ALL_OF_FULL);
    assert.equal(again.e.stats().headSamples, 0);
    await again.e.close();
  });

  it("decodes only whole, well-formed REPAIR records: anything torn or garbled is a CorruptionError", async () => {
    const part = partOf(FULL, (name) => name === "m");
    const rec = { batchId: "B", sha256: encodeWithDigest(FULL).sha256, hlc: -12345678901234n, sampleCount: 5, partBytes: encodeBatch(part) };
    const payload = encodeWalRepair(rec);
    const back = decodeWalRepair(payload, "test");
    assert.deepEqual({ ...back, part: undefined }, { ...rec, part: undefined });
    // Decoding keeps each series' label section (labelBytes, a cache for re-encoding) that a built part lacks.
    const content = (b: Batch) => ({ ...b, series: b.series.map(({ labelBytes: _cache, ...rest }) => rest) });
    assert.deepEqual(content(back.part), content(part));
    for (let n = 0; n < payload.length; n++) assert.throws(() => decodeWalRepair(payload.subarray(0, n), "test"), CorruptionError, `torn at ${n}`);
    assert.throws(() => decodeWalRepair(Uint8Array.from([...payload, 0]), "test"), CorruptionError);
    const garble = (at: number, v: number): Uint8Array => {
      const g = payload.slice();
      g[at] = v;
      return g;
    };
    assert.throws(() => decodeWalRepair(garble(0, 2), "test"), CorruptionError); // version
    const partAt = payload.length - rec.partBytes.length;
    assert.throws(() => decodeWalRepair(garble(partAt, payload[partAt]! ^ 0xff), "test"), CorruptionError); // part magic
    // A part that decodes but is not canonical (m's timestamps swapped), or larger than the batch it names.
    const swapped = { ...part, series: [{ ...part.series[0]!, timestampsNs: BigInt64Array.from([2n, 1n, 3n]) }] };
    assert.throws(() => decodeWalRepair(encodeWalRepair({ ...rec, partBytes: encodeBatch(swapped) }), "test"), CorruptionError);
    assert.throws(() => decodeWalRepair(encodeWalRepair({ ...rec, sampleCount: 2 }), "test"), CorruptionError);

    // In a WAL whose frame checksums hold, a garbled REPAIR payload stops the engine's open.
    const dir = await tempDir();
    await mkdir(join(dir, "wal"));
    const opened = await Wal.open(join(dir, "wal"));
    await opened.wal.append(WalRecordType.REPAIR, garble(partAt, payload[partAt]! ^ 0xff));
    await opened.wal.close();
    await assert.rejects(open(dir), CorruptionError);
  });
});
