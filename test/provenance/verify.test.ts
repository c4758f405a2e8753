import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { after, describe, it } from "node:test";
import { BatchBuilder, encodeWithDigest, type Batch, type Origin } from "../../src/core/batch.js";
import { toHex } from "../../src/core/hash.js";
import { Hlc } from "../../src/core/hlc.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { labelsToObject, type Labels } from "../../src/core/labels.js";
import { BUNDLE_KEYS_WARNING, BundleWriter, readBundle, verifyBundle } from "../../src/provenance/bundle.js";
import { checkpointOrigin, signCheckpoint } from "../../src/provenance/checkpoint.js";
import { encodeLeaf } from "../../src/provenance/leaf.js";
import { MerkleLog, leafHash, proofToHex } from "../../src/provenance/merkle.js";
import { ed25519Signer, encodeBase64, verifierKeyString, type Signer } from "../../src/provenance/note.js";
import {
  LineSplitter,
  POINT_EXAMPLES_PER_BATCH,
  PointVerifier,
  consistencyOf,
  parseTrustState,
  previousCheckpoint,
  recordCheckpoint,
  verifyCheckpoint,
  type ExportLine,
  type TrustState,
  type VerifiedCheckpoint,
  type VerifyReport,
} from "../../src/provenance/verify.js";

const ORIGIN = checkpointOrigin("test");
const T0_MS = 1_700_000_000_000;
const signer = ed25519Signer("n1", new Uint8Array(32).fill(1));
const foreign = ed25519Signer("n1", new Uint8Array(32).fill(2));
const keyOf = (s: Signer): string => verifierKeyString(s.name, s.publicKey);
const KEYS = [keyOf(signer)];

interface FixtureBatch {
  id: string;
  batch: Batch;
  bytes: Uint8Array;
  entry: Uint8Array;
  committedMs: number;
}

const labels = (name: string, job: string): Labels => [
  ["__name__", name],
  ["job", job],
];

/** A batch of `n` points of one series, value = base + i, one second apart. */
function makeBatch(id: string, series: Labels, base: number, n: number, opts: { origin?: Origin; startMs?: number; committedMs?: number } = {}): FixtureBatch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  const start = BigInt(opts.startMs ?? T0_MS) * 1_000_000n;
  for (let i = 0; i < n; i++) b.add(series, start + BigInt(i) * 1_000_000_000n, base + i);
  const batch = b.build({ origin: opts.origin ?? "original", shardId: 3 });
  const enc = encodeWithDigest(batch);
  const committedMs = opts.committedMs ?? T0_MS;
  const entry = encodeLeaf({ batchId: id, sha256: enc.sha256, shardId: 3, hlc: Hlc.spanOfMs(committedMs), sampleCount: batch.sampleCount, origin: batch.origin });
  return { id, batch, bytes: enc.bytes, entry, committedMs };
}

class Fixture {
  readonly log = new MerkleLog();
  readonly batches: FixtureBatch[] = [];

  add(b: FixtureBatch): this {
    this.log.append(leafHash(b.entry));
    this.batches.push(b);
    return this;
  }

  async note(size = this.log.size, s: Signer = signer, timeMs = T0_MS + 10_000): Promise<string> {
    return signCheckpoint({ origin: ORIGIN, treeSize: size, rootHash: this.log.root(size), timeMs }, s);
  }

  answer(id: string, size = this.log.size): Record<string, unknown> {
    const index = this.batches.findIndex((b) => b.id === id);
    if (index < 0 || index >= size) return { batchId: id, status: "unknown" };
    const b = this.batches[index]!;
    return { batchId: id, status: "included", index, entry: encodeBase64(b.entry), proof: proofToHex(this.log.inclusionProof(index, size)), bytes: encodeBase64(b.bytes) };
  }
}

