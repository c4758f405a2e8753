// The scrubber (src/storage/scrubber.ts) and what a host does with damage: Engine.rewriteWal for a WAL finding,
// Engine.detachBlock (then Engine.repair from a peer) for a block finding, and an open that quarantines damage
// (onDamage "quarantine") and reports it.

import assert from "node:assert/strict";
import { readFile, readdir, rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, encodeBatch, encodeWithDigest, type Batch } from "../../src/core/batch.js";
import { CorruptionError, NotFoundError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { BlockReader } from "../../src/storage/block-io.js";
import { DIGEST_WINDOW_NS, Engine, openEngine, type EngineOptions } from "../../src/storage/engine.js";
import type { ScrubTarget } from "../../src/storage/engine-api.js";
import { Scrubber, SCRUB_SLEEP_MIN_MS, type ScrubClock, type ScrubFinding, type ScrubberOptions } from "../../src/storage/scrubber.js";
import { scanSegment } from "../../src/wal/record.js";
import type { Wal } from "../../src/wal/wal.js";
import { flipByte } from "../wal/util.js";
import { tempDirs } from "../helpers/temp-dirs.js";
import { openHost, type ReplicaHost } from "./replica-host.js";

const tempDir = tempDirs("hqts-scrub-");

const silent = pino({ level: "silent" });

async function open(dir: string, extra: Partial<EngineOptions> = {}): Promise<Engine> {
  return (await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: silent, metrics: new Registry(), ...extra })) as Engine;
}

function scrubber(e: Engine | { scrubTargets(): ScrubTarget[] }, extra: Partial<ScrubberOptions> = {}): Scrubber {
  return new Scrubber({ engine: e, log: silent, metrics: new Registry(), ...extra });
}

function batch(name: string, from: number, n: number): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (let i = 0; i < n; i++) b.add(canonicalLabels([["__name__", name], ["job", "s"]], DEFAULT_LIMITS), BigInt(from + i) * 1_000_000_000n, from + i);
  return b.build();
}

const everything = { startNs: -(1n << 62n), endNs: 1n << 62n, includeInferred: true, seriesMax: 1e6, samplesMax: 1e8 };

function count(e: Engine, name?: string): number {
  const sets = [[name === undefined ? makeMatcher("job", "=", "s") : makeMatcher("__name__", "=", name)]];
  return e.select(sets, everything).reduce((a, s) => a + s.timestampsNs.length, 0);
}

function walOf(e: Engine): Wal {
  return (e as unknown as { writer: { wal: Wal } }).writer.wal;
}

/** Offsets of the records in a segment file. */
async function recordsOf(path: string): Promise<{ offset: number; frameBytes: number }[]> {
  const image = new Uint8Array(await readFile(path));
  const seg = Number(path.slice(-12, -4));
  return scanSegment(image, seg).records.map((r) => ({ offset: r.offset, frameBytes: r.frameBytes }));
}

function containing(findings: ScrubFinding[], kind: "wal" | "block", path: string, at: number): ScrubFinding | undefined {
  return findings.find((f) => f.kind === kind && f.path === path && f.offset <= at && at < f.offset + f.length);
}

/** An engine with two blocks and a WAL holding two segments (the older one closed), every file with records. */
async function populated(openWith: (dir: string) => Promise<Engine> = (d) => open(d)): Promise<{ dir: string; e: Engine }> {
  const dir = await tempDir();
  const e = await openWith(dir);
  await e.write(batch("a", 0, 500), "A");
  await e.flush();
  await e.write(batch("b", 0, 500), "B");
  await e.flush();
  await e.write(batch("c", 0, 50), "C");
  await e.write(batch("d", 0, 50), "D");
  await walOf(e).rotate();
  await e.write(batch("e", 0, 50), "E");
  await e.write(batch("f", 0, 50), "F");
  return { dir, e };
}

function targets(e: Engine, kind: "wal" | "block"): ScrubTarget[] {
  return e.scrubTargets().filter((t) => t.kind === kind);
}

/** A clock whose sleep advances time at once (no real waiting). */
class FakeClock implements ScrubClock {
  now = 1_700_000_000_000;
  sleeps: number[] = [];
  onSleep: (() => void) | null = null;
  nowMs(): number {
    return this.now;
  }
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.now += ms;
    this.onSleep?.();
    await new Promise<void>((r) => setImmediate(r));
  }
}

