import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BadInputError, ConflictError, TooLargeError } from "../../src/core/errors.js";
import type { Precision } from "../../src/core/time.js";
import { parseCsv } from "../../src/ingest/csv.js";
import { bytes, LIMITS, NOW_NS, seriesOf, plain, throwsAt } from "./util.js";

const parse = (text: string, csvFormat: string | null = null, precision?: Precision, limits = LIMITS) =>
  parseCsv(bytes(text), { limits, nowNs: NOW_NS, csvFormat, precision });

describe("csv header mode", () => {
  it("maps __name__/metric, timestamp/time and value; other columns are labels; ms by default", () => {
    const b = parse("__name__,host,timestamp,value\ncpu,a,1700000000000,1.5\ncpu,b,1700000000000,2\n");
    const s = seriesOf(b, 'cpu{host="a"}');
    assert.deepEqual(s.timestampsNs, [1_700_000_000_000_000_000n]);
    assert.deepEqual(s.values, [1.5]);
    assert.equal(plain(parse("metric,time,value\nm,1,2")).size, 1);
  });

  it("applies the precision parameter, with decimal fractions kept exactly", () => {
    const cases: [Precision, string, bigint][] = [
      ["ns", "1700000000123456789", 1_700_000_000_123_456_789n],
      ["us", "1700000000123456.789", 1_700_000_000_123_456_789n],
      ["ms", "1700000000123.456789", 1_700_000_000_123_456_789n],
      ["s", "1700000000.123456789", 1_700_000_000_123_456_789n],
      ["s", "-1.5", -1_500_000_000n],
    ];
    for (const [p, ts, want] of cases) assert.deepEqual(seriesOf(parse(`metric,time,value\nm,${ts},1`, null, p)).timestampsNs, [want], `${p} ${ts}`);
  });

  it("reads RFC 3339 times with offsets and nanoseconds", () => {
    const s = seriesOf(parse("metric,time,value\nm,2023-11-14T22:13:20.123456789Z,1\nm,2023-11-15T00:13:21+02:00,2\nm,1970-01-01 00:00:00z,3"));
    assert.deepEqual(s.timestampsNs, [0n, 1_700_000_000_123_456_789n, 1_700_000_001_000_000_000n]);
  });

  it("uses nowNs without a time column", () => {
    assert.deepEqual(seriesOf(parse("metric,value\nm,1")).timestampsNs, [NOW_NS]);
  });

  it("handles RFC 4180 quoting: commas, quotes, line breaks, CRLF", () => {
    const b = parse('metric,"label one",value\r\n"m","a,""b""\r\nc",1\r\n');
    assert.deepEqual(seriesOf(b).labels, { __name__: "m", "label one": 'a,"b"\r\nc' });
  });

  it("stores NaN/Inf, skips empty value cells, drops empty labels, trims header names", () => {
    const b = parse("metric, host ,time,value\nm,,1,NaN\nm,,2,+Inf\nm,,3,-inf\nm,,4,\nm,,5,-0\n\n");
    const s = seriesOf(b);
    assert.deepEqual(s.labels, { __name__: "m" });
    assert.ok(Number.isNaN(s.values[0]));
    assert.deepEqual(s.values.slice(1, 3), [Infinity, -Infinity]);
    assert.ok(Object.is(s.values[3], -0));
    assert.deepEqual(s.timestampsNs, [1_000_000n, 2_000_000n, 3_000_000n, 5_000_000n]);
  });

  it("ignores a UTF-8 byte-order mark", () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes("metric,value\nm,1")]);
    assert.equal(parseCsv(body, { limits: LIMITS, nowNs: NOW_NS }).sampleCount, 1);
  });
});

