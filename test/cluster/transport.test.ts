// The node-to-node transport: real node:http servers on 127.0.0.1, port 0,
// serving the inbound handler; every server and transport is closed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { INTERNAL_MSG_PATH, Transport, inboundRoute, makeInboundHandler, type InboundHandler } from "../../src/cluster/transport.js";
import { MESSAGE_CONTENT_TYPE, MESSAGES_CONTENT_TYPE, decodeMessageSequence, encodeMessage, encodeMessageSequence } from "../../src/cluster/wire.js";
import type { Message } from "../../src/cluster/protocol/messages.js";
import type { Route } from "../../src/server/routes.js";
import { sha256, toHex } from "../../src/core/hash.js";

interface Served {
  url: string;
  close(): Promise<void>;
}

/** A bare server dispatching the internal path to `handler` (as the node's router would). */
async function serve(handler: InboundHandler): Promise<Served> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== INTERNAL_MSG_PATH || req.method !== "POST") {
      req.resume();
      res.writeHead(404).end();
      return;
    }
    handler(undefined, req, res, url, []).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function post(url: string, body: Uint8Array | string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(INTERNAL_MSG_PATH, url), { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const ballot = { t: 123456789012345678901234567890n, node: "gw-α#2" };
const batchBytes = (i: number): Uint8Array => new Uint8Array(i * 10).fill(i & 0xff);
const prepare = (i: number, from: string, digest = toHex(sha256(batchBytes(i)))): Message => ({
  type: "prepare",
  from,
  hlc: BigInt(i) << 70n,
  shardId: i % 7,
  batch: { batchId: `b${i}`, shardId: i % 7, sha256: digest, hlc: 42n, bytes: batchBytes(i) },
  ballot,
  replicas: ["a", "b", "ノード"],
});
const reply = (i: number, from: string): Message => ({
  type: "prepare-reply",
  from,
  hlc: BigInt(i),
  shardId: i % 7,
  batchId: `b${i}`,
  ballot,
  answer: i % 2 === 0 ? { kind: "prepared" } : { kind: "conflict", points: [{ series: 'up{job="x"}', timestampNs: "-5", storedValue: 1, offeredValue: NaN }] },
});

function collector(n: number): { got: Message[]; done: Promise<void>; onMessage: (m: Message) => void } {
  const got: Message[] = [];
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  if (n === 0) resolve();
  return {
    got,
    done,
    onMessage: (m) => {
      got.push(m);
      if (got.length === n) resolve();
    },
  };
}


test("messages sent both ways arrive decoded, exactly", async () => {
  const N = 40;
  const atA = collector(N);
  const atB = collector(N);
  const a = await serve(makeInboundHandler(atA.onMessage));
  const b = await serve(makeInboundHandler(atB.onMessage));
  const ta = new Transport({ maxSocketsPerPeer: 4 });
  const tb = new Transport();
  try {
    const toB = Array.from({ length: N }, (_, i) => prepare(i, "a"));
    const toA = Array.from({ length: N }, (_, i) => reply(i, "b"));
    await Promise.all([...toB.map((m) => ta.send(b.url, m, { timeoutMs: 5000 })), ...toA.map((m) => tb.send(a.url, m))]);
    await Promise.all([atA.done, atB.done]);
    const sort = (ms: Message[]): Message[] => [...ms].sort((x, y) => (x.hlc < y.hlc ? -1 : x.hlc > y.hlc ? 1 : 0)); // hlc is distinct per message here
    assert.deepStrictEqual(sort(atB.got), sort(toB));
    assert.deepStrictEqual(sort(atA.got), sort(toA));
    assert.deepEqual(ta.stats(), { sent: N, delivered: N, dropped: 0, unreachable: 0, timeouts: 0, failed: 0 });
    assert.deepEqual(tb.peerStats(a.url), { sent: N, delivered: N, dropped: 0, unreachable: 0, timeouts: 0, failed: 0, inFlight: 0 });
  } finally {
    ta.close();
    tb.close();
    await Promise.all([a.close(), b.close()]);
  }
});

test("a peer refusing connections triggers onUnreachable promptly", async () => {
  const gone = await serve(async () => undefined);
  const url = gone.url;
  await gone.close(); // the port now refuses connections
  const seen: string[] = [];
  const t = new Transport({ onUnreachable: (p) => seen.push(p), defaultTimeoutMs: 10_000 });
  try {
    const started = Date.now();
    await t.send(url, reply(1, "a"));
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    assert.deepEqual(seen, [url]);
    assert.equal(t.stats().unreachable, 1);
    assert.equal(t.stats().timeouts, 0);
  } finally {
    t.close();
  }
});

test("an over-limit body is refused with 413, a declared one before reading", async () => {
  const c = collector(0);
  const s = await serve(makeInboundHandler(c.onMessage, { maxBodyBytes: 1024 }));
  const errors: string[] = [];
  const t = new Transport({ onSendError: (_p, e) => errors.push(e.message) });
  try {
    const big = encodeMessage(prepare(200, "a"));
    assert.ok(big.length > 1024);
    const r = await post(s.url, big, { "Content-Type": MESSAGE_CONTENT_TYPE });
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).code, "too_large");
    // Chunked (no Content-Length): cut off while reading.
    const r2 = await post(s.url, big, { "Content-Type": MESSAGE_CONTENT_TYPE, "Transfer-Encoding": "chunked" });
    assert.equal(r2.status, 413);
    // Through the transport: counted as failed, reported with the status.
    await t.send(s.url, prepare(200, "a"));
    assert.equal(t.stats().failed, 1);
    assert.match(errors[0] ?? "", /answered 413/);
    // A small message still passes.
    await t.send(s.url, prepare(1, "a"));
    assert.equal(t.stats().delivered, 1);
    assert.equal(c.got.length, 1);
  } finally {
    t.close();
    await s.close();
  }
});

