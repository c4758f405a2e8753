// Order-independent point digests (docs/format/point-digest.md): the pure hash
// against its BigInt definition and its test vectors, the sum's algebra, and
// the engine's digests of visible points however they are split among head
// and blocks.

import assert from "node:assert/strict";
import { mkdtemp, open as openFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, type Batch, type Origin } from "../../src/core/batch.js";
import { BadInputError, CorruptionError } from "../../src/core/errors.js";
import { canonicalLabels, seriesKey } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { BlockReader } from "../../src/storage/block-io.js";
import { Engine, openEngine } from "../../src/storage/engine.js";
import { digestPoints, DigestSum, fnv1a64, pointHash, SeriesHasher, seriesSeed, type DigestPoint } from "../../src/storage/point-digest.js";
import { reserve } from "./replica-host.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function openTemp(): Promise<{ e: Engine; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "hqts-digest-"));
  dirs.push(dir);
  return { e: await reopen(dir), dir };
}

async function reopen(dir: string): Promise<Engine> {
  return (await openEngine({ dataDir: dir, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry() })) as Engine;
}

const M64 = (1n << 64n) - 1n;
const hex = (x: bigint): string => `0x${x.toString(16).padStart(16, "0")}`;

type P = [name: string, t: bigint, v: number, origin: Origin];

function labelsOf(name: string) {
  return canonicalLabels([["__name__", name], ["job", "d"]], DEFAULT_LIMITS);
}

function batch(points: [string, bigint, number, Origin?][], origin: Origin): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [name, t, v] of points) b.add(labelsOf(name), t, v);
  return b.build({ origin, inference: origin === "inferred" ? '{"method":"test"}' : null });
}

/** Writes points as one original and one inferred batch (either may be empty). */
async function put(e: Engine, points: P[], id: string): Promise<void> {
  for (const origin of ["original", "inferred"] as const) {
    const mine = points.filter((p) => p[3] === origin);
    if (mine.length > 0) await e.write(batch(mine, origin), `${id}-${origin}`);
  }
}

const asDigestPoints = (points: P[]): DigestPoint[] =>
  points.map(([name, t, v, origin]) => ({ key: seriesKey(labelsOf(name)), timestampNs: t, value: v, origin: origin === "original" ? 0 : 1 }));

/** 12 series × 50 points at 1 s, a few inferred, values with awkward bits. */
function fixture(): P[] {
  const out: P[] = [];
  const odd = [-0, Infinity, -Infinity, NaN, 5e-324, Number.MAX_VALUE];
  for (let s = 0; s < 12; s++)
    for (let i = 0; i < 50; i++) out.push([`m${s}`, 1_700_000_000_000_000_000n + BigInt(i) * 1_000_000_000n, i % 10 === 3 ? odd[(s + i) % odd.length]! : s * 1000 + i / 7, (s + i) % 11 === 0 ? "inferred" : "original"]);
  return out;
}

const ALL = { start: -(1n << 62n), end: 1n << 62n };
const WINDOW_NS = 7_000_000_000n; // not a divisor of the span: windows cut series mid-way

