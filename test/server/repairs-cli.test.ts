// `hqts repairs` (the compiled CLI, spawned) against real HqServers serving
// GET /hq/v1/repairs from real repair logs; `hqts cluster status`'s INTEGRITY
// column against servers whose /hq/v1/cluster carries an `integrity` object.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { formatIntegrity, withIntegrityColumn } from "../../src/cli/cluster-cmd.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { RepairLog, type RepairInput, type RepairRecord } from "../../src/repair/log.js";
import { repairsRoute } from "../../src/repair/route.js";
import { createHqServer, type HqServer } from "../../src/server/server.js";
import { CLI_MAIN, freePort } from "../helpers/node-proc.js";

const silent = pino({ level: "silent" });
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Node {
  id: string;
  url: string;
  log: RepairLog;
}

/** A server with a repair log of node `id`; `clusterInfo` for /hq/v1/cluster. `times` drives the log's clock. */
async function node(id: string, times: string[], clusterInfo?: () => unknown): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), "hqts-repairs-cli-"));
  const registry = new Registry();
  const clock = [...times];
  const log = await RepairLog.open(dir, id, registry, { now: () => new Date(clock.shift() ?? "2030-01-01T00:00:00.000Z") });
  const hq: HqServer = createHqServer({
    limits: DEFAULT_LIMITS,
    log: silent,
    registry,
    processMetrics: false,
    extraRoutes: [repairsRoute(log)],
    ...(clusterInfo !== undefined ? { clusterInfo } : {}),
  });
  const { url } = await hq.listen("127.0.0.1", 0);
  cleanups.push(async () => {
    await hq.shutdown(1000);
    await log.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { id, url, log };
}

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const clean = { ...process.env };
    delete clean["HQTS_URL"];
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...clean, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const base = (over: Partial<RepairInput>): RepairInput => ({ kind: "read-repair", trigger: "read", where: {}, fromPeer: "n2", outcome: "repaired", points: { stored: 5, present: 0, divergent: 0 }, ...over });

/** A playground cluster.json listing these nodes (etcd members on ports nothing listens on). */
async function clusterFile(nodes: { id: string; url: string }[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "hqts-repairs-pg-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const entries = await Promise.all(
    nodes.map(async (n) => {
      const p = await freePort();
      return {
        id: n.id,
        http: n.url,
        pid: null,
        dataDir: join(dir, "nodes", n.id),
        walDir: join(dir, "nodes", n.id, "wal"),
        log: join(dir, "logs", `${n.id}.log`),
        etcd: { name: `etcd-${n.id}`, clientUrl: `http://127.0.0.1:${p}`, peerUrl: `http://127.0.0.1:${p}`, pid: null, dataDir: join(dir, "etcd", n.id), log: join(dir, "logs", `etcd-${n.id}.log`) },
      };
    }),
  );
  await writeFile(join(dir, "cluster.json"), JSON.stringify({ version: 1, cluster: "t", dir, basePort: 8428, etcdToken: "t", upPid: null, nodes: entries }, null, 2));
  return dir;
}

let n1: Node;
let n2: Node;

before(async () => {
  n1 = await node("n1", ["2024-05-01T10:00:01.000Z", "2024-05-01T10:00:03.000Z", "2024-05-01T10:00:05.000Z"]);
  n2 = await node("n2", ["2024-05-01T10:00:02.000Z", "2024-05-01T10:00:04.000Z"]);
  await n1.log.record(
    base({ kind: "wal-damage", trigger: "open", where: { file: "wal/00000003.wal", offset: 4096, length: 512 }, fromPeer: "n3", points: { stored: 120, present: 0, divergent: 0 } }),
  );
  await n2.log.record(base({ kind: "anti-entropy", trigger: "anti-entropy", where: { fromNs: "1714557600000000000", toNs: "1714557659999999999" }, fromPeer: "n1", outcome: "partial" }));
  await n1.log.record(base({ where: { fromNs: "1714557600000000000", toNs: "1714557600000000000" } }));
  await n2.log.record(base({ kind: "block-missing", trigger: "scrub", fromPeer: null, outcome: "failed", points: { stored: 0, present: 0, divergent: 0 } }));
  await n1.log.record(base({ kind: "catch-up", trigger: "catch-up", fromPeer: "http://127.0.0.1:8430" }));
});

describe("hqts repairs --url", () => {
  test("a table: time, id, kind, trigger, where, from, outcome, stored", async () => {
    const r = await run(["repairs", "--url", n1.url]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^TIME\s+ID\s+KIND\s+TRIGGER\s+WHERE\s+FROM\s+OUTCOME\s+STORED$/);
    assert.equal(lines.length, 5);
    assert.match(lines[1]!, /^2024-05-01T10:00:01\.000Z\s+1\s+wal-damage\s+open\s+wal\/00000003\.wal@4096\+512\s+n3\s+repaired\s+120$/);
    assert.match(lines[2]!, /2024-05-01T10:00:03\.000Z\s+2\s+read-repair\s+read\s+2024-05-01T10:00:00\.000Z\.\.2024-05-01T10:00:00\.000Z\s+n2\s+repaired\s+5$/);
    assert.match(lines[3]!, /\s3\s+catch-up\s+catch-up\s+-\s+http:\/\/127\.0\.0\.1:8430\s+repaired\s+5$/);
    assert.equal(lines[4], "(3 repairs)");
  });

  test("--json, --kind, --since, --limit; HQTS_URL works as --url", async () => {
    const j = await run(["repairs", "--url", n1.url, "--json"]);
    assert.equal(j.code, 0, j.stderr);
    const all = JSON.parse(j.stdout) as RepairRecord[];
    assert.deepEqual(all, n1.log.list({ limit: 100 }));

    const k = await run(["repairs", "--url", n1.url, "--json", "--kind", "wal-damage,catch-up"]);
    assert.deepEqual(
      (JSON.parse(k.stdout) as RepairRecord[]).map((r) => r.id),
      ["1", "3"],
    );
    const s = await run(["repairs", "--json", "--since", "1", "--limit", "1"], { HQTS_URL: n1.url });
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(
      (JSON.parse(s.stdout) as RepairRecord[]).map((r) => r.id),
      ["2"],
    );
    const l = await run(["repairs", "--url", n1.url, "--json", "--limit", "2"]);
    assert.deepEqual(
      (JSON.parse(l.stdout) as RepairRecord[]).map((r) => r.id),
      ["2", "3"],
    );
  });

  test("usage errors exit 2 naming the problem; an unreachable node exits 1", async () => {
    const cases: [string[], RegExp][] = [
      [["repairs"], /--url.*--dir/],
      [["repairs", "--url", n1.url, "--kind", "bogus"], /unknown kind "bogus"/],
      [["repairs", "--url", n1.url, "--since", "abc"], /--since must be a record id/],
      [["repairs", "--url", n1.url, "--limit", "0"], /--limit must be a positive integer/],
      [["repairs", "--url", n1.url, "--limit", "10001"], /--limit must be 1\.\.10000/],
      [["repairs", "--url", n1.url, "--dir", "/nonexistent"], /--url.*--dir/],
      [["repairs", "--dir", "/nonexistent", "--since", "3"], /--since takes one node's record id/],
    ];
    for (const [args, re] of cases) {
      const r = await run(args);
      assert.equal(r.code, /positive integer/.test(re.source) ? 1 : 2, `${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(" "));
    }
    const port = await freePort();
    const down = await run(["repairs", "--url", `http://127.0.0.1:${port}`, "--timeout", "2"]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach/);
  });

  test("a node without the route: exit 1 with the server's message", async () => {
    const plain = createHqServer({ limits: DEFAULT_LIMITS, log: silent, registry: new Registry(), processMetrics: false });
    const { url } = await plain.listen("127.0.0.1", 0);
    try {
      const nf = await run(["repairs", "--url", url]);
      assert.equal(nf.code, 1);
      assert.match(nf.stderr, /HTTP 404: no such endpoint.*repair log/);
    } finally {
      await plain.shutdown(1000);
    }
  });

  test("--help describes the command", async () => {
    const r = await run(["repairs", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: hqts repairs/);
    assert.match(r.stdout, /--since <id>/);
    assert.match(r.stdout, /--dir <dir>/);
    assert.match(r.stdout, /docs\/repairs\.md/);
  });
});

describe("hqts repairs --dir", () => {
  test("every node, merged by time, with a NODE column", async () => {
    const dir = await clusterFile([n1, n2]);
    const r = await run(["repairs", "--dir", dir], { HQTS_URL: "http://127.0.0.1:1" });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^TIME\s+NODE\s+ID\s+KIND/);
    assert.deepEqual(
      lines.slice(1, -1).map((l) => l.split(/\s+/).slice(0, 4)),
      [
        ["2024-05-01T10:00:01.000Z", "n1", "1", "wal-damage"],
        ["2024-05-01T10:00:02.000Z", "n2", "1", "anti-entropy"],
        ["2024-05-01T10:00:03.000Z", "n1", "2", "read-repair"],
        ["2024-05-01T10:00:04.000Z", "n2", "2", "block-missing"],
        ["2024-05-01T10:00:05.000Z", "n1", "3", "catch-up"],
      ],
    );
    assert.equal(lines.at(-1), "(5 repairs from 2 of 2 nodes)");

    const j = await run(["repairs", "--dir", dir, "--json", "--limit", "2"]);
    assert.deepEqual(
      (JSON.parse(j.stdout) as RepairRecord[]).map((x) => `${x.node}/${x.id}`),
      ["n2/2", "n1/3"],
      "the newest --limit over all nodes",
    );
  });

  test("a node that does not answer: the others are printed, then exit 1 naming it", async () => {
    const port = await freePort();
    const dir = await clusterFile([n1, { id: "n9", url: `http://127.0.0.1:${port}` }]);
    const r = await run(["repairs", "--dir", dir, "--timeout", "2"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /\(3 repairs from 1 of 2 nodes\)/);
    assert.match(r.stderr, /1 of 2 nodes did not answer.*n9 \(cannot reach/);
  });

  test("no cluster.json: exit 2", async () => {
    const r = await run(["repairs", "--dir", join(tmpdir(), "hqts-no-such-playground")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cluster\.json not found/);
  });
});

describe("hqts cluster status: INTEGRITY", () => {
  test("formatIntegrity: compact, tolerant of absence and odd shapes", () => {
    assert.equal(formatIntegrity({ scrub: { passes: 3, findings: 0, lastPassAt: "2024-05-01T10:00:00Z" }, repairs: { total: 2, byKind: {}, last: null } }), "scrub 3 passes, 0 findings; 2 repairs");
    assert.equal(formatIntegrity({ scrub: { passes: 1, findings: [{}] }, repairs: { total: 1 } }), "scrub 1 pass, 1 finding; 1 repair");
    assert.equal(formatIntegrity({ repairs: { total: 0 } }), "0 repairs");
    assert.equal(formatIntegrity({ scrub: {} }), "scrub ? passes, ? findings");
    assert.equal(formatIntegrity(null), "-");
    assert.equal(formatIntegrity(undefined), "-");
    assert.equal(formatIntegrity({}), "-");
  });

  test("withIntegrityColumn: a column at the right of the node table; a section when the table is not found", () => {
    const text = ["title", "", "NODE  HTTP    ROLE", "n1    http:a  leader", "n2    http:b", "", "etcd leader: x", ""].join("\n");
    const out = withIntegrityColumn(
      text,
      ["n1", "n2"],
      new Map([
        ["n1", "2 repairs"],
        ["n2", "-"],
      ]),
    );
    assert.equal(out, ["title", "", "NODE  HTTP    ROLE    INTEGRITY", "n1    http:a  leader  2 repairs", "n2    http:b          -", "", "etcd leader: x", ""].join("\n"));
    const other = withIntegrityColumn("something else\n", ["n1"], new Map([["n1", "0 repairs"]]));
    assert.equal(other, "something else\n\nintegrity:\n  n1  0 repairs\n");
  });

  test("end to end: the column and the JSON field, from /hq/v1/cluster; absent integrity tolerated", async () => {
    const integrity = { scrub: { passes: 3, findings: 0, lastPassAt: "2024-05-01T10:00:00.000Z" }, repairs: { total: 2, byKind: { "read-repair": 2 }, last: null } };
    const a = await node("a1", [], () => ({ nodeId: "a1", integrity }));
    const b = await node("b1", [], () => ({ nodeId: "b1" }));
    const dir = await clusterFile([a, b]);
    const r = await run(["cluster", "status", "--dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    const h = lines.findIndex((l) => l.startsWith("NODE"));
    assert.ok(h >= 0, r.stdout);
    assert.match(lines[h]!, /\sINTEGRITY$/);
    assert.match(lines[h + 1]!, /^a1\s.*\sscrub 3 passes, 0 findings; 2 repairs$/);
    assert.match(lines[h + 2]!, /^b1\s.*\s-$/);
    assert.equal(lines[h + 1]!.indexOf("scrub"), lines[h]!.indexOf("INTEGRITY"), "aligned");

    const j = await run(["cluster", "status", "--dir", dir, "--json"]);
    assert.equal(j.code, 0, j.stderr);
    const report = JSON.parse(j.stdout) as { nodes: { id: string; integrity: unknown }[] };
    assert.deepEqual(report.nodes.find((n) => n.id === "a1")?.integrity, integrity);
    assert.equal(report.nodes.find((n) => n.id === "b1")?.integrity, null);
  });
});
