// Batch archive: round trip across segments, idempotence and conflicts, group commit, limits, torn tails, damage
// found at open and at read, compression.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { InvariantError } from "../../src/core/assert.js";
import { BatchBuilder, encodeWithDigest, type EncodedBatch } from "../../src/core/batch.js";
import { ConflictError, CorruptionError, OverloadError, TooLargeError, UnavailableError } from "../../src/core/errors.js";
import { sha256, toHex } from "../../src/core/hash.js";
import {
  ARCHIVE_BATCH_ID_BYTES_MAX,
  ARCHIVE_RAW_BYTES_MAX,
  ARCHIVE_RECORD_HEADER_BYTES,
  BatchArchive,
  CODEC_DEFLATE_RAW,
  CODEC_STORED,
  archiveSegmentName,
  type ArchiveLogger,
} from "../../src/provenance/archive.js";

const LIMITS = { seriesPerBatchMax: 100_000, samplesPerBatchMax: 1_000_000 };

/** A real canonical batch; `seed` varies series, timestamps and values. */
function makeBatch(seed: number, samples = 20, constant = false): EncodedBatch {
  const b = new BatchBuilder(LIMITS);
  const series = 1 + (seed % 4);
  for (let s = 0; s < series; s++) {
    const key = b.series([
      ["__name__", "cpu_seconds"],
      ["host", `h${seed}-${s}`],
    ]);
    for (let i = 0; i < samples; i++) b.addSample(key, BigInt(1_700_000_000 + seed * 1000 + i * 15) * 1_000_000_000n, constant ? 42 : Math.sin(seed * 31 + s * 7 + i) * 1e6);
  }
  return encodeWithDigest(b.build());
}

/** Incompressible bytes with their digest (the archive stores any bytes). */
function randomBlob(n: number): EncodedBatch {
  const bytes = new Uint8Array(randomBytes(n));
  return { bytes, sha256: toHex(sha256(bytes)) };
}

interface Recorder extends ArchiveLogger {
  warnings: { obj: object; msg: string }[];
}
function recorder(): Recorder {
  const warnings: { obj: object; msg: string }[] = [];
  return { warnings, warn: (obj, msg) => warnings.push({ obj, msg }), info: () => undefined };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "hqts-archive-"));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => /^archive-[0-9]{8}\.hqa$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}

/** Offsets and lengths of the records in a segment file, by their length fields. */
function recordsOf(file: string): { offset: number; length: number }[] {
  const buf = readFileSync(file);
  const out: { offset: number; length: number }[] = [];
  for (let at = 0; at + ARCHIVE_RECORD_HEADER_BYTES <= buf.length; ) {
    const length = ARCHIVE_RECORD_HEADER_BYTES + buf.readUInt32LE(at + 8);
    out.push({ offset: at, length });
    at += length;
  }
  return out;
}

function flipByte(file: string, offset: number): void {
  const buf = readFileSync(file);
  buf[offset] = buf[offset]! ^ 0x5a;
  writeFileSync(file, buf);
}

