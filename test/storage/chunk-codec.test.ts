import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CorruptionError } from "../../src/core/errors.js";
import {
  decodeChunk,
  decodeTimestampColumn,
  encodeChunk,
  encodeTimestampColumn,
  type ChunkCompression,
  type ChunkData,
} from "../../src/storage/chunk-codec.js";

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

function f64FromBits(bits: bigint): number {
  return new Float64Array(new BigUint64Array([bits]).buffer)[0]!;
}
function bitsOf(values: Float64Array): BigUint64Array {
  return new BigUint64Array(values.buffer, values.byteOffset, values.length);
}

const SPECIAL_BITS: bigint[] = [
  0x7ff0000000000002n, // Prometheus stale marker (signalling NaN payload)
  0x7ff8000000000001n, // Prometheus normal NaN
  0x7ff8000000000000n, // canonical NaN
  0xfff8000000000000n, // negative NaN
  0x7fffffffffffffffn, // NaN with all payload bits
  0x8000000000000000n, // -0
  0x0000000000000000n, // +0
  0x7ff0000000000000n, // +Inf
  0xfff0000000000000n, // -Inf
  0x0000000000000001n, // 5e-324
  0x000fffffffffffffn, // largest subnormal
  0x7fefffffffffffffn, // 1.7976931348623157e308
  0xffefffffffffffffn, // -1.7976931348623157e308
];

function assertSame(got: ChunkData, want: ChunkData): void {
  assert.equal(got.timestampsNs.length, want.timestampsNs.length);
  assert.deepEqual(Array.from(got.timestampsNs), Array.from(want.timestampsNs));
  const gb = bitsOf(got.values);
  const wb = bitsOf(want.values);
  for (let i = 0; i < wb.length; i++) if (gb[i] !== wb[i]) assert.fail(`value ${i}: bits ${gb[i]!.toString(16)} != ${wb[i]!.toString(16)}`);
  assert.deepEqual(Array.from(got.origins), Array.from(want.origins));
  assert.deepEqual(Array.from(got.batchRefs), Array.from(want.batchRefs));
}

function roundTrip(c: ChunkData, compression: ChunkCompression = "auto"): Uint8Array {
  const bytes = encodeChunk(c, { compression });
  assertSame(decodeChunk(bytes, "mem"), c);
  // external timestamps: column encoded alone, chunk without them
  const col = encodeTimestampColumn(c.timestampsNs, { compression });
  const ts = decodeTimestampColumn(col, "mem");
  assert.deepEqual(Array.from(ts), Array.from(c.timestampsNs));
  const ext = encodeChunk(c, { compression, externalTimestamps: true });
  assertSame(decodeChunk(ext, "mem", 0, ts), c);
  return bytes;
}

// ---- generators -----------------------------------------------------------

const arbTimestamps = (n: number): fc.Arbitrary<BigInt64Array> =>
  fc.oneof(
    // sorted unique over the full int64 range
    fc.uniqueArray(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), { minLength: n, maxLength: n }).map((a) => BigInt64Array.from(a.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)))),
    // start + positive gaps of a chosen kind: ns jitter, ms with jitter, huge
    fc
      .tuple(
        fc.bigInt({ min: -(1n << 62n), max: 1n << 62n }),
        fc.constantFrom(1n, 1000n, 1_000_000n, 1_000_000_000n, 1n << 35n), // max span 2^35 * 2000 * 10^4 < 2^63 - 2^62
        fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: n - 1, maxLength: n - 1 }),
        fc.boolean(),
      )
      .map(([start, unit, gaps, regular]) => {
        const out = new BigInt64Array(n);
        let t = start;
        out[0] = t;
        for (let i = 1; i < n; i++) {
          t += regular ? unit * 1000n : unit * BigInt(gaps[i - 1]!);
          out[i] = t;
        }
        return out;
      }),
  );

const arbValues = (n: number): fc.Arbitrary<Float64Array> =>
  fc.oneof(
    fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: n, maxLength: n }).map((a) => Float64Array.from(a.map(f64FromBits))),
    fc.array(fc.constantFrom(...SPECIAL_BITS), { minLength: n, maxLength: n }).map((a) => Float64Array.from(a.map(f64FromBits))),
    // 2-decimal random walk
    fc.tuple(fc.integer({ min: -100000, max: 100000 }), fc.array(fc.integer({ min: -500, max: 500 }), { minLength: n, maxLength: n })).map(([s, steps]) => {
      let m = s;
      return Float64Array.from(steps.map((d) => (m += d) / 100));
    }),
    // counter
    fc.tuple(fc.integer({ min: 0, max: 1e9 }), fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: n, maxLength: n })).map(([s, steps]) => {
      let m = s;
      return Float64Array.from(steps.map((d) => (m += d)));
    }),
    // decimal walk sprinkled with specials and odd doubles
    fc
      .tuple(
        fc.array(fc.integer({ min: -99999, max: 99999 }), { minLength: n, maxLength: n }),
        fc.array(fc.option(fc.oneof(fc.constantFrom(...SPECIAL_BITS), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), { freq: 8 }), { minLength: n, maxLength: n }),
        fc.integer({ min: 0, max: 6 }),
      )
      .map(([ms, sp, e]) =>
        Float64Array.from(ms.map((m, i) => {
          const s = sp[i];
          return s === null || s === undefined ? m / 10 ** e : f64FromBits(s);
        })),
      ),
  );

