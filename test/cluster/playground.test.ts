// The playground end to end on real processes: `hqts cluster up` (3 etcd
// members + 3 nodes), stop-node / start-node, SIGTERM stops everything.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
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

const cmdline = (pid: number | null): string => (pid === null ? "" : readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " "));

/** Polls until fn() holds, with a deadline. */
async function until(what: string, deadlineMs: number, fn: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await fn())) {
    assert.ok(Date.now() < end, `timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface StatusJson {
  etcdLeader: string | null;
  nodes: { id: string; healthy: boolean; replication: string | null }[];
}

test("cluster up --node-args refuses the flags the playground sets itself, before starting anything", async () => {
  const never = join(tmpdir(), `hqts-never-created-${process.pid}`);
  const r = cli("cluster", "up", "--dir", never, "--base-port", String(await pickBase()), "--node-args", "--head-samples-max 5 --data /elsewhere");
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--node-args: --data is set by the playground itself/);
  assert.ok(!existsSync(never), "nothing was created");
});

test("cluster up → stop-node KILL → start-node → corrupt etcd WAL repaired → SIGTERM stops everything", { timeout: 90_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), "hqts-playground-"));
  const base = await pickBase();
  let out = "";
  // --node-args: every node gets them (a head cut into a block at 10 samples), start-node too.
  const nodeArgs = ["--head-samples-max", "10", "--flush-interval", "1h"];
  up = spawn(process.execPath, [CLI_MAIN, "cluster", "up", "--nodes", "3", "--dir", dir, "--base-port", String(base), "--node-args", nodeArgs.join(" ")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
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
  assert.deepEqual(c.nodeArgs, nodeArgs, "cluster.json keeps the node args");
  for (const n of c.nodes) assert.ok(cmdline(n.pid).endsWith(` ${nodeArgs.join(" ")} `), `${n.id} runs with the node args: ${cmdline(n.pid)}`);

  // Ready means ready for writes: every node's replication runs, and a first write through any node is acked at once.
  const st = cli("cluster", "status", "--dir", dir, "--json");
  assert.equal(st.status, 0, st.stderr);
  const report = JSON.parse(st.stdout) as StatusJson;
  assert.ok(report.nodes.every((n) => n.healthy));
  assert.deepEqual(report.nodes.map((n) => n.replication), ["running", "running", "running"]);
  assert.match(report.etcdLeader ?? "", /^etcd-n[123]$/);
  const text = cli("cluster", "status", "--dir", dir);
  assert.match(text.stdout, /^NODE +HTTP +PID +HEALTH +REPLICATION /m);
  assert.match(text.stdout, /^n1 .* ok +running /m);
  const body = Array.from({ length: 10 }, (_, i) => `pg_first value=${i} ${1_700_000_000_000_000_000n + BigInt(i)}`).join("\n");
  const w = await fetch(`${c.nodes[0]!.http}/api/v2/write?precision=ns`, { method: "POST", body, headers: { "Idempotency-Key": "pg-first" } });
  assert.ok(w.status === 200 || w.status === 204, `first write right after cluster up: ${w.status} ${await w.text()}`);
  // --head-samples-max 10 reached the engines: 10 samples make a block on every replica (the timer is 1 h away).
  const blocks = (n: { dataDir: string }): string[] => {
    try {
      return readdirSync(join(n.dataDir, "blocks")).filter((f) => f.endsWith(".hqb"));
    } catch {
      return [];
    }
  };
  await until("a block on every node", 15_000, () => c.nodes.every((n) => blocks(n).length > 0));

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
  assert.match(start.stdout, /n2: replication running/);
  assert.ok(cmdline(restarted.pid).endsWith(` ${nodeArgs.join(" ")} `), `start-node reuses the node args: ${cmdline(restarted.pid)}`);
  const st2 = JSON.parse(cli("cluster", "status", "--dir", dir, "--json").stdout) as StatusJson;
  assert.equal(st2.nodes.find((n) => n.id === "n2")!.replication, "running", "start-node returned once n2's replication runs");
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
