// The promqltest conformance harness, engine-agnostic: runs a script parsed by
// testscript.ts against a ConformanceEngine and judges every eval the way
// Prometheus's promqltest does (test.go: compareResult, checkAnnotations,
// checkExpectedFailure, the @-modifier and range-mode re-runs of instant
// queries). Each eval ends as pass, fail (with the first difference) or skip
// (with the reason: native histograms, unsupported script syntax, ...).

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { seriesKey, type Labels } from "../../core/labels.js";
import { matchesLabels } from "../../core/matchers.js";
import type { Expr, ValueType } from "./ast.js";
import { EXPERIMENTAL_AGGREGATIONS, formatExpr, formatFloat, FUNCTIONS, parsePromQL } from "./parse.js";
import { parseTestScript, type EvalCommand, type ExpectType, type Expectation, type LoadCommand, type SeqValue } from "./testscript.js";
import { almostEqual as goAlmostEqual, compareLabels } from "./functions.js";
import { isStaleNaN, STALE_NAN, type Sample, type Scalar, type Series, type Str } from "./value.js";

export interface LoadSample {
  tMs: number;
  /** STALE_NAN for a stale marker; `stale` says so too, since JS arrays may canonicalise NaN payloads. */
  value: number;
  stale?: boolean;
}

export interface LoadSeries {
  labels: Labels;
  samples: LoadSample[];
}

export interface EngineResult {
  type: ValueType;
  result: unknown;
  warnings: string[];
  infos: string[];
}

/** What the harness needs from a PromQL engine and the store behind it. */
export interface ConformanceEngine {
  load(series: LoadSeries[]): Promise<void>;
  clear(): Promise<void>;
  instant(query: string, tMs: number): Promise<EngineResult>;
  range(query: string, startMs: number, endMs: number, stepMs: number): Promise<{ type: "matrix"; result: unknown; warnings: string[]; infos: string[] }>;
}

export interface RunOptions {
  /** Failures kept per file (all are counted). Default 20. */
  maxFailures?: number;
  /**
   * Re-run instant queries with `@ <time>` on every selector at other times,
   * and as a range query around the time, as promqltest does. Default true.
   */
  stepInvariantChecks?: boolean;
  /** Skip evals that use Prometheus's experimental functions and aggregations. Default false. */
  skipExperimental?: boolean;
}

export interface EvalFailure {
  line: number;
  expr: string;
  reason: string;
}

export interface FileResult {
  file: string;
  evals: number;
  pass: number;
  fail: number;
  skip: number;
  skipReasons: Map<string, number>;
  /** The first maxFailures failures. */
  failures: EvalFailure[];
  /** Script lines that are neither load, clear nor eval, and could not be read. */
  unsupported: { line: number; reason: string }[];
}

export interface CorpusResult {
  files: FileResult[];
  evals: number;
  pass: number;
  fail: number;
  skip: number;
  skipReasons: Map<string, number>;
}

/** promqltest's defaultEpsilon: relative error allowed for sample values. */
export const DEFAULT_EPSILON = 0.000001;

/** Go's util/almost.Equal, and a stale marker equals only a stale marker. */
export function almostEqual(a: number, b: number, epsilon = DEFAULT_EPSILON): boolean {
  if (isStaleNaN(a) || isStaleNaN(b)) return isStaleNaN(a) && isStaleNaN(b);
  return goAlmostEqual(a, b, epsilon);
}

/** Prometheus's labels.Compare on label sets sorted by name (one definition, in functions.ts). */
export { compareLabels };

function sorted(l: Labels): Labels {
  return l.slice().sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
}

const labelKey = (l: Labels): string => JSON.stringify(sorted(l));
const showLabels = (l: Labels): string => seriesKey(sorted(l));
const showValue = (v: number): string => (isStaleNaN(v) ? "stale" : formatFloat(v));

class Mismatch extends Error {}

