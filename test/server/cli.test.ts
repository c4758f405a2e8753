// The `hqts` command line (bin/hqts → dist/src/cli/main.js) against a REAL node.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { repoRoot, startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";
import { exportSeries } from "../helpers/http.js";

const HQTS = join(repoRoot(), "bin", "hqts");
let node: NodeProc;
let dir: string;

before(async () => {
  node = await startNode();
  dir = await mkdtemp(join(tmpdir(), "hqts-cli-"));
});
after(async () => {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
});

function run(args: string[], stdin?: string, bin = HQTS): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? "");
  });
}

test("--help for every command; query's help says PromQL comes later", async () => {
  for (const cmd of [[], ["node"], ["write"], ["export"], ["query"], ["series"], ["labels"]]) {
    const r = await run([...cmd, "--help"]);
    assert.equal(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, /Usage: hqts/);
  }
  assert.match((await run(["query", "--help"])).stdout, /PromQL/);
});

test("bin/hqts works through a symlink (as the package's bin)", async () => {
  const link = join(dir, "hqts-link");
  await symlink(HQTS, link);
  const r = await run(["--version"], undefined, link);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[0-9]+\.[0-9]+\.[0-9]+/);
});

test("write: influx file split into requests of at most N samples; one receipt each", async () => {
  const lines = Array.from({ length: 25 }, (_, i) => `cli_influx,host=h a=${i},b=${i * 2} ${1700000000000000000n + BigInt(i)}`);
  const file = join(dir, "data.lp");
  await writeFile(file, lines.join("\n") + "\n");
  const r = await run(["write", file, "--url", node.url, "--batch-samples", "10"]);
  assert.equal(r.code, 0, r.stderr);
  const receipts = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { samples: number; duplicate: boolean });
  assert.equal(receipts.length, 5, "50 samples at 10 per request (2 per line)");
  assert.ok(receipts.every((x) => x.samples === 10));
  assert.match(r.stderr, /50 samples in 5 request/);
  const a = await exportSeries(node.url, "cli_influx_a");
  assert.equal(a[0]!.timestamps_ns.length, 25);
  assert.equal(a[0]!.timestamps_ns[24], "1700000000000000024");

  const again = await run(["write", file, "--url", node.url, "--batch-samples", "10"]);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(again.stdout.trim().split("\n").every((l) => (JSON.parse(l) as { duplicate: boolean }).duplicate), "a replay is a duplicate");
});

test("write: gzip vmjson from stdin, format detected; export prints JSON lines", async () => {
  const body = JSON.stringify({ metric: { __name__: "cli_vm", k: "v" }, values: [1, "NaN"], timestamps: [1700000000000, 1700000001000] }) + "\n";
  const gz = join(dir, "data.jsonl.gz");
  await writeFile(gz, gzipSync(body));
  const r = await run(["write", gz, "--url", node.url, "--idempotency-key", "cli-job-1"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout.trim()) as { batchId: string }).batchId, "cli-job-1");

  const s = await run(["write", "-", "--url", node.url, "--format", "vmjson"], body);
  assert.equal(s.code, 0, s.stderr);

  const e = await run(["export", "--url", node.url, "--match", "cli_vm"]);
  assert.equal(e.code, 0, e.stderr);
  const line = JSON.parse(e.stdout.trim()) as { values: unknown[]; batches: string[] };
  assert.deepEqual(line.values, [1, "NaN"]);
  assert.deepEqual(line.batches, ["cli-job-1", "cli-job-1"]);

  const q = await run(["query", "cli_vm", "--url", node.url]);
  assert.equal(q.code, 0, q.stderr);
  assert.match(q.stdout, /cli_vm\{k="v"\}\s+2\s+2023-11-14T22:13:20\.000000000Z/);
});

test("write: a server error exits non-zero with the server's message", async () => {
  const file = join(dir, "bad.lp");
  await writeFile(file, "cli_bad v=1 1\ncli_bad v=oops 2\n");
  const r = await run(["write", file, "--url", node.url, "--format", "influx"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /HTTP 400: .*line 2/);
  const e = await run(["export", "--url", node.url, "--match", "cli_bad{"]);
  assert.notEqual(e.code, 0);
  assert.match(e.stderr, /HTTP 400: .*column/);
});

test("series and labels", async () => {
  const s = await run(["series", "--url", node.url, "--match", "cli_vm"]);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout.trim(), 'cli_vm{k="v"}');
  const l = await run(["labels", "k", "--url", node.url]);
  assert.equal(l.code, 0, l.stderr);
  assert.match(l.stdout, /^v$/m);
});
