// The PromQL evaluator (Prometheus 3.x semantics) over a SeriesSource.
//
// A query runs in two phases. First every selector's data is fetched once for
// the whole query (one select per selector, its time range widened by offset,
// @, lookback/range and enclosing subqueries), so a range query does not hit
// storage per step. Then the tree is evaluated step by step, synchronously;
// subquery inner steps are memoised by absolute time, because neighbouring
// outer steps share most of them (they are aligned to multiples of the step).

import { HqError, TooLargeError } from "../../core/errors.js";
import { assert, unreachable } from "../../core/assert.js";
import { METRIC_NAME, type Labels } from "../../core/labels.js";
import type { Matcher } from "../../core/matchers.js";
import type { AggregateExpr, AtModifier, BinaryExpr, BinaryOp, Call, Expr, MatrixSelector, PosRange, SubqueryExpr, VectorMatching, VectorSelector } from "./ast.js";
import { isComparisonOp, isSetOp, unwrapParens } from "./ast.js";
import { aggregate, aggregateIndexed, GroupScratch, groupOf, INDEXED_OPS } from "./aggregate.js";
import {
  MATRIX_ARG,
  QueryError,
  callFunction,
  compareLabels,
  countResets,
  kernelParamIfPlain,
  prepareKernel,
  deriveLabels,
  dropMetricName,
  formatLabels,
  labelsKey,
  type DerivedLabels,
  type KernelEnv,
  type Matrix,
  type MatrixWindow,
  type Sample,
  type Series,
  type Value,
  type Vector,
} from "./functions.js";

import { promPosition } from "./parse.js";
import { isStaleWords, type Matrix as ResultMatrix, type Value as ResultValue } from "./value.js";

export { QueryError } from "./functions.js";

export interface SeriesSource {
  /** Series matching all matchers with their raw float samples in [startMs, endMs] (inclusive), timestamps ascending, stale markers included as NaN with the stale bit pattern. */
  select(matchers: Matcher[], startMs: number, endMs: number): Promise<{ labels: Labels; tMs: Float64Array; values: Float64Array }[]>;
}

export interface EvaluatorOptions {
  lookbackDeltaMs?: number;
  maxSamples?: number;
  timeoutMs?: number;
  defaultSubqueryStepMs?: number;
  /** Range queries compute selectors and range functions series-major first (precomputeSteps); false: step by step only (tests compare the two). */
  seriesMajor?: boolean;
}

export interface QueryResult<V> {
  value: V;
  warnings: string[];
  infos: string[];
}

/** Prometheus's limit on points per series in a range query's answer. */
const RANGE_POINTS_MAX = 11_000;
/** A range query gives the event loop back this often (ms of evaluation). */
const YIELD_EVERY_MS = 20;

// The stale check reads the sample words through a Uint32Array view, so it assumes the low word comes first.
assert(new Uint8Array(new Uint16Array([1]).buffer)[0] === 1, "the stale-marker check needs a little-endian platform");

/**
 * One leaf expression's instant vectors at every step of a range query, in chunks of consecutive series, each
 * step-major: in a chunk, step k's samples are at [offsets[k], offsets[k+1]), each a series (index into `labels`)
 * and a value, plus the sample's own time for a selector (timestamp() reads it). A step's vector is its part of
 * every chunk, in chunk order (series in label order).
 */
interface StepColumns {
  chunks: ColumnChunk[];
  steps: number;
  labels: Labels[];
  /** Output labels may collide (a range function dropping the name of series that differ only by it): check each step. */
  checkDuplicates: boolean;
}

interface ColumnChunk {
  offsets: Int32Array;
  sids: Int32Array;
  values: Float64Array;
  sampleTMs: Float64Array | null;
}

/** The series-major pass keeps every step's output of its leaves: past this many possible points (all leaves of a query) a leaf is not precomputed. */
const COLUMN_POINTS_MAX = 24_000_000;
/** Points gathered series-major before they are laid out step-major as one chunk (bounds the scratch buffers). */
const CHUNK_POINTS = 1 << 20;

interface LoadedSeries {
  labels: Labels;
  derived: DerivedLabels;
  tMs: Float64Array;
  values: Float64Array;
  stale: Uint8Array;
  /** The samples without stale markers (a range vector's view): the arrays above when there are none. */
  rangeTMs: Float64Array;
  rangeValues: Float64Array;
  /** Counter resets in rangeValues (Series.resetsUpTo), built on first use. */
  rangeResets: Int32Array | null;
  /** The last answers of the index searches: steps mostly move forward, so the next answer is usually a few samples on. */
  instantHint: number;
  rangeStartHint: number;
  rangeEndHint: number;
}

/** The per-query state: fetched data, annotations, limits. */
interface QueryState {
  startMs: number;
  endMs: number;
  /** 0 for an instant query. */
  stepMs: number;
  isRange: boolean;
  text: string | null;
  data: Map<VectorSelector, LoadedSeries[]>;
  memo: Map<Expr, Map<number, Value>>;
  warnings: Set<string>;
  infos: Set<string>;
  /** Range queries: results of leaf expressions computed for every step at once (see precomputeSteps). */
  columns: Map<Expr, StepColumns>;
  /** Aggregations over precomputed leaves: each series' group (see aggregateFromColumns). */
  groupIndex: Map<AggregateExpr, { gidBySid: Int32Array; groupLabels: Labels[]; scratch: GroupScratch }>;
  /** Per selector: whether its series stay distinct once the metric name is dropped (see evalCall). */
  distinctWithoutName: Map<VectorSelector, boolean>;
  deadlineMs: number;
  samples: number;
}

/** The stale rule of value.ts (both spellings of the marker), on a sample's two 32-bit words. */
function isStaleWord(words: Uint32Array, i: number): boolean {
  return isStaleWords(words[2 * i + 1]!, words[2 * i]!);
}

