// Batches rebuilt from stored points (storage/batch-contents.ts): a batch whose every point is stored as its own
// comes back byte for byte (from the head, from a block, from both after a restart), a batch that offered points
// already stored is reported as not self-contained (its bytes must be archived), and a point rewritten in storage
// makes the rebuilt batch hash to something else.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, encodeWithDigest, type Batch } from "../../src/core/batch.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { openEngine, type Engine } from "../../src/storage/engine.js";
import { tempDirs } from "../helpers/temp-dirs.js";

const tempDir = tempDirs("hqts-contents-");

function batch(series: [name: string, host: string, points: [bigint, number][]][], origin: "original" | "inferred" = "original"): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [name, host, points] of series) {
    const labels = canonicalLabels([["__name__", name], ["host", host]], DEFAULT_LIMITS);
    for (const [t, v] of points) b.add(labels, t, v);
  }
  return b.build(origin === "inferred" ? { origin, inference: '{"method":"linear"}' } : {});
}

async function open(dir: string, committed: Map<string, boolean>): Promise<Engine> {
  const e = await openEngine({
    dataDir: dir,
    limits: DEFAULT_LIMITS,
    retentionMs: null,
    acceptDataLoss: false,
    log: pino({ level: "silent" }),
    metrics: new Registry(),
    onCommitted: (id, _sha, _bytes, selfContained) => committed.set(id, selfContained),
  });
  return e as Engine;
}

describe("batches rebuilt from stored points", () => {
  it("gives back the canonical bytes of self-contained batches, from the head, a block and both", async () => {
    const dir = await tempDir();
    const committed = new Map<string, boolean>();
    const e = await open(dir, committed);
    const stale = new Float64Array(new BigUint64Array([0x7ff8000000000002n]).buffer)[0]!;
    const a = batch([
      ["cpu", "a", [[10n, 1.5], [20n, -0], [30n, stale]]],
      ["mem", "b", [[10n, 7]]],
    ]);
    const b = batch([["cpu", "a", [[40n, 2]]], ["cpu", "z", [[40n, 3]]]]);
    await e.write(a, "a");
    await e.flush(); // a in a block
    await e.write(b, "b"); // b in the head
    // c offers a point a already stored (same value) beside a new one: its bytes cannot be rebuilt from storage.
    const c = batch([["cpu", "a", [[10n, 1.5], [50n, 9]]]]);
    await e.write(c, "c");
    assert.equal(committed.get("a"), true);
    assert.equal(committed.get("b"), true);
    assert.equal(committed.get("c"), false, "a batch whose point was already there is not self-contained");

    const check = (eng: Engine): void => {
      const got = eng.batchContents(["a", "b", "nope"]);
      assert.deepEqual([...got.keys()].sort(), ["a", "b"]);
      assert.equal(encodeWithDigest(got.get("a")!).sha256, encodeWithDigest(a).sha256, "a from its block");
      assert.equal(encodeWithDigest(got.get("b")!).sha256, encodeWithDigest(b).sha256, "b from the head");
      assert.notEqual(encodeWithDigest(eng.batchContents(["c"]).get("c")!).sha256, encodeWithDigest(c).sha256);
    };
    check(e);
    await e.close();
    const again = await open(dir, new Map());
    check(again); // after a restart: b replayed from the WAL
    await again.flush();
    check(again); // everything in blocks
    await again.close();
  });

  it("an inferred batch is never self-contained (originals may replace its points)", async () => {
    const committed = new Map<string, boolean>();
    const e = await open(await tempDir(), committed);
    await e.write(batch([["cpu", "a", [[10n, 1]]]], "inferred"), "inf");
    assert.equal(committed.get("inf"), false);
    await e.close();
  });
});
