import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { batchDigest, decodeBatch, encodeBatch } from "../../src/core/batch.js";
import { BadInputError, TooLargeError } from "../../src/core/errors.js";
import { canonicalLabels, seriesKey } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { findGaps, type Gap } from "../../src/gaps/detect.js";
import { buildInferredBatch, buildInferredBatches, canonicalJson, fillGap } from "../../src/gaps/fill.js";

const S = 1_000_000_000n;
const I10S = 10n * S;
const T0 = 1_700_000_000n * S;
const labels = canonicalLabels([["__name__", "temp"], ["job", "sensors"], ["room", "b2"]], DEFAULT_LIMITS);

describe("gaps/fill fillGap", () => {
  it("linear: one point per missing slot at start + k × I, interpolated", () => {
    const g: Gap = { startNs: 0n, endNs: 40n, missingSlots: 3 };
    const f = fillGap(g, { tNs: 0n, value: 0 }, { tNs: 40n, value: 4 }, 10n, "linear");
    assert.deepEqual(f.timestampsNs, [10n, 20n, 30n]);
    assert.deepEqual(f.values, [1, 2, 3]);
    assert.equal(f.inference, '{"from":[["0",0],["40",4]],"gap":{"endNs":"40","startNs":"0"},"intervalNs":"10","method":"linear"}');
    assert.deepEqual(JSON.parse(f.inference), { method: "linear", from: [["0", 0], ["40", 4]], intervalNs: "10", gap: { startNs: "0", endNs: "40" } });
  });

  it("previous: the value before, repeated; only that point is the source", () => {
    const g: Gap = { startNs: T0, endNs: T0 + 30n * S, missingSlots: 2 };
    const f = fillGap(g, { tNs: T0, value: -1.5 }, { tNs: T0 + 30n * S, value: Number.NaN }, I10S, "previous");
    assert.deepEqual(f.timestampsNs, [T0 + I10S, T0 + 2n * I10S]);
    assert.deepEqual(f.values, [-1.5, -1.5]);
    assert.equal(f.inference, `{"from":[["${T0}",-1.5]],"gap":{"endNs":"${T0 + 30n * S}","startNs":"${T0}"},"intervalNs":"${I10S}","method":"previous"}`);
  });

  it("interpolates by time, also when the end point is late (jitter)", () => {
    const g: Gap = { startNs: 0n, endNs: 26n, missingSlots: 2 }; // round(2.6) - 1
    const f = fillGap(g, { tNs: 0n, value: 0 }, { tNs: 26n, value: 26 }, 10n, "linear");
    assert.deepEqual(f.timestampsNs, [10n, 20n]);
    assert.deepEqual(f.values, [10, 20]);
  });

  it("fills a 6 h hole at 10 s with 2159 points strictly inside, on the grid (the findGaps gap)", () => {
    const ts = [T0, T0 + I10S, T0 + I10S + 6n * 3600n * S];
    const [g] = findGaps(ts, I10S);
    assert.ok(g !== undefined);
    const f = fillGap(g, { tNs: g.startNs, value: 10 }, { tNs: g.endNs, value: 10 + 2160 }, I10S, "linear");
    assert.equal(f.timestampsNs.length, 2159);
    assert.equal(f.timestampsNs[0], g.startNs + I10S);
    assert.equal(f.timestampsNs[2158], g.endNs - I10S);
    f.values.forEach((v, i) => assert.equal(v, 10 + i + 1));
  });

  it("every slot strictly inside, spaced by I, values between the two ends (property)", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(1n << 60n), max: 1n << 60n }),
        fc.bigInt({ min: 1n, max: 3600n * S }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: -400_000, max: 400_000 }),
        fc.double({ min: -1e12, max: 1e12, noNaN: true }),
        fc.double({ min: -1e12, max: 1e12, noNaN: true }),
        fc.constantFrom("linear" as const, "previous" as const),
        (startNs, intervalNs, m, jitterPpm, v0, v1, method) => {
          // end = start + (m + 1) I ± 0.4 I: round(delta / I) - 1 = m.
          const endNs = startNs + BigInt(m + 1) * intervalNs + (intervalNs * BigInt(jitterPpm)) / 1_000_000n;
          const gaps = findGaps([startNs, endNs], intervalNs, { factor: 1.5 });
          if (gaps.length === 0) return; // m = 1 with a short delta: not a gap at all
          const g = gaps[0]!;
          assert.equal(g.missingSlots, m);
          const f = fillGap(g, { tNs: startNs, value: v0 }, { tNs: endNs, value: v1 }, intervalNs, method);
          assert.equal(f.timestampsNs.length, m);
          assert.equal(f.values.length, m);
          let prev = startNs;
          for (const t of f.timestampsNs) {
            assert.equal(t - prev, intervalNs);
            prev = t;
          }
          assert.ok(prev < endNs);
          const lo = Math.min(v0, v1);
          const hi = Math.max(v0, v1);
          const eps = 1e-9 * Math.max(1, Math.abs(lo), Math.abs(hi));
          for (const v of f.values) {
            if (method === "previous") assert.ok(Object.is(v, v0));
            else assert.ok(v >= lo - eps && v <= hi + eps, `${v} outside [${lo}, ${hi}]`);
          }
          // Deterministic: the same gap gives the same inference string.
          assert.equal(fillGap(g, { tNs: startNs, value: v0 }, { tNs: endNs, value: v1 }, intervalNs, method).inference, f.inference);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses gaps of more than slotsMax slots (default 100,000) with TooLargeError", () => {
    const big: Gap = { startNs: 0n, endNs: 100_002n * 10n, missingSlots: 100_001 };
    assert.throws(() => fillGap(big, { tNs: 0n, value: 1 }, { tNs: big.endNs, value: 2 }, 10n, "linear"), TooLargeError);
    const ok: Gap = { startNs: 0n, endNs: 100_001n * 10n, missingSlots: 100_000 };
    assert.equal(fillGap(ok, { tNs: 0n, value: 1 }, { tNs: ok.endNs, value: 2 }, 10n, "previous").timestampsNs.length, 100_000);
    const small: Gap = { startNs: 0n, endNs: 50n, missingSlots: 4 };
    assert.throws(
      () => fillGap(small, { tNs: 0n, value: 1 }, { tNs: 50n, value: 2 }, 10n, "linear", { slotsMax: 3 }),
      (e: unknown) => e instanceof TooLargeError && e.code === "too_large" && /limit of 3/.test(e.message),
    );
  });

  it("refuses to infer from non-finite values (BadInputError)", () => {
    const g: Gap = { startNs: 0n, endNs: 30n, missingSlots: 2 };
    assert.throws(() => fillGap(g, { tNs: 0n, value: Number.NaN }, { tNs: 30n, value: 1 }, 10n, "previous"), BadInputError);
    assert.throws(() => fillGap(g, { tNs: 0n, value: 1 }, { tNs: 30n, value: Infinity }, 10n, "linear"), BadInputError);
  });

  it("asserts the points are the gap's ends and the slots fit inside", () => {
    const g: Gap = { startNs: 0n, endNs: 30n, missingSlots: 2 };
    assert.throws(() => fillGap(g, { tNs: 1n, value: 0 }, { tNs: 30n, value: 1 }, 10n, "linear"), /invariant/);
    assert.throws(() => fillGap(g, { tNs: 0n, value: 0 }, { tNs: 31n, value: 1 }, 10n, "linear"), /invariant/);
    assert.throws(() => fillGap(g, { tNs: 0n, value: 0 }, { tNs: 30n, value: 1 }, 15n, "linear"), /invariant.*strictly inside/);
  });

  it("keeps -0 and exact doubles in the inference record", () => {
    const g: Gap = { startNs: 0n, endNs: 20n, missingSlots: 1 };
    const f = fillGap(g, { tNs: 0n, value: -0 }, { tNs: 20n, value: 0.1 + 0.2 }, 10n, "linear");
    assert.equal(f.inference, '{"from":[["0",-0],["20",0.30000000000000004]],"gap":{"endNs":"20","startNs":"0"},"intervalNs":"10","method":"linear"}');
    assert.ok(Object.is(JSON.parse(f.inference).from[0][1], -0));
  });
});

