// HqClient against a scripted in-test HTTP server: retries, keys, typed
// errors, endpoint rotation, backoff, receipts, reads.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { BadInputError, ConflictError, HqError, OverloadError, TooLargeError, UnavailableError } from "../../src/core/errors.js";
import { HqClient, ConnectionError, type RetryEvent } from "../../src/index.js";
import { backoffCapMs, backoffMs, resolveRetry } from "../../src/client/retry.js";
import { freePort } from "../helpers/node-proc.js";
import { errorBody, receiptBody, scriptedServer, type Scripted } from "./scripted-server.js";

const servers: Scripted[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function server(script: Parameters<typeof scriptedServer>[0]): Promise<Scripted> {
  const s = await scriptedServer(script);
  servers.push(s);
  return s;
}

const fast = { attemptsMax: 6, backoffInitialMs: 5, backoffMaxMs: 20, jitter: true };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function key(s: Scripted, i: number): string {
  return String(s.seen[i]!.headers["idempotency-key"]);
}

describe("HqClient writes", () => {
  it("retries a 503 after its Retry-After, then returns the typed receipt", async () => {
    const s = await server((req, n) =>
      n === 0 ? { status: 503, headers: { "Retry-After": "1" }, body: errorBody("unavailable", "below quorum", true, { retryAfterS: 1 }) } : { status: 200, body: receiptBody(String(req.headers["idempotency-key"]), { samples: 2, accepted: 2 }) },
    );
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const t0 = Date.now();
    const r = await c.write('{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]}\n', { format: "vmjson" });
    const took = Date.now() - t0;
    assert.ok(took >= 950, `waited ${took} ms, Retry-After asked 1000`);
    assert.equal(s.seen.length, 2);
    assert.equal(r.batchId, key(s, 0));
    assert.equal(r.samples, 2);
    assert.deepEqual(r.replicas, ["n1"]);
    assert.equal(s.seen[0]!.url, "/api/v1/import");
    assert.equal(s.seen[0]!.method, "POST");
  });

  it("sends the same generated Idempotency-Key on every retry (reset, 503, 429, timeout)", async () => {
    const s = await server((req, n) => (n === 0 ? "reset" : n === 1 ? { status: 503, body: errorBody("unavailable", "x", true) } : n === 2 ? { status: 429, headers: { "Retry-After": "0" }, body: errorBody("overloaded", "busy", true) } : n === 3 ? "hang" : { status: 200, body: receiptBody(String(req.headers["idempotency-key"])) }));
    const events: RetryEvent[] = [];
    const c = new HqClient({ endpoints: [s.url], retry: fast, requestTimeoutMs: 300, onRetry: (e) => events.push(e) });
    const res = await c.writeDetailed("m,host=a v=1 1700000000000000001\n", { format: "influx" });
    assert.equal(s.seen.length, 5);
    const keys = s.seen.map((_, i) => key(s, i));
    assert.equal(new Set(keys).size, 1, `keys differ: ${keys.join(" ")}`);
    assert.match(keys[0]!, UUID);
    assert.equal(res.idempotencyKey, keys[0]);
    assert.equal(res.receipt.batchId, keys[0]);
    assert.deepEqual(
      res.attempts.map((a) => [a.status, a.error]),
      [[undefined, res.attempts[0]!.error], [503, "unavailable"], [429, "overloaded"], [undefined, "TIMEOUT"], [200, undefined]],
    );
    assert.ok(["UND_ERR_SOCKET", "ECONNRESET"].includes(res.attempts[0]!.error!), res.attempts[0]!.error);
    assert.equal(events.length, 4);
    assert.ok(events.every((e) => e.idempotencyKey === keys[0] && e.error.retryable));
    assert.ok(events[0]!.error instanceof ConnectionError);
    assert.ok(events[2]!.error instanceof OverloadError);
    assert.equal(s.seen[0]!.url, "/api/v2/write?precision=ns");
    assert.equal(s.seen[0]!.headers["accept"], "application/json");
  });

  it("uses the caller's Idempotency-Key and refuses an invalid one before sending", async () => {
    const s = await server((req) => ({ status: 200, body: receiptBody(String(req.headers["idempotency-key"]), { duplicate: true }) }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const r = await c.write("a,b,c\n", { format: "csv", idempotencyKey: "job-42/part-1", csvFormat: "1:metric:x", precision: "ns" });
    assert.equal(r.batchId, "job-42/part-1");
    assert.equal(r.duplicate, true);
    assert.equal(s.seen[0]!.url, "/api/v1/import/csv?format=1%3Ametric%3Ax&precision=ns");
    await assert.rejects(c.write("x", { format: "csv", idempotencyKey: "has space" }), BadInputError);
    assert.equal(s.seen.length, 1);
  });

  it("409 → ConflictError with its points, not retried", async () => {
    const points = [{ series: 'temp{room="a"}', timestampNs: "1700000000000000000", storedValue: 1, offeredValue: 2 }];
    const s = await server(() => ({ status: 409, body: errorBody("conflict", "1 point already holds another value", false, { conflicts: points }) }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const err = await c.writePoints([{ metric: "temp", labels: { room: "a" }, timestampNs: 1700000000000000000n, value: 2 }]).then(
      () => assert.fail("no error"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConflictError, String(err));
    assert.equal(err.code, "conflict");
    assert.equal(err.retryable, false);
    assert.deepEqual(err.points, points);
    assert.equal(err.message, "1 point already holds another value");
    assert.equal(err.details["httpStatus"], 409);
    assert.equal(err.details["endpoint"], s.url);
    assert.equal(s.seen.length, 1);
  });

  it("400 → BadInputError with the server's message and location, not retried", async () => {
    const s = await server(() => ({ status: 400, body: errorBody("bad_input", 'line 2, column 6, field tag key: tag key "host" is not followed by \'=\'', false, { line: 2, column: 6, field: "tag key" }) }));
    const c = new HqClient({ endpoints: [s.url, s.url], retry: fast });
    const err = await c.write("x", { format: "influx" }).catch((e: unknown) => e);
    assert.ok(err instanceof BadInputError);
    assert.equal(err.message, 'line 2, column 6, field tag key: tag key "host" is not followed by \'=\'');
    assert.deepEqual(err.location, { line: 2, column: 6, field: "tag key" });
    assert.equal(err.details["line"], 2);
    assert.equal(err.retryable, false);
    assert.equal(s.seen.length, 1);
  });

  it("413 → TooLargeError, 500 → HqError internal: neither retried", async () => {
    const s = await server((_r, n) => (n === 0 ? { status: 413, body: errorBody("too_large", "request body exceeds the limit of 10", false, { limit: 10 }) } : { status: 500, body: errorBody("internal", "internal error", false) }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const e1 = await c.write("x", { format: "vmjson" }).catch((e: unknown) => e);
    assert.ok(e1 instanceof TooLargeError);
    assert.equal(e1.message, "request body exceeds the limit of 10");
    assert.equal(e1.details["limit"], 10);
    const e2 = await c.write("x", { format: "vmjson" }).catch((e: unknown) => e);
    assert.ok(e2 instanceof HqError && e2.code === "internal" && !e2.retryable);
    assert.equal(s.seen.length, 2);
  });

  it("a 502 without our body is retryable (a proxy's answer)", async () => {
    const s = await server((req, n) => (n === 0 ? { status: 502, body: "<html>bad gateway</html>" } : { status: 200, body: receiptBody(String(req.headers["idempotency-key"])) }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    await c.write("x", { format: "vmjson" });
    assert.equal(s.seen.length, 2);
  });

  it("reads the receipt from X-HQ-Receipt on a 204", async () => {
    const s = await server((req) => ({ status: 204, headers: { "X-HQ-Receipt": JSON.stringify(receiptBody(String(req.headers["idempotency-key"]), { samples: 3 })) } }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const r = await c.write("m v=1 1\n", { format: "influx" });
    assert.equal(r.samples, 3);
    assert.equal(r.batchId, key(s, 0));
  });

  it("a refused connection moves to the next endpoint at once", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const s = await server((req) => ({ status: 200, body: receiptBody(String(req.headers["idempotency-key"])) }));
    const events: RetryEvent[] = [];
    const c = new HqClient({ endpoints: [dead, s.url], retry: { ...fast, backoffInitialMs: 5000, backoffMaxMs: 5000 }, onRetry: (e) => events.push(e) });
    const t0 = Date.now();
    const res = await c.writeDetailed("x", { format: "vmjson" });
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(res.endpoint, s.url);
    assert.equal(res.attempts[0]!.endpoint, dead);
    assert.equal(res.attempts[0]!.error, "ECONNREFUSED");
    assert.equal(events.length, 1);
    assert.equal(events[0]!.waitMs, 0);
    assert.equal(events[0]!.nextEndpoint, s.url);
    assert.ok(events[0]!.error instanceof ConnectionError && events[0]!.error.failure === "refused" && !events[0]!.error.sent);
    // The next call starts at the endpoint that answered.
    const res2 = await c.writeDetailed("x", { format: "vmjson" });
    assert.equal(res2.attempts.length, 1);
    assert.equal(res2.endpoint, s.url);
  });

  it("rotates endpoints on a 503 too", async () => {
    const a = await server(() => ({ status: 503, body: errorBody("unavailable", "closing", true) }));
    const b = await server((req) => ({ status: 200, body: receiptBody(String(req.headers["idempotency-key"])) }));
    const c = new HqClient({ endpoints: [a.url, b.url], retry: fast });
    const res = await c.writeDetailed("x", { format: "vmjson" });
    assert.equal(res.endpoint, b.url);
    assert.equal(a.seen.length, 1);
    assert.equal(key(a, 0), key(b, 0));
  });

  it("when every endpoint refuses, it backs off between rounds instead of spinning", async () => {
    const dead1 = `http://127.0.0.1:${await freePort()}`;
    const dead2 = `http://127.0.0.1:${await freePort()}`;
    const events: RetryEvent[] = [];
    const c = new HqClient({ endpoints: [dead1, dead2], retry: { attemptsMax: 6, backoffInitialMs: 20, backoffMaxMs: 20, jitter: false }, onRetry: (e) => events.push(e) });
    await assert.rejects(c.write("x", { format: "vmjson" }), UnavailableError);
    assert.deepEqual(
      events.map((e) => e.waitMs),
      [0, 20, 0, 20, 0],
    );
  });

  it("attempts exhausted → UnavailableError whose cause is the last failure and whose details list every attempt", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const s = await server(() => ({ status: 503, headers: { "Retry-After": "0" }, body: errorBody("unavailable", "below quorum", true) }));
    const c = new HqClient({ endpoints: [s.url, dead], retry: { attemptsMax: 5, backoffInitialMs: 1, backoffMaxMs: 4, jitter: true } });
    const err = await c.write("x", { format: "vmjson", idempotencyKey: "k1" }).catch((e: unknown) => e);
    assert.ok(err instanceof UnavailableError, String(err));
    assert.equal(err.retryable, true);
    const attempts = err.details["attempts"] as { endpoint: string; status?: number; error?: string; ms: number }[];
    assert.equal(attempts.length, 5);
    assert.deepEqual(
      attempts.map((a) => [a.endpoint, a.status ?? a.error]),
      [
        [s.url, 503],
        [dead, "ECONNREFUSED"],
        [s.url, 503],
        [dead, "ECONNREFUSED"],
        [s.url, 503],
      ],
    );
    assert.ok(attempts.every((a) => typeof a.ms === "number" && a.ms >= 0));
    assert.equal(err.details["idempotencyKey"], "k1");
    assert.ok(err.cause instanceof UnavailableError);
    assert.equal((err.cause as UnavailableError).message, "below quorum");
    assert.match(err.message, /write failed after 5 attempt\(s\)/);
  });

  it("backoff waits are bounded by backoffMaxMs (full jitter within the doubling cap)", async () => {
    const s = await server(() => ({ status: 503, body: errorBody("unavailable", "x", true) }));
    const events: RetryEvent[] = [];
    const c = new HqClient({ endpoints: [s.url], retry: { attemptsMax: 9, backoffInitialMs: 2, backoffMaxMs: 16, jitter: true }, onRetry: (e) => events.push(e) });
    await assert.rejects(c.write("x", { format: "vmjson" }), UnavailableError);
    assert.equal(events.length, 8);
    events.forEach((e, k) => assert.ok(e.waitMs >= 0 && e.waitMs <= Math.min(16, 2 * 2 ** k), `wait ${k}: ${e.waitMs}`));
    const exact: number[] = [];
    const c2 = new HqClient({ endpoints: [s.url], retry: { attemptsMax: 7, backoffInitialMs: 2, backoffMaxMs: 16, jitter: false }, onRetry: (e) => exact.push(e.waitMs) });
    await assert.rejects(c2.write("x", { format: "vmjson" }), UnavailableError);
    assert.deepEqual(exact, [2, 4, 8, 16, 16, 16]);
  });

  it("a Retry-After is capped by retryAfterMaxMs", async () => {
    const s = await server((req, n) => (n === 0 ? { status: 503, headers: { "Retry-After": "3600" }, body: errorBody("unavailable", "x", true) } : { status: 200, body: receiptBody(String(req.headers["idempotency-key"])) }));
    const events: RetryEvent[] = [];
    const c = new HqClient({ endpoints: [s.url], retry: { ...fast, retryAfterMaxMs: 50 }, onRetry: (e) => events.push(e) });
    await c.write("x", { format: "vmjson" });
    assert.ok(events[0]!.waitMs <= 50 && events[0]!.waitMs >= 30, String(events[0]!.waitMs));
  });
});

describe("retry policy", () => {
  it("full jitter stays in [0, min(max, initial*2^k)]; huge k does not overflow", () => {
    const p = resolveRetry({ backoffInitialMs: 10, backoffMaxMs: 1000 });
    for (let k = 0; k < 200; k++) {
      const cap = backoffCapMs(k, p);
      assert.equal(cap, Math.min(1000, 10 * 2 ** k));
      assert.equal(backoffMs(k, p, () => 0), 0);
      assert.equal(backoffMs(k, p, () => 0.999999), cap);
    }
    assert.throws(() => resolveRetry({ attemptsMax: 0 }), RangeError);
    assert.throws(() => resolveRetry({ backoffInitialMs: 10, backoffMaxMs: 5 }), RangeError);
  });
});

describe("HqClient reads", () => {
  it("export parses ns timestamps as bigint and NaN/Inf strings, after retrying a 503", async () => {
    const line = {
      metric: { __name__: "temp", room: "a" },
      values: [21.5, "NaN", "+Inf", "-Inf"],
      timestamps: [1700000000123, 1700000001000, 1700000002000, 1700000003000],
      timestamps_ns: ["1700000000123456789", "1700000001000000000", "1700000002000000001", "-1"],
      origins: ["original", "inferred", "original", "original"],
      batches: ["b1", "job-42", "b1", "b1"],
    };
    const s = await server((_r, n) => (n === 0 ? { status: 503, body: errorBody("unavailable", "x", true) } : { status: 200, body: JSON.stringify(line) + "\n" }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const out = await c.export(['temp{room="a"}', "other"], { start: 1700000000123456789n, end: new Date(1700000100000), inferred: false });
    assert.equal(out.length, 1);
    assert.deepEqual(out[0]!.timestampsNs, [1700000000123456789n, 1700000001000000000n, 1700000002000000001n, -1n]);
    assert.ok(Number.isNaN(out[0]!.values[1]));
    assert.deepEqual(out[0]!.values.slice(2), [Infinity, -Infinity]);
    assert.deepEqual(out[0]!.origins, line.origins);
    assert.deepEqual(out[0]!.batches, line.batches);
    const q = new URL(s.seen[1]!.url, "http://x").searchParams;
    assert.deepEqual(q.getAll("match[]"), ['temp{room="a"}', "other"]);
    assert.equal(q.get("start"), "1700000000.123456789");
    assert.equal(q.get("end"), "2023-11-14T22:15:00.000Z");
    assert.equal(q.get("inferred"), "exclude");
  });

  it("series, labels, labelValues unwrap the Prometheus envelope", async () => {
    const s = await server((req) => {
      const u = new URL(req.url, "http://x");
      if (u.pathname === "/api/v1/series") return { status: 200, body: { status: "success", data: [{ __name__: "up", job: "a" }] } };
      if (u.pathname === "/api/v1/labels") return { status: 200, body: { status: "success", data: ["__name__", "job"] } };
      if (u.pathname === "/api/v1/label/job%2Fx/values") return { status: 200, body: { status: "success", data: ["a"] } };
      return { status: 404, body: errorBody("not_found", "no route", false) };
    });
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    assert.deepEqual(await c.series("up", { limit: 5 }), [{ __name__: "up", job: "a" }]);
    assert.equal(new URL(s.seen[0]!.url, "http://x").searchParams.get("limit"), "5");
    assert.deepEqual(await c.labels(), ["__name__", "job"]);
    assert.deepEqual(await c.labelValues("job/x", { match: "up" }), ["a"]);
    const nf = await c.labelValues("nope").catch((e: unknown) => e);
    assert.ok(nf instanceof HqError && nf.code === "not_found");
  });

  it("a long selector list goes as a form POST", async () => {
    const s = await server(() => ({ status: 200, body: "" }));
    const c = new HqClient({ endpoints: [s.url], retry: fast });
    const many = Array.from({ length: 300 }, (_, i) => `metric_number_${i}{job="x"}`);
    assert.deepEqual(await c.export(many), []);
    assert.equal(s.seen[0]!.method, "POST");
    assert.equal(new URLSearchParams(s.seen[0]!.body).getAll("match[]").length, 300);
  });

  it("health asks every endpoint once", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const s = await server(() => ({ status: 200, body: { status: "ok", state: "ready" } }));
    const c = new HqClient({ endpoints: [s.url, dead], retry: fast });
    const h = await c.health();
    assert.deepEqual(h[0], { endpoint: s.url, ok: true, status: 200, body: { status: "ok", state: "ready" } });
    assert.deepEqual(h[1], { endpoint: dead, ok: false, error: "ECONNREFUSED" });
  });

  it("a port fetch blocks is a configuration error, not retried", async () => {
    const c = new HqClient({ endpoints: ["http://127.0.0.1:6000"], retry: fast });
    const err = await c.write("x", { format: "vmjson" }).catch((e: unknown) => e);
    assert.ok(err instanceof HqError && err.code === "bad_input" && /bad port/.test(err.message), String(err));
  });

  it("refuses bad options", () => {
    assert.throws(() => new HqClient({ endpoints: [] }), RangeError);
    assert.throws(() => new HqClient({ endpoints: ["ftp://x"] }), RangeError);
    assert.throws(() => new HqClient({ endpoints: ["not a url"] }), TypeError);
  });
});
