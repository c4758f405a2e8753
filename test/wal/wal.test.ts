// WAL file I/O: round trip across segments, group commit, limits, segment management, failures.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Wal, segmentFileName, type WalPosition } from "../../src/wal/wal.js";
import { FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../../src/wal/record.js";
import { OverloadError, TooLargeError, UnavailableError } from "../../src/core/errors.js";
import { idOf, payloadFor, samePayload, withTempDir } from "./util.js";

test("round trip of many records across several segment rollovers", async () => {
  await withTempDir(async (dir) => {
    const segmentBytesMax = 64 * 1024;
    const { wal, findings, recordCount } = await Wal.open(dir, { segmentBytesMax, recordBytesMax: 16 * 1024 });
    assert.equal(findings.length, 0);
    assert.equal(recordCount, 0);
    const sizes: number[] = [];
    const positions: WalPosition[] = [];
    let expectBytes = SEGMENT_HEADER_BYTES;
    for (let i = 0; i < 300; i++) {
      const size = 4 + ((i * 7919) % 9000);
      sizes.push(size);
      // sequential appends and a few concurrent ones
      if (i % 3 === 0) positions.push(await wal.append(i % 5, payloadFor(i, size)));
      else {
        const [a] = await Promise.all([wal.append(i % 5, payloadFor(i, size))]);
        positions.push(a!);
      }
    }
    for (let i = 0; i < positions.length; i++) {
      const p = positions[i]!;
      assert.equal(p.length, FRAME_HEADER_BYTES + sizes[i]!);
      assert.ok(p.offset + p.length <= segmentBytesMax, "a record never spans or overflows a segment");
      if (i > 0) {
        const q = positions[i - 1]!;
        if (p.segment === q.segment) assert.equal(p.offset, q.offset + q.length);
        else {
          assert.equal(p.segment, q.segment + 1);
          assert.equal(p.offset, SEGMENT_HEADER_BYTES);
          expectBytes += SEGMENT_HEADER_BYTES;
        }
      }
      expectBytes += p.length;
    }
    const segs = wal.segments();
    assert.ok(segs.length >= 5, `expected several rollovers, got ${segs.length} segments`);
    assert.deepEqual(segs, segs.map((_, i) => i + 1));
    assert.equal(wal.sizeBytes(), expectBytes);
    let onDisk = 0;
    for (const s of segs) {
      const st = await fs.stat(path.join(dir, segmentFileName(s)));
      assert.ok(st.size <= segmentBytesMax);
      onDisk += st.size;
    }
    assert.equal(onDisk, expectBytes);
    await wal.close();

    const again = await Wal.open(dir, { segmentBytesMax, recordBytesMax: 16 * 1024 });
    assert.equal(again.findings.length, 0);
    assert.equal(again.recordCount, 300);
    const records = await again.readAll();
    assert.equal(records.length, 300);
    records.forEach((r, i) => {
      assert.equal(idOf(r.payload), i, "replay order is append order");
      assert.equal(r.type, i % 5);
      assert.ok(samePayload(r.payload, payloadFor(i, sizes[i]!)));
      assert.deepEqual({ segment: r.segment, offset: r.offset, length: r.length }, positions[i]);
    });
    // Appends continue after the replayed ones.
    const p = await again.wal.append(9, payloadFor(1000, 10));
    assert.equal(p.segment, segs[segs.length - 1]);
    await again.wal.close();
    const third = await Wal.open(dir, { segmentBytesMax, recordBytesMax: 16 * 1024 });
    const all = await third.readAll();
    assert.equal(all.length, 301);
    assert.equal(idOf(all[300]!.payload), 1000);
    await third.wal.close();
  });
});

test("segment files start with a header naming their sequence number", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    await wal.append(1, payloadFor(1, 10));
    assert.equal(await wal.rotate(), 2);
    await wal.append(1, payloadFor(2, 10));
    await wal.close();
    const names = (await fs.readdir(dir)).sort();
    assert.deepEqual(names, ["00000001.seg", "00000002.seg"]);
    const h = await fs.readFile(path.join(dir, "00000002.seg"));
    assert.equal(h.subarray(0, 4).toString("latin1"), "HQWL");
    assert.equal(h[4], 1);
    assert.equal(h.readUInt32LE(8), 2);
  });
});

