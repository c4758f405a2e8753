// BatchWriter: cutting by size and time, keys fixed at the cut, bounded
// in-flight batches with backpressure, receipts, errors surfaced.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConflictError, UnavailableError } from "../../src/core/errors.js";
import type { Receipt } from "../../src/core/receipt.js";
import { BatchWriter, HqClient, type BatchInfo, type Point, type WriteResult } from "../../src/index.js";
import { errorBody, receiptBody, scriptedServer, type Scripted } from "./scripted-server.js";

const servers: Scripted[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const pt = (i: number): Point => ({ metric: "m_x", labels: { i: String(i % 3) }, timestampNs: 1_700_000_000_000_000_000n + BigInt(i), value: i });

function receipt(key: string, samples: number): Receipt {
  return receiptBody(key, { samples, accepted: samples }) as unknown as Receipt;
}

interface Sent {
  points: Point[];
  key: string;
  release: () => void;
  fail: (e: Error) => void;
}

/** A send function whose batches the test answers by hand. */
function manual(): { send: (p: Point[], k: string) => Promise<WriteResult>; sent: Sent[]; maxInFlight: () => number } {
  const sent: Sent[] = [];
  let inFlight = 0;
  let max = 0;
  return {
    sent,
    maxInFlight: () => max,
    send: (points, key) => {
      inFlight++;
      max = Math.max(max, inFlight);
      return new Promise<WriteResult>((resolve, reject) => {
        sent.push({
          points,
          key,
          release: () => {
            inFlight--;
            resolve({ receipt: receipt(key, points.length), idempotencyKey: key, endpoint: "e", attempts: [] });
          },
          fail: (e) => {
            inFlight--;
            reject(e);
          },
        });
      });
    },
  };
}

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("BatchWriter", () => {
  it("cuts by size, keys each batch at the cut, returns receipts in cut order", async () => {
    const m = manual();
    const seen: BatchInfo[] = [];
    const w = new BatchWriter(m.send, { samplesMax: 3, flushIntervalMs: 60_000, pendingBatchesMax: 4, onReceipt: (_r, b) => seen.push(b) });
    await w.add([0, 1, 2, 3, 4, 5, 6].map(pt));
    assert.equal(m.sent.length, 2);
    assert.deepEqual(m.sent.map((s) => s.points.length), [3, 3]);
    assert.equal(w.buffered, 1);
    const f = w.flush();
    await tick();
    assert.equal(m.sent.length, 3);
    m.sent[2]!.release();
    m.sent[0]!.release();
    m.sent[1]!.release();
    const receipts = await f;
    assert.deepEqual(receipts.map((r) => r.batchId), m.sent.map((s) => s.key));
    assert.equal(new Set(m.sent.map((s) => s.key)).size, 3);
    assert.deepEqual(seen.map((b) => b.seq).sort(), [1, 2, 3]);
    assert.deepEqual(m.sent.flatMap((s) => s.points.map((p) => p.value)), [0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual(await w.close(), []);
    await assert.rejects(w.add(pt(9)), /closed/);
  });

  it("cuts by time", async () => {
    const m = manual();
    const w = new BatchWriter(m.send, { samplesMax: 1000, flushIntervalMs: 30, pendingBatchesMax: 2 });
    await w.add(pt(1));
    await w.add(pt(2));
    assert.equal(m.sent.length, 0);
    await tick(120);
    assert.equal(m.sent.length, 1);
    assert.equal(m.sent[0]!.points.length, 2);
    m.sent[0]!.release();
    assert.equal((await w.close()).length, 1);
  });

  it("applies backpressure: at most pendingBatchesMax in flight, add() waits", async () => {
    const m = manual();
    const w = new BatchWriter(m.send, { samplesMax: 2, flushIntervalMs: 60_000, pendingBatchesMax: 2 });
    await w.add([pt(0), pt(1), pt(2), pt(3)]); // two batches in flight
    let resolved = false;
    const blocked = w.add([pt(4), pt(5), pt(6)]).then(() => (resolved = true));
    await tick(30);
    assert.equal(resolved, false, "add() should wait while the buffer is full and 2 batches are in flight");
    assert.equal(m.sent.length, 2);
    assert.equal(w.pending, 2);
    m.sent[0]!.release();
    await blocked;
    assert.equal(m.sent.length, 3);
    assert.equal(w.buffered, 1);
    m.sent[1]!.release();
    m.sent[2]!.release();
    const f = w.close();
    await tick();
    m.sent[3]!.release();
    assert.equal((await f).length, 4);
    assert.equal(m.maxInFlight(), 2);
  });

  it("a failed batch is surfaced: flush/add reject with the typed error, points kept, onError called", async () => {
    const m = manual();
    const errors: unknown[] = [];
    const w = new BatchWriter(m.send, { samplesMax: 2, flushIntervalMs: 60_000, pendingBatchesMax: 4, onError: (e) => errors.push(e) });
    await w.add([pt(0), pt(1), pt(2), pt(3)]);
    m.sent[0]!.release();
    m.sent[1]!.fail(new ConflictError("taken", [{ series: "m_x", timestampNs: "1", storedValue: 1, offeredValue: 2 }]));
    const err = await w.flush().catch((e: unknown) => e);
    assert.ok(err instanceof ConflictError);
    assert.equal(err.details["batchSeq"], 2);
    assert.equal(err.details["batchKey"], m.sent[1]!.key);
    assert.equal(w.failedBatches.length, 1);
    assert.deepEqual(w.failedBatches[0]!.points.map((p) => p.value), [2, 3]);
    assert.equal(errors.length, 1);
    await assert.rejects(w.add(pt(5)), ConflictError);
    await assert.rejects(w.close(), ConflictError);
  });

  it("refuses an invalid point at add() without failing the writer", async () => {
    const m = manual();
    const w = new BatchWriter(m.send, { samplesMax: 10, flushIntervalMs: 60_000, pendingBatchesMax: 1 });
    await assert.rejects(w.add([pt(0), { metric: "", timestampNs: 1n, value: 1 }]), /metric name is empty/);
    assert.equal(w.buffered, 0);
    await w.add(pt(1));
    const f = w.close();
    await tick();
    m.sent[0]!.release();
    assert.equal((await f).length, 1);
  });

  it("through HqClient: every retry of a batch reuses its key; the server sees each key on every attempt", async () => {
    const attemptsByKey = new Map<string, number>();
    const s = await scriptedServer((req) => {
      const k = String(req.headers["idempotency-key"]);
      const n = (attemptsByKey.get(k) ?? 0) + 1;
      attemptsByKey.set(k, n);
      if (n === 1) return "reset";
      if (n === 2) return { status: 503, headers: { "Retry-After": "0" }, body: errorBody("unavailable", "x", true) };
      return { status: 200, body: receiptBody(k, { samples: req.body.trim().split("\n").length }) };
    });
    servers.push(s);
    const c = new HqClient({ endpoints: [s.url], retry: { attemptsMax: 5, backoffInitialMs: 1, backoffMaxMs: 5, jitter: true } });
    const w = c.batchWriter({ samplesMax: 5, flushIntervalMs: 1000, pendingBatchesMax: 2 });
    for (let i = 0; i < 23; i++) await w.add(pt(i));
    const receipts = await w.close();
    assert.equal(receipts.length, 5);
    assert.deepEqual(receipts.map((r) => r.samples), [5, 5, 5, 5, 3]);
    assert.equal(attemptsByKey.size, 5);
    assert.ok([...attemptsByKey.values()].every((n) => n === 3));
    assert.deepEqual(new Set(receipts.map((r) => r.batchId)), new Set(attemptsByKey.keys()));
  });

  it("attempts exhausted → the batch fails with UnavailableError, reported by close()", async () => {
    const s = await scriptedServer(() => ({ status: 503, body: errorBody("unavailable", "x", true) }));
    servers.push(s);
    const c = new HqClient({ endpoints: [s.url], retry: { attemptsMax: 2, backoffInitialMs: 1, backoffMaxMs: 2, jitter: true } });
    const w = c.batchWriter({ samplesMax: 5, flushIntervalMs: 1000, pendingBatchesMax: 1 });
    await w.add(pt(1));
    const err = await w.close().catch((e: unknown) => e);
    assert.ok(err instanceof UnavailableError);
    assert.equal((err.details["attempts"] as unknown[]).length, 2);
    assert.equal(s.seen.length, 2);
  });
});
