// Prometheus remote write decoding: requests are encoded here with
// protobufjs from Prometheus's own schema (string labels, double values, full
// exemplar/histogram/metadata messages) and compressed with snappyjs, so the
// decoder is checked against independent encoders, not against itself.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import protobuf from "protobufjs";
import { encodeBatch, encodeWithDigest } from "../../src/core/batch.js";
import { BadInputError, TooLargeError } from "../../src/core/errors.js";
import {
  decodeRemoteWrite,
  decodeWriteRequest,
  partialBatchId,
  snappyDecode,
  snappyDeclaredLength,
  withoutPoints,
} from "../../src/ingest/remote-write.js";
import { LIMITS, seriesOf, plain, throwsAt } from "./util.js";
import { SeriesInternCache } from "../../src/core/series-intern.js";
import { WriteRequest } from "../helpers/remote-write.js";

const require = createRequire(import.meta.url);
const snappy = require("snappyjs") as { compress(b: Uint8Array): Uint8Array; uncompress(b: Uint8Array): Uint8Array };

// The encoder side: Prometheus's own schema (prompb), shared with the server test.


interface Ts {
  labels: Record<string, string> | [string, string][];
  samples?: { value: number; timestamp: number | string }[];
  exemplars?: { labels: { name: string; value: string }[]; value: number; timestamp: number }[];
  histograms?: { countInt: number; sum: number; timestamp: number }[];
}

function proto(series: Ts[], metadata: { type?: number; metricFamilyName: string; help: string }[] = []): Uint8Array {
  const timeseries = series.map((s) => ({
    labels: (Array.isArray(s.labels) ? s.labels : Object.entries(s.labels)).map(([name, value]) => ({ name, value })),
    samples: s.samples ?? [],
    exemplars: s.exemplars ?? [],
    histograms: s.histograms ?? [],
  }));
  return WriteRequest.encode(WriteRequest.fromObject({ timeseries, metadata })).finish();
}

const rw = (series: Ts[], metadata: { metricFamilyName: string; help: string }[] = []): Uint8Array => snappy.compress(proto(series, metadata));
const decode = (series: Ts[], limits = LIMITS) => decodeRemoteWrite(rw(series), { limits });

const T0 = 1_700_000_000_000;
const MS = 1_000_000n;