test("group commit: 200 concurrent appends complete with far fewer fsyncs", async () => {
  await withTempDir(async (dir) => {
    let fsyncs = 0;
    let records = 0;
    let bytes = 0;
    const { wal } = await Wal.open(dir, {
      onFsync: (durationMs, b, r) => {
        assert.ok(durationMs >= 0);
        fsyncs++;
        records += r;
        bytes += b;
      },
    });
    // Four waves started from different ticks, all in flight together.
    const all: Promise<WalPosition>[] = [];
    for (let wave = 0; wave < 4; wave++) {
      for (let i = 0; i < 50; i++) all.push(wal.append(1, payloadFor(wave * 50 + i, 100)));
      await new Promise((r) => setImmediate(r));
    }
    const positions = await Promise.all(all);
    assert.equal(records, 200, "every record was covered by an fsync");
    assert.equal(bytes, 200 * (FRAME_HEADER_BYTES + 100));
    assert.ok(fsyncs <= 20, `200 appends took ${fsyncs} fsyncs`);
    // Positions are distinct and contiguous.
    const sorted = [...positions].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]!.offset, sorted[i - 1]!.offset + sorted[i - 1]!.length);
    await wal.close();
  });
});

test("an append is acked only after its fsync returned", async () => {
  await withTempDir(async (dir) => {
    const events: string[] = [];
    const { wal } = await Wal.open(dir, {
      faults: { beforeSync: () => void events.push("sync") },
      onFsync: () => void events.push("synced"),
    });
    await wal.append(1, payloadFor(1, 10)).then(() => events.push("ack"));
    assert.deepEqual(events, ["sync", "synced", "ack"]);
    await wal.close();
  });
});

test("overload: beyond pendingWritesMax appends reject at once with OverloadError; nothing partial is written", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir, { pendingWritesMax: 8 });
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => wal.append(2, payloadFor(i, 500))));
    const ok = results.filter((r) => r.status === "fulfilled");
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(ok.length, 8);
    assert.equal(rejected.length, 42);
    for (const r of rejected) {
      assert.ok(r.reason instanceof OverloadError);
      assert.equal(r.reason.code, "overloaded");
      assert.equal(r.reason.retryable, true);
    }
    assert.equal(wal.sizeBytes(), SEGMENT_HEADER_BYTES + 8 * (FRAME_HEADER_BYTES + 500));
    // Once the queue drained, appends are admitted again.
    await wal.append(2, payloadFor(99, 500));
    await wal.close();
    const st = await fs.stat(path.join(dir, "00000001.seg"));
    assert.equal(st.size, SEGMENT_HEADER_BYTES + 9 * (FRAME_HEADER_BYTES + 500));
    const again = await Wal.open(dir);
    assert.deepEqual((await again.readAll()).map((r) => idOf(r.payload)), [0, 1, 2, 3, 4, 5, 6, 7, 99]);
    await again.wal.close();
  });
});

test("overload by bytes: pendingBytesMax bounds memory but always admits one record", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir, { pendingBytesMax: 1000 });
    const a = wal.append(1, payloadFor(1, 5000)); // alone in the queue: admitted
    await assert.rejects(wal.append(1, payloadFor(2, 10)), OverloadError);
    await a;
    await wal.append(1, payloadFor(3, 10));
    await wal.close();
  });
});

test("a record above recordBytesMax is refused with TooLargeError before anything is written", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir, { recordBytesMax: 1024, segmentBytesMax: 4096 });
    await assert.rejects(wal.append(1, new Uint8Array(1025)), (e: unknown) => e instanceof TooLargeError && e.code === "too_large");
    assert.equal(wal.sizeBytes(), SEGMENT_HEADER_BYTES);
    await wal.append(1, new Uint8Array(1024)); // exactly the limit is fine
    await wal.close();
    assert.equal((await fs.stat(path.join(dir, "00000001.seg"))).size, SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 1024);
  });
});

test("options that cannot work are refused", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(Wal.open(dir, { segmentBytesMax: 1000, recordBytesMax: 1000 }), /does not fit/);
    await assert.rejects(Wal.open(dir, { pendingWritesMax: 0 }), /pendingWritesMax/);
  });
});

