// Prometheus remote write on a 3-node cluster: a request through any node is
// stored on every replica; a request holding one sample that conflicts with
// what a majority committed stores the others (on every replica) and names
// the conflict with 400; its retry stores nothing twice. Metadata sent to one
// node is answered by every node.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { startPlayground, type Playground } from "../helpers/playground.js";
import { body, HEADERS } from "../helpers/remote-write.js";

let pg: Playground | null = null;
after(async () => {
  await pg?.cleanup();
});

const T0 = 1_700_000_000_000;

/** Polls every node alone (consistency=local) until `want` (timestamp ms → value) is what it holds for the series. */
async function onEveryNode(urls: readonly string[], selector: string, want: Map<number, number>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await Promise.all(
      urls.map(async (u) => {
        const lines = await exportSeries(u, selector, { consistency: "local" });
        const m = new Map<number, number>();
        for (const l of lines) l.timestamps.forEach((t, i) => m.set(t, l.values[i] as number));
        return m;
      }),
    );
    const same = got.every((m) => m.size === want.size && [...want].every(([t, v]) => m.get(t) === v));
    if (same) return;
    assert.ok(Date.now() < deadline, `not on every node within ${timeoutMs} ms: ${JSON.stringify(got.map((m) => [...m]))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("remote write on a cluster: stored on every replica; a conflicting sample costs only itself", { timeout: 120_000 }, async () => {
  pg = await startPlayground();
  const urls = pg.nodes().map((n) => n.http);
  const first = body([{ labels: [["__name__", "rwc"], ["k", "a"]], samples: [[1, T0], [2, T0 + 15_000]] }]);
  const a = await http(`${urls[0]}/api/v1/write`, { body: first, headers: HEADERS });
  assert.equal(a.status, 204, a.text);
  await onEveryNode(urls, '{__name__="rwc"}', new Map([[T0, 1], [T0 + 15_000, 2]]));

  // Through another node: T0 now says 9 (a conflict with the committed 1), T0+30s is new.
  const second = body([{ labels: [["__name__", "rwc"], ["k", "a"]], samples: [[9, T0], [3, T0 + 30_000]] }]);
  const b = await http(`${urls[1]}/api/v1/write`, { body: second, headers: HEADERS });
  assert.equal(b.status, 400, b.text);
  assert.equal(b.headers.get("x-hq-samples-conflicting"), "1");
  const e = b.json() as { conflictCount: number; conflicts: { series: string; timestampNs: string }[] };
  assert.equal(e.conflictCount, 1);
  assert.deepEqual(
    e.conflicts.map((c) => [c.series, c.timestampNs]),
    [['rwc{k="a"}', `${T0}000000`]],
  );
  const want = new Map([[T0, 1], [T0 + 15_000, 2], [T0 + 30_000, 3]]);
  await onEveryNode(urls, '{__name__="rwc"}', want);

  // Metadata stays on the node that received it; a metadata read on any node asks its peers.
  const meta = await http(`${urls[0]}/api/v1/write`, { body: body([], [{ metric: "rwc", type: 2, help: "A cluster gauge.", unit: "bytes" }]), headers: HEADERS });
  assert.equal(meta.status, 204, meta.text);
  for (const u of urls) {
    const m = await http(`${u}/api/v1/metadata?metric=rwc`);
    assert.deepEqual(m.json(), { status: "success", data: { rwc: [{ type: "gauge", help: "A cluster gauge.", unit: "bytes" }] } }, u);
  }
  const local = await http(`${urls[2]}/api/v1/metadata?metric=rwc&consistency=local`);
  assert.deepEqual(local.json(), { status: "success", data: {} }, "node 3 alone does not hold it");

  // Prometheus retries nothing on 400, but a client might: the same request again changes nothing.
  const c = await http(`${urls[2]}/api/v1/write`, { body: second, headers: HEADERS });
  assert.equal(c.status, 400, c.text);
  await onEveryNode(urls, '{__name__="rwc"}', want);
  assert.equal(await pg.stop(), 0, pg.output());
});
