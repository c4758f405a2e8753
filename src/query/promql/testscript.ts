// The promqltest script language (Prometheus promql/promqltest, described in
// the corpus's SCRIPT-LANGUAGE.md) parsed into commands: `load`, `clear`,
// `eval instant|range` with their expectations. Follows promqltest's own
// line-oriented reading (test.go): lines are trimmed, comment lines count as
// blank, and a blank line ends a block.
//
// Never throws on script text: whatever this reader does not understand
// becomes an "unsupported" command with the reason, so a harness can count it
// instead of dying on it.

import type { Labels } from "../../core/labels.js";
import { METRIC_NAME } from "../../core/labels.js";
import { parseDurationMs, parseNumberToken, re2ToJs, unquoteLenient } from "./parse.js";

/** One element of a series description after expansion (`1+2x3`, `_x2`, `stale`, `{{...}}`). */
export type SeqValue = { kind: "float"; value: number } | { kind: "stale" } | { kind: "omitted" } | { kind: "histogram"; text: string };

export interface SeriesDesc {
  labels: Labels;
  values: SeqValue[];
}

export interface LoadCommand {
  kind: "load";
  line: number;
  intervalMs: number;
  /** `load_with_nhcb`: classic histograms are also loaded as native histograms with custom buckets. */
  withNhcb: boolean;
  /** Series made of float samples and stale markers only; loadable into any float store. */
  series: SeriesDesc[];
  /**
   * Series (or parts) this reader cannot load, with the reason: native
   * histogram samples, and the histograms `load_with_nhcb` derives. An eval
   * that selects any of them is skipped with that reason.
   */
  unsupported: { labels: Labels; reason: string }[];
}

export interface ClearCommand {
  kind: "clear";
  line: number;
}

export type ExpectType = "fail" | "warn" | "info" | "no_warn" | "no_info" | "ordered";

/** An `expect <type> [msg|regex]: <text>` line. matcher null: any message. */
export interface Expectation {
  type: ExpectType;
  match: { kind: "msg"; text: string } | { kind: "regex"; re: RegExp; source: string } | null;
}

export interface ExpectedSeries {
  labels: Labels;
  values: SeqValue[];
  /** 1-based position among the expectation lines, for `expect ordered`. */
  pos: number;
  line: number;
}

export interface EvalCommand {
  kind: "eval";
  line: number;
  expr: string;
  /** null for an instant query. */
  range: { startMs: number; endMs: number; stepMs: number } | null;
  /** Instant queries: the evaluation time. Range queries: the start. */
  atMs: number;
  /** eval_fail, expect fail, or the legacy expected_fail_* lines. */
  fail: boolean;
  /** Legacy forms: eval_warn / eval_info (at least one annotation), eval_ordered. */
  legacyWarn: boolean;
  legacyInfo: boolean;
  ordered: boolean;
  expectedFailMessage: string | null;
  expectedFailRegexp: { re: RegExp; source: string } | null;
  expects: Expectation[];
  /** `expect range vector from .. to .. step ..`: the instant query returns a matrix with these timestamps. */
  expectRangeVector: { startMs: number; endMs: number; stepMs: number } | null;
  /** `expect string "..."`. */
  expectedString: string | null;
  /** A bare number line: the query returns a scalar. */
  expectedScalar: SeqValue | null;
  expectedSeries: ExpectedSeries[];
  /** Set when the expectations use syntax the harness cannot check (native histograms). */
  skip: string | null;
}

export interface UnsupportedCommand {
  kind: "unsupported";
  line: number;
  /** The command's first line. */
  text: string;
  reason: string;
  /** What the lines were meant to be; an unsupported load taints the evals that follow. */
  was: "load" | "eval" | "other";
}

export type Command = LoadCommand | ClearCommand | EvalCommand | UnsupportedCommand;

/** Largest expansion accepted for one `axN` item: a typo must not allocate gigabytes. */
export const SERIES_EXPANSION_MAX = 1_000_000;

class ScriptError extends Error {}

// ---------------------------------------------------------------------------
// Numbers, durations, labels