describe("point digest: the hash", () => {
  it("matches its test vectors (docs/format/point-digest.md)", () => {
    assert.equal(hex(fnv1a64(new Uint8Array())), "0xcbf29ce484222325");
    assert.equal(hex(fnv1a64(Buffer.from("a"))), "0xaf63dc4c8601ec8c");
    const k = 'up{job="node"}';
    assert.equal(hex(seriesSeed(k, 0)), "0x3dea6c8f3f0f8445");
    assert.equal(hex(seriesSeed(k, 1)), "0xb8ce8a067f306331");
    assert.equal(hex(pointHash(k, 1700000000000000000n, 1, 0)), "0x5fd6d86884f10320");
    assert.equal(hex(pointHash(k, 1700000000000000000n, 1, 1)), "0xbf667d73253602db");
    assert.equal(hex(pointHash(k, 1700000000000000001n, 1, 0)), "0x3ee5da12dab46b7f");
    assert.equal(hex(pointHash(k, 1700000000000000000n, 1.5, 0)), "0xf8642726a9b17333");
    assert.equal(hex(pointHash(k, -1n, -0, 0)), "0xf11f7e87d14c1023");
    const d = digestPoints([
      { key: k, timestampNs: 1700000000000000000n, value: 1, origin: 0 },
      { key: k, timestampNs: 1700000000000000000n, value: 1, origin: 1 },
      { key: k, timestampNs: 1700000000000000001n, value: 1, origin: 0 },
    ]);
    assert.deepEqual(d, { count: 3, hash: 0x5e232fee84db717an });
  });

  const point = fc.record({
    key: fc.string({ unit: "binary", maxLength: 40 }),
    timestampNs: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
    value: fc.oneof(fc.double(), fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 5e-324)),
    origin: fc.constantFrom(0, 1),
  });

  it("computes in its fast path (u32 halves, no BigInt per point) exactly the BigInt definition", () => {
    fc.assert(
      fc.property(fc.array(point, { maxLength: 30 }), (points) => {
        const expected = points.reduce((a, p) => (a + pointHash(p.key, p.timestampNs, p.value, p.origin)) & M64, 0n);
        assert.deepEqual(digestPoints(points), { count: points.length, hash: expected });
      }),
      { numRuns: 300 },
    );
  });

  it("digest(A ∪ B) = digest(A) + digest(B) mod 2^64 for disjoint A and B, in any order", () => {
    const unique = fc.uniqueArray(point, { selector: (p) => `${p.key}\u0000${p.timestampNs}`, maxLength: 60 });
    fc.assert(
      fc.property(unique, fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }), fc.integer(), (points, side, seed) => {
        const a = points.filter((_, i) => side[i]);
        const b = points.filter((_, i) => !side[i]);
        const da = digestPoints(a);
        const db = digestPoints(b);
        // Shuffled union: the digest does not depend on visiting order.
        const shuffled = [...points].sort((x, y) => ((pointHash(x.key, x.timestampNs, 0, 0) ^ BigInt(seed)) < (pointHash(y.key, y.timestampNs, 0, 0) ^ BigInt(seed)) ? -1 : 1));
        const du = digestPoints(shuffled);
        assert.equal(du.hash, (da.hash + db.hash) & M64);
        assert.equal(du.count, da.count + db.count);
        // The same through the running sums.
        const sa = new DigestSum();
        for (const p of a) sa.addHash(pointHash(p.key, p.timestampNs, p.value, p.origin));
        const sb = new DigestSum();
        for (const p of b) sb.addHash(pointHash(p.key, p.timestampNs, p.value, p.origin));
        sa.addDigest(sb);
        assert.deepEqual(sa.digest(), du);
      }),
      { numRuns: 300 },
    );
  });

  it("wraps its sum mod 2^64 and sums long runs exactly", () => {
    const s = new DigestSum();
    s.addHash(M64);
    s.addHash(2n);
    assert.deepEqual(s.digest(), { count: 2, hash: 1n });
    // Past the run length where the unreduced halves are folded (2^20 points).
    const n = (1 << 20) + 3;
    const ts = new BigInt64Array(n).map((_, i) => BigInt(i) * 1000n - 5000n);
    const vs = new Float64Array(n).map((_, i) => i * 0.5);
    const os = new Uint8Array(n).map((_, i) => i & 1);
    const fast = new DigestSum();
    new SeriesHasher("k").addPoints(fast, ts, vs, os);
    let ref = 0n;
    for (let i = 0; i < n; i += 4099) ref = (ref + pointHash("k", ts[i]!, vs[i]!, os[i]!)) & M64;
    const sampled = new DigestSum();
    const h = new SeriesHasher("k");
    for (let i = 0; i < n; i += 4099) h.addPoints(sampled, ts, vs, os, i, i + 1);
    assert.equal(sampled.hash, ref);
    assert.equal(fast.count, n);
    // Split anywhere, the parts add up to the whole.
    const parts = new DigestSum();
    h.addPoints(parts, ts, vs, os, 0, 777_777);
    h.addPoints(parts, ts, vs, os, 777_777, n);
    assert.deepEqual(parts.digest(), fast.digest());
  });
});

