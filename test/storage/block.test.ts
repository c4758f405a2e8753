import assert from "node:assert/strict";
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CorruptionError } from "../../src/core/errors.js";
import { merkleRoot, sha256, toHex } from "../../src/core/hash.js";
import { seriesKey, type Labels } from "../../src/core/labels.js";
import { encodeBlock, FOOTER_SIZE, HEADER_SIZE, type BlockBatchEntry, type BlockInput, type BlockSeriesInput } from "../../src/storage/block-format.js";
import { BlockReader, blockFileName, verifyBlockFile, writeBlock } from "../../src/storage/block-io.js";
import type { ChunkData } from "../../src/storage/chunk-codec.js";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "hqts-block-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function batch(i: number, inference: string | null = null): BlockBatchEntry {
  return {
    batchId: `batch-${i}`,
    sha256: toHex(sha256(new TextEncoder().encode(`b${i}`))),
    origin: inference === null ? "original" : "inferred",
    shardId: i % 4,
    hlc: String(1_000_000 + i),
    sampleCount: 10 + i,
    inference,
  };
}

/** Deterministic pseudo-random numbers. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function makeInput(seriesCount: number, samples: number, seed = 1, nBatches = 3): BlockInput {
  const r = rng(seed);
  const scrape = BigInt64Array.from({ length: samples }, (_, i) => 1_795_555_989_281_000_000n + BigInt(i) * 1_000_000_000n + BigInt(Math.floor(r() * 7)) * 1_000_000n);
  const series: BlockSeriesInput[] = [];
  for (let s = 0; s < seriesCount; s++) {
    const labels: Labels = [
      ["__name__", `metric_${s % 5}`],
      ["instance", `host-${Math.floor(s / 5)}:9100`],
      ["job", "node"],
    ];
    const own = s % 7 === 3; // some series have their own timestamps
    const n = own ? Math.max(1, samples - 3) : samples;
    const ts = own ? BigInt64Array.from({ length: n }, (_, i) => -5_000_000_000n + BigInt(i) * 333n) : scrape.slice();
    let m = Math.floor(r() * 1e6);
    const values = Float64Array.from({ length: n }, (_, i) => (s % 4 === 0 ? 7 : s % 4 === 1 ? (m += Math.floor(r() * 100)) : s % 4 === 2 ? (m += Math.floor(r() * 200) - 100) / 100 : Math.sin(i + s)));
    if (s % 6 === 5) new BigUint64Array(values.buffer)[0] = 0x7ff0000000000002n;
    const data: ChunkData = {
      timestampsNs: ts,
      values,
      origins: Uint8Array.from({ length: n }, (_, i) => (s % 3 === 0 && i % 10 === 0 ? 1 : 0)),
      batchRefs: Uint32Array.from({ length: n }, (_, i) => (s % 2 === 0 ? i % nBatches : (s % nBatches))),
    };
    series.push({ labels, data });
  }
  series.sort((a, b) => (seriesKey(a.labels) < seriesKey(b.labels) ? -1 : 1));
  const batches = Array.from({ length: nBatches }, (_, i) => batch(i, i === 1 ? '{"method":"linear"}' : null));
  return { series, batches };
}

function sameBits(a: Float64Array, b: Float64Array): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function readAll(reader: BlockReader): Promise<Map<string, ChunkData>> {
  const out = new Map<string, ChunkData>();
  for (const s of reader.series()) {
    out.set(s.key, reader.readSeriesData(s));
  }
  return out;
}

describe("block: round trip", () => {
  it("many series, split into chunks, shared timestamps: everything read back exactly", async () => {
    const input = makeInput(60, 1000, 7, 5);
    const meta = await writeBlock(dir, input, { chunkSamplesMax: 300 });
    assert.match(meta.path, /\/b-[0-9a-f]{16}-[0-9a-f]{12}\.hqb$/);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith(".tmp")),
      [],
    );
    const reader = await BlockReader.open(meta.path);
    try {
      assert.deepEqual(reader.meta, meta);
      assert.equal(meta.seriesCount, 60);
      assert.equal(meta.batchCount, 5);
      assert.equal(meta.sampleCount, input.series.reduce((k, s) => k + s.data.timestampsNs.length, 0));
      assert.equal(meta.sizeBytes, readFileSync(meta.path).length);
      assert.ok(reader.timestampColumns().length >= 4, "chunks of series scraped together share timestamp columns");
      let minT = input.series[0]!.data.timestampsNs[0]!;
      let maxT = minT;
      for (const s of input.series) {
        const t = s.data.timestampsNs;
        if (t[0]! < minT) minT = t[0]!;
        if (t[t.length - 1]! > maxT) maxT = t[t.length - 1]!;
      }
      assert.equal(meta.minTimeNs, minT);
      assert.equal(meta.maxTimeNs, maxT);
      assert.deepEqual(reader.batches(), input.batches);
      const got = await readAll(reader);
      assert.equal(got.size, input.series.length);
      for (const s of input.series) {
        const key = seriesKey(s.labels);
        const d = got.get(key)!;
        assert.deepEqual(Array.from(d.timestampsNs), Array.from(s.data.timestampsNs), key);
        assert.ok(sameBits(d.values, s.data.values), key);
        assert.deepEqual(d.origins, s.data.origins);
        assert.deepEqual(d.batchRefs, s.data.batchRefs);
      }
      for (const s of reader.series()) {
        assert.ok(s.chunks.length >= 3 && s.chunks.every((c) => c.count <= 300));
        assert.deepEqual(s.labels, input.series.find((x) => seriesKey(x.labels) === s.key)!.labels);
      }
      // Merkle root recomputed from the bytes on disk equals the footer's.
      const file = readFileSync(meta.path);
      const digests = [
        ...reader.timestampColumns().map((t) => sha256(file.subarray(t.offset, t.offset + t.length))),
        ...reader.series().flatMap((s) => s.chunks.map((c) => sha256(file.subarray(c.offset, c.offset + c.length)))),
      ];
      assert.equal(toHex(merkleRoot(digests)), meta.merkleRootHex);
      assert.deepEqual(reader.verify(), { ok: true, findings: [] });
      // A returned column is the caller's: mutating it does not change the next read.
      const c0 = reader.series()[0]!.chunks[0]!;
      const first = reader.readChunk(c0);
      first.timestampsNs[0] = 0n;
      assert.notEqual(reader.readChunk(c0).timestampsNs[0], 0n);
    } finally {
      await reader.close();
    }
  });

  it("encoding is deterministic; sharing timestamps makes the block smaller", () => {
    const input = makeInput(40, 500, 3);
    const a = encodeBlock(input);
    assert.deepEqual(a, encodeBlock(input));
    assert.ok(encodeBlock(input, { shareTimestamps: false }).length > a.length);
  });

  it("a block with batches and no series; a single-sample series", async () => {
    const empty = await writeBlock(dir, { series: [], batches: [batch(0)] });
    const r = await BlockReader.open(empty.path);
    assert.equal(r.meta.seriesCount, 0);
    assert.equal(r.batches().length, 1);
    assert.ok(r.verify().ok);
    await r.close();
    const one = await writeBlock(dir, {
      series: [{ labels: [["__name__", "x"]], data: { timestampsNs: BigInt64Array.from([-(1n << 63n)]), values: Float64Array.from([-0]), origins: Uint8Array.from([1]), batchRefs: Uint32Array.from([0]) } }],
      batches: [batch(0)],
    });
    const r1 = await BlockReader.open(one.path);
    const d = r1.readChunk(r1.series()[0]!.chunks[0]!);
    assert.ok(Object.is(d.values[0], -0));
    assert.equal(d.timestampsNs[0], -(1n << 63n));
    await r1.close();
  });

  it("refuses an input that breaks the contract (unsorted series, batch ref out of range)", () => {
    const input = makeInput(4, 10);
    assert.throws(() => encodeBlock({ ...input, series: [...input.series].reverse() }), /invariant/);
    assert.throws(() => encodeBlock({ ...input, batches: [] }), /invariant/);
  });

  it("file names sort by minimum time, negative times included", () => {
    const names = [-(1n << 62n), -5_000_000n, -1n, 0n, 1_000_000n, 1n << 62n].map((t) => blockFileName(t));
    assert.deepEqual([...names].sort(), names);
  });
});

describe("block: corruption is always detected, at the right offset", () => {
  interface Region {
    start: number;
    end: number;
    kind: "header" | "object" | "index" | "footer";
  }

  it("flipping any byte of a block file is caught by open, readChunk or verify, naming the damaged region", async () => {
    const input = makeInput(12, 40, 11, 2);
    const meta = await writeBlock(dir, input, { chunkSamplesMax: 25 });
    const clean = readFileSync(meta.path);
    const reader = await BlockReader.open(meta.path);
    const size = clean.length;
    const footerAt = size - FOOTER_SIZE;
    const objects = [...reader.timestampColumns(), ...reader.series().flatMap((s) => s.chunks)];
    const indexOffset = Math.max(...objects.map((o) => o.offset + o.length));
    await reader.close();
    const regions: Region[] = [
      { start: 0, end: HEADER_SIZE, kind: "header" },
      ...objects.map((o) => ({ start: o.offset, end: o.offset + o.length, kind: "object" as const })),
      { start: indexOffset, end: footerAt, kind: "index" },
      { start: footerAt, end: size, kind: "footer" },
    ];
    const regionOf = (p: number): Region => regions.find((r) => p >= r.start && p < r.end)!;
    // the regions tile the file
    assert.equal(regions.reduce((k, r) => k + (r.end - r.start), 0), size);

    const path = join(dir, "flip.hqb");
    writeFileSync(path, clean);
    const fd = openSync(path, "r+");
    let detected = 0;
    try {
      for (let p = 0; p < size; p++) {
        const region = regionOf(p);
        writeSync(fd, Uint8Array.of(clean[p]! ^ (1 << (p % 8))), 0, 1, p);
        let r: BlockReader | null = null;
        try {
          r = await BlockReader.open(path);
        } catch (e) {
          assert.ok(e instanceof CorruptionError, `byte ${p}: open threw ${String(e)}`);
          assert.notEqual(region.kind, "object", `byte ${p} in a data object made open fail`);
          assert.equal(e.offset, region.start, `byte ${p} (${region.kind}): open reported offset ${e.offset}`);
          assert.equal(e.file, path);
        }
        if (r !== null) {
          assert.equal(region.kind, "object", `byte ${p} (${region.kind}) flipped but open succeeded`);
          const v = r.verify();
          assert.equal(v.ok, false, `byte ${p}: verify found nothing`);
          assert.ok(
            v.findings.some((f) => f.offset === region.start && p < f.offset + f.length),
            `byte ${p}: findings ${JSON.stringify(v.findings)} miss region ${region.start}`,
          );
          // readChunk of every chunk that depends on the damaged object fails, naming it
          let hits = 0;
          for (const s of r.series())
            for (const c of s.chunks) {
              const ts = c.tsColumn >= 0 ? r.timestampColumns()[c.tsColumn]! : null;
              const depends = c.offset === region.start || ts?.offset === region.start;
              if (!depends) {
                r.readChunk(c);
                continue;
              }
              hits++;
              assert.throws(
                () => r!.readChunk(c),
                (e: unknown) => e instanceof CorruptionError && e.offset === region.start && e.file === path,
                `byte ${p}: readChunk`,
              );
            }
          assert.ok(hits >= 1);
          await r.close();
        }
        const scrub = await verifyBlockFile(path);
        assert.ok(!scrub.ok && scrub.findings.some((f) => f.offset <= p && p < f.offset + f.length), `byte ${p}: verifyBlockFile`);
        detected++;
        writeSync(fd, clean, p, 1, p);
      }
    } finally {
      closeSync(fd);
    }
    assert.equal(detected, size);
    const ok = await BlockReader.open(path);
    assert.ok(ok.verify().ok);
    await ok.close();
  });

  it("truncated and extended files fail to open with a CorruptionError", async () => {
    const meta = await writeBlock(dir, makeInput(5, 30));
    const clean = readFileSync(meta.path);
    const path = join(dir, "trunc.hqb");
    for (const len of [0, 1, HEADER_SIZE, 100, clean.length - FOOTER_SIZE, clean.length - 1]) {
      writeFileSync(path, clean.subarray(0, len));
      await assert.rejects(BlockReader.open(path), CorruptionError, `length ${len}`);
    }
    writeFileSync(path, Buffer.concat([clean, Buffer.from([0])]));
    await assert.rejects(BlockReader.open(path), CorruptionError);
    writeFileSync(path, Buffer.concat([Buffer.from([0]), clean]));
    await assert.rejects(BlockReader.open(path), CorruptionError);
  });
});