/** Index of the last timestamp <= tMs, or -1 (searching from index `from`, all before it being <= tMs). */
function lastAtOrBefore(ts: Float64Array, tMs: number, from = 0): number {
  let lo = from;
  let hi = ts.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ts[mid]! <= tMs) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** How far past its hint seekLastAtOrBefore walks before it falls back to a binary search. */
const SEEK_WALK_MAX = 8;

/** lastAtOrBefore, starting from `hint` (an earlier answer) when the answer cannot be before it. */
function seekLastAtOrBefore(ts: Float64Array, tMs: number, hint: number): number {
  const n = ts.length;
  if (hint < -1 || hint >= n || (hint >= 0 && ts[hint]! > tMs)) return lastAtOrBefore(ts, tMs);
  let i = hint;
  for (let k = 0; k < SEEK_WALK_MAX; k++) {
    if (i + 1 >= n || ts[i + 1]! > tMs) return i;
    i++;
  }
  return lastAtOrBefore(ts, tMs, i + 1);
}

/** A series being built step by step: a range query's result, a subquery's matrix. */
interface SeriesBuilder {
  labels: Labels;
  tMs: number[];
  values: number[];
}

/**
 * Adds one step's samples to the series they belong to (a range query's result, a subquery's matrix). With
 * `rejectDuplicates`, two samples of one step with one label set fail the query: the check checkUniqueLabelsets
 * makes, folded into this pass.
 */
function appendStep(bySeries: Map<string, SeriesBuilder>, samples: Vector, tMs: number, rejectDuplicates: boolean): void {
  for (const s of samples) {
    const key = labelsKey(s.labels);
    let series = bySeries.get(key);
    if (series === undefined) {
      series = { labels: s.labels, tMs: [], values: [] };
      bySeries.set(key, series);
    } else if (rejectDuplicates && series.tMs[series.tMs.length - 1] === tMs) {
      throw new QueryError("vector cannot contain metrics with the same labelset");
    }
    series.tMs.push(tMs);
    series.values.push(s.v);
  }
}


export class Evaluator {
  private readonly lookbackDeltaMs: number;
  private readonly maxSamples: number;
  private readonly timeoutMs: number;
  private readonly defaultSubqueryStepMs: number;
  private readonly seriesMajor: boolean;

  constructor(
    private readonly source: SeriesSource,
    opts: EvaluatorOptions = {},
  ) {
    this.lookbackDeltaMs = opts.lookbackDeltaMs ?? 300_000;
    this.maxSamples = opts.maxSamples ?? 50e6;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.defaultSubqueryStepMs = opts.defaultSubqueryStepMs ?? 60_000;
    this.seriesMajor = opts.seriesMajor ?? true;
    assert(this.lookbackDeltaMs > 0, "lookback delta must be positive");
    assert(this.maxSamples > 0, "maxSamples must be positive");
    assert(this.timeoutMs > 0, "timeout must be positive");
    assert(this.defaultSubqueryStepMs > 0, "default subquery step must be positive");
  }

  /** `queryText`, when given, turns annotation positions into line:column as Prometheus prints them. */
  async instant(expr: Expr, tMs: number, queryText?: string): Promise<QueryResult<ResultValue>> {
    const q = await this.prepare(expr, tMs, tMs, 0, queryText);
    const v = this.evalAt(q, expr, tMs);
    let value: ResultValue;
    switch (v.kind) {
      case "scalar":
        value = { type: "scalar", result: { tMs, value: v.v } };
        break;
      case "string":
        value = { type: "string", result: { tMs, value: v.s } };
        break;
      case "vector":
        this.checkUniqueLabelsets(v.samples);
        value = { type: "vector", result: v.samples.map((s) => ({ labels: s.labels, value: s.v })) };
        break;
      case "matrix":
        value = { type: "matrix", result: toResultMatrix(v.series) };
        break;
      default:
        unreachable(v);
    }
    return { value, warnings: [...q.warnings], infos: [...q.infos] };
  }

  async range(expr: Expr, startMs: number, endMs: number, stepMs: number, queryText?: string): Promise<QueryResult<ResultMatrix>> {
    if (!(stepMs > 0)) throw new QueryError("zero or negative query resolution step widths are not accepted. Try a positive integer");
    if (endMs < startMs) throw new QueryError("end timestamp must not be before start time");
    const points = Math.floor((endMs - startMs) / stepMs) + 1;
    if (points > RANGE_POINTS_MAX)
      throw new TooLargeError("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX); points per series", RANGE_POINTS_MAX);
    const q = await this.prepare(expr, startMs, endMs, stepMs, queryText);
    if (this.seriesMajor) await this.precomputeSteps(q, expr, points);
    const bySeries = new Map<string, SeriesBuilder>();
    let pointsTotal = 0;
    let yieldedAtMs = performance.now();
    for (let tMs = startMs; tMs <= endMs; tMs += stepMs) {
      // Steps run synchronously: give the event loop back every few ms, so writes, health checks and signals are
      // served while a long query runs (and its deadline is checked on a clock that moves).
      if (performance.now() - yieldedAtMs > YIELD_EVERY_MS) {
        await new Promise((r) => setImmediate(r));
        yieldedAtMs = performance.now();
      }
      this.checkDeadline(q);
      const v = this.evalAt(q, expr, tMs);
      let samples: Vector;
      if (v.kind === "scalar") samples = [{ labels: [], v: v.v, tMs }];
      else if (v.kind === "vector") samples = v.samples;
      else throw new QueryError(`invalid expression type "${v.kind === "matrix" ? "range vector" : "string"}" for range query, must be Scalar or instant Vector`);
      appendStep(bySeries, samples, tMs, true);
      pointsTotal += samples.length;
      this.checkSamples(q, pointsTotal);
    }
    const value = toResultMatrix(sortedSeries(bySeries));
    return { value, warnings: [...q.warnings], infos: [...q.infos] };
  }

