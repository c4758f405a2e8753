import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BadInputError, TooLargeError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import { GAP_RULES_MAX, MAX_FILL_NS_DEFAULT, parseDurationNs, parseGapRules, ruleFor } from "../../src/gaps/rules.js";
import { parseSelector } from "../../src/query/selector.js";

const S = 1_000_000_000n;
const lbl = (pairs: [string, string][]) => canonicalLabels(pairs, DEFAULT_LIMITS);

function badInput(fn: () => unknown, field: string, re?: RegExp): BadInputError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof BadInputError, `expected BadInputError, got ${String(e)}`);
    assert.equal(e.location.field, field);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail("expected a BadInputError");
}

describe("gaps/rules parseGapRules", () => {
  it("parses the documented shape, with defaults", () => {
    const doc = JSON.parse(
      '{"rules":[{"match":"{job=\\"sensors\\"}","interval":"10s","policy":"linear","maxFill":"24h"},{"match":"up","policy":"previous","maxFill":"1h30m"},{"match":"{__name__=~\\"node_.*\\"}"}]}',
    );
    const rules = parseGapRules(doc, parseSelector);
    assert.equal(rules.length, 3);
    assert.deepEqual(rules[0]!.match.map((m) => [m.name, m.op, m.value]), [["job", "=", "sensors"]]);
    assert.equal(rules[0]!.intervalNs, 10n * S);
    assert.equal(rules[0]!.policy, "linear");
    assert.equal(rules[0]!.maxFillNs, 24n * 3600n * S);
    assert.equal(rules[1]!.intervalNs, undefined);
    assert.ok(!("intervalNs" in rules[1]!), "no interval → learned (the field is absent)");
    assert.equal(rules[1]!.policy, "previous");
    assert.equal(rules[1]!.maxFillNs, 5400n * S);
    assert.equal(rules[2]!.policy, "none");
    assert.equal(rules[2]!.maxFillNs, MAX_FILL_NS_DEFAULT);
    assert.deepEqual(parseGapRules({ rules: [] }, parseSelector), []);
  });

  it("names the rule index and field in every error", () => {
    badInput(() => parseGapRules(null, parseSelector), "rules", /JSON object/);
    badInput(() => parseGapRules([], parseSelector), "rules", /got an array/);
    badInput(() => parseGapRules({ rule: [] }, parseSelector), "rule", /unknown field "rule"/);
    badInput(() => parseGapRules({}, parseSelector), "rules", /must be an array/);
    badInput(() => parseGapRules({ rules: [{ match: "up" }, 3] }, parseSelector), "rules[1]", /must be an object/);
    badInput(() => parseGapRules({ rules: [{}] }, parseSelector), "rules[0].match", /series selector string/);
    badInput(() => parseGapRules({ rules: [{ match: "up" }, { match: "{job=" }] }, parseSelector), "rules[1].match", /column \d+ of the selector/);
    badInput(() => parseGapRules({ rules: [{ match: '{job=""}' }] }, parseSelector), "rules[0].match", /non-empty matcher/);
    badInput(() => parseGapRules({ rules: [{ match: "up", policy: "cubic" }] }, parseSelector), "rules[0].policy", /none, previous, linear.*"cubic"/);
    badInput(() => parseGapRules({ rules: [{ match: "up", interval: 10 }] }, parseSelector), "rules[0].interval", /duration string/);
    badInput(() => parseGapRules({ rules: [{ match: "up", interval: "10" }] }, parseSelector), "rules[0].interval", /cannot parse duration "10"/);
    badInput(() => parseGapRules({ rules: [{ match: "up", interval: "0s" }] }, parseSelector), "rules[0].interval", /positive/);
    badInput(() => parseGapRules({ rules: [{ match: "up", maxFill: "forever" }] }, parseSelector), "rules[0].maxFill", /cannot parse/);
    badInput(() => parseGapRules({ rules: [{ match: "up", maxfill: "1h" }] }, parseSelector), "rules[0].maxfill", /unknown field "maxfill"/);
  });

  it("limits the number of rules", () => {
    const rules = Array.from({ length: GAP_RULES_MAX + 1 }, () => ({ match: "up" }));
    assert.throws(() => parseGapRules({ rules }, parseSelector), TooLargeError);
  });

  it("lets a non-input error from the selector parser through", () => {
    assert.throws(
      () =>
        parseGapRules({ rules: [{ match: "up" }] }, () => {
          throw new RangeError("boom");
        }),
      RangeError,
    );
  });
});

describe("gaps/rules parseDurationNs", () => {
  it("parses compound durations exactly in ns", () => {
    assert.equal(parseDurationNs("10s", "f"), 10n * S);
    assert.equal(parseDurationNs("1m30s", "f"), 90n * S);
    assert.equal(parseDurationNs("500ms", "f"), 500_000_000n);
    assert.equal(parseDurationNs("250us", "f"), 250_000n);
    assert.equal(parseDurationNs("250µs", "f"), 250_000n);
    assert.equal(parseDurationNs("7ns", "f"), 7n);
    assert.equal(parseDurationNs("2w1d", "f"), 15n * 86_400n * S);
    badInput(() => parseDurationNs("", "f"), "f");
    badInput(() => parseDurationNs("1.5s", "f"), "f");
    badInput(() => parseDurationNs("10 s", "f"), "f");
    badInput(() => parseDurationNs("9999999999999999999w", "f"), "f", /int64/);
  });
});

describe("gaps/rules ruleFor", () => {
  const rules = parseGapRules(
    { rules: [{ match: '{job="sensors",room="b2"}', policy: "previous" }, { match: '{job="sensors"}', interval: "10s", policy: "linear" }] },
    parseSelector,
  );
  it("returns the first matching rule, or null (record only, learned interval)", () => {
    assert.equal(ruleFor(lbl([["__name__", "t"], ["job", "sensors"], ["room", "b2"]]), rules), rules[0]);
    assert.equal(ruleFor(lbl([["__name__", "t"], ["job", "sensors"], ["room", "a1"]]), rules), rules[1]);
    assert.equal(ruleFor(lbl([["__name__", "t"], ["job", "node"]]), rules), null);
    assert.equal(ruleFor(lbl([["__name__", "t"]]), []), null);
  });
});
