// The playground end to end on real processes: `hqts cluster up` (3 etcd
// members + 3 nodes), stop-node / start-node, SIGTERM stops everything.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { alive, cli, healthy, pickBase, readClusterFile as readFile } from "../helpers/playground.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CLI_MAIN } from "../helpers/node-proc.js";

let up: ChildProcess | null = null;
let dir = "";
after(async () => {
  if (up !== null && up.exitCode === null) up.kill("SIGTERM");
  // Belt and braces: nothing the test started may outlive it.
  if (dir !== "") {
    try {
      for (const n of readFile(dir).nodes) for (const p of [n.pid, n.etcd.pid]) if (alive(p)) process.kill(p!, "SIGKILL");
    } catch {
      // no cluster.json
    }
    await rm(dir, { recursive: true, force: true });
  }
});

test("cluster up → stop-node KILL → start-node → corrupt etcd WAL repaired → SIGTERM stops everything", { timeout: 60_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), "hqts-playground-"));
  const base = await pickBase();
  let out = "";
  up = spawn(process.execPath, [CLI_MAIN, "cluster", "up", "--nodes", "3", "--dir", dir, "--base-port", String(base)], { stdio: ["ignore", "pipe", "pipe"] });
  up.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  up.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
  const upExit = new Promise<number | null>((r) => up!.once("exit", (code) => r(code)));
  const deadline = Date.now() + 40_000;
  while (!out.includes("Ctrl-C stops everything")) {
    assert.equal(up.exitCode, null, `cluster up exited early:\n${out}`);
    assert.ok(Date.now() < deadline, `cluster up not ready in time:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  // cluster.json: documented fields, live pids, the port scheme.
  const c = readFile(dir);
  assert.deepEqual(c.nodes.map((n) => n.id), ["n1", "n2", "n3"]);
  c.nodes.forEach((n, i) => {
    for (const k of ["id", "http", "pid", "dataDir", "walDir"] as const) assert.ok(n[k] !== undefined && n[k] !== null, `${n.id}.${k}`);
    for (const k of ["name", "clientUrl", "peerUrl", "pid"] as const) assert.ok(n.etcd[k] !== undefined && n.etcd[k] !== null, `${n.id}.etcd.${k}`);
    assert.equal(n.http, `http://127.0.0.1:${base + i}`);
    assert.equal(n.etcd.clientUrl, `http://127.0.0.1:${base + 10 + i}`);
    assert.equal(n.etcd.peerUrl, `http://127.0.0.1:${base + 20 + i}`);
    assert.ok(alive(n.pid) && alive(n.etcd.pid), `${n.id}: pids alive`);
  });
  for (const n of c.nodes) assert.ok(await healthy(n.http));

  const st = cli("cluster", "status", "--dir", dir, "--json");
  assert.equal(st.status, 0, st.stderr);
  const report = JSON.parse(st.stdout) as { etcdLeader: string | null; nodes: { healthy: boolean }[] };
  assert.ok(report.nodes.every((n) => n.healthy));
  assert.match(report.etcdLeader ?? "", /^etcd-n[123]$/);

  // stop-node n2 --signal KILL: both pids gone, cluster.json says so.
  const n2 = c.nodes[1]!;
  const stop = cli("cluster", "stop-node", "n2", "--signal", "KILL", "--dir", dir);
  assert.equal(stop.status, 0, stop.stderr);
  assert.ok(!alive(n2.pid) && !alive(n2.etcd.pid), "n2 and its etcd member are gone");
  const afterStop = readFile(dir).nodes[1]!;
  assert.equal(afterStop.pid, null);
  assert.equal(afterStop.etcd.pid, null);
  assert.ok(!(await healthy(n2.http)));

  // start-node n2: both back, healthy, new pids recorded; they outlive the start-node command.
  const start = cli("cluster", "start-node", "n2", "--dir", dir);
  assert.equal(start.status, 0, start.stderr + start.stdout);
  const restarted = readFile(dir).nodes[1]!;
  assert.ok(alive(restarted.pid) && alive(restarted.etcd.pid), "new pids alive");
  assert.notEqual(restarted.pid, n2.pid);
  assert.ok(await healthy(restarted.http));
  assert.ok(await healthy(restarted.etcd.clientUrl));

  // A corrupt etcd WAL: start-node repairs the member (remove, wipe, add, restart existing).
  const n3 = readFile(dir).nodes[2]!;
  assert.equal(cli("cluster", "stop-node", "n3", "--signal", "KILL", "--dir", dir).status, 0);
  const walDir = join(dir, "etcd", "etcd-n3", "member", "wal");
  const wal = join(walDir, readdirSync(walDir).find((f) => f.endsWith(".wal"))!);
  const bytes = readFileSync(wal);
  let used = bytes.length;
  while (used > 0 && bytes[used - 1] === 0) used--;
  for (const off of [Math.floor(used / 3), Math.floor(used / 2), Math.floor(used / 2) + 1]) bytes[off] = bytes[off]! ^ 0xff;
  writeFileSync(wal, bytes);
  const repaired = cli("cluster", "start-node", "n3", "--dir", dir);
  assert.equal(repaired.status, 0, repaired.stderr + repaired.stdout);
  assert.match(repaired.stdout, /corrupt WAL .*repairing/);
  assert.ok(await healthy(n3.etcd.clientUrl));
  assert.ok(await healthy(n3.http));

  // SIGTERM to `cluster up`: every process stops, the restarted ones included.
  const all = readFile(dir).nodes.flatMap((n) => [n.pid, n.etcd.pid]);
  up.kill("SIGTERM");
  assert.equal(await upExit, 0, out);
  for (const p of all) assert.ok(!alive(p), `pid ${p} is gone`);
});
