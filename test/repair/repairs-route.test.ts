// GET /hq/v1/repairs (src/repair/route.ts) served by a real HqServer
// (createHqServer with extraRoutes) on loopback.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { RepairLog, type RepairInput, type RepairRecord } from "../../src/repair/log.js";
import { parseRepairsQuery, repairsRoute } from "../../src/repair/route.js";
import { createHqServer, type HqServer } from "../../src/server/server.js";
import { http } from "../helpers/http.js";

const silent = pino({ level: "silent" });
let dir: string;
let log: RepairLog;
let hq: HqServer;
let url: string;
let pendingHq: HqServer;
let pendingUrl: string;

const rec = (over: Partial<RepairInput>): RepairInput => ({
  kind: "read-repair",
  trigger: "read",
  where: { fromNs: "1700000000000000000", toNs: "1700000060000000000" },
  fromPeer: "http://127.0.0.1:9999",
  outcome: "repaired",
  points: { stored: 1, present: 0, divergent: 0 },
  ...over,
});

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "hqts-repairs-route-"));
  const registry = new Registry();
  log = await RepairLog.open(dir, "n1", registry, { memoryRecords: 50 });
  for (let i = 0; i < 8; i++) await log.record(rec({ kind: i % 2 === 0 ? "read-repair" : "wal-damage", detail: `r${i + 1}` }));
  hq = createHqServer({ limits: DEFAULT_LIMITS, log: silent, registry, processMetrics: false, extraRoutes: [repairsRoute(log)] });
  url = (await hq.listen("127.0.0.1", 0)).url;
  // A node whose log is not open yet: the getter answers null.
  pendingHq = createHqServer({ limits: DEFAULT_LIMITS, log: silent, registry: new Registry(), processMetrics: false, extraRoutes: [repairsRoute(() => null)] });
  pendingUrl = (await pendingHq.listen("127.0.0.1", 0)).url;
});
after(async () => {
  await hq?.shutdown(1000);
  await pendingHq?.shutdown(1000);
  await log?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Body {
  status: string;
  data: RepairRecord[];
  warnings?: string[];
  error?: string;
  code?: string;
  field?: string;
}

async function get(query: string, base = url): Promise<{ status: number; body: Body; type: string }> {
  const a = await http(`${base}/hq/v1/repairs${query}`);
  return { status: a.status, body: a.json() as Body, type: a.headers.get("content-type") ?? "" };
}

describe("GET /hq/v1/repairs", () => {
  test("every record, oldest first, Prometheus-style envelope", async () => {
    const a = await get("");
    assert.equal(a.status, 200);
    assert.match(a.type, /application\/json/);
    assert.equal(a.body.status, "success");
    assert.deepEqual(
      a.body.data.map((r) => r.id),
      ["1", "2", "3", "4", "5", "6", "7", "8"],
    );
    assert.deepEqual(a.body.data, log.list({ limit: 100 }));
    assert.equal(a.body.warnings, undefined);
    const r = a.body.data[0]!;
    assert.equal(r.node, "n1");
    assert.equal(r.kind, "read-repair");
    assert.equal(r.fromPeer, "http://127.0.0.1:9999");
    assert.deepEqual(r.where, { fromNs: "1700000000000000000", toNs: "1700000060000000000" });
  });

  test("limit, kind (one or comma-separated), since", async () => {
    const ids = async (q: string): Promise<string[]> => {
      const a = await get(q);
      assert.equal(a.status, 200, JSON.stringify(a.body));
      return a.body.data.map((r) => r.id);
    };
    assert.deepEqual(await ids("?limit=3"), ["6", "7", "8"]);
    assert.deepEqual(await ids("?kind=wal-damage"), ["2", "4", "6", "8"]);
    assert.deepEqual(await ids("?kind=wal-damage,read-repair&limit=2"), ["7", "8"]);
    assert.deepEqual(await ids("?kind=anti-entropy"), []);
    assert.deepEqual(await ids("?since=5"), ["6", "7", "8"]);
    assert.deepEqual(await ids("?since=2&limit=2"), ["3", "4"]);
    assert.deepEqual(await ids("?since=2&limit=2&kind=read-repair"), ["3", "5"]);
    assert.deepEqual(await ids("?since=8"), []);
    assert.deepEqual(await ids("?limit=10000"), ["1", "2", "3", "4", "5", "6", "7", "8"]);
  });

  test("bad parameters: 400 bad_input naming the field", async () => {
    for (const [q, field] of [
      ["?limit=0", "limit"],
      ["?limit=10001", "limit"],
      ["?limit=abc", "limit"],
      ["?limit=", "limit"],
      ["?limit=-1", "limit"],
      ["?since=x", "since"],
      ["?since=-3", "since"],
      ["?since=", "since"],
      ["?kind=bogus", "kind"],
      ["?kind=read-repair,", "kind"],
    ] as const) {
      const a = await get(q);
      assert.equal(a.status, 400, q);
      assert.equal(a.body.status, "error");
      assert.equal(a.body.code, "bad_input");
      assert.equal(a.body.field, field, q);
      assert.match(a.body.error ?? "", new RegExp(`field ${field}`), q);
    }
  });

  test("since past the newest id: empty data and a warning (the log restarted)", async () => {
    const a = await get("?since=500");
    assert.equal(a.status, 200);
    assert.deepEqual(a.body.data, []);
    assert.match(a.body.warnings?.[0] ?? "", /restarted/);
  });

  test("other methods: 405; a log not open yet: 503 retryable", async () => {
    const post = await http(`${url}/hq/v1/repairs`, { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET");
    const a = await http(`${pendingUrl}/hq/v1/repairs`);
    assert.equal(a.status, 503);
    assert.ok(a.headers.get("retry-after"));
    assert.equal((a.json() as { retryable: boolean }).retryable, true);
  });
});

describe("older records beyond memory", () => {
  test("since older than what memory holds: what is held, and a warning naming the gap", async () => {
    const d = await mkdtemp(join(tmpdir(), "hqts-repairs-route-"));
    const registry = new Registry();
    const small = await RepairLog.open(d, "n9", registry, { memoryRecords: 3 });
    for (let i = 0; i < 7; i++) await small.record(rec({}));
    const s = createHqServer({ limits: DEFAULT_LIMITS, log: silent, registry, processMetrics: false, extraRoutes: [repairsRoute(() => small)] });
    const base = (await s.listen("127.0.0.1", 0)).url;
    try {
      const a = await get("?since=1", base);
      assert.deepEqual(
        a.body.data.map((r) => r.id),
        ["5", "6", "7"],
      );
      assert.match(a.body.warnings?.[0] ?? "", /records 2\.\.4 are no longer held/);
    } finally {
      await s.shutdown(1000);
      await small.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});

test("parseRepairsQuery defaults", () => {
  assert.deepEqual(parseRepairsQuery(new URLSearchParams("")), { limit: 100 });
  assert.deepEqual(parseRepairsQuery(new URLSearchParams("since=007&kind=data-loss&limit=5")), { sinceId: "7", kind: ["data-loss"], limit: 5 });
});