// ---------------------------------------------------------------------------
// Validating what the engine returned (it is `unknown` to keep engines honest)

function isLabels(x: unknown): x is Labels {
  return Array.isArray(x) && x.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && typeof p[1] === "string");
}

function asVector(r: unknown): Sample[] {
  if (!Array.isArray(r)) throw new Mismatch("engine returned a vector that is not an array");
  for (const s of r as unknown[]) {
    const o = s as Partial<Sample> | null;
    if (o === null || typeof o !== "object" || !isLabels(o.labels) || typeof o.value !== "number")
      throw new Mismatch("engine returned a vector element that is not {labels, value}");
  }
  return r as Sample[];
}

function asMatrix(r: unknown): Series[] {
  if (!Array.isArray(r)) throw new Mismatch("engine returned a matrix that is not an array");
  for (const s of r as unknown[]) {
    const o = s as Partial<Series> | null;
    if (o === null || typeof o !== "object" || !isLabels(o.labels) || !Array.isArray(o.points))
      throw new Mismatch("engine returned a matrix element that is not {labels, points}");
    for (const p of o.points as unknown[]) {
      const q = p as { tMs?: unknown; value?: unknown } | null;
      if (q === null || typeof q !== "object" || typeof q.tMs !== "number" || typeof q.value !== "number")
        throw new Mismatch("engine returned a point that is not {tMs, value}");
    }
  }
  return r as Series[];
}

function asScalar(r: unknown): Scalar {
  const o = r as Partial<Scalar> | null;
  if (o === null || typeof o !== "object" || typeof o.value !== "number") throw new Mismatch("engine returned a scalar that is not {tMs, value}");
  return o as Scalar;
}

function asStr(r: unknown): Str {
  const o = r as Partial<Str> | null;
  if (o === null || typeof o !== "object" || typeof o.value !== "string") throw new Mismatch("engine returned a string that is not {tMs, value}");
  return o as Str;
}

// ---------------------------------------------------------------------------
// Judging one result (promqltest's compareResult)

function seqFloat(v: SeqValue | undefined): number {
  if (v === undefined || v.kind === "omitted") return 0;
  if (v.kind === "stale") return STALE_NAN;
  if (v.kind === "float") return v.value;
  throw new Mismatch("native histogram expectations are not supported");
}

const isOrdered = (cmd: EvalCommand): boolean => cmd.ordered || cmd.expects.some((e) => e.type === "ordered");
const isFail = (cmd: EvalCommand): boolean => cmd.fail || cmd.expects.some((e) => e.type === "fail");

/** The time grid the expected points of a matrix sit on. */
function grid(cmd: EvalCommand): { startMs: number; endMs: number; stepMs: number } {
  if (cmd.range !== null) return cmd.range;
  if (cmd.expectRangeVector !== null) return cmd.expectRangeVector;
  // An instant query without `expect range vector` cannot expect points in time (promqltest's zero end time).
  return { startMs: cmd.atMs, endMs: -Infinity, stepMs: 0 };
}

