import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { sha256, toHex } from "../../src/core/hash.js";
import { checkpointOrigin, formatCheckpoint, openCheckpoint, parseCheckpoint, signCheckpoint, type Checkpoint } from "../../src/provenance/checkpoint.js";
import { ProvenanceError, isProvenanceError, type ProvenanceReason } from "../../src/provenance/errors.js";
import { loadOrCreateNodeKey, nodeVerifierKeys, rotateNodeKey, verifierFromKeyString } from "../../src/provenance/keys.js";
import {
  NOTE_BYTES_MAX,
  NOTE_SIGNATURES_MAX,
  ed25519Signer,
  keyId,
  newSignerKey,
  parseNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  signerKeyString,
  verifierKeyString,
  verifyNote,
  type Signer,
  type Verifier,
} from "../../src/provenance/note.js";
import { formatStatement, openStatement, parseStatement, signStatement, type ReceiptStatement } from "../../src/provenance/statement.js";

const seed = (b: number) => new Uint8Array(32).fill(b);
const verifierOf = (s: Signer): Verifier => parseVerifierKey(verifierKeyString(s.name, s.publicKey));

/** Asserts fn throws a ProvenanceError with this reason (and, when given, this line). */
function throwsReason(fn: () => unknown, reason: ProvenanceReason, line?: number): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProvenanceError, `expected ProvenanceError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.equal(e.retryable, false);
    if (line !== undefined) {
      assert.equal(e.location.line, line, e.message);
      assert.match(e.message, new RegExp(`line ${line}\\b`));
    }
    return true;
  });
}

async function rejectsReason(p: Promise<unknown>, reason: ProvenanceReason): Promise<void> {
  await assert.rejects(p, (e: unknown) => isProvenanceError(e, reason));
}

describe("provenance/note: Go note package interop (Ed25519 vectors)", () => {
  // golang.org/x/mod/sumdb/note note_test.go (TestSign, TestOpen).
  const skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
  const vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
  const enochKey = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
  const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const peterSig = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
  const enochSig = "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

  it("derives the published verifier key and key id from the signer key", () => {
    const s = parseSignerKey(skey);
    assert.equal(s.name, "PeterNeumann");
    assert.equal(toHex(s.keyId), "c74f20a3");
    assert.equal(verifierKeyString(s.name, s.publicKey), vkey);
    assert.equal(signerKeyString(s.name, s.seed), skey);
    assert.equal(toHex(keyId(s.name, s.publicKey)), "c74f20a3");
  });
  it("signs byte-for-byte like Go (Ed25519 is deterministic)", async () => {
    assert.equal(await signNote(text, [parseSignerKey(skey)]), `${text}\n${peterSig}`);
  });
  it("verifies Go's signatures by two keys", () => {
    const v = verifyNote(`${text}\n${peterSig}${enochSig}`, [parseVerifierKey(vkey), parseVerifierKey(enochKey)]);
    assert.deepEqual(v.verifiedBy, ["PeterNeumann", "EnochRoot"]);
    assert.equal(v.text, text);
  });
  it("treats a PeterNeumann line with another key id (c80ded47) as unknown", () => {
    // This line was offered as the vector; its key id is not c74f20a3, so it is not a signature by this key.
    const foreign = "\u2014 PeterNeumann yA3tR+pnUxgtDhkshs2vaGXqkFqR6k6jLd0oTgd1k7Kas98D4XjE1T0gVcaLEBwV35Ptt1uSQc1KwOtu5Mfr4ZpqOQQ=\n";
    assert.equal(parseNote(`${text}\n${foreign}`).signatures[0]!.keyIdHex, "c80ded47");
    throwsReason(() => verifyNote(`${text}\n${foreign}`, [parseVerifierKey(vkey)]), "unknown_signer");
    assert.deepEqual(verifyNote(`${text}\n${foreign}${peterSig}`, [parseVerifierKey(vkey)]).verifiedBy, ["PeterNeumann"]);
  });
  it("refuses key strings whose id does not match, or that are malformed", () => {
    throwsReason(() => parseVerifierKey(vkey.replace("c74f20a3", "c74f20a4")), "malformed_key");
    throwsReason(() => parseSignerKey(skey.replace("c74f20a3", "00000000")), "malformed_key");
    throwsReason(() => parseVerifierKey("PeterNeumann+c74f20a3"), "malformed_key");
    throwsReason(() => parseVerifierKey(vkey.replace("+ARpc", "+AhpC")), "malformed_key"); // algorithm 2
    throwsReason(() => parseSignerKey(vkey), "malformed_key");
  });
});

describe("provenance/note: sign and verify", () => {
  const alice = ed25519Signer("alice.example/log", seed(1));
  const bob = ed25519Signer("bob", seed(2));
  const text = "hello\nworld\n";

  it("round-trips with one and with several signers; bytes and strings alike", async () => {
    const n = await signNote(text, [alice, bob]);
    assert.deepEqual(verifyNote(n, [verifierOf(alice), verifierOf(bob)]).verifiedBy, ["alice.example/log", "bob"]);
    assert.deepEqual(verifyNote(new TextEncoder().encode(n), [verifierOf(bob)]).verifiedBy, ["bob"]);
    const p = parseNote(n);
    assert.equal(p.text, text);
    assert.deepEqual(p.signatures.map((s) => [s.name, s.line]), [["alice.example/log", 4], ["bob", 5]]);
  });
  it("accepts an async (KMS-like) signer", async () => {
    const remote: Signer = { name: bob.name, keyId: bob.keyId, publicKey: bob.publicKey, sign: async (m) => bob.sign(m) };
    assert.equal(await signNote(text, [remote]), await signNote(text, [bob]));
    const liar: Signer = { name: bob.name, keyId: bob.keyId, publicKey: bob.publicKey, sign: async (m) => alice.sign(m) };
    await rejectsReason(signNote(text, [liar]), "signature_invalid");
  });
  it("rejects tampered text", async () => {
    const n = await signNote(text, [alice]);
    throwsReason(() => verifyNote(n.replace("world", "World"), [verifierOf(alice)]), "signature_invalid", 4);
  });
  it("rejects a tampered signature", async () => {
    const n = await signNote(text, [alice]);
    const [head, b64] = n.trimEnd().split(" ").slice(-2) as [string, string];
    const raw = Buffer.from(b64, "base64");
    raw[10]! ^= 0x01;
    const tampered = n.replace(`${head} ${b64}`, `${head} ${raw.toString("base64")}`);
    throwsReason(() => verifyNote(tampered, [verifierOf(alice)]), "signature_invalid", 4);
  });
  it("rejects a note by a foreign key with the same name (unknown key id)", async () => {
    const impostor = ed25519Signer(alice.name, seed(9));
    assert.notEqual(toHex(impostor.keyId), toHex(alice.keyId));
    throwsReason(() => verifyNote(Buffer.from(""), [verifierOf(alice)]), "malformed_note");
    const n = await signNote(text, [impostor]);
    throwsReason(() => verifyNote(n, [verifierOf(alice)]), "unknown_signer");
    // Signatures by unknown keys are skipped, not fatal.
    assert.deepEqual(verifyNote(await signNote(text, [impostor, alice]), [verifierOf(alice)]).verifiedBy, [alice.name]);
  });
  it("refuses a second signature by one trusted key", async () => {
    const n = await signNote(text, [alice, alice]);
    throwsReason(() => verifyNote(n, [verifierOf(alice)]), "malformed_note", 5);
  });
  it("refuses malformed notes", () => {
    const sig = "\u2014 bob AAAAAAE=\n";
    throwsReason(() => parseNote(`hello\n${sig}`), "malformed_note"); // no blank line
    throwsReason(() => parseNote("hello\n\n"), "malformed_note", 3); // no signatures
    throwsReason(() => parseNote(`\n\n${sig}`), "malformed_note", 1); // empty text
    throwsReason(() => parseNote(`a\n\nb\n\n${sig}`), "malformed_note", 3); // blank line inside
    throwsReason(() => parseNote(`a\tb\n\n${sig}`), "malformed_note", 1); // control character
    throwsReason(() => parseNote(`a\n\n- bob AAAAAAE=\n`), "malformed_note", 3); // hyphen, not EM DASH
    throwsReason(() => parseNote(`a\n\n\u2014 bob AAAAAA==\n`), "malformed_note", 3); // no signature after the id
    throwsReason(() => parseNote(`a\n\n\u2014 bob AAAAAAE\n`), "malformed_note", 3); // unpadded base64
    throwsReason(() => parseNote(`a\n\n\u2014 b+b AAAAAAE=\n`), "malformed_note", 3); // "+" in name
    throwsReason(() => parseNote(`a\n\n${sig.slice(0, -1)}`), "malformed_note"); // no final newline
    throwsReason(() => parseNote(Uint8Array.of(0x61, 0xff, 0x0a, 0x0a)), "malformed_note"); // not UTF-8
  });
  it("enforces the size and signature-count limits", async () => {
    const sig = "\u2014 bob AAAAAAE=\n";
    throwsReason(() => parseNote(`a\n\n${sig.repeat(NOTE_SIGNATURES_MAX + 1)}`), "note_too_large");
    assert.equal(parseNote(`a\n\n${sig.repeat(NOTE_SIGNATURES_MAX)}`).signatures.length, NOTE_SIGNATURES_MAX);
    throwsReason(() => parseNote(`${"x".repeat(NOTE_BYTES_MAX)}\n\n${sig}`), "note_too_large");
    await rejectsReason(signNote(`${"x".repeat(NOTE_BYTES_MAX)}\n`, [alice]), "note_too_large");
    await rejectsReason(signNote("no newline", [alice]), "malformed_note");
    await rejectsReason(signNote(text, []), "malformed_note");
  });
  it("makes distinct random keys", () => {
    const a = parseSignerKey(newSignerKey("n1"));
    const b = parseSignerKey(newSignerKey("n1"));
    assert.notEqual(toHex(a.publicKey), toHex(b.publicKey));
  });
});

describe("provenance/checkpoint", () => {
  const log = ed25519Signer("hqts/prod", seed(3));
  const origin = checkpointOrigin("prod");
  const cp: Checkpoint = { origin, treeSize: 1234, rootHash: sha256(new Uint8Array([7])), timeMs: 1_700_000_000_000 };
  const rootB64 = Buffer.from(cp.rootHash).toString("base64");

  it("formats the C2SP layout and round-trips through a signed note", async () => {
    assert.equal(formatCheckpoint(cp), `hqts/prod\n1234\n${rootB64}\ntime 1700000000000\n`);
    const opened = openCheckpoint(await signCheckpoint(cp, log), [verifierOf(log)], origin);
    assert.deepEqual(opened, { ...cp, signedBy: ["hqts/prod"] });
  });
  it("accepts the empty tree and ignores unknown extension lines", () => {
    const empty = parseCheckpoint(`${origin}\n0\n${rootB64}\ntime 0\nother extension\n`, origin);
    assert.equal(empty.treeSize, 0);
    assert.equal(empty.timeMs, 0);
  });
  it("rejects a checkpoint signed with a foreign key", async () => {
    const foreign = ed25519Signer("hqts/prod", seed(4)); // same name, other key
    throwsReason(() => openCheckpoint(Buffer.from(""), [verifierOf(log)], origin), "malformed_note");
    const n = await signCheckpoint(cp, foreign);
    throwsReason(() => openCheckpoint(n, [verifierOf(log)], origin), "unknown_signer");
    const other = await signCheckpoint(cp, ed25519Signer("someone-else", seed(5)));
    throwsReason(() => openCheckpoint(other, [verifierOf(log)], origin), "unknown_signer");
  });
  it("rejects a tampered tree size", async () => {
    const n = await signCheckpoint(cp, log);
    throwsReason(() => openCheckpoint(n.replace("\n1234\n", "\n1235\n"), [verifierOf(log)], origin), "signature_invalid", 6);
  });
  it("rejects malformed checkpoints, naming the line", () => {
    const ok = (size: string, root: string, rest = "time 1\n", o: string = origin) => `${o}\n${size}\n${root}\n${rest}`;
    throwsReason(() => parseCheckpoint(ok("01234", rootB64), origin), "malformed_checkpoint", 2); // leading zero
    throwsReason(() => parseCheckpoint(ok("-1", rootB64), origin), "malformed_checkpoint", 2);
    throwsReason(() => parseCheckpoint(ok("1e3", rootB64), origin), "malformed_checkpoint", 2);
    throwsReason(() => parseCheckpoint(ok("99999999999999999999", rootB64), origin), "malformed_checkpoint", 2);
    throwsReason(() => parseCheckpoint(ok("5", "not*base64!"), origin), "malformed_checkpoint", 3); // bad base64
    throwsReason(() => parseCheckpoint(ok("5", rootB64.slice(0, -1)), origin), "malformed_checkpoint", 3); // unpadded
    throwsReason(() => parseCheckpoint(ok("5", Buffer.alloc(31).toString("base64")), origin), "malformed_checkpoint", 3); // 31 bytes
    throwsReason(() => parseCheckpoint(ok("5", Buffer.alloc(33).toString("base64")), origin), "malformed_checkpoint", 3);
    throwsReason(() => parseCheckpoint(ok("5", rootB64).slice(0, -1), origin), "malformed_checkpoint", 4); // no final newline
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "", "hqts/staging"), origin), "malformed_checkpoint", 4); // no time line
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "time 01\n"), origin), "malformed_checkpoint", 4);
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "time 1\ntime 2\n"), origin), "malformed_checkpoint", 5);
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "x\ntime 1\n"), origin), "malformed_checkpoint", 4); // time not first
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "time 1\n\n"), origin), "malformed_checkpoint", 5); // empty extension
    throwsReason(() => parseCheckpoint(`${origin}\n5\n`, origin), "malformed_checkpoint", 3);
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "time 1\n", "hqts/staging"), origin), "origin_mismatch", 1); // wrong origin
    throwsReason(() => parseCheckpoint(ok("5", rootB64, "time 1\n", ""), origin), "malformed_checkpoint", 1);
  });
  it("rejects a validly signed checkpoint of another log", async () => {
    const n = await signCheckpoint({ ...cp, origin: checkpointOrigin("staging") }, log);
    throwsReason(() => openCheckpoint(n, [verifierOf(log)], origin), "origin_mismatch", 1);
  });
});

describe("provenance/statement", () => {
  const gw = ed25519Signer("gw-1", seed(6));
  const st: ReceiptStatement = {
    cluster: "prod",
    batchId: "req-42:a/b",
    sha256: "ab".repeat(32),
    shardId: 3,
    hlc: "111550155929321472",
    samples: 500,
    gateway: "node-1",
    timeMs: 1_700_000_000_123,
    mmdMs: 60_000,
  };
  const text = formatStatement(st);

  it("formats the documented text", () => {
    assert.equal(
      text,
      `hqts-receipt/v1\ncluster prod\nbatch req-42:a/b\nsha256 ${"ab".repeat(32)}\nshard 3\nhlc 111550155929321472\nsamples 500\ngateway node-1\ntime 1700000000123\nmmd 60000\n`,
    );
  });
  it("round-trips through a signed note", async () => {
    const n = await signStatement(st, gw);
    assert.deepEqual(openStatement(n, [verifierOf(gw)]), { ...st, signedBy: ["gw-1"] });
  });
  it("rejects a tampered statement and a foreign signer", async () => {
    const n = await signStatement(st, gw);
    throwsReason(() => openStatement(n.replace("samples 500", "samples 501"), [verifierOf(gw)]), "signature_invalid", 12);
    const foreign = await signStatement(st, ed25519Signer("gw-1", seed(7)));
    throwsReason(() => openStatement(foreign, [verifierOf(gw)]), "unknown_signer");
  });
  it("parses strictly, naming the line", () => {
    const swap = (from: string, to: string) => text.replace(from, to);
    throwsReason(() => parseStatement(swap("hqts-receipt/v1", "hqts-receipt/v2")), "malformed_statement", 1);
    throwsReason(() => parseStatement(swap("batch req-42:a/b", "batch req 42")), "malformed_statement", 3);
    throwsReason(() => parseStatement(swap("batch req-42:a/b", `batch ${"x".repeat(129)}`)), "malformed_statement", 3);
    throwsReason(() => parseStatement(swap("batch req-42:a/b", "batch ")), "malformed_statement", 3);
    throwsReason(() => parseStatement(swap("ab".repeat(32), "AB".repeat(32))), "malformed_statement", 4);
    throwsReason(() => parseStatement(swap("shard 3", "shard 03")), "malformed_statement", 5);
    throwsReason(() => parseStatement(swap("hlc 111550155929321472", "hlc 9223372036854775808")), "malformed_statement", 6);
    throwsReason(() => parseStatement(swap("samples 500", "samples  500")), "malformed_statement", 7);
    throwsReason(() => parseStatement(swap("gateway node-1", "gateway")), "malformed_statement", 8);
    throwsReason(() => parseStatement(swap("time ", "when ")), "malformed_statement", 9);
    throwsReason(() => parseStatement(swap("mmd 60000\n", "")), "malformed_statement", 10);
    throwsReason(() => parseStatement(`${text}extra 1\n`), "malformed_statement", 11);
    throwsReason(() => parseStatement(text.slice(0, -1)), "malformed_statement", 10);
    throwsReason(() => parseStatement(swap("cluster prod", "cluster pr od")), "malformed_statement", 2);
    assert.equal(parseStatement(swap("hlc 111550155929321472", "hlc 9223372036854775807")).hlc, "9223372036854775807");
  });
});

describe("provenance/keys", () => {
  const root = mkdtempSync(join(tmpdir(), "hqts-keys-"));
  after(() => rmSync(root, { recursive: true, force: true }));

  it("creates the node key with mode 0600 and reloads it unchanged", async () => {
    const dir = join(root, "a");
    const k1 = await loadOrCreateNodeKey(dir, "node-a");
    const file = join(dir, "node.key");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(readFileSync(file, "utf8"), /^PRIVATE\+KEY\+node-a\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+\n$/);
    const k2 = await loadOrCreateNodeKey(dir, "node-a");
    assert.equal(k2.verifierKey(), k1.verifierKey());
    const n = await signNote("x\n", [k1]);
    assert.deepEqual(verifyNote(n, [verifierFromKeyString(k2.verifierKey())]).verifiedBy, ["node-a"]);
  });
  it("refuses a key file readable by group or others, naming the file", async () => {
    const dir = join(root, "b");
    await loadOrCreateNodeKey(dir, "node-b");
    const file = join(dir, "node.key");
    chmodSync(file, 0o640);
    await assert.rejects(loadOrCreateNodeKey(dir, "node-b"), (e: unknown) => isProvenanceError(e, "key_file_permissions") && e.message.includes(file));
    chmodSync(file, 0o604);
    await rejectsReason(loadOrCreateNodeKey(dir, "node-b"), "key_file_permissions");
  });
  it("refuses a malformed key file and another node's key", async () => {
    const dir = join(root, "c");
    await loadOrCreateNodeKey(dir, "node-c");
    const file = join(dir, "node.key");
    await rejectsReason(loadOrCreateNodeKey(dir, "node-d"), "key_file_invalid");
    writeFileSync(file, "PRIVATE+KEY+node-c+00000000+AAAA\n", { mode: 0o600 });
    await assert.rejects(loadOrCreateNodeKey(dir, "node-c"), (e: unknown) => isProvenanceError(e, "key_file_invalid") && e.message.includes(file));
    writeFileSync(file, `${newSignerKey("node-c")}\n${newSignerKey("node-c")}\n`, { mode: 0o600 });
    await rejectsReason(loadOrCreateNodeKey(dir, "node-c"), "key_file_invalid");
  });
  it("rotates: the old key is retired, still verifies old notes, and the new key differs", async () => {
    const dir = join(root, "d");
    const old = await loadOrCreateNodeKey(dir, "node-d");
    const oldNote = await signNote("before rotation\n", [old]);
    const rot = await rotateNodeKey(dir, "node-d");
    assert.notEqual(rot.signer.verifierKey(), old.verifierKey());
    assert.equal(rot.retiredFile, join(dir, "retired", `${old.keyIdHex}.key`));
    assert.equal(statSync(rot.retiredFile).mode & 0o777, 0o600);
    assert.equal((await loadOrCreateNodeKey(dir, "node-d")).verifierKey(), rot.signer.verifierKey());
    const published = (await nodeVerifierKeys(dir, "node-d")).map(verifierFromKeyString);
    assert.equal(published.length, 2);
    assert.deepEqual(verifyNote(oldNote, published).verifiedBy, ["node-d"]);
    assert.deepEqual(verifyNote(await signNote("after\n", [rot.signer]), published).verifiedBy, ["node-d"]);
    throwsReason(() => verifyNote(oldNote, [rot.signer.verifier()]), "unknown_signer");
  });
});
