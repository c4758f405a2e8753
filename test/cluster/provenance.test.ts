// Provenance (docs/provenance.md) on real processes: signed receipts, the Merkle log cut by the
// sequencer and followed by every node, inclusion and consistency proofs,
// the batch bytes behind them; then one replica's stored value rewritten on
// disk with every checksum recomputed: `hqts verify` names the batch, the
// provenance audit finds the block, and the replicas repair it.

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { sha256, toHex } from "../../src/core/hash.js";
import { openCheckpoint } from "../../src/provenance/checkpoint.js";
import { verifierFromKeyString } from "../../src/provenance/keys.js";
import { decodeLeaf } from "../../src/provenance/leaf.js";
import { hashFromHex, leafHash, proofFromHex, verifyConsistency, verifyInclusion } from "../../src/provenance/merkle.js";
import { ed25519Signer, newSignerKey, parseSignerKey, signNote } from "../../src/provenance/note.js";
import { formatCheckpoint } from "../../src/provenance/checkpoint.js";
import { openStatement } from "../../src/provenance/statement.js";
import { exportSeries, http } from "../helpers/http.js";
import { cli, startPlayground, waitReplicationReady, type Playground } from "../helpers/playground.js";
import { rewriteBlockValue } from "../helpers/tamper.js";

let pg: Playground | null = null;
let scratch: string | null = null;
after(async () => {
  await pg?.cleanup();
  if (scratch !== null) await rm(scratch, { recursive: true, force: true });
});

const T0 = 1_700_000_000_000_000_000n;
const BATCHES = 30;
const SERIES = 5;

interface ReceiptJson {
  batchId: string;
  sha256: string;
  statement?: string;
}

async function json<T>(url: string, init?: { method?: string; body?: string }): Promise<{ status: number; body: T }> {
  const a = await http(url, { method: init?.method ?? "GET", ...(init?.body !== undefined ? { body: init.body, headers: { "Content-Type": "application/json" } } : {}) });
  return { status: a.status, body: (a.text === "" ? null : JSON.parse(a.text)) as T };
}

