// Durability on a real node process: SIGKILL under sustained writes loses no
// acknowledged point and duplicates none; WAL damage is detected with file and
// offset, a torn tail is cut, corruption stops the node unless it is told to
// accept the loss.

import assert from "node:assert/strict";
import { appendFile, mkdtemp, open, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { startNode, stopAll } from "../helpers/node-proc.js";

const dirs: string[] = [];
after(async () => {
  await stopAll();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "hqts-durability-"));
  dirs.push(d);
  return d;
}

const SERIES_PER_BATCH = 10;
const SAMPLES_PER_SERIES = 5;

/** Line-protocol body of batch `id`: its own timestamps, values derived from them so any mix-up shows. */
function body(writer: number, seq: number): { text: string; points: Map<string, number> } {
  const points = new Map<string, number>();
  const lines: string[] = [];
  for (let s = 0; s < SERIES_PER_BATCH; s++)
    for (let k = 0; k < SAMPLES_PER_SERIES; k++) {
      const t = 1_700_000_000_000_000_000n + BigInt(seq * SAMPLES_PER_SERIES + k) * 1_000_000_000n + BigInt(writer);
      const v = seq * 1000 + s * 10 + k + writer / 10;
      lines.push(`load,writer=w${writer},s=s${s} v=${v} ${t}`);
      points.set(`load_v{s="s${s}",writer="w${writer}"}@${t}`, v);
    }
  return { text: lines.join("\n"), points };
}

async function readAll(url: string): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const line of await exportSeries(url, "load_v")) {
    const key = `load_v{s="${line.metric.s}",writer="${line.metric.writer}"}`;
    line.timestamps_ns.forEach((t, i) => {
      const k = `${key}@${t}`;
      const list = out.get(k) ?? [];
      list.push(line.values[i] as number);
      out.set(k, list);
    });
  }
  return out;
}

async function walSegments(dataDir: string): Promise<string[]> {
  return (await readdir(join(dataDir, "wal"))).filter((n) => n.endsWith(".seg")).sort().map((n) => join(dataDir, "wal", n));
}

