// etcd membership and metadata on real processes: a real etcd (Debian's) and
// real `hqts node --etcd` processes.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { EtcdMeta } from "../../src/cluster/etcd.js";
import { HqError } from "../../src/core/errors.js";
import { startEtcd, stopAllEtcd, type EtcdCluster } from "../helpers/etcd-proc.js";
import { freePort, startNode, stopAll, type NodeProc } from "../helpers/node-proc.js";

interface View {
  mode: string;
  etcd: { reachable: boolean; lastError: string | null };
  members: { id: string; http: string }[];
  shardMap: { createdBy: string; createdAt: string; replicationFactor: number; shards: { id: number; replicas: string[] }[] } | null;
  coordinator: { holder: string | null; self: boolean };
}

async function view(n: NodeProc): Promise<View> {
  const res = await fetch(`${n.url}/hq/v1/cluster`, { signal: AbortSignal.timeout(2000) });
  assert.equal(res.status, 200);
  return (await res.json()) as View;
}

async function until<T>(what: string, deadlineMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what} (${deadlineMs} ms)${last ? `: ${String(last)}` : ""}`);
}

const clusterArgs = (etcd: EtcdCluster, id: string, cluster: string): string[] => ["--node-id", id, "--etcd", etcd.endpoints.join(","), "--cluster", cluster];

describe("etcd membership and metadata", { timeout: 60_000 }, () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd({ size: 1 });
  });
  after(async () => {
    await stopAll();
    await stopAllEtcd();
  });

  test("3 nodes starting at once: all register, the shard map is created exactly once, one coordinator; a SIGKILLed node leaves with its lease", async () => {
    const nodes = await Promise.all(["n1", "n2", "n3"].map((id) => startNode({ args: clusterArgs(etcd, id, "c1") })));
    const views = await Promise.all(
      nodes.map((n) => until("3 members and a shard map", 15_000, async () => {
        const v = await view(n);
        return v.members.length === 3 && v.shardMap !== null && v.coordinator.holder !== null ? v : undefined;
      })),
    );
    for (const v of views) {
      assert.equal(v.mode, "cluster");
      assert.deepEqual(v.members.map((m) => m.id), ["n1", "n2", "n3"]);
      assert.deepEqual(v.shardMap, views[0]!.shardMap, "every node sees the same shard map");
      assert.equal(v.coordinator.holder, views[0]!.coordinator.holder);
    }
    assert.deepEqual(views[0]!.shardMap!.shards, [{ id: 0, replicas: ["n1", "n2", "n3"] }]);
    assert.equal(views[0]!.shardMap!.replicationFactor, 3);
    assert.equal(views.filter((v) => v.coordinator.self).length, 1, "exactly one node believes it is the coordinator");

    // Created exactly once: the key was written a single time (version 1).
    const meta = new EtcdMeta({ endpoints: etcd.endpoints });
    try {
      const res = await meta.call("get shards", () => meta.client.get("/hqts/c1/shards").options(meta.deadline()).exec());
      assert.equal(res.kvs[0]?.version, "1");
    } finally {
      meta.close();
    }

    // SIGKILL n3 (no lease revoke): it disappears from the others' views once its 5 s lease runs out.
    const n3 = nodes[2]!;
    n3.kill("SIGKILL");
    await n3.exited();
    const v = await until("n3 to leave the membership", 20_000, async () => {
      const x = await view(nodes[0]!);
      return x.members.some((m) => m.id === "n3") ? undefined : x;
    });
    assert.deepEqual(v.members.map((m) => m.id), ["n1", "n2"]);
    assert.deepEqual(v.shardMap!.shards[0]!.replicas, ["n1", "n2", "n3"], "the shard map does not change by itself");
    await Promise.all(nodes.slice(0, 2).map((n) => n.stop()));
    await n3.stop();
  });

  test("etcd calls fail fast with a typed retryable error when etcd is down; the node keeps serving writes and reads", async () => {
    // A client pointed at a port where nothing listens.
    const dead = new EtcdMeta({ endpoints: [`http://127.0.0.1:${await freePort()}`] });
    try {
      await assert.rejects(dead.get("/hqts/x"), (e: unknown) => e instanceof HqError && e.code === "unavailable" && e.retryable);
      await assert.rejects(dead.grantLease(5), (e: unknown) => e instanceof HqError && e.code === "unavailable" && e.retryable);
    } finally {
      dead.close();
    }

    const own = await startEtcd({ size: 1 });
    const node = await startNode({ args: [...clusterArgs(own, "solo", "c2"), "--replication-factor", "1"] });
    // Registered and holding its shard map (the node writes only once it knows its replica set).
    await until("registration and the shard map", 10_000, async () => {
      const x = await view(node);
      return x.members.length === 1 && x.shardMap !== null ? true : undefined;
    });
    await own.stop(); // etcd entirely gone

    const v = await until("the node to notice etcd is down", 10_000, async () => {
      const x = await view(node);
      return x.etcd.reachable ? undefined : x;
    });
    assert.match(v.etcd.lastError ?? "", /etcd/);
    assert.deepEqual(v.members.map((m) => m.id), ["solo"], "the last view is kept");
    assert.notEqual(v.shardMap, null);

    const line = JSON.stringify({ metric: { __name__: "etcd_down_test", job: "t" }, values: [42], timestamps: [1700000000000] });
    const w = await fetch(`${node.url}/api/v1/import`, { method: "POST", body: line + "\n", signal: AbortSignal.timeout(5000) });
    assert.equal(w.status, 200, await w.text());
    const r = await fetch(`${node.url}/api/v1/export?match[]=etcd_down_test`, { signal: AbortSignal.timeout(5000) });
    assert.equal(r.status, 200);
    assert.match(await r.text(), /"values":\[42\]/);
    await node.stop();
  });

  test("a standalone node answers /hq/v1/cluster with mode standalone", async () => {
    const node = await startNode();
    assert.deepEqual(await (await fetch(`${node.url}/hq/v1/cluster`)).json(), { mode: "standalone" });
    await node.stop();
  });
});