describe("gaps/fill canonicalJson", () => {
  it("sorts keys at every level, writes bigints as strings, no spaces", () => {
    assert.equal(canonicalJson({ b: 1, a: [2n, { d: null, c: "x\"y" }], "é": true }), '{"a":["2",{"c":"x\\"y","d":null}],"b":1,"é":true}');
    assert.throws(() => canonicalJson(Number.NaN), /invariant/);
  });
});

describe("gaps/fill buildInferredBatch", () => {
  it("one inferred batch per gap carrying the inference string; identical bytes for the same gap", () => {
    const g: Gap = { startNs: T0, endNs: T0 + 40n * S, missingSlots: 3 };
    const mk = () => buildInferredBatch(labels, fillGap(g, { tNs: T0, value: 1 }, { tNs: g.endNs, value: 5 }, I10S, "linear"));
    const b = mk();
    assert.equal(b.origin, "inferred");
    assert.equal(b.shardId, 0);
    assert.equal(b.sampleCount, 3);
    assert.equal(b.series.length, 1);
    assert.equal(b.series[0]!.key, seriesKey(labels));
    assert.deepEqual([...b.series[0]!.timestampsNs], [T0 + I10S, T0 + 2n * I10S, T0 + 3n * I10S]);
    assert.deepEqual([...b.series[0]!.values], [2, 3, 4]);
    assert.match(b.inference!, /^\{"from":\[\["\d+",1\],\["\d+",5\]\],"gap":/);
    const bytes = encodeBatch(b);
    assert.deepEqual(encodeBatch(mk()), bytes);
    assert.equal(batchDigest(encodeBatch(mk())), batchDigest(bytes));
    const back = decodeBatch(bytes);
    assert.equal(back.origin, "inferred");
    assert.equal(back.inference, b.inference);
  });

  it("buildInferredBatches: one batch per fill, in order; shardId passed through", () => {
    const g1: Gap = { startNs: 0n, endNs: 30n, missingSlots: 2 };
    const g2: Gap = { startNs: 100n, endNs: 140n, missingSlots: 3 };
    const f1 = fillGap(g1, { tNs: 0n, value: 0 }, { tNs: 30n, value: 3 }, 10n, "linear");
    const f2 = fillGap(g2, { tNs: 100n, value: 7 }, { tNs: 140n, value: 3 }, 10n, "previous");
    const bs = buildInferredBatches(labels, [f1, f2], { shardId: 5 });
    assert.equal(bs.length, 2);
    assert.deepEqual(bs.map((b) => [b.shardId, b.sampleCount, b.inference]), [
      [5, 2, f1.inference],
      [5, 3, f2.inference],
    ]);
  });
});