  // -------------------------------------------------------------------------
  // Phase 1: fetch every selector's data once.

  private async prepare(expr: Expr, startMs: number, endMs: number, stepMs: number, text: string | undefined): Promise<QueryState> {
    const q: QueryState = {
      startMs,
      endMs,
      stepMs,
      isRange: stepMs > 0,
      text: text ?? null,
      data: new Map(),
      memo: new Map(),
      warnings: new Set(),
      infos: new Set(),
      distinctWithoutName: new Map(),
      columns: new Map(),
      groupIndex: new Map(),
      deadlineMs: Date.now() + this.timeoutMs,
      samples: 0,
    };
    const ranges = new Map<VectorSelector, { fromMs: number; toMs: number }>();
    const need = (sel: VectorSelector, fromMs: number, toMs: number): void => {
      const r = ranges.get(sel);
      if (r === undefined) ranges.set(sel, { fromMs, toMs });
      else {
        r.fromMs = Math.min(r.fromMs, fromMs);
        r.toMs = Math.max(r.toMs, toMs);
      }
    };
    const walk = (e: Expr, loMs: number, hiMs: number): void => {
      switch (e.kind) {
        case "number":
        case "string":
          return;
        case "vectorSelector": {
          const [a, b] = this.atRange(q, e.at, loMs, hiMs);
          need(e, a - e.offsetMs - this.lookbackDeltaMs, b - e.offsetMs);
          return;
        }
        case "matrixSelector": {
          const [a, b] = this.atRange(q, e.vector.at, loMs, hiMs);
          need(e.vector, a - e.vector.offsetMs - e.rangeMs, b - e.vector.offsetMs);
          return;
        }
        case "subquery": {
          const [a, b] = this.atRange(q, e.at, loMs, hiMs);
          walk(e.expr, a - e.offsetMs - e.rangeMs, b - e.offsetMs);
          return;
        }
        case "paren":
        case "unary":
          walk(e.expr, loMs, hiMs);
          return;
        case "binary":
          walk(e.lhs, loMs, hiMs);
          walk(e.rhs, loMs, hiMs);
          return;
        case "aggregate":
          walk(e.expr, loMs, hiMs);
          if (e.param !== null) walk(e.param, loMs, hiMs);
          return;
        case "call":
          for (const a of e.args) walk(a, loMs, hiMs);
          return;
        default:
          unreachable(e);
      }
    };
    walk(expr, startMs, endMs);

    const entries = [...ranges.entries()];
    const loaded = await Promise.all(entries.map(([sel, r]) => this.source.select(sel.matchers, r.fromMs, r.toMs)));
    for (let i = 0; i < entries.length; i++) {
      const series = loaded[i]!.map((s): LoadedSeries => {
        assert(s.tMs.length === s.values.length, "a series has one value per timestamp");
        const words = new Uint32Array(s.values.buffer, s.values.byteOffset, s.values.length * 2);
        const stale = new Uint8Array(s.values.length);
        let staleCount = 0;
        for (let j = 0; j < s.values.length; j++) {
          const isStale = isStaleWord(words, j);
          stale[j] = isStale ? 1 : 0;
          if (isStale) staleCount++;
        }
        let rangeTMs = s.tMs;
        let rangeValues = s.values;
        if (staleCount > 0) {
          rangeTMs = new Float64Array(s.values.length - staleCount);
          rangeValues = new Float64Array(s.values.length - staleCount);
          let k = 0;
          for (let j = 0; j < s.values.length; j++) {
            if (stale[j] === 1) continue;
            rangeTMs[k] = s.tMs[j]!;
            rangeValues[k] = s.values[j]!;
            k++;
          }
        }
        q.samples += s.values.length;
        return { labels: s.labels, derived: deriveLabels(s.labels), tMs: s.tMs, values: s.values, stale, rangeTMs, rangeValues, rangeResets: null, instantHint: -1, rangeStartHint: -1, rangeEndHint: -1 };
      });
      // Storage order is label order in Prometheus; limitk and tie-breaking depend on it.
      series.sort((a, b) => compareLabels(a.labels, b.labels));
      q.data.set(entries[i]![0], series);
    }
    this.checkSamples(q, 0);
    return q;
  }

  private atRange(q: QueryState, at: AtModifier, loMs: number, hiMs: number): [number, number] {
    if (at === null) return [loMs, hiMs];
    const t = this.atTime(q, at, loMs);
    return [t, t];
  }

  private atTime(q: QueryState, at: AtModifier, tMs: number): number {
    if (at === null) return tMs;
    switch (at.kind) {
      case "time":
        return at.timeMs;
      case "start":
        return q.startMs;
      case "end":
        return q.endMs;
      default:
        return unreachable(at);
    }
  }

  private checkSamples(q: QueryState, extra: number): void {
    if (q.samples + extra > this.maxSamples)
      throw new TooLargeError("query processing would load too many samples into memory in query execution; samples", this.maxSamples);
  }

  private checkDeadline(q: QueryState): void {
    if (Date.now() > q.deadlineMs) throw new HqError("unavailable", `query timed out in expression evaluation (limit ${this.timeoutMs} ms)`, { details: { timeoutMs: this.timeoutMs } });
  }

  private annotate(q: QueryState, kind: "warning" | "info", message: string, pos: PosRange): void {
    const { line, column } = q.text !== null ? promPosition(q.text, pos.start) : { line: 1, column: pos.start + 1 };
    const text = `PromQL ${kind}: ${message} (${line}:${column})`;
    (kind === "warning" ? q.warnings : q.infos).add(text);
  }

  private checkUniqueLabelsets(vec: Vector): void {
    if (vec.length < 2) return;
    const seen = new Set<string>();
    for (const s of vec) {
      const k = labelsKey(s.labels);
      if (seen.has(k)) throw new QueryError("vector cannot contain metrics with the same labelset");
      seen.add(k);
    }
  }