/** Export lines as the node writes them: one per series, points of several batches merged by time. */
function exportLines(batches: readonly FixtureBatch[], edit: (line: ExportLine, key: string) => void = () => undefined): string[] {
  const bySeries = new Map<string, { metric: Record<string, string>; points: { ts: bigint; v: number; origin: Origin; batch: string }[] }>();
  for (const fb of batches)
    for (const s of fb.batch.series) {
      let e = bySeries.get(s.key);
      if (e === undefined) bySeries.set(s.key, (e = { metric: labelsToObject(s.labels), points: [] }));
      for (let i = 0; i < s.timestampsNs.length; i++) e.points.push({ ts: s.timestampsNs[i]!, v: s.values[i]!, origin: fb.batch.origin, batch: fb.id });
    }
  return [...bySeries].map(([key, e]) => {
    e.points.sort((a, b) => (a.ts < b.ts ? -1 : 1));
    const line: ExportLine & { timestamps: number[] } = {
      metric: e.metric,
      values: e.points.map((p) => (Number.isNaN(p.v) ? "NaN" : p.v === Infinity ? "+Inf" : p.v === -Infinity ? "-Inf" : p.v)),
      timestamps: e.points.map((p) => Number(p.ts / 1_000_000n)),
      timestamps_ns: e.points.map((p) => p.ts.toString()),
      origins: e.points.map((p) => p.origin),
      batches: e.points.map((p) => p.batch),
    };
    edit(line, key);
    return JSON.stringify(line);
  });
}

async function checkpointOf(f: Fixture, size?: number): Promise<VerifiedCheckpoint> {
  const c = verifyCheckpoint(await f.note(size), KEYS, ORIGIN);
  assert.deepEqual(c.problems, []);
  assert.ok(c.checkpoint !== null);
  return c.checkpoint;
}

/** The CLI's flow: pass 1, proofs in one response, pass 2. */
function run(cp: VerifiedCheckpoint, lines: readonly string[], answer: (id: string) => unknown, opts: { mmdMs?: number; nowMs?: number } = {}): VerifyReport {
  const v = new PointVerifier({ checkpoint: cp, consistency: "first-seen", ...opts });
  for (const l of lines) v.addSeries(l);
  const ids = v.unansweredBatchIds();
  v.addProofResponse(ids, { size: cp.size, batches: ids.map(answer) });
  for (const l of lines) v.checkSeries(l);
  return v.report();
}

function reasons(r: VerifyReport): string {
  return r.failures.map((f) => f.reason).join("\n");
}

function standard(): Fixture {
  return new Fixture()
    .add(makeBatch("b-0", labels("up", "a"), 1, 5))
    .add(makeBatch("b-1", labels("up", "b"), 10, 5))
    .add(makeBatch("b-2", labels("temp", "a"), 41.5, 3))
    .add(makeBatch("b-3", labels("up", "a"), 100, 4, { startMs: T0_MS + 60_000 }));
}

