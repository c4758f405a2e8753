// In-process unit tests of the HTTP layer's pure parts (no node process).

import { test } from "node:test";
import assert from "node:assert/strict";
import { answerFor, answerForBug, STATUS_BY_CODE } from "../../src/server/http-errors.js";
import { jsonNumber, toJson } from "../../src/server/json.js";
import { exportLinePieces } from "../../src/server/read-routes.js";
import { matchRoute } from "../../src/server/routes.js";
import { BadInputError, ConflictError, CorruptionError, HqError, NotFoundError, OverloadError, TooLargeError, UnavailableError } from "../../src/core/errors.js";
import { influxLineSamples, splitLines, vmjsonLineSamples } from "../../src/cli/write-cmd.js";
import { parseDuration, parseHostPort } from "../../src/cli/node-cmd.js";

test("every error code maps to one status; retryable ones carry Retry-After", () => {
  assert.deepEqual(STATUS_BY_CODE, {
    bad_input: 400,
    too_large: 413,
    conflict: 409,
    overloaded: 429,
    unavailable: 503,
    not_found: 404,
    corruption: 500,
    internal: 500,
  });
  const bad = answerFor(new BadInputError("missing field value", { line: 3, column: 7 }));
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.body, {
    line: 3,
    column: 7,
    status: "error",
    errorType: "bad_data",
    error: "line 3, column 7: missing field value",
    code: "bad_input",
    retryable: false,
  });
  assert.equal(answerFor(new TooLargeError("request body", 10)).status, 413);
  const over = answerFor(new OverloadError("queue full", 2));
  assert.equal(over.status, 429);
  assert.equal(over.headers["Retry-After"], "2");
  assert.equal(over.body["retryable"], true);
  const un = answerFor(new UnavailableError("below quorum", 0.2));
  assert.equal(un.status, 503);
  assert.equal(un.headers["Retry-After"], "1");
  assert.equal(answerFor(new NotFoundError("x")).status, 404);
  assert.equal(answerFor(new CorruptionError("crc", "f", 1)).status, 500);
  assert.equal(answerFor(new HqError("internal", "x")).status, 500);
  const bug = answerForBug();
  assert.equal(bug.status, 500);
  assert.equal(bug.body["code"], "internal");
});

test("conflicts list the points, NaN values survive as strings", () => {
  const c = answerFor(new ConflictError("1 point differs", [{ series: 'a{b="c"}', timestampNs: "5", storedValue: NaN, offeredValue: 1 }]));
  assert.equal(c.status, 409);
  assert.deepEqual(JSON.parse(toJson(c.body)).conflicts, [{ series: 'a{b="c"}', timestampNs: "5", storedValue: "NaN", offeredValue: 1 }]);
  assert.equal(c.body["status"], "error", "details never override the fixed fields");
});

test("jsonNumber: finite numbers as JSON, -0 kept, non-finite as strings", () => {
  assert.equal(jsonNumber(1.5), "1.5");
  assert.equal(jsonNumber(-0), "-0");
  assert.equal(jsonNumber(1e21), "1e+21");
  assert.equal(jsonNumber(NaN), '"NaN"');
  assert.equal(jsonNumber(Infinity), '"+Inf"');
  assert.equal(jsonNumber(-Infinity), '"-Inf"');
  for (const v of [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -123.456]) assert.equal(JSON.parse(jsonNumber(v)), v);
});

