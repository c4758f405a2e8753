import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { signCheckpoint } from "../../src/provenance/checkpoint.js";
import { compareLeaves, decodeLeaf, encodeLeaf, type LeafEntry } from "../../src/provenance/leaf.js";
import { Ledger } from "../../src/provenance/ledger.js";
import { leafHash, MerkleLog, verifyInclusion, verifyConsistency } from "../../src/provenance/merkle.js";
import { ed25519Signer, newSignerKey, parseSignerKey, parseVerifierKey, verifierKeyString } from "../../src/provenance/note.js";

const ORIGIN = "hqts/test";
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), "hqts-ledger-"));
  dirs.push(d);
  return d;
};

const key = parseSignerKey(newSignerKey("test/n1"));
const signer = ed25519Signer(key.name, key.seed);
const verifier = parseVerifierKey(verifierKeyString(key.name, key.publicKey));
const foreign = parseSignerKey(newSignerKey("test/n1"));

const entry = (i: number): LeafEntry => ({ batchId: `b-${i}`, sha256: i.toString(16).padStart(64, "0"), shardId: 0, hlc: BigInt(1000 + i), sampleCount: i + 1, origin: i % 5 === 0 ? "inferred" : "original" });

/** Appends entries [from, to) the way a follower does: a note signed over the resulting root. */
async function appendRange(ledger: Ledger, from: number, to: number, s = signer): Promise<void> {
  const entries = Array.from({ length: to - from }, (_, k) => encodeLeaf(entry(from + k)));
  const scratch = new MerkleLog();
  for (let i = 0; i < to; i++) scratch.append(leafHash(encodeLeaf(entry(i))));
  const note = await signCheckpoint({ origin: ORIGIN, treeSize: to, rootHash: scratch.root(), timeMs: 1 }, s);
  await ledger.append(entries, note, [verifier]);
}

describe("provenance/leaf", () => {
  it("round-trips and refuses what is not canonical", () => {
    for (let i = 0; i < 20; i++) assert.deepEqual(decodeLeaf(encodeLeaf(entry(i))), entry(i));
    const bytes = encodeLeaf(entry(3));
    assert.throws(() => decodeLeaf(new Uint8Array([...bytes, 0])), /after the entry/);
    const bad = bytes.slice();
    bad[bad.length - 1] = 7;
    assert.throws(() => decodeLeaf(bad), /origin/);
    assert.throws(() => encodeLeaf({ ...entry(1), sha256: "xyz" }), /sha256/);
    assert.throws(() => encodeLeaf({ ...entry(1), batchId: "" }), /batch id/);
  });
  it("orders by hlc, then batch id", () => {
    const a = { ...entry(1), hlc: 5n, batchId: "b" };
    const b = { ...entry(2), hlc: 5n, batchId: "a" };
    const c = { ...entry(3), hlc: 4n, batchId: "z" };
    assert.deepEqual([a, b, c].sort(compareLeaves).map((e) => e.batchId), ["z", "a", "b"]);
  });
});

describe("provenance/ledger", () => {
  it("appends with checkpoints, proves, reopens the same", async () => {
    const dir = tmp();
    const l = await Ledger.open(dir, ORIGIN);
    assert.equal(l.size, 0);
    await appendRange(l, 0, 5);
    const root5 = l.root();
    await appendRange(l, 5, 12);
    assert.equal(l.size, 12);
    assert.equal(l.indexOf("b-7"), 7);
    assert.deepEqual(decodeLeaf(await l.entryBytes(7)), entry(7));
    assert.ok(verifyInclusion(leafHash(await l.entryBytes(7)), 7, 12, l.inclusionProof(7, 12), l.root()));
    assert.ok(verifyConsistency(5, 12, root5, l.root(), l.consistencyProof(5, 12)));
    const root = l.root();
    await l.close();
    const again = await Ledger.open(dir, ORIGIN);
    assert.equal(again.size, 12);
    assert.deepEqual(again.root(), root);
    assert.equal(again.latest()!.checkpoint.treeSize, 12);
    assert.equal(again.checkpoints().length, 2);
    await again.close();
  });

  it("refuses leaves that do not reproduce the signed root, a foreign signature, a wrong size; changes nothing", async () => {
    const l = await Ledger.open(tmp(), ORIGIN);
    await appendRange(l, 0, 4);
    const root = l.root();
    // Right size, wrong leaves.
    const wrong = [encodeLeaf({ ...entry(4), sampleCount: 99 })];
    const scratch = new MerkleLog();
    for (let i = 0; i < 5; i++) scratch.append(leafHash(encodeLeaf(entry(i))));
    const note = await signCheckpoint({ origin: ORIGIN, treeSize: 5, rootHash: scratch.root(), timeMs: 1 }, signer);
    await assert.rejects(l.append(wrong, note, [verifier]), /do not reproduce/);
    assert.equal(l.size, 4);
    assert.deepEqual(l.root(), root);
    // A foreign key (same name) is no signature we trust.
    await assert.rejects(appendRange(l, 4, 5, ed25519Signer(foreign.name, foreign.seed)));
    assert.equal(l.size, 4);
    // A checkpoint of another size than the leaves.
    await assert.rejects(l.append([encodeLeaf(entry(4)), encodeLeaf(entry(5))], note, [verifier]), /size/);
    // A batch already in the log.
    await assert.rejects(l.append([encodeLeaf(entry(1))], note, [verifier]), /already in the log/);
    assert.equal(l.size, 4);
    await appendRange(l, 4, 6);
    assert.equal(l.size, 6);
    await l.close();
  });

  it("stage then abort leaves the tree as it was; stage then commit keeps it", async () => {
    const l = await Ledger.open(tmp(), ORIGIN);
    await appendRange(l, 0, 3);
    const root3 = l.root();
    const staged = await l.stage([encodeLeaf(entry(3)), encodeLeaf(entry(4))]);
    assert.equal(l.size, 5);
    staged.abort();
    assert.equal(l.size, 3);
    assert.deepEqual(l.root(), root3);
    assert.equal(l.has("b-3"), false);
    const s2 = await l.stage([encodeLeaf(entry(3))]);
    const cp = { origin: ORIGIN, treeSize: 4, rootHash: s2.root, timeMs: 2 };
    await s2.commit(await signCheckpoint(cp, signer), cp);
    assert.equal(l.size, 4);
    assert.equal(l.indexOf("b-3"), 3);
    await l.close();
  });

  it("a torn or damaged leaves file is cut back to the newest checkpoint its leaves reproduce", async () => {
    const dir = tmp();
    const l = await Ledger.open(dir, ORIGIN);
    await appendRange(l, 0, 5);
    const root5 = l.root();
    await appendRange(l, 5, 9);
    await l.close();
    const path = join(dir, "leaves.hql");
    // Torn: half of the last record gone. Leaves 5..8 lose their checkpoint; the one at 5 still holds.
    truncateSync(path, statSync(path).size - 10);
    let again = await Ledger.open(dir, ORIGIN);
    assert.equal(again.size, 5);
    assert.deepEqual(again.root(), root5);
    // It appends again from there.
    await appendRange(again, 5, 9);
    await again.close();
    // A flipped byte in leaf 2: everything from it is cut, no checkpoint is left that the rest reproduces.
    const bytes = readFileSync(path);
    const at = 8 + 2 * (bytes.readUInt32LE(4) + 8) + 12;
    bytes[at] = bytes[at]! ^ 0xff;
    writeFileSync(path, bytes);
    again = await Ledger.open(dir, ORIGIN);
    assert.equal(again.size, 0);
    await again.close();
  });
});