describe("PointVerifier", () => {
  it("passes an honest export and counts what it checked", async () => {
    const f = standard();
    const r = run(await checkpointOf(f), exportLines(f.batches), (id) => f.answer(id));
    assert.equal(r.ok, true, reasons(r));
    assert.equal(r.series, 3);
    assert.equal(r.samples, 17);
    assert.equal(r.samplesVerified, 17);
    assert.deepEqual(r.batches, { total: 4, verified: 4, pending: 0, failed: 0 });
    assert.equal(r.checkpoint?.size, 4);
    assert.deepEqual(r.checkpoint?.signedBy, [`n1+${toHex(signer.keyId)}`]);
  });

  it("names the batch whose stored value differs from the signed one", async () => {
    const f = standard();
    const lines = exportLines(f.batches, (l) => {
      if (l.metric["__name__"] === "temp") l.values[1] = 99;
    });
    const r = run(await checkpointOf(f), lines, (id) => f.answer(id));
    assert.equal(r.ok, false);
    assert.equal(r.failures.length, 1);
    assert.equal(r.failures[0]!.batchId, "b-2");
    assert.match(r.failures[0]!.reason, /^batch b-2: stored point temp\{job="a"\} @2023-11-14T22:13:21\.000000000Z has value 99, the signed batch says 42\.5$/);
    assert.deepEqual(r.batches, { total: 4, verified: 3, pending: 0, failed: 1 });
    assert.equal(r.samplesVerified, 16);
  });

  it("reports a different value with both values", async () => {
    const f = standard();
    const lines = exportLines(f.batches, (l) => {
      if (l.metric["__name__"] === "temp") l.values[0] = 42.5;
    });
    const r = run(await checkpointOf(f), lines, (id) => f.answer(id));
    assert.match(reasons(r), /batch b-2: stored point temp\{job="a"\} @\S+ has value 42\.5, the signed batch says 41\.5/);
  });

  it("fails canonical bytes that do not match the signed digest", async () => {
    const f = standard();
    const r = run(await checkpointOf(f), exportLines(f.batches), (id) => {
      const a = f.answer(id);
      if (id !== "b-1") return a;
      const bytes = Buffer.from(a["bytes"] as string, "base64");
      bytes[bytes.length - 1]! ^= 1;
      return { ...a, bytes: bytes.toString("base64") };
    });
    assert.equal(r.ok, false);
    assert.deepEqual(r.failures, [{ batchId: "b-1", reason: "batch b-1: canonical bytes do not match the signed digest" }]);
    assert.equal(r.samplesVerified, 12);
  });

  it("fails a proof that does not reach the checkpoint's root", async () => {
    const f = standard();
    const r = run(await checkpointOf(f), exportLines(f.batches), (id) => (id === "b-0" ? { ...f.answer(id), index: 1 } : f.answer(id)));
    assert.deepEqual(r.failures, [{ batchId: "b-0", reason: "batch b-0: not included in checkpoint 4 (proof does not verify)" }]);
    const r2 = run(await checkpointOf(f), exportLines(f.batches), (id) => (id === "b-3" ? { ...f.answer(id), proof: [] } : f.answer(id)));
    assert.match(reasons(r2), /batch b-3: not included in checkpoint 4 \(proof does not verify\)/);
  });

  it("fails an entry for another batch and an unknown batch", async () => {
    const f = standard();
    const r = run(await checkpointOf(f), exportLines(f.batches), (id) =>
      id === "b-0" ? { ...f.answer("b-1"), batchId: "b-0" } : id === "b-1" ? { batchId: id, status: "unknown" } : f.answer(id),
    );
    assert.match(reasons(r), /batch b-0: the leaf entry is for batch "b-1"/);
    assert.match(reasons(r), /batch b-1: the node does not know this batch/);
    assert.equal(r.batches.failed, 2);
  });

  it("counts pending batches within the bound and fails those beyond it", async () => {
    const f = standard();
    const late = makeBatch("b-late", labels("up", "c"), 7, 2, { committedMs: T0_MS + 5_000 });
    const old = makeBatch("b-old", labels("up", "d"), 8, 2, { committedMs: T0_MS - 120_000 });
    const cp = await checkpointOf(f); // cut at T0 + 10 s
    const pending = (b: FixtureBatch) => ({ batchId: b.id, status: "pending", committedHlc: Hlc.spanOfMs(b.committedMs).toString() });
    const ok = run(cp, exportLines([...f.batches, late]), (id) => (id === late.id ? pending(late) : f.answer(id)));
    assert.equal(ok.ok, true, reasons(ok));
    assert.equal(ok.samplesPending, 2);
    assert.deepEqual(ok.batches, { total: 5, verified: 4, pending: 1, failed: 0 });
    const bad = run(cp, exportLines([...f.batches, old]), (id) => (id === old.id ? pending(old) : f.answer(id)));
    assert.equal(bad.ok, false);
    assert.deepEqual(bad.failures, [{ batchId: "b-old", reason: `batch b-old committed at ${new Date(T0_MS - 120_000).toISOString()} is missing from checkpoint 4 (bound 60 s)` }]);
    assert.equal(bad.samplesPending, 0);
    // A wider bound (--mmd) lets it pass.
    assert.equal(run(cp, exportLines([...f.batches, old]), (id) => (id === old.id ? pending(old) : f.answer(id)), { mmdMs: 600_000 }).ok, true);
    // A stalled sequencer: the checkpoint is old, the batch came after it, and the verifier's clock says the bound
    // is long past. Without a clock (a bundle) it can only be pending.
    const stalled = run(cp, exportLines([...f.batches, late]), (id) => (id === late.id ? pending(late) : f.answer(id)), { nowMs: late.committedMs + 300_000 });
    assert.equal(stalled.ok, false);
    assert.match(stalled.failures[0]!.reason, /is in no checkpoint 300 s later .*is the sequencer running/);
    assert.equal(run(cp, exportLines([...f.batches, late]), (id) => (id === late.id ? pending(late) : f.answer(id)), { nowMs: late.committedMs + 30_000 }).ok, true);
  });

  it("fails points that name no batch", async () => {
    const f = standard();
    const lines = exportLines(f.batches, (l) => {
      if (l.metric["job"] === "b") l.batches[2] = null;
    });
    const r = run(await checkpointOf(f), lines, (id) => f.answer(id));
    assert.equal(r.ok, false);
    assert.equal(r.failures.length, 1);
    assert.equal(r.failures[0]!.batchId, null);
    assert.match(r.failures[0]!.reason, /^series up\{job="b"\}: 1 stored point name no batch/);
  });

  it("fails a point whose origin is not its batch's", async () => {
    const f = new Fixture().add(makeBatch("b-0", labels("up", "a"), 1, 3)).add(makeBatch("b-inf", labels("up", "b"), 1, 3, { origin: "inferred" }));
    const lines = exportLines(f.batches, (l) => {
      if (l.metric["job"] === "b") l.origins[0] = "original";
    });
    const r = run(await checkpointOf(f), lines, (id) => f.answer(id));
    assert.equal(r.failures.length, 1);
    assert.match(r.failures[0]!.reason, /^batch b-inf: stored point up\{job="b"\} @\S+ is marked original, the signed batch is inferred$/);
  });

  it("fails a stored point the signed batch does not hold", async () => {
    const f = standard();
    const lines = exportLines(f.batches, (l) => {
      if (l.metric["job"] === "b") l.timestamps_ns[0] = (BigInt(l.timestamps_ns[0]!) + 1n).toString();
    });
    const r = run(await checkpointOf(f), lines, (id) => f.answer(id));
    assert.match(reasons(r), /^batch b-1: stored point up\{job="b"\} @\S+ is not in the signed batch$/);
  });

  it("compares values bit for bit except NaN payloads, which the export cannot carry", async () => {
    const b = new BatchBuilder(DEFAULT_LIMITS);
    const s = labels("odd", "a");
    b.add(s, 1n, Number.NaN);
    b.add(s, 2n, 0);
    b.add(s, 3n, Infinity);
    const batch = b.build();
    const enc = encodeWithDigest(batch);
    const fb: FixtureBatch = {
      id: "b-odd",
      batch,
      bytes: enc.bytes,
      entry: encodeLeaf({ batchId: "b-odd", sha256: enc.sha256, shardId: 0, hlc: 1n, sampleCount: 3, origin: "original" }),
      committedMs: 0,
    };
    const f = new Fixture().add(fb);
    const cp = await checkpointOf(f);
    assert.equal(run(cp, exportLines(f.batches), (id) => f.answer(id)).ok, true);
    // JSON.stringify writes -0 as 0; the node writes "-0" (read-routes.ts writeValue).
    const negZero = exportLines(f.batches).map((l) => l.replace('"values":["NaN",0,', '"values":["NaN",-0,'));
    assert.notDeepEqual(negZero, exportLines(f.batches));
    assert.match(reasons(run(cp, negZero, (id) => f.answer(id))), /has value -0, the signed batch says 0/);
  });

  it("names the first few bad points of a batch and counts the rest", async () => {
    const f = new Fixture().add(makeBatch("b-big", labels("up", "a"), 0, 30));
    const lines = exportLines(f.batches, (l) => {
      l.values = l.values.map((v) => (v as number) + 1);
    });
    const r = run(await checkpointOf(f), lines, (id) => f.answer(id));
    assert.equal(r.failures.length, POINT_EXAMPLES_PER_BATCH + 1);
    assert.equal(r.failures.at(-1)!.reason, `batch b-big: ${30 - POINT_EXAMPLES_PER_BATCH} more stored points differ from the signed batch`);
  });

  it("caps the failure list and counts the rest", async () => {
    const f = new Fixture();
    for (let i = 0; i < 5; i++) f.add(makeBatch(`b-${i}`, labels("up", `j${i}`), 0, 1));
    const cp = await checkpointOf(f);
    const v = new PointVerifier({ checkpoint: cp, consistency: "first-seen", failuresMax: 2 });
    const lines = exportLines(f.batches);
    for (const l of lines) v.addSeries(l);
    for (const id of v.unansweredBatchIds()) v.addBatch({ batchId: id, status: "unknown" });
    for (const l of lines) v.checkSeries(l);
    const r = v.report();
    assert.equal(r.failures.length, 2);
    assert.equal(r.failuresOmitted, 3);
    assert.equal(r.ok, false);
  });

  it("fails batches the node never answered, and an answer for the wrong size", async () => {
    const f = standard();
    const cp = await checkpointOf(f);
    const v = new PointVerifier({ checkpoint: cp, consistency: "first-seen" });
    const lines = exportLines(f.batches);
    for (const l of lines) v.addSeries(l);
    v.addProofResponse(["b-0"], { size: 3, batches: [f.answer("b-0", 3)] });
    for (const l of lines) v.checkSeries(l);
    const r = v.report();
    assert.match(reasons(r), /batch b-0: the node's proof answer is unusable: the proofs are for tree size 3, not the checkpoint's 4/);
    assert.match(reasons(r), /batch b-1: no proof answer from the node/);
    assert.equal(r.batches.failed, 4);
  });

  it("reports a malformed export line", async () => {
    const f = standard();
    const cp = await checkpointOf(f);
    const r = run(cp, [...exportLines(f.batches), '{"metric":{}', JSON.stringify({ metric: {}, values: [1], timestamps_ns: [], origins: [], batches: [] })], (id) => f.answer(id));
    assert.match(reasons(r), /export line 4 is malformed: .*not JSON/);
    assert.match(reasons(r), /export line 5 is malformed: .*timestamps_ns has 0 entries, values has 1/);
  });

  it("accepts a checkpoint problem as a failure of the whole run", async () => {
    const f = standard();
    const cp = await checkpointOf(f);
    const v = new PointVerifier({ checkpoint: cp, consistency: "rewritten", checkpointProblems: ["history rewritten: …"] });
    const r = v.report();
    assert.equal(r.ok, false);
    assert.equal(r.consistency, "rewritten");
    assert.deepEqual(r.failures, [{ batchId: null, reason: "history rewritten: …" }]);
  });
});