test("garbage is refused with 400 and a clear error; a wrong content type with 415", async () => {
  const c = collector(0);
  const s = await serve(makeInboundHandler(c.onMessage));
  try {
    const r = await post(s.url, new Uint8Array([1, 3, 200, 1, 2]), { "Content-Type": MESSAGE_CONTENT_TYPE });
    assert.equal(r.status, 400);
    const body = JSON.parse(r.body) as { code: string; error: string };
    assert.equal(body.code, "bad_input");
    assert.match(body.error, /malformed replication message/);
    const trailing = await post(s.url, new Uint8Array([...encodeMessage(reply(2, "x")), 0]), { "Content-Type": MESSAGE_CONTENT_TYPE });
    assert.equal(trailing.status, 400);
    assert.match(trailing.body, /trailing/);
    const empty = await post(s.url, "", { "Content-Type": MESSAGE_CONTENT_TYPE });
    assert.equal(empty.status, 400);
    const wrongType = await post(s.url, encodeMessage(reply(2, "x")), { "Content-Type": "application/json" });
    assert.equal(wrongType.status, 415);
    assert.equal(c.got.length, 0);
  } finally {
    await s.close();
  }
});

test("the per-peer in-flight bound drops and counts; other peers are not affected", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const c = collector(3);
  const inner = makeInboundHandler(c.onMessage);
  const slow = await serve(async (ctx, req, res, url, params) => {
    await gate;
    await inner(ctx, req, res, url, params);
  });
  const fastC = collector(2);
  const fast = await serve(makeInboundHandler(fastC.onMessage));
  const t = new Transport({ maxInFlightPerPeer: 3, maxSocketsPerPeer: 2 });
  try {
    const sends = Array.from({ length: 10 }, (_, i) => t.send(slow.url, reply(i, "a")));
    assert.deepEqual(t.peerStats(slow.url), { sent: 3, delivered: 0, dropped: 7, unreachable: 0, timeouts: 0, failed: 0, inFlight: 3 });
    await Promise.all([t.send(fast.url, reply(1, "a")), t.send(fast.url, reply(2, "a"))]);
    assert.equal(t.peerStats(fast.url).delivered, 2);
    release();
    await Promise.all(sends);
    await c.done;
    assert.deepEqual(t.peerStats(slow.url), { sent: 3, delivered: 3, dropped: 7, unreachable: 0, timeouts: 0, failed: 0, inFlight: 0 });
    assert.deepEqual(t.stats(), { sent: 5, delivered: 5, dropped: 7, unreachable: 0, timeouts: 0, failed: 0 });
    // The bound frees up again.
    await t.send(slow.url, reply(11, "a"));
    assert.equal(t.peerStats(slow.url).delivered, 4);
  } finally {
    release();
    t.close();
    await Promise.all([slow.close(), fast.close()]);
  }
});

test("a peer that does not answer times out (counted, reported, not unreachable)", async () => {
  const held: ServerResponse[] = [];
  const s = await serve(async (_ctx, req, res) => {
    req.resume();
    held.push(res);
  });
  const unreachable: string[] = [];
  const errors: string[] = [];
  const t = new Transport({ onUnreachable: (p) => unreachable.push(p), onSendError: (_p, e) => errors.push(e.message) });
  try {
    await t.send(s.url, reply(1, "a"), { timeoutMs: 100 });
    assert.equal(t.stats().timeouts, 1);
    assert.deepEqual(unreachable, []);
    assert.match(errors[0] ?? "", /within 100 ms/);
    assert.equal(t.peerStats(s.url).inFlight, 0);
  } finally {
    t.close();
    await s.close();
  }
});