/** Go's strconv.ParseInt(s, 0, 64) then ParseFloat(s): what promqltest accepts as a bare scalar line. */
export function goParseNumber(s: string): number | null {
  const m = /^([+-]?)([\s\S]*)$/.exec(s);
  if (m === null || m[2] === "") return null;
  const body = m[2]!;
  // parseNumberToken also reads PromQL durations ("5m"), which Go's ParseFloat does not.
  if (/^[0-9]/.test(body) && /[a-zA-Z]/.test(body) && !/^0[xXoObB]/.test(body) && !/^[0-9_.]+[eE][+-]?[0-9]+$/.test(body)) return null;
  const v = parseNumberToken(body);
  if (v === null) return null;
  return m[1] === "-" ? -v : v;
}

function duration(s: string, what: string): number {
  const ms = parseDurationMs(s.trim());
  if (ms === null) throw new ScriptError(`invalid ${what} ${JSON.stringify(s)}: not a duration`);
  return ms;
}

const IDENT = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const QUOTED = /^(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)/;

/** `metric{a="b",...}` at the start of a series description; returns the labels and the rest of the line. */
function parseLabels(text: string): { labels: Labels; rest: string } {
  let s = text;
  const pairs: [string, string][] = [];
  const id = IDENT.exec(s);
  if (id !== null) {
    pairs.push([METRIC_NAME, id[0]]);
    s = s.slice(id[0].length);
  }
  if (s.startsWith("{")) {
    s = s.slice(1).trimStart();
    while (!s.startsWith("}")) {
      let name: string;
      const q = QUOTED.exec(s);
      const l = LABEL.exec(s);
      if (q !== null) {
        name = unquoteLenient(q[0]);
        s = s.slice(q[0].length).trimStart();
        if (!s.startsWith("=")) {
          // A lone quoted string is the metric name: {"my.metric"}.
          pairs.push([METRIC_NAME, name]);
          name = "";
        }
      } else if (l !== null) {
        name = l[0];
        s = s.slice(l[0].length).trimStart();
      } else {
        throw new ScriptError(`expected a label name at ${JSON.stringify(s.slice(0, 20))}`);
      }
      if (name !== "") {
        if (!s.startsWith("=") || s.startsWith("=~")) throw new ScriptError(`expected "=" after label ${name}`);
        s = s.slice(1).trimStart();
        const v = QUOTED.exec(s);
        if (v === null) throw new ScriptError(`expected a quoted value for label ${name}`);
        pairs.push([name, unquoteLenient(v[0])]);
        s = s.slice(v[0].length).trimStart();
      }
      if (s.startsWith(",")) s = s.slice(1).trimStart();
      else if (!s.startsWith("}")) throw new ScriptError(`expected "," or "}" at ${JSON.stringify(s.slice(0, 20))}`);
    }
    s = s.slice(1);
  } else if (id === null) {
    throw new ScriptError(`expected a series such as metric{label="value"}, got ${JSON.stringify(text.slice(0, 40))}`);
  }
  return { labels: canonical(pairs), rest: s };
}

/** Sorted by name, empty values dropped (as Prometheus's labels), duplicates refused. */
export function canonical(pairs: readonly (readonly [string, string])[]): Labels {
  const out = pairs.filter(([, v]) => v !== "").slice();
  out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (let i = 1; i < out.length; i++) if (out[i - 1]![0] === out[i]![0]) throw new ScriptError(`duplicate label name "${out[i]![0]}"`);
  return out;
}

// No hex here: in a series description "0x59" is 0 repeated, not 89.
const NUM = String.raw`(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|[iI][nN][fF]|[nN][aA][nN])`;
const ITEM = new RegExp(`^([+-]?${NUM})(?:([+-]${NUM})?x([0-9]+))?$`);

function expandCount(n: string): number {
  const v = Number(n);
  if (!Number.isSafeInteger(v) || v > SERIES_EXPANSION_MAX) throw new ScriptError(`expansion x${n} exceeds the limit of ${SERIES_EXPANSION_MAX}`);
  return v;
}

function num(s: string): number {
  const v = goParseNumber(s);
  if (v === null) throw new ScriptError(`bad number ${JSON.stringify(s)}`);
  return v;
}