  // -------------------------------------------------------------------------
  // Phase 1b (range queries): leaves computed series-major.
  //
  // Evaluating step by step visits every selected series at every step; with tens of thousands of series their
  // arrays no longer stay in the CPU caches between steps, and memory latency dominates. So the leaves a range query
  // evaluates at its own steps (selectors, and range functions over a selector) are computed series by series over
  // all steps first, each series' samples read once in order, and the steps then read their vectors from compact
  // step-major columns. Leaves inside subqueries are evaluated at other times and keep the step-by-step path.

  private async precomputeSteps(q: QueryState, root: Expr, steps: number): Promise<void> {
    const leaves: Expr[] = [];
    const walk = (e: Expr): void => {
      switch (e.kind) {
        case "vectorSelector":
          leaves.push(e);
          return;
        case "call":
          if (kernelParamIfPlain(e) !== null) leaves.push(e);
          else for (const a of e.args) walk(a);
          return;
        case "paren":
        case "unary":
          walk(e.expr);
          return;
        case "binary":
          walk(e.lhs);
          walk(e.rhs);
          return;
        case "aggregate":
          walk(e.expr);
          if (e.param !== null) walk(e.param);
          return;
        default:
          // Numbers, strings, matrix selectors (only under calls), subqueries: nothing evaluated at the steps.
          return;
      }
    };
    walk(root);
    let yieldedAtMs = performance.now();
    const pause = async (): Promise<void> => {
      if (performance.now() - yieldedAtMs <= YIELD_EVERY_MS) return;
      await new Promise((r) => setImmediate(r));
      yieldedAtMs = performance.now();
      this.checkDeadline(q);
    };
    let columnPoints = 0;
    for (const leaf of leaves) {
      const sel = leaf.kind === "vectorSelector" ? leaf : leaf.kind === "call" ? (unwrapParens(leaf.args[MATRIX_ARG.get(leaf.func)!]!) as MatrixSelector).vector : null;
      assert(sel !== null, "leaves are selectors or calls over one");
      const data = q.data.get(sel);
      assert(data !== undefined, "every selector was fetched in prepare()");
      // The columns of all leaves together stay within the bound (memory: at most ~24 bytes a point).
      if (columnPoints + data.length * steps > COLUMN_POINTS_MAX) continue;
      columnPoints += data.length * steps;
      q.columns.set(leaf, leaf.kind === "vectorSelector" ? await this.selectorColumns(q, leaf, data, steps, pause) : await this.callColumns(q, leaf as Call, data, steps, pause));
    }
  }

  private async selectorColumns(q: QueryState, sel: VectorSelector, data: LoadedSeries[], steps: number, pause: () => Promise<void>): Promise<StepColumns> {
    const out = new ColumnsBuilder(data.length, steps, true);
    for (let i = 0; i < data.length; i++) {
      if ((i & 255) === 0) await pause();
      const s = data[i]!;
      for (let k = 0; k < steps; k++) {
        const j = this.instantSample(s, this.windowEndMs(q, sel.at, sel.offsetMs, q.startMs + k * q.stepMs));
        if (j >= 0) out.add(i, k, s.values[j]!, s.tMs[j]!);
      }
    }
    return out.build(
      data.map((s) => s.labels),
      false,
    );
  }

  private async callColumns(q: QueryState, call: Call, data: LoadedSeries[], steps: number, pause: () => Promise<void>): Promise<StepColumns> {
    const param = kernelParamIfPlain(call);
    assert(param !== null, "only plain range-function calls are precomputed");
    const m = unwrapParens(call.args[MATRIX_ARG.get(call.func)!]!) as MatrixSelector;
    const prepared = prepareKernel(call, param, { warn: (msg, pos) => this.annotate(q, "warning", msg, pos), info: (msg, pos) => this.annotate(q, "info", msg, pos) });
    const out = new ColumnsBuilder(data.length, steps, false);
    const env: KernelEnv = { window: { rangeStartMs: 0, rangeEndMs: 0, rangeMs: m.rangeMs }, param, tMs: 0 };
    for (let i = 0; i < data.length; i++) {
      if ((i & 255) === 0) await pause();
      const ls = data[i]!;
      ls.rangeResets ??= countResets(ls.rangeValues);
      // One window object per series, moved along the steps: the kernels read lo/hi, nothing is allocated per step.
      const w: Series = { labels: ls.labels, derived: ls.derived, tMs: ls.rangeTMs, values: ls.rangeValues, lo: 0, hi: 0, resetsUpTo: ls.rangeResets };
      let noted = false;
      for (let k = 0; k < steps; k++) {
        const tMs = q.startMs + k * q.stepMs;
        // windowOf's arithmetic, into the one window object the kernels read.
        const endMs = this.windowEndMs(q, m.vector.at, m.vector.offsetMs, tMs);
        env.window.rangeStartMs = endMs - m.rangeMs;
        env.window.rangeEndMs = endMs;
        env.tMs = tMs;
        if (!this.cutWindow(ls, env.window.rangeStartMs, endMs, w)) continue;
        if (!noted) {
          prepared.noteSeries(w);
          noted = true;
        }
        const v = prepared.kernel(w, env);
        if (v !== null) out.add(i, k, v, tMs);
      }
    }
    return out.build(
      data.map((s) => (prepared.keepName ? s.labels : s.derived.nameless)),
      !prepared.keepName && !this.distinctWithoutName(q, m.vector),
    );
  }

