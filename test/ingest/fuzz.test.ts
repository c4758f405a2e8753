// Bounded fuzzing: mutated valid bodies, random bytes and hostile shapes.
// Every outcome must be a well-formed Batch or an HqError; anything else
// (TypeError, RangeError, InvariantError, a hang) fails the test.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Batch } from "../../src/core/batch.js";
import type { Limits } from "../../src/core/limits.js";
import { parseBody, type IngestFormat } from "../../src/ingest/index.js";
import { bytes, LIMITS, mutate, NOW_NS, outcome, randomBytes, rng } from "./util.js";

const MUTATIONS = 2500;
const RANDOM_BODIES = 500;
const TIME_BUDGET_MS = 6000;

const SEEDS: Record<IngestFormat, string[]> = {
  vmjson: [
    '{"metric":{"__name__":"up","job":"node"},"values":[1,"NaN",-0,1e308],"timestamps":[1700000000000,1700000001000,1700000002000,1700000003000]}\n{"metric":{"__name__":"x"},"values":["Inf","-Inf"],"timestamps":[1,2]}\n',
    '\r\n{"metric":{"a":"\\u00e9\\"q\\\\"},"values":[5e-324],"timestamps":[-9223372036854]}',
  ],
  influx: [
    'cpu,host=a,region=eu usage=1.5,idle=2i,ok=t,msg="a \\"b\\", c" 1700000000123456789\n# comment\nmem free=3u\n',
    'my\\ meas\\,x,t\\=k=v\\ a\\\\ f\\ k=-1e-3,n=NaN 1\n,t=v f=1 2\r\n',
  ],
  csv: [
    'metric,host,time,value\ncpu,"a,""b""",1700000000000,1.5\nmem,b,2023-11-14T22:13:20.123456789Z,NaN\n',
    "metric,value\r\nm,1\r\n\r\nn,-inf\r\n",
  ],
};

const HOSTILE: string[] = [
  "[".repeat(50_000),
  '{"metric":'.repeat(20_000),
  `{"metric":{"a":"b"},"values":[${"1,".repeat(20_000)}1],"timestamps":[1]}`,
  "\\".repeat(50_000),
  `m f=${"9".repeat(50_000)}`,
  `m f=1 ${"9".repeat(50_000)}`,
  `m,${"a=b,".repeat(10_000)}a=b f=1 1`,
  `m ${"f=1,".repeat(10_000)}f=1 1`,
  '"'.repeat(50_001),
  `metric,value\n${'"",'.repeat(20_000)}`,
  `metric,value\n${"m,1\n".repeat(5_000)}`,
  `${",".repeat(50_000)}\n1`,
  "\u0000\u0001\u0002",
  "\ufeff",
  "\n".repeat(50_000),
  "m f=1 1e3",
  "metric,time,value\nm,9999-99-99T99:99:99Z,1",
  "metric,time,value\nm,0000-01-01T00:00:00Z,1",
  "metric,time,value\nm,1." + "0".repeat(5_000) + ",1",
];

const SMALL: Limits = { ...LIMITS, lineBytesMax: 256, seriesPerBatchMax: 4, samplesPerBatchMax: 16, labelsPerSeriesMax: 3, labelNameBytesMax: 8, labelValueBytesMax: 8 };

function run(format: IngestFormat, body: Uint8Array, limits: Limits, csvFormat: string | null = null): string {
  return outcome((): Batch => parseBody(format, body, { limits, nowNs: NOW_NS, csvFormat }));
}

for (const format of ["vmjson", "influx", "csv"] as const) {
  describe(`fuzz ${format}`, () => {
    it("mutated valid bodies, random bytes and hostile inputs give a Batch or an HqError", () => {
      const started = performance.now();
      const rand = rng(0x5eed + format.length);
      const seen = new Map<string, number>();
      const count = (o: string) => seen.set(o, (seen.get(o) ?? 0) + 1);
      for (const seed of SEEDS[format]) assert.equal(run(format, bytes(seed), LIMITS), "batch", `seed must parse: ${seed}`);
      for (let i = 0; i < MUTATIONS && performance.now() - started < TIME_BUDGET_MS; i++) {
        const seed = bytes(SEEDS[format][i % SEEDS[format].length]!);
        const body = mutate(seed, rand);
        count(run(format, body, i % 3 === 0 ? SMALL : LIMITS));
        if (format === "csv" && i % 5 === 0) count(run(format, body, LIMITS, "1:metric:m,2:label:host,3:time:rfc3339"));
      }
      for (let i = 0; i < RANDOM_BODIES && performance.now() - started < TIME_BUDGET_MS; i++) count(run(format, randomBytes(rand, 200), i % 2 === 0 ? SMALL : LIMITS));
      for (const h of HOSTILE) count(run(format, bytes(h), LIMITS));
      // The mutations must reach both sides: some bodies still parse, most fail cleanly.
      assert.ok((seen.get("batch") ?? 0) > 0, `no mutated body parsed: ${JSON.stringify([...seen])}`);
      assert.ok((seen.get("bad_input") ?? 0) > 0, `no mutated body failed: ${JSON.stringify([...seen])}`);
    });

  });
}

describe("fuzz csv format parameter", () => {
  it("random formats give a Batch or an HqError", () => {
    const rand = rng(42);
    const pieces = ["1", "2", "3", "0", "99999", ":", ",", "metric", "label", "time", "unix_s", "rfc3339", "custom:", "m", "x", "__proto__", "constructor", ""];
    for (let i = 0; i < 1000; i++) {
      let f = "";
      const n = Math.floor(rand() * 12);
      for (let k = 0; k < n; k++) f += pieces[Math.floor(rand() * pieces.length)];
      run("csv", bytes("1,2,3\n4,5,6"), LIMITS, f);
    }
  });
});
