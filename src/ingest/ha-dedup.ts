// Opt-in deduplication of HA pairs (docs/ingest.md, "HA pairs"): two
// Prometheus replicas scrape the same targets and send series that differ
// only by a replica label. For series a rule selects, the replica label is
// dropped and one sample is kept per `interval` bucket of each series: the
// first to arrive. So one replica's copy is kept while it sends; when it stops,
// the other's samples find their buckets empty and are kept (the switch needs
// no election and no timeout); and a sample is dropped only when its bucket
// already holds another sample of the same series, so the only copy of a point
// is never dropped. Like VictoriaMetrics's -dedup.minScrapeInterval, applied
// at ingest against what this node stores. Pure: the store is a callback.
//
// Limits, stated: two gateways writing the two replicas' samples for one
// bucket at the same instant can both find it empty and keep both (a second
// sample in a bucket, never a lost one); a replica this node's store has not
// caught up on looks empty the same way.

import { BatchBuilder, type Batch } from "../core/batch.js";
import { BadInputError, TooLargeError } from "../core/errors.js";
import { seriesKey, type Labels } from "../core/labels.js";
import type { Limits } from "../core/limits.js";
import { matchesLabels, type Matcher } from "../core/matchers.js";

export const HA_RULES_MAX = 100;

export interface HaRule {
  matchers: Matcher[];
  /** The label that tells the replicas apart (Prometheus `external_labels`), dropped from stored series. */
  replicaLabel: string;
  /** One sample per series per bucket of this many ns (the scrape interval). */
  intervalNs: bigint;
}

export interface HaDedupResult {
  /** null when every sample was dropped. */
  batch: Batch | null;
  /** Samples dropped because their bucket already held a sample (in this request or stored). */
  dropped: number;
  /** Samples whose replica label was dropped. */
  relabelled: number;
}

/** Timestamps this node stores for one series in [fromNs, toNs] (ascending). */
export type StoredTimes = (labels: Labels, fromNs: bigint, toNs: bigint) => BigInt64Array;

const floorDiv = (a: bigint, b: bigint): bigint => {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
};

/** Applies the first rule that selects each series; series no rule selects pass unchanged. */
export function haDedup(batch: Batch, rules: readonly HaRule[], stored: StoredTimes, limits: Pick<Limits, "seriesPerBatchMax" | "samplesPerBatchMax">): HaDedupResult {
  if (rules.length === 0) return { batch, dropped: 0, relabelled: 0 };
  // A request no rule selects (another job's) passes as it is: no regrouping and rebuilding of the batch.
  if (!batch.series.some((s) => rules.some((r) => matchesLabels(r.matchers, s.labels)))) return { batch, dropped: 0, relabelled: 0 };
  // Deduped series key -> its samples (from every request series that maps to it), and the rule.
  // A sample is kept as where it is (its series, its index), not as a number in a plain array: V8 may canonicalise a
  // NaN stored in an array of doubles, and the stale marker's payload must survive (docs/format/batch.md).
  const groups = new Map<string, { labels: Labels; rule: HaRule | null; ts: bigint[]; from: Float64Array[]; at: number[] }>();
  let relabelled = 0;
  for (const s of batch.series) {
    const rule = rules.find((r) => matchesLabels(r.matchers, s.labels)) ?? null;
    const labels = rule === null ? s.labels : s.labels.filter(([n]) => n !== rule.replicaLabel);
    if (labels.length !== s.labels.length) relabelled += s.timestampsNs.length;
    const key = seriesKey(labels);
    let g = groups.get(key);
    if (g === undefined) groups.set(key, (g = { labels, rule, ts: [], from: [], at: [] }));
    for (let i = 0; i < s.timestampsNs.length; i++) {
      g.ts.push(s.timestampsNs[i]!);
      g.from.push(s.values);
      g.at.push(i);
    }
  }
  const b = new BatchBuilder(limits);
  let dropped = 0;
  for (const g of groups.values()) {
    const order = g.ts.map((_, i) => i).sort((x, y) => (g.ts[x]! < g.ts[y]! ? -1 : g.ts[x]! > g.ts[y]! ? 1 : x - y));
    if (g.rule === null) {
      for (const i of order) b.add(g.labels, g.ts[i]!, g.from[i]![g.at[i]!]!);
      continue;
    }
    const I = g.rule.intervalNs;
    const first = g.ts[order[0]!]!;
    const last = g.ts[order[order.length - 1]!]!;
    // What the store holds in the buckets this request touches: bucket -> the timestamps there.
    const held = new Map<bigint, Set<bigint>>();
    for (const t of stored(g.labels, floorDiv(first, I) * I, (floorDiv(last, I) + 1n) * I - 1n)) {
      const k = floorDiv(t, I);
      let set = held.get(k);
      if (set === undefined) held.set(k, (set = new Set()));
      set.add(t);
    }
    const added = new Set<bigint>();
    for (const i of order) {
      const t = g.ts[i]!;
      const k = floorDiv(t, I);
      const there = held.get(k);
      // Kept already from this request at this very instant (the two replicas in one request): one copy.
      // A bucket holding another timestamp: a second copy. A bucket holding exactly this timestamp is this point
      // (a retry): the write path decides it (a no-op when equal, a conflict otherwise).
      if (added.has(t) || (there !== undefined && !there.has(t))) {
        dropped++;
        continue;
      }
      if (there === undefined) held.set(k, new Set([t]));
      added.add(t);
      b.add(g.labels, t, g.from[i]![g.at[i]!]!);
    }
  }
  if (b.sampleCount === 0) return { batch: null, dropped, relabelled };
  return { batch: b.build({ shardId: batch.shardId, origin: batch.origin, inference: batch.inference }), dropped, relabelled };
}

