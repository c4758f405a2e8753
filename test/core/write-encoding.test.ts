// Property tests of the write path's encodings: the interned label section is
// the canonical encoding's, a batch encodes to the same bytes whether its
// series carry cached label bytes or not, decoding with a series cache gives
// what decoding without one gives, and timestamps given in ms are stored as
// the same int64 ns a BigInt multiplication gives.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BatchBuilder, decodeBatch, encodeBatch, type Batch, type InRequestConflicts } from "../../src/core/batch.js";
import { MS_ABS_MAX_FOR_NS, SampleColumns } from "../../src/core/sample-columns.js";
import { ByteWriter } from "../../src/core/bytes.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { encodeLabelSection, internSeries, SeriesInternCache } from "../../src/core/series-intern.js";

const labelText = fc.string({ minLength: 1, maxLength: 12, unit: fc.constantFrom("a", "b", "_", "é", "ß", "\n", '"', "\\", "日", "😀", "1", ":") });
const labelSet = fc
  .uniqueArray(fc.tuple(fc.constantFrom("__name__", "job", "instance", "a", "b", "z", "ünï"), labelText), { minLength: 1, maxLength: 6, selector: ([n]) => n })
  .map((pairs) => canonicalLabels(pairs, DEFAULT_LIMITS));
const msTime = fc.integer({ min: -MS_ABS_MAX_FOR_NS, max: MS_ABS_MAX_FOR_NS });

function batchOf(series: { labels: ReturnType<typeof canonicalLabels>; points: [number, number][] }[], interned: boolean): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const s of series) {
    const key = interned ? b.interned(internSeries(s.labels)) : b.series(s.labels);
    for (const [ms, v] of s.points) b.addSample(key, BigInt(ms) * 1_000_000n, v);
  }
  return b.build({ keepFirst: { count: 0, listed: [] } });
}

describe("write-path encodings", () => {
  it("an interned series' label bytes are the canonical label section", () => {
    fc.assert(
      fc.property(labelSet, (labels) => {
        const w = new ByteWriter(8);
        w.uvarint(labels.length);
        for (const [n, v] of labels) w.lenBytes(new TextEncoder().encode(n)).lenBytes(new TextEncoder().encode(v));
        assert.deepEqual(internSeries(labels).labelBytes, w.finish());
        const w2 = new ByteWriter(8);
        encodeLabelSection(labels, w2);
        assert.deepEqual(w2.finish(), w.finish());
      }),
    );
  });

  it("a batch encodes to the same bytes with and without cached label bytes, and decodes the same with a series cache", () => {
    const series = fc.array(fc.record({ labels: labelSet, points: fc.array(fc.tuple(fc.integer({ min: -1e12, max: 1e12 }), fc.double()), { minLength: 1, maxLength: 4 }) }), {
      minLength: 1,
      maxLength: 8,
    });
    const cache = new SeriesInternCache(4096); // small: generations turn over during the run
    fc.assert(
      fc.property(series, (ss) => {
        const plain = encodeBatch(batchOf(ss, false));
        assert.deepEqual(encodeBatch(batchOf(ss, true)), plain);
        const a = decodeBatch(plain);
        const b = decodeBatch(plain, "batch", cache);
        const c = decodeBatch(plain, "batch", cache); // the second time from the cache
        for (const d of [b, c]) {
          assert.deepEqual(
            d.series.map((s) => [s.key, s.labels]),
            a.series.map((s) => [s.key, s.labels]),
          );
          assert.deepEqual(encodeBatch(d), plain);
        }
      }),
    );
  });

  it("a timestamp pushed in ms is the int64 ns a BigInt product gives; the order by words agrees with BigInt order", () => {
    fc.assert(
      fc.property(fc.array(msTime, { minLength: 1, maxLength: 20 }), (mss) => {
        const a = new SampleColumns(1);
        const b = new SampleColumns(1);
        for (const ms of mss) {
          a.pushMs(0, ms, ms);
          b.push(0, BigInt(ms) * 1_000_000n, ms);
        }
        assert.deepEqual([...a.ts.subarray(0, a.length)], mss.map((ms) => BigInt(ms) * 1_000_000n));
        for (let i = 1; i < mss.length; i++) {
          assert.equal(a.before(i - 1, i), mss[i - 1]! < mss[i]!);
          assert.equal(b.before(i, i - 1), mss[i]! < mss[i - 1]!);
        }
      }),
    );
    for (const edge of [0, 1, -1, MS_ABS_MAX_FOR_NS, -MS_ABS_MAX_FOR_NS, 4194303, 4194304, -4194304, 2 ** 32, -(2 ** 32), 1_764_000_000_000]) {
      const l = new SampleColumns();
      l.pushMs(0, edge, 0);
      assert.equal(l.ts[0], BigInt(edge) * 1_000_000n, `ms ${edge}`);
    }
    assert.throws(() => new SampleColumns().pushMs(0, MS_ABS_MAX_FOR_NS + 1, 0));
  });

  it("the batch builder equals a plain reference: series by key, samples by time, the first of a repeated timestamp kept, conflicts counted", () => {
    const names = ["a", "b", "c", "d"].map((n) => canonicalLabels([["__name__", n]], DEFAULT_LIMITS));
    const op = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: -5, max: 5 }), fc.constantFrom(1, 2, -0, 0, NaN), fc.boolean());
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const b = new BatchBuilder(DEFAULT_LIMITS);
        const want = new Map<string, { t: bigint; v: number }[]>();
        let conflicts = 0;
        for (const [n, t, v, inMs] of ops) {
          const key = b.series(names[n]!);
          if (inMs) b.addSampleMs(key, t, v);
          else b.addSample(key, BigInt(t) * 1_000_000n, v);
          const list = want.get(key) ?? [];
          want.set(key, list);
          const prev = list.find((p) => p.t === BigInt(t) * 1_000_000n);
          if (prev === undefined) list.push({ t: BigInt(t) * 1_000_000n, v });
          else if (!Object.is(prev.v, v) && !(Number.isNaN(prev.v) && Number.isNaN(v))) conflicts++;
        }
        const got: InRequestConflicts = { count: 0, listed: [] };
        const batch = b.build({ keepFirst: got });
        assert.equal(got.count, conflicts);
        const keys = [...want.keys()].sort();
        assert.deepEqual(batch.series.map((s) => s.key), keys);
        for (const s of batch.series) {
          const w = want.get(s.key)!.sort((x, y) => (x.t < y.t ? -1 : 1));
          assert.deepEqual([...s.timestampsNs], w.map((p) => p.t));
          assert.deepEqual([...s.values], w.map((p) => p.v));
        }
        assert.equal(batch.sampleCount, keys.reduce((a, k) => a + want.get(k)!.length, 0));
        if (conflicts > 0) assert.throws(() => b.build(), /two different values/);
      }),
    );
  });

  it("the series cache stays within two generations and moves a re-used entry forward", () => {
    const cache = new SeriesInternCache(2000);
    const s = internSeries(canonicalLabels([["__name__", "x"]], DEFAULT_LIMITS));
    for (let i = 0; i < 100; i++) cache.set(`k${i}`, s);
    assert.ok(cache.stats().entries < 100, "old generations were dropped");
    cache.set("keep", s);
    for (let i = 0; i < 200; i++) {
      cache.set(`m${i}`, s);
      assert.equal(cache.get("keep"), s, "an entry in use survives generation turns");
    }
  });
});