describe("scrubber", () => {
  it("finds nothing in a clean store, reads every file once per pass, and counts it in its metrics", async () => {
    const { e } = await populated();
    const metrics = new Registry();
    const s = scrubber(e, { metrics });
    const ts = e.scrubTargets();
    assert.deepEqual(
      ts.map((t) => t.kind),
      ["wal", "wal", "block", "block"],
    );
    assert.deepEqual(await s.scrubNow(), []);
    const st = s.stats();
    assert.equal(st.passesTotal, 1);
    assert.equal(st.bytesTotal.wal, ts.filter((t) => t.kind === "wal").reduce((a, t) => a + t.sizeBytes, 0));
    assert.equal(st.bytesTotal.block, ts.filter((t) => t.kind === "block").reduce((a, t) => a + t.sizeBytes, 0));
    assert.deepEqual(st.findingsTotal, { wal: 0, block: 0 });
    assert.ok(st.lastPassTimestampSeconds !== null);
    const text = await metrics.metrics();
    assert.match(text, /hqts_scrub_bytes_total\{kind="wal"\} \d+/);
    assert.match(text, /hqts_scrub_passes_total 1/);
    assert.match(text, /hqts_scrub_findings_total\{kind="block"\} 0/);
    assert.match(text, /hqts_scrub_last_pass_timestamp_seconds \d+/);
    await e.close();
  });

  it("finds a flipped byte in a closed WAL segment and in the active one (a middle record and the last)", async () => {
    const { e } = await populated();
    const [closed, active] = targets(e, "wal");
    const cRecs = await recordsOf(closed!.path);
    const aRecs = await recordsOf(active!.path);
    assert.ok(cRecs.length >= 2 && aRecs.length >= 2);
    const flips: [string, number][] = [
      [closed!.path, cRecs[0]!.offset + 40],
      [active!.path, aRecs[0]!.offset + 20],
      [active!.path, aRecs[aRecs.length - 1]!.offset + aRecs[aRecs.length - 1]!.frameBytes - 1],
    ];
    for (const [path, at] of flips) {
      await flipByte(path, at);
      const found = await scrubber(e).scrubNow();
      assert.equal(found.length, 1, `one finding for byte ${at} of ${path}: ${JSON.stringify(found)}`);
      assert.ok(containing(found, "wal", path, at), `finding covers byte ${at}: ${JSON.stringify(found)}`);
      await flipByte(path, at);
    }
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await e.close();
  });

  it("does not take a record being appended to the active segment for damage", async () => {
    const { e } = await populated();
    // Appends in flight: the scrub reads only what is durable.
    const writes = [0, 1, 2, 3].map((i) => e.write(batch(`g${i}`, 0, 200), `G${i}`));
    const found = await scrubber(e).scrubNow();
    await Promise.all(writes);
    assert.deepEqual(found, []);
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await e.close();
  });

  it("finds a flipped byte in a block chunk, its index and its footer, and a deleted block", async () => {
    const { e } = await populated();
    const [b1, b2] = targets(e, "block");
    const r = await BlockReader.open(b1!.path);
    const chunk = r.series()[0]!.chunks[0]!;
    const indexAt = r.meta.indexOffset + 3;
    await r.close();
    const flips = [chunk.offset + Math.floor(chunk.length / 2), indexAt, b1!.sizeBytes - 50];
    for (const at of flips) {
      await flipByte(b1!.path, at);
      const found = await scrubber(e).scrubNow();
      assert.ok(found.length >= 1 && found.every((f) => f.kind === "block" && f.path === b1!.path), JSON.stringify(found));
      assert.ok(containing(found, "block", b1!.path, at), `a finding covers byte ${at}: ${JSON.stringify(found)}`);
      await flipByte(b1!.path, at);
    }
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await rm(b2!.path);
    const found = await scrubber(e).scrubNow();
    assert.deepEqual(
      found.map((f) => [f.kind, f.path, f.offset, f.length, f.detail]),
      [["block", b2!.path, 0, b2!.sizeBytes, "file missing"]],
    );
    // Handled like damage: detached, the move a no-op.
    const lost = await e.detachBlock(b2!.path);
    assert.equal(lost.quarantinedTo, null);
    assert.equal(count(e, "b"), 0);
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await e.close();
  });

  it("skips a file that went meanwhile (a flushed segment, an expired block): no finding", async () => {
    const dir = await tempDir();
    let listed = true;
    const gone: ScrubTarget[] = [
      { kind: "wal", path: join(dir, "00000007.seg"), sizeBytes: 100 },
      { kind: "block", path: join(dir, "b-gone.hqb"), sizeBytes: 100 },
    ];
    const s = scrubber({ scrubTargets: () => (listed ? ((listed = false), gone) : []) });
    assert.deepEqual(await s.scrubNow(), []);
    // Still listed while missing: a finding for each.
    const s2 = scrubber({ scrubTargets: () => gone });
    assert.deepEqual(
      (await s2.scrubNow()).map((f) => [f.kind, f.detail]),
      [
        ["wal", "file missing"],
        ["block", "file missing"],
      ],
    );
  });

  it("stays under its rate (an injected clock, no real sleeps) and stops promptly", async () => {
    const { e } = await populated();
    const clock = new FakeClock();
    const rate = 64 * 1024;
    const readBytesMax = 4096;
    const total = e.scrubTargets().reduce((a, t) => a + t.sizeBytes, 0);
    // The largest single read: a WAL read, or a block's structure or largest object (read as one step).
    let largest = readBytesMax;
    for (const t of targets(e, "block")) {
      const r = await BlockReader.open(t.path);
      largest = Math.max(largest, 16 + 104 + (t.sizeBytes - 104 - r.meta.indexOffset));
      for (const se of r.series()) for (const c of se.chunks) largest = Math.max(largest, c.length);
      await r.close();
    }
    const t0 = clock.now;
    let s: Scrubber | null = null;
    let violations = 0;
    let twoPasses: () => void = () => undefined;
    const passed = new Promise<void>((r) => (twoPasses = r));
    clock.onSleep = () => {
      const st = s!.stats();
      const bytes = st.bytesTotal.wal + st.bytesTotal.block;
      // Bytes read by now ≤ what the rate allows since the start, plus one read and the pacer's sleep threshold.
      if (bytes > (rate * (clock.now - t0)) / 1000 + largest + (rate * SCRUB_SLEEP_MIN_MS) / 1000) violations++;
      if (st.passesTotal >= 2) twoPasses();
    };
    const found: ScrubFinding[] = [];
    s = scrubber(e, { clock, bytesPerSecond: rate, readBytesMax, passIntervalMs: 0, onFinding: (f) => void found.push(f) });
    s.start();
    assert.equal(s.stats().running, true);
    await passed;
    await s.stop();
    assert.equal(s.stats().running, false);
    assert.equal(violations, 0);
    const st = s.stats();
    const read = st.bytesTotal.wal + st.bytesTotal.block;
    assert.ok(read >= 2 * total, `two passes read everything twice (${read} of ${2 * total})`);
    // And it did not go slower than needed either: time spent ≈ bytes / rate.
    const elapsedMs = clock.now - t0;
    assert.ok(elapsedMs >= ((read - largest) * 1000) / rate - SCRUB_SLEEP_MIN_MS, `${elapsedMs} ms for ${read} bytes`);
    assert.ok(elapsedMs <= (read * 1000) / rate + 1000, `${elapsedMs} ms for ${read} bytes`);
    assert.deepEqual(found, []);

    // stop() cuts a sleep short: a clock whose sleep only ends when aborted.
    let sleeping: () => void = () => undefined;
    const asleep = new Promise<void>((r) => (sleeping = r));
    const hanging: ScrubClock = {
      nowMs: () => 0,
      sleep: (_ms, signal) =>
        new Promise<void>((resolve) => {
          sleeping();
          signal.addEventListener("abort", () => resolve());
        }),
    };
    const s3 = scrubber(e, { clock: hanging, passIntervalMs: 3_600_000 });
    s3.start();
    await asleep;
    await s3.stop();
    assert.equal(s3.stats().passesTotal, 1);
    await e.close();
  });

  it("awaits the host's handling of a finding before reading on, and reports each finding once per pass", async () => {
    const { e } = await populated();
    const [closed] = targets(e, "wal");
    const [block] = targets(e, "block");
    const recs = await recordsOf(closed!.path);
    await flipByte(closed!.path, recs[1]!.offset + 20);
    const r = await BlockReader.open(block!.path);
    const chunk = r.series()[0]!.chunks[0]!;
    await r.close();
    await flipByte(block!.path, chunk.offset + 5);
    const clock = new FakeClock();
    const seen: ScrubFinding[] = [];
    let s: Scrubber | null = null;
    let done: () => void = () => undefined;
    const handled = new Promise<void>((res) => (done = res));
    let readDuringHandling = false;
    s = scrubber(e, {
      clock,
      passIntervalMs: 60_000,
      onFinding: async (f) => {
        const before = s!.stats().bytesTotal;
        for (let i = 0; i < 5; i++) await new Promise<void>((res) => setImmediate(res));
        if (JSON.stringify(s!.stats().bytesTotal) !== JSON.stringify(before)) readDuringHandling = true;
        seen.push(f);
        // The host repairs: the damaged segment goes, the damaged block is detached.
        if (f.kind === "wal") await e.rewriteWal();
        else await e.detachBlock(f.path);
        if (seen.length === 2) done();
      },
    });
    s.start();
    await handled;
    await s.stop();
    assert.equal(readDuringHandling, false);
    assert.deepEqual(
      seen.map((f) => [f.kind, f.path]),
      [
        ["wal", closed!.path],
        ["block", block!.path],
      ],
    );
    assert.equal(s.stats().findingsTotal.wal, 1);
    assert.equal(s.stats().findingsTotal.block, 1);
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await e.close();
  });
});