/** The values part of a series description, expanded like Prometheus's ParseSeriesDesc. */
export function parseSeriesValues(text: string): SeqValue[] {
  const out: SeqValue[] = [];
  const push = (v: SeqValue, times: number): void => {
    if (out.length + times > SERIES_EXPANSION_MAX) throw new ScriptError(`series expands to more than ${SERIES_EXPANSION_MAX} values`);
    for (let k = 0; k < times; k++) out.push(v);
  };
  let s = text.trim();
  while (s !== "") {
    if (s.startsWith("{{")) {
      // {{a}}, {{a}}xN, {{a}}+{{b}}xN, {{a}}-{{b}}xN.
      let end = s.indexOf("}}");
      if (end < 0) throw new ScriptError("unterminated native histogram {{...}}");
      if (/^[+-]\{\{/.test(s.slice(end + 2))) {
        end = s.indexOf("}}", end + 4);
        if (end < 0) throw new ScriptError("unterminated native histogram {{...}}");
      }
      let j = end + 2;
      while (j < s.length && !/\s/.test(s[j]!)) j++;
      const item = s.slice(0, j);
      const rep = /x([0-9]+)$/.exec(item.slice(end + 2));
      push({ kind: "histogram", text: item }, rep !== null ? expandCount(rep[1]!) + 1 : 1);
      s = s.slice(j).trimStart();
      continue;
    }
    const ws = /\s/.exec(s);
    const item = ws === null ? s : s.slice(0, ws.index);
    s = ws === null ? "" : s.slice(ws.index).trimStart();
    if (item === "_") push({ kind: "omitted" }, 1);
    else if (/^_x[0-9]+$/.test(item)) push({ kind: "omitted" }, expandCount(item.slice(2)));
    else if (item === "stale") push({ kind: "stale" }, 1);
    else {
      const m = ITEM.exec(item);
      if (m === null) throw new ScriptError(`bad series value ${JSON.stringify(item)}`);
      const a = num(m[1]!);
      if (m[3] === undefined) push({ kind: "float", value: a }, 1);
      else {
        const n = expandCount(m[3]);
        if (out.length + n + 1 > SERIES_EXPANSION_MAX) throw new ScriptError(`series expands to more than ${SERIES_EXPANSION_MAX} values`);
        const d = m[2] === undefined ? 0 : num(m[2]);
        // Same arithmetic as Go (a + d*i, not repeated addition), so expected values match bit for bit.
        for (let i = 0; i <= n; i++) out.push({ kind: "float", value: m[2] === undefined ? a : a + d * i });
      }
    }
  }
  return out;
}

export function parseSeriesDesc(line: string): SeriesDesc {
  const { labels, rest } = parseLabels(line.trim());
  if (rest !== "" && !/^\s/.test(rest)) throw new ScriptError(`expected a space after the series labels, got ${JSON.stringify(rest.slice(0, 20))}`);
  return { labels, values: parseSeriesValues(rest) };
}

// ---------------------------------------------------------------------------
// Commands

const PAT_LOAD = /^load(?:_(with_nhcb))?\s+(.+?)$/;
const PAT_EVAL_INSTANT = /^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$/;
const PAT_EVAL_RANGE = /^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$/;
const PAT_EXPECT = /^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$/;
const PAT_EXPECT_RANGE = /^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$/;

/** A Go (RE2) pattern as a JS RegExp; promqltest matches it unanchored, as RegExp.test does. */
function goRegexp(source: string): { re: RegExp; source: string } {
  for (const candidate of [source, re2ToJs(source)]) {
    if (candidate === null) continue;
    try {
      return { re: new RegExp(candidate, "u"), source };
    } catch {
      // Try the translated form, then give up below.
    }
  }
  throw new ScriptError(`regular expression ${JSON.stringify(source)} is not supported`);
}

function histogramSkip(values: readonly SeqValue[]): boolean {
  return values.some((v) => v.kind === "histogram");
}

/** The series `load_with_nhcb` derives from classic histogram series: name without _bucket/_count/_sum, no le. */
function nhcbSeries(series: readonly SeriesDesc[]): Labels[] {
  const seen = new Map<string, Labels>();
  for (const s of series) {
    const name = s.labels.find(([n]) => n === METRIC_NAME)?.[1] ?? "";
    const m = /^(.*)_(bucket|count|sum)$/.exec(name);
    if (m === null) continue;
    const labels = canonical(s.labels.filter(([n]) => n !== "le" && n !== METRIC_NAME).concat([[METRIC_NAME, m[1]!]]));
    seen.set(JSON.stringify(labels), labels);
  }
  return [...seen.values()];
}

function parseLoad(lines: readonly string[], i: number): { next: number; cmd: LoadCommand } {
  const m = PAT_LOAD.exec(lines[i]!);
  if (m === null) throw new ScriptError("invalid load command. (load[_with_nhcb] <step:duration>)");
  const cmd: LoadCommand = { kind: "load", line: i + 1, intervalMs: duration(m[2]!, "step"), withNhcb: m[1] === "with_nhcb", series: [], unsupported: [] };
  let j = i + 1;
  for (; j < lines.length && lines[j] !== ""; j++) {
    const d = parseSeriesDesc(lines[j]!);
    if (histogramSkip(d.values)) {
      cmd.unsupported.push({ labels: d.labels, reason: "native histograms ({{...}} samples)" });
      // The float samples of the same series still load; evals that select it are skipped anyway.
      d.values = d.values.map((v) => (v.kind === "histogram" ? { kind: "omitted" } : v));
    }
    cmd.series.push(d);
  }
  if (cmd.withNhcb)
    for (const labels of nhcbSeries(cmd.series)) cmd.unsupported.push({ labels, reason: "native histograms with custom buckets (load_with_nhcb)" });
  return { next: j - 1, cmd };
}

function parseExpect(line: string): Expectation {
  const m = PAT_EXPECT.exec(line.trim());
  if (m === null) throw new ScriptError("invalid expect statement, must match `expect <type> <match_type>: <string>` format");
  const type = m[1] as ExpectType;
  if (m[2] === undefined) return { type, match: null };
  const text = m[3]!.trim();
  if (m[2] === "msg") return { type, match: { kind: "msg", text } };
  return { type, match: { kind: "regex", ...goRegexp(text) } };
}

function validateExpects(cmd: EvalCommand): void {
  const has = (t: ExpectType): boolean => cmd.expects.some((e) => e.type === t);
  if (has("info") && has("no_info")) throw new ScriptError("invalid expect lines, info and no_info cannot be used together");
  if (has("warn") && has("no_warn")) throw new ScriptError("invalid expect lines, warn and no_warn cannot be used together");
  if (cmd.expects.filter((e) => e.type === "fail").length > 1) throw new ScriptError("invalid expect lines, multiple expect fail lines are not allowed");
}

function parseEval(lines: readonly string[], i: number): { next: number; cmd: EvalCommand } {
  const head = lines[i]!;
  const inst = PAT_EVAL_INSTANT.exec(head);
  const rng = inst === null ? PAT_EVAL_RANGE.exec(head) : null;
  if (inst === null && rng === null)
    throw new ScriptError("invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] instant [at <offset:duration>] <query>' or 'eval[_fail|_warn] range from <from> to <to> step <step> <query>'");
  const mod = inst !== null ? inst[1] : rng![1];
  const cmd: EvalCommand = {
    kind: "eval",
    line: i + 1,
    expr: inst !== null ? inst[3]! : rng![5]!,
    range: null,
    atMs: 0,
    fail: mod === "fail",
    legacyWarn: mod === "warn",
    legacyInfo: mod === "info",
    ordered: mod === "ordered",
    expectedFailMessage: null,
    expectedFailRegexp: null,
    expects: [],
    expectRangeVector: null,
    expectedString: null,
    expectedScalar: null,
    expectedSeries: [],
    skip: null,
  };
  if (inst !== null) {
    cmd.atMs = duration(inst[2] ?? "", "timestamp");
  } else {
    const startMs = duration(rng![2]!, "start timestamp");
    const endMs = duration(rng![3]!, "end timestamp");
    if (endMs < startMs) throw new ScriptError(`invalid test definition, end timestamp (${rng![3]}) is before start timestamp (${rng![2]})`);
    cmd.range = { startMs, endMs, stepMs: duration(rng![4]!, "step") };
    cmd.atMs = startMs;
  }
  let j = i + 1;
  let pos = 1;
  for (; j < lines.length; j++, pos++) {
    const def = lines[j]!;
    if (def === "") break;
    // promqltest stops reading the block after these lines; what follows is read as new commands.
    if (cmd.fail && def.startsWith("expected_fail_message")) {
      cmd.expectedFailMessage = def.slice("expected_fail_message".length).trim();
      return { next: j, cmd };
    }
    if (cmd.fail && def.startsWith("expected_fail_regexp")) {
      cmd.expectedFailRegexp = goRegexp(def.slice("expected_fail_regexp".length).trim());
      return { next: j, cmd };
    }
    if (def.startsWith("expect range vector")) {
      const m = PAT_EXPECT_RANGE.exec(def);
      if (m === null) throw new ScriptError(`invalid range vector definition ${JSON.stringify(def)}`);
      const startMs = duration(m[1]!, "start timestamp");
      const endMs = duration(m[2]!, "end timestamp");
      if (endMs < startMs) throw new ScriptError(`invalid test definition, end timestamp (${m[2]}) is before start timestamp (${m[1]})`);
      cmd.expectRangeVector = { startMs, endMs, stepMs: duration(m[3]!, "step") };
      continue;
    }
    if (def.startsWith("expect string")) {
      const lit = def === "expect string" ? "" : def.slice("expect string ".length);
      if (!/^(?:"[\s\S]*"|`[\s\S]*`)$/.test(lit)) throw new ScriptError("expected string literal not valid - a quoted string literal is required");
      try {
        cmd.expectedString = unquoteLenient(lit);
      } catch {
        throw new ScriptError("expected string literal not valid - check that the string is correctly quoted");
      }
      continue;
    }
    if (def.split(" ")[0] === "expect") {
      cmd.expects.push(parseExpect(def));
      validateExpects(cmd);
      pos--;
      continue;
    }
    const n = goParseNumber(def);
    if (n !== null) {
      cmd.expectedScalar = { kind: "float", value: n };
      return { next: j, cmd };
    }
    const d = parseSeriesDesc(def);
    if (d.values.length > 1 && cmd.range === null && cmd.expectRangeVector === null)
      throw new ScriptError(
        "expecting multiple values in instant evaluation not allowed. consider using 'expect range vector' directive to enable a range vector result for an instant query",
      );
    if (histogramSkip(d.values)) cmd.skip = "native histograms ({{...}} in expected results)";
    // A repeated label set replaces the earlier line, as in promqltest (a map keyed by the labels' hash).
    const key = JSON.stringify(d.labels);
    const prev = cmd.expectedSeries.findIndex((s) => JSON.stringify(s.labels) === key);
    if (prev >= 0) cmd.expectedSeries.splice(prev, 1);
    cmd.expectedSeries.push({ labels: d.labels, values: d.values, pos, line: j + 1 });
  }
  return { next: j - 1, cmd };
}

/** promqltest's getLines: trimmed, comment lines blank. */
function scriptLines(text: string): string[] {
  return text.split("\n").map((l) => {
    const t = l.trim();
    return t.startsWith("#") ? "" : t;
  });
}

/** Parses a whole script. Never throws on bad script text: see UnsupportedCommand. */
export function parseTestScript(text: string): Command[] {
  const lines = scriptLines(text);
  const cmds: Command[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === "") continue;
    const word = l.split(/[\t ]+/, 1)[0]!.toLowerCase();
    const was: UnsupportedCommand["was"] = word.startsWith("load") ? "load" : word.startsWith("eval") ? "eval" : "other";
    try {
      if (word === "clear") cmds.push({ kind: "clear", line: i + 1 });
      else if (was === "load") {
        const r = parseLoad(lines, i);
        cmds.push(r.cmd);
        i = r.next;
      } else if (was === "eval") {
        const r = parseEval(lines, i);
        cmds.push(r.cmd);
        i = r.next;
      } else throw new ScriptError(`invalid command ${JSON.stringify(l)}`);
    } catch (e) {
      // Anything but ScriptError is a surprise (a string or regex this reader cannot decode): keep its name visible.
      const reason = e instanceof ScriptError ? e.message : e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      cmds.push({ kind: "unsupported", line: i + 1, text: l, reason, was });
      // Skip the rest of the block: its lines belong to the command that could not be read.
      while (i + 1 < lines.length && lines[i + 1] !== "") i++;
    }
  }
  return cmds;
}
