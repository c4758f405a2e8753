// Damage classification on open: torn tails are truncated, corruption fails or is quarantined.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Wal, type WalPosition } from "../../src/wal/wal.js";
import { FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../../src/wal/record.js";
import { CorruptionError } from "../../src/core/errors.js";
import { flipByte, idOf, payloadFor, samePayload, withTempDir } from "./util.js";

const SEG1 = "00000001.seg";

async function writeRecords(dir: string, n: number, size = 200, opts = {}): Promise<WalPosition[]> {
  const { wal } = await Wal.open(dir, opts);
  const out: WalPosition[] = [];
  for (let i = 0; i < n; i++) out.push(await wal.append(1, payloadFor(i, size)));
  await wal.close();
  return out;
}

async function ids(dir: string, opts = {}): Promise<number[]> {
  const r = await Wal.open(dir, opts);
  const out = (await r.readAll()).map((x) => idOf(x.payload));
  await r.wal.close();
  return out;
}

test("torn tail: a partial final frame is reported with file and offset, truncated, and appends continue", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 10);
    const file = path.join(dir, SEG1);
    const last = pos[9]!;
    await fs.truncate(file, last.offset + 40); // mid-record
    const r = await Wal.open(dir);
    assert.equal(r.findings.length, 1);
    const f = r.findings[0]!;
    assert.equal(f.kind, "torn_tail");
    assert.equal(f.file, file);
    assert.equal(f.offset, last.offset);
    assert.equal(f.length, 40);
    assert.equal(f.action, "truncated");
    assert.ok(f.quarantineFile !== null && (await fs.stat(f.quarantineFile)).size === 40, "torn bytes kept for forensics");
    assert.equal((await fs.stat(file)).size, last.offset);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const p = await r.wal.append(1, payloadFor(100, 200));
    assert.equal(p.offset, last.offset);
    await r.wal.close();
    const again = await Wal.open(dir);
    assert.equal(again.findings.length, 0, "after truncation the WAL is clean");
    assert.deepEqual((await again.readAll()).map((x) => idOf(x.payload)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 100]);
    await again.wal.close();
  });
});

test("torn tail: a partial frame header (a few bytes) is torn too", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 3);
    await fs.truncate(path.join(dir, SEG1), pos[2]!.offset + 6);
    const r = await Wal.open(dir);
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset, f.length]), [["torn_tail", pos[2]!.offset, 6]]);
    await r.wal.close();
  });
});

test("zero-filled tail (preallocated garbage) is a torn tail", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 5);
    const file = path.join(dir, SEG1);
    const end = pos[4]!.offset + pos[4]!.length;
    await fs.appendFile(file, new Uint8Array(8192));
    const r = await Wal.open(dir);
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset, f.length]), [["torn_tail", end, 8192]]);
    assert.match(r.findings[0]!.detail, /zero fill/);
    assert.equal(r.findings[0]!.quarantineFile, null, "zeros are not worth keeping");
    assert.equal((await fs.stat(file)).size, end);
    assert.equal(r.recordCount, 5);
    await r.wal.close();
  });
});

