// The repair log: an append-only, durable record of every repair this node
// made, so an operator can see what was damaged and how it was healed: what
// was damaged or missing, where, what triggered the repair, which peer the
// data came from, how many points and which batches, the window digests
// before and after. Served by GET /hq/v1/repairs
// (repair/route.ts) and `hqts repairs`; docs/repairs.md.
//
// On disk: JSON lines in <dataDir>/repairs/repairs.jsonl, one record a line,
//
//   {"crc":"<crc32c of R, 8 hex>","r":R}\n
//
// where R is the record's JSON exactly as written (the checksum covers its
// bytes, so a flipped bit in a digest or a count is caught, not only broken
// JSON). `jq .r repairs.jsonl` reads them. Each append is fdatasync'ed before
// record() resolves. Past REPAIR_LOG_FILE_BYTES_MAX the file is rotated:
// repairs.jsonl → repairs.1.jsonl → repairs.2.jsonl …, keeping
// REPAIR_LOG_FILES_KEPT files in all (the oldest is dropped).
//
// At open every file is read: a line that fails its checksum or does not
// parse as a record is skipped and counted (stats().skippedLines), never
// fatal; a torn last line of the active file (a crash mid-append: that
// record() never resolved) is cut off. Ids continue after the largest id
// found. The newest REPAIR_LOG_MEMORY_RECORDS stay in memory for list().

import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { assert } from "../core/assert.js";
import { HqError, UnavailableError } from "../core/errors.js";
import { crc32c } from "../core/hash.js";

// ---------------------------------------------------------------- record

export const REPAIR_KINDS = ["wal-damage", "block-damage", "block-missing", "data-loss", "catch-up", "anti-entropy", "read-repair"] as const;
export type RepairKind = (typeof REPAIR_KINDS)[number];

export const REPAIR_TRIGGERS = ["open", "scrub", "read", "anti-entropy", "catch-up", "audit"] as const;
export type RepairTrigger = (typeof REPAIR_TRIGGERS)[number];

export const REPAIR_OUTCOMES = ["repaired", "partial", "failed", "pending"] as const;
export type RepairOutcome = (typeof REPAIR_OUTCOMES)[number];

export interface RepairWhere {
  /** File the damage was found in, relative to the data dir where possible (e.g. "wal/00000003.wal", "blocks/….hqb"). */
  file?: string;
  /** Byte offset of the damage in `file`. */
  offset?: number;
  /** Bytes affected from `offset`. */
  length?: number;
  /** Time window repaired: first nanosecond, decimal int64 (inclusive). */
  fromNs?: string;
  /** Time window repaired: last nanosecond, decimal int64 (inclusive). */
  toNs?: string;
}

export interface RepairPoints {
  /** Points this node stored by the repair. */
  stored: number;
  /** Points compared that were already present and equal. */
  present: number;
  /** Points that differed between this node and the peer. */
  divergent: number;
}

export interface RepairDigests {
  /** This node's digest of the window before the repair (hex). */
  before?: string;
  /** This node's digest of the window after the repair (hex). */
  after?: string;
  /** The peer's digest of the window (hex). */
  peer?: string;
}

export interface RepairRecord {
  /** Monotonic per node: decimal integer as a string ("1", "2", …). */
  id: string;
  /** When it was recorded (ISO 8601, UTC, ms). */
  at: string;
  /** The node that made the repair. */
  node: string;
  kind: RepairKind;
  trigger: RepairTrigger;
  where: RepairWhere;
  /** The peer the data came from (node id or URL), null when none (e.g. a quarantine without a peer). */
  fromPeer: string | null;
  outcome: RepairOutcome;
  points: RepairPoints;
  /** Batch ids adopted or repaired: the first REPAIR_BATCHES_MAX. */
  batches: string[];
  /** How many batches in all (batches holds at most REPAIR_BATCHES_MAX of them). */
  batchesTotal: number;
  digests: RepairDigests;
  /** Free text for a human. */
  detail: string;
}

