// The node's ledger: its durable copy of the cluster's Merkle log (leaf
// entries, in tree order) and of the signed checkpoints that cover them
// (docs/format/ledger.md, docs/provenance.md).
//
// Every node keeps one, so any node can serve proofs and a new sequencer can
// carry on from the last checkpoint. Leaves are appended only together with a
// signed checkpoint whose root they reproduce: the ledger never holds a leaf
// no checkpoint covers.
//
// On disk, in <dataDir>/ledger/:
//   leaves.hql        records [u32 crc32c(len ‖ entry), u32 len, entry], in tree order
//   checkpoints.jsonl {"crc":"<crc32c of C, 8 hex>","c":C} lines, C = {"size":N,"note":"<signed note>"}
//
// At open the leaves are read up to the first damaged record (a torn tail
// after a crash, or a flipped bit): what follows is cut off, to be fetched
// again (leaves are public and checked against signed roots, so any peer or
// etcd can give them back). The checkpoint kept is the newest whose size is
// within the leaves read and whose root they reproduce; leaves beyond it are
// cut off too.

import { mkdir, open, readFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../core/assert.js";
import { BadInputError, CorruptionError, NotFoundError } from "../core/errors.js";
import { crc32c } from "../core/hash.js";
import { type Checkpoint, openCheckpoint, parseCheckpoint } from "./checkpoint.js";
import { decodeLeaf, LEAF_ENTRY_BYTES_MAX, type LeafEntry } from "./leaf.js";
import { leafHash, MerkleLog } from "./merkle.js";
import { parseNote, type Verifier } from "./note.js";

/** Leaves of one append (one sequencer cut), so a cut fits one etcd request with room to spare. */
export const CUT_LEAVES_MAX = 4096;
/** Checkpoints kept in memory for `checkpoints()`; the file keeps them all. */
const CHECKPOINTS_IN_MEMORY_MAX = 1024;

export interface LedgerLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface StagedAppend {
  /** Index of the first staged leaf. */
  start: number;
  /** The tree's root with the staged leaves. */
  root: Uint8Array;
  commit(note: string, cp: Checkpoint): Promise<Checkpoint>;
  abort(): void;
}

export interface StoredCheckpoint {
  checkpoint: Checkpoint;
  /** The whole signed note. */
  note: string;
}

export class Ledger {
  private log: MerkleLog;
  private readonly ids = new Map<string, number>();
  private readonly offsets: number[] = [];
  private fileBytes: number;
  private latestCp: StoredCheckpoint | null;
  private readonly history: StoredCheckpoint[];
  /** Held from stage() until its commit or abort: appends run one at a time. */
  private lock: Promise<void> = Promise.resolve();

  private constructor(
    private readonly leavesPath: string,
    private readonly leavesFile: FileHandle,
    private readonly cpFile: FileHandle,
    readonly origin: string,
    log: MerkleLog,
    entries: { id: string; offset: number }[],
    fileBytes: number,
    history: StoredCheckpoint[],
  ) {
    this.log = log;
    entries.forEach((e, i) => {
      this.ids.set(e.id, i);
      this.offsets.push(e.offset);
    });
    this.fileBytes = fileBytes;
    this.history = history;
    this.latestCp = history.at(-1) ?? null;
    assert(this.latestCp === null ? log.size === 0 : this.latestCp.checkpoint.treeSize === log.size, "ledger: leaves beyond the newest checkpoint");
  }

  /**
   * Opens (creates) the ledger in `dir`. Stored checkpoints are parsed, not verified again: their signatures were
   * checked when they were appended, their bytes are checked by CRC, and clients verify them for themselves.
   */
  static async open(dir: string, origin: string, logger?: LedgerLogger): Promise<Ledger> {
    await mkdir(dir, { recursive: true });
    const leavesPath = join(dir, "leaves.hql");
    const cpPath = join(dir, "checkpoints.jsonl");
    const raw = await readFile(leavesPath).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? Buffer.alloc(0) : Promise.reject(e)));
    const hashes: Uint8Array[] = [];
    const entries: { id: string; offset: number }[] = [];
    let at = 0;
    while (at + 8 <= raw.length) {
      const crc = raw.readUInt32LE(at);
      const len = raw.readUInt32LE(at + 4);
      if (len === 0 || len > LEAF_ENTRY_BYTES_MAX || at + 8 + len > raw.length) break;
      const entry = raw.subarray(at + 8, at + 8 + len);
      if (crc32c(raw.subarray(at + 4, at + 8 + len)) !== crc) break;
      let e: LeafEntry;
      try {
        e = decodeLeaf(entry, `${leavesPath} offset ${at}`);
      } catch {
        break;
      }
      hashes.push(leafHash(entry));
      entries.push({ id: e.batchId, offset: at });
      at += 8 + len;
    }
    if (at < raw.length) logger?.warn({ file: leavesPath, offset: at, bytes: raw.length - at }, "ledger: damaged or torn leaves cut off (fetched again from the cluster)");
    const cpText = await readFile(cpPath, "utf8").catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? "" : Promise.reject(e)));
    const history: StoredCheckpoint[] = [];
    let badLines = 0;
    for (const line of cpText.split("\n")) {
      if (line === "") continue;
      try {
        const rec = JSON.parse(line) as { crc?: unknown; c?: unknown };
        const c = JSON.stringify(rec.c);
        if (typeof rec.crc !== "string" || rec.crc !== crc32c(Buffer.from(c)).toString(16).padStart(8, "0")) throw new Error("crc");
        const { note } = rec.c as { note: string };
        const cp = parseCheckpoint(parseNote(note).text, origin);
        history.push({ checkpoint: cp, note });
      } catch {
        badLines++;
      }
    }
    if (badLines > 0) logger?.warn({ file: cpPath, lines: badLines }, "ledger: damaged checkpoint lines ignored");
    // The newest checkpoint the leaves reproduce; leaves past it are not covered and are dropped.
    const log = MerkleLog.fromLeafHashes(hashes);
    while (history.length > 0) {
      const cp = history.at(-1)!.checkpoint;
      if (cp.treeSize <= log.size && Buffer.compare(log.root(cp.treeSize), cp.rootHash) === 0) break;
      history.pop();
    }
    const keep = history.at(-1)?.checkpoint.treeSize ?? 0;
    if (keep < hashes.length) {
      logger?.warn({ leaves: hashes.length, covered: keep }, "ledger: leaves no checkpoint covers cut off");
      log.truncate(keep);
    }
    const fileBytes = keep < entries.length ? entries[keep]!.offset : at;
    const leavesFile = await open(leavesPath, "a+");
    await leavesFile.truncate(fileBytes);
    const cpFile = await open(cpPath, "a");
    const ledger = new Ledger(leavesPath, leavesFile, cpFile, origin, log, entries.slice(0, keep), fileBytes, history.slice(-CHECKPOINTS_IN_MEMORY_MAX));
    logger?.info({ leaves: log.size, checkpoint: ledger.latestCp?.checkpoint.treeSize ?? null }, "ledger opened");
    return ledger;
  }

  get size(): number {
    return this.log.size;
  }

  latest(): StoredCheckpoint | null {
    return this.latestCp;
  }

  /** Checkpoints seen since open (newest last), at most CHECKPOINTS_IN_MEMORY_MAX. */
  checkpoints(): readonly StoredCheckpoint[] {
    return this.history;
  }

  has(batchId: string): boolean {
    return this.ids.has(batchId);
  }

  indexOf(batchId: string): number | null {
    return this.ids.get(batchId) ?? null;
  }

  root(size = this.size): Uint8Array {
    return this.log.root(size);
  }

  inclusionProof(index: number, size: number): Uint8Array[] {
    return this.log.inclusionProof(index, size);
  }

  consistencyProof(first: number, second: number): Uint8Array[] {
    return this.log.consistencyProof(first, second);
  }

  /** The encoded leaf entry at `index`, read back from disk and checked against the tree. */
  async entryBytes(index: number): Promise<Uint8Array> {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) throw new NotFoundError(`no leaf ${index} (the ledger holds ${this.size})`);
    const offset = this.offsets[index]!;
    const head = Buffer.alloc(8);
    await this.leavesFile.read(head, 0, 8, offset);
    const len = head.readUInt32LE(4);
    if (len === 0 || len > LEAF_ENTRY_BYTES_MAX) throw new CorruptionError(`ledger leaf ${index}: length ${len}`, this.leavesPath, offset);
    const entry = Buffer.alloc(len);
    await this.leavesFile.read(entry, 0, len, offset + 8);
    if (Buffer.compare(leafHash(entry), this.log.leafHashAt(index)) !== 0) throw new CorruptionError(`ledger leaf ${index}: the bytes changed since open`, this.leavesPath, offset);
    return new Uint8Array(entry);
  }

  async entry(index: number): Promise<LeafEntry> {
    return decodeLeaf(await this.entryBytes(index), `ledger leaf ${index}`);
  }

  /** Encoded entries [from, to) (at most CUT_LEAVES_MAX). */
  async range(from: number, to: number): Promise<Uint8Array[]> {
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > this.size || from > to) throw new BadInputError(`leaf range [${from}, ${to}) outside [0, ${this.size})`, { field: "from" });
    if (to - from > CUT_LEAVES_MAX) throw new BadInputError(`at most ${CUT_LEAVES_MAX} leaves per request`, { field: "to" });
    const out: Uint8Array[] = [];
    for (let i = from; i < to; i++) out.push(await this.entryBytes(i));
    return out;
  }

  /**
   * Appends leaves [size, size + entries.length) with the signed checkpoint that covers exactly them. The root is
   * checked before anything is written: leaves that do not reproduce it are refused (BadInputError) and the ledger
   * is left as it was. Durable (fsync) when it resolves. Appends run one at a time. `leavesMax` bounds one append
   * (a follower catching up from a peer appends more than one cut at once).
   */
  async append(entries: readonly Uint8Array[], note: string, verifiers: readonly Verifier[], leavesMax = CUT_LEAVES_MAX): Promise<Checkpoint> {
    const staged = await this.stage(entries, leavesMax);
    try {
      const cp = openCheckpoint(note, verifiers, this.origin);
      if (cp.treeSize !== this.size) throw new BadInputError(`checkpoint of size ${cp.treeSize} for leaves [${staged.start}, ${this.size})`, { field: "checkpoint" });
      if (Buffer.compare(staged.root, cp.rootHash) !== 0) throw new BadInputError(`leaves [${staged.start}, ${cp.treeSize}) do not reproduce the checkpoint's root`, { field: "entries" });
      return await staged.commit(note, cp);
    } catch (e) {
      staged.abort();
      throw e;
    }
  }

  /**
   * The sequencer's two steps: the leaves go into the tree in memory (so the new root is known and can be signed and
   * published), then commit() makes them durable with the published checkpoint, or abort() drops them (publication
   * failed). Nothing else may append in between: the ledger stays locked until one of them is called.
   */
  async stage(entries: readonly Uint8Array[], leavesMax = CUT_LEAVES_MAX): Promise<StagedAppend> {
    let unlock!: () => void;
    const prev = this.lock;
    this.lock = new Promise<void>((r) => (unlock = r));
    await prev;
    let done = false;
    const start = this.size;
    try {
      if (entries.length === 0) throw new BadInputError("an append of no leaves", { field: "entries" });
      if (entries.length > leavesMax) throw new BadInputError(`${entries.length} leaves in one append (at most ${leavesMax})`, { field: "entries" });
      const decoded = entries.map((e, i) => decodeLeaf(e, `leaf ${start + i}`));
      const seen = new Set<string>();
      for (const d of decoded) {
        if (this.ids.has(d.batchId) || seen.has(d.batchId)) throw new BadInputError(`batch ${d.batchId} is already in the log`, { field: "entries" });
        seen.add(d.batchId);
      }
      for (const e of entries) this.log.append(leafHash(e));
      const root = this.log.root();
      const finish = (): void => {
        assert(!done, "a staged append finished twice");
        done = true;
        unlock();
      };
      return {
        start,
        root,
        commit: async (note: string, cp: Checkpoint): Promise<Checkpoint> => {
          assert(!done, "commit of a finished staged append");
          assert(cp.treeSize === start + entries.length && Buffer.compare(cp.rootHash, root) === 0, "commit with a checkpoint of other leaves");
          try {
            await this.writeDurably(entries, decoded, note, cp, start);
          } catch (e) {
            // The disk refused: what memory holds must not run ahead of it.
            this.log.truncate(start);
            finish();
            throw e;
          }
          finish();
          return cp;
        },
        abort: (): void => {
          if (done) return;
          this.log.truncate(start);
          finish();
        },
      };
    } catch (e) {
      this.log.truncate(start);
      unlock();
      throw e;
    }
  }

  private async writeDurably(entries: readonly Uint8Array[], decoded: readonly LeafEntry[], note: string, cp: Checkpoint, start: number): Promise<void> {
    const parts: Buffer[] = [];
    const offsets: number[] = [];
    let at = this.fileBytes;
    for (const e of entries) {
      const rec = Buffer.alloc(8 + e.length);
      rec.writeUInt32LE(e.length, 4);
      Buffer.from(e.buffer, e.byteOffset, e.byteLength).copy(rec, 8);
      rec.writeUInt32LE(crc32c(rec.subarray(4)), 0);
      parts.push(rec);
      offsets.push(at);
      at += rec.length;
    }
    await this.leavesFile.write(Buffer.concat(parts), 0, at - this.fileBytes, this.fileBytes);
    await this.leavesFile.datasync();
    const c = JSON.stringify({ size: cp.treeSize, note });
    await this.cpFile.write(`{"crc":"${crc32c(Buffer.from(c)).toString(16).padStart(8, "0")}","c":${c}}\n`);
    await this.cpFile.datasync();
    decoded.forEach((d, i) => {
      this.ids.set(d.batchId, start + i);
      this.offsets.push(offsets[i]!);
    });
    this.fileBytes = at;
    const stored = { checkpoint: cp, note };
    this.latestCp = stored;
    this.history.push(stored);
    if (this.history.length > CHECKPOINTS_IN_MEMORY_MAX) this.history.shift();
  }

  async close(): Promise<void> {
    await this.lock;
    await this.leavesFile.close();
    await this.cpFile.close();
  }
}