describe("verifyCheckpoint", () => {
  it("rejects a checkpoint signed by a foreign key", async () => {
    const f = standard();
    const c = verifyCheckpoint(await f.note(undefined, foreign), KEYS, ORIGIN);
    assert.equal(c.checkpoint, null);
    assert.equal(c.problems.length, 1);
    assert.match(c.problems[0]!, /^checkpoint not signed by a trusted key \(signed by: n1\+[0-9a-f]{8}\)$/);
    // Trusting the foreign key instead opens it.
    assert.ok(verifyCheckpoint(await f.note(undefined, foreign), [keyOf(foreign)], ORIGIN).checkpoint !== null);
  });

  it("rejects another log's checkpoint and an altered note", async () => {
    const f = standard();
    const note = await f.note();
    assert.match(verifyCheckpoint(note, KEYS, checkpointOrigin("other")).problems[0]!, /^checkpoint is from another log/);
    const altered = note.replace(/\n4\n/, "\n5\n");
    const c = verifyCheckpoint(altered, KEYS, ORIGIN);
    assert.equal(c.checkpoint, null);
    assert.match(c.problems[0]!, /signature does not verify/);
  });

  it("accepts a checkpoint that extends the one seen before", async () => {
    const f = standard();
    const seen = await checkpointOf(f, 2);
    const c = verifyCheckpoint(await f.note(4), KEYS, ORIGIN, seen, proofToHex(f.log.consistencyProof(2, 4)));
    assert.deepEqual(c.problems, []);
    assert.equal(c.consistent, true);
    assert.equal(consistencyOf(c), "consistent");
    // Same checkpoint again: consistent with no proof.
    assert.equal(verifyCheckpoint(await f.note(2), KEYS, ORIGIN, seen).consistent, true);
  });

  it("detects a rewritten history: a larger checkpoint of another log", async () => {
    const honest = standard();
    const seen = await checkpointOf(honest, 3);
    const forged = new Fixture()
      .add(honest.batches[0]!)
      .add(makeBatch("b-1", labels("up", "b"), 11, 5)) // another leaf where b-1 was
      .add(honest.batches[2]!)
      .add(honest.batches[3]!)
      .add(makeBatch("b-4", labels("up", "e"), 1, 1));
    const c = verifyCheckpoint(await forged.note(5), KEYS, ORIGIN, seen, proofToHex(forged.log.consistencyProof(3, 5)));
    assert.equal(c.consistent, false);
    assert.equal(consistencyOf(c), "rewritten");
    assert.deepEqual(c.problems, ["history rewritten: checkpoint 5 is not consistent with checkpoint 3 seen before (the consistency proof does not verify)"]);
    assert.ok(c.checkpoint !== null, "the checkpoint itself is signed and parses");
  });

  it("treats a smaller checkpoint as a rewrite unless proved a prefix", async () => {
    const f = standard();
    const seen = await checkpointOf(f, 4);
    const c = verifyCheckpoint(await f.note(2), KEYS, ORIGIN, seen);
    assert.equal(consistencyOf(c), "rewritten");
    assert.match(c.problems[0]!, /^history rewritten: checkpoint 2 is not consistent with checkpoint 4 seen before/);
    // A lagging replica: a node further ahead proves 2 is a prefix of 4.
    const lag = verifyCheckpoint(await f.note(2), KEYS, ORIGIN, seen, proofToHex(f.log.consistencyProof(2, 4)));
    assert.equal(consistencyOf(lag), "consistent");
  });

  it("treats the same size with another root as a rewrite", async () => {
    const f = standard();
    const seen = await checkpointOf(f, 4);
    const g = new Fixture().add(f.batches[0]!).add(f.batches[1]!).add(f.batches[3]!).add(f.batches[2]!);
    const c = verifyCheckpoint(await g.note(4), KEYS, ORIGIN, seen, []);
    assert.equal(consistencyOf(c), "rewritten");
    assert.match(c.problems[0]!, /^history rewritten: checkpoint 4 is not consistent with checkpoint 4 seen before/);
  });

  it("refuses a larger checkpoint with no proof", async () => {
    const f = standard();
    const c = verifyCheckpoint(await f.note(4), KEYS, ORIGIN, await checkpointOf(f, 2));
    assert.equal(c.consistent, false);
  });
});