test("a failed fsync rejects every waiting append and fails the WAL for good (no retry on the same fd)", async () => {
  await withTempDir(async (dir) => {
    let syncs = 0;
    const { wal } = await Wal.open(dir, {
      faults: {
        beforeSync: () => {
          syncs++;
          if (syncs === 2) throw Object.assign(new Error("EIO: simulated fsync failure"), { code: "EIO" });
        },
      },
    });
    await wal.append(1, payloadFor(1, 10));
    const batch = Array.from({ length: 20 }, (_, i) => wal.append(1, payloadFor(10 + i, 10)));
    const settled = await Promise.allSettled(batch);
    assert.ok(settled.every((s) => s.status === "rejected" && s.reason instanceof UnavailableError && s.reason.retryable));
    assert.equal(wal.failed, true);
    await assert.rejects(wal.append(1, payloadFor(99, 10)), UnavailableError);
    await assert.rejects(wal.rotate(), UnavailableError);
    assert.equal(syncs, 2, "the failed fsync was not retried");
    await wal.close();
  });
});

test("a failed write fails the WAL; reopening replays what is intact", async () => {
  await withTempDir(async (dir) => {
    let writes = 0;
    const { wal } = await Wal.open(dir, {
      faults: {
        beforeWrite: () => {
          if (++writes === 3) throw new Error("ENOSPC: simulated");
        },
      },
    });
    await wal.append(1, payloadFor(1, 10));
    await wal.append(1, payloadFor(2, 10));
    await assert.rejects(wal.append(1, payloadFor(3, 10)), UnavailableError);
    await wal.close();
    const again = await Wal.open(dir);
    assert.deepEqual((await again.readAll()).map((r) => idOf(r.payload)), [1, 2]);
    await again.wal.close();
  });
});

test("rotate, segments, removeSegmentsBefore, sizeBytes", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    const p1 = wal.append(1, payloadFor(1, 100));
    const r = wal.rotate(); // appends queued before rotate() land in the older segment
    const p2 = wal.append(1, payloadFor(2, 100));
    assert.equal((await p1).segment, 1);
    assert.equal(await r, 2);
    assert.equal((await p2).segment, 2);
    assert.equal(await wal.rotate(), 3);
    assert.deepEqual(wal.segments(), [1, 2, 3]);
    assert.equal(wal.currentSegment(), 3);
    assert.equal(wal.sizeBytes(), 3 * SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 100));
    await wal.removeSegmentsBefore(3);
    assert.deepEqual(wal.segments(), [3]);
    assert.deepEqual((await fs.readdir(dir)).sort(), ["00000003.seg"]);
    assert.equal(wal.sizeBytes(), SEGMENT_HEADER_BYTES);
    await assert.rejects(wal.removeSegmentsBefore(4), /rotate\(\) first/);
    await wal.append(1, payloadFor(3, 100));
    await wal.close();
    const again = await Wal.open(dir);
    assert.equal(again.findings.length, 0, "a WAL starting after segment 1 is not damage");
    assert.deepEqual((await again.readAll()).map((r) => [r.segment, idOf(r.payload)]), [[3, 3]]);
    await again.wal.close();
  });
});

test("close waits for pending writes; appends after close are refused", async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open(dir);
    const pending = Array.from({ length: 100 }, (_, i) => wal.append(1, payloadFor(i, 64)));
    await wal.close();
    const done = await Promise.allSettled(pending);
    assert.ok(done.every((d) => d.status === "fulfilled"));
    await assert.rejects(wal.append(1, payloadFor(1, 1)), UnavailableError);
    const again = await Wal.open(dir);
    assert.equal(again.recordCount, 100);
    await again.wal.close();
  });
});

test("fsync: false still writes and acks in order (benchmark mode)", async () => {
  await withTempDir(async (dir) => {
    const durations: number[] = [];
    const { wal } = await Wal.open(dir, { fsync: false, onFsync: (d) => void durations.push(d) });
    await Promise.all(Array.from({ length: 10 }, (_, i) => wal.append(1, payloadFor(i, 10))));
    assert.ok(durations.every((d) => d === 0));
    await wal.close();
    const again = await Wal.open(dir);
    assert.equal(again.recordCount, 10);
    await again.wal.close();
  });
});
