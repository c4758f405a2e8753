import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BadInputError, ConflictError, TooLargeError } from "../../src/core/errors.js";
import type { Precision } from "../../src/core/time.js";
import { parseInflux, parseInfluxDetailed } from "../../src/ingest/influx.js";
import { bytes, LIMITS, NOW_NS, seriesOf, plain, throwsAt } from "./util.js";

const parse = (text: string, precision?: Precision, limits = LIMITS) => parseInflux(bytes(text), { limits, nowNs: NOW_NS, precision });

describe("influx: happy paths", () => {
  it("maps measurement_field to the metric name and tags to labels", () => {
    const b = parse("cpu,host=a,region=eu usage_user=1.5,usage_system=2 1700000000000000000");
    assert.deepEqual([...plain(b).keys()], ['cpu_usage_system{host="a",region="eu"}', 'cpu_usage_user{host="a",region="eu"}']);
    const s = seriesOf(b, 'cpu_usage_user{host="a",region="eu"}');
    assert.deepEqual(s.timestampsNs, [1_700_000_000_000_000_000n]);
    assert.deepEqual(s.values, [1.5]);
  });

  it("keeps a nanosecond timestamp exactly", () => {
    assert.deepEqual(seriesOf(parse("m f=1 1700000000123456789")).timestampsNs, [1_700_000_000_123_456_789n]);
    assert.deepEqual(seriesOf(parse("m f=1 -1")).timestampsNs, [-1n]);
  });

  it("applies the precision", () => {
    const cases: [Precision, string, bigint][] = [
      ["ns", "1700000000123456789", 1_700_000_000_123_456_789n],
      ["us", "1700000000123456", 1_700_000_000_123_456_000n],
      ["ms", "1700000000123", 1_700_000_000_123_000_000n],
      ["s", "1700000000", 1_700_000_000_000_000_000n],
    ];
    for (const [p, ts, want] of cases) assert.deepEqual(seriesOf(parse(`m f=1 ${ts}`, p)).timestampsNs, [want], p);
  });

  it("uses nowNs when the timestamp is missing", () => {
    assert.deepEqual(seriesOf(parse("m f=1")).timestampsNs, [NOW_NS]);
    assert.deepEqual(seriesOf(parse("m f=1   ")).timestampsNs, [NOW_NS]);
  });

  it("reads every numeric type as a float", () => {
    const b = parse(
      "m i=-42i,u=18446744073709551615u,f=-1.5e-3,e=1E+10,d=.5,t=t,T=True,tt=TRUE,f1=f,f2=False,f3=FALSE,n=NaN,inf=+Inf,ninf=-inf,z=-0,big=9223372036854775807i,min=-9223372036854775808i 1",
    );
    const v = (name: string) => seriesOf(b, name).values[0];
    assert.equal(v("m_i"), -42);
    assert.equal(v("m_u"), 2 ** 64); // the nearest double
    assert.equal(v("m_f"), -1.5e-3);
    assert.equal(v("m_e"), 1e10);
    assert.equal(v("m_d"), 0.5);
    assert.equal(v("m_t"), 1);
    assert.equal(v("m_T"), 1);
    assert.equal(v("m_tt"), 1);
    assert.equal(v("m_f1"), 0);
    assert.equal(v("m_f2"), 0);
    assert.equal(v("m_f3"), 0);
    assert.ok(Number.isNaN(v("m_n")));
    assert.equal(v("m_inf"), Infinity);
    assert.equal(v("m_ninf"), -Infinity);
    assert.ok(Object.is(v("m_z"), -0));
    assert.equal(v("m_big"), 2 ** 63);
    assert.equal(v("m_min"), -(2 ** 63));
  });

  it("skips string fields and counts them", () => {
    const r = parseInfluxDetailed(bytes('m,host=a msg="hello, \\"world\\" x=1 \\\\",v=2 5\nm s="only string" 6'), { limits: LIMITS, nowNs: NOW_NS });
    assert.equal(r.stringFieldsIgnored, 2);
    assert.deepEqual([...plain(r.batch).keys()], ['m_v{host="a"}']);
    assert.deepEqual(seriesOf(r.batch).values, [2]);
  });

  it("unescapes the measurement: \\, and \\space and \\\\", () => {
    const s = seriesOf(parse("my\\ meas\\,ure\\\\ment f=1 1"));
    assert.equal(s.labels["__name__"], "my meas,ure\\ment_f");
  });

  it("keeps = in a measurement and a backslash before an ordinary character", () => {
    assert.equal(seriesOf(parse("a=b\\x f=1 1")).labels["__name__"], "a=b\\x_f");
  });

  it("unescapes tag keys, tag values and field keys: \\, \\= \\space \\\\", () => {
    const s = seriesOf(parse("m,ta\\ g\\=k\\,=v\\ a\\,l\\=u\\\\e f\\ i\\=e\\,ld=1 1"));
    assert.deepEqual(s.labels, { __name__: "m_f i=e,ld", "ta g=k,": "v a,l=u\\e" });
  });

  it("treats an escaped trailing backslash as part of the value", () => {
    assert.deepEqual(seriesOf(parse("m,t=a\\\\ f=1 1")).labels, { __name__: "m_f", t: "a\\" });
  });

  it("names the metric after the field when the measurement is empty", () => {
    assert.equal(seriesOf(parse(",host=a temp=21.5 1")).labels["__name__"], "temp");
  });

  it("skips comments, blank lines and leading whitespace; accepts CRLF", () => {
    const b = parse("# a comment\n\n   \t\n  m f=1 1\r\n\tm f=2 2\r\n");
    assert.deepEqual(seriesOf(b).values, [1, 2]);
  });

  it("canonicalises tag order so reordered tags are one series", () => {
    const b = parse("m,b=2,a=1 f=1 1\nm,a=1,b=2 f=2 2");
    assert.deepEqual(seriesOf(b).values, [1, 2]);
    assert.equal(b.series[0]!.key, 'm_f{a="1",b="2"}');
  });
});

