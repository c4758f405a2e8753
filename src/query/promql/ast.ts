// The PromQL syntax tree the engine evaluates: what parse.ts builds from the
// lezer tree (@prometheus-io/lezer-promql) and eval.ts walks. Plain data, no
// behaviour, so the parser and the evaluator meet only here.
//
// Times are in milliseconds since the Unix epoch (PromQL's unit); durations in
// milliseconds. Every node carries the source range it was parsed from, for
// error messages ("column 12: ...").

import type { Matcher } from "../../core/matchers.js";

export interface PosRange {
  /** Offsets into the query text, [start, end). */
  start: number;
  end: number;
}

export type ValueType = "scalar" | "vector" | "matrix" | "string";

export type Expr =
  | NumberLiteral
  | StringLiteral
  | VectorSelector
  | MatrixSelector
  | SubqueryExpr
  | ParenExpr
  | UnaryExpr
  | BinaryExpr
  | AggregateExpr
  | Call;

export interface NumberLiteral {
  kind: "number";
  value: number;
  pos: PosRange;
}

export interface StringLiteral {
  kind: "string";
  value: string;
  pos: PosRange;
}

/** `@ <time>`, `@ start()`, `@ end()`. */
export type AtModifier = { kind: "time"; timeMs: number } | { kind: "start" } | { kind: "end" } | null;

export interface VectorSelector {
  kind: "vectorSelector";
  /** The metric name, when given outside the braces (or as {__name__="..."}); "" otherwise. */
  name: string;
  /** Every matcher, the name as a __name__ matcher included. */
  matchers: Matcher[];
  /** `offset`, in ms (negative offsets allowed). */
  offsetMs: number;
  at: AtModifier;
  pos: PosRange;
}

export interface MatrixSelector {
  kind: "matrixSelector";
  vector: VectorSelector;
  rangeMs: number;
  pos: PosRange;
}

export interface SubqueryExpr {
  kind: "subquery";
  expr: Expr;
  rangeMs: number;
  /** 0 when not given: the engine uses the default evaluation interval. */
  stepMs: number;
  offsetMs: number;
  at: AtModifier;
  pos: PosRange;
}

export interface ParenExpr {
  kind: "paren";
  expr: Expr;
  pos: PosRange;
}

export interface UnaryExpr {
  kind: "unary";
  op: "-" | "+";
  expr: Expr;
  pos: PosRange;
}

export type BinaryOp =
  | "+"
  | "-"
  | "*"
  | "/"
  | "%"
  | "^"
  | "atan2"
  | "=="
  | "!="
  | ">"
  | "<"
  | ">="
  | "<="
  | "and"
  | "or"
  | "unless";

export interface VectorMatching {
  /** "one-to-one", or group_left ("many-to-one") / group_right ("one-to-many"). */
  card: "one-to-one" | "many-to-one" | "one-to-many" | "many-to-many";
  /** on(...) when true, ignoring(...) when false. */
  on: boolean;
  labels: string[];
  /** group_left(...)/group_right(...) extra labels to copy from the "one" side. */
  include: string[];
}

export interface BinaryExpr {
  kind: "binary";
  op: BinaryOp;
  lhs: Expr;
  rhs: Expr;
  /** `bool` modifier on a comparison. */
  returnBool: boolean;
  /** null when neither on/ignoring nor group_* was given (and for scalar operands). */
  matching: VectorMatching | null;
  pos: PosRange;
}

export type AggregateOp =
  | "sum"
  | "avg"
  | "min"
  | "max"
  | "count"
  | "group"
  | "stddev"
  | "stdvar"
  | "topk"
  | "bottomk"
  | "limitk"
  | "limit_ratio"
  | "quantile"
  | "count_values";

export interface AggregateExpr {
  kind: "aggregate";
  op: AggregateOp;
  expr: Expr;
  /** The parameter of topk, bottomk, limitk, limit_ratio, quantile, count_values; null otherwise. */
  param: Expr | null;
  /** by(...) when false, without(...) when true. */
  without: boolean;
  grouping: string[];
  pos: PosRange;
}

export interface Call {
  kind: "call";
  /** The function's name, e.g. "rate", "histogram_quantile", "label_replace". */
  func: string;
  args: Expr[];
  pos: PosRange;
}

const COMPARISON_OPS: ReadonlySet<BinaryOp> = new Set<BinaryOp>(["==", "!=", ">", "<", ">=", "<="]);
const SET_OPS: ReadonlySet<BinaryOp> = new Set<BinaryOp>(["and", "or", "unless"]);

export function isComparisonOp(op: BinaryOp): boolean {
  return COMPARISON_OPS.has(op);
}

export function isSetOp(op: BinaryOp): boolean {
  return SET_OPS.has(op);
}

/** The expression inside any parentheses. */
export function unwrapParens(e: Expr): Expr {
  while (e.kind === "paren") e = e.expr;
  return e;
}