describe("damage handling: Engine.rewriteWal", () => {
  it("removes a damaged closed segment; every committed point survives close and a reopen that fails on any damage", async () => {
    const hosts: ReplicaHost[] = [];
    const { dir, e } = await populated(async (d) => {
      hosts.push(await openHost(d, { log: silent }));
      return hosts[0]!.engine;
    });
    const before = count(e);
    const [closed] = targets(e, "wal");
    const recs = await recordsOf(closed!.path);
    await flipByte(closed!.path, recs[0]!.offset + 30);
    assert.equal((await scrubber(e).scrubNow()).length, 1);
    // An undecided batch in the head outlives the rewrite (re-logged by the host's relog hook).
    assert.equal((await hosts[0]!.prepare(batch("p", 0, 10), "P", 77n)).kind, "ok");
    await e.rewriteWal();
    assert.ok(!(await readdir(join(dir, "wal"))).includes(closed!.path.slice(-12)), "the damaged segment is gone");
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    assert.equal(count(e), before);
    await e.close();
    const againHost = await openHost(dir, { log: silent, onDamage: "fail" });
    const again = againHost.engine;
    assert.equal(count(again), before);
    assert.deepEqual(
      againHost.undecided().map((b) => b.batchId),
      ["P"],
    );
    assert.equal((await again.write(batch("c", 0, 50), "C")).duplicate, true);
    await again.close();
  });

  it("works with an empty head and the damage in the active segment (it rotates first)", async () => {
    const dir = await tempDir();
    const h = await openHost(dir, { log: silent });
    const e = h.engine;
    await e.write(batch("a", 0, 100), "A");
    await e.flush();
    // The active segment now holds records whose batch left no point in the head: prepared, then aborted.
    assert.equal((await h.prepare(batch("x", 0, 100), "X", 5n)).kind, "ok");
    await h.abort("X");
    assert.equal(e.stats().headSamples, 0);
    const [active] = targets(e, "wal");
    const recs = await recordsOf(active!.path);
    assert.ok(recs.length >= 1);
    await flipByte(active!.path, recs[0]!.offset + 25);
    const found = await scrubber(e).scrubNow();
    assert.equal(found.length, 1);
    assert.equal(found[0]!.path, active!.path);
    await e.rewriteWal();
    assert.equal(e.stats().blockCount, 1, "no block for an empty head");
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await e.close();
    const again = (await openHost(dir, { log: silent, onDamage: "fail" })).engine;
    assert.equal(count(again), 100);
    assert.equal(again.lookupBatch("X"), null);
    await again.close();
  });
});

