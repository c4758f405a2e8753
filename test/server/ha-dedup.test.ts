// HA pairs against a real node (--ha-dedup): two Prometheus replicas remote-
// write the same targets with __replica__="a" / "b", 4 s apart; one copy per
// 15 s is stored, without the replica label; when replica a stops, b's samples
// are kept from the next bucket on; nothing is lost.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { exportSeries, http } from "../helpers/http.js";
import { startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";
import { body, HEADERS } from "../helpers/remote-write.js";

let node: NodeProc;
let dir: string;
const T0 = 1_700_000_000_000;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "hqts-ha-"));
  const rules = join(dir, "ha.json");
  await writeFile(rules, JSON.stringify({ rules: [{ match: '{job="node"}', replicaLabel: "__replica__", interval: "15s" }] }));
  node = await startNode({ args: ["--ha-dedup", rules] });
});
after(async () => {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
});

const send = (replica: string, tMs: number, v: number): Promise<{ status: number; headers: Headers }> =>
  http(`${node.url}/api/v1/write`, { body: body([{ labels: [["__name__", "up"], ["job", "node"], ["__replica__", replica]], samples: [[v, tMs]] }]), headers: HEADERS });

test("HA pair: one copy per interval, the replica label dropped, the other replica takes over when the first stops", async () => {
  // Both replicas scrape every 15 s, b 4 s after a; a stops after its 4th scrape.
  for (let k = 0; k < 8; k++) {
    if (k < 4) assert.equal((await send("a", T0 + k * 15_000, 100 + k)).status, 204);
    const r = await send("b", T0 + k * 15_000 + 4_000, 200 + k);
    assert.equal(r.status, 204);
    assert.equal(r.headers.get("x-hq-ha-dropped"), k < 4 ? "1" : "0", `scrape ${k}: b's copy dropped while a sends`);
  }
  const lines = await exportSeries(node.url, '{__name__="up"}');
  assert.equal(lines.length, 1, "one series: the replica label is gone");
  assert.deepEqual(lines[0]!.metric, { __name__: "up", job: "node" });
  assert.deepEqual(lines[0]!.timestamps, [0, 1, 2, 3, 4, 5, 6, 7].map((k) => T0 + k * 15_000 + (k < 4 ? 0 : 4_000)));
  assert.deepEqual(lines[0]!.values, [100, 101, 102, 103, 204, 205, 206, 207]);
});
