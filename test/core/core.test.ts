import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { BatchBuilder, decodeBatch, encodeBatch, batchDigest, resolveBatchId, sameValue } from "../../src/core/batch.js";
import { ByteReader, ByteWriter } from "../../src/core/bytes.js";
import { BadInputError, ConflictError, CorruptionError, TooLargeError } from "../../src/core/errors.js";
import { crc32c, merkleRoot, sha256, toHex } from "../../src/core/hash.js";
import { canonicalLabels, seriesKey } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher, matchesLabels, selectsSomething } from "../../src/core/matchers.js";
import { nsColumnToMs, nsToMs, parseApiTime, parseIntTimestamp } from "../../src/core/time.js";

const L = DEFAULT_LIMITS;

describe("core/bytes", () => {
  it("round-trips varints over the whole int64 range", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), fc.nat(), (v, u) => {
        const w = new ByteWriter(4).varint64(v).uvarint(u);
        const r = new ByteReader(w.finish());
        assert.equal(r.varint64(), v);
        assert.equal(r.uvarint(), u);
        assert.equal(r.remaining, 0);
      }),
    );
  });
  it("keeps a leading byte-order mark in strings", () => {
    const w = new ByteWriter().str("\ufeffvalue");
    assert.equal(new ByteReader(w.finish()).str(), "\ufeffvalue");
  });
  it("refuses over-long varints and non-integers", () => {
    const eleven = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03]);
    assert.throws(() => new ByteReader(eleven).varint64(), CorruptionError);
    assert.throws(() => new ByteWriter().uvarint(-1), /non-negative safe integer/);
    assert.throws(() => new ByteWriter().uvarint(Infinity), /non-negative safe integer/);
  });
  it("reports truncation as CorruptionError with the offset", () => {
    const r = new ByteReader(new Uint8Array([1, 2]), "f.bin");
    r.u8();
    assert.throws(() => r.u32(), (e: unknown) => e instanceof CorruptionError && e.offset === 1 && e.file === "f.bin");
  });
});

describe("core/hash", () => {
  it("computes CRC32C (Castagnoli) check value", () => {
    assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  });
  it("builds RFC 6962 Merkle roots", () => {
    const d = [sha256(new Uint8Array([1])), sha256(new Uint8Array([2])), sha256(new Uint8Array([3]))];
    const leaf = (x: Uint8Array) => sha256(new Uint8Array([0]), x);
    const node = (a: Uint8Array, b: Uint8Array) => sha256(new Uint8Array([1]), a, b);
    assert.equal(toHex(merkleRoot(d)), toHex(node(node(leaf(d[0]!), leaf(d[1]!)), leaf(d[2]!))));
    assert.equal(toHex(merkleRoot([d[0]!])), toHex(leaf(d[0]!)));
    // RFC 6962: the hash of an empty tree is SHA-256 of the empty string.
    assert.equal(toHex(merkleRoot([])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });
});

describe("core/labels", () => {
  it("canonicalises: sorts, drops empty values, escapes in the key", () => {
    const l = canonicalLabels([["job", "a"], ["__name__", "up"], ["empty", ""], ["q", 'x"\\\ny']], L);
    assert.deepEqual(l, [["__name__", "up"], ["job", "a"], ["q", 'x"\\\ny']]);
    assert.equal(seriesKey(l), 'up{job="a",q="x\\"\\\\\\ny"}');
    assert.equal(seriesKey([["__name__", "up"]]), "up");
  });
  it("rejects duplicates, too many labels and over-long values with the field named", () => {
    assert.throws(() => canonicalLabels([["a", "1"], ["a", "2"]], L, { line: 3 }), (e: unknown) => e instanceof BadInputError && /line 3/.test(e.message) && /"a"/.test(e.message));
    const many = Array.from({ length: L.labelsPerSeriesMax + 1 }, (_, i) => [`l${i}`, "v"] as [string, string]);
    assert.throws(() => canonicalLabels(many, L), TooLargeError);
    assert.throws(() => canonicalLabels([["a", "x".repeat(L.labelValueBytesMax + 1)]], L, { line: 9 }), (e: unknown) => e instanceof TooLargeError && /line 9/.test(e.message));
  });
});

describe("core/batch", () => {
  const lab = (n: string) => canonicalLabels([["__name__", n]], L);
  it("builds canonical batches: sorted, de-duplicated, digest independent of input order", () => {
    const a = new BatchBuilder(L);
    a.add(lab("b"), 2n, 1);
    a.add(lab("a"), 5n, NaN);
    a.add(lab("a"), 1n, -0);
    a.add(lab("a"), 5n, NaN); // identical repeat
    const b = new BatchBuilder(L);
    b.add(lab("a"), 1n, -0);
    b.add(lab("a"), 5n, NaN);
    b.add(lab("b"), 2n, 1);
    const ba = a.build();
    assert.equal(ba.sampleCount, 3);
    assert.deepEqual(ba.series.map((s) => s.key), ["a", "b"]);
    assert.equal(batchDigest(encodeBatch(ba)), batchDigest(encodeBatch(b.build())));
  });
  it("refuses two values for one point inside a request", () => {
    const a = new BatchBuilder(L);
    a.add(lab("a"), 1n, 1);
    a.add(lab("a"), 1n, 2);
    assert.throws(() => a.build(), (e: unknown) => e instanceof ConflictError && e.points.length === 1 && e.points[0]!.timestampNs === "1");
  });
  it("enforces samples and series limits as they are reached", () => {
    const a = new BatchBuilder({ seriesPerBatchMax: 1, samplesPerBatchMax: 2 });
    a.add(lab("a"), 1n, 1);
    assert.throws(() => a.add(lab("b"), 1n, 1, { line: 2 }), (e: unknown) => e instanceof TooLargeError && /line 2/.test(e.message));
    a.add(lab("a"), 2n, 1);
    assert.throws(() => a.add(lab("a"), 3n, 1), TooLargeError);
  });
  it("round-trips the canonical encoding exactly (property)", () => {
    const value = fc.oneof(fc.double(), fc.constantFrom(NaN, Infinity, -Infinity, -0, 5e-324, 1.7976931348623157e308));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), value), { minLength: 1, maxLength: 50 }),
        (pts) => {
          const bb = new BatchBuilder(L);
          const seen = new Map<string, number>();
          for (const [n, t, v] of pts) {
            const k = `${n}/${t}`;
            if (seen.has(k)) continue;
            seen.set(k, v);
            bb.add(lab(n), t, v);
          }
          const batch = bb.build({ origin: "inferred", inference: '{"method":"linear"}', shardId: 7 });
          const back = decodeBatch(encodeBatch(batch));
          assert.equal(back.origin, "inferred");
          assert.equal(back.shardId, 7);
          assert.equal(back.inference, '{"method":"linear"}');
          assert.equal(back.sampleCount, batch.sampleCount);
          for (let i = 0; i < batch.series.length; i++) {
            const x = batch.series[i]!;
            const y = back.series[i]!;
            assert.equal(y.key, x.key);
            assert.deepEqual([...y.timestampsNs], [...x.timestampsNs]);
            for (let j = 0; j < x.values.length; j++) assert.ok(sameValue(x.values[j]!, y.values[j]!));
          }
        },
      ),
    );
  });
  it("compares values by their bits", () => {
    assert.ok(sameValue(NaN, NaN));
    assert.ok(!sameValue(0, -0));
    const stale = new Float64Array(new BigUint64Array([0x7ff8000000000002n]).buffer)[0]!; // quiet form of the stale marker
    assert.ok(!sameValue(stale, NaN));
  });
  it("validates idempotency keys", () => {
    assert.equal(resolveBatchId(null, "ab", 128), "ab");
    assert.equal(resolveBatchId("key-1", "ab", 128), "key-1");
    assert.throws(() => resolveBatchId("has space", "ab", 128), BadInputError);
    assert.throws(() => resolveBatchId("x".repeat(129), "ab", 128), TooLargeError);
  });
});