/**
 * What record() takes: the record without what the log fills in. `points`, `batches`, `digests` and `detail`
 * may be left out (zero, none, none, ""); `batchesTotal` defaults to the length of `batches` as given (pass it when
 * the list given is already cut short).
 */
export type RepairInput = Omit<RepairRecord, "id" | "at" | "node" | "points" | "batches" | "batchesTotal" | "digests" | "detail"> & {
  points?: RepairPoints;
  batches?: readonly string[];
  batchesTotal?: number;
  digests?: RepairDigests;
  detail?: string;
};

// ---------------------------------------------------------------- limits

/** Directory under the data dir. */
export const REPAIR_LOG_DIR = "repairs";
/** The active file; rotated ones are repairs.1.jsonl (newest) … repairs.<kept-1>.jsonl (oldest). */
export const REPAIR_LOG_FILE = "repairs.jsonl";
/** Bytes: the active file is rotated before an append would take it past this. */
export const REPAIR_LOG_FILE_BYTES_MAX = 16 * 1024 * 1024;
/** Files kept, the active one included (so at most about 64 MiB of repair history). */
export const REPAIR_LOG_FILES_KEPT = 4;
/** Records: the newest this many are held in memory for list(). */
export const REPAIR_LOG_MEMORY_RECORDS = 10_000;
/** Records: the most one list() returns (and the route's `limit` ceiling). */
export const REPAIR_LIST_LIMIT_MAX = 10_000;
/** Batch ids kept per record (the rest is counted in batchesTotal). */
export const REPAIR_BATCHES_MAX = 100;
/** Characters of `detail` kept per record. */
export const REPAIR_DETAIL_CHARS_MAX = 4096;
/** Characters kept of any other string field (file, peer, a digest, a batch id). */
export const REPAIR_STRING_CHARS_MAX = 1024;
/** Characters of a node id. */
export const REPAIR_NODE_ID_CHARS_MAX = 256;

export interface RepairLogOptions {
  /** Default REPAIR_LOG_FILE_BYTES_MAX. At least 4096. */
  fileBytesMax?: number;
  /** Default REPAIR_LOG_FILES_KEPT. 1..100 (1: the active file only, emptied at rotation). */
  filesKept?: number;
  /** Default REPAIR_LOG_MEMORY_RECORDS. 1..1,000,000. */
  memoryRecords?: number;
  /** Warnings about skipped lines and a cut torn tail. */
  log?: Logger;
  /** The clock (tests). */
  now?: () => Date;
}

export interface RepairCounts {
  total: number;
  byKind: Record<RepairKind, number>;
  byOutcome: Record<RepairOutcome, number>;
}

export interface RepairLogStats extends RepairCounts {
  /** The newest record, null when the log is empty. */
  last: RepairRecord | null;
  /** `at` of the newest record, null when the log is empty. */
  lastAt: string | null;
  /** Id of the oldest record held in memory (list() cannot go further back), null when empty. */
  oldestHeldId: string | null;
  /** The id the next record will get. */
  nextId: string;
  /** Lines skipped at open: failed their checksum or were not a record. */
  skippedLines: number;
  /** Bytes of a torn last line cut off the active file at open. */
  tornTailBytes: number;
  /** Files on disk, the active one included. */
  files: number;
  /** Bytes in the active file. */
  activeFileBytes: number;
}

export interface ListQuery {
  /** Only records with a larger id (then the oldest `limit` of them: page forward with the last id seen). */
  sinceId?: string;
  /** Only records of this kind (or these kinds). */
  kind?: RepairKind | readonly RepairKind[];
  /** At most this many, 1..REPAIR_LIST_LIMIT_MAX. Without sinceId, the newest `limit`. */
  limit: number;
}

// ---------------------------------------------------------------- encoding

const LINE_PREFIX = '{"crc":"';
const LINE_MIDDLE = '","r":';
const HEADER_CHARS = LINE_PREFIX.length + 8 + LINE_MIDDLE.length;