const arbU32Col = (n: number, max: number): fc.Arbitrary<number[]> =>
  fc.oneof(
    fc.integer({ min: 0, max }).map((v) => new Array<number>(n).fill(v)),
    fc.integer({ min: 0, max: Math.max(0, max - n) }).map((v) => Array.from({ length: n }, (_, i) => Math.min(max, v + i))),
    fc.array(fc.integer({ min: 0, max }), { minLength: n, maxLength: n }),
  );

const arbChunk = (maxLen: number): fc.Arbitrary<ChunkData> =>
  fc.integer({ min: 1, max: maxLen }).chain((n) =>
    fc.record({
      timestampsNs: arbTimestamps(n),
      values: arbValues(n),
      origins: arbU32Col(n, 1).map((a) => Uint8Array.from(a)),
      batchRefs: arbU32Col(n, 0xffffffff).map((a) => Uint32Array.from(a)),
    }),
  );

// ---- tests ------------------------------------------------------------------

describe("chunk codec: round trips", () => {
  it("random chunks up to 200 samples, every compression mode, bit-exact", () => {
    fc.assert(
      fc.property(arbChunk(200), fc.constantFrom<ChunkCompression>("auto", "none", "deflate", "brotli"), (c, comp) => {
        roundTrip(c, comp);
      }),
      { numRuns: 400 },
    );
  });

  it("long random chunks (up to 10000 samples), bit-exact", () => {
    fc.assert(
      fc.property(arbChunk(10000), (c) => {
        roundTrip(c);
      }),
      { numRuns: 30, endOnFailure: true }, // shrinking 10k-sample arrays takes forever
    );
  });

  it("every special value in every position, alone and mixed with decimals", () => {
    for (const bits of SPECIAL_BITS) {
      for (const n of [1, 2, 3, 10]) {
        const values = new Float64Array(n).map((_, i) => i * 0.25);
        for (let pos = 0; pos < n; pos++) {
          const v = values.slice();
          bitsOf(v)[pos] = bits;
          const ts = BigInt64Array.from({ length: n }, (_, i) => 1_700_000_000_000_000_000n + BigInt(i) * 15_000_000_000n);
          roundTrip({ timestampsNs: ts, values: v, origins: new Uint8Array(n), batchRefs: new Uint32Array(n) });
        }
        const all = new Float64Array(n);
        bitsOf(all).fill(bits);
        roundTrip({ timestampsNs: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), values: all, origins: new Uint8Array(n), batchRefs: new Uint32Array(n) });
      }
    }
  });

  it("extreme timestamps: int64 min and max, single sample, huge gaps", () => {
    const cases: bigint[][] = [
      [INT64_MIN],
      [INT64_MAX],
      [INT64_MIN, INT64_MAX],
      [INT64_MIN, 0n, INT64_MAX],
      [INT64_MAX - 2n, INT64_MAX - 1n, INT64_MAX],
      [-5n, -4n, -2n, 1n],
      [0n, 1n << 50n, (1n << 51n) - 1n],
      [0n, 1n << 51n],
      [0n, (1n << 51n) + 1n, (1n << 52n) + 7n],
    ];
    for (const t of cases) {
      const n = t.length;
      roundTrip({ timestampsNs: BigInt64Array.from(t), values: new Float64Array(n).fill(1.5), origins: new Uint8Array(n).fill(1), batchRefs: new Uint32Array(n).fill(7) });
    }
  });

  it("compresses real-looking data: ms scrape timestamps with jitter, 2-decimal walks, per-sample batch refs", () => {
    const n = 4096;
    const ts = new BigInt64Array(n);
    let t = 1_795_555_989_281n;
    for (let i = 0; i < n; i++) {
      ts[i] = t * 1_000_000n;
      t += BigInt(1000 + ((i * 7919) % 15) - 7);
    }
    let m = 123456;
    const values = new Float64Array(n).map(() => (m += Math.round(Math.sin(m) * 40)) / 100);
    const constRefs = { timestampsNs: ts, values, origins: new Uint8Array(n), batchRefs: new Uint32Array(n).fill(3) };
    const stepRefs = { ...constRefs, batchRefs: Uint32Array.from({ length: n }, (_, i) => 100 + i) };
    const a = roundTrip(constRefs);
    const b = roundTrip(stepRefs);
    assert.ok(a.length / n < 2.5, `2-decimal walk: ${(a.length / n).toFixed(3)} B/sample`);
    assert.ok(Math.abs(b.length - a.length) <= 4, `one batch per sample costs ${b.length - a.length} bytes`);
    const constant = { ...constRefs, values: new Float64Array(n).fill(42.5) };
    assert.ok(encodeChunk(constant, { externalTimestamps: true }).length < 32, "a constant chunk is a few bytes");
  });

  it("refuses broken invariants on encode (not corruption: a bug in the caller)", () => {
    const bad = { timestampsNs: BigInt64Array.from([2n, 1n]), values: new Float64Array(2), origins: new Uint8Array(2), batchRefs: new Uint32Array(2) };
    assert.throws(() => encodeChunk(bad), /invariant/);
    assert.throws(() => encodeChunk({ ...bad, timestampsNs: BigInt64Array.from([1n, 1n]) }), /invariant/);
    assert.throws(() => encodeChunk({ ...bad, timestampsNs: BigInt64Array.from([1n, 2n]), origins: Uint8Array.from([0, 2]) }), /invariant/);
    assert.throws(() => encodeChunk({ timestampsNs: new BigInt64Array(0), values: new Float64Array(0), origins: new Uint8Array(0), batchRefs: new Uint32Array(0) }), /invariant/);
  });
});

