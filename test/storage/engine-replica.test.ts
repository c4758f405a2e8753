// The engine's replica primitives as the cluster drives them: reserveSync (invisible, its points reserved),
// commitSync, abortSync, and how they survive restarts and flushes through the host's REPLICA_LOG records
// (replayed at open, re-logged by a flush).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BatchBuilder, type Batch } from "../../src/core/batch.js";
import { ConflictError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import type { Engine } from "../../src/storage/engine.js";
import { tempDirs } from "../helpers/temp-dirs.js";
import { openHost, type ReplicaHost } from "./replica-host.js";

const tempDir = tempDirs("hqts-replica-");

async function open(dir?: string): Promise<{ h: ReplicaHost; e: Engine; dir: string }> {
  const d = dir ?? (await tempDir());
  const h = await openHost(d);
  return { h, e: h.engine, dir: d };
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
    const { h, e } = await open();
    assert.deepEqual(await h.prepare(batch([[1n, 1], [2n, 2]]), "a", 100n), { kind: "ok" });
    assert.equal(e.lookupBatch("a")?.phase, "prepared");
    assert.deepEqual(visible(e), []);
    // Another content for a reserved point is refused even though it is not committed yet.
    const other = await h.prepare(batch([[2n, 9]]), "b", 101n);
    assert.ok(other.kind === "conflict", other.kind);
    assert.deepEqual(other.points.map((p) => [p.timestampNs, p.storedValue, p.offeredValue]), [["2", 2, 9]]);
    assert.deepEqual(other.holders, ["a"]);
    assert.equal(e.lookupBatch("b"), null);
    // The same batch again is a duplicate and says its phase.
    assert.deepEqual(await h.prepare(batch([[1n, 1], [2n, 2]]), "a", 100n), { kind: "duplicate", phase: "prepared" });
    assert.deepEqual(h.undecided().map((b) => b.batchId), ["a"]);
    await h.commit("a");
    assert.deepEqual(visible(e), [[1n, 1], [2n, 2]]);
    assert.equal(e.lookupBatch("a")?.phase, "committed");
    assert.throws(() => e.abortSync("a"), ConflictError);
    await e.close();
  });

  it("abort undoes the reservation so other content can take the points", async () => {
    const { h, e } = await open();
    await h.prepare(batch([[1n, 1]]), "a", 100n);
    await h.abort("a");
    assert.equal(e.lookupBatch("a"), null);
    assert.deepEqual(await h.prepare(batch([[1n, 7]]), "b", 101n), { kind: "ok" });
    await h.commit("b");
    assert.deepEqual(visible(e), [[1n, 7]]);
    await e.close();
  });

  it("replays prepare, commit and abort records after a restart; undecided batches stay undecided", async () => {
    const first = await open();
    await first.h.prepare(batch([[1n, 1]]), "committed", 1n);
    await first.h.commit("committed");
    await first.h.prepare(batch([[2n, 2]]), "aborted", 2n);
    await first.h.abort("aborted");
    await first.h.prepare(batch([[3n, 3]]), "undecided", 3n);
    await first.e.close();
    const { h, e } = await open(first.dir);
    assert.deepEqual(visible(e), [[1n, 1]]);
    assert.equal(e.lookupBatch("aborted"), null);
    assert.deepEqual(h.undecided().map((b) => [b.batchId, b.hlc]), [["undecided", 3n]]);
    await h.commit("undecided");
    assert.deepEqual(visible(e), [[1n, 1], [3n, 3]]);
    await e.close();
  });

  it("flushes committed batches only; prepared ones survive the flush and the WAL cleanup", async () => {
    const first = await open();
    const { h: h1, e: e1 } = first;
    await h1.prepare(batch([[1n, 1]]), "c", 1n);
    await h1.commit("c");
    await h1.prepare(batch([[2n, 2]]), "p", 2n);
    const f = await e1.flush();
    assert.equal(f.samples, 1);
    assert.deepEqual(h1.undecided().map((b) => b.batchId), ["p"]);
    await e1.close();
    const { h, e } = await open(first.dir);
    assert.deepEqual(h.undecided().map((b) => b.batchId), ["p"], "the prepared batch was re-logged before old segments went");
    assert.deepEqual(visible(e), [[1n, 1]]);
    assert.equal((await h.prepare(batch([[2n, 5]]), "x", 3n)).kind, "conflict", "its points are still reserved");
    await h.commit("p");
    await e.flush();
    assert.deepEqual(visible(e), [[1n, 1], [2n, 2]]);
    assert.equal(h.undecided().length, 0);
    await e.close();
  });
});
