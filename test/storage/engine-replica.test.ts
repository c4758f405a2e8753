// The engine's replica primitives for the cluster: prepare (durable, invisible),
// commit, abort, and how they survive restarts and flushes.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { BatchBuilder, type Batch } from "../../src/core/batch.js";
import { ConflictError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { Engine, openEngine } from "../../src/storage/engine.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function open(dir?: string): Promise<{ e: Engine; dir: string }> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), "hqts-replica-")));
  if (dir === undefined) dirs.push(d);
  const e = (await openEngine({ dataDir: d, limits: DEFAULT_LIMITS, retentionMs: null, acceptDataLoss: false, log: pino({ level: "silent" }), metrics: new Registry() })) as Engine;
  return { e, dir: d };
}

function batch(points: [bigint, number][]): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const [t, v] of points) b.add(canonicalLabels([["__name__", "m"]], DEFAULT_LIMITS), t, v);
  return b.build();
}

function visible(e: Engine): [bigint, number][] {
  const rs = e.select([[makeMatcher("__name__", "=", "m")]], { startNs: 0n, endNs: 1n << 62n, includeInferred: true, seriesMax: 10, samplesMax: 1e6 });
  return rs.length === 0 ? [] : [...rs[0]!.timestampsNs].map((t, i) => [t, rs[0]!.values[i]!]);
}

describe("engine replica primitives", () => {
  it("keeps a prepared batch invisible until commit, and reserves its points against other content", async () => {
    const { e } = await open();
    const p = await e.prepare(batch([[1n, 1], [2n, 2]]), "a", 100n);
    assert.equal(p.phase, "prepared");
    assert.equal(p.duplicate, false);
    assert.deepEqual(visible(e), []);
    // Another content for a reserved point is refused even though it is not committed yet.
    await assert.rejects(e.prepare(batch([[2n, 9]]), "b", 101n), ConflictError);
    // The same batch again is a duplicate and says its phase.
    const again = await e.prepare(batch([[1n, 1], [2n, 2]]), "a", 100n);
    assert.equal(again.duplicate, true);
    assert.equal(again.phase, "prepared");
    assert.deepEqual(e.undecided().map((b) => b.batchId), ["a"]);
    e.commit("a");
    assert.deepEqual(visible(e), [[1n, 1], [2n, 2]]);
    assert.equal(e.lookupBatch("a")?.phase, "committed");
    assert.throws(() => e.abort("a"), ConflictError);
    await e.close();
  });

  it("abort undoes the reservation so other content can take the points", async () => {
    const { e } = await open();
    await e.prepare(batch([[1n, 1]]), "a", 100n);
    e.abort("a");
    assert.equal(e.lookupBatch("a"), null);
    await e.prepare(batch([[1n, 7]]), "b", 101n);
    e.commit("b");
    assert.deepEqual(visible(e), [[1n, 7]]);
    await e.close();
  });

  it("replays prepare, commit and abort marks after a restart; undecided batches stay undecided", async () => {
    const first = await open();
    await first.e.prepare(batch([[1n, 1]]), "committed", 1n);
    first.e.commit("committed");
    await first.e.prepare(batch([[2n, 2]]), "aborted", 2n);
    first.e.abort("aborted");
    await first.e.prepare(batch([[3n, 3]]), "undecided", 3n);
    await first.e.close(); // waits for the marks to be logged
    const { e } = await open(first.dir);
    assert.deepEqual(visible(e), [[1n, 1]]);
    assert.equal(e.lookupBatch("aborted"), null);
    assert.deepEqual(e.undecided().map((b) => [b.batchId, b.hlc]), [["undecided", 3n]]);
    e.commit("undecided");
    assert.deepEqual(visible(e), [[1n, 1], [3n, 3]]);
    await e.close();
  });

  it("flushes committed batches only; prepared ones survive the flush and the WAL cleanup", async () => {
    const first = await open();
    const { e: e1 } = first;
    await e1.prepare(batch([[1n, 1]]), "c", 1n);
    e1.commit("c");
    await e1.prepare(batch([[2n, 2]]), "p", 2n);
    const f = await e1.flush();
    assert.equal(f.samples, 1);
    assert.deepEqual(e1.undecided().map((b) => b.batchId), ["p"]);
    await e1.close();
    const { e } = await open(first.dir);
    assert.deepEqual(e.undecided().map((b) => b.batchId), ["p"], "the prepared batch was re-logged before old segments went");
    assert.deepEqual(visible(e), [[1n, 1]]);
    await assert.rejects(e.prepare(batch([[2n, 5]]), "x", 3n), ConflictError, "its points are still reserved");
    e.commit("p");
    await e.flush();
    assert.deepEqual(visible(e), [[1n, 1], [2n, 2]]);
    assert.equal(e.undecided().length, 0);
    await e.close();
  });
});
