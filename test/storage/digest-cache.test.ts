// The window digest cache (DigestWindowCache behind Engine.digestWindows for DIGEST_WINDOW_NS): exact in every case
// (a property test over random sequences of writes, reservations, commits, aborts, repairs, flushes and reopens,
// compared after each step with a digest computed from scratch out of what a read returns), and cheap when little
// changed (no scan when nothing did, one window's scan after one write).

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, encodeBatch, encodeWithDigest, type Batch, type Origin } from "../../src/core/batch.js";
import { ConflictError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { DIGEST_WINDOW_NS, Engine, openEngine, type WindowDigest } from "../../src/storage/engine.js";
import { pointHash } from "../../src/storage/point-digest.js";
import { tempDirs } from "../helpers/temp-dirs.js";

const tempDir = tempDirs("hqts-digest-cache-");

async function open(dir: string, retentionMs: number | null = null): Promise<Engine> {
  return (await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry() })) as Engine;
}

const W = DIGEST_WINDOW_NS;
const M64 = (1n << 64n) - 1n;
const ALL = { startNs: -(1n << 63n), endNs: (1n << 63n) - 1n };
const INFERENCE = '{"method":"test"}';

function labelsOf(name: string) {
  return canonicalLabels([["__name__", name], ["job", "dc"]], DEFAULT_LIMITS);
}

type Pt = [series: number, t: bigint, v: number];

function batchOf(points: Pt[], origin: Origin): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  const seen = new Set<string>();
  for (const [s, t, v] of points) {
    // One point per (series, timestamp) in a batch: a repeat with another value is refused by the builder.
    if (seen.has(`${s}/${t}`)) continue;
    seen.add(`${s}/${t}`);
    b.add(labelsOf(`s${s}`), t, v);
  }
  return b.build({ origin, inference: origin === "inferred" ? INFERENCE : null });
}

/** The window digests from scratch: every visible point as a read returns it, hashed by the BigInt reference. */
function fromScratch(e: Engine, startNs: bigint, endNs: bigint): WindowDigest[] {
  const rs = e.select([[makeMatcher("job", "=", "dc")]], { startNs, endNs, includeInferred: true, seriesMax: 1e6, samplesMax: 1e8 });
  const byWindow = new Map<bigint, { count: number; hash: bigint }>();
  for (const r of rs)
    r.timestampsNs.forEach((t, i) => {
      const q = t / W;
      const k = q * W > t ? q - 1n : q;
      const d = byWindow.get(k) ?? { count: 0, hash: 0n };
      d.count++;
      d.hash = (d.hash + pointHash(r.key, t, r.values[i]!, r.origins[i]!)) & M64;
      byWindow.set(k, d);
    });
  return [...byWindow]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, d]) => ({ startNs: k * W, count: d.count, hash: d.hash }));
}

// Timestamps on a 20-minute grid over four windows (one of them negative), a few a nanosecond before a window's end,
// so windows hold several points of several series and writes often land on points stored before (replays,
// conflicts, originals over inferred points, the other way round).
const GRID_NS = W / 3n;
const BASE_NS = -W;
const arbT = fc
  .tuple(fc.integer({ min: 0, max: 11 }), fc.constantFrom(0n, 0n, 0n, GRID_NS - 1n))
  .map(([q, d]) => BASE_NS + BigInt(q) * GRID_NS + d);
const arbPoints = fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), arbT, fc.constantFrom(1, 2)), { minLength: 1, maxLength: 5 });
const arbOrigin = fc.constantFrom<Origin>("original", "inferred");

type Step =
  | { op: "write"; points: Pt[]; origin: Origin }
  /** A write whose digests are also checked while its WAL record is not yet durable (invisible, then visible). */
  | { op: "write-inflight"; points: Pt[]; origin: Origin }
  | { op: "reserve"; points: Pt[]; origin: Origin }
  | { op: "commit"; which: number }
  | { op: "abort"; which: number }
  | { op: "repair"; points: Pt[]; origin: Origin; reuse: number | null; keep: number }
  | { op: "flush" }
  | { op: "reopen" }
  | { op: "range"; a: bigint; b: bigint };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("write" as const), points: arbPoints, origin: arbOrigin }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("write-inflight" as const), points: arbPoints, origin: arbOrigin }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("reserve" as const), points: arbPoints, origin: arbOrigin }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("commit" as const), which: fc.nat(10) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("abort" as const), which: fc.nat(10) }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("repair" as const), points: arbPoints, origin: arbOrigin, reuse: fc.option(fc.nat(20)), keep: fc.integer({ min: 1, max: 6 }) }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("flush" as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("reopen" as const) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("range" as const), a: arbT, b: arbT }) },
);