describe("remote write: decoding", () => {
  it("decodes series, sorts labels, converts ms to ns exactly", () => {
    const r = decode([
      { labels: [["job", "node"], ["__name__", "up"], ["instance", "a:9100"]], samples: [{ value: 1, timestamp: T0 }, { value: 0, timestamp: T0 + 15_000 }] },
      { labels: { __name__: "temp", room: "k\u00fcche" }, samples: [{ value: -0, timestamp: -1 }, { value: Infinity, timestamp: 0 }, { value: NaN, timestamp: 1 }] },
    ]);
    assert.ok(r.batch !== null);
    assert.equal(r.timeseries, 2);
    assert.equal(r.samplesOffered, 5);
    assert.equal(r.inRequestConflicts, 0);
    assert.deepEqual([...plain(r.batch).keys()], ['temp{room="k\u00fcche"}', 'up{instance="a:9100",job="node"}']);
    const up = seriesOf(r.batch, 'up{instance="a:9100",job="node"}');
    assert.deepEqual(r.batch.series[1]!.labels, [["__name__", "up"], ["instance", "a:9100"], ["job", "node"]]);
    assert.deepEqual([...up.timestampsNs], [BigInt(T0) * MS, BigInt(T0 + 15_000) * MS]);
    assert.deepEqual([...up.values], [1, 0]);
    const temp = seriesOf(r.batch, 'temp{room="k\u00fcche"}');
    assert.deepEqual([...temp.timestampsNs], [-1_000_000n, 0n, 1_000_000n]);
    assert.ok(Object.is(temp.values[0], -0), "-0 stays -0");
    assert.equal(temp.values[1], Infinity);
    assert.ok(Number.isNaN(temp.values[2]));
  });

  it("keeps int64 millisecond timestamps beyond 2^53 exact and refuses ones outside int64 ns", () => {
    const r = decode([{ labels: { __name__: "m" }, samples: [{ value: 1, timestamp: "9223372036854" }] }]);
    assert.deepEqual([...seriesOf(r.batch!, "m").timestampsNs], [9_223_372_036_854n * MS]);
    throwsAt(() => decode([{ labels: { __name__: "m" }, samples: [{ value: 1, timestamp: "9223372036855" }] }]), BadInputError, "timeseries[0].samples[0].timestamp", "out of the int64 nanosecond range");
    throwsAt(() => decode([{ labels: { __name__: "m" }, samples: [{ value: 1, timestamp: "-9007199254740993" }] }]), BadInputError, "out of the int64");
  });

  it("keeps the stale marker's payload, always in the same (quiet) form", () => {
    const PLACEHOLDER = 1234.5678;
    const raw = proto([{ labels: { __name__: "m" }, samples: [{ value: PLACEHOLDER, timestamp: T0 }, { value: 2, timestamp: T0 + 1 }] }]);
    const place = Buffer.from(new Float64Array([PLACEHOLDER]).buffer);
    const at = Buffer.from(raw).indexOf(place);
    assert.ok(at > 0);
    new DataView(raw.buffer, raw.byteOffset).setBigUint64(at, 0x7ff0000000000002n, true);
    const a = decodeWriteRequest(raw, { limits: LIMITS });
    const b = decodeRemoteWrite(snappy.compress(raw), { limits: LIMITS });
    for (const r of [a, b]) {
      const v = r.batch!.series[0]!.values;
      assert.equal(new BigUint64Array(v.buffer, v.byteOffset, v.length)[0], 0x7ff8000000000002n, "payload 2 kept, quiet bit set (docs/format/batch.md)");
    }
    // The canonical encoding carries those bits, so a retry has the same digest.
    assert.ok(Buffer.from(encodeBatch(a.batch!)).includes(Buffer.from([2, 0, 0, 0, 0, 0, 0xf8, 0x7f])));
    assert.equal(encodeWithDigest(a.batch!).sha256, encodeWithDigest(b.batch!).sha256);
  });

  it("counts exemplars and ignores them; decodes metadata; metadata only → no batch", () => {
    const r = decodeRemoteWrite(
      rw(
        [{ labels: { __name__: "m" }, samples: [{ value: 1, timestamp: T0 }], exemplars: [{ labels: [{ name: "trace_id", value: "abc" }], value: 1, timestamp: T0 }] }],
        [{ metricFamilyName: "m", help: "h" }],
      ),
      { limits: LIMITS },
    );
    assert.equal(r.exemplarsIgnored, 1);
    assert.deepEqual(r.metadata, [{ metric: "m", type: "unknown", help: "h", unit: "" }]);
    assert.equal(r.batch!.sampleCount, 1);

    const meta = decodeRemoteWrite(rw([], [{ metricFamilyName: "m", help: "h" }, { metricFamilyName: "n", help: "" }]), { limits: LIMITS });
    assert.equal(meta.batch, null);
    assert.deepEqual(
      meta.metadata.map((x) => x.metric),
      ["m", "n"],
    );
    assert.equal(decodeRemoteWrite(rw([]), { limits: LIMITS }).batch, null, "an empty request stores nothing");
    const noSamples = decode([{ labels: { __name__: "m" }, exemplars: [{ labels: [], value: 1, timestamp: T0 }] }]);
    assert.equal(noSamples.batch, null);
    assert.equal(noSamples.exemplarsIgnored, 1);
  });

  it("decodes metric metadata: type, name, help, unit; bad entries are left out, never the request", () => {
    const types = ["unknown", "counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"];
    const meta = types.map((_, type) => ({ type, metricFamilyName: `m${type}`, help: `help ${type}`, unit: type === 1 ? "seconds" : "" }));
    const r = decodeRemoteWrite(snappy.compress(WriteRequest.encode(WriteRequest.fromObject({ timeseries: [], metadata: [...meta, { type: 99, metricFamilyName: "odd", help: "" }] })).finish()), { limits: LIMITS });
    assert.equal(r.batch, null);
    assert.deepEqual(
      r.metadata.map((x) => [x.metric, x.type, x.help, x.unit]),
      [...types.map((t, i) => [`m${i}`, t, `help ${i}`, i === 1 ? "seconds" : ""]), ["odd", "unknown", "", ""]],
    );
    // Hand-made: an entry whose name is not UTF-8 (0xff), one with no name, then a good one.
    const entry = (name: number[]): number[] => [0x1a, name.length + 2, 0x12, name.length, ...name];
    const raw = new Uint8Array([...entry([0xff]), ...entry([]), ...entry([0x61])]);
    const d = decodeWriteRequest(raw, { limits: LIMITS });
    assert.deepEqual(
      d.metadata.map((x) => x.metric),
      ["a"],
    );
    assert.equal(d.metadataDropped, 2);
    throwsAt(() => decodeWriteRequest(raw, { limits: { ...LIMITS, seriesPerBatchMax: 2 } }), TooLargeError, "metadata entries");
  });

  it("merges a series sent twice; a repeat keeps the first value and reports a different one", () => {
    const r = decode([
      { labels: { __name__: "m" }, samples: [{ value: 1, timestamp: T0 + 2 }, { value: 5, timestamp: T0 }] },
      { labels: { __name__: "m" }, samples: [{ value: 1, timestamp: T0 + 2 }, { value: 6, timestamp: T0 }, { value: 7, timestamp: T0 + 1 }] },
    ]);
    const m = seriesOf(r.batch!, "m");
    assert.deepEqual([...m.timestampsNs], [BigInt(T0) * MS, BigInt(T0 + 1) * MS, BigInt(T0 + 2) * MS]);
    assert.deepEqual([...m.values], [5, 7, 1]);
    assert.equal(r.inRequestConflicts, 1);
    assert.deepEqual(r.inRequestConflictsListed, [{ series: "m", timestampNs: (BigInt(T0) * MS).toString(), storedValue: 5, offeredValue: 6 }]);
  });
});