for (const where of ["payload", "length field"] as const) {
  test(`flipped byte mid-segment in a record's ${where}: default open fails naming file and offset; quarantine replays the rest`, async () => {
    await withTempDir(async (dir) => {
      const pos = await writeRecords(dir, 20);
      const file = path.join(dir, SEG1);
      const victim = pos[7]!;
      await flipByte(file, where === "payload" ? victim.offset + FRAME_HEADER_BYTES + 50 : victim.offset + 5, where === "payload" ? 0x01 : 0x40);
      const before = await fs.readFile(file);

      await assert.rejects(Wal.open(dir), (e: unknown) => {
        assert.ok(e instanceof CorruptionError);
        assert.equal(e.code, "corruption");
        assert.equal(e.file, file);
        assert.equal(e.offset, victim.offset);
        assert.ok(e.message.includes(file) && e.message.includes(`byte ${victim.offset}`));
        const findings = e.details["findings"] as { offset: number }[];
        assert.equal(findings.length, 1);
        return true;
      });
      assert.ok(samePayload(await fs.readFile(file), before), "a failed open modifies nothing");
      assert.deepEqual(await fs.readdir(dir), [SEG1]);

      const r = await Wal.open(dir, { onCorruption: "quarantine" });
      const want = [...Array(20).keys()].filter((i) => i !== 7);
      const got = await r.readAll();
      assert.deepEqual(got.map((x) => idOf(x.payload)), want, "every record before and after the damage, not the damaged one");
      for (const x of got) assert.ok(samePayload(x.payload, payloadFor(idOf(x.payload), 200)));
      assert.equal(r.findings.length, 1);
      const f = r.findings[0]!;
      assert.equal(f.kind, where === "payload" ? "crc_mismatch" : "bad_length"); // length grew past the end of the file
      assert.equal(f.file, file);
      assert.equal(f.offset, victim.offset);
      assert.equal(f.length, victim.length);
      assert.equal(f.action, "quarantined");
      assert.equal(f.quarantineFile, path.join(dir, "quarantine", `00000001-${victim.offset}.bad`));
      const q = await fs.readFile(f.quarantineFile);
      assert.ok(samePayload(q, before.subarray(victim.offset, victim.offset + victim.length)));
      // New appends never land in the damaged segment; the damaged one is left byte-identical.
      const p = await r.wal.append(1, payloadFor(500, 10));
      assert.equal(p.segment, 2);
      await r.wal.close();
      assert.ok(samePayload(await fs.readFile(file), before));

      // Damage is reported again on the next open (it is repaired from replicas, never truncated).
      await assert.rejects(Wal.open(dir), CorruptionError);
      const again = await Wal.open(dir, { onCorruption: "quarantine" });
      assert.equal(again.findings.length, 1);
      assert.deepEqual((await again.readAll()).map((x) => idOf(x.payload)), [...want, 500]);
      await again.wal.close();
    });
  });
}

test("length field changed by one (frame still inside the file) is a CRC mismatch covering the whole record", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 6);
    await flipByte(path.join(dir, SEG1), pos[2]!.offset + 4, 0x01);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset, f.length]), [["crc_mismatch", pos[2]!.offset, pos[2]!.length]]);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [0, 1, 3, 4, 5]);
    await r.wal.close();
  });
});

test("length field flipped to a huge value mid-segment is corruption (bad_length), not a torn tail", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 6);
    const file = path.join(dir, SEG1);
    await flipByte(file, pos[2]!.offset + 7, 0x80); // top byte of the length: frame runs past the end of the file
    await assert.rejects(Wal.open(dir), (e: unknown) => e instanceof CorruptionError && e.offset === pos[2]!.offset);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset, f.length]), [["bad_length", pos[2]!.offset, pos[2]!.length]]);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [0, 1, 3, 4, 5]);
    await r.wal.close();
  });
});

test("garbage overwriting two records, followed by valid frames: one damaged range, resync after it", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 10);
    const file = path.join(dir, SEG1);
    const h = await fs.open(file, "r+");
    await h.write(new Uint8Array(pos[3]!.length + 30).fill(0xab), 0, undefined, pos[3]!.offset);
    await h.close();
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset, f.length]), [["garbage", pos[3]!.offset, pos[5]!.offset - pos[3]!.offset]]);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [0, 1, 2, 5, 6, 7, 8, 9]);
    await r.wal.close();
  });
});

test("a damaged tail of a non-last segment is corruption, never truncated", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    const a = await wal.append(1, payloadFor(1, 300));
    const b = await wal.append(1, payloadFor(2, 300));
    await wal.rotate();
    await wal.append(1, payloadFor(3, 300));
    await wal.close();
    const file = path.join(dir, SEG1);
    await fs.truncate(file, b.offset + 100);
    await assert.rejects(Wal.open(dir), (e: unknown) => e instanceof CorruptionError && e.file === file && e.offset === b.offset);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.equal(r.findings.length, 1);
    assert.equal(r.findings[0]!.kind, "bad_length");
    assert.equal((await fs.stat(file)).size, b.offset + 100, "not truncated");
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [1, 3]);
    assert.equal(a.segment, 1);
    await r.wal.close();
  });
});

test("a bit flip in the final frame of the last segment is indistinguishable from a torn write: torn tail, bytes kept", async () => {
  await withTempDir(async (dir) => {
    const pos = await writeRecords(dir, 4);
    const file = path.join(dir, SEG1);
    await flipByte(file, pos[3]!.offset + 20, 0x04);
    const r = await Wal.open(dir);
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset]), [["torn_tail", pos[3]!.offset]]);
    assert.match(r.findings[0]!.detail, /crc_mismatch/);
    assert.ok(r.findings[0]!.quarantineFile !== null);
    await r.wal.close();
  });
});