interface Known {
  id: string;
  batch: Batch;
}

/** Runs the steps, checking after each that the cached digests are the from-scratch ones (whole range and a clip). */
async function runSteps(steps: Step[]): Promise<void> {
  const dir = await tempDir();
  let e = await open(dir);
  const pending: string[] = [];
  const committed: Known[] = [];
  let n = 0;
  const check = (what: string, a = ALL.startNs, b = ALL.endNs): void => {
    const cached = e.digestWindows(a, b, W);
    assert.deepEqual(cached, fromScratch(e, a, b), `after ${what}: cached windows of [${a}, ${b}] differ from a scan`);
    assert.deepEqual(cached, e.digestWindowsScan(a, b, W), `after ${what}: cached windows differ from the engine's own scan`);
  };
  try {
    check("open");
    for (const step of steps) {
      const id = `b${n++}`;
      switch (step.op) {
        case "write":
        case "write-inflight": {
          const batch = batchOf(step.points, step.origin);
          try {
            const w = e.write(batch, id);
            if (step.op === "write-inflight") {
              // admit() reserves synchronously up to its first await: this runs with the batch reserved, invisible.
              await Promise.resolve();
              check("a write not yet durable");
            }
            await w;
            committed.push({ id, batch });
          } catch (err) {
            if (!(err instanceof ConflictError)) throw err;
          }
          break;
        }
        case "reserve": {
          const batch = batchOf(step.points, step.origin);
          const { bytes, sha256 } = encodeWithDigest(batch);
          const r = e.reserveSync(batch, id, sha256, BigInt(n), bytes);
          if (r.kind === "ok") pending.push(id);
          break;
        }
        case "commit":
        case "abort": {
          if (pending.length === 0) break;
          const [pid] = pending.splice(step.which % pending.length, 1);
          if (step.op === "commit") e.commitSync(pid!);
          else e.abortSync(pid!);
          break;
        }
        case "repair": {
          // A part of a batch a peer holds: of a batch written here (mostly present, maybe flushed) or a new one.
          const known = step.reuse === null || committed.length === 0 ? null : committed[step.reuse % committed.length]!;
          const full = known?.batch ?? batchOf(step.points, step.origin);
          const batchId = known?.id ?? id;
          const series = full.series.map((s) => ({ ...s, timestampsNs: s.timestampsNs.slice(0, step.keep), values: s.values.slice(0, step.keep) }));
          const part: Batch = { ...full, series, sampleCount: series.reduce((a, s) => a + s.timestampsNs.length, 0) };
          const meta = { batchId, sha256: encodeWithDigest(full).sha256, hlc: BigInt(n), sampleCount: full.sampleCount };
          await e.repair(meta, part, encodeBatch(part));
          if (known === null) committed.push({ id: batchId, batch: full });
          break;
        }
        case "flush":
          await e.flush();
          break;
        case "reopen":
          // Batches reserved by reserveSync live in the head only (the cluster re-creates them from its own log).
          await e.close();
          e = await open(dir);
          pending.length = 0;
          break;
        case "range": {
          const [a, b] = step.a <= step.b ? [step.a, step.b] : [step.b, step.a];
          check(`range [${a}, ${b}]`, a, b);
          break;
        }
      }
      check(step.op);
    }
  } finally {
    await e.close();
  }
}