  /** sum/avg/min/max/count/group directly over a precomputed leaf at one of the query's steps; null otherwise. */
  private aggregateFromColumns(q: QueryState, e: AggregateExpr, tMs: number): Vector | null {
    if (!INDEXED_OPS.has(e.op)) return null;
    const columns = q.columns.get(unwrapParens(e.expr));
    if (columns === undefined || columns.checkDuplicates) return null;
    const k = (tMs - q.startMs) / q.stepMs;
    if (!Number.isInteger(k) || k < 0 || k >= columns.steps) return null;
    let groups = q.groupIndex.get(e);
    if (groups === undefined) {
      // Each series' group, once per query: later steps index arrays instead of looking labels up.
      const keyToGid = new Map<string, number>();
      const groupLabels: Labels[] = [];
      const gidBySid = new Int32Array(columns.labels.length);
      columns.labels.forEach((l, sid) => {
        const id = groupOf(e, l);
        let gid = keyToGid.get(id.key);
        if (gid === undefined) {
          gid = groupLabels.length;
          keyToGid.set(id.key, gid);
          groupLabels.push(id.labels);
        }
        gidBySid[sid] = gid;
      });
      groups = { gidBySid, groupLabels, scratch: new GroupScratch(groupLabels.length) };
      q.groupIndex.set(e, groups);
    }
    const parts = columns.chunks.map((c) => ({ from: c.offsets[k]!, to: c.offsets[k + 1]!, sids: c.sids, values: c.values }));
    return aggregateIndexed(e.op, parts, groups.gidBySid, groups.groupLabels, groups.scratch, tMs);
  }

  // -------------------------------------------------------------------------
  // Phase 2: evaluation at one step.

  private evalAt(q: QueryState, e: Expr, tMs: number): Value {
    const columns = q.columns.get(e);
    if (columns !== undefined) {
      const k = (tMs - q.startMs) / q.stepMs;
      if (Number.isInteger(k) && k >= 0 && k < columns.steps) {
        const samples = stepSamples(columns, k, tMs);
        if (columns.checkDuplicates) this.checkUniqueLabelsets(samples);
        return { kind: "vector", samples };
      }
    }
    switch (e.kind) {
      case "number":
        return { kind: "scalar", v: e.value };
      case "string":
        return { kind: "string", s: e.value };
      case "paren":
        return this.evalAt(q, e.expr, tMs);
      case "vectorSelector":
        return { kind: "vector", samples: this.selectInstant(q, e, tMs) };
      case "matrixSelector":
        return { kind: "matrix", series: this.selectRange(q, e, tMs) };
      case "subquery":
        return { kind: "matrix", series: this.evalSubquery(q, e, tMs) };
      case "unary": {
        const v = this.evalAt(q, e.expr, tMs);
        if (e.op === "+") return v;
        if (v.kind === "scalar") return { kind: "scalar", v: -v.v };
        assert(v.kind === "vector", "unary minus applies to scalars and instant vectors (the parser checks types)");
        const samples = v.samples.map((s) => ({ labels: dropMetricName(s.labels), v: -s.v, tMs }));
        this.checkUniqueLabelsets(samples);
        return { kind: "vector", samples };
      }
      case "binary":
        return this.evalBinary(q, e, tMs);
      case "aggregate":
        return this.evalAggregate(q, e, tMs);
      case "call":
        return this.evalCall(q, e, tMs);
      default:
        return unreachable(e);
    }
  }

  private selectInstant(q: QueryState, sel: VectorSelector, tMs: number): Vector {
    const data = q.data.get(sel);
    assert(data !== undefined, "every selector was fetched in prepare()");
    const refMs = this.atTime(q, sel.at, tMs) - sel.offsetMs;
    const out: Vector = [];
    for (const s of data) {
      const i = this.instantSample(s, refMs);
      if (i >= 0) out.push({ labels: s.labels, v: s.values[i]!, tMs: s.tMs[i]! });
    }
    return out;
  }

  /**
   * The index of a series' sample an instant selector reads at `refMs`, or -1: the newest at or before it, within
   * the lookback window (t - lookback, t], and not a stale marker (one as newest sample ends the series).
   */
  private instantSample(s: LoadedSeries, refMs: number): number {
    const i = seekLastAtOrBefore(s.tMs, refMs, s.instantHint);
    s.instantHint = i;
    if (i < 0 || s.tMs[i]! <= refMs - this.lookbackDeltaMs || s.stale[i] === 1) return -1;
    return i;
  }

  /**
   * Cuts a series' range-vector window (startMs, endMs] (left-open, over the samples without stale markers: they
   * are not samples) into `w.lo`/`w.hi`; false when it is empty.
   */
  private cutWindow(s: LoadedSeries, startMs: number, endMs: number, w: { lo: number; hi: number }): boolean {
    const beforeStart = seekLastAtOrBefore(s.rangeTMs, startMs, s.rangeStartHint);
    const last = seekLastAtOrBefore(s.rangeTMs, endMs, Math.max(s.rangeEndHint, beforeStart));
    s.rangeStartHint = beforeStart;
    s.rangeEndHint = last;
    w.lo = beforeStart + 1;
    w.hi = last + 1;
    return last > beforeStart;
  }

  /** A range vector's end at evaluation time tMs, after @ and offset (its start is rangeMs before). */
  private windowEndMs(q: QueryState, at: AtModifier, offsetMs: number, tMs: number): number {
    return this.atTime(q, at, tMs) - offsetMs;
  }

  private windowOf(q: QueryState, e: MatrixSelector | SubqueryExpr, tMs: number): MatrixWindow {
    const endMs = e.kind === "matrixSelector" ? this.windowEndMs(q, e.vector.at, e.vector.offsetMs, tMs) : this.windowEndMs(q, e.at, e.offsetMs, tMs);
    return { rangeStartMs: endMs - e.rangeMs, rangeEndMs: endMs, rangeMs: e.rangeMs };
  }

