// Merging replicas' selections (decision 7) and the selection wire codec: pure logic.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ByteWriter } from "../../src/core/bytes.js";
import { crc32c } from "../../src/core/hash.js";
import { decodeSelectAnswer, encodeSelectAnswer, type BatchMeta } from "../../src/cluster/peer-read.js";
import { mergeSelections, mergeSeries, unionSorted } from "../../src/cluster/read-merge.js";
import type { SelectedSeries } from "../../src/storage/engine-api.js";

type P = [t: number, v: number, origin: 0 | 1, batch: string];

function series(key: string, points: P[]): SelectedSeries {
  const ids = [...new Set(points.map((p) => p[3]))];
  return {
    key,
    labels: [["__name__", key]],
    timestampsNs: BigInt64Array.from(points.map((p) => BigInt(p[0]))),
    values: Float64Array.from(points.map((p) => p[1])),
    origins: Uint8Array.from(points.map((p) => p[2])),
    batchRefs: Uint32Array.from(points.map((p) => ids.indexOf(p[3]))),
    batchIds: ids,
  };
}

const pointsOf = (s: SelectedSeries): P[] =>
  [...s.timestampsNs].map((t, i) => [Number(t), s.values[i]!, s.origins[i] as 0 | 1, s.batchIds[s.batchRefs[i]!]!]);

describe("mergeSeries", () => {
  it("unions points, takes the peer's where the local side lacks them, and reports those as missing", () => {
    const l = series("m", [
      [1, 1, 0, "a"],
      [3, 3, 0, "a"],
    ]);
    const p = series("m", [
      [1, 1, 0, "a"],
      [2, 2, 0, "b"],
      [3, 3, 0, "a"],
      [4, 4, 0, "b"],
    ]);
    const r = mergeSeries(l, p);
    assert.deepEqual(pointsOf(r.series), [
      [1, 1, 0, "a"],
      [2, 2, 0, "b"],
      [3, 3, 0, "a"],
      [4, 4, 0, "b"],
    ]);
    assert.deepEqual(pointsOf(r.missing!), [
      [2, 2, 0, "b"],
      [4, 4, 0, "b"],
    ]);
    assert.equal(r.divergent, 0);
  });
  it("an original beats an inferred point on either side; only the local side's gap is missing", () => {
    const l = series("m", [
      [1, 10, 1, "inf"],
      [2, 2, 0, "a"],
    ]);
    const p = series("m", [
      [1, 1, 0, "a"],
      [2, 20, 1, "inf"],
    ]);
    const r = mergeSeries(l, p);
    assert.deepEqual(pointsOf(r.series), [
      [1, 1, 0, "a"],
      [2, 2, 0, "a"],
    ]);
    assert.deepEqual(pointsOf(r.missing!), [[1, 1, 0, "a"]]);
  });
  it("keeps the local value of a divergent point and counts it", () => {
    const r = mergeSeries(series("m", [[1, 1, 0, "a"]]), series("m", [[1, 2, 0, "b"]]));
    assert.deepEqual(pointsOf(r.series), [[1, 1, 0, "a"]]);
    assert.equal(r.missing, null);
    assert.equal(r.divergent, 1);
  });
  it("identical copies merge to the local series itself, with nothing missing", () => {
    const l = series("m", [[1, Number.NaN, 0, "a"]]);
    const r = mergeSeries(l, series("m", [[1, Number.NaN, 0, "a"]]));
    assert.equal(r.series, l);
    assert.equal(r.missing, null);
    assert.equal(r.divergent, 0);
  });
  it("property: the merge holds every timestamp of either side exactly once, sorted", () => {
    const side = fc.uniqueArray(fc.integer({ min: 0, max: 200 }), { maxLength: 40 }).map((ts) => ts.sort((a, b) => a - b));
    fc.assert(
      fc.property(side, side, (a, b) => {
        const r = mergeSeries(series("m", a.map((t): P => [t, t, 0, "x"])), series("m", b.map((t): P => [t, t, 0, "y"])));
        const want = [...new Set([...a, ...b])].sort((x, y) => x - y);
        assert.deepEqual([...r.series.timestampsNs].map(Number), want);
        const lack = b.filter((t) => !a.includes(t));
        assert.deepEqual(r.missing === null ? [] : [...r.missing.timestampsNs].map(Number), lack);
      }),
      { numRuns: 300 },
    );
  });
});

describe("mergeSelections", () => {
  it("adds series only the peer has (missing whole) and sorts by key", () => {
    const r = mergeSelections([series("b", [[1, 1, 0, "x"]])], [series("a", [[1, 1, 0, "y"]]), series("b", [[1, 1, 0, "x"]])]);
    assert.deepEqual(
      r.series.map((s) => s.key),
      ["a", "b"],
    );
    assert.deepEqual(
      r.missing.map((m) => m.series.key),
      ["a"],
    );
  });
  it("unionSorted", () => {
    assert.deepEqual(unionSorted([["b", "a"], ["c", "a"], []]), ["a", "b", "c"]);
  });
});

describe("selection wire codec (HQR1)", () => {
  it("round-trips series, provenance and batch descriptions, value bits included", () => {
    const s = series("up", [
      [1, -0, 0, "a"],
      [2, Number.NaN, 1, "b"],
      [3, Infinity, 0, "a"],
    ]);
    const batches = new Map<string, BatchMeta>([
      ["a", { batchId: "a", sha256: "ab".repeat(32), hlc: 123n, shardId: 0, sampleCount: 2, origin: "original", inference: null }],
      ["b", { batchId: "b", sha256: "cd".repeat(32), hlc: -5n, shardId: 7, sampleCount: 1, origin: "inferred", inference: '{"method":"linear"}' }],
    ]);
    const back = decodeSelectAnswer(encodeSelectAnswer({ series: [s], batches }), "test");
    assert.equal(back.series.length, 1);
    assert.deepEqual(pointsOf(back.series[0]!), pointsOf(s));
    assert.ok(Object.is(back.series[0]!.values[0], -0));
    assert.equal(back.series[0]!.key, s.key);
    assert.deepEqual(back.batches, batches);
  });
  it("refuses damaged input with a typed error, never a crash", () => {
    const bytes = encodeSelectAnswer({ series: [series("up", [[1, 1, 0, "a"], [2, 2, 0, "a"]])], batches: new Map() });
    for (let cut = 0; cut < bytes.length; cut++)
      assert.throws(
        () => decodeSelectAnswer(bytes.subarray(0, cut), "cut"),
        (e: { code?: string }) => e.code === "bad_input" || e.code === "corruption",
      );
    // A sample count far beyond the bytes that follow: refused before allocating.
    const body = new ByteWriter().u32(0x31525148).u8(1).uvarint(1).uvarint(0).uvarint(0).uvarint(2 ** 40).finish();
    const huge = new Uint8Array(body.length + 4);
    huge.set(body);
    new DataView(huge.buffer).setUint32(body.length, crc32c(body), true);
    assert.throws(() => decodeSelectAnswer(huge, "huge"), /claims 1099511627776 samples/);
    // Any flipped byte is caught by the checksum.
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice();
      bad[i] = bad[i]! ^ 0x10;
      assert.throws(() => decodeSelectAnswer(bad, "flip"), (e: { code?: string }) => e.code === "corruption");
    }
  });
});