describe("remote write: validation names what and where", () => {
  const ok = { labels: { __name__: "fine" }, samples: [{ value: 1, timestamp: T0 }] };

  it("a series without a metric name", () => {
    throwsAt(() => decode([ok, { labels: { job: "x" }, samples: [{ value: 1, timestamp: T0 }] }]), BadInputError, "timeseries[1]", "no metric name", "job=");
    throwsAt(() => decode([{ labels: { __name__: "", job: "x" }, samples: [] }]), BadInputError, "timeseries[0]", "no metric name");
  });

  it("an empty label name, a duplicate label name (even with an empty value)", () => {
    throwsAt(() => decode([ok, ok, { labels: [["__name__", "m"], ["", "v"]] }]), BadInputError, "timeseries[2].labels[1]", "empty label name");
    throwsAt(() => decode([{ labels: [["__name__", "m"], ["job", "a"], ["job", "b"]] }]), BadInputError, "timeseries[0].labels[2]", 'duplicate label name "job"');
    throwsAt(() => decode([{ labels: [["__name__", "m"], ["job", ""], ["job", "b"]] }]), BadInputError, "timeseries[0].labels[2]", "duplicate");
  });

  it("invalid UTF-8 in a label name or value", () => {
    // protobufjs writes a lone surrogate as its 3-byte (CESU-8) form: not UTF-8.
    throwsAt(() => decode([{ labels: [["__name__", "m"], ["job", "a\ud800b"]] }]), BadInputError, "timeseries[0].labels[1]", 'value of label "job"', "not valid UTF-8");
    throwsAt(() => decode([ok, { labels: [["__name__", "m"], ["j\udc00", "a"]] }]), BadInputError, "timeseries[1].labels[1]", "label name", "not valid UTF-8");
  });

  it("native histograms are refused, naming the series", () => {
    throwsAt(
      () => decode([ok, { labels: { __name__: "latency", job: "api" }, histograms: [{ countInt: 3, sum: 1.5, timestamp: T0 }] }]),
      BadInputError,
      "timeseries[1].histograms",
      'latency{job="api"}',
      "native histograms are not supported",
    );
  });

  it("label limits from canonicalLabels, with the series index", () => {
    const labels: Record<string, string> = { __name__: "m" };
    for (let i = 0; i < 70; i++) labels[`l${i}`] = "v";
    throwsAt(() => decode([ok, { labels, samples: [] }]), TooLargeError, "timeseries[1].labels", "number of labels");
    throwsAt(() => decode([{ labels: { __name__: "m", job: "x".repeat(5000) } }]), TooLargeError, "timeseries[0].labels[1]", 'value of label "job"');
    throwsAt(() => decode([{ labels: { __name__: "m", ["n".repeat(300)]: "x" } }]), TooLargeError, "timeseries[0].labels[1]", "label name");
  });

  it("samples and series per request limits", () => {
    const limits = { ...LIMITS, samplesPerBatchMax: 3, seriesPerBatchMax: 2 };
    throwsAt(() => decode([{ labels: { __name__: "m" }, samples: [1, 2, 3, 4].map((i) => ({ value: i, timestamp: i })) }], limits), TooLargeError, "timeseries[0].samples[3]", "number of samples in one request exceeds the limit of 3");
    const s = (n: string): Ts => ({ labels: { __name__: n }, samples: [{ value: 1, timestamp: 1 }] });
    throwsAt(() => decode([s("a"), s("b"), s("c")], limits), TooLargeError, "timeseries[2]", "number of series in one request exceeds the limit of 2");
    assert.equal(decode([s("a"), s("a"), s("b")], limits).batch!.series.length, 2, "a repeated series counts once");
  });

  it("protobuf with the wrong wire type, truncated, or past its end", () => {
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | 0).uint32(5); // timeseries as a varint
    throwsAt(() => decodeWriteRequest(w.finish(), { limits: LIMITS }), BadInputError, "timeseries[0]", "wire type varint");
    const raw = proto([ok]);
    throwsAt(() => decodeWriteRequest(raw.subarray(0, raw.length - 3), { limits: LIMITS }), BadInputError, "corrupt protobuf", "timeseries[0]");
    throwsAt(() => decodeRemoteWrite(snappy.compress(Buffer.from([0x0a, 0x05, 0x0a])), { limits: LIMITS }), BadInputError, "corrupt protobuf");
    throwsAt(() => decodeRemoteWrite(snappy.compress(Buffer.from("not a protobuf at all, just text")), { limits: LIMITS }), BadInputError, "corrupt protobuf");
    throwsAt(() => decodeWriteRequest(Buffer.concat([raw, new Uint8Array(4)]), { limits: LIMITS }), BadInputError, "field number 0 in WriteRequest");
    // A label whose length prefix claims more than its series holds.
    const w2 = protobuf.Writer.create();
    w2.uint32((1 << 3) | 2).fork().uint32((1 << 3) | 2).uint32(50).ldelim();
    w2.uint32((3 << 3) | 2).bytes(new Uint8Array(60));
    throwsAt(() => decodeWriteRequest(w2.finish(), { limits: LIMITS }), BadInputError, "timeseries[0].labels[0] runs past the end of its parent");
  });
});