describe("damage handling: Engine.detachBlock", () => {
  it("stops reading the block, keeps its batches known, and Engine.repair of the same points restores them", async () => {
    const { dir, e } = await populated();
    const [b1] = targets(e, "block");
    const before = e.digestWindows(everything.startNs, everything.endNs, DIGEST_WINDOW_NS);
    assert.equal(count(e, "a"), 500);
    const lost = await e.detachBlock(b1!.path);
    assert.deepEqual(
      { ...lost, quarantinedTo: lost.quarantinedTo?.replace(dir, "<dir>") },
      {
        path: b1!.path,
        quarantinedTo: `<dir>/quarantine/${b1!.path.split("/").pop()}`,
        minTimeNs: 0n,
        maxTimeNs: 499_000_000_000n,
        seriesCount: 1,
        sampleCount: 500,
        batchIds: ["A"],
      },
    );
    await stat(lost.quarantinedTo!);
    await assert.rejects(stat(b1!.path));
    assert.ok(!e.scrubTargets().some((t) => t.path === b1!.path));
    await assert.rejects(e.detachBlock(b1!.path), NotFoundError);
    // Reads skip it; its batch stays known as committed: a replay is a duplicate and stores nothing.
    assert.equal(count(e, "a"), 0);
    assert.equal(e.lookupBatch("A")?.phase, "committed");
    const replay = await e.write(batch("a", 0, 500), "A");
    assert.equal(replay.duplicate, true);
    assert.equal(count(e, "a"), 0);
    // The digests follow (window cache invalidated over the block's range).
    const during = e.digestWindows(everything.startNs, everything.endNs, DIGEST_WINDOW_NS);
    assert.deepEqual(during, e.digestWindowsScan(everything.startNs, everything.endNs, DIGEST_WINDOW_NS));
    assert.notDeepEqual(during, before);
    // A peer's copy of the points comes back through repair, as the batch's own.
    const full = batch("a", 0, 500);
    const meta = { batchId: "A", sha256: encodeWithDigest(full).sha256, hlc: e.lookupBatch("A")!.hlc, sampleCount: 500 };
    const r = await e.repair(meta, full, encodeBatch(full));
    assert.deepEqual(r, { stored: 500, present: 0, divergent: [], deferred: false });
    assert.equal(count(e, "a"), 500);
    assert.deepEqual(e.digestWindows(everything.startNs, everything.endNs, DIGEST_WINDOW_NS), before);
    await e.close();
    // Durable: the repair's records (and the next flush) hold the points and the id.
    const again = await open(dir, { onDamage: "fail" });
    assert.equal(count(again, "a"), 500);
    assert.equal((await again.write(batch("a", 0, 500), "A")).duplicate, true);
    await again.close();
  });
});