describe("trust state", () => {
  it("keeps the newest checkpoints, one per size, sorted", async () => {
    const f = standard();
    let state: TrustState = { origin: ORIGIN, keys: KEYS, checkpoints: [] };
    for (const size of [3, 1, 4, 3]) state = recordCheckpoint(state, await checkpointOf(f, size));
    assert.deepEqual(state.checkpoints.map((c) => c.size), [1, 3, 4]);
    assert.deepEqual(parseTrustState(JSON.parse(JSON.stringify(state)), "state.json"), state);
    state = recordCheckpoint(state, await checkpointOf(f, 2), 2);
    assert.deepEqual(state.checkpoints.map((c) => c.size), [3, 4]);
    assert.equal(previousCheckpoint(state, 3)?.size, 3);
    assert.equal(previousCheckpoint(state, 9)?.size, 4);
    assert.throws(() => parseTrustState({ origin: ORIGIN, keys: KEYS, checkpoints: [state.checkpoints[1], state.checkpoints[0]] }, "s.json"), /sorted by size/);
    assert.throws(() => parseTrustState({ origin: ORIGIN, keys: "x", checkpoints: [] }, "s.json"), /keys must be an array/);
  });
});

describe("LineSplitter", () => {
  it("splits across chunks, keeps a final unterminated line, refuses long lines", () => {
    const s = new LineSplitter(10, "test input");
    assert.deepEqual(s.push(Buffer.from("ab")), []);
    assert.deepEqual(s.push(Buffer.from("c\nde\n\nf")), ["abc", "de", ""]);
    assert.deepEqual(s.push(Buffer.from("é")), []);
    assert.deepEqual(s.end(), ["fé"]);
    assert.throws(() => new LineSplitter(4, "test input").push(Buffer.from("12345\n")), /longer than the limit of 4 bytes/);
  });
});