describe("chunk codec: malformed input", () => {
  function onlyCorruption(bytes: Uint8Array, shared?: BigInt64Array): void {
    try {
      decodeChunk(bytes, "mem", 1000, shared);
    } catch (e) {
      if (!(e instanceof CorruptionError)) throw new Error(`decodeChunk threw ${String(e)}`);
      assert.equal(e.file, "mem");
      assert.ok(e.offset >= 1000 && e.offset <= 1000 + bytes.length, `offset ${e.offset} outside the chunk`);
    }
  }

  const samples: ChunkData[] = [];
  {
    const n = 64;
    const ts = BigInt64Array.from({ length: n }, (_, i) => 1_000_000_000n * BigInt(i) + BigInt((i * 37) % 11) * 1_000_000n);
    const walk = Float64Array.from({ length: n }, (_, i) => Math.round(Math.sin(i) * 1000) / 100);
    const xor = Float64Array.from({ length: n }, (_, i) => Math.sin(i));
    const nan = walk.slice();
    bitsOf(nan)[5] = 0x7ff0000000000002n;
    const refs = Uint32Array.from({ length: n }, (_, i) => i);
    const origins = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
    samples.push({ timestampsNs: ts, values: walk, origins, batchRefs: refs });
    samples.push({ timestampsNs: ts, values: xor, origins: new Uint8Array(n), batchRefs: new Uint32Array(n) });
    samples.push({ timestampsNs: ts, values: nan, origins, batchRefs: new Uint32Array(n).fill(9) });
    samples.push({ timestampsNs: BigInt64Array.from([INT64_MIN, 0n, INT64_MAX]), values: Float64Array.from([1, 2, 3]), origins: new Uint8Array(3), batchRefs: new Uint32Array(3) });
  }

  it("flipping every byte of small chunks (all codecs) never throws anything but CorruptionError", () => {
    let flips = 0;
    for (const c of samples) {
      for (const compression of ["none", "deflate", "brotli"] as const) {
        for (const external of [false, true]) {
          const clean = encodeChunk(c, { compression, externalTimestamps: external });
          for (let i = 0; i < clean.length; i++) {
            for (const mask of [0x01, 0x80, 0xff]) {
              const b = clean.slice();
              b[i]! ^= mask;
              onlyCorruption(b, external ? c.timestampsNs.slice() : undefined);
              flips++;
            }
          }
          // every truncation is detected
          for (let len = 0; len < clean.length; len++) {
            assert.throws(() => decodeChunk(clean.subarray(0, len), "mem", 0, external ? c.timestampsNs.slice() : undefined), CorruptionError);
          }
        }
      }
    }
    assert.ok(flips > 1000);
  });

  it("random garbage never throws anything but CorruptionError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (b) => {
        onlyCorruption(b);
        onlyCorruption(b, new BigInt64Array(3));
        try {
          decodeTimestampColumn(b, "mem");
        } catch (e) {
          assert.ok(e instanceof CorruptionError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("a chunk and a timestamp column are not mistaken for each other; missing shared timestamps are named", () => {
    const c = samples[0]!;
    assert.throws(() => decodeTimestampColumn(encodeChunk(c), "mem"), CorruptionError);
    assert.throws(() => decodeChunk(encodeTimestampColumn(c.timestampsNs), "mem"), CorruptionError);
    assert.throws(() => decodeChunk(encodeChunk(c, { externalTimestamps: true }), "mem"), /shared timestamp column/);
    assert.throws(() => decodeChunk(encodeChunk(c, { externalTimestamps: true }), "mem", 0, new BigInt64Array(3)), CorruptionError);
  });
});