describe("influx: errors name the line, the column and the field", () => {
  const cases: [string, string, string[]][] = [
    ["no field set", "m,t=v", ["line 1", "field field key", "missing field set"]],
    ["no field set after space", "m f=1 1\nm ", ["line 2", "column 3", "field field key"]],
    ["tag key without =", "m,tag f=1", ["line 1", "column 6", "field tag key", '"tag"']],
    ["empty tag key", "m,=v f=1", ["column 3", "field tag key", "empty"]],
    ["empty tag value", "m,t= f=1", ["column 5", "field tag value", "empty"]],
    ["empty field key", "m =1", ["column 3", "field field key", "empty"]],
    ["field key without =", "m f", ["field field key", "not followed by '='"]],
    ["missing field value", "m f=", ["column 5", "field field value", "missing"]],
    ["bad field value", "m,t=v a=1,b=abc 1", ["line 1", "column 13", "field field value", '"abc"']],
    ["integer with a fraction", "m f=1.5i", ["field field value", "invalid integer"]],
    ["integer out of range", "m f=9223372036854775808i", ["field field value", "int64 range"]],
    ["negative unsigned", "m f=-1u", ["field field value", "unsigned"]],
    ["unsigned out of range", "m f=18446744073709551616u", ["field field value", "uint64 range"]],
    ["float overflow", "m f=1e400", ["field field value", "float64 range"]],
    ["unterminated string", 'm s="abc,f=1 1', ["column 5", "field field value", "unterminated"]],
    ["text after a string field", 'm s="a"x 1', ["column 8", "field field value"]],
    ["bad timestamp", "m f=1 12a", ["line 1", "column 7", "field timestamp", "not an integer"]],
    ["float timestamp", "m f=1 1.5", ["field timestamp"]],
    ["text after the timestamp", "m f=1 1 2", ["column 9", "field timestamp", "after the timestamp"]],
    ["duplicate tag", "m,a=1,a=2 f=1 1", ["line 1", "duplicate label"]],
    ["tag named like the metric name", "m,__name__=x f=1 1", ["duplicate label"]],
    ["only string fields", 'm s="x" 1', ["no numeric fields", "1 string fields"]],
  ];
  for (const [name, text, fragments] of cases) it(name, () => throwsAt(() => parse(text), BadInputError, ...fragments));

  it("a timestamp outside int64 after the precision is applied", () => {
    throwsAt(() => parse("m f=1 9223372036854775807", "s"), BadInputError, "field timestamp", "int64");
  });

  it("invalid UTF-8 names the line", () => {
    const body = new Uint8Array([...bytes("m f=1 1\nm,t="), 0xff, ...bytes(" f=1 1\n")]);
    throwsAt(() => parseInflux(body, { limits: LIMITS, nowNs: NOW_NS }), BadInputError, "line 2", "UTF-8");
  });

  it("a line over lineBytesMax is TooLarge and named", () => {
    throwsAt(() => parse(`m f=1 1\nm,t=${"x".repeat(100)} f=1 1`, "ns", { ...LIMITS, lineBytesMax: 64 }), TooLargeError, "line 2", "64");
  });

  it("series and sample limits", () => {
    throwsAt(() => parse("m a=1,b=2,c=3 1", "ns", { ...LIMITS, seriesPerBatchMax: 2 }), TooLargeError, "line 1", "series");
    throwsAt(() => parse("m f=1 1\nm f=2 2\nm f=3 3", "ns", { ...LIMITS, samplesPerBatchMax: 2 }), TooLargeError, "line 3", "samples");
  });

  it("two values for one point is a conflict; the same value twice is one point", () => {
    throwsAt(() => parse("m f=1 1\nm f=2 1"), ConflictError);
    assert.deepEqual(seriesOf(parse("m f=1 1\nm f=1 1")).values, [1]);
  });

  it("long runs of backslashes and digits stay linear", () => {
    const t0 = performance.now();
    throwsAt(() => parse(`m${"\\".repeat(200_000)}`), BadInputError, "missing field set");
    throwsAt(() => parse(`m f=${"1".repeat(200_000)}x`), BadInputError, "field field value");
    throwsAt(() => parse(`m f="${'\\"'.repeat(100_000)}`), BadInputError, "unterminated");
    assert.ok(performance.now() - t0 < 2000);
  });
});