describe("bundles", () => {
  const dir = mkdtempSync(join(tmpdir(), "hqts-verify-test-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function writeBundle(file: string, f: Fixture, lines: readonly string[], maxBytes?: number): Promise<void> {
    const cp = await checkpointOf(f);
    const w = await BundleWriter.open(file, { origin: ORIGIN, keys: KEYS, checkpoint: { origin: ORIGIN, size: cp.size, root: cp.root, timeMs: cp.timeMs, note: cp.note } }, maxBytes);
    try {
      for (const l of lines) await w.addSeriesLine(l);
      for (const b of f.batches) await w.addBatch(f.answer(b.id));
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
  }

  it("round-trips through a file and verifies offline", async () => {
    const f = standard();
    const file = join(dir, "ok.json.gz");
    await writeBundle(file, f, exportLines(f.batches));
    const parsed = JSON.parse(gunzipSync(readFileSync(file)).toString("utf8")) as { format: string; series: unknown[]; batches: unknown[] };
    assert.equal(parsed.format, "hqts-bundle/1");
    assert.equal(parsed.series.length, 3);
    assert.equal(parsed.batches.length, 4);
    const r = await verifyBundle(file, { trustedKeys: KEYS });
    assert.deepEqual(r.warnings, []);
    assert.equal(r.report.ok, true, reasons(r.report));
    assert.equal(r.report.samplesVerified, 17);
    assert.equal(r.report.consistency, "first-seen");
  });

  it("warns when only the bundle's own keys vouch for it, and refuses foreign keys when pinned", async () => {
    const f = standard();
    const file = join(dir, "keys.json.gz");
    await writeBundle(file, f, exportLines(f.batches));
    const own = await verifyBundle(file, { trustedKeys: null });
    assert.deepEqual(own.warnings, [BUNDLE_KEYS_WARNING]);
    assert.equal(own.report.ok, true);
    const pinned = await verifyBundle(file, { trustedKeys: [keyOf(foreign)] });
    assert.equal(pinned.report.ok, false);
    assert.equal(pinned.report.checkpoint, null);
    assert.match(reasons(pinned.report), /checkpoint not signed by a trusted key/);
  });

  it("compares with a checkpoint of the same size seen before, else says unchecked", async () => {
    const f = standard();
    const file = join(dir, "seen.json.gz");
    await writeBundle(file, f, exportLines(f.batches));
    const other = new Fixture().add(f.batches[1]!).add(f.batches[0]!).add(f.batches[2]!).add(f.batches[3]!);
    const forged = { ...(await checkpointOf(other)), note: "" };
    assert.equal((await verifyBundle(file, { trustedKeys: KEYS, known: [forged] })).report.consistency, "rewritten");
    const older = { ...(await checkpointOf(f, 2)) };
    const r = await verifyBundle(file, { trustedKeys: KEYS, known: [older] });
    assert.equal(r.report.consistency, "unchecked");
    assert.equal(r.report.ok, true);
  });

  it("finds a changed value in a bundle", async () => {
    const f = standard();
    const file = join(dir, "bad.json.gz");
    await writeBundle(
      file,
      f,
      exportLines(f.batches, (l) => {
        if (l.metric["job"] === "b") l.values[4] = 0;
      }),
    );
    const r = await verifyBundle(file, { trustedKeys: KEYS });
    assert.equal(r.report.ok, false);
    assert.match(reasons(r.report), /^batch b-1: stored point up\{job="b"\} @\S+ has value 0, the signed batch says 14$/);
  });

  it("refuses a bundle above its size limit and leaves no file behind", async () => {
    const f = standard();
    const file = join(dir, "big.json.gz");
    await assert.rejects(writeBundle(file, f, exportLines(f.batches), 2000), /bundle size \(uncompressed bytes\) exceeds the limit of 2000/);
    assert.throws(() => readFileSync(file), /ENOENT/);
    await writeBundle(file, f, exportLines(f.batches));
    await assert.rejects(async () => {
      for await (const _ of readBundle(file, 2000)) void _;
    }, /exceeds the limit of 2000/);
  });

  it("refuses truncated, damaged and non-gzip bundles", async () => {
    const f = standard();
    const file = join(dir, "t.json.gz");
    await writeBundle(file, f, exportLines(f.batches));
    const text = gunzipSync(readFileSync(file)).toString("utf8");
    const cut = join(dir, "cut.json.gz");
    writeFileSync(cut, gzipSync(text.slice(0, text.lastIndexOf("]}"))));
    await assert.rejects(verifyBundle(cut, { trustedKeys: KEYS }), /ends early/);
    const junk = join(dir, "junk.json.gz");
    writeFileSync(junk, gzipSync(text.replace('"series":[', '"series": [')));
    await assert.rejects(verifyBundle(junk, { trustedKeys: KEYS }), /bundle line 2: expected "series":\[/);
    const plain = join(dir, "plain.json");
    writeFileSync(plain, text);
    await assert.rejects(verifyBundle(plain, { trustedKeys: KEYS }), /is not a gzip'ed bundle/);
  });
});
