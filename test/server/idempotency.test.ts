// Exactly-once against a REAL node: replays store one copy; conflicts are
// refused whole and name the point (DESIGN.md decision 6).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";
import { exportSeries, http, type ReceiptJson } from "../helpers/http.js";

let node: NodeProc;
before(async () => {
  node = await startNode();
});
after(async () => {
  await stopAll();
});

const body = (metric: string): string =>
  [
    JSON.stringify({ metric: { __name__: metric, k: "a" }, values: [1, 2, 3], timestamps: [1700000000000, 1700000001000, 1700000002000] }),
    JSON.stringify({ metric: { __name__: metric, k: "b" }, values: [4, "NaN"], timestamps: [1700000000000, 1700000001000] }),
  ].join("\n") + "\n";

async function post(b: string, headers: Record<string, string> = {}): Promise<ReceiptJson> {
  const a = await http(`${node.url}/api/v1/import`, { body: b, headers });
  assert.equal(a.status, 200, a.text);
  return a.json() as ReceiptJson;
}

async function assertOneCopy(metric: string): Promise<void> {
  const got = await exportSeries(node.url, metric);
  assert.equal(got.length, 2);
  const a = got.find((s) => s.metric["k"] === "a")!;
  const b = got.find((s) => s.metric["k"] === "b")!;
  assert.deepEqual(a.values, [1, 2, 3]);
  assert.deepEqual(a.timestamps, [1700000000000, 1700000001000, 1700000002000]);
  assert.deepEqual(b.values, [4, "NaN"]);
}

test("the same body 100 times, sequentially: one stored copy, one batch id, later receipts duplicate", async () => {
  const b = body("idem_seq");
  const receipts: ReceiptJson[] = [];
  for (let i = 0; i < 100; i++) receipts.push(await post(b));
  const id = receipts[0]!.batchId;
  assert.equal(receipts[0]!.duplicate, false);
  assert.equal(receipts[0]!.accepted, 5);
  for (const r of receipts.slice(1)) {
    assert.equal(r.batchId, id);
    assert.equal(r.sha256, id);
    assert.equal(r.duplicate, true);
    assert.equal(r.accepted, 0);
  }
  await assertOneCopy("idem_seq");
});

test("the same body 20 times concurrently (5 rounds): one stored copy, one batch id", async () => {
  const b = body("idem_conc");
  const receipts: ReceiptJson[] = [];
  for (let round = 0; round < 5; round++) receipts.push(...(await Promise.all(Array.from({ length: 20 }, () => post(b)))));
  assert.equal(new Set(receipts.map((r) => r.batchId)).size, 1);
  assert.equal(receipts.filter((r) => !r.duplicate).length, 1, "exactly one request committed the batch");
  assert.equal(receipts.reduce((n, r) => n + r.accepted, 0), 5, "five points stored in all");
  await assertOneCopy("idem_conc");
});

test("Idempotency-Key names the batch; a replay with the same key is a duplicate", async () => {
  const b = body("idem_key");
  const first = await post(b, { "Idempotency-Key": "job-42.part-1" });
  assert.equal(first.batchId, "job-42.part-1");
  assert.match(first.sha256, /^[0-9a-f]{64}$/);
  assert.equal(first.duplicate, false);
  const again = await Promise.all(Array.from({ length: 20 }, () => post(b, { "Idempotency-Key": "job-42.part-1" })));
  for (const r of again) {
    assert.equal(r.batchId, "job-42.part-1");
    assert.equal(r.duplicate, true);
  }
  await assertOneCopy("idem_key");
  const got = await exportSeries(node.url, "idem_key");
  assert.ok(got.every((s) => s.batches.every((id) => id === "job-42.part-1")));
});

test("the same key with different content → 409", async () => {
  await post(body("idem_reuse"), { "Idempotency-Key": "reused-key" });
  const a = await http(`${node.url}/api/v1/import`, { body: body("idem_reuse_other"), headers: { "Idempotency-Key": "reused-key" } });
  assert.equal(a.status, 409, a.text);
  assert.deepEqual(await exportSeries(node.url, "idem_reuse_other"), []);
});

test("a bad Idempotency-Key → 400", async () => {
  const a = await http(`${node.url}/api/v1/import`, { body: body("idem_badkey"), headers: { "Idempotency-Key": "x".repeat(500) } });
  assert.ok(a.status === 400 || a.status === 413, a.text);
  assert.deepEqual(await exportSeries(node.url, "idem_badkey"), []);
});

test("a conflicting value → 409 naming the point; nothing of that batch stored", async () => {
  await post(JSON.stringify({ metric: { __name__: "conflict_m", k: "a" }, values: [1], timestamps: [1700000000000] }) + "\n");
  const conflicting =
    JSON.stringify({ metric: { __name__: "conflict_m", k: "a" }, values: [2, 5], timestamps: [1700000000000, 1700000009000] }) +
    "\n" +
    JSON.stringify({ metric: { __name__: "conflict_new" }, values: [7], timestamps: [1700000000000] }) +
    "\n";
  const a = await http(`${node.url}/api/v1/import`, { body: conflicting });
  assert.equal(a.status, 409, a.text);
  const e = a.json() as {
    status: string;
    errorType: string;
    code: string;
    retryable: boolean;
    conflicts: { series: string; timestampNs: string; storedValue: number; offeredValue: number }[];
  };
  assert.equal(e.status, "error");
  assert.equal(e.code, "conflict");
  assert.equal(e.retryable, false);
  assert.deepEqual(e.conflicts, [{ series: 'conflict_m{k="a"}', timestampNs: "1700000000000000000", storedValue: 1, offeredValue: 2 }]);

  const m = await exportSeries(node.url, "conflict_m");
  assert.deepEqual(m[0]!.values, [1], "the first value wins and the batch's other point is not stored");
  assert.deepEqual(m[0]!.timestamps, [1700000000000]);
  assert.deepEqual(await exportSeries(node.url, "conflict_new"), []);
});

test("two values for one point inside one request → 409", async () => {
  const a = await http(`${node.url}/write`, { body: "dup_in v=1 1700000000000000000\ndup_in v=2 1700000000000000000\n" });
  assert.equal(a.status, 409, a.text);
  assert.deepEqual(await exportSeries(node.url, "dup_in_v"), []);
});
