// Metric metadata (type, help, unit per metric family), as Prometheus's
// remote write sends it and GET /api/v1/metadata answers it. Advisory data:
// senders resend all of it every minute, so it is kept in memory, bounded, and
// saved to one file (docs/format/metadata.md) a few seconds after it changes;
// a file that fails its checksum is set aside and the store starts empty
// rather than stopping the node.

import { open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { assert } from "../core/assert.js";
import { crc32c } from "../core/hash.js";
import type { MetadataEntry, MetricMetadata } from "../core/metadata.js";
import { syncDir, writeFully } from "../wal/file-io.js";

export interface MetadataLimits {
  /** Metric families kept; beyond it the least recently seen family is forgotten. */
  metricsMax: number;
  /** Distinct {type, help, unit} per family (senders that disagree); beyond it the least recently seen goes. */
  entriesPerMetricMax: number;
  /** Longest help text kept; longer ones are cut (at a character boundary) to it. */
  helpBytesMax: number;
}

export const DEFAULT_METADATA_LIMITS: Readonly<MetadataLimits> = Object.freeze({ metricsMax: 100_000, entriesPerMetricMax: 10, helpBytesMax: 4096 });

/** The file's first line; a file with another is not ours to read. */
const MAGIC = "hqts-metadata 1";
/** How long after a change the file is rewritten (changes in between are saved together). */
const SAVE_DELAY_MS = 5_000;

interface Stored extends MetadataEntry {
  seenMs: number;
}

/** Cuts a string to at most `bytesMax` UTF-8 bytes without splitting a character. */
function cutUtf8(s: string, bytesMax: number): string {
  if (Buffer.byteLength(s) <= bytesMax) return s;
  let out = "";
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > bytesMax) break;
    out += ch;
    bytes += n;
  }
  return out;
}

const sameEntry = (a: MetadataEntry, b: MetadataEntry): boolean => a.type === b.type && a.help === b.help && a.unit === b.unit;

export class MetadataStore {
  /** Map order is recency: a family seen again moves to the end, the first one is the least recently seen. */
  private readonly families = new Map<string, Stored[]>();
  private saveTimer: NodeJS.Timeout | null = null;
  private saving: Promise<void> | null = null;
  private dirty = false;

  private constructor(
    private readonly file: string,
    private readonly limits: MetadataLimits,
    private readonly log: Logger,
  ) {
    assert(limits.metricsMax > 0 && limits.entriesPerMetricMax > 0 && limits.helpBytesMax > 0, "metadata limits must be positive");
  }