describe("BatchArchive", () => {
  it("round-trips many batches across several segments and a reopen", async () => {
    await withDir(async (dir) => {
      const segmentBytesMax = 4096;
      const a = await BatchArchive.open(dir, { segmentBytesMax });
      const batches = Array.from({ length: 150 }, (_, i) => makeBatch(i, 5 + (i % 30)));
      for (let i = 0; i < batches.length; i++) {
        a.put(`b-${i}`, batches[i]!.sha256, batches[i]!.bytes);
        if (i % 10 === 9) await Promise.all([a.sync(), a.sync()]);
      }
      await a.sync();
      assert.equal(a.durable(), true);
      assert.equal(a.pendingBytes, 0);
      const before = a.stats();
      assert.equal(before.batches, 150);
      assert.ok(before.segments > 3, `expected several segments, got ${before.segments}`);
      assert.equal(before.rawBytes, batches.reduce((n, b) => n + b.bytes.length, 0));
      await a.close();

      const files = segmentFiles(dir);
      assert.equal(files.length, before.segments);
      assert.equal(files[0], join(dir, archiveSegmentName(1)));
      for (const f of files) {
        const size = statSync(f).size;
        // Only a single record larger than the limit may take a segment past it.
        assert.ok(size <= segmentBytesMax || recordsOf(f).length === 1, `${f} is ${size} bytes`);
      }
      assert.equal(files.reduce((n, f) => n + statSync(f).size, 0), before.bytesOnDisk);

      const log = recorder();
      const b = await BatchArchive.open(dir, { segmentBytesMax, log });
      assert.deepEqual(log.warnings, []);
      assert.deepEqual(b.stats(), before);
      assert.deepEqual(b.damaged(), []);
      assert.deepEqual(new Set(b.ids()), new Set(batches.map((_, i) => `b-${i}`)));
      for (let i = 0; i < batches.length; i++) {
        assert.equal(b.has(`b-${i}`), true);
        assert.deepEqual(await b.get(`b-${i}`), batches[i]!.bytes);
      }
      assert.equal(await b.get("unknown"), null);
      assert.equal(b.has("unknown"), false);
      // Appends continue in the last segment, then new ones.
      const extra = makeBatch(1000);
      b.put("extra", extra.sha256, extra.bytes);
      await b.close();
      const c = await BatchArchive.open(dir, { segmentBytesMax });
      assert.deepEqual(await c.get("extra"), extra.bytes);
      assert.equal(c.stats().batches, 151);
      await c.close();
    });
  });

  it("put is idempotent for the same id and digest, before and after sync and reopen", async () => {
    await withDir(async (dir) => {
      const x = makeBatch(7);
      const a = await BatchArchive.open(dir);
      a.put("x", x.sha256, x.bytes);
      const pending = a.pendingBytes;
      assert.ok(pending > 0);
      a.put("x", x.sha256, x.bytes);
      assert.equal(a.pendingBytes, pending);
      await a.sync();
      a.put("x", x.sha256, x.bytes);
      assert.equal(a.durable(), true);
      await a.close();
      const size = statSync(segmentFiles(dir)[0]!).size;
      const b = await BatchArchive.open(dir);
      b.put("x", x.sha256, x.bytes);
      assert.equal(b.durable(), true);
      await b.close();
      assert.equal(statSync(segmentFiles(dir)[0]!).size, size);
      assert.equal(recordsOf(segmentFiles(dir)[0]!).length, 1);
    });
  });

  it("a second digest for a held id is a ConflictError, pending or synced", async () => {
    await withDir(async (dir) => {
      const x = makeBatch(1);
      const y = makeBatch(2);
      const a = await BatchArchive.open(dir);
      a.put("id", x.sha256, x.bytes);
      assert.throws(
        () => a.put("id", y.sha256, y.bytes),
        (e: unknown) => e instanceof ConflictError && e.code === "conflict" && e.details.storedSha256 === x.sha256 && e.details.offeredSha256 === y.sha256,
      );
      await a.close();
      const b = await BatchArchive.open(dir);
      assert.throws(() => b.put("id", y.sha256, y.bytes), ConflictError);
      assert.deepEqual(await b.get("id"), x.bytes);
      await b.close();
    });
  });

  it("refuses bad arguments: oversized id and bytes (TooLargeError), a wrong digest (assert)", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const x = makeBatch(3);
      assert.throws(() => a.put("é".repeat(ARCHIVE_BATCH_ID_BYTES_MAX), x.sha256, x.bytes), (e: unknown) => e instanceof TooLargeError && e.message.includes(String(ARCHIVE_BATCH_ID_BYTES_MAX)));
      a.put("i".repeat(ARCHIVE_BATCH_ID_BYTES_MAX), x.sha256, x.bytes); // exactly at the limit
      const huge = new Uint8Array(ARCHIVE_RAW_BYTES_MAX + 1);
      assert.throws(() => a.put("huge", "0".repeat(64), huge), (e: unknown) => e instanceof TooLargeError && e.message.includes(String(ARCHIVE_RAW_BYTES_MAX)));
      assert.throws(() => a.put("wrong", makeBatch(4).sha256, x.bytes), InvariantError);
      assert.equal(a.has("wrong"), false);
      await a.close();
      const b = await BatchArchive.open(dir);
      assert.deepEqual(await b.get("i".repeat(ARCHIVE_BATCH_ID_BYTES_MAX)), x.bytes);
      await b.close();
      assert.throws(() => b.put("late", x.sha256, x.bytes), UnavailableError);
    });
  });

  it("serves a pending batch from memory before sync", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const x = makeBatch(5, 200, true);
      a.put("p", x.sha256, x.bytes);
      assert.equal(a.durable(), false);
      assert.equal(a.has("p"), true);
      assert.deepEqual(await a.get("p"), x.bytes);
      assert.equal(a.stats().bytesOnDisk, 0);
      await a.sync();
      assert.equal(a.durable(), true);
      assert.deepEqual(await a.get("p"), x.bytes);
      await a.close();
    });
  });

  it("group commit: concurrent syncs share a write; a put during a sync goes to the next one", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const batches = Array.from({ length: 6 }, (_, i) => makeBatch(i));
      a.put("g0", batches[0]!.sha256, batches[0]!.bytes);
      const s1 = a.sync();
      const s1b = a.sync();
      assert.equal(s1b, s1, "a sync with nothing new waits for the running one");
      a.put("g1", batches[1]!.sha256, batches[1]!.bytes);
      const s2 = a.sync();
      a.put("g2", batches[2]!.sha256, batches[2]!.bytes);
      const s2b = a.sync();
      assert.notEqual(s2, s1);
      assert.equal(s2b, s2, "puts made while a sync runs share the next one");
      await s1;
      await Promise.all([s2, s2b]);
      assert.equal(a.durable(), true);
      await a.close();
      const recs = recordsOf(segmentFiles(dir)[0]!);
      assert.equal(recs.length, 3);
    });
  });

  it("put refuses with OverloadError beyond pendingBytesMax, and accepts again after sync", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir, { pendingBytesMax: 4000 });
      const big = randomBlob(10_000);
      a.put("big", big.sha256, big.bytes); // an empty buffer always takes one
      const s = randomBlob(100);
      assert.throws(
        () => a.put("s", s.sha256, s.bytes),
        (e: unknown) => e instanceof OverloadError && e.code === "overloaded" && e.retryable,
      );
      assert.equal(a.has("s"), false);
      await a.sync();
      let n = 0;
      let refused: unknown = null;
      for (; n < 100; n++) {
        const b = randomBlob(1000);
        try {
          a.put(`r${n}`, b.sha256, b.bytes);
        } catch (e) {
          refused = e;
          break;
        }
      }
      assert.ok(refused instanceof OverloadError, "the limit is reached");
      assert.ok(n >= 3 && n <= 4, `about 4000 bytes of records admitted: ${n}`);
      assert.ok(a.pendingBytes <= 4000);
      await a.sync();
      a.put("s", s.sha256, s.bytes);
      await a.close();
    });
  });

  it("compresses compressible batches and stores incompressible bytes as they are", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const constant = makeBatch(9, 1000, true);
      const noise = randomBlob(5000);
      a.put("constant", constant.sha256, constant.bytes);
      a.put("noise", noise.sha256, noise.bytes);
      await a.close();
      const file = segmentFiles(dir)[0]!;
      const buf = readFileSync(file);
      const [r0, r1] = recordsOf(file);
      // codec sits after the id (1-byte length + bytes), the digest and rawLength.
      const codecAt = (offset: number, id: string): number => buf[offset + ARCHIVE_RECORD_HEADER_BYTES + 1 + id.length + 32 + 4]!;
      assert.equal(codecAt(r0!.offset, "constant"), CODEC_DEFLATE_RAW);
      assert.equal(codecAt(r1!.offset, "noise"), CODEC_STORED);
      assert.ok(r0!.length * 5 < constant.bytes.length, `record of ${r0!.length} bytes for ${constant.bytes.length} raw`);
      assert.equal(r1!.length, ARCHIVE_RECORD_HEADER_BYTES + 1 + 5 + 32 + 4 + 1 + noise.bytes.length);
      const b = await BatchArchive.open(dir);
      assert.deepEqual(await b.get("constant"), constant.bytes);
      assert.deepEqual(await b.get("noise"), noise.bytes);
      assert.ok(b.stats().bytesOnDisk < b.stats().rawBytes);
      await b.close();
    });
  });

  it("cuts a torn tail of the last segment; earlier records stay, later puts work", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir, { segmentBytesMax: 2048 });
      const batches = Array.from({ length: 30 }, (_, i) => makeBatch(i));
      for (let i = 0; i < batches.length; i++) a.put(`t${i}`, batches[i]!.sha256, batches[i]!.bytes);
      await a.close();
      const files = segmentFiles(dir);
      assert.ok(files.length > 1);
      const last = files[files.length - 1]!;
      const recs = recordsOf(last);
      const torn = recs[recs.length - 1]!;
      truncateSync(last, torn.offset + Math.floor(torn.length / 2));
      const tornId = `t${batches.length - 1}`;

      const log = recorder();
      const b = await BatchArchive.open(dir, { segmentBytesMax: 2048, log });
      assert.equal(statSync(last).size, torn.offset, "the torn record is cut off");
      assert.equal(log.warnings.length, 1);
      assert.match(log.warnings[0]!.msg, /torn tail/);
      assert.deepEqual(b.damaged(), [], "a partial record was never acknowledged");
      assert.equal(b.has(tornId), false);
      for (let i = 0; i < batches.length - 1; i++) assert.deepEqual(await b.get(`t${i}`), batches[i]!.bytes);
      b.put(tornId, batches[batches.length - 1]!.sha256, batches[batches.length - 1]!.bytes);
      const more = makeBatch(99);
      b.put("more", more.sha256, more.bytes);
      await b.close();

      const c = await BatchArchive.open(dir, { segmentBytesMax: 2048, log });
      assert.equal(log.warnings.length, 1, "nothing new to warn about");
      assert.deepEqual(await c.get(tornId), batches[batches.length - 1]!.bytes);
      assert.deepEqual(await c.get("more"), more.bytes);
      assert.equal(c.stats().batches, 31);
      await c.close();
    });
  });

  it("a complete last record failing its CRC is cut, and its id listed for refetching", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const batches = Array.from({ length: 3 }, (_, i) => makeBatch(i));
      for (let i = 0; i < 3; i++) a.put(`c${i}`, batches[i]!.sha256, batches[i]!.bytes);
      await a.close();
      const file = segmentFiles(dir)[0]!;
      const recs = recordsOf(file);
      flipByte(file, recs[2]!.offset + recs[2]!.length - 1);
      const b = await BatchArchive.open(dir, { log: recorder() });
      assert.equal(statSync(file).size, recs[2]!.offset);
      assert.deepEqual(b.damaged(), [{ batchId: "c2", file, offset: recs[2]!.offset, reason: "torn_tail" }]);
      b.put("c2", batches[2]!.sha256, batches[2]!.bytes);
      assert.deepEqual(b.damaged(), []);
      await b.close();
    });
  });

  it("skips a damaged record in the middle, lists it in damaged(), and a new put repairs it", async () => {
    await withDir(async (dir) => {
      const segmentBytesMax = 3000;
      const a = await BatchArchive.open(dir, { segmentBytesMax });
      const batches = Array.from({ length: 42 }, (_, i) => makeBatch(i)); // 42: the last segment holds 4 records
      for (let i = 0; i < batches.length; i++) a.put(`m${i}`, batches[i]!.sha256, batches[i]!.bytes);
      await a.close();
      const files = segmentFiles(dir);
      assert.ok(files.length >= 3);
      // One damaged record in the middle of the first segment and one in the middle of the last segment.
      const idsByFile: string[][] = [];
      let k = 0;
      for (const f of files) idsByFile.push(recordsOf(f).map(() => `m${k++}`));
      const targets = [0, files.length - 1].map((fi) => {
        const recs = recordsOf(files[fi]!);
        assert.ok(recs.length >= 3);
        const r = recs[1]!;
        flipByte(files[fi]!, r.offset + r.length - 3);
        return { file: files[fi]!, offset: r.offset, id: idsByFile[fi]![1]! };
      });
      const sizes = files.map((f) => statSync(f).size);

      const log = recorder();
      const b = await BatchArchive.open(dir, { segmentBytesMax, log });
      assert.deepEqual(
        files.map((f) => statSync(f).size),
        sizes,
        "damage is never cut off",
      );
      assert.deepEqual(
        b.damaged(),
        targets.map((t) => ({ batchId: t.id, file: t.file, offset: t.offset, reason: "crc_mismatch" })),
      );
      assert.equal(log.warnings.length, 2);
      for (const t of targets) {
        assert.equal(b.has(t.id), false);
        assert.equal(await b.get(t.id), null);
      }
      const damagedIds = new Set(targets.map((t) => t.id));
      for (let i = 0; i < batches.length; i++) if (!damagedIds.has(`m${i}`)) assert.deepEqual(await b.get(`m${i}`), batches[i]!.bytes);
      assert.equal(b.stats().batches, batches.length - 2);

      // The caller refetches the batch from a replica and puts it anew.
      const first = targets[0]!;
      const n = Number(first.id.slice(1));
      b.put(first.id, batches[n]!.sha256, batches[n]!.bytes);
      assert.deepEqual(
        b.damaged().map((d) => d.batchId),
        [targets[1]!.id],
      );
      await b.close();

      const c = await BatchArchive.open(dir, { segmentBytesMax, log: recorder() });
      assert.deepEqual(await c.get(first.id), batches[n]!.bytes, "the later valid record wins");
      assert.deepEqual(
        c.damaged().map((d) => d.batchId),
        [targets[1]!.id],
        "the damaged record is still on disk, but only the unrepaired batch is listed",
      );
      await c.close();
    });
  });

  it("never throws at open over garbage: a segment of random bytes and stray bytes between records", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const x = makeBatch(1);
      const y = makeBatch(2);
      a.put("x", x.sha256, x.bytes);
      a.put("y", y.sha256, y.bytes);
      await a.close();
      const seg1 = segmentFiles(dir)[0]!;
      const recs = recordsOf(seg1);
      const buf = readFileSync(seg1);
      // Garbage between the two records, then the segment becomes the older one of two.
      writeFileSync(seg1, Buffer.concat([buf.subarray(0, recs[1]!.offset), randomBytes(37), buf.subarray(recs[1]!.offset)]));
      writeFileSync(join(dir, archiveSegmentName(2)), randomBytes(5000));
      const log = recorder();
      const b = await BatchArchive.open(dir, { log });
      assert.deepEqual(await b.get("x"), x.bytes);
      assert.deepEqual(await b.get("y"), y.bytes);
      const d = b.damaged();
      assert.equal(d.length, 1, "the stray bytes name no batch; the random last segment is a tail");
      assert.equal(d[0]!.batchId, null);
      assert.equal(d[0]!.offset, recs[1]!.offset);
      assert.equal(statSync(join(dir, archiveSegmentName(2))).size, 0);
      const z = makeBatch(3);
      b.put("z", z.sha256, z.bytes);
      await b.close();
      const c = await BatchArchive.open(dir);
      assert.deepEqual(await c.get("z"), z.bytes);
      await c.close();
    });
  });

  it("a byte flipped after open makes get throw CorruptionError; damaged() lists it; put repairs", async () => {
    await withDir(async (dir) => {
      const a = await BatchArchive.open(dir);
      const batches = Array.from({ length: 5 }, (_, i) => makeBatch(i, 100, i % 2 === 0));
      for (let i = 0; i < 5; i++) a.put(`f${i}`, batches[i]!.sha256, batches[i]!.bytes);
      await a.sync();
      const file = segmentFiles(dir)[0]!;
      const recs = recordsOf(file);
      for (const i of [1, 2]) flipByte(file, recs[i]!.offset + recs[i]!.length - 10);
      for (const i of [1, 2]) {
        await assert.rejects(
          a.get(`f${i}`),
          (e: unknown) => e instanceof CorruptionError && e.code === "corruption" && e.file === file && e.offset === recs[i]!.offset,
        );
        assert.equal(a.has(`f${i}`), false);
        assert.equal(await a.get(`f${i}`), null);
      }
      assert.deepEqual(
        a.damaged().map((d) => [d.batchId, d.offset]),
        [
          ["f1", recs[1]!.offset],
          ["f2", recs[2]!.offset],
        ],
      );
      for (const i of [0, 3, 4]) assert.deepEqual(await a.get(`f${i}`), batches[i]!.bytes);
      a.put("f1", batches[1]!.sha256, batches[1]!.bytes);
      await a.sync();
      assert.deepEqual(await a.get("f1"), batches[1]!.bytes);
      assert.deepEqual(
        a.damaged().map((d) => d.batchId),
        ["f2"],
      );
      await a.close();
    });
  });
});
