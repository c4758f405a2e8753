// Ingest endpoints against a REAL node process: every format writes and
// /api/v1/export reads back exactly; receipts; malformed input; limits; gzip.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { deflateSync, gzipSync, deflateRawSync } from "node:zlib";
import { request as httpRequest } from "node:http";
import { startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";
import { exportSeries, http, type ReceiptJson } from "../helpers/http.js";

const BODY_MAX = 64 * 1024;
let node: NodeProc;

before(async () => {
  node = await startNode({ args: ["--max-body-bytes", String(BODY_MAX)] });
});
after(async () => {
  await stopAll();
});

function assertReceipt(r: ReceiptJson, samples: number): void {
  assert.match(r.batchId, /^[0-9a-f]{64}$/);
  assert.equal(r.sha256, r.batchId, "without Idempotency-Key the batch id is the digest");
  assert.equal(r.samples, samples);
  assert.equal(r.accepted, samples);
  assert.equal(r.duplicates, 0);
  assert.equal(r.duplicate, false);
  assert.deepEqual(r.conflicts, []);
  assert.ok(Array.isArray(r.replicas) && r.replicas.length >= 1);
  assert.match(r.hlc, /^[0-9]+$/);
}

describe("VictoriaMetrics JSON lines: /api/v1/import", () => {
  test("writes and exports back exactly, NaN/Inf and -0 included", async () => {
    const line = {
      metric: { __name__: "vm_roundtrip", job: "a", "weird.label": 'q"uote\\' },
      values: [1.5, "NaN", "+Inf", "-Inf", -0, 1e-300, 123456789.123456],
      timestamps: [1700000000000, 1700000001000, 1700000002000, 1700000003000, 1700000004000, 1700000005000, 1700000006123],
    };
    // JSON.stringify writes -0 as 0: put the literal -0 in by hand.
    const text = JSON.stringify(line).replace('"-Inf",0,', '"-Inf",-0,');
    assert.match(text, /-0,/);
    const a = await http(`${node.url}/api/v1/import`, { body: text + "\n" });
    assert.equal(a.status, 200, a.text);
    const receipt = a.json() as ReceiptJson;
    assertReceipt(receipt, 7);

    const got = await exportSeries(node.url, "vm_roundtrip");
    assert.equal(got.length, 1);
    const s = got[0]!;
    assert.deepEqual(s.metric, line.metric);
    assert.deepEqual(s.values, [1.5, "NaN", "+Inf", "-Inf", -0, 1e-300, 123456789.123456]);
    assert.ok(Object.is(s.values[4], -0), "-0 is exported as -0");
    assert.deepEqual(s.timestamps, line.timestamps);
    assert.deepEqual(
      s.timestamps_ns,
      line.timestamps.map((t) => `${t}000000`),
    );
    assert.deepEqual(s.origins, Array(7).fill("original"));
    assert.deepEqual(s.batches, Array(7).fill(receipt.batchId));
  });

  test("malformed input: 400 naming line and field, nothing stored", async () => {
    const body =
      JSON.stringify({ metric: { __name__: "vm_bad" }, values: [1], timestamps: [1700000000000] }) +
      "\n" +
      JSON.stringify({ metric: { __name__: "vm_bad" }, values: [1, true], timestamps: [1700000000000, 1700000001000] }) +
      "\n";
    const a = await http(`${node.url}/api/v1/import`, { body });
    assert.equal(a.status, 400, a.text);
    const e = a.json() as { status: string; errorType: string; error: string; code: string; retryable: boolean; line?: number };
    assert.equal(e.status, "error");
    assert.equal(e.errorType, "bad_data");
    assert.equal(e.code, "bad_input");
    assert.equal(e.retryable, false);
    assert.match(e.error, /line 2/);
    assert.match(e.error, /values\[1\]/);
    assert.deepEqual(await exportSeries(node.url, "vm_bad"), [], "nothing of a refused batch is stored");

    const b = await http(`${node.url}/api/v1/import`, { body: '{"metric":{"__name__":"vm_bad"},"values":[1],"timestamps":[1\n' });
    assert.equal(b.status, 400);
    assert.match((b.json() as { error: string }).error, /line 1/);
  });
});

describe("Influx line protocol: /write and /api/v2/write", () => {
  test("/write answers 204 with the receipt in X-HQ-Receipt; ns timestamps kept", async () => {
    const body = "weather,station=x\\ y temp=21.5,hum=40i 1700000000123456789\nweather,station=x\\ y temp=22 1700000000123456790\n";
    const a = await http(`${node.url}/write?precision=ns&db=ignored`, { body });
    assert.equal(a.status, 204, a.text);
    assert.equal(a.text, "");
    const receipt = JSON.parse(a.headers.get("x-hq-receipt") ?? "null") as ReceiptJson;
    assertReceipt(receipt, 3);

    const temp = await exportSeries(node.url, 'weather_temp{station="x y"}');
    assert.equal(temp.length, 1);
    assert.deepEqual(temp[0]!.metric, { __name__: "weather_temp", station: "x y" });
    assert.deepEqual(temp[0]!.timestamps_ns, ["1700000000123456789", "1700000000123456790"]);
    assert.deepEqual(temp[0]!.timestamps, [1700000000123, 1700000000123]);
    assert.deepEqual(temp[0]!.values, [21.5, 22]);
    const hum = await exportSeries(node.url, "weather_hum");
    assert.deepEqual(hum[0]!.values, [40]);
  });

  test("?receipt=1 or Accept: application/json → 200 with the receipt body", async () => {
    const a = await http(`${node.url}/write?receipt=1`, { body: "rcpt v=1 1700000000000000001\n" });
    assert.equal(a.status, 200);
    assertReceipt(a.json() as ReceiptJson, 1);
    const b = await http(`${node.url}/api/v2/write?org=o&bucket=b&precision=us`, {
      body: "rcpt v=2 1700000000000001\n",
      headers: { Accept: "application/json" },
    });
    assert.equal(b.status, 200);
    assertReceipt(b.json() as ReceiptJson, 1);
    const got = await exportSeries(node.url, "rcpt_v");
    assert.deepEqual(got[0]!.timestamps_ns, ["1700000000000000001", "1700000000000001000"]);
  });

  test("precision: v1 n/u/ms/s, v2 ns/us/ms/s", async () => {
    for (const [path, p, ts, want] of [
      ["/write", "s", "1700000000", "1700000000000000000"],
      ["/write", "ms", "1700000000001", "1700000000001000000"],
      ["/write", "u", "1700000000000002", "1700000000000002000"],
      ["/write", "n", "1700000000000000003", "1700000000000000003"],
      ["/api/v2/write", "s", "1700000010", "1700000010000000000"],
      ["/api/v2/write", "ms", "1700000010001", "1700000010001000000"],
      ["/api/v2/write", "us", "1700000010000002", "1700000010000002000"],
      ["/api/v2/write", "ns", "1700000010000000003", "1700000010000000003"],
    ] as const) {
      const a = await http(`${node.url}${path}?precision=${p}&receipt=1`, { body: `prec v=1 ${ts}\n` });
      assert.equal(a.status, 200, `${path} ${p}: ${a.text}`);
      const got = await exportSeries(node.url, "prec_v");
      assert.ok(got[0]!.timestamps_ns.includes(want), `${path} precision=${p}: ${want} not in ${got[0]!.timestamps_ns.join(",")}`);
    }
    const bad = await http(`${node.url}/api/v2/write?precision=h`, { body: "prec v=1 1\n" });
    assert.equal(bad.status, 400);
    assert.match((bad.json() as { error: string }).error, /precision/);
  });

  test("malformed input: 400 naming line and column, nothing stored", async () => {
    const body = "influx_bad v=1 1700000000000000000\ninflux_bad v= 1700000000000000001\n";
    const a = await http(`${node.url}/write`, { body });
    assert.equal(a.status, 400, a.text);
    const e = a.json() as { error: string; line: number; errorType: string };
    assert.equal(e.errorType, "bad_data");
    assert.equal(e.line, 2);
    assert.match(e.error, /line 2/);
    assert.deepEqual(await exportSeries(node.url, '{__name__=~"influx_bad.*"}'), []);
  });
});

describe("CSV: /api/v1/import/csv", () => {
  test("format= parameter maps columns; exported back exactly", async () => {
    const body = "21.5,x,1700000000123456789\n22.25,y,1700000000123456790\n";
    const a = await http(`${node.url}/api/v1/import/csv?format=1:metric:csv_temp,2:label:room,3:time:unix_ns`, { body });
    assert.equal(a.status, 200, a.text);
    assertReceipt(a.json() as ReceiptJson, 2);
    const got = await exportSeries(node.url, "csv_temp");
    assert.equal(got.length, 2);
    const x = got.find((s) => s.metric["room"] === "x")!;
    assert.deepEqual(x.values, [21.5]);
    assert.deepEqual(x.timestamps_ns, ["1700000000123456789"]);
    assert.deepEqual(x.origins, ["original"]);
  });

  test("malformed input: 400 naming the line, nothing stored", async () => {
    const body = "1,a,1700000000000\nnot-a-number,b,1700000000001\n";
    const a = await http(`${node.url}/api/v1/import/csv?format=1:metric:csv_bad,2:label:k,3:time:unix_ms`, { body });
    assert.equal(a.status, 400, a.text);
    assert.match((a.json() as { error: string }).error, /line 2/);
    assert.deepEqual(await exportSeries(node.url, "csv_bad"), []);
  });
});

describe("bodies: limits and compression", () => {
  test("gzip and deflate (zlib and raw) bodies", async () => {
    const text = "zipped,enc=gzip v=1 1700000000000000000\n";
    const g = await http(`${node.url}/write?receipt=1`, { body: gzipSync(text), headers: { "Content-Encoding": "gzip" } });
    assert.equal(g.status, 200, g.text);
    const d = await http(`${node.url}/write?receipt=1`, { body: deflateSync(text.replace("gzip", "deflate")), headers: { "Content-Encoding": "deflate" } });
    assert.equal(d.status, 200, d.text);
    const r = await http(`${node.url}/write?receipt=1`, { body: deflateRawSync(text.replace("gzip", "raw")), headers: { "Content-Encoding": "deflate" } });
    assert.equal(r.status, 200, r.text);
    const got = await exportSeries(node.url, "zipped_v");
    assert.deepEqual(got.map((s) => s.metric["enc"]).sort(), ["deflate", "gzip", "raw"]);
    const bad = await http(`${node.url}/write`, { body: "not gzip at all", headers: { "Content-Encoding": "gzip" } });
    assert.equal(bad.status, 400);
    const br = await http(`${node.url}/write`, { body: "x v=1", headers: { "Content-Encoding": "br" } });
    assert.equal(br.status, 400);
  });

  test("body larger than the limit → 413 (Content-Length known), nothing stored", async () => {
    const line = "too_big,k=v v=1 1700000000000000000\n";
    const body = line.repeat(Math.ceil((BODY_MAX * 2) / line.length));
    const a = await http(`${node.url}/write`, { body });
    assert.equal(a.status, 413, a.text);
    const e = a.json() as { code: string; limit: number };
    assert.equal(e.code, "too_large");
    assert.equal(e.limit, BODY_MAX);
    assert.deepEqual(await exportSeries(node.url, "too_big_v"), []);
  });

  test("chunked body past the limit → 413 without buffering all of it", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(`${node.url}/api/v1/import`);
      const req = httpRequest({ hostname: u.hostname, port: u.port, path: u.pathname, method: "POST" }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      let sent = 0;
      const pump = (): void => {
        while (sent < BODY_MAX * 4) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(status, 413);
  });

  test("zip bomb: inflating past the limit → 413", async () => {
    const bomb = gzipSync(Buffer.alloc(BODY_MAX * 64, 0x20)); // 4 MiB of spaces, ~4 KiB compressed
    assert.ok(bomb.length < BODY_MAX);
    const a = await http(`${node.url}/api/v1/import`, { body: bomb, headers: { "Content-Encoding": "gzip" } });
    assert.equal(a.status, 413, a.text);
    assert.match((a.json() as { error: string }).error, /after decompression/);
    const h = await http(`${node.url}/health`);
    assert.equal(h.status, 200, "the node is still up");
  });

  test("empty body → 400", async () => {
    const a = await http(`${node.url}/api/v1/import`, { body: "" });
    assert.equal(a.status, 400);
  });
});
