import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { classifyGap, findGaps, missingSlotsBetween, staleSince, type Gap } from "../../src/gaps/detect.js";
import { learnIntervalNs } from "../../src/gaps/interval.js";

const S = 1_000_000_000n;
const I10S = 10n * S;
const T0 = 1_700_000_000n * S;
/** Jitter of one timestamp in millionths of the interval, within ±20%. */
const jitterPpm = fc.integer({ min: -200_000, max: 200_000 });
/** Timestamp of slot k: base + k × I + jitter (ppm of I). */
const slotTs = (baseNs: bigint, intervalNs: bigint, k: number, ppm: number): bigint => baseNs + BigInt(k) * intervalNs + (intervalNs * BigInt(ppm)) / 1_000_000n;

describe("gaps/detect findGaps", () => {
  it("(a) a series with ±20% jitter has no gaps (property)", () => {
    fc.assert(
      fc.property(fc.array(jitterPpm, { minLength: 0, maxLength: 500 }), fc.bigInt({ min: 1n, max: 86_400n * S }), (js, intervalNs) => {
        const ts = js.map((j, k) => slotTs(T0, intervalNs, k, j));
        for (let i = 1; i < ts.length; i++) assert.ok(ts[i]! > ts[i - 1]!, "generator: strictly increasing");
        assert.deepEqual(findGaps(ts, intervalNs), []);
        assert.deepEqual(findGaps(BigInt64Array.from(ts), intervalNs), []);
      }),
      { numRuns: 300 },
    );
  });

  it("(a') the worst ±20% pattern (every delta 1.4 I or 0.6 I) has no gaps", () => {
    const ts = Array.from({ length: 100 }, (_, k) => slotTs(T0, I10S, k, k % 2 === 0 ? -200_000 : 200_000));
    assert.equal(ts[1]! - ts[0]!, 14n * S);
    assert.deepEqual(findGaps(ts, I10S), []);
  });

  it("(b) a 10 s series with one 6 h hole: exactly one gap, start/end the points around it, 2159 missing slots (property)", () => {
    const holeSlots = 6 * 360; // end - start = 2160 intervals
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 1, max: 300 }),
        fc.boolean(),
        fc.array(jitterPpm, { minLength: 601 + holeSlots, maxLength: 601 + holeSlots }),
        (before, after, jitter, js) => {
          const ks: number[] = [];
          for (let k = 0; k <= before; k++) ks.push(k);
          for (let k = before + holeSlots; k < before + holeSlots + after; k++) ks.push(k);
          const ts = ks.map((k) => slotTs(T0, I10S, k, jitter ? js[k]! : 0));
          const gaps = findGaps(ts, I10S);
          assert.equal(gaps.length, 1);
          const g = gaps[0]!;
          assert.equal(g.startNs, ts[before]);
          assert.equal(g.endNs, ts[before + 1]);
          assert.equal(g.missingSlots, 6 * 360 - 1);
          // The formula: round((end - start) / I) - 1.
          assert.equal(g.missingSlots, missingSlotsBetween(g.startNs, g.endNs, I10S));
          if (!jitter) assert.equal(g.endNs - g.startNs, 6n * 3600n * S);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("(b') with the interval learned from the history around the hole, the same gap", () => {
    const ts: bigint[] = [];
    for (let k = 0; k <= 100; k++) ts.push(T0 + BigInt(k) * I10S);
    for (let k = 100 + 2160; k < 100 + 2160 + 50; k++) ts.push(T0 + BigInt(k) * I10S);
    const learned = learnIntervalNs(ts);
    assert.equal(learned, I10S);
    assert.deepEqual(findGaps(ts, learned!), [{ startNs: T0 + 100n * I10S, endNs: T0 + 2260n * I10S, missingSlots: 2159 }]);
  });

  it("(c) several holes (two or more missing slots each) are each found once, in order, exactly (property)", () => {
    const segment = fc.record({ run: fc.integer({ min: 1, max: 20 }), hole: fc.integer({ min: 3, max: 500 }) });
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 20 }), fc.bigInt({ min: 1000n, max: 3600n * S }), fc.infiniteStream(jitterPpm), (segs, tail, intervalNs, jstream) => {
        const jit = jstream[Symbol.iterator]();
        const next = (): number => jit.next().value as number;
        const ts: bigint[] = [];
        const holes: { before: number; missingSlots: number }[] = [];
        let k = 0;
        for (const { run, hole } of segs) {
          for (let r = 0; r < run; r++) ts.push(slotTs(T0, intervalNs, k++, next()));
          holes.push({ before: ts.length - 1, missingSlots: hole - 1 });
          k += hole - 1; // the next point is `hole` intervals after the last one
        }
        for (let r = 0; r < tail; r++) ts.push(slotTs(T0, intervalNs, k++, next()));
        const want: Gap[] = holes.map((h) => ({ startNs: ts[h.before]!, endNs: ts[h.before + 1]!, missingSlots: h.missingSlots }));
        assert.deepEqual(findGaps(ts, intervalNs), want);
      }),
      { numRuns: 200 },
    );
  });

  it("a single missing point: found when the delta passes factor × I (2 I: not at factor 2 without jitter; yes at 1.5)", () => {
    const ts = [0n, 10n, 20n, 40n, 50n]; // I = 10, one point missing between 20 and 40
    assert.deepEqual(findGaps(ts, 10n), []);
    assert.deepEqual(findGaps(ts, 10n, { factor: 1.5 }), [{ startNs: 20n, endNs: 40n, missingSlots: 1 }]);
    assert.deepEqual(findGaps([0n, 21n], 10n), [{ startNs: 0n, endNs: 21n, missingSlots: 1 }]);
    assert.deepEqual(findGaps([0n, 20n], 10n, { factor: 2 }), []);
    assert.deepEqual(findGaps([0n, 20n], 10n, { factor: 1.999999 }), [{ startNs: 0n, endNs: 20n, missingSlots: 1 }]);
  });

  it("rounds the missing slots half up", () => {
    assert.equal(missingSlotsBetween(0n, 24n, 10n), 1);
    assert.equal(missingSlotsBetween(0n, 25n, 10n), 2);
    assert.equal(missingSlotsBetween(0n, 34n, 10n), 2);
    assert.equal(missingSlotsBetween(0n, 35n, 10n), 3);
  });

  it("needs strictly increasing timestamps, a positive interval and factor >= 1.5 (assertions)", () => {
    assert.throws(() => findGaps([0n, 10n, 10n], 10n), /invariant.*strictly increasing/);
    assert.throws(() => findGaps([0n, 10n], 0n), /invariant/);
    assert.throws(() => findGaps([0n, 10n], 10n, { factor: 1.4 }), /invariant/);
    assert.throws(() => findGaps([0n, 10n], 10n, { factor: Number.NaN }), /invariant/);
    assert.deepEqual(findGaps([], 10n), []);
    assert.deepEqual(findGaps([5n], 10n), []);
  });
});

