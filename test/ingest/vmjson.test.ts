import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BadInputError, ConflictError, TooLargeError } from "../../src/core/errors.js";
import { parseVmJson } from "../../src/ingest/vmjson.js";
import { bytes, LIMITS, seriesOf, plain, throwsAt } from "./util.js";

const parse = (text: string, limits = LIMITS) => parseVmJson(bytes(text), { limits });
const line = (metric: Record<string, unknown>, values: unknown[], timestamps: unknown[]) => JSON.stringify({ metric, values, timestamps });

describe("vmjson: happy paths", () => {
  it("parses one series per line with ms timestamps converted to ns", () => {
    const b = parse(
      [
        line({ __name__: "up", job: "node", instance: "a:9100" }, [1, 0.5], [1700000000000, 1700000001000]),
        line({ __name__: "up", job: "prom" }, [1], [1700000000000]),
      ].join("\n"),
    );
    assert.equal(b.sampleCount, 3);
    const s = seriesOf(b, 'up{instance="a:9100",job="node"}');
    assert.deepEqual(s.timestampsNs, [1_700_000_000_000_000_000n, 1_700_000_001_000_000_000n]);
    assert.deepEqual(s.values, [1, 0.5]);
    assert.deepEqual(b.series[0]!.labels, [["__name__", "up"], ["instance", "a:9100"], ["job", "node"]]);
  });

  it("stores NaN and ±Inf from their string spellings, and quoted numbers", () => {
    // Written by hand: JSON.stringify(-0) is "0".
    const text = `{"metric":{"__name__":"q"},"values":["NaN","Inf","+Inf","-Inf","nan","1.25",-0,1e308,5e-324],"timestamps":[1,2,3,4,5,6,7,8,9]}`;
    const s = seriesOf(parse(text));
    assert.ok(Number.isNaN(s.values[0]));
    assert.deepEqual(s.values.slice(1, 4), [Infinity, Infinity, -Infinity]);
    assert.ok(Number.isNaN(s.values[4]));
    assert.equal(s.values[5], 1.25);
    assert.ok(Object.is(s.values[6], -0));
    assert.equal(s.values[7], 1e308);
    assert.equal(s.values[8], 5e-324);
  });

  it("canonicalises labels: sorted, empty values dropped", () => {
    const b = parse(line({ z: "1", __name__: "m", a: "2", empty: "" }, [1], [1]));
    assert.deepEqual(b.series[0]!.labels, [["__name__", "m"], ["a", "2"], ["z", "1"]]);
    assert.equal(b.series[0]!.key, 'm{a="2",z="1"}');
  });

  it("skips blank lines, accepts CRLF and unsorted timestamps, merges a series split over lines", () => {
    const text = `\n${line({ __name__: "m" }, [2], [2000])}\r\n   \r\n${line({ __name__: "m" }, [1], [1000])}\n\n`;
    const s = seriesOf(parse(text));
    assert.deepEqual(s.timestampsNs, [1_000_000_000n, 2_000_000_000n]);
    assert.deepEqual(s.values, [1, 2]);
  });

  it("keeps the extremes of the int64 ns range and negative times", () => {
    const s = seriesOf(parse(line({ __name__: "m" }, [1, 2, 3], [-9223372036854, 0, 9223372036854])));
    assert.deepEqual(s.timestampsNs, [-9_223_372_036_854_000_000n, 0n, 9_223_372_036_854_000_000n]);
  });

  it("treats an identical repeat as one point", () => {
    const s = seriesOf(parse(line({ __name__: "m" }, [1, 1], [5, 5])));
    assert.deepEqual(s.values, [1]);
  });
});

