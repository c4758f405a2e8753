// PromQL aggregation operators for one evaluation step (Prometheus 3.x
// semantics): the same summation (Kahan–Neumaier) and mean algorithms as
// Prometheus's aggregation.go, so float outputs agree with its test corpus.

import { METRIC_NAME, type Labels } from "../../core/labels.js";
import { assert, unreachable } from "../../core/assert.js";
import type { AggregateExpr, PosRange } from "./ast.js";
import { QueryError, formatFloatPlain, kahanSumInc, labelsKey, quantile, setLabel, type Sample, type Vector } from "./functions.js";

export interface AggregateEnv {
  tMs: number;
  warn(message: string, pos: PosRange): void;
}

/** The labels an aggregation groups by: by(...) keeps the listed ones, without(...) drops them and the metric name. */
export function groupingLabels(labels: Labels, grouping: readonly string[], without: boolean): Labels {
  if (without) return labels.filter(([n]) => n !== METRIC_NAME && !grouping.includes(n));
  return labels.filter(([n]) => grouping.includes(n));
}

// A series keeps its label-set object for the whole query, so its group's labels (and through labelsKey's cache,
// the group key) are computed once per aggregation and series, not once per step.
const groupCache = new WeakMap<AggregateExpr, WeakMap<Labels, GroupId>>();

export interface GroupId {
  labels: Labels;
  key: string;
}

export function groupOf(expr: AggregateExpr, labels: Labels): GroupId {
  let byLabels = groupCache.get(expr);
  if (byLabels === undefined) {
    byLabels = new WeakMap();
    groupCache.set(expr, byLabels);
  }
  let id = byLabels.get(labels);
  if (id === undefined) {
    const gl = groupingLabels(labels, expr.grouping, expr.without);
    id = { labels: gl, key: labelsKey(gl) };
    byLabels.set(labels, id);
  }
  return id;
}

/** The running state of the aggregations that fold floats: sum, avg, min, max, count(_values), group, stddev, stdvar. */
interface FloatGroup {
  count: number;
  value: number;
  kahanC: number;
  mean: number;
  incrementalMean: boolean;
}

interface Group extends FloatGroup {
  labels: Labels;
  values: number[];
  members: Sample[];
}

/** A group's state after its first sample `f`. */
function startFloats(op: FloatOp, g: FloatGroup, f: number): void {
  g.count = 1;
  g.value = op === "stddev" || op === "stdvar" ? (Number.isFinite(f) ? 0 : NaN) : f;
  g.kahanC = 0;
  g.mean = f;
  g.incrementalMean = false;
}

/** Folds one more sample into a group, as Prometheus's aggregation.go does (Kahan sums, the overflow-safe mean). */
function addFloat(op: FloatOp, g: FloatGroup, f: number): void {
  switch (op) {
    case "sum":
      [g.value, g.kahanC] = kahanSumInc(f, g.value, g.kahanC);
      return;
    case "avg": {
      g.count++;
      if (!g.incrementalMean) {
        const [newV, newC] = kahanSumInc(f, g.value, g.kahanC);
        if (Number.isFinite(newV) || Number.isNaN(newV)) {
          g.value = newV;
          g.kahanC = newC;
          return;
        }
        // The running sum would overflow: continue with an incremental mean.
        g.incrementalMean = true;
        g.mean = g.value / (g.count - 1);
        g.kahanC /= g.count - 1;
      }
      const q = (g.count - 1) / g.count;
      [g.mean, g.kahanC] = kahanSumInc(f / g.count, q * g.mean, q * g.kahanC);
      return;
    }
    case "max":
      if (g.value < f || Number.isNaN(g.value)) g.value = f;
      return;
    case "min":
      if (g.value > f || Number.isNaN(g.value)) g.value = f;
      return;
    case "count":
    case "count_values":
    case "group":
      g.count++;
      return;
    case "stddev":
    case "stdvar": {
      g.count++;
      const delta = f - g.mean;
      g.mean += delta / g.count;
      g.value += delta * (f - g.mean);
      return;
    }
    default:
      unreachable(op);
  }
}