describe("window digest cache", () => {
  it("is exact: after every step of random writes, reservations, commits, aborts, repairs, flushes and reopens", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(arbStep, { minLength: 1, maxLength: 30 }), (steps) => runSteps(steps)),
      { numRuns: 120 },
    );
  });

  it("is exact in the cases that need each invalidation", async () => {
    const t = 5n;
    // A repair taking over a point reserved (invisible) by an undecided batch: it becomes visible.
    await runSteps([
      { op: "reserve", points: [[0, t, 1]], origin: "original" },
      { op: "repair", points: [[0, t, 1]], origin: "original", reuse: null, keep: 1 },
    ]);
    // A reservation of an original hides the inferred point it replaces; its abort brings it back.
    await runSteps([
      { op: "write", points: [[0, t, 1]], origin: "inferred" },
      { op: "reserve", points: [[0, t, 2]], origin: "original" },
      { op: "abort", which: 0 },
      { op: "reserve", points: [[0, t, 2]], origin: "original" },
      { op: "commit", which: 0 },
    ]);
    // An original over an inferred point in a block, written, then repaired over.
    await runSteps([
      { op: "write", points: [[0, t, 1], [1, t, 1]], origin: "inferred" },
      { op: "flush" },
      { op: "write-inflight", points: [[0, t, 2]], origin: "original" },
      { op: "repair", points: [[1, t, 2]], origin: "original", reuse: null, keep: 1 },
    ]);
    // Two undecided batches sharing a point; the holder aborted, the sharer committed.
    await runSteps([
      { op: "reserve", points: [[0, t, 1]], origin: "original" },
      { op: "reserve", points: [[0, t, 1], [1, t, 1]], origin: "original" },
      { op: "abort", which: 0 },
      { op: "commit", which: 0 },
    ]);
  });

  it("regression: a prepared original over an inferred head point, flushed, then aborted: the inferred point comes back", async () => {
    // Before the fix the restored point named a stale head-table index (renumbered by the flush): it vanished from
    // reads and the next flush failed an invariant.
    await runSteps([
      { op: "write", points: [[0, 1n, 1], [0, 2n, 2]], origin: "inferred" },
      { op: "write", points: [[0, 5n, 5]], origin: "original" },
      { op: "reserve", points: [[0, 1n, 10]], origin: "original" },
      { op: "flush" },
      { op: "abort", which: 0 },
      { op: "write", points: [[0, 7n, 7]], origin: "original" },
      { op: "flush" },
      { op: "reopen" },
    ]);
    const dir = await tempDir();
    const e = await open(dir);
    await e.write(batchOf([[0, 1n, 1]], "inferred"), "inf");
    const p = batchOf([[0, 1n, 10]], "original");
    const { bytes, sha256 } = encodeWithDigest(p);
    assert.equal(e.reserveSync(p, "P", sha256, 9n, bytes).kind, "ok");
    await e.flush();
    e.abortSync("P");
    const read = (): [bigint, number, string][] => {
      const r = e.select([[makeMatcher("job", "=", "dc")]], { startNs: 0n, endNs: 10n, includeInferred: true, seriesMax: 10, samplesMax: 100 })[0]!;
      return [...r.timestampsNs].map((t, i) => [t, r.values[i]!, r.batchIds[r.batchRefs[i]!]!]);
    };
    assert.deepEqual(read(), [[1n, 1, "inf"]]);
    await e.write(batchOf([[0, 3n, 3]], "original"), "later");
    await e.flush();
    assert.deepEqual(read(), [[1n, 1, "inf"], [3n, 3, "later"]]);
    await e.close();
    const again = await open(dir);
    assert.equal(again.lookupBatch("P"), null);
    await again.close();
  });

  it("regression: the same abort at each moment of a flush (before, inside and after its snapshot) loses nothing", async () => {
    const turn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
    const inSnapshot = (x: Engine): boolean => (x as unknown as { head: { flushSnapshot: Set<number> | null } }).head.flushSnapshot !== null;
    const moments: [string, (x: Engine, flushed: { done: boolean }) => Promise<void>][] = [
      ["before the flush's snapshot", async () => undefined],
      // The block being written was cut without the point (the reservation held it): the swap must not drop it.
      [
        "inside the snapshot",
        async (x) => {
          while (!inSnapshot(x)) await turn();
        },
      ],
      // The block file being written (cut without the point), not yet attached.
      [
        "while the block is written",
        async (x, flushed) => {
          const blocks = join((x as unknown as { opts: { dataDir: string } }).opts.dataDir, "blocks");
          while ((await readdir(blocks)).length === 0 && !flushed.done) await turn();
          assert.ok(!flushed.done && x.stats().blockCount === 0, "the abort lands before the block is attached");
        },
      ],
      // Swapped, the owner flushed into the block; the WAL cleanup still running.
      [
        "after the swap",
        async (x, flushed) => {
          while (x.stats().blockCount === 0 && !flushed.done) await turn();
          assert.ok(!flushed.done, "the abort lands while the flush still runs");
        },
      ],
      ["after the flush", async (_x, flushed) => {
        while (!flushed.done) await turn();
      }],
    ];
    for (const [moment, wait] of moments) {
      const dir = await tempDir();
      const e = await open(dir);
      await e.write(batchOf([[0, 1n, 1], [0, 2n, 2]], "inferred"), "inf");
      const p = batchOf([[0, 1n, 10]], "original");
      const { bytes, sha256 } = encodeWithDigest(p);
      assert.equal(e.reserveSync(p, "P", sha256, 9n, bytes).kind, "ok");
      const flushed = { done: false };
      const flushing = e.flush().then(() => (flushed.done = true));
      await wait(e, flushed);
      e.abortSync("P");
      await flushing;
      const read = (x: Engine): string => {
        const r = x.select([[makeMatcher("job", "=", "dc")]], { startNs: 0n, endNs: 10n, includeInferred: true, seriesMax: 10, samplesMax: 100 })[0]!;
        return [...r.timestampsNs].map((t, i) => `${t}=${r.values[i]}/${r.batchIds[r.batchRefs[i]!]}`).join(" ");
      };
      assert.equal(read(e), "1=1/inf 2=2/inf", `abort ${moment}`);
      assert.deepEqual(e.digestWindows(ALL.startNs, ALL.endNs, W), fromScratch(e, ALL.startNs, ALL.endNs));
      await e.write(batchOf([[0, 3n, 3]], "original"), "later");
      await e.flush();
      assert.equal(read(e), "1=1/inf 2=2/inf 3=3/later", `abort ${moment}, flushed again`);
      await e.close();
      const again = await open(dir);
      assert.equal(read(again), "1=1/inf 2=2/inf 3=3/later", `abort ${moment}, reopened`);
      await again.close();
    }
  });

  it("costs no scan when nothing changed, and one window's scan after one write", async () => {
    const e = await open(await tempDir());
    // 3 series over 48 windows, half of it in a block.
    const pts: Pt[] = [];
    for (let h = 0; h < 48; h++) for (let s = 0; s < 3; s++) pts.push([s, BigInt(h) * W + 7n, h]);
    await e.write(batchOf(pts.slice(0, 72), "original"), "a");
    await e.flush();
    await e.write(batchOf(pts.slice(72), "original"), "b");
    const first = e.digestWindows(ALL.startNs, ALL.endNs, W);
    assert.equal(first.length, 48);
    const s0 = e.digestCacheStats();
    assert.deepEqual(e.digestWindows(ALL.startNs, ALL.endNs, W), first);
    const s1 = e.digestCacheStats();
    assert.equal(s1.scans, s0.scans, "nothing changed: no scan");
    assert.equal(s1.windowsRecomputed, s0.windowsRecomputed);
    await e.write(batchOf([[1, 30n * W + 9n, 0.5]], "original"), "c");
    const after1 = e.digestWindows(ALL.startNs, ALL.endNs, W);
    const s2 = e.digestCacheStats();
    assert.equal(s2.scans - s1.scans, 1, "one scan");
    assert.equal(s2.windowsRecomputed - s1.windowsRecomputed, 1, "of one window");
    assert.deepEqual(after1, fromScratch(e, ALL.startNs, ALL.endNs));
    assert.notDeepEqual(after1[30], first[30]);
    assert.deepEqual(after1.filter((_, i) => i !== 30), first.filter((_, i) => i !== 30));
    // A range whose edges clip windows whose points all lie inside it is served from the cache too.
    const s3 = e.digestCacheStats();
    assert.deepEqual(e.digestWindows(2n * W + 1n, 5n * W + 100n, W), fromScratch(e, 2n * W + 1n, 5n * W + 100n));
    assert.equal(e.digestCacheStats().clippedScans, s3.clippedScans, "points at +7 ns: [2W+1, 5W+100] clips no point");
    assert.deepEqual(e.digestWindows(2n * W + 8n, 5n * W + 5n, W), fromScratch(e, 2n * W + 8n, 5n * W + 5n));
    assert.equal(e.digestCacheStats().clippedScans - s3.clippedScans, 2, "both edge windows clipped: scanned");
    await e.close();
  });

  it("follows retention: a block expiring and head points left out of a flush stop counting", async () => {
    const dir = await tempDir();
    const e = await open(dir, 60_000);
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const old = nowNs - 3n * 60_000_000_000n; // 3 min ago: past a 1 min retention
    await e.write(batchOf([[0, old, 1], [1, nowNs, 2]], "original"), "a");
    const before = e.digestWindows(ALL.startNs, ALL.endNs, W);
    assert.equal(before.reduce((a, w) => a + w.count, 0), 2);
    await e.flush(); // the old point is left out of the block
    assert.deepEqual(e.digestWindows(ALL.startNs, ALL.endNs, W), fromScratch(e, ALL.startNs, ALL.endNs));
    assert.equal(e.digestWindows(ALL.startNs, ALL.endNs, W).reduce((a, w) => a + w.count, 0), 1);
    await e.close();
    // A block wholly past retention, deleted while running (retention runs at open and every minute).
    const dir2 = await tempDir();
    const e2 = await open(dir2, 500);
    await e2.write(batchOf([[0, BigInt(Date.now()) * 1_000_000n, 1]], "original"), "x");
    await e2.flush();
    assert.equal(e2.digestWindows(ALL.startNs, ALL.endNs, W).length, 1);
    await new Promise((r) => setTimeout(r, 600));
    await (e2 as unknown as { applyRetention(): Promise<void> }).applyRetention();
    assert.equal(e2.stats().blockCount, 0);
    assert.deepEqual(e2.digestWindows(ALL.startNs, ALL.endNs, W), []);
    await e2.close();
  });
});
