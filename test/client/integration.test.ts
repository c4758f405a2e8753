// HqClient and BatchWriter against REAL standalone `hqts node` processes
// (run from the build: npx tsc -p . && node --test dist/test/client/integration.test.js).

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { sameValue } from "../../src/core/batch.js";
import { ConflictError } from "../../src/core/errors.js";
import type { Receipt } from "../../src/core/receipt.js";
import { HqClient, type BatchInfo, type Point, type RetryEvent } from "../../src/index.js";
import { startNode, stopAll } from "../helpers/node-proc.js";

after(async () => {
  await stopAll();
});

const T0 = 1_700_000_000_123_456_789n;

describe("client against a real node", () => {
  it("writePoints → receipt → export: exact ns timestamps, values and provenance", async () => {
    const node = await startNode();
    const c = new HqClient({ endpoints: [node.url], requestTimeoutMs: 5000, retry: { attemptsMax: 3 } });
    const lp: Point[] = [
      { metric: "temp.c", labels: { room: "a b,=c", site: "é" }, timestampNs: T0, value: 21.5 },
      { metric: "temp.c", labels: { room: "a b,=c", site: "é" }, timestampNs: T0 + 1n, value: -0 },
      { metric: "temp.c", labels: { room: "a b,=c", site: "é" }, timestampNs: T0 + 2n, value: NaN },
      { metric: "node_load1", timestampNs: -5n, value: 0.1 + 0.2 },
    ];
    const r1 = await c.writePoints(lp);
    assert.equal(r1.samples, 4);
    assert.equal(r1.accepted, 4);
    assert.equal(r1.duplicate, false);
    assert.match(r1.batchId, /^[0-9a-f-]{36}$/);
    // `up` has no label and no '_': this batch goes as CSV, still exact.
    const csv: Point[] = [
      { metric: "up", timestampNs: T0 + 7n, value: 1 },
      { metric: "temp.c", labels: { room: "line\nbreak" }, timestampNs: T0 + 9n, value: Infinity },
    ];
    const r2 = await c.writePoints(csv, { idempotencyKey: "csv-batch-1" });
    assert.equal(r2.batchId, "csv-batch-1");
    assert.equal(r2.accepted, 2);

    const out = await c.export(['{__name__=~"temp.c|node_load1|up"}']);
    const all = out.flatMap((s) => s.timestampsNs.map((t, i) => ({ metric: s.metric, t, v: s.values[i]!, batch: s.batches[i]!, origin: s.origins[i]! })));
    assert.equal(all.length, 6);
    for (const [p, batch] of [...lp.map((p) => [p, r1.batchId] as const), ...csv.map((p) => [p, r2.batchId] as const)]) {
      const got = all.find((a) => a.t === p.timestampNs && a.metric["__name__"] === p.metric);
      assert.ok(got !== undefined, `missing ${p.metric} @ ${p.timestampNs}`);
      assert.deepEqual(got.metric, { __name__: p.metric, ...(p.labels ?? {}) });
      assert.ok(sameValue(got.v, p.value), `${p.metric} @ ${p.timestampNs}: ${got.v} != ${p.value}`);
      assert.equal(got.batch, batch);
      assert.equal(got.origin, "original");
    }
    assert.deepEqual(await c.series("up"), [{ __name__: "up" }]);
    assert.ok((await c.labels()).includes("room"));
    assert.deepEqual(await c.labelValues("room"), ["a b,=c", "line\nbreak"]);
    const ranged = await c.export("node_load1", { start: -5n, end: -5n });
    assert.deepEqual(ranged[0]!.timestampsNs, [-5n]);
    assert.deepEqual((await c.health())[0]!.ok, true);

    // A different value for a stored point: ConflictError naming it, not retried.
    const err = await c.writePoints([{ ...lp[0]!, value: 99 }]).catch((e: unknown) => e);
    assert.ok(err instanceof ConflictError, String(err));
    assert.equal(err.points.length, 1);
    assert.equal(err.points[0]!.timestampNs, T0.toString());
    assert.equal(err.points[0]!.storedValue, 21.5);
    assert.equal((err.details["attempts"] as unknown[]).length, 1);
    await node.stop();
  });

  it("a write whose response was lost is retried with the same key and stored once (duplicate: true)", async () => {
    const node = await startNode();
    // A proxy that forwards the request to the node, lets it complete, then
    // cuts the connection instead of answering: the client cannot know the outcome.
    const seenKeys: string[] = [];
    const proxy: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        seenKeys.push(String(req.headers["idempotency-key"]));
        void fetch(`${node.url}${req.url}`, { method: "POST", headers: req.headers as Record<string, string>, body: Buffer.concat(chunks) })
          .then((r) => r.text())
          .then(() => res.socket?.destroy());
      });
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const addr = proxy.address();
    const proxyUrl = `http://127.0.0.1:${typeof addr === "object" && addr !== null ? addr.port : 0}`;
    try {
      const events: RetryEvent[] = [];
      const c = new HqClient({ endpoints: [proxyUrl, node.url], requestTimeoutMs: 5000, retry: { attemptsMax: 4, backoffInitialMs: 10 }, onRetry: (e) => events.push(e) });
      const points: Point[] = [{ metric: "lost_reply", labels: { k: "v" }, timestampNs: T0, value: 42 }];
      const res = await c.writePointsDetailed(points);
      assert.equal(events.length, 1);
      assert.equal(events[0]!.error.retryable, true);
      assert.deepEqual(seenKeys, [res.idempotencyKey]);
      assert.equal(res.endpoint, node.url);
      assert.equal(res.receipt.batchId, res.idempotencyKey);
      assert.equal(res.receipt.duplicate, true, "the retry found the batch the lost attempt stored");
      assert.equal(res.receipt.accepted, 0);
      const out = await c.export("lost_reply");
      assert.equal(out.length, 1);
      assert.deepEqual(out[0]!.timestampsNs, [T0]);
      assert.deepEqual(out[0]!.batches, [res.idempotencyKey]);

      // And an explicit resend with the same key: the same receipt, marked duplicate.
      const again = await c.writePoints(points, { idempotencyKey: res.idempotencyKey });
      assert.equal(again.duplicate, true);
      assert.equal(again.sha256, res.receipt.sha256);
      assert.equal((await c.export("lost_reply"))[0]!.values.length, 1);
    } finally {
      await new Promise<void>((r) => proxy.close(() => r()));
      await node.stop();
    }
  });

  it("BatchWriter over two nodes: SIGKILL the first mid-stream, the writer continues on the second", async () => {
    const a = await startNode();
    const b = await startNode();
    const events: RetryEvent[] = [];
    const c = new HqClient({
      endpoints: [a.url, b.url],
      requestTimeoutMs: 5000,
      retry: { attemptsMax: 8, backoffInitialMs: 20, backoffMaxMs: 500 },
      onRetry: (e) => events.push(e),
    });
    const acked: { receipt: Receipt; info: BatchInfo }[] = [];
    const w = c.batchWriter({ samplesMax: 50, flushIntervalMs: 20, pendingBatchesMax: 4, onReceipt: (receipt, info) => acked.push({ receipt, info }) });
    const total = 6000;
    let killedAt = -1;
    for (let i = 0; i < total; i++) {
      await w.add({ metric: "stream_value", labels: { w: String(i % 4) }, timestampNs: T0 + BigInt(i), value: i });
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 2)); // a stream, not one burst
      if (killedAt < 0 && acked.length >= 20) {
        a.kill("SIGKILL");
        killedAt = i;
      }
    }
    const receipts = await w.close();
    assert.ok(killedAt > 0, "the kill happened mid-stream");
    await a.exited();

    // Client behaviour: every batch acked, no batch failed, only retryable failures, keys reused.
    const batches = Math.ceil(total / 50);
    assert.equal(w.failedBatches.length, 0);
    assert.equal(receipts.length, batches);
    assert.equal(acked.length, batches);
    const keys = new Set(acked.map((x) => x.info.idempotencyKey));
    assert.equal(keys.size, batches);
    for (const x of acked) assert.equal(x.receipt.batchId, x.info.idempotencyKey);
    assert.equal(acked.reduce((n, x) => n + x.receipt.samples, 0), total);
    assert.ok(events.length >= 1, "the kill was seen");
    for (const e of events) {
      assert.equal(e.error.retryable, true, `non-retryable failure seen: ${e.error.message}`);
      assert.ok(e.idempotencyKey !== undefined && keys.has(e.idempotencyKey), "a retry used a key of its batch");
      assert.equal(e.endpoint, a.url);
    }
    const retried = acked.filter((x) => (x.info.attempts?.length ?? 0) > 1);
    assert.ok(retried.length >= 1);
    for (const x of retried) assert.equal(x.info.endpoint, b.url);
    // After the kill the client stuck to the live node.
    const afterKill = acked.slice(acked.findIndex((x) => (x.info.attempts?.length ?? 0) > 1));
    assert.ok(afterKill.every((x) => x.info.endpoint === b.url));

    // Where it was acked, it is stored (no replication yet: per node). Restart A on its data.
    const a2 = await startNode({ dataDir: a.dataDir });
    const stored = new Map<string, Set<string>>();
    for (const n of [a2, b]) {
      const cn = new HqClient({ endpoints: [n.url] });
      const ids = new Set((await cn.export("stream_value")).flatMap((s) => s.batches));
      stored.set(n.url, ids);
    }
    for (const x of acked) {
      const on = x.info.endpoint === a.url ? stored.get(a2.url)! : stored.get(b.url)!;
      assert.ok(on.has(x.receipt.batchId), `batch ${x.info.seq} acked by ${x.info.endpoint} is not stored there`);
    }
    await a2.stop();
    await a.stop();
    await b.stop();
  });
});
