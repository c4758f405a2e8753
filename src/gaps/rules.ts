// Gap rules: which series get which expected interval and fill policy
// (docs/gaps.md, "Rules"). Pure: the caller reads the JSON and passes the
// selector parser (src/query is a higher layer; gaps takes Matcher[]).
//
//   {"rules":[{"match":"{job=\"sensors\"}","interval":"10s","policy":"linear","maxFill":"24h"}]}
//
// The first rule whose selector matches a series applies; a series no rule
// matches is recorded only (policy none) with a learned interval.

import { BadInputError, TooLargeError } from "../core/errors.js";
import type { Labels } from "../core/labels.js";
import { matchesLabels, type Matcher } from "../core/matchers.js";
import { INT64_MAX } from "../core/time.js";

export type FillPolicy = "none" | "previous" | "linear";
export const FILL_POLICIES: readonly FillPolicy[] = ["none", "previous", "linear"];

/** Gaps longer than this are recorded, not filled, unless a rule says otherwise. */
export const MAX_FILL_NS_DEFAULT = 24n * 3600n * 1_000_000_000n;
/** Rules in one document. */
export const GAP_RULES_MAX = 1000;

export interface GapRule {
  /** One selector's matchers (all must match). */
  readonly match: readonly Matcher[];
  /** The expected interval; absent → learned from the series' history (interval.ts). */
  readonly intervalNs?: bigint;
  readonly policy: FillPolicy;
  /** Gaps longer than this (endNs - startNs) are recorded, not filled. Absent → 24 h. parseGapRules always sets it. */
  readonly maxFillNs?: bigint;
}

const RULE_FIELDS = new Set(["match", "interval", "policy", "maxFill"]);

const NS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60n * 1_000_000_000n,
  h: 3600n * 1_000_000_000n,
  d: 86_400n * 1_000_000_000n,
  w: 7n * 86_400n * 1_000_000_000n,
};

/**
 * A positive duration such as 10s, 1m30s, 500ms, 24h, 2w (units ns, us, µs,
 * ms, s, m, h, d, w; each part a whole number) in ns. Throws BadInputError
 * naming `field`.
 */
export function parseDurationNs(raw: string, field: string): bigint {
  const re = /([0-9]{1,19})(ns|us|µs|ms|s|m|h|d|w)/uy;
  let totalNs = 0n;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(raw)) !== null) {
    totalNs += BigInt(m[1]!) * NS_PER_UNIT[m[2]!]!;
    consumed = re.lastIndex;
    if (totalNs > INT64_MAX) break;
  }
  if (consumed !== raw.length || consumed === 0)
    throw new BadInputError(`cannot parse duration "${raw.slice(0, 40)}" (examples: 10s, 1m30s, 500ms, 24h)`, { field });
  if (totalNs > INT64_MAX) throw new BadInputError(`duration "${raw.slice(0, 40)}" is beyond the int64 nanosecond range`, { field });
  if (totalNs <= 0n) throw new BadInputError(`duration "${raw}" must be positive`, { field });
  return totalNs;
}

function describe(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

/**
 * Parses a gap rules document (already JSON-parsed). Every error is a
 * BadInputError whose field names the rule index and field, e.g.
 * `rules[2].interval`. Unknown fields are refused (a typo must not silently
 * turn a rule into "record only").
 */
export function parseGapRules(json: unknown, parseSelector: (s: string) => Matcher[]): GapRule[] {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new BadInputError(`gap rules must be a JSON object {"rules": [...]}, got ${describe(json)}`, { field: "rules" });
  for (const k of Object.keys(json)) if (k !== "rules") throw new BadInputError(`unknown field "${k.slice(0, 40)}" (want "rules")`, { field: k.slice(0, 40) });
  const list = (json as { rules?: unknown }).rules;
  if (!Array.isArray(list)) throw new BadInputError(`"rules" must be an array, got ${describe(list)}`, { field: "rules" });
  if (list.length > GAP_RULES_MAX) throw new TooLargeError("number of gap rules", GAP_RULES_MAX, { field: "rules" });

  return list.map((r: unknown, i): GapRule => {
    const at = (f: string): { field: string } => ({ field: `rules[${i}]${f === "" ? "" : `.${f}`}` });
    if (typeof r !== "object" || r === null || Array.isArray(r)) throw new BadInputError(`a rule must be an object, got ${describe(r)}`, at(""));
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (!RULE_FIELDS.has(k)) throw new BadInputError(`unknown field "${k.slice(0, 40)}" (want match, interval, policy, maxFill)`, at(k.slice(0, 40)));

    if (typeof o["match"] !== "string") throw new BadInputError(`"match" must be a series selector string, got ${describe(o["match"])}`, at("match"));
    let match: Matcher[];
    try {
      match = parseSelector(o["match"]);
    } catch (e) {
      if (!(e instanceof BadInputError)) throw e;
      // Keep the selector's column, drop its "field match[]" (the field here is the rule's).
      const loc = e.location;
      const text = Object.keys(loc).length > 0 ? e.message.slice(e.message.indexOf(": ") + 2) : e.message;
      throw new BadInputError(`${loc.column === undefined ? "" : `column ${loc.column} of the selector: `}${text}`, at("match"), { cause: e });
    }

    let policy: FillPolicy = "none";
    if (o["policy"] !== undefined) {
      const p = o["policy"];
      if (typeof p !== "string" || !(FILL_POLICIES as readonly string[]).includes(p))
        throw new BadInputError(`"policy" must be one of ${FILL_POLICIES.join(", ")}, got ${typeof p === "string" ? JSON.stringify(p.slice(0, 40)) : describe(p)}`, at("policy"));
      policy = p as FillPolicy;
    }

    let intervalNs: bigint | undefined;
    if (o["interval"] !== undefined) {
      if (typeof o["interval"] !== "string") throw new BadInputError(`"interval" must be a duration string such as "10s", got ${describe(o["interval"])}`, at("interval"));
      intervalNs = parseDurationNs(o["interval"], at("interval").field);
    }

    let maxFillNs = MAX_FILL_NS_DEFAULT;
    if (o["maxFill"] !== undefined) {
      if (typeof o["maxFill"] !== "string") throw new BadInputError(`"maxFill" must be a duration string such as "24h", got ${describe(o["maxFill"])}`, at("maxFill"));
      maxFillNs = parseDurationNs(o["maxFill"], at("maxFill").field);
    }

    return intervalNs === undefined ? { match, policy, maxFillNs } : { match, intervalNs, policy, maxFillNs };
  });
}

/** The first rule whose selector matches `labels`, or null (record only, learned interval). */
export function ruleFor(labels: Labels, rules: readonly GapRule[]): GapRule | null {
  for (const r of rules) if (matchesLabels(r.match, labels)) return r;
  return null;
}
