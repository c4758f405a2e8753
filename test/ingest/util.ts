// Shared helpers for the ingest tests.

import assert from "node:assert/strict";
import { sameValue, type Batch } from "../../src/core/batch.js";
import { HqError } from "../../src/core/errors.js";
import { DEFAULT_LIMITS, type Limits } from "../../src/core/limits.js";
import { mulberry32 } from "../../src/core/prng.js";

export const LIMITS: Limits = { ...DEFAULT_LIMITS };
export const NOW_NS = 1_700_000_000_000_000_000n;

const utf8 = new TextEncoder();
export function bytes(text: string): Uint8Array {
  return utf8.encode(text);
}

export type ErrorClass = new (...args: never[]) => HqError;

/** Asserts fn throws `cls` whose message contains every fragment (e.g. "line 3", "field values[7]"). */
export function throwsAt(fn: () => unknown, cls: ErrorClass, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, "expected an error, got a result");
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  for (const f of fragments) assert.ok(caught.message.includes(f), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(f)}`);
}

export interface PlainSeries {
  labels: Record<string, string>;
  timestampsNs: bigint[];
  values: number[];
}

export function plain(batch: Batch): Map<string, PlainSeries> {
  const out = new Map<string, PlainSeries>();
  for (const s of batch.series)
    out.set(s.key, { labels: Object.fromEntries(s.labels), timestampsNs: [...s.timestampsNs], values: [...s.values] });
  return out;
}

/** The only series of a batch, or the one with this key. */
export function seriesOf(batch: Batch, key?: string): PlainSeries {
  const all = plain(batch);
  if (key === undefined) {
    assert.equal(all.size, 1, `expected one series, got ${[...all.keys()].join(" ")}`);
    return [...all.values()][0]!;
  }
  const s = all.get(key);
  assert.ok(s !== undefined, `no series ${key}; have ${[...all.keys()].join(" ")}`);
  return s;
}

/** Exact equality: keys, labels, timestamps, and values bit for bit (NaN, -0). */
export function assertSameBatch(actual: Batch, expected: Batch): void {
  assert.equal(actual.sampleCount, expected.sampleCount);
  assert.deepEqual(actual.series.map((s) => s.key), expected.series.map((s) => s.key));
  for (let i = 0; i < expected.series.length; i++) {
    const a = actual.series[i]!;
    const e = expected.series[i]!;
    assert.deepEqual(a.labels, e.labels);
    assert.deepEqual([...a.timestampsNs], [...e.timestampsNs]);
    assert.equal(a.values.length, e.values.length);
    for (let j = 0; j < e.values.length; j++)
      assert.ok(sameValue(a.values[j]!, e.values[j]!), `${e.key} value ${j}: got ${a.values[j]}, want ${e.values[j]}`);
  }
}

/** Formats a float so that every parser reads back the same bits (String(-0) is "0"). */
export function formatFloat(v: number): string {
  return Object.is(v, -0) ? "-0" : String(v);
}

/** Structural checks every returned batch must pass. */
export function assertWellFormed(batch: Batch): void {
  let total = 0;
  for (let i = 0; i < batch.series.length; i++) {
    const s = batch.series[i]!;
    if (i > 0) assert.ok(batch.series[i - 1]!.key < s.key, "series sorted and unique");
    assert.equal(s.timestampsNs.length, s.values.length);
    for (let j = 1; j < s.timestampsNs.length; j++) assert.ok(s.timestampsNs[j - 1]! < s.timestampsNs[j]!, "timestamps strictly increasing");
    total += s.values.length;
  }
  assert.equal(batch.sampleCount, total);
  assert.ok(total > 0);
}

/** Runs a parse that may fail; the only acceptable failures are HqErrors. */
export function outcome(parse: () => Batch): "batch" | string {
  try {
    assertWellFormed(parse());
    return "batch";
  } catch (e) {
    if (e instanceof HqError) return e.code;
    throw e;
  }
}

/** Deterministic PRNG (core/prng.ts) so a fuzz failure reproduces. */
export const rng = mulberry32;

const INTERESTING = bytes(`\n\r ,="\\{}[]:#-+.0123456789eEiutfNIa\u00e9`);

/** One random edit of a valid body: flip, insert, delete, truncate, duplicate or an invalid UTF-8 byte. */
export function mutate(body: Uint8Array, rand: () => number): Uint8Array {
  const out = [...body];
  const edits = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(rand() * (out.length + 1));
    switch (Math.floor(rand() * 7)) {
      case 0:
        if (at < out.length) out[at] = out[at]! ^ (1 << Math.floor(rand() * 8));
        break;
      case 1:
        out.splice(at, 0, INTERESTING[Math.floor(rand() * INTERESTING.length)]!);
        break;
      case 2:
        out.splice(at, 1 + Math.floor(rand() * 8));
        break;
      case 3:
        out.length = at;
        break;
      case 4: {
        const len = Math.floor(rand() * 16);
        out.splice(at, 0, ...out.slice(Math.max(0, at - len), at));
        break;
      }
      case 5:
        out.splice(at, 0, [0xff, 0xc3, 0xed, 0x80][Math.floor(rand() * 4)]!);
        break;
      default:
        if (at < out.length) out[at] = Math.floor(rand() * 256);
    }
  }
  return Uint8Array.from(out);
}

export function randomBytes(rand: () => number, lengthMax: number): Uint8Array {
  const n = Math.floor(rand() * lengthMax);
  const out = new Uint8Array(n);
  // Mostly printable structure characters, so parsers get past their first check.
  for (let i = 0; i < n; i++) out[i] = rand() < 0.7 ? INTERESTING[Math.floor(rand() * INTERESTING.length)]! : Math.floor(rand() * 256);
  return out;
}
