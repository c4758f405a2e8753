// Round trips: random series and values, serialised into each format, parse
// back to exactly the batch the core builder makes from the same points.

import { describe, it } from "node:test";
import fc from "fast-check";
import { BatchBuilder, type Batch } from "../../src/core/batch.js";
import { canonicalLabels } from "../../src/core/labels.js";
import { INT64_MAX, INT64_MIN } from "../../src/core/time.js";
import { parseCsv } from "../../src/ingest/csv.js";
import { parseInflux } from "../../src/ingest/influx.js";
import { parseVmJson } from "../../src/ingest/vmjson.js";
import { assertSameBatch, bytes, formatFloat, LIMITS, NOW_NS } from "./util.js";

const RUNS = 150;

// Strings the store accepts: no lone surrogates, no U+FFFD (core/labels.ts refuses both).
const storable = (s: string) => !/[\uD800-\uDFFF\uFFFD]/u.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""));
const text = (extra: (s: string) => boolean = () => true) =>
  fc.string({ unit: fc.oneof(fc.constantFrom(",", "=", " ", "\\", '"', "\t", "#", "\r", "_"), fc.string({ unit: "binary", minLength: 1, maxLength: 1 })), minLength: 1, maxLength: 10 }).filter((s) => storable(s) && extra(s));

const labelName = fc.stringMatching(/^[a-z_][a-z0-9_]{0,6}$/).filter((n) => !["__name__", "metric", "time", "timestamp", "value"].includes(n));

const value = fc.oneof(
  fc.double(),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1e308, -1e308, 5e-324, -5e-324, Number.MAX_VALUE, Number.MIN_VALUE, 0.1, 1 / 3),
);
const timestampNs = fc.bigInt({ min: INT64_MIN, max: INT64_MAX });

interface GenSeries {
  name: string;
  labels: [string, string][];
  points: [bigint, number][];
}

/** Series with distinct label names, each with distinct timestamps, so no two points collide. */
function seriesArb(nameArb: fc.Arbitrary<string>, labelValue: fc.Arbitrary<string>, ts: fc.Arbitrary<bigint>): fc.Arbitrary<GenSeries[]> {
  const one = fc.record({
    name: nameArb,
    labels: fc.uniqueArray(fc.tuple(labelName, labelValue), { maxLength: 4, selector: (l) => l[0] }),
    points: fc.uniqueArray(fc.tuple(ts, value), { minLength: 1, maxLength: 8, selector: (p) => p[0] }),
  });
  // Distinct timestamps across all series too: different generated series can map to one stored series.
  return fc.array(one, { minLength: 1, maxLength: 6 }).map((all) => {
    const seen = new Set<bigint>();
    return all.map((s) => ({ ...s, points: s.points.filter(([t]) => (seen.has(t) ? false : (seen.add(t), true))) })).filter((s) => s.points.length > 0);
  }).filter((all) => all.length > 0);
}

function expected(all: GenSeries[], name: (s: GenSeries) => string = (s) => s.name): Batch {
  const b = new BatchBuilder(LIMITS);
  for (const s of all) {
    const key = b.series(canonicalLabels([["__name__", name(s)], ...s.labels], LIMITS));
    for (const [t, v] of s.points) b.addSample(key, t, v);
  }
  return b.build();
}

