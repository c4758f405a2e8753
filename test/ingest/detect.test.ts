import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { detectFormat, parseBody } from "../../src/ingest/index.js";
import { bytes, LIMITS, NOW_NS, seriesOf } from "./util.js";

describe("detectFormat", () => {
  it("goes by the file extension first", () => {
    const any = bytes("whatever");
    assert.equal(detectFormat(any, "data.jsonl"), "vmjson");
    assert.equal(detectFormat(any, "export.JSON"), "vmjson");
    assert.equal(detectFormat(any, "a/b.csv"), "csv");
    assert.equal(detectFormat(any, "points.lp"), "influx");
    assert.equal(detectFormat(any, "points.txt"), "influx");
    assert.equal(detectFormat(any, "points.influx"), "influx");
    assert.equal(detectFormat(any, "dump.jsonl.gz"), "vmjson");
  });

  it("sniffs the first meaningful line otherwise", () => {
    assert.equal(detectFormat(bytes('\n  {"metric":{}}'), "data.bin"), "vmjson");
    assert.equal(detectFormat(bytes("# comment\ncpu,host=a usage=1 1")), "influx");
    assert.equal(detectFormat(bytes("my\\ m f=1")), "influx");
    assert.equal(detectFormat(bytes("metric,host,time,value\nm,a,1,2")), "csv");
    assert.equal(detectFormat(bytes("GOOG,1.23,4.56,NYSE")), "csv");
    assert.equal(detectFormat(bytes("")), "csv");
    assert.equal(detectFormat(new Uint8Array([0xff, 0xfe, 0x00])), "csv");
  });
});

describe("parseBody", () => {
  it("dispatches to each parser with its own defaults", () => {
    const opts = { limits: LIMITS, nowNs: NOW_NS };
    assert.deepEqual(seriesOf(parseBody("vmjson", bytes('{"metric":{"a":"b"},"values":[1],"timestamps":[2]}'), opts)).timestampsNs, [2_000_000n]);
    assert.deepEqual(seriesOf(parseBody("influx", bytes("m f=1 2"), opts)).timestampsNs, [2n]);
    assert.deepEqual(seriesOf(parseBody("csv", bytes("metric,time,value\nm,2,1"), opts)).timestampsNs, [2_000_000n]);
    assert.deepEqual(seriesOf(parseBody("csv", bytes("2,1"), { ...opts, csvFormat: "1:time:unix_s,2:metric:m" })).timestampsNs, [2_000_000_000n]);
    assert.deepEqual(seriesOf(parseBody("influx", bytes("m f=1 2"), { ...opts, precision: "s" })).timestampsNs, [2_000_000_000n]);
  });
});