/** The value of a group folded by addFloat. */
function floatResult(op: FloatOp, g: FloatGroup): number {
  switch (op) {
    case "sum":
      return g.value + g.kahanC;
    case "avg":
      return g.incrementalMean ? g.mean + g.kahanC : g.value / g.count + g.kahanC / g.count;
    case "max":
    case "min":
      return g.value;
    case "count":
    case "count_values":
      return g.count;
    case "group":
      return 1;
    case "stdvar":
      return g.value / g.count;
    case "stddev":
      return Math.sqrt(g.value / g.count);
    default:
      return unreachable(op);
  }
}

const FLOAT_OPS = ["sum", "avg", "min", "max", "count", "count_values", "group", "stddev", "stdvar"] as const;
type FloatOp = (typeof FLOAT_OPS)[number];

function isFloatOp(op: string): op is FloatOp {
  return (FLOAT_OPS as readonly string[]).includes(op);
}

/** A 53-bit FNV-1a of the label set: limit_ratio needs a stable per-series position in [0, 1). */
function labelsHashFraction(labels: Labels): number {
  let h = 0xcbf29ce484222325n;
  const prime = 0x100000001b3n;
  const mask = 0xffffffffffffffffn;
  for (const [n, v] of labels) {
    for (const ch of `${n}\u00ff${v}\u00ff`) {
      h ^= BigInt(ch.codePointAt(0)!);
      h = (h * prime) & mask;
    }
  }
  return Number(h >> 11n) / 2 ** 53;
}

/**
 * Evaluates one aggregation at one step. `param` is the evaluated parameter
 * (a number, or the label name for count_values); null when the op has none.
 */
export function aggregate(expr: AggregateExpr, input: Vector, param: number | string | null, env: AggregateEnv): Vector {
  const op = expr.op;
  const tMs = env.tMs;

  let k = 0;
  let ratio = 0;
  switch (op) {
    case "topk":
    case "bottomk":
    case "limitk": {
      assert(typeof param === "number", `${op} takes a number`);
      if (Number.isNaN(param)) throw new QueryError("Parameter value is NaN");
      if (param > Number.MAX_SAFE_INTEGER) throw new QueryError(`Scalar value ${param} overflows int64`);
      k = param < 1 ? 0 : Math.min(Math.trunc(param), input.length);
      if (k < 1) return [];
      break;
    }
    case "limit_ratio": {
      assert(typeof param === "number", "limit_ratio takes a number");
      if (Number.isNaN(param)) throw new QueryError("Ratio value is NaN");
      ratio = param;
      if (ratio > 1) {
        env.warn(`ratio value should be between -1 and 1, got ${formatFloatPlain(ratio)}, capping to 1`, expr.param!.pos);
        ratio = 1;
      } else if (ratio < -1) {
        env.warn(`ratio value should be between -1 and 1, got ${formatFloatPlain(ratio)}, capping to -1`, expr.param!.pos);
        ratio = -1;
      }
      if (ratio === 0) return [];
      break;
    }
    case "quantile":
      assert(typeof param === "number", "quantile takes a number");
      if (Number.isNaN(param) || param < 0 || param > 1)
        env.warn(`quantile value should be between 0 and 1, got ${Number.isNaN(param) ? "NaN" : String(param)}`, expr.param!.pos);
      break;
    case "count_values":
      assert(typeof param === "string", "count_values takes a label name");
      if (param === "") throw new QueryError(`invalid label name "${param}"`);
      break;
    default:
      break;
  }

  const groups = new Map<string, Group>();
  const order: Group[] = [];
  for (const s of input) {
    const id = groupOf(expr, s.labels);
    let gl = id.labels;
    let key = id.key;
    if (op === "count_values") {
      gl = setLabel(gl, param as string, formatFloatPlain(s.v));
      key = labelsKey(gl);
    }
    const f = s.v;
    let g = groups.get(key);
    if (g === undefined) {
      g = { labels: gl, count: 1, value: f, kahanC: 0, mean: f, incrementalMean: false, values: [], members: [] };
      if (isFloatOp(op)) startFloats(op, g, f);
      groups.set(key, g);
      order.push(g);
      if (op === "quantile") g.values.push(f);
      if (op === "topk" || op === "bottomk" || op === "limitk") g.members.push(s);
      if (op === "limit_ratio" && keepForRatio(s.labels, ratio)) g.members.push(s);
      continue;
    }
    if (isFloatOp(op)) {
      addFloat(op, g, f);
      continue;
    }
    switch (op) {
      case "quantile":
        g.values.push(f);
        break;
      case "topk":
      case "bottomk":
      case "limitk":
        g.members.push(s);
        break;
      case "limit_ratio":
        if (keepForRatio(s.labels, ratio)) g.members.push(s);
        break;
      default:
        unreachable(op);
    }
  }

  const out: Vector = [];
  for (const g of order) {
    if (isFloatOp(op)) {
      out.push({ labels: g.labels, v: floatResult(op, g), tMs });
      continue;
    }
    switch (op) {
      case "quantile":
        out.push({ labels: g.labels, v: quantile(param as number, g.values), tMs });
        break;
      case "topk":
      case "bottomk":
        for (const s of selectK(g.members, k, op === "topk")) out.push({ labels: s.labels, v: s.v, tMs });
        break;
      case "limitk":
        for (const s of g.members.slice(0, k)) out.push({ labels: s.labels, v: s.v, tMs });
        break;
      case "limit_ratio":
        for (const s of g.members) out.push({ labels: s.labels, v: s.v, tMs });
        break;
      default:
        unreachable(op);
    }
  }
  return out;
}