describe("damage at open: onDamage", () => {
  async function damagedStore(): Promise<{ dir: string; block: string; segment: string; at: number; total: number }> {
    const { dir, e } = await populated();
    const [block] = targets(e, "block");
    const [, active] = targets(e, "wal");
    // Records after the damaged one: a valid one, then the one torn below (a damaged record followed only by a torn
    // one is, rightly, indistinguishable from a longer torn tail).
    await e.write(batch("g", 0, 50), "G");
    const total = count(e);
    await e.close();
    const r = await BlockReader.open(block!.path);
    const indexAt = r.meta.indexOffset + 2;
    await r.close();
    await flipByte(block!.path, indexAt);
    // A middle record of the last segment (a valid one follows: damage, not a torn tail), and a torn tail after it.
    const recs = await recordsOf(active!.path);
    const at = recs[0]!.offset + 20;
    await flipByte(active!.path, at);
    const size = (await stat(active!.path)).size;
    await truncate(active!.path, size - 7);
    return { dir, block: block!.path, segment: active!.path, at, total };
  }

  it('"fail" (the default without acceptDataLoss) refuses to open over damage', async () => {
    const { dir } = await damagedStore();
    await assert.rejects(open(dir), CorruptionError);
    await assert.rejects(open(dir, { onDamage: "fail", acceptDataLoss: true }), CorruptionError);
  });

  it('"quarantine" opens over it and reports the damaged WAL records and blocks, not the torn tail', async () => {
    const { dir, block, segment, at } = await damagedStore();
    const e = await open(dir, { onDamage: "quarantine" });
    const d = e.openDamage();
    assert.equal(d.wal.length, 1, JSON.stringify(d.wal));
    assert.equal(d.wal[0]!.file, segment);
    assert.ok(d.wal[0]!.offset <= at && at < d.wal[0]!.offset + d.wal[0]!.length);
    assert.equal(d.wal[0]!.action, "quarantined");
    assert.equal(d.blocks.length, 1);
    const b = d.blocks[0]!;
    assert.equal(b.path, block);
    assert.ok(b.quarantinedTo !== null && b.quarantinedTo.startsWith(join(dir, "quarantine")));
    assert.match(b.error, /index/i);
    // The footer holds (only the index was hit): the lost range is known.
    assert.deepEqual([b.minTimeNs, b.maxTimeNs, b.seriesCount, b.sampleCount, b.nameMinTimeNs], [0n, 499_000_000_000n, 1, 500, 0n]);
    assert.equal(count(e, "a"), 0);
    assert.equal(count(e, "b"), 500);
    // The damaged segment stays until rewriteWal (the scrubber finds it again meanwhile).
    assert.equal((await scrubber(e).scrubNow()).filter((f) => f.kind === "wal").length, 1);
    await e.rewriteWal();
    assert.deepEqual(await scrubber(e).scrubNow(), []);
    await e.close();
    const clean = await open(dir, { onDamage: "fail" });
    assert.deepEqual(clean.openDamage(), { wal: [], blocks: [] });
    await clean.close();
  });

  it("acceptDataLoss alone still means quarantine (standalone --accept-data-loss)", async () => {
    const { dir } = await damagedStore();
    const e = await open(dir, { acceptDataLoss: true });
    assert.equal(e.openDamage().blocks.length, 1);
    assert.equal(e.openDamage().wal.length, 1);
    await e.close();
  });
});
