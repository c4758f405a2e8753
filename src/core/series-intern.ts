// Interned series: a canonical label set with its key and its canonical
// encoding, computed once and shared by every batch that names the series.
//
// Senders repeat the same series on every request (Prometheus sends each
// active series once a scrape interval), so the per-series work of a write
// (UTF-8 decoding and validation of label text, sorting, the key string, the
// canonical encoding) is paid once per series, not once per request: a cache
// maps the series' raw bytes as they arrive to the interned series. The cost
// budget (DESIGN.md decision 12) wants per-sample work like a plain TSDB's:
// a lookup by the series' label bytes, then an append.

import { assert } from "./assert.js";
import { ByteWriter } from "./bytes.js";
import { seriesKey, type Labels } from "./labels.js";

export interface InternedSeries {
  /** Canonical series key (labels.ts seriesKey). */
  readonly key: string;
  /** Canonical labels: sorted by name, no empty values. */
  readonly labels: Labels;
  /** The series' label section in the canonical batch encoding (docs/format/batch.md): label count, then name and value strings. */
  readonly labelBytes: Uint8Array;
}

/** Encodes the label section of a canonical batch series. */
export function encodeLabelSection(labels: Labels, w: ByteWriter): void {
  w.uvarint(labels.length);
  for (const [n, v] of labels) w.str(n).str(v);
}

/** Interns canonical labels (canonicalLabels' output): computes the key and the encoding once. */
export function internSeries(labels: Labels): InternedSeries {
  const w = new ByteWriter(16 + labels.length * 32);
  encodeLabelSection(labels, w);
  return { key: seriesKey(labels), labels, labelBytes: w.finish() };
}

/** Rough heap bytes of one cache entry: the key strings, the label strings and arrays, the encoding. */
function entryBytes(raw: string, s: InternedSeries): number {
  return 2 * raw.length + 2 * s.key.length + 2 * s.labelBytes.length + 64 * s.labels.length + 200;
}

/**
 * A bounded map from a series' raw bytes (as a latin1 string, one char per
 * byte) to its interned form. Two generations: entries go into the current
 * one; when it holds `generationBytesMax`, it becomes the previous one and
 * the one before is dropped; a hit in the previous generation moves the entry
 * back to the current one. So the series a sender keeps sending stay, and
 * series no longer sent age out within two generations: at most twice
 * `generationBytesMax` in all (VictoriaMetrics bounds its caches the same way).
 *
 * The raw form must determine the canonical series exactly, under the limits
 * of whoever filled the cache: a cache belongs to one decoder configuration.
 */
export class SeriesInternCache {
  // Owned by this cache; `current` holds at most generationBytesMax (estimated) bytes.
  private current = new Map<string, InternedSeries>();
  private previous = new Map<string, InternedSeries>();
  private currentBytes = 0;
  private hitCount = 0;
  private missCount = 0;

  constructor(readonly generationBytesMax = 64 * 1024 * 1024) {
    assert(generationBytesMax > 0, "a series cache needs room");
  }

  get(raw: string): InternedSeries | undefined {
    const s = this.current.get(raw);
    if (s !== undefined) {
      this.hitCount++;
      return s;
    }
    const old = this.previous.get(raw);
    if (old === undefined) {
      this.missCount++;
      return undefined;
    }
    this.hitCount++;
    this.previous.delete(raw);
    this.put(raw, old);
    return old;
  }

  set(raw: string, s: InternedSeries): void {
    if (this.current.has(raw)) return;
    this.put(raw, s);
  }

  private put(raw: string, s: InternedSeries): void {
    const bytes = entryBytes(raw, s);
    if (this.currentBytes + bytes > this.generationBytesMax && this.current.size > 0) {
      this.previous = this.current;
      this.current = new Map();
      this.currentBytes = 0;
    }
    this.current.set(raw, s);
    this.currentBytes += bytes;
  }

  stats(): { entries: number; hits: number; misses: number } {
    return { entries: this.current.size + this.previous.size, hits: this.hitCount, misses: this.missCount };
  }
}

/** A Buffer over the same memory (no copy), for bytesKey. */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** The latin1 string of bytes [start, end) of `buf`: a Map key that names those bytes exactly. */
export function bytesKey(buf: Buffer, start: number, end: number): string {
  return buf.toString("latin1", start, end);
}