describe("remote write: snappy", () => {
  it("agrees with snappyjs on random and repetitive inputs", () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let k = 0; k < 200; k++) {
      const n = Math.floor(rnd() * 5000);
      const alphabet = 1 + Math.floor(rnd() * 255);
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = rnd() < 0.7 && i > 8 ? data[i - 1 - Math.floor(rnd() * 8)]! : Math.floor(rnd() * alphabet);
      assert.deepEqual(Buffer.from(snappyDecode(snappy.compress(data), 1 << 20)), Buffer.from(data));
    }
    const big = new Uint8Array(200_000).fill(7);
    assert.deepEqual(Buffer.from(snappyDecode(snappy.compress(big), 1 << 20)), Buffer.from(big));
  });

  it("zip-bomb guard: the declared length is checked before anything is decompressed or allocated", () => {
    // Preamble declaring 4 GiB - 1, then a copy that would expand forever.
    const bomb = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x41, 0xfe, 0x01, 0x00]);
    assert.equal(snappyDeclaredLength(bomb).length, 0xffffffff);
    throwsAt(() => snappyDecode(bomb, 64 << 20), TooLargeError, "field body", "4294967295 uncompressed bytes", "exceeds the limit of 67108864");
    throwsAt(() => decodeRemoteWrite(snappy.compress(new Uint8Array(1025)), { limits: { ...LIMITS, bodyBytesMax: 1024 } }), TooLargeError, "1025 uncompressed bytes");
    throwsAt(() => snappyDecode(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 1 << 30), BadInputError, "corrupt snappy", "longer than 5 bytes");
    throwsAt(() => snappyDecode(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x7f]), 1 << 30), BadInputError, "corrupt snappy", "exceeds 32 bits");
  });

  it("corrupt input is a BadInputError naming the problem", () => {
    const good = snappy.compress(new TextEncoder().encode("hello hello hello hello hello"));
    throwsAt(() => snappyDecode(new Uint8Array(0), 100), BadInputError, "corrupt snappy", "truncated");
    throwsAt(() => snappyDecode(good.subarray(0, good.length - 2), 100), BadInputError, "corrupt snappy");
    throwsAt(() => snappyDecode(Uint8Array.from([3, 0x10, 1, 2, 3, 4, 5]), 100), BadInputError, "corrupt snappy", "exceeds the declared length");
    throwsAt(() => snappyDecode(Uint8Array.from([10, 0x0c, 1, 2, 3, 4]), 100), BadInputError, "corrupt snappy", "output is 4 bytes but the block declares 10");
    throwsAt(() => snappyDecode(Uint8Array.from([8, 0x01, 0x05]), 100), BadInputError, "corrupt snappy", "refers 5 bytes back from output byte 0");
    throwsAt(() => snappyDecode(Uint8Array.from([8, 0xf0, 0xff, 0xff, 0xff, 0x0f]), 100), BadInputError, "corrupt snappy", "runs past the end");
    throwsAt(() => decodeRemoteWrite(new TextEncoder().encode("up 1\n"), { limits: LIMITS }), BadInputError, "corrupt");
  });
});