describe("durability of a standalone node", () => {
  it("loses no acknowledged point and duplicates none when SIGKILLed under sustained writes", async () => {
    const dataDir = await tempDir();
    let node = await startNode({ dataDir });
    const acked = new Map<string, number>();
    const unknown: Map<string, number>[] = [];
    let ackedBatches = 0;
    let stop = false;
    const writer = async (w: number): Promise<void> => {
      for (let seq = 0; !stop; seq++) {
        const b = body(w, seq);
        try {
          const a = await http(`${node.url}/api/v2/write?precision=ns`, { body: b.text, headers: { "Idempotency-Key": `w${w}-${seq}` } });
          if (a.status === 204 || a.status === 200) {
            for (const [k, v] of b.points) acked.set(k, v);
            ackedBatches++;
          } else {
            assert.ok(a.status >= 500, `a write refused with ${a.status} under load: ${a.text}`);
            unknown.push(b.points);
          }
        } catch {
          unknown.push(b.points); // connection dropped by the kill: outcome unknown
          return;
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    const deadline = Date.now() + 60_000;
    while (ackedBatches < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(ackedBatches >= 300, `only ${ackedBatches} batches acked before the deadline`);
    node.kill("SIGKILL");
    await node.exited();
    stop = true;
    await Promise.all(writers);

    node = await startNode({ dataDir });
    const stored = await readAll(node.url);
    let lost = 0;
    for (const [k, v] of acked) {
      const got = stored.get(k);
      if (got === undefined || got.length !== 1 || got[0] !== v) lost++;
    }
    assert.equal(lost, 0, `${lost} of ${acked.size} acknowledged points lost or wrong`);
    for (const [k, vs] of stored) assert.equal(vs.length, 1, `point ${k} stored ${vs.length} times`);
    // A batch whose outcome was unknown is stored whole or not at all: a batch is atomic.
    for (const pts of unknown) {
      const present = [...pts.keys()].filter((k) => stored.has(k)).length;
      assert.ok(present === 0 || present === pts.size, `a batch is partly stored: ${present} of ${pts.size} points`);
    }
    // Every stored point was sent by some writer (acked or unknown): nothing invented.
    const sent = new Set([...acked.keys(), ...unknown.flatMap((m) => [...m.keys()])]);
    for (const k of stored.keys()) assert.ok(sent.has(k), `stored point ${k} was never sent`);
    await node.stop({ keepData: true });
  });

  it("cuts a torn WAL tail (never acknowledged) and keeps every acknowledged write", async () => {
    const dataDir = await tempDir();
    let node = await startNode({ dataDir });
    const b = body(0, 0);
    assert.equal((await http(`${node.url}/api/v2/write?precision=ns`, { body: b.text })).status, 204);
    node.kill("SIGKILL");
    await node.exited();
    const [seg] = await walSegments(dataDir);
    // A crash mid-write leaves the start of a frame: the sync magic and part of a length.
    await appendFile(seg!, new Uint8Array([0xd7, 0x51, 0x3a, 0x9c, 0x40, 0x00]));
    node = await startNode({ dataDir });
    assert.match(node.stderr(), /torn tail/i);
    assert.match(node.stderr(), /00000001\.seg/);
    const stored = await readAll(node.url);
    for (const [k, v] of b.points) assert.deepEqual(stored.get(k), [v]);
    await node.stop({ keepData: true });
  });

  it("refuses to start over a flipped byte mid-segment, naming file and offset; --accept-data-loss starts and says what is lost", async () => {
    const dataDir = await tempDir();
    let node = await startNode({ dataDir });
    const first = body(0, 0);
    const second = body(0, 1);
    for (const [i, b] of [first, second].entries())
      assert.equal((await http(`${node.url}/api/v2/write?precision=ns`, { body: b.text, headers: { "Idempotency-Key": `b${i}` } })).status, 204);
    await node.stop({ keepData: true });
    const [seg] = await walSegments(dataDir);
    // The first record's frame starts right after the 16-byte segment header; flip a byte inside its payload.
    const fh = await open(seg!, "r+");
    const one = new Uint8Array(1);
    await fh.read(one, 0, 1, 16 + 13 + 40);
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, 16 + 13 + 40);
    await fh.close();

    await assert.rejects(startNode({ dataDir, readyTimeoutMs: 15_000 }), (err: Error) => {
      assert.match(err.message, /00000001\.seg/);
      assert.match(err.message, /\b16\b/); // the damaged record's byte offset
      assert.match(err.message, /--accept-data-loss/);
      return true;
    });

    node = await startNode({ dataDir, args: ["--accept-data-loss"] });
    assert.match(node.stderr(), /LOST/);
    const stored = await readAll(node.url);
    for (const k of first.points.keys()) assert.equal(stored.has(k), false, "a damaged record must never be applied");
    for (const [k, v] of second.points) assert.deepEqual(stored.get(k), [v], "records after the damage are replayed");
    await node.stop({ keepData: true });
  });
});

describe("a corrupt block on a standalone node", () => {
  it("refuses to start naming the block file and offset; --accept-data-loss quarantines the block and starts", async () => {
    const dataDir = await tempDir();
    let node = await startNode({ dataDir });
    const flushed = body(1, 0);
    assert.equal((await http(`${node.url}/api/v2/write?precision=ns`, { body: flushed.text })).status, 204);
    const f = await http(`${node.url}/hq/v1/admin/flush`, { method: "POST" });
    assert.equal(f.status, 200, f.text);
    const blockPath = (f.json() as { blockPath: string }).blockPath;
    const inWal = body(1, 1);
    assert.equal((await http(`${node.url}/api/v2/write?precision=ns`, { body: inWal.text })).status, 204);
    await node.stop({ keepData: true });
    // Flip a byte in the block's footer region (last 104 bytes): its own CRC covers it.
    const fh = await open(blockPath, "r+");
    const size = (await fh.stat()).size;
    const one = new Uint8Array(1);
    await fh.read(one, 0, 1, size - 50);
    one[0] = one[0]! ^ 0x01;
    await fh.write(one, 0, 1, size - 50);
    await fh.close();

    await assert.rejects(startNode({ dataDir, readyTimeoutMs: 15_000 }), (err: Error) => {
      assert.ok(err.message.includes(blockPath.split("/").pop()!), `the error names the block file: ${err.message.slice(-600)}`);
      assert.match(err.message, /--accept-data-loss/);
      return true;
    });
    node = await startNode({ dataDir, args: ["--accept-data-loss"] });
    assert.match(node.stderr(), /quarantined/);
    const stored = await readAll(node.url);
    for (const k of flushed.points.keys()) assert.equal(stored.has(k), false, "nothing of a corrupt block is served");
    for (const [k, v] of inWal.points) assert.deepEqual(stored.get(k), [v], "what the WAL holds is still there");
    await node.stop({ keepData: true });
  });
});