  /** Loads `file` if it exists. A damaged file is renamed to `<file>.corrupt-<ms>` and the store starts empty. */
  static async open(file: string, limits: MetadataLimits, log: Logger): Promise<MetadataStore> {
    const store = new MetadataStore(file, limits, log);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return store;
      throw e;
    }
    try {
      store.load(text);
    } catch (e) {
      const aside = `${file}.corrupt-${Date.now()}`;
      log.error({ file, movedTo: aside, err: (e as Error).message }, "metric metadata file is damaged: set aside, starting empty (senders resend metadata)");
      store.families.clear();
      await rename(file, aside);
    }
    return store;
  }

  private load(text: string): void {
    const lines = text.split("\n");
    if (lines[0] !== MAGIC) throw new Error(`first line is not "${MAGIC}"`);
    const body = lines[1] ?? "";
    const crc = /^crc32c ([0-9a-f]{8})$/.exec(lines[2] ?? "");
    if (crc === null) throw new Error("third line is not the checksum");
    if (crc32c(Buffer.from(body)).toString(16).padStart(8, "0") !== crc[1]) throw new Error("checksum mismatch");
    const parsed = JSON.parse(body) as [string, Stored[]][];
    assert(Array.isArray(parsed), "metadata body is a list");
    for (const [metric, entries] of parsed) this.families.set(metric, entries);
  }

  /** Stores what a write carried. Returns how many entries changed the store (new, or seen again with other text). */
  put(items: readonly MetricMetadata[], nowMs: number = Date.now()): number {
    let changed = 0;
    for (const it of items) {
      if (it.metric === "") continue;
      const entry: Stored = { type: it.type, help: cutUtf8(it.help, this.limits.helpBytesMax), unit: it.unit, seenMs: nowMs };
      let list = this.families.get(it.metric);
      if (list === undefined) list = [];
      else this.families.delete(it.metric);
      const i = list.findIndex((e) => sameEntry(e, entry));
      if (i >= 0) list.splice(i, 1);
      else changed++;
      list.unshift(entry);
      if (list.length > this.limits.entriesPerMetricMax) list.length = this.limits.entriesPerMetricMax;
      this.families.set(it.metric, list);
      while (this.families.size > this.limits.metricsMax) this.families.delete(this.families.keys().next().value!);
    }
    if (changed > 0) this.scheduleSave();
    return changed;
  }

  /** Prometheus's /api/v1/metadata data: metric → entries, most recently seen first; limits as its parameters (negative: none). */
  query(metric: string | null, limit: number, limitPerMetric: number): Record<string, MetadataEntry[]> {
    const out: Record<string, MetadataEntry[]> = {};
    let n = 0;
    const names = metric !== null ? [metric] : [...this.families.keys()].sort();
    for (const name of names) {
      if (limit >= 0 && n >= limit) break;
      const list = this.families.get(name);
      if (list === undefined) continue;
      const entries = list.map(({ type, help, unit }) => ({ type, help, unit }));
      out[name] = limitPerMetric >= 0 ? entries.slice(0, limitPerMetric) : entries;
      n++;
    }
    return out;
  }

  get size(): number {
    return this.families.size;
  }

  private scheduleSave(): void {
    this.dirty = true;
    if (this.saveTimer !== null) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      void this.save().catch((e: unknown) => this.log.error({ err: (e as Error).message, file: this.file }, "saving metric metadata failed (kept in memory; retried on the next change)"));
    }, SAVE_DELAY_MS);
    this.saveTimer.unref();
  }

  /** Writes the file if anything changed since the last save: temp file, fsync, rename, fsync of the directory. */
  async save(): Promise<void> {
    while (this.saving !== null) await this.saving;
    if (!this.dirty) return;
    this.dirty = false;
    this.saving = (async () => {
      const body = JSON.stringify([...this.families]);
      const text = `${MAGIC}\n${body}\ncrc32c ${crc32c(Buffer.from(body)).toString(16).padStart(8, "0")}\n`;
      const tmp = `${this.file}.tmp`;
      const h = await open(tmp, "w");
      try {
        await writeFully(h, [Buffer.from(text)], 0);
        await h.sync();
      } finally {
        await h.close();
      }
      await rename(tmp, this.file);
      await syncDir(dirname(this.file));
    })();
    try {
      await this.saving;
    } catch (e) {
      this.dirty = true;
      throw e;
    } finally {
      this.saving = null;
    }
  }

  async close(): Promise<void> {
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    await this.save();
  }
}

/** Merges answers from several replicas: per metric, distinct entries in the order first seen, cut to the limits. */
export function mergeMetadata(answers: readonly Record<string, MetadataEntry[]>[], limit: number, limitPerMetric: number): Record<string, MetadataEntry[]> {
  const merged = new Map<string, MetadataEntry[]>();
  for (const a of answers)
    for (const [metric, entries] of Object.entries(a)) {
      let list = merged.get(metric);
      if (list === undefined) merged.set(metric, (list = []));
      for (const e of entries) if (!list.some((x) => sameEntry(x, e))) list.push({ type: e.type, help: e.help, unit: e.unit });
    }
  const out: Record<string, MetadataEntry[]> = {};
  let n = 0;
  for (const metric of [...merged.keys()].sort()) {
    if (limit >= 0 && n >= limit) break;
    const list = merged.get(metric)!;
    out[metric] = limitPerMetric >= 0 ? list.slice(0, limitPerMetric) : list;
    n++;
  }
  return out;
}