describe("round trips", () => {
  it("vmjson", () => {
    const ms = fc.bigInt({ min: INT64_MIN / 1_000_000n, max: INT64_MAX / 1_000_000n }).map((t) => t * 1_000_000n);
    fc.assert(
      fc.property(seriesArb(text(), text(), ms), (all) => {
        const lines = all.map((s) => {
          const metric = JSON.stringify(Object.fromEntries([["__name__", s.name], ...s.labels]));
          const values = s.points.map(([, v]) => (Number.isNaN(v) ? '"NaN"' : v === Infinity ? '"+Inf"' : v === -Infinity ? '"-Inf"' : formatFloat(v)));
          const timestamps = s.points.map(([t]) => String(t / 1_000_000n));
          return `{"metric":${metric},"values":[${values.join(",")}],"timestamps":[${timestamps.join(",")}]}`;
        });
        assertSameBatch(parseVmJson(bytes(lines.join("\n")), { limits: LIMITS }), expected(all));
      }),
      { numRuns: RUNS },
    );
  });

  it("influx, with escapes and string fields in between", () => {
    const esc = (s: string, special: RegExp) => s.replace(special, (c) => `\\${c}`);
    const measurement = text((s) => !s.includes("\n") && !s.startsWith("#") && !s.startsWith("\t"));
    const field = fc.record({ measurement, field: text((s) => !s.includes("\n")) });
    fc.assert(
      fc.property(seriesArb(field.map((f) => JSON.stringify([f.measurement, f.field])), text((s) => !s.includes("\n")), timestampNs), fc.string({ maxLength: 8 }).filter((s) => !s.includes("\n")), (all, str) => {
        const lines: string[] = [];
        for (const s of all) {
          const [m, f] = JSON.parse(s.name) as [string, string];
          const series = esc(m, /[\\, ]/g) + s.labels.map(([k, v]) => `,${esc(k, /[\\,= ]/g)}=${esc(v, /[\\,= ]/g)}`).join("");
          const strField = `s="${str.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
          for (const [t, v] of s.points) lines.push(`${series} ${strField},${esc(f, /[\\,= ]/g)}=${formatFloat(v)} ${t}`);
        }
        const name = (s: GenSeries) => {
          const [m, f] = JSON.parse(s.name) as [string, string];
          return `${m}_${f}`;
        };
        assertSameBatch(parseInflux(bytes(lines.join("\n")), { limits: LIMITS, nowNs: NOW_NS }), expected(all, name));
      }),
      { numRuns: RUNS },
    );
  });

  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

  it("csv with a header row and ns precision", () => {
    fc.assert(
      fc.property(seriesArb(text(), text(), timestampNs), (all) => {
        const labelNames = [...new Set(all.flatMap((s) => s.labels.map(([n]) => n)))].sort();
        const rows = [["__name__", ...labelNames, "timestamp", "value"].map(quote).join(",")];
        for (const s of all) {
          const byName = new Map(s.labels);
          for (const [t, v] of s.points) rows.push([s.name, ...labelNames.map((n) => byName.get(n) ?? ""), String(t), formatFloat(v)].map(quote).join(","));
        }
        assertSameBatch(parseCsv(bytes(rows.join("\r\n")), { limits: LIMITS, nowNs: NOW_NS, precision: "ns" }), expected(all));
      }),
      { numRuns: RUNS },
    );
  });

  it("csv with a VictoriaMetrics format and RFC 3339 times", () => {
    // RFC 3339 covers years 0000-9999; int64 ns covers 1677-2262.
    const ts = fc.bigInt({ min: -9_000_000_000_000_000_000n, max: 9_000_000_000_000_000_000n });
    const rfc3339 = (t: bigint) => {
      const ms = t / 1_000_000n - (t % 1_000_000n < 0n ? 1n : 0n);
      const subMs = t - ms * 1_000_000n;
      const iso = new Date(Number(ms)).toISOString(); // 2023-11-14T22:13:20.123Z
      return `${iso.slice(0, 23)}${String(subMs).padStart(6, "0")}Z`;
    };
    fc.assert(
      fc.property(seriesArb(fc.constant("x"), text(), ts), (all) => {
        // One label column "k" (the series' first label value, or empty) and the metric name from the format.
        const flattened = all.map((s) => ({ ...s, name: "temp", labels: s.labels.slice(0, 1).map(([, v]): [string, string] => ["k", v]) }));
        const seen = new Set<string>();
        const distinct = flattened.filter((s) => {
          const k = JSON.stringify(s.labels);
          return seen.has(k) ? false : (seen.add(k), true);
        });
        const rows: string[] = [];
        for (const s of distinct) for (const [t, v] of s.points) rows.push([formatFloat(v), rfc3339(t), s.labels[0]?.[1] ?? "", "ignored"].map(quote).join(","));
        const batch = parseCsv(bytes(rows.join("\n")), { limits: LIMITS, nowNs: NOW_NS, csvFormat: "2:time:rfc3339,1:metric:temp,3:label:k" });
        assertSameBatch(batch, expected(distinct));
      }),
      { numRuns: RUNS },
    );
  });
});
