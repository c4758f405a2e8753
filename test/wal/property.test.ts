// Property: cutting the final segment file anywhere loses exactly the records not fully before the cut.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import fc from "fast-check";
import { Wal, segmentFileName, type WalPosition } from "../../src/wal/wal.js";
import { SEGMENT_HEADER_BYTES } from "../../src/wal/record.js";
import { idOf, payloadFor, samePayload, withTempDir } from "./util.js";

const OPTS = { segmentBytesMax: 8192, recordBytesMax: 3000, fsync: false } as const;

test("property: random records, random cut of the final file → every record before the cut replays, nothing after", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ type: fc.integer({ min: 0, max: 255 }), size: fc.integer({ min: 4, max: 3000 }) }), { minLength: 1, maxLength: 40 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      async (specs, cutFraction) => {
        await withTempDir(async (dir) => {
          const { wal } = await Wal.open(dir, OPTS);
          const positions: WalPosition[] = await Promise.all(specs.map((s, i) => wal.append(s.type, payloadFor(i, s.size))));
          await wal.close();
          const last = Math.max(...positions.map((p) => p.segment));
          const file = path.join(dir, segmentFileName(last));
          const size = (await fs.stat(file)).size;
          const cut = Math.floor(cutFraction * size);
          await fs.truncate(file, cut);

          let r;
          try {
            r = await Wal.open(dir, OPTS);
          } catch (e) {
            assert.fail(`open threw on a truncated tail: ${String(e)}`);
          }
          const kept = positions.map((p, i) => ({ p, i })).filter(({ p }) => p.segment < last || p.offset + p.length <= cut);
          const got = await r.readAll();
          assert.deepEqual(got.map((x) => idOf(x.payload)), kept.map((k) => k.i));
          for (const x of got) {
            const i = idOf(x.payload);
            assert.equal(x.type, specs[i]!.type);
            assert.ok(samePayload(x.payload, payloadFor(i, specs[i]!.size)));
          }
          const lastEnd = kept.filter((k) => k.p.segment === last).reduce((m, k) => Math.max(m, k.p.offset + k.p.length), SEGMENT_HEADER_BYTES);
          if (cut === lastEnd) assert.equal(r.findings.length, 0);
          else {
            assert.equal(r.findings.length, 1);
            const f = r.findings[0]!;
            assert.equal(f.kind, "torn_tail");
            assert.equal(f.segment, last);
            assert.equal(f.offset, cut < SEGMENT_HEADER_BYTES ? 0 : lastEnd);
          }
          // The WAL is clean and appendable afterwards.
          await r.wal.append(7, payloadFor(9999, 10));
          await r.wal.close();
          const again = await Wal.open(dir, OPTS);
          assert.equal(again.findings.length, 0);
          assert.equal(again.recordCount, kept.length + 1);
          await again.wal.close();
        });
      },
    ),
    { numRuns: 150 },
  );
});