describe("remote write: storing the rest of a request", () => {
  const batch = decode([
    { labels: { __name__: "a" }, samples: [1, 2, 3].map((i) => ({ value: i, timestamp: i })) },
    { labels: { __name__: "b" }, samples: [{ value: 9, timestamp: 1 }] },
  ]).batch!;

  it("withoutPoints removes exactly the named points", () => {
    const { batch: rest, removed } = withoutPoints(batch, [
      { series: "a", timestampNs: "2000000", storedValue: 0, offeredValue: 2 },
      { series: "b", timestampNs: "1000000", storedValue: 0, offeredValue: 9 },
      { series: "zzz", timestampNs: "1", storedValue: 0, offeredValue: 0 },
    ]);
    assert.equal(removed, 2);
    assert.equal(rest!.sampleCount, 2);
    assert.deepEqual([...plain(rest!).keys()], ["a"]);
    assert.deepEqual([...seriesOf(rest!, "a").timestampsNs], [1_000_000n, 3_000_000n]);
    const all = withoutPoints(batch, [1, 2, 3].map((i) => ({ series: "a", timestampNs: `${i}000000`, storedValue: 0, offeredValue: i })).concat([{ series: "b", timestampNs: "1000000", storedValue: 0, offeredValue: 9 }]));
    assert.deepEqual(all, { batch: null, removed: 4 });
  });

  it("partialBatchId is derived from the request id and the remainder, at most 128 bytes", () => {
    const rest = encodeWithDigest(withoutPoints(batch, [{ series: "b", timestampNs: "1000000", storedValue: 0, offeredValue: 9 }]).batch!);
    const digestId = "f".repeat(64);
    const id = partialBatchId(digestId, rest);
    assert.equal(id, `${digestId}~partial-${rest.sha256.slice(0, 40)}`);
    assert.equal(partialBatchId(digestId, rest), id, "deterministic");
    assert.equal(partialBatchId("my-key", rest), `my-key~partial-${rest.sha256.slice(0, 40)}`);
    const long = partialBatchId("k".repeat(128), rest);
    assert.ok(long.length <= 128);
    assert.match(long, /^[0-9a-f]{64}~partial-[0-9a-f]{40}$/);
    assert.notEqual(partialBatchId("k".repeat(127), rest), long);
  });
});