  private selectRange(q: QueryState, m: MatrixSelector, tMs: number): Matrix {
    const data = q.data.get(m.vector);
    assert(data !== undefined, "every selector was fetched in prepare()");
    const w = this.windowOf(q, m, tMs);
    const out: Matrix = [];
    const cut = { lo: 0, hi: 0 };
    for (const s of data) {
      if (!this.cutWindow(s, w.rangeStartMs, w.rangeEndMs, cut)) continue;
      s.rangeResets ??= countResets(s.rangeValues);
      out.push({ labels: s.labels, derived: s.derived, tMs: s.rangeTMs, values: s.rangeValues, lo: cut.lo, hi: cut.hi, resetsUpTo: s.rangeResets });
    }
    return out;
  }

  private evalSubquery(q: QueryState, sq: SubqueryExpr, tMs: number): Matrix {
    const stepMs = sq.stepMs > 0 ? sq.stepMs : this.defaultSubqueryStepMs;
    const w = this.windowOf(q, sq, tMs);
    // Inner steps are absolute multiples of the step inside (start, end], as Prometheus aligns them.
    let innerMs = (Math.floor(w.rangeStartMs / stepMs) + 1) * stepMs;
    let memo = q.memo.get(sq.expr);
    if (memo === undefined) {
      memo = new Map();
      q.memo.set(sq.expr, memo);
    }
    const bySeries = new Map<string, SeriesBuilder>();
    let points = 0;
    for (; innerMs <= w.rangeEndMs; innerMs += stepMs) {
      this.checkDeadline(q);
      let v = memo.get(innerMs);
      if (v === undefined) {
        v = this.evalAt(q, sq.expr, innerMs);
        memo.set(innerMs, v);
      }
      let samples: Vector;
      if (v.kind === "scalar") samples = [{ labels: [], v: v.v, tMs: innerMs }];
      else if (v.kind === "vector") samples = v.samples;
      else throw new QueryError("subquery is only allowed on instant vector or scalar expressions");
      appendStep(bySeries, samples, innerMs, false);
      points += samples.length;
      this.checkSamples(q, points);
    }
    return sortedSeries(bySeries);
  }

  private evalCall(q: QueryState, call: Call, tMs: number): Value {
    const args = call.args.map((a) => this.evalAt(q, a, tMs));
    const matrixIndex = MATRIX_ARG.get(call.func);
    let window: MatrixWindow | null = null;
    // A range function over a selector gives each selected series at most one output sample, labelled with the
    // series' labels with or without the name: if those are distinct for the selector, so is every step's output,
    // and the per-step duplicate check (a set of every output's key) can be left out.
    let distinctOutput = false;
    if (matrixIndex !== undefined) {
      const arg = unwrapParens(call.args[matrixIndex]!);
      assert(arg.kind === "matrixSelector" || arg.kind === "subquery", `${call.func} takes a range vector (the parser checks types)`);
      window = this.windowOf(q, arg, tMs);
      if (arg.kind === "matrixSelector" && call.func !== "absent_over_time") distinctOutput = this.distinctWithoutName(q, arg.vector);
    }
    const value = callFunction(call, args, window, {
      tMs,
      isRangeQuery: q.isRange,
      queryStartMs: q.startMs,
      queryEndMs: q.endMs,
      queryStepMs: q.stepMs,
      warn: (m, pos) => this.annotate(q, "warning", m, pos),
      info: (m, pos) => this.annotate(q, "info", m, pos),
    });
    if (value.kind === "vector" && !distinctOutput) this.checkUniqueLabelsets(value.samples);
    return value;
  }

  private distinctWithoutName(q: QueryState, sel: VectorSelector): boolean {
    let distinct = q.distinctWithoutName.get(sel);
    if (distinct === undefined) {
      const data = q.data.get(sel);
      assert(data !== undefined, "every selector was fetched in prepare()");
      distinct = new Set(data.map((s) => labelsKey(dropMetricName(s.labels)))).size === data.length;
      q.distinctWithoutName.set(sel, distinct);
    }
    return distinct;
  }

  private evalAggregate(q: QueryState, e: AggregateExpr, tMs: number): Value {
    const fast = this.aggregateFromColumns(q, e, tMs);
    if (fast !== null) return { kind: "vector", samples: fast };
    const input = this.evalAt(q, e.expr, tMs);
    assert(input.kind === "vector", "aggregations take an instant vector (the parser checks types)");
    let param: number | string | null = null;
    if (e.param !== null) {
      const p = this.evalAt(q, e.param, tMs);
      assert(p.kind === "scalar" || p.kind === "string", "an aggregation parameter is a scalar or a string");
      param = p.kind === "scalar" ? p.v : p.s;
    }
    return { kind: "vector", samples: aggregate(e, input.samples, param, { tMs, warn: (m, pos) => this.annotate(q, "warning", m, pos) }) };
  }

  // -------------------------------------------------------------------------
  // Binary operators.

  private evalBinary(q: QueryState, e: BinaryExpr, tMs: number): Value {
    const l = this.evalAt(q, e.lhs, tMs);
    const r = this.evalAt(q, e.rhs, tMs);
    if (l.kind === "scalar" && r.kind === "scalar") {
      const [v, keep] = binop(e.op, l.v, r.v);
      return { kind: "scalar", v: isComparisonOp(e.op) ? (keep ? 1 : 0) : v };
    }
    if (l.kind === "vector" && r.kind === "scalar") return this.checked({ kind: "vector", samples: vectorScalar(e, l.samples, r.v, false, tMs) });
    if (l.kind === "scalar" && r.kind === "vector") return this.checked({ kind: "vector", samples: vectorScalar(e, r.samples, l.v, true, tMs) });
    assert(l.kind === "vector" && r.kind === "vector", "binary operands are scalars or instant vectors (the parser checks types)");
    const m = matchingOf(e);
    switch (e.op) {
      case "and":
      case "or":
      case "unless":
        return { kind: "vector", samples: setOp(e.op, l.samples, r.samples, m) };
      default:
        return this.checked({ kind: "vector", samples: vectorVector(e, l.samples, r.samples, m, tMs) });
    }
  }