test("corrupted segment header: corruption; with quarantine the records still replay", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    for (let i = 0; i < 3; i++) await wal.append(1, payloadFor(i, 50));
    await wal.rotate();
    await wal.append(1, payloadFor(3, 50));
    await wal.close();
    const file = path.join(dir, SEG1);
    await flipByte(file, 9, 0x01); // segment number byte
    await assert.rejects(Wal.open(dir), (e: unknown) => e instanceof CorruptionError && e.file === file && e.offset === 0);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.deepEqual(r.findings.map((f) => [f.kind, f.offset, f.length]), [["bad_header", 0, SEGMENT_HEADER_BYTES]]);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [0, 1, 2, 3]);
    await r.wal.close();
  });
});

test("corrupted header of the last segment with records after it: corruption, appends go to a fresh segment", async () => {
  await withTempDir(async (dir) => {
    await writeRecords(dir, 3, 50);
    await flipByte(path.join(dir, SEG1), 0, 0x20);
    await assert.rejects(Wal.open(dir), CorruptionError);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.equal(r.findings[0]!.kind, "bad_header");
    assert.equal(r.recordCount, 3);
    assert.equal((await r.wal.append(1, payloadFor(9, 5))).segment, 2);
    await r.wal.close();
  });
});

test("an empty last segment file (crash while creating it) is a torn tail: header rewritten", async () => {
  await withTempDir(async (dir) => {
    await writeRecords(dir, 3, 50);
    await fs.writeFile(path.join(dir, "00000002.seg"), new Uint8Array(0));
    const r = await Wal.open(dir);
    assert.deepEqual(r.findings.map((f) => [f.kind, f.segment, f.offset, f.length]), [["torn_tail", 2, 0, 0]]);
    assert.equal((await fs.stat(path.join(dir, "00000002.seg"))).size, SEGMENT_HEADER_BYTES);
    const p = await r.wal.append(1, payloadFor(3, 50));
    assert.deepEqual([p.segment, p.offset], [2, SEGMENT_HEADER_BYTES]);
    await r.wal.close();
    assert.deepEqual(await ids(dir), [0, 1, 2, 3]);
  });
});

test("a half-written header of the last segment is a torn tail", async () => {
  await withTempDir(async (dir) => {
    await writeRecords(dir, 2, 50);
    const full = await fs.readFile(path.join(dir, SEG1));
    await fs.writeFile(path.join(dir, "00000002.seg"), full.subarray(0, 7));
    const r = await Wal.open(dir);
    assert.deepEqual(r.findings.map((f) => [f.kind, f.segment, f.offset, f.length]), [["torn_tail", 2, 0, 7]]);
    await r.wal.close();
  });
});

test("an empty segment that is not the last one is corruption", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    await wal.append(1, payloadFor(1, 50));
    await wal.rotate();
    await wal.append(1, payloadFor(2, 50));
    await wal.close();
    await fs.writeFile(path.join(dir, SEG1), new Uint8Array(0));
    await assert.rejects(Wal.open(dir), (e: unknown) => e instanceof CorruptionError && e.file.endsWith(SEG1) && e.offset === 0);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.deepEqual(r.findings.map((f) => [f.kind, f.segment, f.length]), [["bad_header", 1, 0]]);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [2]);
    await r.wal.close();
  });
});

test("a missing segment in the middle is corruption", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    for (let s = 0; s < 4; s++) {
      await wal.append(1, payloadFor(s, 50));
      await wal.rotate();
    }
    await wal.close();
    await fs.rm(path.join(dir, "00000002.seg"));
    await fs.rm(path.join(dir, "00000003.seg"));
    await assert.rejects(Wal.open(dir), /segments 2\.\.3 are missing/);
    const r = await Wal.open(dir, { onCorruption: "quarantine" });
    assert.deepEqual(r.findings.map((f) => [f.kind, f.segment]), [["missing_segment", 2]]);
    assert.deepEqual((await r.readAll()).map((x) => idOf(x.payload)), [0, 3]);
    await r.wal.close();
  });
});