function keepForRatio(labels: Labels, ratio: number): boolean {
  const offset = labelsHashFraction(labels);
  return (ratio >= 0 && offset < ratio) || (ratio < 0 && offset >= 1 + ratio);
}

/**
 * The k largest (top) or smallest values, NaN ranking last either way; among
 * equal values the earlier input wins, as with Prometheus's heap (which only
 * replaces on a strictly better value). Output best first.
 */
function selectK(members: Sample[], k: number, top: boolean): Sample[] {
  const indexed = members.map((s, i): [Sample, number] => [s, i]);
  indexed.sort(([a, ai], [b, bi]) => {
    const an = Number.isNaN(a.v);
    const bn = Number.isNaN(b.v);
    if (an || bn) return an === bn ? ai - bi : an ? 1 : -1;
    if (a.v === b.v) return ai - bi;
    return top ? b.v - a.v : a.v - b.v;
  });
  return indexed.slice(0, k).map(([s]) => s);
}


/** The aggregations aggregateIndexed computes. */
export const INDEXED_OPS: ReadonlySet<string> = new Set(["sum", "avg", "min", "max", "count", "group"]);

/** Part of a leaf's samples at one step in compact form: sample j is series sids[j] with value values[j], j in [from, to). */
export interface IndexedStep {
  from: number;
  to: number;
  sids: Int32Array;
  values: Float64Array;
}

/** Per-group state reused across steps: sized for the group count, reset by stamping, not by clearing. */
export class GroupScratch {
  readonly groups: FloatGroup[];
  readonly stamp: Int32Array;
  round = 0;

  constructor(groups: number) {
    this.groups = Array.from({ length: groups }, () => ({ count: 0, value: 0, kahanC: 0, mean: 0, incrementalMean: false }));
    this.stamp = new Int32Array(groups);
  }
}

/**
 * sum, avg, min, max, count and group over one step of a leaf, with each series' group known in advance
 * (gidBySid): the same folding (startFloats, addFloat, floatResult), in the same order, as aggregate() on the
 * equivalent vector, without building it or looking up each series' group (at many thousands of series those
 * lookups are cache misses).
 */
export function aggregateIndexed(op: string, parts: readonly IndexedStep[], gidBySid: Int32Array, groupLabels: readonly Labels[], scratch: GroupScratch, tMs: number): Vector {
  assert(INDEXED_OPS.has(op) && isFloatOp(op), `aggregateIndexed computes ${[...INDEXED_OPS].join(", ")}`);
  const round = ++scratch.round;
  const order: number[] = [];
  for (const step of parts)
    for (let j = step.from; j < step.to; j++) {
      const gid = gidBySid[step.sids[j]!]!;
      const g = scratch.groups[gid]!;
      const f = step.values[j]!;
      if (scratch.stamp[gid] !== round) {
        scratch.stamp[gid] = round;
        order.push(gid);
        startFloats(op, g, f);
      } else addFloat(op, g, f);
    }
  const out: Vector = new Array<Sample>(order.length);
  for (let i = 0; i < order.length; i++) out[i] = { labels: groupLabels[order[i]!]!, v: floatResult(op, scratch.groups[order[i]!]!), tMs };
  return out;
}