  private checked(v: Value): Value {
    if (v.kind === "vector") this.checkUniqueLabelsets(v.samples);
    return v;
  }
}

/** Collects a leaf's output series-major, then lays it out step-major (StepColumns). */
class ColumnsBuilder {
  private readonly stepOf: Uint16Array;
  private readonly sidOf: Int32Array;
  private readonly valueOf: Float64Array;
  private readonly timeOf: Float64Array | null;
  private readonly perStep: Int32Array;
  private readonly chunks: ColumnChunk[] = [];
  /** Series per chunk: a whole series' steps always fit in the scratch buffers. */
  private readonly chunkSeries: number;
  private chunkEnd: number;
  private n = 0;

  constructor(
    seriesCount: number,
    private readonly steps: number,
    withTimes: boolean,
  ) {
    assert(steps <= 0xffff && steps <= CHUNK_POINTS, "a range query has at most 11,000 steps");
    this.chunkSeries = Math.floor(CHUNK_POINTS / steps);
    this.chunkEnd = this.chunkSeries;
    // Scratch for one chunk, no bigger than the leaf needs (a small query must not pay for a big one's buffers).
    const cap = Math.min(this.chunkSeries, seriesCount) * steps;
    this.stepOf = new Uint16Array(cap);
    this.sidOf = new Int32Array(cap);
    this.valueOf = new Float64Array(cap);
    this.timeOf = withTimes ? new Float64Array(cap) : null;
    this.perStep = new Int32Array(steps);
  }

  /** Series in ascending sid order, each one's steps ascending. */
  add(sid: number, step: number, value: number, tMs: number): void {
    if (sid >= this.chunkEnd) {
      this.flush();
      this.chunkEnd = (Math.floor(sid / this.chunkSeries) + 1) * this.chunkSeries;
    }
    const j = this.n++;
    this.stepOf[j] = step;
    this.sidOf[j] = sid;
    this.valueOf[j] = value;
    if (this.timeOf !== null) this.timeOf[j] = tMs;
    this.perStep[step]!++;
  }

  private flush(): void {
    if (this.n === 0) return;
    const offsets = new Int32Array(this.steps + 1);
    for (let k = 0; k < this.steps; k++) offsets[k + 1] = offsets[k]! + this.perStep[k]!;
    const next = offsets.slice(0, this.steps);
    const sids = new Int32Array(this.n);
    const values = new Float64Array(this.n);
    const sampleTMs = this.timeOf !== null ? new Float64Array(this.n) : null;
    // Series-major input, so within a step the series stay in their (label) order.
    for (let j = 0; j < this.n; j++) {
      const at = next[this.stepOf[j]!]!++;
      sids[at] = this.sidOf[j]!;
      values[at] = this.valueOf[j]!;
      if (sampleTMs !== null) sampleTMs[at] = this.timeOf![j]!;
    }
    this.chunks.push({ offsets, sids, values, sampleTMs });
    this.n = 0;
    this.perStep.fill(0);
  }

  build(labels: Labels[], checkDuplicates: boolean): StepColumns {
    this.flush();
    return { chunks: this.chunks, steps: this.steps, labels, checkDuplicates };
  }
}

function stepSamples(c: StepColumns, k: number, tMs: number): Vector {
  let n = 0;
  for (const ch of c.chunks) n += ch.offsets[k + 1]! - ch.offsets[k]!;
  const out: Vector = new Array<Sample>(n);
  let i = 0;
  for (const ch of c.chunks) {
    const to = ch.offsets[k + 1]!;
    for (let j = ch.offsets[k]!; j < to; j++) out[i++] = { labels: c.labels[ch.sids[j]!]!, v: ch.values[j]!, tMs: ch.sampleTMs !== null ? ch.sampleTMs[j]! : tMs };
  }
  return out;
}

function sortedSeries(bySeries: Map<string, SeriesBuilder>): Matrix {
  return [...bySeries.values()].sort((a, b) => compareLabels(a.labels, b.labels)).map((s) => ({ ...s, derived: deriveLabels(s.labels), lo: 0, hi: s.tMs.length }));
}

function toResultMatrix(m: Matrix): ResultMatrix {
  return m.map((s) => {
    const points = [];
    for (let i = s.lo; i < s.hi; i++) points.push({ tMs: s.tMs[i]!, value: s.values[i]! });
    return { labels: s.labels, points };
  });
}


/** Go's math.Pow where it differs from Math.pow (x^NaN for x = 1, (-1)^±Inf). */
function goPow(x: number, y: number): number {
  if (x === 1 || y === 0) return 1;
  if (x === -1 && (y === Infinity || y === -Infinity)) return 1;
  return Math.pow(x, y);
}

/** [value, keep]: keep is the comparison's outcome (always true for arithmetic). */
function binop(op: BinaryOp, l: number, r: number): [number, boolean] {
  switch (op) {
    case "+":
      return [l + r, true];
    case "-":
      return [l - r, true];
    case "*":
      return [l * r, true];
    case "/":
      return [l / r, true];
    case "%":
      return [l % r, true];
    case "^":
      return [goPow(l, r), true];
    case "atan2":
      return [Math.atan2(l, r), true];
    case "==":
      return [l, l === r];
    case "!=":
      return [l, l !== r];
    case ">":
      return [l, l > r];
    case "<":
      return [l, l < r];
    case ">=":
      return [l, l >= r];
    case "<=":
      return [l, l <= r];
    case "and":
    case "or":
    case "unless":
      throw new QueryError(`set operator "${op}" not allowed in binary scalar expression`);
    default:
      return unreachable(op);
  }
}

