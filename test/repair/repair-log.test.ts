// The repair log (src/repair/log.ts) on a real file system: durable across
// close and reopen, rotation, damaged and torn lines, limits, list filters,
// metrics.

import assert from "node:assert/strict";
import { appendFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Registry } from "prom-client";
import { InvariantError } from "../../src/core/assert.js";
import {
  REPAIR_BATCHES_MAX,
  REPAIR_DETAIL_CHARS_MAX,
  REPAIR_LOG_DIR,
  REPAIR_LOG_FILE,
  RepairLog,
  decodeRepairLine,
  encodeRepairLine,
  openRepairLog,
  type RepairInput,
  type RepairLogOptions,
} from "../../src/repair/log.js";
import { tempDirs } from "../helpers/temp-dirs.js";

const dataDir = tempDirs("hqts-repairlog-");

function input(over: Partial<RepairInput> = {}): RepairInput {
  return {
    kind: "read-repair",
    trigger: "read",
    where: { fromNs: "1700000000000000000", toNs: "1700000060000000000" },
    fromPeer: "n2",
    outcome: "repaired",
    points: { stored: 3, present: 10, divergent: 0 },
    batches: ["b1", "b2"],
    digests: { before: "aa", after: "bb", peer: "bb" },
    detail: "copied 3 points",
    ...over,
  };
}

const open = (dir: string, opts: RepairLogOptions = {}, registry = new Registry()): Promise<RepairLog> => RepairLog.open(dir, "n1", registry, opts);
const logFile = (dir: string, name = REPAIR_LOG_FILE): string => join(dir, REPAIR_LOG_DIR, name);

describe("durability", () => {
  test("records survive close and reopen; ids continue; fields as given", async () => {
    const dir = await dataDir();
    const at = new Date("2024-05-01T10:00:00.000Z");
    const log = await open(dir, { now: () => at });
    const r1 = await log.record(input());
    const r2 = await log.record(input({ kind: "wal-damage", trigger: "open", where: { file: "wal/00000003.wal", offset: 4096, length: 512 }, fromPeer: null, outcome: "partial" }));
    assert.equal(r1.id, "1");
    assert.equal(r2.id, "2");
    assert.equal(r1.at, "2024-05-01T10:00:00.000Z");
    assert.equal(r1.node, "n1");
    assert.deepEqual(r1.points, { stored: 3, present: 10, divergent: 0 });
    assert.deepEqual(r1.batches, ["b1", "b2"]);
    assert.equal(r1.batchesTotal, 2);
    await log.close();

    const again = await open(dir);
    assert.deepEqual(again.list({ limit: 100 }), [r1, r2]);
    const r3 = await again.record(input({ kind: "data-loss", trigger: "open", outcome: "pending" }));
    assert.equal(r3.id, "3");
    const s = again.stats();
    assert.equal(s.total, 3);
    assert.equal(s.byKind["read-repair"], 1);
    assert.equal(s.byKind["wal-damage"], 1);
    assert.equal(s.byKind["data-loss"], 1);
    assert.equal(s.byKind["anti-entropy"], 0);
    assert.equal(s.byOutcome.repaired, 1);
    assert.equal(s.byOutcome.partial, 1);
    assert.equal(s.byOutcome.pending, 1);
    assert.equal(s.last?.id, "3");
    assert.equal(s.lastAt, r3.at);
    assert.equal(s.nextId, "4");
    assert.equal(s.skippedLines, 0);
    await again.close();
  });

  test("the file is JSON lines: {crc, r} with r the record; each record() is on disk when it resolves", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    const r = await log.record(input());
    // Read while still open: the line is written (and fdatasync'ed) before record() resolved.
    const text = await readFile(logFile(dir), "utf8");
    const lines = text.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1);
    const parsed = JSON.parse(lines[0]!) as { crc: string; r: unknown };
    assert.match(parsed.crc, /^[0-9a-f]{8}$/);
    assert.deepEqual(parsed.r, r);
    assert.deepEqual(decodeRepairLine(lines[0]!), r);
    assert.equal(encodeRepairLine(r), lines[0] + "\n");
    await log.close();
  });

  test("concurrent record() calls get consecutive ids in file order", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => log.record(input({ detail: `r${i}` }))));
    assert.deepEqual(
      rs.map((r) => r.id),
      Array.from({ length: 20 }, (_, i) => String(i + 1)),
    );
    assert.deepEqual(
      rs.map((r) => r.detail),
      Array.from({ length: 20 }, (_, i) => `r${i}`),
    );
    await log.close();
    const lines = (await readFile(logFile(dir), "utf8")).split("\n").filter((l) => l !== "");
    assert.deepEqual(
      lines.map((l) => decodeRepairLine(l)?.id),
      rs.map((r) => r.id),
    );
  });

  test("close() lets pending appends finish; record() after close rejects; close is idempotent", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    const pending = log.record(input());
    const closing = log.close();
    assert.equal((await pending).id, "1");
    await closing;
    await log.close();
    await assert.rejects(log.record(input()), /closed/);
    const again = await open(dir);
    assert.equal(again.stats().total, 1);
    await again.close();
  });
});