function compareResult(cmd: EvalCommand, type: ValueType, result: unknown): void {
  const expectScalar = cmd.expectedScalar !== null;
  const expected = new Map(cmd.expectedSeries.map((s) => [labelKey(s.labels), s]));
  switch (type) {
    case "matrix": {
      const val = asMatrix(result);
      if (isOrdered(cmd)) throw new Mismatch("expected ordered result, but query returned a matrix");
      if (expectScalar) throw new Mismatch(`expected scalar result, but got a matrix of ${val.length} series`);
      assertMatrixSorted(val);
      const seen = new Set<string>();
      const g = grid(cmd);
      for (const s of val) {
        const key = labelKey(s.labels);
        const exp = expected.get(key);
        if (exp === undefined) throw new Mismatch(`unexpected metric ${showLabels(s.labels)} in result, has ${describePoints(s)}`);
        seen.add(key);
        const want: { tMs: number; value: number }[] = [];
        exp.values.forEach((e, i) => {
          const tMs = g.startMs + i * g.stepMs;
          if (tMs > g.endMs)
            throw new Mismatch(`expected ${exp.values.length} points for ${showLabels(exp.labels)}, but query time range cannot return this many points`);
          if (e.kind !== "omitted") want.push({ tMs, value: seqFloat(e) });
        });
        if (want.length !== s.points.length)
          throw new Mismatch(`expected ${want.length} float points for ${showLabels(exp.labels)}, but got ${describePoints(s)}`);
        want.forEach((w, i) => {
          const got = s.points[i]!;
          if (w.tMs !== got.tMs)
            throw new Mismatch(`expected float value at index ${i} for ${showLabels(exp.labels)} to have timestamp ${w.tMs}, but it had timestamp ${got.tMs} (result has ${describePoints(s)})`);
          if (!almostEqual(got.value, w.value))
            throw new Mismatch(`expected float value at index ${i} (t=${got.tMs}) for ${showLabels(exp.labels)} to be ${showValue(w.value)}, but got ${showValue(got.value)} (result has ${describePoints(s)})`);
        });
      }
      for (const [key, exp] of expected) if (!seen.has(key)) throw new Mismatch(`expected metric ${showLabels(exp.labels)} not found`);
      return;
    }
    case "vector": {
      const val = asVector(result);
      if (expectScalar) throw new Mismatch(`expected scalar result, but got a vector of ${val.length} samples`);
      const seen = new Set<string>();
      val.forEach((v, pos) => {
        const key = labelKey(v.labels);
        const exp = expected.get(key);
        if (exp === undefined) throw new Mismatch(`unexpected metric ${showLabels(v.labels)} in result, has value ${showValue(v.value)}`);
        if (isOrdered(cmd) && exp.pos !== pos + 1)
          throw new Mismatch(`expected metric ${showLabels(v.labels)} with ${showValue(seqFloat(exp.values[0]))} at position ${exp.pos} but was at ${pos + 1}`);
        const want = seqFloat(exp.values[0]);
        if (!almostEqual(want, v.value)) throw new Mismatch(`expected ${showValue(want)} for ${showLabels(v.labels)} but got ${showValue(v.value)}`);
        seen.add(key);
      });
      for (const [key, exp] of expected)
        if (!seen.has(key)) throw new Mismatch(`expected metric ${showLabels(exp.labels)} with ${showValue(seqFloat(exp.values[0]))} not found`);
      return;
    }
    case "scalar": {
      const val = asScalar(result);
      if (!expectScalar) throw new Mismatch(`expected vector or matrix result, but got scalar ${showValue(val.value)}`);
      const want = seqFloat(cmd.expectedScalar ?? undefined);
      if (!almostEqual(want, val.value)) throw new Mismatch(`expected scalar ${showValue(want)} but got ${showValue(val.value)}`);
      return;
    }
    case "string": {
      const val = asStr(result);
      const want = cmd.expectedString ?? "";
      if (want !== val.value) throw new Mismatch(`expected string ${JSON.stringify(want)} but got ${JSON.stringify(val.value)}`);
      return;
    }
    default:
      throw new Mismatch(`engine returned an unknown result type ${JSON.stringify(type)}`);
  }
}

function describePoints(s: Series): string {
  const shown = s.points.slice(0, 10).map((p) => `${showValue(p.value)} @[${p.tMs}]`);
  return `${s.points.length} float point${s.points.length === 1 ? "" : "s"} [${shown.join(" ")}${s.points.length > 10 ? " ..." : ""}]`;
}

function assertMatrixSorted(m: readonly Series[]): void {
  for (let i = 0; i + 1 < m.length; i++)
    if (compareLabels(sorted(m[i]!.labels), sorted(m[i + 1]!.labels)) > 0)
      throw new Mismatch(`matrix results should always be sorted by labels, but ${showLabels(m[i + 1]!.labels)} sorts before ${showLabels(m[i]!.labels)}`);
}