const RULE_FIELDS = new Set(["match", "replicaLabel", "interval"]);

/** Parses {"rules": [{"match": "<selector>", "replicaLabel": "__replica__", "interval": "15s"}, ...]}. */
export function parseHaRules(json: unknown, parseSelector: (s: string) => Matcher[], parseDurationMs: (s: string) => number): HaRule[] {
  if (typeof json !== "object" || json === null || Array.isArray(json) || !Array.isArray((json as { rules?: unknown }).rules))
    throw new BadInputError('HA dedup rules must be a JSON object {"rules": [...]}', { field: "rules" });
  for (const k of Object.keys(json)) if (k !== "rules") throw new BadInputError(`unknown field "${k.slice(0, 40)}" (want "rules")`, { field: k.slice(0, 40) });
  const list = (json as { rules: unknown[] }).rules;
  if (list.length > HA_RULES_MAX) throw new TooLargeError("number of HA dedup rules", HA_RULES_MAX, { field: "rules" });
  return list.map((r, i): HaRule => {
    const at = (f: string): { field: string } => ({ field: `rules[${i}].${f}` });
    if (typeof r !== "object" || r === null || Array.isArray(r)) throw new BadInputError("a rule must be an object", { field: `rules[${i}]` });
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!RULE_FIELDS.has(k)) throw new BadInputError(`unknown field "${k.slice(0, 40)}" (want match, replicaLabel, interval)`, at(k.slice(0, 40)));
    if (typeof o["match"] !== "string") throw new BadInputError('"match" must be a series selector string', at("match"));
    const replicaLabel = o["replicaLabel"] ?? "__replica__";
    if (typeof replicaLabel !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(replicaLabel) || replicaLabel === "__name__")
      throw new BadInputError('"replicaLabel" must be a label name (not __name__)', at("replicaLabel"));
    if (typeof o["interval"] !== "string") throw new BadInputError('"interval" must be a duration such as "15s"', at("interval"));
    const ms = parseDurationMs(o["interval"]);
    if (!(ms >= 1 && ms <= 86_400_000)) throw new BadInputError('"interval" must be 1ms..24h', at("interval"));
    return { matchers: parseSelector(o["match"]), replicaLabel, intervalNs: BigInt(ms) * 1_000_000n };
  });
}
