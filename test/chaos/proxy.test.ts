// The link-fault proxy on real sockets: 127.0.0.1, ports chosen by the OS,
// every server, proxy and socket closed at the end. Timings assert lower
// bounds only (a slow machine may be slower, never faster than the fault).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { LinkProxy, type ProxyClock } from "../../src/chaos/proxy.js";
import { LinkRegistry, controlHandler, linkMatches } from "../../src/chaos/proxy-control.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

interface Target {
  port: number;
  sockets: Set<Socket>;
  accepted: number;
  close(): Promise<void>;
}

/** A TCP server running `onConn` for each connection; tracks sockets so close() ends them all. */
async function target(onConn: (s: Socket) => void): Promise<Target> {
  const sockets = new Set<Socket>();
  const t: Target = { port: 0, sockets, accepted: 0, close: async () => {} };
  const server: Server = createServer((s) => {
    t.accepted++;
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.port = (server.address() as AddressInfo).port;
  t.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return t;
}

const echo = (s: Socket): void => void s.pipe(s);

async function proxyTo(t: Target, opts: Partial<ConstructorParameters<typeof LinkProxy>[0]> = {}): Promise<LinkProxy> {
  const p = new LinkProxy({ targetHost: "127.0.0.1", targetPort: t.port, ...opts });
  await p.listen();
  return p;
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Reads until `n` bytes arrived (or the socket ended); resolves with what came. */
function readBytes(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (b: Buffer): void => {
      parts.push(b);
      got += b.length;
      if (got >= n) done();
    };
    const done = (): void => {
      s.off("data", onData);
      s.off("end", done);
      s.off("error", reject);
      resolve(Buffer.concat(parts));
    };
    s.on("data", onData);
    s.once("end", done);
    s.once("error", reject);
  });
}

/** Resolves with the bytes received within `ms` (empty when silent). */
async function receivedWithin(s: Socket, ms: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const onData = (b: Buffer): void => void parts.push(b);
  s.on("data", onData);
  await sleep(ms);
  s.off("data", onData);
  return Buffer.concat(parts);
}

test("bytes pass through unchanged both ways (random payloads, checksums)", async () => {
  const t = await target(echo);
  const p = await proxyTo(t);
  try {
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    const s = await dial(p.port);
    const back = readBytes(s, payload.length);
    s.write(payload);
    const got = await back;
    assert.equal(got.length, payload.length);
    assert.equal(sha(got), sha(payload));
    // Target speaks first too: a distinct payload down only.
    const t2 = await target((c) => c.end(randomPayloadFor(c)));
    const p2 = await proxyTo(t2);
    const s2 = await dial(p2.port);
    const down = await readBytes(s2, Infinity);
    assert.equal(sha(down), sha(lastPayload!));
    s.end(); // a clean close travels through: echo ends, the proxy ends the client
    await new Promise<void>((r) => s.once("close", () => r()));
    s2.destroy();
    await p2.close();
    await t2.close();
    const st = p.stats();
    assert.equal(st.bytesUp, payload.length);
    assert.equal(st.bytesDown, payload.length);
    assert.equal(st.connectionsAccepted, 1);
    await sleep(20);
    assert.equal(p.stats().connectionsOpen, 0, "a closed connection is forgotten");
    assert.equal(p.stats().queuedBytes, 0);
  } finally {
    await p.close();
    await t.close();
  }
});
let lastPayload: Buffer | null = null;
function randomPayloadFor(_s: Socket): Buffer {
  lastPayload = randomBytes(512 * 1024 + 3);
  return lastPayload;
}

test("a fixed delay of 200 ms each way makes a round trip take at least 400 ms", async () => {
  const t = await target((s) => s.on("data", () => s.write("pong")));
  const p = await proxyTo(t, { initialFaults: { up: { delayMs: 200 }, down: { delayMs: 200 } } });
  try {
    const s = await dial(p.port);
    const t0 = performance.now();
    const reply = readBytes(s, 4);
    s.write("ping");
    assert.equal((await reply).toString(), "pong");
    const rtt = performance.now() - t0;
    assert.ok(rtt >= 395, `round trip ${rtt.toFixed(1)} ms, want >= 400 (timer granularity 5 ms)`);
    assert.ok(p.stats().chunksDelayed >= 2);
    s.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("order is preserved under jitter", async () => {
  const received: Buffer[] = [];
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const N = 300;
  const t = await target((s) =>
    s.on("data", (b) => {
      received.push(b);
      if (Buffer.concat(received).length >= N * 4) resolveAll();
    }),
  );
  const p = await proxyTo(t, { initialFaults: { up: { delayMs: 5, jitterMs: 80 } } });
  try {
    const s = await dial(p.port);
    s.setNoDelay(true);
    for (let i = 0; i < N; i++) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(i);
      s.write(b);
      if (i % 10 === 0) await sleep(1); // separate chunks, so jitter has something to reorder
    }
    await all;
    const buf = Buffer.concat(received);
    for (let i = 0; i < N; i++) assert.equal(buf.readUInt32BE(i * 4), i, `message ${i} out of order`);
    assert.ok(p.stats().chunksDelayed > 1);
    s.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("bandwidth limit: 1 MiB at 512 KiB/s takes at least ~2 s", async () => {
  const size = 1024 * 1024;
  let got = 0;
  let doneAt = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const t = await target((s) =>
    s.on("data", (b) => {
      got += b.length;
      if (got >= size) {
        doneAt = performance.now();
        resolveDone();
      }
    }),
  );
  const p = await proxyTo(t, { initialFaults: { up: { bytesPerSecond: 512 * 1024 } } });
  try {
    const s = await dial(p.port);
    const t0 = performance.now();
    s.write(randomBytes(size));
    await done;
    const took = doneAt - t0;
    assert.ok(took >= 1950, `1 MiB took ${took.toFixed(0)} ms, want >= 2000`);
    assert.equal(p.stats().bytesUp, size);
    s.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("partition: silence (no reset) for old and new connections; heal resumes held ones and new ones work", async () => {
  const t = await target((s) => s.on("data", (b) => s.write(b)));
  const p = await proxyTo(t);
  try {
    const old = await dial(p.port);
    const oldEvents: string[] = [];
    old.on("close", () => oldEvents.push("close"));
    old.on("error", (e) => oldEvents.push(`error ${e.message}`));
    const first = readBytes(old, 2);
    old.write("a\n");
    assert.equal((await first).toString(), "a\n");
    const acceptedBefore = t.accepted;

    p.setFaults({ up: { partitioned: true }, down: { partitioned: true } });
    old.write("b\n");
    const fresh = await dial(p.port); // accepted by the proxy's kernel, as a blackhole would
    fresh.on("error", () => {});
    fresh.write("c\n");
    const [oldGot, freshGot] = await Promise.all([receivedWithin(old, 600), receivedWithin(fresh, 600)]);
    assert.equal(oldGot.length, 0, "an existing connection got an answer through a partition");
    assert.equal(freshGot.length, 0, "a new connection got an answer through a partition");
    assert.deepEqual(oldEvents, [], "the proxy must not reset or close a partitioned connection");
    assert.equal(t.accepted, acceptedBefore, "no connection may reach the target during a partition");

    // Heal: the held bytes go on, in order (TCP would retransmit them).
    const oldAfter = readBytes(old, 2);
    const freshAfter = readBytes(fresh, 2);
    p.heal();
    assert.equal((await oldAfter).toString(), "b\n");
    assert.equal((await freshAfter).toString(), "c\n");

    const next = await dial(p.port);
    const nextGot = readBytes(next, 2);
    next.write("d\n");
    assert.equal((await nextGot).toString(), "d\n");
    for (const s of [old, fresh, next]) s.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("partition of an HTTP request: no answer within a timeout; after heal new requests work", async () => {
  const server = createHttpServer((req, res) => {
    req.resume();
    res.end("ok");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const p = new LinkProxy({ targetHost: "127.0.0.1", targetPort: port });
  await p.listen();
  const get = (timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port: p.port, path: "/", agent: false, timeout: timeoutMs }, (res) => {
        let body = "";
        res.on("data", (b: Buffer) => (body += b.toString()));
        res.on("end", () => resolve(body));
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", reject);
      req.end();
    });
  try {
    assert.equal(await get(2000), "ok");
    await sleep(20);
    assert.equal(p.stats().connectionsOpen, 0);
    p.setFaults({ up: { partitioned: true } });
    await assert.rejects(get(500), /timeout/);
    p.heal();
    assert.equal(await get(2000), "ok");
  } finally {
    await p.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test("dropRate 1: every new connection fails; established bytes are never dropped", async () => {
  const t = await target(echo);
  const p = await proxyTo(t);
  try {
    const established = await dial(p.port);
    p.setFaults({ up: { dropRate: 1 } });
    for (let i = 0; i < 5; i++) {
      const outcome = await new Promise<string>((resolve) => {
        const s = connect({ host: "127.0.0.1", port: p.port });
        let data = "";
        s.on("data", (b: Buffer) => (data += b.toString()));
        s.on("error", (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
        s.on("close", () => resolve(data === "" ? "closed" : `data ${data}`));
        s.on("connect", () => s.write("x"));
      });
      assert.match(outcome, /^(error|closed)/, `connection ${i} got through: ${outcome}`);
    }
    assert.equal(p.stats().connectionsDropped, 5);
    assert.equal(t.accepted, 1);
    const back = readBytes(established, 5);
    established.write("hello");
    assert.equal((await back).toString(), "hello");
    established.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("limits: a peer that never reads does not make the proxy buffer without bound", async () => {
  const queueBytesMax = 256 * 1024;
  let written = 0;
  const total = 64 * 1024 * 1024;
  const t = await target((s) => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (written < total && !s.destroyed) {
        written += chunk.length;
        if (!s.write(chunk)) return void s.once("drain", pump);
      }
    };
    pump();
  });
  const p = await proxyTo(t, { queueBytesMax });
  try {
    const s = await dial(p.port);
    s.pause(); // never reads
    let maxQueued = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(40);
      maxQueued = Math.max(maxQueued, p.stats().queuedBytes);
    }
    const st = p.stats();
    assert.ok(maxQueued <= queueBytesMax + 64 * 1024, `proxy queued ${maxQueued} bytes, bound ${queueBytesMax} + one read`);
    assert.ok(st.sourcePauses >= 1, "the target socket was never paused");
    assert.ok(written < total, "the target wrote everything: nothing pushed back");
    s.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("limits: partition overflow 'destroy' and connectionsMax", async () => {
  const t = await target((s) => s.resume());
  const p = await proxyTo(t, { queueBytesMax: 64 * 1024, partitionOverflow: "destroy", connectionsMax: 2 });
  try {
    const a = await dial(p.port);
    a.on("error", () => {});
    await sleep(50); // connected to the target
    p.setFaults({ up: { partitioned: true } });
    const closed = new Promise<void>((r) => a.once("close", () => r()));
    a.write(randomBytes(512 * 1024));
    await closed;
    assert.equal(p.stats().connectionsDestroyedOverflow, 1);
    p.heal();

    const b = await dial(p.port);
    const c = await dial(p.port);
    await sleep(50);
    const refused = await new Promise<string>((resolve) => {
      const d = connect({ host: "127.0.0.1", port: p.port });
      d.on("error", (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? ""}`));
      d.on("close", () => resolve("closed"));
    });
    assert.match(refused, /^(error|closed)/);
    assert.equal(p.stats().connectionsRefusedLimit, 1);
    b.destroy();
    c.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("injectable clock: a delayed chunk is written only when the clock reaches its due time", async () => {
  let now = 0;
  const timers: { at: number; fn: () => void; live: boolean }[] = [];
  const clock: ProxyClock = {
    now: () => now,
    setTimer: (fn, ms) => {
      const h = { at: now + ms, fn, live: true };
      timers.push(h);
      return h;
    },
    clearTimer: (h) => void ((h as { live: boolean }).live = false),
  };
  const advance = (ms: number): void => {
    now += ms;
    for (const h of timers.filter((x) => x.live && x.at <= now)) {
      h.live = false;
      h.fn();
    }
  };
  const t = await target((s) => s.on("data", (b) => s.write(b)));
  const p = await proxyTo(t, { clock, initialFaults: { up: { delayMs: 10_000 } } });
  try {
    const s = await dial(p.port);
    s.write("late");
    assert.equal((await receivedWithin(s, 150)).length, 0);
    advance(9_999);
    assert.equal((await receivedWithin(s, 100)).length, 0);
    const got = readBytes(s, 4);
    advance(1);
    assert.equal((await got).toString(), "late");
    s.destroy();
  } finally {
    await p.close();
    await t.close();
  }
});

test("control API: list, change with validation naming the field, heal", async () => {
  const t = await target(echo);
  const reg = new LinkRegistry();
  const server = createHttpServer(controlHandler(reg));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const link = await reg.add("n1->n2", { targetHost: "127.0.0.1", targetPort: t.port });
    await assert.rejects(reg.add("n1->n2", { targetHost: "127.0.0.1", targetPort: t.port }), /already exists/);
    const list = (await (await fetch(`${base}/links`)).json()) as { links: { name: string; listen: { port: number } }[] };
    assert.equal(list.links.length, 1);
    assert.equal(list.links[0]!.name, "n1->n2");
    assert.equal(list.links[0]!.listen.port, link.port);

    const url = `${base}/links/${encodeURIComponent("n1->n2")}`;
    const put = (body: unknown): Promise<Response> => fetch(url, { method: "PUT", body: JSON.stringify(body) });
    let r = await put({ delayMs: 30, down: { partitioned: true, bytesPerSecond: 1000 } });
    assert.equal(r.status, 200);
    const answer = (await r.json()) as { links: { name: string; faults: { up: { delayMs: number; partitioned: boolean }; down: { delayMs: number; partitioned: boolean; bytesPerSecond: number } } }[] };
    assert.deepEqual(answer.links.map((l) => l.name), ["n1->n2"]);
    const info = answer.links[0]!;
    assert.equal(info.faults.up.delayMs, 30);
    assert.equal(info.faults.down.delayMs, 30);
    assert.equal(info.faults.up.partitioned, false);
    assert.equal(info.faults.down.partitioned, true);
    assert.equal(info.faults.down.bytesPerSecond, 1000);

    for (const [body, field] of [
      [{ up: { dropRate: 1.5 } }, "up.dropRate"],
      [{ delayMs: -1 }, "up.delayMs"],
      [{ down: { bytesPerSecond: 0 } }, "down.bytesPerSecond"],
      [{ partitioned: "yes" }, "up.partitioned"],
      [{ up: { lossRate: 0.1 } }, "up.lossRate"],
      [{ sideways: {} }, "sideways"],
      [[1], "body"],
    ] as const) {
      r = await put(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      const e = (await r.json()) as { code: string; field: string };
      assert.equal(e.code, "bad_input");
      assert.equal(e.field, field);
    }
    r = await fetch(url, { method: "PUT", body: "{not json" });
    assert.equal(r.status, 400);
    // A rejected change leaves the state as it was.
    assert.equal(link.getFaults().up.delayMs, 30);
    r = await fetch(`${base}/links/nope`, { method: "PUT", body: "{}" });
    assert.equal(r.status, 404);
    r = await fetch(`${base}/links/${encodeURIComponent("n3->*")}`, { method: "PUT", body: "{}" });
    assert.equal(r.status, 404, "a pattern that matches no link");
    r = await fetch(`${base}/links`, { method: "DELETE" });
    assert.equal(r.status, 405);

    r = await fetch(`${base}/heal`, { method: "POST" });
    assert.equal(r.status, 200);
    const healed = link.getFaults();
    assert.deepEqual(healed.up, { delayMs: 0, jitterMs: 0, bytesPerSecond: null, dropRate: 0, partitioned: false });
    assert.deepEqual(healed.down, healed.up);

    // And traffic flows through the named link.
    const s = await dial(link.port);
    const back = readBytes(s, 2);
    s.write("hi");
    assert.equal((await back).toString(), "hi");
    s.destroy();
  } finally {
    await reg.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await t.close();
  }
});

test("link patterns: * stands for any run of characters, everything else is literal", () => {
  const names = ["n1->n2", "n1->n3", "n2->n1", "n2->n3", "n3->n1", "n3->n2", "*->etcd-n1", "*->etcd-n2"];
  const m = (p: string): string[] => names.filter((n) => linkMatches(p, n));
  assert.deepEqual(m("n1->*"), ["n1->n2", "n1->n3"]);
  assert.deepEqual(m("*->n1"), ["n2->n1", "n3->n1"]);
  assert.deepEqual(m("*->etcd-n1"), ["*->etcd-n1"]);
  assert.deepEqual(m("*"), names);
  assert.deepEqual(m("n2->n3"), ["n2->n3"]);
  assert.deepEqual(m("*n1*"), ["n1->n2", "n1->n3", "n2->n1", "n3->n1", "*->etcd-n1"]);
  assert.deepEqual(m("n1"), []);
  assert.deepEqual(m("n1->n2*n"), []);
  assert.equal(linkMatches("a*a", "a"), false, "the two literal ends may not overlap");
  assert.equal(linkMatches("a*a", "aa"), true);
});

test("control API: a pattern changes every link it matches, all or none", async () => {
  const t = await target(echo);
  const reg = new LinkRegistry();
  const server = createHttpServer(controlHandler(reg));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const n of ["n1->n2", "n1->n3", "n2->n1"]) await reg.add(n, { targetHost: "127.0.0.1", targetPort: t.port });
    const put = (pattern: string, body: unknown): Promise<Response> => fetch(`${base}/links/${encodeURIComponent(pattern)}`, { method: "PUT", body: JSON.stringify(body) });
    let r = await put("n1->*", { up: { partitioned: true } });
    assert.equal(r.status, 200);
    assert.deepEqual(((await r.json()) as { links: { name: string }[] }).links.map((l) => l.name), ["n1->n2", "n1->n3"]);
    assert.equal(reg.get("n1->n2").getFaults().up.partitioned, true);
    assert.equal(reg.get("n1->n3").getFaults().up.partitioned, true);
    assert.equal(reg.get("n2->n1").getFaults().up.partitioned, false, "a link the pattern does not match is untouched");
    // A bad value changes none of the matched links.
    r = await put("*", { delayMs: 10, up: { dropRate: 2 } });
    assert.equal(r.status, 400);
    for (const n of reg.names()) assert.equal(reg.get(n).getFaults().up.delayMs, 0, n);
    const got = (await (await fetch(`${base}/links/${encodeURIComponent("*->n1")}`)).json()) as { links: { name: string }[] };
    assert.deepEqual(got.links.map((l) => l.name), ["n2->n1"]);
  } finally {
    await reg.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await t.close();
  }
});

test("a close during a partition is held until heal; a reset passes on as a reset", async () => {
  const events: string[] = [];
  const t = await target((s) => {
    s.on("end", () => events.push("end"));
    s.on("error", (e: NodeJS.ErrnoException) => events.push(`error ${e.code ?? ""}`));
    s.resume();
  });
  const p = await proxyTo(t);
  try {
    const a = await dial(p.port);
    await sleep(50);
    p.setFaults({ up: { partitioned: true } });
    a.end();
    await sleep(150);
    assert.deepEqual(events, [], "the target heard the close through a partition");
    p.heal();
    await sleep(100);
    assert.deepEqual(events, ["end"]);

    events.length = 0;
    const b = await dial(p.port);
    await sleep(50);
    b.resetAndDestroy();
    await sleep(100);
    assert.deepEqual(events, ["error ECONNRESET"]);
    await sleep(20);
    assert.equal(p.stats().connectionsOpen, 0);
  } finally {
    await p.close();
    await t.close();
  }
});