/** One line of the file (newline included). */
export function encodeRepairLine(r: RepairRecord): string {
  const body = JSON.stringify(r);
  const crc = crc32c(Buffer.from(body, "utf8")).toString(16).padStart(8, "0");
  return `${LINE_PREFIX}${crc}${LINE_MIDDLE}${body}}\n`;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === "string";
const NS_RE = /^-?[0-9]{1,19}$/;
const ID_RE = /^[1-9][0-9]{0,15}$/;

function isRecord(v: unknown): v is RepairRecord {
  if (typeof v !== "object" || v === null) return false;
  const r = v as Record<string, unknown>;
  const where = r.where as Record<string, unknown> | null;
  const points = r.points as Record<string, unknown> | null;
  const digests = r.digests as Record<string, unknown> | null;
  return (
    isStr(r.id) &&
    ID_RE.test(r.id) &&
    Number.isSafeInteger(Number(r.id)) &&
    isStr(r.at) &&
    isStr(r.node) &&
    (REPAIR_KINDS as readonly unknown[]).includes(r.kind) &&
    (REPAIR_TRIGGERS as readonly unknown[]).includes(r.trigger) &&
    (REPAIR_OUTCOMES as readonly unknown[]).includes(r.outcome) &&
    (r.fromPeer === null || isStr(r.fromPeer)) &&
    typeof where === "object" &&
    where !== null &&
    typeof points === "object" &&
    points !== null &&
    isInt(points.stored) &&
    isInt(points.present) &&
    isInt(points.divergent) &&
    Array.isArray(r.batches) &&
    r.batches.every(isStr) &&
    isInt(r.batchesTotal) &&
    typeof digests === "object" &&
    digests !== null &&
    isStr(r.detail)
  );
}

/** Parses one line (without its newline); null when it fails its checksum or is not a record. */
export function decodeRepairLine(line: string): RepairRecord | null {
  if (!line.startsWith(LINE_PREFIX) || !line.endsWith("}") || line.length < HEADER_CHARS + 2) return null;
  const crcHex = line.slice(LINE_PREFIX.length, LINE_PREFIX.length + 8);
  if (!/^[0-9a-f]{8}$/.test(crcHex) || line.slice(LINE_PREFIX.length + 8, HEADER_CHARS) !== LINE_MIDDLE) return null;
  const body = line.slice(HEADER_CHARS, -1);
  if (crc32c(Buffer.from(body, "utf8")) !== Number.parseInt(crcHex, 16)) return null;
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return null;
  }
  return isRecord(v) ? v : null;
}

// ---------------------------------------------------------------- helpers

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function emptyCounts(): RepairCounts {
  return {
    total: 0,
    byKind: Object.fromEntries(REPAIR_KINDS.map((k) => [k, 0])) as Record<RepairKind, number>,
    byOutcome: Object.fromEntries(REPAIR_OUTCOMES.map((o) => [o, 0])) as Record<RepairOutcome, number>,
  };
}

function addTo(c: RepairCounts, r: RepairRecord): void {
  c.total += 1;
  c.byKind[r.kind] += 1;
  c.byOutcome[r.outcome] += 1;
}

