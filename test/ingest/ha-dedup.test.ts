import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BatchBuilder, type Batch } from "../../src/core/batch.js";
import { BadInputError } from "../../src/core/errors.js";
import { canonicalLabels, seriesKey, type Labels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { makeMatcher } from "../../src/core/matchers.js";
import { haDedup, parseHaRules, type HaRule } from "../../src/ingest/ha-dedup.js";
import { parseSelector } from "../../src/query/selector.js";

const S = 1_000_000_000n; // ns per second
const rule: HaRule = { matchers: [makeMatcher("job", "=", "node")], replicaLabel: "__replica__", intervalNs: 15n * S };
const L = (pairs: [string, string][]): Labels => canonicalLabels(pairs, DEFAULT_LIMITS);

function batchOf(points: { labels: Labels; tS: number; v: number }[]): Batch {
  const b = new BatchBuilder(DEFAULT_LIMITS);
  for (const p of points) b.add(p.labels, BigInt(p.tS) * S, p.v);
  return b.build();
}

/** An in-memory store: series key -> stored timestamps. */
class Store {
  readonly times = new Map<string, bigint[]>();
  add(b: Batch): void {
    for (const s of b.series) {
      const list = this.times.get(s.key) ?? [];
      for (const t of s.timestampsNs) if (!list.includes(t)) list.push(t);
      list.sort((x, y) => (x < y ? -1 : 1));
      this.times.set(s.key, list);
    }
  }
  read = (labels: Labels, from: bigint, to: bigint): BigInt64Array => BigInt64Array.from((this.times.get(seriesKey(labels)) ?? []).filter((t) => t >= from && t <= to));
}

const a = L([["__name__", "up"], ["job", "node"], ["__replica__", "a"]]);
const bRep = L([["__name__", "up"], ["job", "node"], ["__replica__", "b"]]);
const plain = L([["__name__", "up"], ["job", "node"]]);

describe("ingest/ha-dedup", () => {
  it("keeps a stale marker's NaN payload through deduplication", () => {
    const stale = new Float64Array(new BigUint64Array([0x7ff8000000000002n]).buffer)[0]!;
    const out = haDedup(batchOf([{ labels: a, tS: 0, v: stale }, { labels: bRep, tS: 1, v: 1 }]), [rule], new Store().read, DEFAULT_LIMITS);
    const v = out.batch!.series[0]!.values;
    assert.equal(new BigUint64Array(v.buffer, v.byteOffset, v.length)[0], 0x7ff8000000000002n);
  });

  it("keeps replica A's samples, drops B's second copies, and drops the replica label", () => {
    const store = new Store();
    const fromA = haDedup(batchOf([0, 15, 30].map((t) => ({ labels: a, tS: t, v: t }))), [rule], store.read, DEFAULT_LIMITS);
    assert.equal(fromA.dropped, 0);
    assert.equal(fromA.relabelled, 3);
    assert.deepEqual(fromA.batch!.series.map((s) => s.key), [seriesKey(plain)]);
    store.add(fromA.batch!);
    // B scrapes the same targets 3 s later: every bucket is taken.
    const fromB = haDedup(batchOf([3, 18, 33].map((t) => ({ labels: bRep, tS: t, v: t + 0.5 }))), [rule], store.read, DEFAULT_LIMITS);
    assert.equal(fromB.batch, null);
    assert.equal(fromB.dropped, 3);
  });

  it("switches to B when A stops, and never drops the only copy of a point", () => {
    const store = new Store();
    store.add(haDedup(batchOf([0, 15].map((t) => ({ labels: a, tS: t, v: 1 }))), [rule], store.read, DEFAULT_LIMITS).batch!);
    // A missed the 30 s scrape and then stopped; B has 33, 48, 63: all kept (their buckets are empty).
    const fromB = haDedup(batchOf([18, 33, 48, 63].map((t) => ({ labels: bRep, tS: t, v: 2 }))), [rule], store.read, DEFAULT_LIMITS);
    assert.equal(fromB.dropped, 1, "only 18 s, whose bucket A filled");
    assert.deepEqual([...fromB.batch!.series[0]!.timestampsNs], [33n * S, 48n * S, 63n * S]);
  });

  it("both replicas in one request: one copy per bucket; a retry keeps its own points", () => {
    const store = new Store();
    const both = batchOf([
      { labels: a, tS: 0, v: 1 },
      { labels: bRep, tS: 2, v: 1 },
      { labels: a, tS: 15, v: 2 },
      { labels: bRep, tS: 15, v: 3 },
    ]);
    const r = haDedup(both, [rule], store.read, DEFAULT_LIMITS);
    assert.equal(r.dropped, 2);
    assert.deepEqual([...r.batch!.series[0]!.timestampsNs], [0n, 15n * S]);
    store.add(r.batch!);
    const retry = haDedup(both, [rule], store.read, DEFAULT_LIMITS);
    assert.deepEqual([...retry.batch!.series[0]!.timestampsNs], [0n, 15n * S], "the same content again: the write path sees a duplicate");
  });

  it("leaves series no rule selects alone, replica label and all", () => {
    const other = L([["__name__", "up"], ["job", "db"], ["__replica__", "a"]]);
    const r = haDedup(batchOf([0, 1, 2].map((t) => ({ labels: other, tS: t, v: 1 }))), [rule], new Store().read, DEFAULT_LIMITS);
    assert.equal(r.dropped, 0);
    assert.equal(r.relabelled, 0);
    assert.deepEqual(r.batch!.series.map((s) => s.key), [seriesKey(other)]);
  });

  it("parses rules and names what is wrong", () => {
    const rules = parseHaRules({ rules: [{ match: '{job="node"}', interval: "15s" }] }, parseSelector, (d) => (d === "15s" ? 15_000 : NaN));
    assert.equal(rules[0]!.replicaLabel, "__replica__");
    assert.equal(rules[0]!.intervalNs, 15n * S);
    const bad = (json: unknown, field: RegExp): void => {
      assert.throws(
        () => parseHaRules(json, parseSelector, () => 15_000),
        (e: unknown) => e instanceof BadInputError && field.test(String(e.details["field"])),
      );
    };
    bad([], /rules/);
    bad({ rules: [{ match: 1, interval: "15s" }] }, /rules\[0\]\.match/);
    bad({ rules: [{ match: "up", interval: "15s", replicaLabel: "__name__" }] }, /replicaLabel/);
    bad({ rules: [{ match: "up", interval: 15 }] }, /interval/);
    bad({ rules: [{ match: "up", interval: "15s", extra: 1 }] }, /extra/);
  });
});