function vectorScalar(e: BinaryExpr, vec: Vector, scalar: number, scalarOnLeft: boolean, tMs: number): Vector {
  const out: Vector = [];
  const comparison = isComparisonOp(e.op);
  const dropName = !comparison || e.returnBool;
  for (const s of vec) {
    const [l, r] = scalarOnLeft ? [scalar, s.v] : [s.v, scalar];
    let [v, keep] = binop(e.op, l, r);
    // A comparison filter keeps the vector's value even when the scalar is on the left.
    if (comparison) v = s.v;
    if (e.returnBool) {
      v = keep ? 1 : 0;
      keep = true;
    }
    if (!keep) continue;
    out.push({ labels: dropName ? dropMetricName(s.labels) : s.labels, v, tMs });
  }
  return out;
}

/** The match-group labels of a series: the on(...) labels, or all but the ignoring(...) ones and the metric name. */
function matchLabels(labels: Labels, m: VectorMatching): Labels {
  return m.on ? labels.filter(([n]) => m.labels.includes(n)) : labels.filter(([n]) => n !== METRIC_NAME && !m.labels.includes(n));
}

/**
 * A binary expression's matching, with what it derives from a series' labels cached: a series keeps its label-set
 * object for the whole query, so its match key (and, one-to-one, its output labels) is computed once, not per step.
 */
interface Matching {
  m: VectorMatching;
  sig: WeakMap<Labels, string>;
  out: WeakMap<Labels, Labels>;
}
const matchings = new WeakMap<BinaryExpr, Matching>();

function matchingOf(e: BinaryExpr): Matching {
  let mm = matchings.get(e);
  if (mm === undefined) {
    mm = { m: e.matching ?? { card: isSetOp(e.op) ? "many-to-many" : "one-to-one", on: false, labels: [], include: [] }, sig: new WeakMap(), out: new WeakMap() };
    matchings.set(e, mm);
  }
  return mm;
}

function signature(mm: Matching, labels: Labels): string {
  let k = mm.sig.get(labels);
  if (k === undefined) {
    k = labelsKey(matchLabels(labels, mm.m));
    mm.sig.set(labels, k);
  }
  return k;
}

function setOp(op: "and" | "or" | "unless", lhs: Vector, rhs: Vector, mm: Matching): Vector {
  const rightSigs = new Set(rhs.map((s) => signature(mm, s.labels)));
  switch (op) {
    case "and":
      return lhs.filter((s) => rightSigs.has(signature(mm, s.labels)));
    case "unless":
      return lhs.filter((s) => !rightSigs.has(signature(mm, s.labels)));
    case "or": {
      const leftSigs = new Set(lhs.map((s) => signature(mm, s.labels)));
      return [...lhs, ...rhs.filter((s) => !leftSigs.has(signature(mm, s.labels)))];
    }
    default:
      return unreachable(op);
  }
}

/** Prometheus's resultMetric: the labels of one output sample of a vector–vector operation. */
function resultLabels(many: Labels, one: Labels, op: BinaryOp, m: VectorMatching, returnBool: boolean): Labels {
  let out: Labels = many;
  if (!isComparisonOp(op) || returnBool) out = dropMetricName(out);
  if (m.card === "one-to-one") out = m.on ? out.filter(([n]) => m.labels.includes(n)) : out.filter(([n]) => !m.labels.includes(n));
  for (const name of m.include) {
    let v = "";
    for (const [n, lv] of one) if (n === name) v = lv;
    out = out.filter(([n]) => n !== name);
    if (v !== "") out = [...out, [name, v] as const].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
  return out;
}

function vectorVector(e: BinaryExpr, lhsIn: Vector, rhsIn: Vector, mm: Matching, tMs: number): Vector {
  const m = mm.m;
  if (m.card === "many-to-many") throw new QueryError("many-to-many only allowed for set operators");
  // The right side is the "one" side; group_right swaps the roles.
  const swapped = m.card === "one-to-many";
  const [many, one] = swapped ? [rhsIn, lhsIn] : [lhsIn, rhsIn];
  const oneSigs = new Map<string, Sample>();
  for (const s of one) {
    const sig = signature(mm, s.labels);
    const dup = oneSigs.get(sig);
    if (dup !== undefined) {
      throw new QueryError(
        `found duplicate series for the match group ${formatLabels(matchLabels(s.labels, m))} on the ${swapped ? "left" : "right"} hand-side of the operation: [${formatLabels(dup.labels)}, ${formatLabels(s.labels)}];many-to-many matching not allowed: matching labels must be unique on one side`,
      );
    }
    oneSigs.set(sig, s);
  }
  const out: Vector = [];
  const matched = new Map<string, Set<string>>();
  for (const ls of many) {
    const sig = signature(mm, ls.labels);
    const rs = oneSigs.get(sig);
    if (rs === undefined) continue;
    const [l, r] = swapped ? [rs.v, ls.v] : [ls.v, rs.v];
    let [v, keep] = binop(e.op, l, r);
    if (e.returnBool) {
      v = keep ? 1 : 0;
      keep = true;
    }
    // One-to-one, the output labels depend on the "many" side's alone: cached per series.
    let labels = m.card === "one-to-one" ? mm.out.get(ls.labels) : undefined;
    if (labels === undefined) {
      labels = resultLabels(ls.labels, rs.labels, e.op, m, e.returnBool);
      if (m.card === "one-to-one") mm.out.set(ls.labels, labels);
    }
    // Matching errors are raised even for pairs a comparison then filters out, as Prometheus 3 does.
    const inserted = matched.get(sig);
    if (m.card === "one-to-one") {
      if (inserted !== undefined) throw new QueryError("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
      matched.set(sig, new Set());
    } else {
      const key = labelsKey(labels);
      if (inserted === undefined) matched.set(sig, new Set([key]));
      else if (inserted.has(key)) throw new QueryError("multiple matches for labels: grouping labels must ensure unique matches");
      else inserted.add(key);
    }
    if (keep) out.push({ labels, v, tMs });
  }
  return out;
}