// ---------------------------------------------------------------------------
// Annotations and expected failures

function matches(e: Expectation, s: string): boolean {
  if (e.match === null) return true;
  return e.match.kind === "msg" ? e.match.text === s : e.match.re.test(s);
}

function describeExpectation(e: Expectation): string {
  return e.match === null ? "anything" : e.match.kind === "msg" ? `message ${JSON.stringify(e.match.text)}` : `pattern ${JSON.stringify(e.match.source)}`;
}

function checkAnnotations(cmd: EvalCommand, warnings: readonly string[], infos: readonly string[]): void {
  if (cmd.legacyWarn && warnings.length === 0) throw new Mismatch("expected warnings but got none");
  if (cmd.legacyInfo && infos.length === 0) throw new Mismatch("expected info annotations but got none");
  const validate = (type: ExpectType, actual: readonly string[]): void => {
    const exp = cmd.expects.filter((e) => e.type === type);
    if (exp.length === 0) return;
    if (actual.length === 0) throw new Mismatch(`expected ${type} annotations but none were found`);
    for (const e of exp)
      if (!actual.some((a) => matches(e, a)))
        throw new Mismatch(`expected ${type} annotation matching ${describeExpectation(e)} but no matching annotation was found, found: ${JSON.stringify(actual)}`);
    for (const a of actual) if (!exp.some((e) => matches(e, a))) throw new Mismatch(`unexpected ${type} annotation ${JSON.stringify(a)}`);
  };
  validate("warn", warnings);
  validate("info", infos);
  if (cmd.expects.some((e) => e.type === "no_warn") && warnings.length > 0) throw new Mismatch(`unexpected warning annotations: ${JSON.stringify(warnings)}`);
  if (cmd.expects.some((e) => e.type === "no_info") && infos.length > 0) throw new Mismatch(`unexpected info annotations: ${JSON.stringify(infos)}`);
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** promqltest's checkExpectedFailure: throws when the error is not the one expected. */
function checkExpectedFailure(cmd: EvalCommand, err: unknown): void {
  const msg = errorMessage(err);
  if (cmd.expectedFailMessage !== null && cmd.expectedFailMessage !== "" && cmd.expectedFailMessage !== msg)
    throw new Mismatch(`expected error ${JSON.stringify(cmd.expectedFailMessage)}, but got: ${msg}`);
  if (cmd.expectedFailRegexp !== null && !cmd.expectedFailRegexp.re.test(msg))
    throw new Mismatch(`expected error matching pattern ${JSON.stringify(cmd.expectedFailRegexp.source)}, but got: ${msg}`);
  const f = cmd.expects.find((e) => e.type === "fail");
  if (f !== undefined && !matches(f, msg)) throw new Mismatch(`expected error matching ${describeExpectation(f)}, but got: ${msg}`);
}

// ---------------------------------------------------------------------------
// The @-modifier re-runs (promqltest's atModifierTestCases)

/** Functions whose result depends on the evaluation time even with step-invariant arguments. */
const AT_MODIFIER_UNSAFE = new Set(["days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour", "minute", "month", "year", "predict_linear", "time", "timestamp", "start", "end", "range", "step"]);

/**
 * The query with `@ <t>` on every selector and subquery outside subqueries
 * that have one, at the times promqltest tries; [] when the query contains a
 * function that is not step invariant (or does not parse here).
 */
export function atModifierVariants(expr: string, tMs: number): { expr: string; tMs: number }[] {
  let e: Expr;
  try {
    e = structuredClone(parsePromQL(expr));
  } catch {
    return [];
  }
  let unsafe = false;
  const visit = (n: Expr): void => {
    switch (n.kind) {
      case "vectorSelector":
        if (n.at === null || n.at.kind !== "time") n.at = { kind: "time", timeMs: tMs };
        return;
      case "matrixSelector":
        visit(n.vector);
        return;
      case "subquery":
        // Selectors inside keep their own times: the subquery's @ governs them.
        if (n.at === null || n.at.kind !== "time") n.at = { kind: "time", timeMs: tMs };
        return;
      case "paren":
      case "unary":
        visit(n.expr);
        return;
      case "binary":
        visit(n.lhs);
        visit(n.rhs);
        return;
      case "aggregate":
        if (n.param !== null) visit(n.param);
        visit(n.expr);
        return;
      case "call":
        if (AT_MODIFIER_UNSAFE.has(n.func)) unsafe = true;
        n.args.forEach(visit);
        return;
      case "number":
      case "string":
        return;
    }
  };
  visit(e);
  if (unsafe) return [];
  const text = formatExpr(e);
  const times = tMs === 0 ? [-1000, 0, 1000] : [-10 * tMs, 0, Math.trunc(tMs / 5), tMs, 10 * tMs];
  return times.map((t) => ({ expr: text, tMs: t }));
}

// ---------------------------------------------------------------------------
// Running

function walk(e: Expr, f: (n: Expr) => void): void {
  f(e);
  switch (e.kind) {
    case "matrixSelector":
      walk(e.vector, f);
      return;
    case "subquery":
    case "paren":
    case "unary":
      walk(e.expr, f);
      return;
    case "binary":
      walk(e.lhs, f);
      walk(e.rhs, f);
      return;
    case "aggregate":
      if (e.param !== null) walk(e.param, f);
      walk(e.expr, f);
      return;
    case "call":
      e.args.forEach((a) => walk(a, f));
      return;
    default:
      return;
  }
}

interface State {
  /** Series loaded but not loadable here (histograms), with why. */
  unsupportedSeries: { labels: Labels; reason: string }[];
  /** A load command this reader could not parse: every eval until the next clear is skipped. */
  taint: string | null;
  /** A load the engine refused: every eval until the next clear fails. */
  loadError: string | null;
}

function skipReason(cmd: EvalCommand, st: State, opts: Required<RunOptions>): string | null {
  if (cmd.skip !== null) return cmd.skip;
  if (st.taint !== null) return st.taint;
  let e: Expr;
  try {
    e = parsePromQL(cmd.expr);
  } catch {
    // The engine gets to report the error; nothing to skip on.
    return null;
  }
  let reason: string | null = null;
  walk(e, (n) => {
    if (reason !== null) return;
    if (opts.skipExperimental && n.kind === "call" && FUNCTIONS.get(n.func)?.experimental === true) reason = `experimental function ${n.func}()`;
    else if (opts.skipExperimental && n.kind === "aggregate" && EXPERIMENTAL_AGGREGATIONS.has(n.op)) reason = `experimental aggregation ${n.op}`;
    else if (n.kind === "vectorSelector") {
      const hit = st.unsupportedSeries.find((s) => matchesLabels(n.matchers, s.labels));
      if (hit !== undefined) reason = hit.reason;
    }
  });
  return reason;
}

function loadSeries(cmd: LoadCommand): LoadSeries[] {
  // A series given twice in one load keeps its last line, as in promqltest.
  const byKey = new Map<string, LoadSeries>();
  for (const s of cmd.series) {
    const samples: LoadSample[] = [];
    s.values.forEach((v, i) => {
      const tMs = i * cmd.intervalMs;
      if (v.kind === "float") samples.push({ tMs, value: v.value });
      else if (v.kind === "stale") samples.push({ tMs, value: STALE_NAN, stale: true });
    });
    byKey.set(labelKey(s.labels), { labels: s.labels, samples });
  }
  return [...byKey.values()];
}

/**
 * range(), step(), start(), end() (and `@ start()`) answer differently in an
 * instant query and in the range query promqltest compares it with, so that
 * comparison is skipped for them (promqltest skips it for range()).
 */
const QUERY_PARAMETER_FUNCTIONS = /\b(?:range|step|start|end)\s*\(\s*\)/;

async function runInstant(cmd: EvalCommand, engine: ConformanceEngine, q: { expr: string; tMs: number }, rangeCheck: boolean): Promise<void> {
  const where = q.expr === cmd.expr && q.tMs === evalTime(cmd) ? "" : ` (as ${JSON.stringify(q.expr)} at ${q.tMs})`;
  let res: EngineResult;
  try {
    res = await engine.instant(q.expr, q.tMs);
  } catch (e) {
    if (isFail(cmd)) {
      checkExpectedFailure(cmd, e);
      return;
    }
    throw new Mismatch(`error evaluating query${where}: ${errorMessage(e)}`);
  }
  if (isFail(cmd)) throw new Mismatch(`expected error evaluating query${where} but got none`);
  try {
    checkAnnotations(cmd, res.warnings, res.infos);
    compareResult(cmd, res.type, res.result);
  } catch (e) {
    if (e instanceof Mismatch && where !== "") throw new Mismatch(`${e.message}${where}`);
    throw e;
  }
  if (!rangeCheck || cmd.expectRangeVector !== null || cmd.expectedString !== null || QUERY_PARAMETER_FUNCTIONS.test(q.expr)) return;
  // The same query in range mode must give the same answer at the middle step.
  let rr: { type: string; result: unknown };
  try {
    rr = await engine.range(q.expr, q.tMs - 60_000, q.tMs + 60_000, 60_000);
  } catch (e) {
    throw new Mismatch(`error evaluating query${where} in range mode: ${errorMessage(e)}`);
  }
  if (isOrdered(cmd)) return;
  try {
    if (rr.type !== "matrix") throw new Mismatch(`range query returned a ${rr.type}, not a matrix`);
    const mat = asMatrix(rr.result);
    assertMatrixSorted(mat);
    const vec: Sample[] = [];
    for (const s of mat) {
      const p = s.points.find((x) => x.tMs === q.tMs);
      if (p !== undefined) vec.push({ labels: s.labels, value: p.value });
    }
    if (res.type === "scalar") {
      if (vec.length === 0) throw new Mismatch("range query returned no point at the instant's time for a scalar query");
      compareResult(cmd, "scalar", { tMs: q.tMs, value: vec[0]!.value });
    } else compareResult(cmd, "vector", vec);
  } catch (e) {
    if (e instanceof Mismatch) throw new Mismatch(`range mode${where}: ${e.message}`);
    throw e;
  }
}

function evalTime(cmd: EvalCommand): number {
  // `expect range vector` moves the evaluation to its end time, as in promqltest.
  return cmd.expectRangeVector !== null ? cmd.expectRangeVector.endMs : cmd.atMs;
}

/** Runs one eval; returns null on success, else why it failed. */
async function runEval(cmd: EvalCommand, engine: ConformanceEngine, opts: Required<RunOptions>): Promise<string | null> {
  try {
    if (cmd.range !== null) {
      const { startMs, endMs, stepMs } = cmd.range;
      let res: { type: string; result: unknown; warnings: string[]; infos: string[] };
      try {
        res = await engine.range(cmd.expr, startMs, endMs, stepMs);
      } catch (e) {
        if (isFail(cmd)) {
          checkExpectedFailure(cmd, e);
          return null;
        }
        throw new Mismatch(`error evaluating query: ${errorMessage(e)}`);
      }
      if (isFail(cmd)) throw new Mismatch("expected error evaluating query but got none");
      checkAnnotations(cmd, res.warnings, res.infos);
      if (res.type !== "matrix") throw new Mismatch(`range query returned a ${res.type}, not a matrix`);
      compareResult(cmd, "matrix", res.result);
      return null;
    }
    const t = evalTime(cmd);
    const queries = [{ expr: cmd.expr, tMs: t }, ...(opts.stepInvariantChecks ? atModifierVariants(cmd.expr, t) : [])];
    for (const q of queries) await runInstant(cmd, engine, q, opts.stepInvariantChecks);
    return null;
  } catch (e) {
    if (e instanceof Mismatch) return e.message;
    // A bug in the harness or an engine that throws from a strange place: still a failure, not a crash.
    return `harness error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  }
}

/** Runs one promqltest script against an engine. Never throws for engine errors. */
export async function runScript(text: string, file: string, engine: ConformanceEngine, options: RunOptions = {}): Promise<FileResult> {
  const opts: Required<RunOptions> = { maxFailures: 20, stepInvariantChecks: true, skipExperimental: false, ...options };
  const out: FileResult = { file, evals: 0, pass: 0, fail: 0, skip: 0, skipReasons: new Map(), failures: [], unsupported: [] };
  const st: State = { unsupportedSeries: [], taint: null, loadError: null };
  const skip = (reason: string): void => {
    out.skip++;
    out.skipReasons.set(reason, (out.skipReasons.get(reason) ?? 0) + 1);
  };
  const fail = (line: number, expr: string, reason: string): void => {
    out.fail++;
    if (out.failures.length < opts.maxFailures) out.failures.push({ line, expr, reason });
  };
  const reset = async (): Promise<void> => {
    st.unsupportedSeries = [];
    st.taint = null;
    st.loadError = null;
    try {
      await engine.clear();
    } catch (e) {
      st.loadError = `clear failed: ${errorMessage(e)}`;
    }
  };
  await reset();
  for (const cmd of parseTestScript(text)) {
    switch (cmd.kind) {
      case "clear":
        await reset();
        break;
      case "load":
        st.unsupportedSeries.push(...cmd.unsupported);
        try {
          await engine.load(loadSeries(cmd));
        } catch (e) {
          st.loadError ??= `load at line ${cmd.line} failed: ${errorMessage(e)}`;
        }
        break;
      case "unsupported":
        if (cmd.was === "load") st.taint = `unsupported load syntax: ${cmd.reason}`;
        else if (cmd.was === "eval") {
          out.evals++;
          skip(`unsupported eval syntax: ${cmd.reason}`);
        } else out.unsupported.push({ line: cmd.line, reason: cmd.reason });
        break;
      case "eval": {
        out.evals++;
        const why = skipReason(cmd, st, opts);
        if (why !== null) skip(why);
        else if (st.loadError !== null) fail(cmd.line, cmd.expr, st.loadError);
        else {
          const r = await runEval(cmd, engine, opts);
          if (r === null) out.pass++;
          else fail(cmd.line, cmd.expr, r);
        }
        break;
      }
    }
  }
  if (out.pass + out.fail + out.skip !== out.evals) throw new Error(`conformance invariant violated: ${file} counted ${out.pass}+${out.fail}+${out.skip} of ${out.evals} evals`);
  return out;
}

/** Runs every *.test file of a directory (sorted), each against a fresh engine from the factory. */
export async function runCorpus(
  dir: string,
  engineFactory: (file: string) => ConformanceEngine | Promise<ConformanceEngine>,
  options: RunOptions = {},
): Promise<CorpusResult> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".test")).sort();
  const out: CorpusResult = { files: [], evals: 0, pass: 0, fail: 0, skip: 0, skipReasons: new Map() };
  for (const name of names) {
    const text = await readFile(join(dir, name), "utf8");
    const r = await runScript(text, name, await engineFactory(name), options);
    out.files.push(r);
    out.evals += r.evals;
    out.pass += r.pass;
    out.fail += r.fail;
    out.skip += r.skip;
    for (const [k, v] of r.skipReasons) out.skipReasons.set(k, (out.skipReasons.get(k) ?? 0) + v);
  }
  return out;
}