function addCounts(into: RepairCounts, c: RepairCounts): void {
  into.total += c.total;
  for (const k of REPAIR_KINDS) into.byKind[k] += c.byKind[k];
  for (const o of REPAIR_OUTCOMES) into.byOutcome[o] += c.byOutcome[o];
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

function rotatedName(i: number): string {
  return i === 0 ? REPAIR_LOG_FILE : `repairs.${i}.jsonl`;
}

function optionInt(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  const n = v ?? dflt;
  assert(Number.isSafeInteger(n) && n >= min && n <= max, `RepairLogOptions.${name} must be an integer ${min}..${max}, got ${String(v)}`);
  return n;
}

const repairsTotalByRegistry = new WeakMap<Registry, Counter<"kind" | "outcome">>();

function repairsCounter(registry: Registry): Counter<"kind" | "outcome"> {
  const known = repairsTotalByRegistry.get(registry);
  if (known !== undefined) return known;
  const c = new Counter({
    name: "hqts_repairs_total",
    help: "Repairs this node recorded in its repair log since the process started, by kind and outcome.",
    labelNames: ["kind", "outcome"],
    registers: [registry],
  });
  for (const kind of REPAIR_KINDS) for (const outcome of REPAIR_OUTCOMES) c.inc({ kind, outcome }, 0);
  repairsTotalByRegistry.set(registry, c);
  return c;
}

// ---------------------------------------------------------------- the log

export class RepairLog {
  private handle: FileHandle | null;
  private activeBytes: number;
  private nextId: number;
  /** Held records, ascending ids; trimmed to memoryRecords (lazily, at 2x). */
  private held: RepairRecord[];
  /** Counts per file: index 0 the active file, i the file repairs.i.jsonl; null where there is no such file. */
  private fileCounts: (RepairCounts | null)[];
  private last: RepairRecord | null;
  private readonly skippedLines: number;
  private readonly tornTailBytes: number;
  private queue: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;
  private closed = false;
  private broken: Error | null = null;

  private constructor(
    readonly dir: string,
    readonly nodeId: string,
    private readonly counter: Counter<"kind" | "outcome">,
    private readonly opts: { fileBytesMax: number; filesKept: number; memoryRecords: number; log: Logger | null; now: () => Date },
    state: { handle: FileHandle; activeBytes: number; nextId: number; held: RepairRecord[]; fileCounts: (RepairCounts | null)[]; last: RepairRecord | null; skippedLines: number; tornTailBytes: number },
  ) {
    this.handle = state.handle;
    this.activeBytes = state.activeBytes;
    this.nextId = state.nextId;
    this.held = state.held;
    this.fileCounts = state.fileCounts;
    this.last = state.last;
    this.skippedLines = state.skippedLines;
    this.tornTailBytes = state.tornTailBytes;
  }

  /**
   * Opens (creating if missing) <dataDir>/repairs/ and reads every file in it. Registers `hqts_repairs_total`
   * in `registry` (once per registry: reopening with the same registry reuses the counter).
   */
  static async open(dataDir: string, nodeId: string, registry: Registry, options: RepairLogOptions = {}): Promise<RepairLog> {
    assert(typeof nodeId === "string" && nodeId.length > 0 && nodeId.length <= REPAIR_NODE_ID_CHARS_MAX, `repair log: node id must be 1..${REPAIR_NODE_ID_CHARS_MAX} characters`);
    const opts = {
      fileBytesMax: optionInt("fileBytesMax", options.fileBytesMax, REPAIR_LOG_FILE_BYTES_MAX, 4096, 2 ** 40),
      filesKept: optionInt("filesKept", options.filesKept, REPAIR_LOG_FILES_KEPT, 1, 100),
      memoryRecords: optionInt("memoryRecords", options.memoryRecords, REPAIR_LOG_MEMORY_RECORDS, 1, 1_000_000),
      log: options.log ?? null,
      now: options.now ?? (() => new Date()),
    };
    const dir = join(dataDir, REPAIR_LOG_DIR);
    const existed = await stat(dir).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return false;
        throw e;
      },
    );
    await mkdir(dir, { recursive: true });
    if (!existed) await fsyncDir(dataDir);

    // Rotated files, oldest first (highest index first), then the active one.
    const indexes = (await readdir(dir))
      .map((n) => (n === REPAIR_LOG_FILE ? 0 : /^repairs\.([1-9][0-9]{0,3})\.jsonl$/.exec(n)?.[1]))
      .filter((x): x is string | 0 => x !== undefined)
      .map(Number)
      .sort((a, b) => b - a);
    let held: RepairRecord[] = [];
    const fileCounts: (RepairCounts | null)[] = [];
    let maxId = 0;
    let last: RepairRecord | null = null;
    let skippedLines = 0;
    let tornTailBytes = 0;
    let activeBytes = 0;
    for (const i of indexes) {
      const path = join(dir, rotatedName(i));
      let buf = await readFile(path);
      if (i === 0 && buf.length > 0 && buf[buf.length - 1] !== 0x0a) {
        // A torn append: its record() never resolved. Cut it so the next append starts on a line of its own.
        const keep = buf.lastIndexOf(0x0a) + 1;
        tornTailBytes = buf.length - keep;
        const h = await open(path, "r+");
        try {
          await h.truncate(keep);
          await h.datasync();
        } finally {
          await h.close();
        }
        buf = buf.subarray(0, keep);
        opts.log?.warn({ file: path, bytes: tornTailBytes }, "repair log: cut a torn last line (an append interrupted by a crash)");
      }
      if (i === 0) activeBytes = buf.length;
      const counts = emptyCounts();
      const lines = buf.toString("utf8").split("\n");
      for (let n = 0; n < lines.length; n++) {
        const line = lines[n]!;
        if (line === "") continue;
        const r = decodeRepairLine(line);
        if (r === null) {
          skippedLines++;
          opts.log?.warn({ file: path, line: n + 1 }, "repair log: skipped a damaged line");
          continue;
        }
        const id = Number(r.id);
        if (id <= maxId) {
          // Ids only grow; an old or repeated one (a file restored from a backup?) is not listed twice.
          skippedLines++;
          opts.log?.warn({ file: path, line: n + 1, id: r.id }, "repair log: skipped a record whose id is not above the previous one");
          continue;
        }
        maxId = id;
        addTo(counts, r);
        last = r;
        held.push(r);
        if (held.length >= 2 * opts.memoryRecords) held = held.slice(-opts.memoryRecords);
      }
      fileCounts[i] = counts;
    }
    if (held.length > opts.memoryRecords) held = held.slice(-opts.memoryRecords);
    fileCounts[0] ??= emptyCounts();
    for (let i = 1; i < fileCounts.length; i++) fileCounts[i] ??= null;

    const activePath = join(dir, REPAIR_LOG_FILE);
    const handle = await open(activePath, "a");
    if (!indexes.includes(0)) {
      await handle.datasync();
      await fsyncDir(dir);
    }
    return new RepairLog(dir, nodeId, repairsCounter(registry), opts, {
      handle,
      activeBytes,
      nextId: maxId + 1,
      held,
      fileCounts,
      last,
      skippedLines,
      tornTailBytes,
    });
  }

  /**
   * Appends a record; resolves once it is on disk (fdatasync), with the id and time it got. Appends are serialized
   * in call order. Rejects when the write fails (the file is cut back to where it was; if even that fails, every
   * later record() rejects too) or the log is closed.
   */
  record(input: RepairInput): Promise<RepairRecord> {
    const r = this.queue.then(() => this.append(input));
    this.queue = r.catch(() => undefined);
    return r;
  }

  private build(input: RepairInput): RepairRecord {
    assert((REPAIR_KINDS as readonly string[]).includes(input.kind), `repair record: unknown kind ${String(input.kind)}`);
    assert((REPAIR_TRIGGERS as readonly string[]).includes(input.trigger), `repair record: unknown trigger ${String(input.trigger)}`);
    assert((REPAIR_OUTCOMES as readonly string[]).includes(input.outcome), `repair record: unknown outcome ${String(input.outcome)}`);
    assert(input.fromPeer === null || typeof input.fromPeer === "string", "repair record: fromPeer must be a string or null");
    const points = input.points ?? { stored: 0, present: 0, divergent: 0 };
    assert(isInt(points.stored) && isInt(points.present) && isInt(points.divergent), "repair record: points must be non-negative integers");
    const w = input.where ?? {};
    const where: RepairWhere = {};
    if (w.file !== undefined) where.file = cut(String(w.file), REPAIR_STRING_CHARS_MAX);
    if (w.offset !== undefined) {
      assert(isInt(w.offset), "repair record: where.offset must be a non-negative integer");
      where.offset = w.offset;
    }
    if (w.length !== undefined) {
      assert(isInt(w.length), "repair record: where.length must be a non-negative integer");
      where.length = w.length;
    }
    if (w.fromNs !== undefined) {
      assert(NS_RE.test(String(w.fromNs)), "repair record: where.fromNs must be a decimal int64");
      where.fromNs = String(w.fromNs);
    }
    if (w.toNs !== undefined) {
      assert(NS_RE.test(String(w.toNs)), "repair record: where.toNs must be a decimal int64");
      where.toNs = String(w.toNs);
    }
    const batchesIn = input.batches ?? [];
    assert(Array.isArray(batchesIn) && batchesIn.every(isStr), "repair record: batches must be strings");
    const batchesTotal = Math.max(batchesIn.length, input.batchesTotal ?? 0);
    assert(isInt(batchesTotal), "repair record: batchesTotal must be a non-negative integer");
    const digests: RepairDigests = {};
    for (const k of ["before", "after", "peer"] as const) {
      const d = input.digests?.[k];
      if (d !== undefined) digests[k] = cut(String(d), REPAIR_STRING_CHARS_MAX);
    }
    return {
      id: String(this.nextId),
      at: this.opts.now().toISOString(),
      node: this.nodeId,
      kind: input.kind,
      trigger: input.trigger,
      where,
      fromPeer: input.fromPeer === null ? null : cut(input.fromPeer, REPAIR_STRING_CHARS_MAX),
      outcome: input.outcome,
      points: { stored: points.stored, present: points.present, divergent: points.divergent },
      batches: batchesIn.slice(0, REPAIR_BATCHES_MAX).map((b) => cut(b, REPAIR_STRING_CHARS_MAX)),
      batchesTotal,
      digests,
      detail: cut(String(input.detail ?? ""), REPAIR_DETAIL_CHARS_MAX),
    };
  }

  private async append(input: RepairInput): Promise<RepairRecord> {
    if (this.closed) throw new UnavailableError("the repair log is closed");
    if (this.broken !== null) throw new HqError("internal", `the repair log cannot be written since an earlier failure: ${this.broken.message}`, { cause: this.broken });
    const r = this.build(input);
    const line = Buffer.from(encodeRepairLine(r), "utf8");
    if (this.activeBytes > 0 && this.activeBytes + line.length > this.opts.fileBytesMax) await this.rotateOrGoOn();
    const h = this.handle;
    if (h === null) throw new HqError("internal", "the repair log has no open file: rotation failed and the active file could not be reopened (see the node's log)");
    try {
      let done = 0;
      while (done < line.length) {
        const { bytesWritten } = await h.write(line, done, line.length - done);
        if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${this.activeBytes + done}`);
        done += bytesWritten;
      }
      await h.datasync();
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      try {
        await h.truncate(this.activeBytes);
        await h.datasync();
      } catch (e2) {
        this.broken = e2 instanceof Error ? e2 : new Error(String(e2));
        this.opts.log?.error({ err: this.broken.message, dir: this.dir }, "repair log: cannot cut a failed append back; the log takes no more records");
      }
      throw new HqError("internal", `repair log: cannot append to ${join(this.dir, REPAIR_LOG_FILE)}: ${err.message}`, { cause: err });
    }
    this.activeBytes += line.length;
    this.nextId++;
    addTo((this.fileCounts[0] ??= emptyCounts()), r);
    this.last = r;
    this.held.push(r);
    if (this.held.length >= 2 * this.opts.memoryRecords) this.held = this.held.slice(-this.opts.memoryRecords);
    this.counter.inc({ kind: r.kind, outcome: r.outcome });
    return structuredClone(r);
  }

  /**
   * Rotates; when that fails, logs it and goes on appending to whatever file is active (past the size limit
   * rather than losing records). Only when no file can be opened at all does the log stop taking records.
   */
  private async rotateOrGoOn(): Promise<void> {
    try {
      await this.rotate();
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      this.opts.log?.error({ err: err.message, dir: this.dir }, "repair log: rotation failed; appending to the active file past its size limit");
      if (this.handle !== null) return;
      try {
        const path = join(this.dir, REPAIR_LOG_FILE);
        this.handle = await open(path, "a");
        this.activeBytes = (await this.handle.stat()).size;
      } catch (e2) {
        this.broken = e2 instanceof Error ? e2 : new Error(String(e2));
      }
    }
  }

  /** repairs.jsonl → repairs.1.jsonl → …; files past filesKept are dropped; a new empty active file. */
  private async rotate(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h !== null) await h.close();
    const kept = this.opts.filesKept;
    for (let i = Math.max(kept, this.fileCounts.length) - 1; i >= kept - 1; i--) if (i > 0 || kept === 1) await rm(join(this.dir, rotatedName(i)), { force: true });
    for (let i = kept - 2; i >= 0; i--) {
      await rename(join(this.dir, rotatedName(i)), join(this.dir, rotatedName(i + 1))).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw e;
      });
    }
    this.fileCounts = [emptyCounts(), ...this.fileCounts.slice(0, kept - 1)];
    this.activeBytes = 0;
    this.handle = await open(join(this.dir, REPAIR_LOG_FILE), "a");
    await fsyncDir(this.dir);
  }

  /** Records matching the query, ascending ids (newest last). See ListQuery. */
  list(q: ListQuery): RepairRecord[] {
    assert(Number.isSafeInteger(q.limit) && q.limit >= 1 && q.limit <= REPAIR_LIST_LIMIT_MAX, `repair log list: limit must be 1..${REPAIR_LIST_LIMIT_MAX}`);
    const kinds = q.kind === undefined ? null : new Set<string>(typeof q.kind === "string" ? [q.kind] : q.kind);
    const held = this.held.length > this.opts.memoryRecords ? this.held.slice(-this.opts.memoryRecords) : this.held;
    const match = (r: RepairRecord): boolean => kinds === null || kinds.has(r.kind);
    const out: RepairRecord[] = [];
    if (q.sinceId !== undefined) {
      assert(/^[0-9]{1,16}$/.test(q.sinceId), "repair log list: sinceId must be a decimal integer");
      const since = Number(q.sinceId);
      // First record with id > since (ids ascend).
      let lo = 0;
      let hi = held.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (Number(held[mid]!.id) <= since) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < held.length && out.length < q.limit; i++) if (match(held[i]!)) out.push(held[i]!);
    } else {
      for (let i = held.length - 1; i >= 0 && out.length < q.limit; i--) if (match(held[i]!)) out.push(held[i]!);
      out.reverse();
    }
    return structuredClone(out);
  }

  /** Counts by kind and outcome over the records in the log's files, the newest record, and the log's own state. */
  stats(): RepairLogStats {
    const counts = emptyCounts();
    for (const c of this.fileCounts) if (c !== null) addCounts(counts, c);
    const held = this.held.length > this.opts.memoryRecords ? this.held.slice(-this.opts.memoryRecords) : this.held;
    return {
      ...counts,
      last: this.last === null ? null : structuredClone(this.last),
      lastAt: this.last?.at ?? null,
      oldestHeldId: held[0]?.id ?? null,
      nextId: String(this.nextId),
      skippedLines: this.skippedLines,
      tornTailBytes: this.tornTailBytes,
      files: this.fileCounts.filter((c) => c !== null).length,
      activeFileBytes: this.activeBytes,
    };
  }

  /** Lets the appends already asked for finish, then closes the file. record() calls after close() reject. Idempotent. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closing = this.queue.then(async () => {
      this.closed = true;
      const h = this.handle;
      this.handle = null;
      if (h !== null) await h.close();
    });
    this.queue = this.closing.catch(() => undefined);
    return this.closing;
  }
}

/** Same as RepairLog.open. */
export function openRepairLog(dataDir: string, nodeId: string, registry: Registry, options: RepairLogOptions = {}): Promise<RepairLog> {
  return RepairLog.open(dataDir, nodeId, registry, options);
}