describe("vmjson: errors name the line and the field", () => {
  const ok = line({ __name__: "m" }, [1], [1]);
  const cases: [string, string, string[]][] = [
    ["invalid JSON", `${ok}\n{"metric":`, ["line 2", "invalid JSON"]],
    ["not an object", `${ok}\n${ok}\n[1,2]`, ["line 3", "expected a JSON object"]],
    ["missing metric", `{"values":[1],"timestamps":[1]}`, ["line 1", "field metric", "missing"]],
    ["metric not an object", `{"metric":"x","values":[1],"timestamps":[1]}`, ["field metric"]],
    ["label value not a string", line({ __name__: "m", job: 3 }, [1], [1]), ["field metric.job", "string"]],
    ["values missing", `{"metric":{"a":"b"},"timestamps":[1]}`, ["field values", "missing"]],
    ["values not an array", `{"metric":{"a":"b"},"values":1,"timestamps":[1]}`, ["field values", "array"]],
    ["timestamps missing", `{"metric":{"a":"b"},"values":[1]}`, ["field timestamps", "missing"]],
    ["length mismatch", line({ a: "b" }, [1, 2], [1]), ["line 1", "field values", "2 entries", "timestamps has 1"]],
    ["fractional timestamp", `${ok}\n${line({ a: "b" }, [1, 2], [1, 1.5])}`, ["line 2", "field timestamps[1]", "not an integer"]],
    ["string timestamp", line({ a: "b" }, [1], ["1"]), ["field timestamps[0]", "got string"]],
    ["timestamp out of range", line({ a: "b" }, [1], [1e16]), ["field timestamps[0]", "out of the int64"]],
    ["bad value string", `${ok}\n${ok}\n${line({ a: "b" }, [1, 2, 3, 4, 5, 6, 7, "x"], [1, 2, 3, 4, 5, 6, 7, 8])}`, ["line 3, field values[7]", "cannot parse"]],
    ["null value", line({ a: "b" }, [null], [1]), ["field values[0]", "got null"]],
    ["boolean value", line({ a: "b" }, [true], [1]), ["field values[0]", "got boolean"]],
    ["overflowing number", `{"metric":{"a":"b"},"values":[1e400],"timestamps":[1]}`, ["field values[0]", "float64 range"]],
    ["overflowing quoted number", line({ a: "b" }, ["1e400"], [1]), ["field values[0]", "float64 range"]],
    ["no labels at all", line({}, [1], [1]), ["line 1", "no labels"]],
    ["empty label name", line({ "": "x" }, [1], [1]), ["line 1", "empty label name"]],
  ];
  for (const [name, text, fragments] of cases) it(name, () => throwsAt(() => parse(text), BadInputError, ...fragments));

  it("invalid UTF-8 names the line", () => {
    const good = bytes(`${ok}\n${ok}\n`);
    const body = new Uint8Array([...good, ...bytes('{"metric":{"a":"'), 0xc3, 0x28, ...bytes('"},"values":[1],"timestamps":[1]}')]);
    throwsAt(() => parseVmJson(body, { limits: LIMITS }), BadInputError, "line 3", "UTF-8");
  });

  it("an empty body holds no samples", () => throwsAt(() => parse("\n\n"), BadInputError, "no samples"));

  it("a line over lineBytesMax is TooLarge and named", () => {
    const limits = { ...LIMITS, lineBytesMax: 60 };
    throwsAt(() => parse(`${ok}\n${line({ __name__: "m" }, [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])}`, limits), TooLargeError, "line 2", "60");
  });

  it("the sample and series limits are enforced when reached", () => {
    throwsAt(() => parse(line({ a: "b" }, [1, 2, 3], [1, 2, 3]), { ...LIMITS, samplesPerBatchMax: 2 }), TooLargeError, "line 1", "samples");
    throwsAt(() => parse(`${ok}\n${line({ a: "c" }, [1], [1])}`, { ...LIMITS, seriesPerBatchMax: 1 }), TooLargeError, "line 2", "series");
  });

  it("label limits come from core", () => {
    throwsAt(() => parse(line({ a: "x".repeat(20) }, [1], [1]), { ...LIMITS, labelValueBytesMax: 10 }), TooLargeError, "line 1");
    throwsAt(() => parse(line({ a: "1", b: "2", c: "3" }, [1], [1]), { ...LIMITS, labelsPerSeriesMax: 2 }), TooLargeError, "labels");
  });

  it("two different values for one point is a conflict", () => {
    throwsAt(() => parse(`${line({ a: "b" }, [1], [7])}\n${line({ a: "b" }, [2], [7])}`), ConflictError, "two different values");
  });

  it("deep nesting is a BadInputError, not a crash", () => {
    throwsAt(() => parse("[".repeat(200_000)), BadInputError, "line 1");
    const nested = `{"metric":{"a":"b"},"values":[${"[".repeat(100_000)}${"]".repeat(100_000)}],"timestamps":[1]}`;
    throwsAt(() => parse(nested), BadInputError, "field values[0]");
  });

  it("keeps every series of a many-line body", () => {
    const text = Array.from({ length: 50 }, (_, i) => line({ __name__: "m", i: String(i) }, [i], [i])).join("\n");
    assert.equal(plain(parse(text)).size, 50);
  });
});

describe("vmjson: timestamps_ns (what /api/v1/export writes)", () => {
  it("takes exact nanoseconds from timestamps_ns, checked against timestamps when both are given", () => {
    const text = JSON.stringify({ metric: { __name__: "n" }, values: [1, 2], timestamps: [1700000000123, -1], timestamps_ns: ["1700000000123456789", "-1"] });
    const s = seriesOf(parse(text));
    assert.deepEqual(s.timestampsNs, [-1n, 1_700_000_000_123_456_789n]);
    const alone = seriesOf(parse(JSON.stringify({ metric: { __name__: "n" }, values: [1], timestamps_ns: ["5"] })));
    assert.deepEqual(alone.timestampsNs, [5n]);
  });
  it("names the field when timestamps_ns is malformed or disagrees with timestamps", () => {
    throwsAt(() => parse(JSON.stringify({ metric: { __name__: "n" }, values: [1], timestamps_ns: [5] })), BadInputError, "line 1", "timestamps_ns[0]");
    throwsAt(() => parse(JSON.stringify({ metric: { __name__: "n" }, values: [1], timestamps_ns: ["x"] })), BadInputError, "line 1", "timestamps_ns[0]");
    throwsAt(() => parse(JSON.stringify({ metric: { __name__: "n" }, values: [1], timestamps: [2], timestamps_ns: ["5000000"] })), BadInputError, "line 1", "timestamps[0]");
    throwsAt(() => parse(JSON.stringify({ metric: { __name__: "n" }, values: [1, 2], timestamps_ns: ["5"] })), BadInputError, "line 1", "values");
  });
});
