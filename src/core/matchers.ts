// Label matchers (Prometheus semantics): a missing label matches as "".
// Regexes are fully anchored, as in Prometheus.

import { BadInputError, type InputLocation } from "./errors.js";
import type { Labels } from "./labels.js";

export type MatchOp = "=" | "!=" | "=~" | "!~";

export interface Matcher {
  readonly name: string;
  readonly op: MatchOp;
  readonly value: string;
  readonly re: RegExp | null; // for =~ and !~
}

export function makeMatcher(name: string, op: MatchOp, value: string, loc: InputLocation = {}): Matcher {
  let re: RegExp | null = null;
  if (op === "=~" || op === "!~") {
    try {
      // "s" flag: Prometheus's "." matches newlines too.
      re = new RegExp(`^(?:${value})$`, "su");
    } catch (e) {
      throw new BadInputError(`invalid regular expression "${value}": ${(e as Error).message}`, loc);
    }
  }
  return { name, op, value, re };
}

export function matchValue(m: Matcher, v: string): boolean {
  switch (m.op) {
    case "=":
      return v === m.value;
    case "!=":
      return v !== m.value;
    case "=~":
      return m.re!.test(v);
    case "!~":
      return !m.re!.test(v);
  }
}

export function matchesLabels(matchers: readonly Matcher[], labels: Labels): boolean {
  for (const m of matchers) {
    let v = "";
    for (const [n, lv] of labels)
      if (n === m.name) {
        v = lv;
        break;
      }
    if (!matchValue(m, v)) return false;
  }
  return true;
}

/** Prometheus rejects selectors whose every matcher matches the empty string (they would select everything). */
export function selectsSomething(matchers: readonly Matcher[]): boolean {
  return matchers.some((m) => !matchValue(m, ""));
}
