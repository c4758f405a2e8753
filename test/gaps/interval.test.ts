import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { findGaps } from "../../src/gaps/detect.js";
import { learnIntervalNs, lowerMedian } from "../../src/gaps/interval.js";

const S = 1_000_000_000n;
const I10S = 10n * S;
/** Jitter of one timestamp in millionths of the interval, within ±20%. */
const jitterPpm = fc.integer({ min: -200_000, max: 200_000 });
/** A jittered series, point k at base + k × I + jitter (ppm of I): strictly increasing, deltas at least 0.6 I. */
const jittered = (baseNs: bigint, intervalNs: bigint, jitters: readonly number[]): bigint[] =>
  jitters.map((j, k) => baseNs + BigInt(k) * intervalNs + (intervalNs * BigInt(j)) / 1_000_000n);

describe("gaps/interval learnIntervalNs", () => {
  it("learns a regular interval exactly", () => {
    const ts = Array.from({ length: 100 }, (_, k) => 1_700_000_000n * S + BigInt(k) * I10S);
    assert.equal(learnIntervalNs(ts), I10S);
    assert.equal(learnIntervalNs(BigInt64Array.from(ts)), I10S);
  });

  it("returns null below K positive deltas (default 8), repeats not counted", () => {
    const eight = Array.from({ length: 9 }, (_, k) => BigInt(k) * S);
    assert.equal(learnIntervalNs(eight), S);
    assert.equal(learnIntervalNs(eight.slice(0, 8)), null);
    assert.equal(learnIntervalNs([]), null);
    assert.equal(learnIntervalNs([5n]), null);
    const withRepeats = [0n, 0n, 1n, 1n, 2n, 3n, 3n, 4n, 5n, 6n, 7n];
    assert.equal(learnIntervalNs(withRepeats), null); // 7 positive deltas
    assert.equal(learnIntervalNs([...withRepeats, 8n]), 1n);
    assert.equal(learnIntervalNs(eight.slice(0, 4), { deltasMin: 3 }), S);
  });

  it("uses only the last N deltas (default 64)", () => {
    // 200 points at 60 s, then 100 at 10 s: the recent history wins.
    const ts: bigint[] = [];
    for (let k = 0; k < 200; k++) ts.push(BigInt(k) * 60n * S);
    const t0 = ts[ts.length - 1]!;
    for (let k = 1; k <= 100; k++) ts.push(t0 + BigInt(k) * I10S);
    assert.equal(learnIntervalNs(ts), I10S);
    assert.equal(learnIntervalNs(ts, { deltasMax: 300 }), 60n * S); // most of 299 deltas are 60 s
  });

  it("ignores the gaps themselves (a 6 h hole among 10 s deltas)", () => {
    const ts: bigint[] = [];
    for (let k = 0; k < 40; k++) ts.push(BigInt(k) * I10S);
    for (let k = 40 + 2160; k < 40 + 2160 + 30; k++) ts.push(BigInt(k) * I10S);
    assert.equal(learnIntervalNs(ts), I10S);
  });

  it("is within [0.8 I, 1.2 I] under any ±20% jitter, so factor 2 finds no false gap (property)", () => {
    fc.assert(
      fc.property(fc.array(jitterPpm, { minLength: 9, maxLength: 300 }), fc.bigInt({ min: 1000n, max: 3600n * S }), (js, intervalNs) => {
        const ts = jittered(1_700_000_000n * S, intervalNs, js);
        const learned = learnIntervalNs(ts);
        assert.ok(learned !== null);
        assert.ok(learned * 10n >= 8n * intervalNs - 10n && learned * 10n <= 12n * intervalNs, `learned ${learned} for ${intervalNs}`);
        assert.deepEqual(findGaps(ts, learned), []);
      }),
      { numRuns: 300 },
    );
  });

  it("alternating early/late jitter: learned I, no false gaps (a one-step median would learn 0.6 I)", () => {
    for (const pattern of [[200_000, -200_000], [-200_000, 200_000], [200_000, 200_000, -200_000, -200_000], [200_000, -200_000, -200_000]]) {
      for (const n of [9, 10, 33, 64, 65, 200]) {
        const js = Array.from({ length: n }, (_, k) => pattern[k % pattern.length]!);
        const ts = jittered(0n, I10S, js);
        const learned = learnIntervalNs(ts)!;
        assert.ok(learned * 10n >= 8n * I10S && learned * 10n <= 12n * I10S, `pattern ${pattern} n ${n}: learned ${learned}`);
        assert.deepEqual(findGaps(ts, learned), [], `pattern ${pattern} n ${n}`);
      }
    }
  });

  it("lowerMedian takes the lower middle element", () => {
    assert.equal(lowerMedian([3n]), 3n);
    assert.equal(lowerMedian([4n, 1n]), 1n);
    assert.equal(lowerMedian([5n, 1n, 3n]), 3n);
    assert.equal(lowerMedian([9n, 1n, 3n, 100n]), 3n);
  });

  it("asserts on nonsense options", () => {
    assert.throws(() => learnIntervalNs([], { deltasMin: 1 }), /invariant/);
    assert.throws(() => learnIntervalNs([], { deltasMin: 8, deltasMax: 4 }), /invariant/);
  });
});