describe("damage at open", () => {
  test("a line with a flipped byte or garbage is skipped and counted, never fatal", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    for (let i = 0; i < 4; i++) await log.record(input({ detail: `r${i}` }));
    await log.close();
    const lines = (await readFile(logFile(dir), "utf8")).split("\n");
    // Record 2: still valid JSON, but a digest changed (the checksum catches it).
    lines[1] = lines[1]!.replace('"after":"bb"', '"after":"bc"');
    assert.ok(JSON.parse(lines[1]!));
    // Record 3: garbage.
    lines[2] = "\u0000\u0000garbage{{{";
    await writeFile(logFile(dir), lines.join("\n"));

    const again = await open(dir);
    assert.deepEqual(
      again.list({ limit: 10 }).map((r) => r.id),
      ["1", "4"],
    );
    const s = again.stats();
    assert.equal(s.skippedLines, 2);
    assert.equal(s.total, 2);
    assert.equal((await again.record(input())).id, "5", "ids go on after the largest one found");
    await again.close();
  });

  test("a torn last line (crash mid-append) is cut; the next append starts on a line of its own", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    const r1 = await log.record(input());
    await log.close();
    const torn = encodeRepairLine({ ...r1, id: "2" }).slice(0, 40);
    await appendFile(logFile(dir), torn);

    const again = await open(dir);
    const s = again.stats();
    assert.equal(s.tornTailBytes, 40);
    assert.equal(s.total, 1);
    assert.equal((await again.record(input({ detail: "after the tear" }))).id, "2");
    await again.close();

    const third = await open(dir);
    assert.deepEqual(
      third.list({ limit: 10 }).map((r) => [r.id, r.detail]),
      [
        ["1", "copied 3 points"],
        ["2", "after the tear"],
      ],
    );
    assert.equal(third.stats().skippedLines, 0);
    assert.equal(third.stats().tornTailBytes, 0);
    await third.close();
  });

  test("a missing directory is created; an empty one opens empty", async () => {
    const dir = await dataDir();
    const log = await open(join(dir, "fresh"));
    assert.deepEqual(log.list({ limit: 5 }), []);
    const s = log.stats();
    assert.equal(s.total, 0);
    assert.equal(s.last, null);
    assert.equal(s.lastAt, null);
    assert.equal(s.oldestHeldId, null);
    assert.equal(s.nextId, "1");
    await log.close();
  });
});

