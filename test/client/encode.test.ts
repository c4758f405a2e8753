// writePoints' encoding, checked against the server's own parsers: every
// point must parse back to exactly the same series, ns timestamp and value bits.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BatchBuilder, type Batch } from "../../src/core/batch.js";
import { BadInputError } from "../../src/core/errors.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { INT64_MAX, INT64_MIN } from "../../src/core/time.js";
import { parseCsv } from "../../src/ingest/csv.js";
import { parseInflux } from "../../src/ingest/influx.js";
import { encodePoints, valueText, type Point } from "../../src/client/encode.js";
import { assertSameBatch, LIMITS, NOW_NS } from "../ingest/util.js";

const utf8 = new TextEncoder();

function parsed(points: Point[]): { format: string; batch: Batch } {
  const enc = encodePoints(points);
  const body = utf8.encode(enc.body);
  const batch = enc.format === "influx" ? parseInflux(body, { limits: LIMITS, nowNs: NOW_NS, precision: "ns" }) : parseCsv(body, { limits: LIMITS, nowNs: NOW_NS, precision: "ns", csvFormat: enc.csvFormat ?? null });
  return { format: enc.format, batch };
}

function expected(points: Point[]): Batch {
  const b = new BatchBuilder(LIMITS);
  for (const p of points) b.add(canonicalLabels([["__name__", p.metric], ...Object.entries(p.labels ?? {})], LIMITS), p.timestampNs, p.value);
  return b.build();
}

// Strings the store accepts: no lone surrogates, no U+FFFD.
const storable = (s: string): boolean => !/[\uD800-\uDFFF\uFFFD]/u.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""));
const nasty = fc.constantFrom(",", "=", " ", "\\", '"', "\t", "#", "\r", "\n", "_", ":", "\uFEFF", "é", "\u{1F600}");
const text = fc.string({ unit: fc.oneof(nasty, fc.string({ unit: "binary", minLength: 1, maxLength: 1 })), minLength: 1, maxLength: 8 }).filter((s) => storable(s) && s !== "__name__");
const plainName = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,10}$/);
const value = fc.oneof(fc.double(), fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1e21, 5e-324, Number.MAX_VALUE, 0.1, 1 / 3));
const ts = fc.bigInt({ min: INT64_MIN, max: INT64_MAX });

function pointsArb(name: fc.Arbitrary<string>, labelName: fc.Arbitrary<string>, labelValue: fc.Arbitrary<string>, maxLength = 12): fc.Arbitrary<Point[]> {
  const point = fc.record({
    metric: name,
    labels: fc.dictionary(labelName, fc.oneof(labelValue, fc.constant("")), { maxKeys: 3 }),
    timestampNs: ts,
    value,
  });
  // Distinct timestamps, so no two generated points are one stored point.
  return fc.uniqueArray(point, { minLength: 1, maxLength, selector: (p) => p.timestampNs });
}

describe("encodePoints round trips through the server's parsers", () => {
  it("Prometheus-style names: always Influx line protocol unless a label-less name has no inner '_'", () => {
    fc.assert(
      fc.property(pointsArb(plainName, plainName.filter((n) => n !== "__name__"), text), (points) => {
        const { format, batch } = parsed(points);
        assertSameBatch(batch, expected(points));
        const lpOk = points.every((p) => {
          const labelled = Object.values(p.labels ?? {}).some((v) => v !== "");
          const anyBreak = [p.metric, ...Object.entries(p.labels ?? {}).flat()].some((s) => /[\r\n]/.test(s));
          const split = p.metric.indexOf("_", 1); // the first inner '_' (names here never start with '#' or a tab)
          return !anyBreak && (labelled || (split > 0 && split < p.metric.length - 1));
        });
        if (lpOk) assert.equal(format, "influx");
      }),
      { numRuns: 300 },
    );
  });

  for (const maxLength of [1, 12]) {
    it(`arbitrary names and values, batches of up to ${maxLength}: exact, or refused only for a ',' in a name that needs CSV`, () => {
      fc.assert(
        fc.property(pointsArb(text, text, text, maxLength), (points) => {
          let got: { format: string; batch: Batch };
          try {
            got = parsed(points);
          } catch (e) {
            assert.ok(e instanceof BadInputError, String(e));
            assert.ok(points.some((p) => p.metric.includes(",") || Object.keys(p.labels ?? {}).some((k) => k.includes(","))), e.message);
            return;
          }
          assertSameBatch(got.batch, expected(points));
        }),
        { numRuns: 500 },
      );
    });
  }

  it("chooses the form per batch", () => {
    const t = 1700000000123456789n;
    assert.equal(encodePoints([{ metric: "cpu_usage", timestampNs: t, value: 1 }]).body, "cpu usage=1 1700000000123456789\n");
    assert.equal(encodePoints([{ metric: "temp", labels: { room: "a b", x: "" }, timestampNs: t, value: -0 }]).body, ",room=a\\ b temp=-0 1700000000123456789\n");
    const up = encodePoints([
      { metric: "up", timestampNs: t, value: 1 },
      { metric: "temp", labels: { room: 'a,"b"\n' }, timestampNs: t, value: NaN },
    ]);
    assert.equal(up.format, "csv");
    assert.equal(up.csvFormat, "1:time:unix_ns,2:metric:up,3:metric:temp,4:label:room");
    assert.equal(up.body, `1700000000123456789,1,,\n1700000000123456789,,NaN,"a,""b""\n"\n`);
    assert.throws(() => encodePoints([{ metric: "a,b", timestampNs: t, value: 1 }]), BadInputError);
    assert.throws(() => encodePoints([{ metric: "m", labels: { __name__: "x" }, timestampNs: t, value: 1 }]), BadInputError);
    assert.throws(() => encodePoints([{ metric: "", timestampNs: t, value: 1 }]), BadInputError);
    assert.throws(() => encodePoints([{ metric: "m", timestampNs: 1 as unknown as bigint, value: 1 }]), BadInputError);
    assert.throws(() => encodePoints([]), BadInputError);
  });

  it("value text keeps the bits", () => {
    for (const v of [0, -0, 1.5, 1e21, -1e-7, 5e-324, Number.MAX_VALUE, 0.1 + 0.2]) assert.ok(Object.is(Number(valueText(v)), v), String(v));
    assert.deepEqual([NaN, Infinity, -Infinity].map(valueText), ["NaN", "+Inf", "-Inf"]);
  });
});