async function poll<T>(what: string, timeoutMs: number, f: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await f();
      if (v !== null) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last !== null ? ` (last error: ${(last as Error).message})` : ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("provenance: signed receipts, checkpoints on every node, proofs, and a rewritten value found by verify and repaired", { timeout: 300_000 }, async (t) => {
  pg = await startPlayground({ nodeArgs: ["--checkpoint-interval", "1s", "--receipt-mmd", "10s", "--audit-interval", "24h", "--scrub-rate", "0"] });
  const nodes = pg.nodes();
  const urls = nodes.map((n) => n.http);
  scratch = await mkdtemp(join(tmpdir(), "hqts-prov-"));

  // Writes through every node; each receipt carries its gateway's signed statement.
  const receipts: { r: ReceiptJson; gateway: string }[] = [];
  for (let seq = 0; seq < BATCHES; seq++) {
    const lines: string[] = [];
    for (let s = 0; s < SERIES; s++) lines.push(`prov,s=s${s} v=${seq * 10 + s + 0.5} ${T0 + BigInt(seq) * 1_000_000_000n}`);
    const i = seq % urls.length;
    const a = await http(`${urls[i]}/api/v2/write?precision=ns`, { body: lines.join("\n"), headers: { "Idempotency-Key": `prov-${seq}`, Accept: "application/json" } });
    assert.equal(a.status, 200, a.text);
    receipts.push({ r: JSON.parse(a.text) as ReceiptJson, gateway: nodes[i]!.id });
  }

  // Every node's key is published; every statement verifies against them and says what the receipt says.
  const keys = await poll("3 keys published", 30_000, async () => {
    const k = (await json<{ keys: string[] }>(`${urls[0]}/hq/v1/proof/keys`)).body.keys;
    return k.length >= 3 ? k : null;
  });
  const verifiers = keys.map(verifierFromKeyString);
  for (const { r, gateway } of receipts) {
    assert.ok(r.statement !== undefined, `receipt of ${r.batchId} has a statement`);
    const st = openStatement(r.statement, verifiers);
    assert.equal(st.batchId, r.batchId);
    assert.equal(st.sha256, r.sha256);
    assert.equal(st.gateway, gateway);
    assert.equal(st.mmdMs, 10_000);
  }
  // A statement with one changed character does not verify.
  const forged = receipts[0]!.r.statement!.replace(`sha256 ${receipts[0]!.r.sha256}`, `sha256 ${"0".repeat(64)}`);
  assert.throws(() => openStatement(forged, verifiers));

  // The sequencer cuts them into the log; every node follows to the same checkpoint.
  const first = (await json<{ size: number; root: string; note: string }>(`${urls[0]}/hq/v1/proof/checkpoint`)).body;
  const cps = await poll("every node at one checkpoint holding every batch", 30_000, async () => {
    const all = await Promise.all(urls.map(async (u) => (await json<{ size: number; root: string; note: string; origin: string }>(`${u}/hq/v1/proof/checkpoint`)).body));
    if (all.some((c) => c === null || typeof c.size !== "number" || c.size < BATCHES) || new Set(all.map((c) => `${c.size}/${c.root}`)).size !== 1) return null;
    return all;
  });
  const cpAnswer = cps[0]!;
  const cp = openCheckpoint(cpAnswer.note, verifiers, cpAnswer.origin);
  assert.equal(cp.treeSize, cpAnswer.size);
  assert.equal(toHex(cp.rootHash), cpAnswer.root);
  t.diagnostic(`checkpoint ${cp.treeSize} signed by ${cp.signedBy.join(", ")}, first seen ${first?.size ?? "none"}`);

  // Inclusion proofs for every batch, from another node; the bytes hash to the signed digest.
  const ids = receipts.map((x) => x.r.batchId);
  const proofs = (await json<{ size: number; batches: { batchId: string; status: string; index: number; entry: string; proof: string[]; bytes: string }[] }>(`${urls[1]}/hq/v1/proof/batches`, { method: "POST", body: JSON.stringify({ ids, size: cp.treeSize }) })).body;
  assert.equal(proofs.batches.length, BATCHES);
  for (const [k, b] of proofs.batches.entries()) {
    assert.equal(b.status, "included", JSON.stringify(b).slice(0, 300));
    const entry = new Uint8Array(Buffer.from(b.entry, "base64"));
    assert.ok(verifyInclusion(leafHash(entry), b.index, cp.treeSize, proofFromHex(b.proof, "proof"), cp.rootHash), `inclusion of ${b.batchId}`);
    assert.ok(!verifyInclusion(leafHash(entry), b.index ^ 1, cp.treeSize, proofFromHex(b.proof, "proof"), cp.rootHash), "a wrong index fails");
    const leaf = decodeLeaf(entry);
    assert.equal(leaf.batchId, ids[k]);
    assert.equal(leaf.sha256, receipts[k]!.r.sha256);
    assert.equal(toHex(sha256(new Uint8Array(Buffer.from(b.bytes, "base64")))), leaf.sha256);
  }

  // Consistency between the first checkpoint seen and the last.
  if (first !== null && first.size < cp.treeSize) {
    const c = (await json<{ proof: string[] }>(`${urls[2]}/hq/v1/proof/consistency?first=${first.size}&second=${cp.treeSize}`)).body;
    assert.ok(verifyConsistency(first.size, cp.treeSize, hashFromHex(first.root, "root"), cp.rootHash, proofFromHex(c.proof, "proof")));
    assert.ok(!verifyConsistency(first.size, cp.treeSize, sha256(new Uint8Array([1])), cp.rootHash, proofFromHex(c.proof, "proof")), "a rewritten first root fails");
  }

  // A checkpoint signed with a foreign key under a node's own key name is rejected.
  const foreignKey = parseSignerKey(newSignerKey(cp.signedBy[0]!));
  const foreignNote = await signNote(formatCheckpoint({ origin: cpAnswer.origin, treeSize: cp.treeSize + 1, rootHash: cp.rootHash, timeMs: Date.now() }), [ed25519Signer(foreignKey.name, foreignKey.seed)]);
  assert.throws(() => openCheckpoint(foreignNote, verifiers, cpAnswer.origin));

  // `hqts verify` on every node, with a fresh trust state: all good.
  const state = join(scratch, "trust.json");
  let v = cli("verify", "--dir", pg.dir, "--state", state, "--match", '{__name__="prov_v"}', "--json");
  assert.equal(v.status, 0, `${v.stdout}\n${v.stderr}`);
  const report = JSON.parse(v.stdout) as { ok: boolean; nodes: { node: string; samplesVerified: number; batches: { verified: number } }[] };
  assert.equal(report.nodes.length, 3);
  for (const n of report.nodes) {
    assert.equal(n.samplesVerified, BATCHES * SERIES, `${n.node}: every point verified against its signed batch`);
    assert.equal(n.batches.verified, BATCHES, n.node);
  }

  // Rewrite one stored value on n2's disk, every checksum recomputed.
  const victim = nodes[1]!;
  for (const u of urls) assert.equal((await http(`${u}/hq/v1/admin/flush`, { method: "POST", body: "" })).status, 200);
  assert.equal(cli("cluster", "stop-node", "--dir", pg.dir, victim.id).status, 0);
  const blocksDir = join(pg.dir, "nodes", victim.id, "blocks");
  const blocks = readdirSync(blocksDir).filter((f) => f.endsWith(".hqb"));
  let tampered = null;
  for (const b of blocks) {
    try {
      tampered = await rewriteBlockValue(join(blocksDir, b), (key) => key.startsWith("prov_v{"), (x) => x + 1000);
      break;
    } catch (e) {
      if (!/passes the pick/.test((e as Error).message)) throw e;
    }
  }
  assert.ok(tampered !== null, `a block of ${victim.id} holds the prov series (blocks: ${blocks.join(", ")})`);
  t.diagnostic(`rewrote ${tampered.series} @${tampered.tsNs}: ${tampered.before} -> ${tampered.after} (batch ${tampered.batchId})`);
  assert.equal(cli("cluster", "start-node", "--dir", pg.dir, victim.id).status, 0);
  await waitReplicationReady([victim.http], 60_000);
  const stored = async (): Promise<number | null> => {
    const lines = await exportSeries(victim.http, `{__name__="prov_v"}`, { consistency: "local" });
    for (const l of lines) {
      const i = l.timestamps_ns.indexOf(tampered!.tsNs.toString());
      if (`prov_v{s="${l.metric["s"]}"}` === tampered!.series && i >= 0) return l.values[i] as number;
    }
    return null;
  };
  assert.equal(await stored(), tampered.after, "the rewrite took: no checksum refused the block");

  // Only the cryptographic layer can tell: verify names the batch.
  v = cli("verify", "--url", victim.http, "--state", state, "--match", '{__name__="prov_v"}');
  assert.equal(v.status, 1, `${v.stdout}\n${v.stderr}`);
  assert.match(v.stdout + v.stderr, new RegExp(tampered.batchId));

  // The audit finds the block and the replicas repair it.
  const audit = (await json<{ mismatches: number }>(`${victim.http}/hq/v1/admin/audit`, { method: "POST", body: "" })).body;
  assert.ok(audit.mismatches >= 1, JSON.stringify(audit));
  await poll("the value restored from the replicas", 60_000, async () => ((await stored()) === tampered!.before ? true : null));
  const repairs = (await json<{ data: { kind: string; trigger: string; outcome: string; detail?: string }[] }>(`${victim.http}/hq/v1/repairs`)).body.data;
  assert.ok(
    repairs.some((r) => r.kind === "block-damage" && r.trigger === "audit"),
    JSON.stringify(repairs.map((r) => [r.kind, r.trigger, r.outcome])),
  );
  await poll("the audit repair recorded as repaired", 60_000, async () => {
    const rs = (await json<{ data: { kind: string; trigger: string; outcome: string }[] }>(`${victim.http}/hq/v1/repairs`)).body.data;
    return rs.some((r) => r.trigger === "audit" && r.outcome === "repaired") ? true : null;
  });
  v = cli("verify", "--url", victim.http, "--state", state, "--match", '{__name__="prov_v"}');
  assert.equal(v.status, 0, `${v.stdout}\n${v.stderr}`);

  // A rewritten history: a trust state that saw a checkpoint the log cannot be consistent with.
  const rewrittenState = join(scratch, "rewritten.json");
  await writeFile(
    rewrittenState,
    JSON.stringify({ origin: cpAnswer.origin, keys, checkpoints: [{ size: 2, root: toHex(sha256(new Uint8Array([7]))), timeMs: Date.now(), note: cpAnswer.note }] }),
    { mode: 0o600 },
  );
  v = cli("verify", "--url", urls[0]!, "--state", rewrittenState, "--match", '{__name__="prov_v"}');
  assert.equal(v.status, 1, `${v.stdout}\n${v.stderr}`);
  assert.match(v.stdout + v.stderr, /rewritten/i);

  assert.equal(await pg.stop(), 0, pg.output());
});