describe("core/time", () => {
  it("keeps nanoseconds exactly", () => {
    assert.equal(parseIntTimestamp("1700000000123456789", "ns", {}), 1700000000123456789n);
    assert.equal(parseIntTimestamp("1700000000123", "ms", {}), 1700000000123000000n);
    assert.throws(() => parseIntTimestamp("99999999999999999999", "ns", { line: 1 }), BadInputError);
    assert.equal(nsToMs(-1n), -1);
    assert.equal(parseApiTime("1700000000.5", {}), 1700000000500000000n);
    assert.equal(parseApiTime("2023-11-14T22:13:20.123456789Z", {}), 1700000000123456789n);
  });

  it("property: nsColumnToMs is nsToMs on every int64, at ms boundaries and around them", () => {
    const edges = [0n, 1n, 999_999n, 1_000_000n, -1n, -1_000_000n, -1_000_001n, (1n << 32n) - 1n, 1n << 32n, (1n << 63n) - 1n, -(1n << 63n)];
    for (const base of [1_700_000_000_000_000_000n, 4_294_967_296_000_000n])
      for (const d of [-1n, 0n, 1n]) edges.push(base + d, base + 999_999n + d);
    const check = (xs: bigint[]): void => {
      const got = nsColumnToMs(BigInt64Array.from(xs));
      xs.forEach((x, i) => assert.equal(got[i], nsToMs(x), `ns ${x}`));
    };
    check(edges);
    fc.assert(
      fc.property(fc.array(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), { maxLength: 50 }), (xs) => check(xs)),
      { numRuns: 300 },
    );
  });
});

describe("core/matchers", () => {
  it("follows Prometheus semantics", () => {
    const l = canonicalLabels([["__name__", "up"], ["job", "node"]], L);
    assert.ok(matchesLabels([makeMatcher("job", "=~", "no.*")], l));
    assert.ok(!matchesLabels([makeMatcher("job", "=~", "no")], l)); // anchored
    assert.ok(matchesLabels([makeMatcher("missing", "=", "")], l));
    assert.ok(!selectsSomething([makeMatcher("x", "=~", ".*")]));
    assert.throws(() => makeMatcher("x", "=~", "("), BadInputError);
  });
});
