// Prometheus remote write against a REAL node process: POST /api/v1/write
// stores and /api/v1/export reads back; bad requests store nothing; a
// conflicting sample costs only itself, and a retry stays idempotent.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";
import { exportSeries, http, type Answer, type ReceiptJson } from "../helpers/http.js";
import { body, HEADERS, type Ts } from "../helpers/remote-write.js";

const T0 = 1_700_000_000_000;
let node: NodeProc;

before(async () => {
  node = await startNode();
});
after(async () => {
  await stopAll();
});

function write(b: Uint8Array, headers: Record<string, string> = HEADERS): Promise<Answer> {
  return http(`${node.url}/api/v1/write`, { body: b, headers });
}

function receiptOf(a: Answer): ReceiptJson {
  const h = a.headers.get("x-hq-receipt");
  assert.ok(h !== null, "X-HQ-Receipt header");
  return JSON.parse(h) as ReceiptJson;
}

describe("POST /api/v1/write", () => {
  test("204, stored exactly, receipt in X-HQ-Receipt; a retry is a duplicate", async () => {
    const req = body([
      { labels: [["__name__", "rw_up"], ["job", "node"], ["instance", "a:9100"]], samples: [[1, T0], [0, T0 + 15_000], [NaN, T0 + 30_000]], exemplars: 2 },
      { labels: [["__name__", "rw_temp"], ["room", "k\u00fcche"]], samples: [[21.5, T0], [-0, T0 + 1]] },
    ]);
    const a = await write(req);
    assert.equal(a.status, 204, a.text);
    assert.equal(a.text, "");
    const r = receiptOf(a);
    assert.match(r.batchId, /^[0-9a-f]{64}$/);
    assert.equal(r.samples, 5);
    assert.equal(r.accepted, 5);
    assert.equal(r.duplicate, false);
    assert.equal(a.headers.get("x-hq-exemplars-ignored"), "2");
    assert.equal(a.headers.get("x-hq-samples-written"), "5");

    const up = await exportSeries(node.url, "rw_up");
    assert.equal(up.length, 1);
    assert.deepEqual(up[0]!.metric, { __name__: "rw_up", instance: "a:9100", job: "node" });
    assert.deepEqual(up[0]!.values, [1, 0, "NaN"]);
    assert.deepEqual(up[0]!.timestamps, [T0, T0 + 15_000, T0 + 30_000]);
    assert.deepEqual(up[0]!.batches, Array(3).fill(r.batchId));
    const temp = await exportSeries(node.url, "rw_temp");
    assert.deepEqual(temp[0]!.metric, { __name__: "rw_temp", room: "k\u00fcche" });
    assert.ok(Object.is(temp[0]!.values[1], -0));

    const again = await write(req);
    assert.equal(again.status, 204, again.text);
    const r2 = receiptOf(again);
    assert.equal(r2.batchId, r.batchId);
    assert.equal(r2.duplicate, true);
    assert.deepEqual((await exportSeries(node.url, "rw_up"))[0]!.timestamps, [T0, T0 + 15_000, T0 + 30_000], "no second copy");
  });

  test("metadata only: 204, no samples stored; the metadata is what /api/v1/metadata answers", async () => {
    const a = await write(body([], ["rw_meta_only", "other"]));
    assert.equal(a.status, 204, a.text);
    assert.equal(a.headers.get("x-hq-samples-written"), "0");
    assert.equal(a.headers.get("x-hq-receipt"), null);
    assert.equal(a.headers.get("x-hq-metadata-stored"), "2");
    assert.deepEqual(await exportSeries(node.url, "rw_meta_only"), []);
    const m = await http(`${node.url}/api/v1/metadata?metric=rw_meta_only`);
    assert.equal(m.status, 200, m.text);
    assert.deepEqual(m.json(), { status: "success", data: { rw_meta_only: [{ type: "counter", help: "help", unit: "" }] } });
  });

  test("metadata: Prometheus's parameters and shape, kept across a restart", async () => {
    const n = await startNode();
    const meta = [
      { metric: "rw_md_requests_total", type: 1, help: "Requests served.", unit: "" },
      { metric: "rw_md_temp_celsius", type: 2, help: "Temperature.", unit: "celsius" },
    ];
    const a = await http(`${n.url}/api/v1/write`, { body: body([{ labels: [["__name__", "rw_md_temp_celsius"]], samples: [[21, T0]] }], meta), headers: HEADERS });
    assert.equal(a.status, 204, a.text);
    // A second sender with another help text: a second entry, the newest first.
    assert.equal((await http(`${n.url}/api/v1/write`, { body: body([], [{ ...meta[0]!, help: "Requests." }]), headers: HEADERS })).status, 204);
    const all = await http(`${n.url}/api/v1/metadata`);
    const want = {
      rw_md_requests_total: [
        { type: "counter", help: "Requests.", unit: "" },
        { type: "counter", help: "Requests served.", unit: "" },
      ],
      rw_md_temp_celsius: [{ type: "gauge", help: "Temperature.", unit: "celsius" }],
    };
    assert.deepEqual(all.json(), { status: "success", data: want });
    assert.deepEqual((await http(`${n.url}/api/v1/metadata?limit=1`)).json(), { status: "success", data: { rw_md_requests_total: want.rw_md_requests_total } });
    assert.deepEqual((await http(`${n.url}/api/v1/metadata?limit_per_metric=1&metric=rw_md_requests_total`)).json(), {
      status: "success",
      data: { rw_md_requests_total: [want.rw_md_requests_total[0]] },
    });
    const post = await http(`${n.url}/api/v1/metadata`, { body: "metric=rw_md_temp_celsius", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.deepEqual(post.json(), { status: "success", data: { rw_md_temp_celsius: want.rw_md_temp_celsius } });
    const bad = await http(`${n.url}/api/v1/metadata?limit=many`);
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /limit must be an integer/);

    await n.stop({ keepData: true });
    const again = await startNode({ dataDir: n.dataDir });
    try {
      assert.deepEqual((await http(`${again.url}/api/v1/metadata`)).json(), { status: "success", data: want }, "metadata survives a restart");
    } finally {
      await again.stop();
      await rm(n.dataDir, { recursive: true, force: true });
    }
  });

  test("bad requests: 400 naming the series, nothing of the request stored", async () => {
    const good: Ts = { labels: [["__name__", "rw_bad_neighbour"]], samples: [[1, T0]] };
    const cases: [Ts, RegExp][] = [
      [{ labels: [["__name__", "rw_bad"], ["job", "a"], ["job", "b"]], samples: [[1, T0]] }, /timeseries\[1\]\.labels\[2\].*duplicate label name "job"/],
      [{ labels: [["job", "a"]], samples: [[1, T0]] }, /timeseries\[1\].*no metric name/],
      [{ labels: [["__name__", "rw_bad"], ["", "a"]], samples: [[1, T0]] }, /timeseries\[1\]\.labels\[1\].*empty label name/],
      [{ labels: [["__name__", "rw_bad"]], histograms: 1 }, /timeseries\[1\]\.histograms.*native histograms are not supported/],
    ];
    for (const [bad, want] of cases) {
      const a = await write(body([good, bad]));
      assert.equal(a.status, 400, a.text);
      const e = a.json() as { code: string; error: string; errorType: string };
      assert.equal(e.code, "bad_input");
      assert.equal(e.errorType, "bad_data");
      assert.match(e.error, want);
    }
    const corrupt = await write(Uint8Array.from([0x20, 0x00, 0x01]));
    assert.equal(corrupt.status, 400, corrupt.text);
    assert.match(corrupt.text, /corrupt snappy/);
    const gz = await write(body([good]), { ...HEADERS, "Content-Encoding": "gzip" });
    assert.equal(gz.status, 400, gz.text);
    assert.match(gz.text, /Content-Encoding/);
    const v2 = await write(body([good]), { ...HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request" });
    assert.equal(v2.status, 400, v2.text);
    assert.match(v2.text, /remote write 1\.0/);
    assert.deepEqual(await exportSeries(node.url, "rw_bad_neighbour"), [], "the good series of a refused request is not stored");
  });

  test("a zip bomb is refused by its declared length: 413", async () => {
    const a = await write(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x41]));
    assert.equal(a.status, 413, a.text);
    assert.match(a.text, /4294967295 uncompressed bytes/);
  });

  test("one conflicting sample: the others are stored, 400 names the conflict; a retry is idempotent", async () => {
    const first = await write(body([{ labels: [["__name__", "rw_conf"], ["k", "a"]], samples: [[1, T0]] }]));
    assert.equal(first.status, 204, first.text);
    const firstId = receiptOf(first).batchId;

    const req = body([
      { labels: [["__name__", "rw_conf"], ["k", "a"]], samples: [[2, T0], [3, T0 + 1000]] },
      { labels: [["__name__", "rw_conf"], ["k", "b"]], samples: [[4, T0], [5, T0 + 1000]] },
    ]);
    const a = await write(req);
    assert.equal(a.status, 400, a.text);
    assert.equal(a.headers.get("x-hq-samples-conflicting"), "1");
    assert.equal(a.headers.get("x-hq-samples-written"), "3");
    const e = a.json() as { code: string; error: string; conflictCount: number; conflicts: { series: string; timestampNs: string; storedValue: number; offeredValue: number }[]; receipt: ReceiptJson };
    assert.equal(e.code, "conflict");
    assert.equal(e.conflictCount, 1);
    assert.deepEqual(e.conflicts, [{ series: 'rw_conf{k="a"}', timestampNs: `${T0}000000`, storedValue: 1, offeredValue: 2 }]);
    assert.match(e.error, /the other 3 samples were stored/);
    const partial = receiptOf(a);
    assert.deepEqual(partial, e.receipt);
    assert.match(partial.batchId, /^[0-9a-f]{64}~partial-[0-9a-f]{40}$/);
    assert.equal(partial.samples, 3);
    assert.equal(partial.duplicate, false);

    const check = async (): Promise<void> => {
      const got = await exportSeries(node.url, "rw_conf");
      const ka = got.find((s) => s.metric["k"] === "a")!;
      const kb = got.find((s) => s.metric["k"] === "b")!;
      assert.deepEqual(ka.values, [1, 3], "the stored point keeps its value");
      assert.deepEqual(ka.timestamps, [T0, T0 + 1000]);
      assert.deepEqual(ka.batches, [firstId, partial.batchId]);
      assert.deepEqual(kb.values, [4, 5]);
      assert.deepEqual(kb.batches, [partial.batchId, partial.batchId]);
    };
    await check();

    // Prometheus would not retry a 400, but a client that lost the answer might: same outcome, nothing doubled.
    const retry = await write(req);
    assert.equal(retry.status, 400, retry.text);
    const r2 = receiptOf(retry);
    assert.equal(r2.batchId, partial.batchId);
    assert.equal(r2.duplicate, true);
    assert.equal(retry.headers.get("x-hq-samples-conflicting"), "1");
    await check();
  });

  test("every sample conflicting: 400, nothing stored", async () => {
    const first = await write(body([{ labels: [["__name__", "rw_allconf"]], samples: [[1, T0], [2, T0 + 1]] }]));
    assert.equal(first.status, 204, first.text);
    const a = await write(body([{ labels: [["__name__", "rw_allconf"]], samples: [[10, T0], [20, T0 + 1]] }]));
    assert.equal(a.status, 400, a.text);
    assert.equal(a.headers.get("x-hq-receipt"), null);
    assert.equal(a.headers.get("x-hq-samples-written"), "0");
    assert.equal(a.headers.get("x-hq-samples-conflicting"), "2");
    const e = a.json() as { conflictCount: number; receipt: unknown; error: string };
    assert.equal(e.conflictCount, 2);
    assert.equal(e.receipt, null);
    assert.match(e.error, /nothing was stored/);
    assert.deepEqual((await exportSeries(node.url, "rw_allconf"))[0]!.values, [1, 2]);
  });

  test("more conflicts than one refusal lists (100): several rounds, the rest still stored", async () => {
    const n = 250;
    const ts = Array.from({ length: n }, (_, i) => T0 + i);
    const first = await write(body([{ labels: [["__name__", "rw_many"]], samples: ts.map((t) => [1, t]) }]));
    assert.equal(first.status, 204, first.text);
    const a = await write(
      body([
        { labels: [["__name__", "rw_many"]], samples: ts.map((t) => [2, t]) },
        { labels: [["__name__", "rw_many_new"]], samples: [[7, T0]] },
      ]),
    );
    assert.equal(a.status, 400, a.text);
    assert.equal(a.headers.get("x-hq-samples-conflicting"), String(n));
    assert.equal(a.headers.get("x-hq-samples-written"), "1");
    const e = a.json() as { conflicts: unknown[] };
    assert.equal(e.conflicts.length, 100, "the listed conflicts are bounded");
    assert.deepEqual((await exportSeries(node.url, "rw_many_new"))[0]!.values, [7]);
  });

  test("a repeat inside one request with another value: the first is stored, 400 names the repeat", async () => {
    const a = await write(
      body([
        { labels: [["__name__", "rw_repeat"]], samples: [[1, T0]] },
        { labels: [["__name__", "rw_repeat"]], samples: [[2, T0], [3, T0 + 1]] },
      ]),
    );
    assert.equal(a.status, 400, a.text);
    assert.equal(a.headers.get("x-hq-samples-conflicting"), "1");
    assert.deepEqual((await exportSeries(node.url, "rw_repeat"))[0]!.values, [1, 3]);
  });

  test("only POST", async () => {
    const a = await http(`${node.url}/api/v1/write`);
    assert.equal(a.status, 405);
  });
});