describe("remote write: the series cache across requests", () => {
  it("a series seen before decodes to the same batch as without the cache, request after request", () => {
    const cache = new SeriesInternCache();
    const series = (k: number): Ts[] =>
      Array.from({ length: 50 }, (_, i) => ({
        labels: { __name__: `m${i % 7}`, job: "node", instance: `h${i}:9100`, "ünï": "välue\n\"x" },
        samples: [{ value: i + k / 10, timestamp: T0 + k * 15_000 }],
      }));
    for (let k = 0; k < 3; k++) {
      const raw = proto(series(k));
      const cold = decodeWriteRequest(raw, { limits: LIMITS });
      const warm = decodeWriteRequest(raw, { limits: LIMITS, seriesCache: cache });
      assert.deepEqual(encodeBatch(warm.batch!), encodeBatch(cold.batch!), `request ${k}`);
      assert.deepEqual(plain(warm.batch!), plain(cold.batch!));
    }
    assert.equal(cache.stats().misses, 50, "each series decoded once");
    assert.ok(cache.stats().hits >= 100);
  });

  it("labels that follow a series' samples are still read (the cache keys only labels in front)", () => {
    const cache = new SeriesInternCache();
    // timeseries { labels{__name__=m}, samples{1@T0}, labels{job=x} } by hand: protobufjs writes labels first.
    const label = (n: string, v: string): number[] => {
      const body = [0x0a, n.length, ...Buffer.from(n), 0x12, v.length, ...Buffer.from(v)];
      return [0x0a, body.length, ...body];
    };
    const sampleBody = [0x09, ...new Uint8Array(new Float64Array([1]).buffer), 0x10, ...varint(T0)];
    const ts = [...label("__name__", "m"), 0x12, sampleBody.length, ...sampleBody, ...label("job", "x")];
    const raw = new Uint8Array([0x0a, ts.length, ...ts]);
    for (let k = 0; k < 2; k++) {
      const r = decodeWriteRequest(raw, { limits: LIMITS, seriesCache: cache });
      assert.deepEqual([...plain(r.batch!).keys()], ['m{job="x"}'], `request ${k}`);
    }
    // The same labels in front, cached, and then a request whose series carries one more label after its samples.
    const front = decodeWriteRequest(proto([{ labels: { __name__: "m" }, samples: [{ value: 2, timestamp: T0 }] }]), { limits: LIMITS, seriesCache: cache });
    assert.deepEqual([...plain(front.batch!).keys()], ["m"]);
    assert.deepEqual([...plain(decodeWriteRequest(raw, { limits: LIMITS, seriesCache: cache }).batch!).keys()], ['m{job="x"}']);
  });

  it("millisecond timestamps at the edges of the int64 ns range, negative ones included, are exact", () => {
    const edges = ["9223372036854", "-9223372036854", "-1", "0", "1", "4194304", "-4194305"];
    const r = decode([{ labels: { __name__: "m" }, samples: edges.map((timestamp, i) => ({ value: i, timestamp })) }]);
    const want = edges.map((e) => BigInt(e) * MS).sort((a, b) => (a < b ? -1 : 1));
    assert.deepEqual([...seriesOf(r.batch!, "m").timestampsNs], want);
    throwsAt(() => decode([{ labels: { __name__: "m" }, samples: [{ value: 1, timestamp: "-9223372036855" }] }]), BadInputError, "timeseries[0].samples[0].timestamp", "out of the int64");
    throwsAt(() => decode([{ labels: { __name__: "m" }, samples: [{ value: 1, timestamp: "-9223372036854775808" }] }]), BadInputError, "timeseries[0].samples[0].timestamp", "out of the int64");
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