describe("rotation", () => {
  test("past fileBytesMax the file rotates; filesKept files in all; counts follow the files", async () => {
    const dir = await dataDir();
    const opts = { fileBytesMax: 4096, filesKept: 3 };
    const log = await open(dir, opts);
    const lineBytes = Buffer.byteLength(encodeRepairLine({ ...(await log.record(input())) }));
    for (let i = 1; i < 60; i++) await log.record(input());
    const names = (await readdir(join(dir, REPAIR_LOG_DIR))).sort();
    assert.deepEqual(names, ["repairs.1.jsonl", "repairs.2.jsonl", "repairs.jsonl"]);
    for (const n of names) assert.ok((await readFile(join(dir, REPAIR_LOG_DIR, n))).length <= 4096, `${n} within the limit`);
    const perFile = Math.floor(4096 / lineBytes);
    const live = log.stats();
    assert.equal(live.files, 3);
    assert.ok(live.total < 60 && live.total > 2 * perFile, `counts over the files kept (${live.total})`);
    await log.close();

    const again = await open(dir, opts);
    const s = again.stats();
    assert.equal(s.total, live.total, "the same counts after reopening");
    const ids = again.list({ limit: 1000 }).map((r) => Number(r.id));
    assert.equal(ids.length, s.total);
    assert.equal(ids[ids.length - 1], 60);
    assert.deepEqual(
      ids,
      Array.from({ length: ids.length }, (_, i) => 61 - ids.length + i),
      "consecutive: only the oldest went",
    );
    assert.equal((await again.record(input())).id, "61");
    await again.close();
  });

  test("files beyond filesKept (a larger setting before) are read, then dropped at the next rotation", async () => {
    const dir = await dataDir();
    const big = await open(dir, { fileBytesMax: 4096, filesKept: 5 });
    for (let i = 0; i < 60; i++) await big.record(input());
    await big.close();
    assert.ok((await readdir(join(dir, REPAIR_LOG_DIR))).includes("repairs.4.jsonl"));
    const small = await open(dir, { fileBytesMax: 4096, filesKept: 2 });
    for (let i = 0; i < 20; i++) await small.record(input());
    assert.deepEqual((await readdir(join(dir, REPAIR_LOG_DIR))).sort(), ["repairs.1.jsonl", "repairs.jsonl"]);
    assert.equal(small.stats().files, 2);
    await small.close();
  });
});

describe("limits", () => {
  test("batches cut to REPAIR_BATCHES_MAX with the total kept; detail and strings cut", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    const batches = Array.from({ length: 250 }, (_, i) => `batch-${i}`);
    const r = await log.record(input({ batches, detail: "x".repeat(10_000), fromPeer: "p".repeat(5000) }));
    assert.equal(r.batches.length, REPAIR_BATCHES_MAX);
    assert.equal(r.batches[0], "batch-0");
    assert.equal(r.batchesTotal, 250);
    assert.equal(r.detail.length, REPAIR_DETAIL_CHARS_MAX);
    assert.ok(r.detail.endsWith("…"));
    assert.ok(r.fromPeer!.length <= 1024);
    const r2 = await log.record(input({ batches: ["a"], batchesTotal: 7 }));
    assert.equal(r2.batchesTotal, 7, "a caller that cut the list itself passes the total");
    const r3 = await log.record({ kind: "block-missing", trigger: "scrub", where: { file: "blocks/x.hqb" }, fromPeer: null, outcome: "failed" });
    assert.deepEqual(r3.points, { stored: 0, present: 0, divergent: 0 });
    assert.deepEqual(r3.batches, []);
    assert.deepEqual(r3.digests, {});
    assert.equal(r3.detail, "");
    await log.close();
  });

  test("memoryRecords: only the newest are listed; stats say where memory starts", async () => {
    const dir = await dataDir();
    const log = await open(dir, { memoryRecords: 5 });
    for (let i = 0; i < 23; i++) await log.record(input());
    assert.deepEqual(
      log.list({ limit: 100 }).map((r) => r.id),
      ["19", "20", "21", "22", "23"],
    );
    assert.equal(log.stats().oldestHeldId, "19");
    assert.equal(log.stats().total, 23, "counts cover the files, not memory");
    await log.close();
    const again = await open(dir, { memoryRecords: 5 });
    assert.equal(again.stats().oldestHeldId, "19");
    assert.equal(again.stats().total, 23);
    await again.close();
  });

  test("bad input is a bug: unknown kind, negative counts, bad ns, bad list limit", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    await assert.rejects(log.record(input({ kind: "bogus" as never })), InvariantError);
    await assert.rejects(log.record(input({ outcome: "fine" as never })), InvariantError);
    await assert.rejects(log.record(input({ points: { stored: -1, present: 0, divergent: 0 } })), InvariantError);
    await assert.rejects(log.record(input({ where: { fromNs: "yesterday" } })), InvariantError);
    assert.throws(() => log.list({ limit: 0 }), InvariantError);
    assert.throws(() => log.list({ limit: 10_001 }), InvariantError);
    assert.equal((await log.record(input())).id, "1", "a refused record uses no id");
    await log.close();
    await assert.rejects(RepairLog.open(dir, "", new Registry()), InvariantError);
    await assert.rejects(RepairLog.open(dir, "n1", new Registry(), { filesKept: 0 }), InvariantError);
  });
});