describe("csv with VictoriaMetrics format", () => {
  it("follows VictoriaMetrics's documented example", () => {
    const b = parse("GOOG,1.23,4.56,NYSE\nMSFT,3.21,1.67,NASDAQ\n", "2:metric:ask,3:metric:bid,1:label:ticker,4:label:market");
    assert.deepEqual([...plain(b).keys()], [
      'ask{market="NASDAQ",ticker="MSFT"}',
      'ask{market="NYSE",ticker="GOOG"}',
      'bid{market="NASDAQ",ticker="MSFT"}',
      'bid{market="NYSE",ticker="GOOG"}',
    ]);
    assert.deepEqual(seriesOf(b, 'bid{market="NYSE",ticker="GOOG"}').values, [4.56]);
    assert.deepEqual(seriesOf(b, 'bid{market="NYSE",ticker="GOOG"}').timestampsNs, [NOW_NS]);
  });

  it("supports each time context", () => {
    const cases: [string, string, bigint][] = [
      ["unix_s", "1700000000", 1_700_000_000_000_000_000n],
      ["unix_s", "1700000000.5", 1_700_000_000_500_000_000n],
      ["unix_ms", "1700000000123", 1_700_000_000_123_000_000n],
      ["unix_ns", "1700000000123456789", 1_700_000_000_123_456_789n],
      ["rfc3339", "2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789n],
    ];
    for (const [ctx, ts, want] of cases) assert.deepEqual(seriesOf(parse(`${ts},7`, `1:time:${ctx},2:metric:m`)).timestampsNs, [want], ctx);
  });

  it("ignores extra columns and the precision parameter; metric names may hold colons", () => {
    const s = seriesOf(parse("5,1,extra,more", "2:time:unix_s,1:metric:job:rate:5m", "ns"));
    assert.deepEqual(s.labels, { __name__: "job:rate:5m" });
    assert.deepEqual(s.timestampsNs, [1_000_000_000n]);
  });

  it("skips empty metric cells as VictoriaMetrics does", () => {
    const b = parse("1,,2\n", "1:time:unix_s,2:metric:a,3:metric:b");
    assert.deepEqual([...plain(b).keys()], ["b"]);
  });
});

describe("csv errors name the line, the column and the field", () => {
  const formatCases: [string, string, string[]][] = [
    ["entry without type", "1:metric", ["field format", "entry #1", "<column_pos>:<type>:<context>"]],
    ["bad position", "x:metric:m", ["field format", "positive integer"]],
    ["zero position", "0:metric:m", ["field format", "between 1 and"]],
    ["position too large", "70000:metric:m", ["field format", "between 1 and"]],
    ["unknown type", "1:metric:m,2:tag:x", ["entry #2", "unknown column type"]],
    ["duplicate position", "1:metric:m,1:label:x", ["entry #2", "described twice"]],
    ["two time columns", "1:metric:m,2:time:unix_s,3:time:unix_s", ["entry #3", "second time column"]],
    ["unknown time format", "1:metric:m,2:time:unix_h", ["entry #2", "unknown time format"]],
    ["custom layouts", "1:metric:m,2:time:custom:2006-01-02", ["custom: layouts are not supported"]],
    ["inherited property as format", "1:metric:m,2:time:constructor", ["unknown time format"]],
    ["no metric column", "1:label:x", ["field format", "at least one metric column"]],
    ["empty metric name", "1:metric:", ["field format", "metric name is empty"]],
    ["empty label name", "1:metric:m,2:label:", ["label name is empty"]],
  ];
  for (const [name, format, fragments] of formatCases) it(`format: ${name}`, () => throwsAt(() => parse("1,2,3\n", format), BadInputError, ...fragments));

  const cases: [string, string, string[]][] = [
    ["no value column", "metric,host\nm,a", ["line 1", "field header", "no value column"]],
    ["no name column", "host,value\na,1", ["line 1", "field header", "no __name__ or metric column"]],
    ["duplicate column", "metric,host,host,value\n", ["line 1", "column 3", "appears twice"]],
    ["two name columns", "metric,__name__,value\n", ["column 2", "both __name__ and metric"]],
    ["empty column name", "metric,,value\n", ["column 2", "empty column name"]],
    ["too few columns", "metric,value\nm,1\nm", ["line 3", "1 columns", "header has 2"]],
    ["too many columns", "metric,value\nm,1,2", ["line 2", "3 columns"]],
    ["bad value", "metric,host,value\nm,a,1\nm,a,1x", ["line 3", "column 3", "field value", '"1x"']],
    ["value overflow", "metric,value\nm,1e999", ["line 2", "field value", "float64 range"]],
    ["bad timestamp", "metric,time,value\nm,12:00,1", ["line 2", "column 2", "field timestamp", "RFC 3339"]],
    ["empty timestamp", "metric,time,value\nm,,1", ["line 2", "field timestamp", "missing"]],
    ["Feb 30", "metric,time,value\nm,2023-02-30T00:00:00Z,1", ["field timestamp", "day out of range"]],
    ["sub-ns fraction", "metric,time,value\nm,1.0000000001,1", ["field timestamp", "finer than a nanosecond"]],
    ["out of int64", "metric,time,value\nm,9300000000000,1", ["field timestamp", "int64"]],
    ["missing metric name", "metric,value\n,1", ["line 2", "column 1", "field __name__"]],
    ["unterminated quote", 'metric,value\nm,"1\n\n', ["line 2", "column 2", "unterminated"]],
    ["quote in unquoted field", 'metric,value\nm,1"', ["line 2", "column 2", "double quote inside an unquoted field"]],
    ["text after closing quote", 'metric,value\n"m"x,1', ["line 2", "column 1", "after a closing quote"]],
    ["line numbers count quoted line breaks", 'metric,host,value\nm,"a\nb\nc",1\nm,a,x', ["line 5", "field value"]],
    ["format row too short", "1", ["line 1", "at least 2"]],
    ["duplicate label from format", "1,2", ["duplicate label"]],
  ];
  for (const [name, text, fragments] of cases) {
    const format = name === "format row too short" ? "2:metric:m" : name === "duplicate label from format" ? "1:metric:m,2:label:__name__" : null;
    it(name, () => throwsAt(() => parse(text, format), BadInputError, ...fragments));
  }

  it("a bad format value in a row names its metric", () => {
    throwsAt(() => parse("1,x", "1:time:unix_s,2:metric:temp"), BadInputError, "line 1", "column 2", "field temp");
    throwsAt(() => parse("1.5,1", "1:time:unix_ns,2:metric:temp"), BadInputError, "field timestamp", "finer than a nanosecond");
  });

  it("invalid UTF-8 names the line", () => {
    const body = new Uint8Array([...bytes("metric,value\nm,1\nm"), 0xe2, 0x82, ...bytes(",1\n")]);
    throwsAt(() => parseCsv(body, { limits: LIMITS, nowNs: NOW_NS }), BadInputError, "line 3", "UTF-8");
  });

  it("a line over lineBytesMax is TooLarge and named, even inside a quoted field", () => {
    throwsAt(() => parse(`metric,value\nm,1\n"${"x".repeat(100)}`, null, "ms", { ...LIMITS, lineBytesMax: 50 }), TooLargeError, "line 3", "50");
  });

  it("label, series and sample limits", () => {
    throwsAt(() => parse("metric,a,b,c,value\nm,1,2,3,1", null, "ms", { ...LIMITS, labelsPerSeriesMax: 3 }), TooLargeError, "line 2", "labels");
    throwsAt(() => parse("metric,value\na,1\nb,1", null, "ms", { ...LIMITS, seriesPerBatchMax: 1 }), TooLargeError, "line 3", "series");
    throwsAt(() => parse("metric,time,value\na,1,1\na,2,1", null, "ms", { ...LIMITS, samplesPerBatchMax: 1 }), TooLargeError, "line 3", "samples");
  });

  it("a header with no rows, or only blank lines, holds no samples", () => {
    throwsAt(() => parse("metric,value\n"), BadInputError, "no samples");
    throwsAt(() => parse(""), BadInputError, "no samples");
  });

  it("two values for one point is a conflict", () => {
    throwsAt(() => parse("metric,time,value\nm,1,1\nm,1,2"), ConflictError);
  });
});
