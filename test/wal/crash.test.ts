// Crash test with a real process: every id the child saw acked is replayed after SIGKILL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { repoRoot } from "../helpers/node-proc.js";
import { Wal } from "../../src/wal/wal.js";
import { idOf, payloadFor, samePayload, withTempDir } from "./util.js";

const ROOT = repoRoot();
// Run from source (tsx) or from the build (dist/, plain node): the child sits beside this file either way.
const COMPILED = import.meta.url.endsWith(".js");
const CHILD = fileURLToPath(new URL(COMPILED ? "./crash-child.js" : "./crash-child.ts", import.meta.url));

/** Runs the child until it has acked at least `acks` records (plus a random extra moment), then SIGKILLs it. */
async function runAndKill(dir: string, base: number, acks: number): Promise<number[]> {
  const child = spawn(process.execPath, [...(COMPILED ? [] : ["--import", "tsx"]), CHILD, dir, String(base)], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const pid = child.pid;
  assert.ok(pid !== undefined, "child started");
  let out = "";
  let err = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child produced too few acks in time; stderr: ${err}`)), 60_000);
      let killScheduled = false;
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString("utf8");
        if (!killScheduled && out.split("\n").length - 2 >= acks) {
          killScheduled = true;
          setTimeout(() => {
            clearTimeout(timer);
            process.kill(pid, "SIGKILL");
            resolve();
          }, Math.floor(Math.random() * 20));
        }
      });
      child.stderr.on("data", (d: Buffer) => (err += d.toString("utf8")));
      child.on("exit", () => {
        clearTimeout(timer);
        if (!killScheduled) reject(new Error(`child exited early; stderr: ${err}`));
      });
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGKILL");
  }
  const { signal } = await exited;
  assert.equal(signal, "SIGKILL");
  const lines = out.split("\n");
  lines.pop(); // a partial last line is not an ack we can rely on
  assert.equal(lines.shift(), "ready");
  return lines.map(Number);
}

test("crash: SIGKILL mid-stream loses no acked record (3 rounds on the same WAL)", { timeout: 180_000 }, async () => {
  await withTempDir(async (dir) => {
    const everAcked: number[] = [];
    for (let round = 0; round < 3; round++) {
      const acked = await runAndKill(dir, round * 1_000_000, 400 + round * 200);
      everAcked.push(...acked);
      const r = await Wal.open(dir); // default "fail": a crash must never look like corruption
      assert.ok(r.findings.every((f) => f.kind === "torn_tail"), JSON.stringify(r.findings));
      const replayed = await r.readAll();
      const seen = new Set<number>();
      let prev = -1;
      for (const x of replayed) {
        const id = idOf(x.payload);
        assert.ok(id > prev, "replay order is append order, no duplicates");
        prev = id;
        seen.add(id);
        const size = 8 + ((id * 2654435761) % 20_000);
        assert.ok(samePayload(x.payload, payloadFor(id, size)), `record ${id} intact`);
      }
      const lost = everAcked.filter((id) => !seen.has(id));
      assert.deepEqual(lost, [], `acked records lost after SIGKILL (round ${round})`);
      assert.ok(r.wal.segments().length > 1, "the run crossed segment rollovers");
      await r.wal.close();
    }
  });
});