describe("list", () => {
  test("kind filter, newest limit, paging forward with sinceId", async () => {
    const dir = await dataDir();
    const log = await open(dir);
    const kinds = ["read-repair", "wal-damage", "read-repair", "anti-entropy", "read-repair", "block-damage"] as const;
    for (const kind of kinds) await log.record(input({ kind }));
    const ids = (q: Parameters<RepairLog["list"]>[0]): string[] => log.list(q).map((r) => r.id);
    assert.deepEqual(ids({ limit: 100 }), ["1", "2", "3", "4", "5", "6"]);
    assert.deepEqual(ids({ limit: 2 }), ["5", "6"], "without since: the newest, newest last");
    assert.deepEqual(ids({ limit: 100, kind: "read-repair" }), ["1", "3", "5"]);
    assert.deepEqual(ids({ limit: 100, kind: ["wal-damage", "block-damage"] }), ["2", "6"]);
    assert.deepEqual(ids({ limit: 2, sinceId: "1" }), ["2", "3"], "with since: the oldest after it");
    assert.deepEqual(ids({ limit: 2, sinceId: "3" }), ["4", "5"]);
    assert.deepEqual(ids({ limit: 2, sinceId: "6" }), []);
    assert.deepEqual(ids({ limit: 100, sinceId: "0" }), ["1", "2", "3", "4", "5", "6"]);
    assert.deepEqual(ids({ limit: 1, sinceId: "1", kind: "read-repair" }), ["3"]);
    // list returns copies: changing them changes nothing.
    log.list({ limit: 1 })[0]!.batches.push("tampered");
    assert.deepEqual(log.list({ limit: 1 })[0]!.batches, ["b1", "b2"]);
    await log.close();
  });
});

describe("metrics", () => {
  test("hqts_repairs_total{kind,outcome} counts records; reopening on the same registry is fine", async () => {
    const dir = await dataDir();
    const registry = new Registry();
    const log = await openRepairLog(dir, "n1", registry);
    await log.record(input());
    await log.record(input());
    await log.record(input({ kind: "block-damage", trigger: "scrub", outcome: "failed" }));
    await log.close();
    const again = await openRepairLog(dir, "n1", registry);
    await again.record(input());
    await again.close();
    const text = await registry.metrics();
    assert.match(text, /hqts_repairs_total\{kind="read-repair",outcome="repaired"\} 3/);
    assert.match(text, /hqts_repairs_total\{kind="block-damage",outcome="failed"\} 1/);
    assert.match(text, /hqts_repairs_total\{kind="data-loss",outcome="repaired"\} 0/, "every series exists from the start");
  });
});
