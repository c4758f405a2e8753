// Pure frame / segment-header encoding and segment scanning (no I/O).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  SEGMENT_HEADER_BYTES,
  decodeFrame,
  decodeSegmentHeader,
  encodeFrame,
  encodeSegmentHeader,
  scanSegment,
} from "../../src/wal/record.js";
import { crc32c } from "../../src/core/hash.js";

function image(segment: number, frames: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat([encodeSegmentHeader(segment), ...frames]));
}

test("frame layout: magic, u32 length, u8 type, CRC32C over length+type+payload", () => {
  const payload = new TextEncoder().encode("hello");
  const f = encodeFrame(7, payload);
  assert.equal(f.length, FRAME_HEADER_BYTES + 5);
  assert.deepEqual(f.subarray(0, 4), FRAME_MAGIC);
  const v = new DataView(f.buffer);
  assert.equal(v.getUint32(4, true), 5);
  assert.equal(f[8], 7);
  const expect = crc32c(new Uint8Array([...f.subarray(4, 9), ...payload]));
  assert.equal(v.getUint32(9, true), expect);
  const d = decodeFrame(f, 0);
  assert.equal(d.status, "ok");
  if (d.status === "ok") {
    assert.equal(d.type, 7);
    assert.deepEqual(d.payload, payload);
    assert.equal(d.frameBytes, f.length);
  }
});

test("frame copies the payload: later mutation of the caller's buffer does not change it", () => {
  const p = new Uint8Array([1, 2, 3]);
  const f = encodeFrame(1, p);
  p[0] = 99;
  const d = decodeFrame(f, 0);
  assert.equal(d.status, "ok");
});

test("empty payload and type 0/255 round-trip", () => {
  for (const t of [0, 255]) {
    const d = decodeFrame(encodeFrame(t, new Uint8Array(0)), 0);
    assert.ok(d.status === "ok" && d.type === t && d.payload.length === 0);
  }
  assert.throws(() => encodeFrame(256, new Uint8Array(0)), /invariant/);
});

test("decodeFrame statuses on damaged input", () => {
  const f = encodeFrame(1, new Uint8Array(100).fill(5));
  assert.equal(decodeFrame(f.subarray(0, 10), 0).status, "short_header");
  assert.equal(decodeFrame(f.subarray(0, 50), 0).status, "past_end");
  const flipped = f.slice();
  flipped[60] = flipped[60]! ^ 1;
  assert.equal(decodeFrame(flipped, 0).status, "bad_crc");
  const noMagic = f.slice();
  noMagic[0] = 0;
  assert.equal(decodeFrame(noMagic, 0).status, "bad_magic");
  const huge = f.slice();
  new DataView(huge.buffer).setUint32(4, 0xffffffff, true);
  assert.equal(decodeFrame(huge, 0).status, "bad_length");
  assert.equal(decodeFrame(new Uint8Array(13), 0).status, "bad_magic");
});

test("segment header round trip and damage", () => {
  const h = encodeSegmentHeader(42);
  assert.equal(h.length, SEGMENT_HEADER_BYTES);
  assert.deepEqual(decodeSegmentHeader(h), { status: "ok", segment: 42, version: 1 });
  assert.equal(decodeSegmentHeader(h.subarray(0, 15)).status, "truncated");
  const bad = h.slice();
  bad[9] = bad[9]! ^ 1;
  assert.equal(decodeSegmentHeader(bad).status, "bad_crc");
  const badMagic = h.slice();
  badMagic[0] = 0;
  assert.equal(decodeSegmentHeader(badMagic).status, "bad_magic");
});

test("scanSegment: clean image, tail, interior damage with resynchronisation", () => {
  const frames = [1, 2, 3, 4].map((i) => encodeFrame(i, new Uint8Array(20 + i).fill(i)));
  const img = image(3, frames);
  const clean = scanSegment(img, 3);
  assert.equal(clean.records.length, 4);
  assert.equal(clean.tail, null);
  assert.equal(clean.damage.length, 0);
  assert.equal(clean.validEnd, img.length);

  const cut = scanSegment(img.subarray(0, img.length - 5), 3);
  assert.equal(cut.records.length, 3);
  assert.equal(cut.tail?.offset, img.length - frames[3]!.length);

  const off2 = SEGMENT_HEADER_BYTES + frames[0]!.length + frames[1]!.length; // frame index 2
  const flipped = img.slice();
  flipped[off2 + FRAME_HEADER_BYTES + 3] = flipped[off2 + FRAME_HEADER_BYTES + 3]! ^ 0x10;
  const s = scanSegment(flipped, 3);
  assert.deepEqual(s.records.map((r) => r.type), [1, 2, 4]);
  assert.equal(s.damage.length, 1);
  assert.deepEqual({ offset: s.damage[0]!.offset, length: s.damage[0]!.length, kind: s.damage[0]!.kind }, { offset: off2, length: frames[2]!.length, kind: "crc_mismatch" });
  assert.equal(s.tail, null);

  const wrongSeq = scanSegment(img, 4);
  assert.equal(wrongSeq.records.length, 4);
  assert.equal(wrongSeq.damage[0]?.kind, "bad_header");

  const empty = scanSegment(new Uint8Array(0), 1);
  assert.deepEqual(empty.tail && { offset: empty.tail.offset, length: empty.tail.length }, { offset: 0, length: 0 });
  assert.equal(empty.validEnd, 0);
});

test("property: a single flipped byte anywhere loses at most the frame holding it, never yields a wrong record", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ type: fc.integer({ min: 0, max: 255 }), size: fc.integer({ min: 0, max: 300 }) }), { minLength: 1, maxLength: 25 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (specs, where, mask) => {
        const frames = specs.map((s, i) => encodeFrame(s.type, new Uint8Array(s.size).fill(i & 0xff)));
        const img = image(1, frames);
        const pos = where % img.length;
        const damaged = img.slice();
        damaged[pos] = damaged[pos]! ^ mask;
        const scan = scanSegment(damaged, 1);
        // Which frame holds the flipped byte?
        let at = SEGMENT_HEADER_BYTES;
        let hit = -1;
        frames.forEach((f, i) => {
          if (pos >= at && pos < at + f.length) hit = i;
          at += f.length;
        });
        const want = frames.map((_, i) => i).filter((i) => i !== hit);
        const got = scan.records.map((r) => {
          const i = frames.findIndex((f, j) => {
            let o = SEGMENT_HEADER_BYTES;
            for (let k = 0; k < j; k++) o += frames[k]!.length;
            return o === r.offset && f.length === r.frameBytes;
          });
          assert.ok(i >= 0, "every replayed record is one that was written, at its offset");
          assert.deepEqual(r.payload, frames[i]!.subarray(FRAME_HEADER_BYTES));
          return i;
        });
        assert.deepEqual(got, want);
        if (hit < 0) assert.equal(scan.damage[0]?.kind, "bad_header");
        else {
          const reported = [...scan.damage, ...(scan.tail ? [scan.tail] : [])];
          assert.ok(reported.some((d) => d.offset <= pos && pos < d.offset + Math.max(d.length, 1)), "the flipped byte lies in a reported range");
        }
      },
    ),
    { numRuns: 500 },
  );
});