test("bad peer URLs and closed transports fail without throwing", async () => {
  const errors: string[] = [];
  const t = new Transport({ onSendError: (_p, e) => errors.push(e.message) });
  await t.send("not a url", reply(1, "a"));
  await t.send("https://127.0.0.1:1", reply(1, "a"));
  t.close();
  await t.send("http://127.0.0.1:1", reply(1, "a"));
  assert.equal(t.stats().failed, 3);
  assert.equal(errors.length, 3);
});

test("the route descriptor fits the server's route table", () => {
  const route: Route = inboundRoute(() => undefined, { maxBodyBytes: 1 << 20 });
  assert.equal(route.path, "/hq/v1/internal/msg");
  assert.deepEqual(route.methods, ["POST"]);
});

test("a batch whose bytes do not hash to the digest sent with them is refused (400) and never handed to the machine", async () => {
  const got: Message[] = [];
  const srv = await serve(makeInboundHandler((m) => got.push(m)));
  try {
    const bad = await post(srv.url, encodeMessage(prepare(3, "gw", "cd".repeat(32))), { "Content-Type": MESSAGE_CONTENT_TYPE });
    assert.equal(bad.status, 400);
    assert.match(bad.body, /SHA-256 of the bytes received does not match/);
    const good = await post(srv.url, encodeMessage(prepare(3, "gw")), { "Content-Type": MESSAGE_CONTENT_TYPE });
    assert.equal(good.status, 202);
    assert.equal(got.length, 1);
  } finally {
    await srv.close();
  }
});

test("messages sent in one event-loop turn leave together: fewer POSTs than messages, all delivered in order", async () => {
  const N = 60;
  const c = collector(N);
  const inner = makeInboundHandler(c.onMessage);
  let posts = 0;
  const srv = await serve(async (ctx, req, res, url, params) => {
    posts++;
    await inner(ctx, req, res, url, params);
  });
  const t = new Transport({ maxPostsInFlightPerPeer: 2 });
  try {
    const sent = Array.from({ length: N }, (_, i) => reply(i, "a"));
    await Promise.all(sent.map((m) => t.send(srv.url, m)));
    await c.done;
    assert.deepStrictEqual(c.got, sent, "one peer's messages arrive in the order sent");
    assert.ok(posts >= 1 && posts <= 2, `${N} messages sent in one turn took ${posts} POSTs (at most one per POST slot)`);
    assert.deepEqual(t.peerStats(srv.url), { sent: N, delivered: N, dropped: 0, unreachable: 0, timeouts: 0, failed: 0, inFlight: 0 });
  } finally {
    t.close();
    await srv.close();
  }
});

test("a message sequence: one POST of several messages; a bad one refuses the whole body; single messages are still taken", async () => {
  const got: Message[] = [];
  const srv = await serve(makeInboundHandler((m) => got.push(m)));
  try {
    const good = [prepare(1, "gw"), reply(2, "gw"), prepare(3, "gw")];
    const seq = encodeMessageSequence(good.map(encodeMessage));
    assert.deepStrictEqual(decodeMessageSequence(seq, "test"), good);
    assert.equal((await post(srv.url, seq, { "Content-Type": MESSAGES_CONTENT_TYPE })).status, 202);
    assert.deepStrictEqual(got, good);
    // A damaged batch in the middle: nothing of the body reaches the machine.
    const bad = encodeMessageSequence([prepare(4, "gw"), prepare(5, "gw", "ab".repeat(32)), prepare(6, "gw")].map(encodeMessage));
    const r = await post(srv.url, bad, { "Content-Type": MESSAGES_CONTENT_TYPE });
    assert.equal(r.status, 400);
    assert.match(r.body, /batch b5: SHA-256/);
    // Truncated inside the second message's length prefix or bytes: 400 naming the message.
    const cut = await post(srv.url, seq.subarray(0, seq.length - 3), { "Content-Type": MESSAGES_CONTENT_TYPE });
    assert.equal(cut.status, 400);
    assert.match(cut.body, /message 2/);
    assert.equal((await post(srv.url, new Uint8Array(0), { "Content-Type": MESSAGES_CONTENT_TYPE })).status, 400);
    assert.equal((await post(srv.url, encodeMessage(reply(7, "gw")), { "Content-Type": MESSAGE_CONTENT_TYPE })).status, 202);
    assert.equal(got.length, 4);
  } finally {
    await srv.close();
  }
});