describe("gaps/detect staleSince", () => {
  it("is stale after more than staleAfterSlots (default 10) intervals of silence", () => {
    assert.equal(staleSince(0n, 100n, 10n), false);
    assert.equal(staleSince(0n, 101n, 10n), true);
    assert.equal(staleSince(0n, 30n, 10n, { staleAfterSlots: 3 }), false);
    assert.equal(staleSince(0n, 31n, 10n, { staleAfterSlots: 3 }), true);
    assert.equal(staleSince(100n, 50n, 10n), false); // a clock behind the data: not stale
    assert.equal(staleSince(T0, T0 + 6n * 3600n * S, I10S), true);
    assert.throws(() => staleSince(0n, 1n, 10n, { staleAfterSlots: 0 }), /invariant/);
    assert.throws(() => staleSince(0n, 1n, 0n), /invariant/);
  });
});

describe("gaps/detect classifyGap", () => {
  const g: Gap = { startNs: 0n, endNs: 40n, missingSlots: 3 };
  it("backfilled when originals arrived, filled when every slot is inferred, else open", () => {
    assert.equal(classifyGap(g, { original: 0, inferred: 0 }), "open");
    assert.equal(classifyGap(g, { original: 0, inferred: 2 }), "open");
    assert.equal(classifyGap(g, { original: 0, inferred: 3 }), "filled");
    assert.equal(classifyGap(g, { original: 1, inferred: 3 }), "backfilled");
    assert.equal(classifyGap(g, { original: 3, inferred: 0 }), "backfilled");
  });
});