test("export lines: VictoriaMetrics fields first, then provenance; long series in pieces", () => {
  const n = 20_000;
  const ts = new BigInt64Array(n);
  const vs = new Float64Array(n);
  const origins = new Uint8Array(n);
  const refs = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    ts[i] = 1700000000000000000n + BigInt(i) * 1_000_001n;
    vs[i] = i === 5 ? NaN : i / 4;
    origins[i] = i % 3 === 0 ? 1 : 0;
    refs[i] = i % 2;
  }
  const pieces = [...exportLinePieces({ key: "m", labels: [["__name__", "m"], ["k", 'v"']], timestampsNs: ts, values: vs, origins, batchRefs: refs, batchIds: ["b0", "b1"] })];
  assert.ok(pieces.length > 10, "a long series is written in pieces");
  const text = pieces.join("");
  assert.ok(text.endsWith("}\n"));
  const line = JSON.parse(text) as Record<string, unknown[]>;
  assert.deepEqual(Object.keys(line), ["metric", "values", "timestamps", "timestamps_ns", "origins", "batches"]);
  assert.deepEqual(line["metric"], { __name__: "m", k: 'v"' });
  assert.equal(line["values"]!.length, n);
  assert.equal(line["values"]![5], "NaN");
  assert.equal(line["timestamps_ns"]![n - 1], (1700000000000000000n + BigInt(n - 1) * 1_000_001n).toString());
  assert.equal(line["timestamps"]![1], 1700000000001);
  assert.equal(line["origins"]![3], "inferred");
  assert.equal(line["origins"]![4], "original");
  assert.equal(line["batches"]![1], "b1");
});

test("routes: known, 405 with allowed methods, unknown", () => {
  const m = matchRoute("/api/v1/label/job/values", "GET");
  assert.ok(m.route !== null && m.route.name === "/api/v1/label/:name/values");
  assert.deepEqual(m.route !== null ? (m as { params: string[] }).params : null, ["job"]);
  const w = matchRoute("/api/v1/import", "GET");
  assert.equal(w.route, null);
  assert.deepEqual((w as { allowed: string[] | null }).allowed, ["POST", "PUT"]);
  const u = matchRoute("/nope", "GET");
  assert.deepEqual(u, { route: null, allowed: null });
});

test("write splitting: samples per line and chunks on line boundaries", () => {
  assert.equal(influxLineSamples("m,t=a a=1,b=2i,c=\"x,y z\" 1"), 3);
  assert.equal(influxLineSamples("m\\ x,t=a\\,b v=1"), 1);
  assert.equal(influxLineSamples("# comment"), 0);
  assert.equal(vmjsonLineSamples('{"metric":{},"values":[1,2,3],"timestamps":[1,2,3]}'), 3);
  assert.equal(vmjsonLineSamples("{bad"), 1);
  const text = ["m a=1,b=2 1", "m a=1,b=2 2", "", "m a=1,b=2 3", "m a=1 4"].join("\n") + "\n";
  const chunks = splitLines(text, influxLineSamples, 4, 1 << 20);
  assert.deepEqual(
    chunks.map((c) => [c.firstLine, c.lastLine, c.samples]),
    [
      [1, 3, 4],
      [4, 5, 3],
    ],
  );
  assert.equal(chunks.map((c) => c.text).join(""), "m a=1,b=2 1\nm a=1,b=2 2\n\nm a=1,b=2 3\nm a=1 4\n");
  const big = splitLines("m a=1,b=2,c=3 1\n", influxLineSamples, 2, 1 << 20);
  assert.equal(big.length, 1, "a line is never split, even past the limit");
});

test("node flags: durations and addresses", () => {
  assert.equal(parseDuration("30d", "--retention"), 30 * 86_400_000);
  assert.equal(parseDuration("1h30m", "--retention"), 5_400_000);
  assert.equal(parseDuration("500ms", "x"), 500);
  assert.equal(parseDuration("0", "x"), null);
  assert.throws(() => parseDuration("30 days", "x"));
  assert.throws(() => parseDuration("", "x"));
  assert.deepEqual(parseHostPort("127.0.0.1:8428"), { host: "127.0.0.1", port: 8428 });
  assert.deepEqual(parseHostPort("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(parseHostPort(":9000"), { host: "0.0.0.0", port: 9000 });
  assert.throws(() => parseHostPort("localhost"));
  assert.throws(() => parseHostPort("h:70000"));
});
