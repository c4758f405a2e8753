import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { completeness } from "../../src/gaps/completeness.js";
import { findGaps } from "../../src/gaps/detect.js";
import { fillGap } from "../../src/gaps/fill.js";

const S = 1_000_000_000n;
const I = 10n * S;
const T0 = 1_700_000_000n * S;

describe("gaps/completeness", () => {
  it("a regular series over a whole number of intervals is complete", () => {
    const ts = Array.from({ length: 360 }, (_, k) => T0 + BigInt(k) * I);
    const r = completeness(ts, new Uint8Array(ts.length), T0, T0 + 3600n * S, I);
    assert.deepEqual(r, { expectedSlots: 360, original: 360, inferred: 0, missingSlots: 0 });
  });

  it("counts [start, end): the point at end is outside", () => {
    const ts = [0n, 10n, 20n, 30n];
    assert.deepEqual(completeness(ts, new Uint8Array(4), 0n, 30n, 10n), { expectedSlots: 3, original: 3, inferred: 0, missingSlots: 0 });
    assert.deepEqual(completeness(ts, new Uint8Array(4), 5n, 30n, 10n), { expectedSlots: 2, original: 2, inferred: 0, missingSlots: 0 });
    assert.deepEqual(completeness(ts, new Uint8Array(4), 0n, 0n, 10n), { expectedSlots: 0, original: 0, inferred: 0, missingSlots: 0 });
    // floor: an extra point at an edge is not a missing slot, and never makes missing negative.
    assert.deepEqual(completeness(ts, new Uint8Array(4), 0n, 35n, 10n), { expectedSlots: 3, original: 4, inferred: 0, missingSlots: 0 });
  });

  it("a hole shows as missing slots; filling it turns them into inferred", () => {
    // 0..100 s at 10 s with 40..70 missing (3 slots), window [0, 100 s).
    const original = [0n, 10n, 20n, 30n, 70n, 80n, 90n].map((s) => s * S);
    const r0 = completeness(original, new Uint8Array(original.length), 0n, 100n * S, I);
    assert.deepEqual(r0, { expectedSlots: 10, original: 7, inferred: 0, missingSlots: 3 });

    const [g] = findGaps(original, I);
    assert.ok(g !== undefined && g.missingSlots === 3);
    const f = fillGap(g, { tNs: g.startNs, value: 3 }, { tNs: g.endNs, value: 7 }, I, "linear");
    const merged = [...original.map((t) => [t, 0] as const), ...f.timestampsNs.map((t) => [t, 1] as const)].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const r1 = completeness(merged.map((p) => p[0]), Uint8Array.from(merged.map((p) => p[1])), 0n, 100n * S, I);
    assert.deepEqual(r1, { expectedSlots: 10, original: 7, inferred: 3, missingSlots: 0 });
  });

  it("original + inferred + missing >= expected, and missing = expected - points when fewer (property)", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 2000 }), { maxLength: 300 }), fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 1, max: 50 }), (raw, a, b, iv) => {
        const ts = [...raw].sort((x, y) => x - y).map(BigInt);
        const origins = Uint8Array.from(ts.map((t) => Number(t % 2n)));
        const [s, e] = a <= b ? [BigInt(a), BigInt(b)] : [BigInt(b), BigInt(a)];
        const r = completeness(ts, origins, s, e, BigInt(iv));
        const inWindow = ts.filter((t) => t >= s && t < e);
        assert.equal(r.expectedSlots, Number((e - s) / BigInt(iv)));
        assert.equal(r.original + r.inferred, inWindow.length);
        assert.equal(r.inferred, inWindow.filter((t) => t % 2n === 1n).length);
        assert.equal(r.missingSlots, Math.max(0, r.expectedSlots - inWindow.length));
      }),
    );
  });

  it("asserts its inputs", () => {
    assert.throws(() => completeness([1n], new Uint8Array(2), 0n, 10n, 1n), /invariant/);
    assert.throws(() => completeness([1n], Uint8Array.of(2), 0n, 10n, 1n), /invariant.*origin/);
    assert.throws(() => completeness([1n, 1n], new Uint8Array(2), 0n, 10n, 1n), /invariant.*strictly increasing/);
    assert.throws(() => completeness([], new Uint8Array(0), 10n, 0n, 1n), /invariant/);
    assert.throws(() => completeness([], new Uint8Array(0), 0n, 10n, 0n), /invariant/);
  });
});