describe("point digest: the engine", () => {
  it("gives the same digests for the same points all in the head and split among two blocks and the head", async () => {
    const points = fixture();
    const head = await openTemp();
    await put(head.e, points, "all");
    const split = await openTemp();
    await put(split.e, points.filter((p) => p[1] < 1_700_000_000_000_000_000n + 20_000_000_000n), "a");
    await split.e.flush();
    await put(split.e, points.filter((p) => p[1] >= 1_700_000_000_000_000_000n + 20_000_000_000n && p[0] < "m5"), "b");
    await split.e.flush();
    await put(split.e, points.filter((p) => p[1] >= 1_700_000_000_000_000_000n + 20_000_000_000n && p[0] >= "m5"), "c");
    assert.equal(split.e.stats().blockCount, 2);
    assert.ok(split.e.stats().headSamples > 0);

    const windows = head.e.digestWindows(ALL.start, ALL.end, WINDOW_NS);
    assert.deepEqual(split.e.digestWindows(ALL.start, ALL.end, WINDOW_NS), windows);
    const series = head.e.digestSeries(ALL.start, ALL.end);
    assert.deepEqual(split.e.digestSeries(ALL.start, ALL.end), series);
    // And both are the digest of the points themselves.
    const whole = digestPoints(asDigestPoints(points));
    assert.equal(windows.reduce((a, w) => a + w.count, 0), points.length);
    assert.equal(windows.reduce((a, w) => (a + w.hash) & M64, 0n), whole.hash);
    assert.equal(series.reduce((a, s) => (a + s.hash) & M64, 0n), whole.hash);
    assert.deepEqual(
      series.map((s) => s.key),
      [...new Set(points.map((p) => seriesKey(labelsOf(p[0]))))].sort(),
    );
    // Blocks read back after a restart (chunks loaded and verified from disk) agree too.
    await split.e.close();
    const again = await reopen(split.dir);
    assert.deepEqual(again.digestWindows(ALL.start, ALL.end, WINDOW_NS), windows);
    await again.close();
    await head.e.close();
  });

  it("differs, in that window and series only, when one point's value, origin or timestamp differs", async () => {
    const points = fixture();
    const base = await openTemp();
    await put(base.e, points, "x");
    const w0 = base.e.digestWindows(ALL.start, ALL.end, WINDOW_NS);
    const s0 = base.e.digestSeries(ALL.start, ALL.end);
    const k = 137; // m2, 37th point
    const [name, t, v, origin] = points[k]!;
    const variants: P[][] = [
      points.map((p, i) => (i === k ? [name, t, v + 1, origin] : p)),
      points.map((p, i) => (i === k ? [name, t, v, origin === "original" ? "inferred" : "original"] : p)),
      points.map((p, i) => (i === k ? [name, t + 1n, v, origin] : p)),
    ];
    for (const variant of variants) {
      const o = await openTemp();
      await put(o.e, variant, "y");
      const w = o.e.digestWindows(ALL.start, ALL.end, WINDOW_NS);
      const s = o.e.digestSeries(ALL.start, ALL.end);
      assert.equal(w.length, w0.length);
      const wDiff = w.filter((x, i) => x.hash !== w0[i]!.hash || x.startNs !== w0[i]!.startNs);
      assert.deepEqual(
        wDiff.map((x) => x.startNs),
        [(t / WINDOW_NS) * WINDOW_NS],
      );
      const sDiff = s.filter((x, i) => x.hash !== s0[i]!.hash);
      assert.deepEqual(
        sDiff.map((x) => x.key),
        [seriesKey(labelsOf(name))],
      );
      await o.e.close();
    }
    await base.e.close();
  });

  it("cuts aligned windows (negative times included), clips to the range and omits empty windows", async () => {
    const { e } = await openTemp();
    const ts = [-15n, -10n, -1n, 0n, 9n, 10n, 25n, 55n];
    const points: P[] = ts.map((t) => ["w", t, Number(t), "original"]);
    await put(e, points, "w");
    const byWindow = (lo: bigint, hi: bigint) => digestPoints(asDigestPoints(points.filter((p) => p[1] >= lo && p[1] <= hi)));
    assert.deepEqual(e.digestWindows(-100n, 100n, 10n), [
      { startNs: -20n, ...byWindow(-20n, -11n) },
      { startNs: -10n, ...byWindow(-10n, -1n) },
      { startNs: 0n, ...byWindow(0n, 9n) },
      { startNs: 10n, ...byWindow(10n, 19n) },
      { startNs: 20n, ...byWindow(20n, 29n) },
      { startNs: 50n, ...byWindow(50n, 59n) },
    ]);
    assert.deepEqual(
      e.digestWindows(-100n, 100n, 10n).map((w) => w.count),
      [1, 2, 2, 1, 1, 1],
    );
    // The range clips the edge windows: [-12, 9] leaves -15 out (window -20 omitted) and 10 out.
    assert.deepEqual(e.digestWindows(-12n, 9n, 10n), [
      { startNs: -10n, ...byWindow(-10n, -1n) },
      { startNs: 0n, ...byWindow(0n, 9n) },
    ]);
    assert.deepEqual(e.digestSeries(-12n, 9n), [{ key: seriesKey(labelsOf("w")), ...byWindow(-12n, 9n) }]);
    assert.deepEqual(e.digestWindows(5n, 4n, 10n), []);
    assert.deepEqual(e.digestSeries(30n, 50n), []);
    assert.throws(() => e.digestWindows(0n, 1n, 0n), BadInputError);
    await e.close();
  });

  it("counts committed points only (inferred included), and an original over an inferred one", async () => {
    const { e } = await openTemp();
    await e.write(batch([["v", 1n, 1]], "original"), "a");
    await e.write(batch([["v", 2n, 2]], "inferred"), "b");
    const before = e.digestSeries(ALL.start, ALL.end);
    assert.deepEqual(before[0]!.count, 2);
    assert.equal(reserve(e, batch([["v", 3n, 3]], "original"), "p", 1n).kind, "ok");
    assert.deepEqual(e.digestSeries(ALL.start, ALL.end), before, "a prepared batch is invisible");
    assert.deepEqual(e.digestWindows(ALL.start, ALL.end, 100n)[0]!.count, 2);
    e.commitSync("p");
    await e.flush();
    // The inferred point at 2 in the block yields to an original in the head.
    await e.write(batch([["v", 2n, 20]], "original"), "c");
    const expected = digestPoints(asDigestPoints([["v", 1n, 1, "original"], ["v", 2n, 20, "original"], ["v", 3n, 3, "original"]]));
    assert.deepEqual(e.digestSeries(ALL.start, ALL.end), [{ key: seriesKey(labelsOf("v")), ...expected }]);
    await e.close();
  });

  it("verifies block chunks as it reads them: a damaged chunk is a CorruptionError", async () => {
    const { e, dir } = await openTemp();
    await put(e, fixture(), "x");
    await e.flush();
    await e.close();
    const name = (await readdir(join(dir, "blocks"))).find((n) => n.endsWith(".hqb"))!;
    const path = join(dir, "blocks", name);
    const r = await BlockReader.open(path);
    const chunk = r.series()[3]!.chunks[0]!;
    await r.close();
    const fh = await openFile(path, "r+");
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, chunk.offset + 2);
    b[0] = b[0]! ^ 0x40;
    await fh.write(b, 0, 1, chunk.offset + 2);
    await fh.close();
    const damaged = await reopen(dir); // the index is intact: opening does not read chunks
    assert.throws(() => damaged.digestSeries(ALL.start, ALL.end), CorruptionError);
    assert.throws(() => damaged.digestWindows(ALL.start, ALL.end, WINDOW_NS), CorruptionError);
    await damaged.close();
  });
});
