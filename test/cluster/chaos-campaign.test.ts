// The chaos campaign on real processes: a 3-node playground with fault proxies
// (`cluster up --fault-proxy`); `hqts chaos campaign --seconds 120 --seed 1
// --json` injects seeded random faults (kill-node, kill-etcd, delay,
// partition, corrupt-wal) under continuous writes, then heals and checks every
// node: nothing acked lost, no duplicate, no wrong value, converged, window
// digests equal. HQTS_CHAOS_SEED picks another seed (default 1), so a CI run
// can be repeated on new schedules.

import assert from "node:assert/strict";
import { cp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { planCampaign } from "../../src/chaos/campaign.js";
import { startPlayground, type Playground, cliAsync } from "../helpers/playground.js";

let pg: Playground | null = null;
after(async () => {
  await pg?.cleanup();
});

test("campaign schedule: same seed, same schedule; one disruptive fault at a time", () => {
  const ids = ["n1", "n2", "n3"];
  const a = planCampaign(42, 600, ids);
  assert.deepEqual(planCampaign(42, 600, ids), a);
  assert.notDeepEqual(planCampaign(43, 600, ids), a);
  assert.ok(a.length >= 100, `${a.length} faults planned in 600 s`);
  for (const k of ["kill-node", "kill-etcd", "delay", "partition", "corrupt-wal"]) assert.ok(a.some((f) => f.kind === k), k);
  for (let i = 1; i < a.length; i++) assert.ok(a[i]!.atMs - a[i - 1]!.atMs >= 2000);
});

const SEED = process.env["HQTS_CHAOS_SEED"] ?? "1";

test("chaos campaign: 120 s of seeded faults under writes, nothing lost, converged, digests equal", { timeout: 600_000 }, async (t) => {
  pg = await startPlayground({ faultProxy: true, nodeArgs: ["--head-samples-max", "3000"] });
  const r = await cliAsync(["chaos", "campaign", "--dir", pg.dir, "--seconds", "120", "--seed", SEED, "--json"], 540_000);
  let out: Record<string, unknown>;
  try {
    out = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    assert.fail(`chaos campaign printed no JSON (exit ${r.code}):\n${r.stdout}\n--- stderr ---\n${r.stderr.slice(-4000)}`);
  }
  if (out["verdict"] !== "PASS") {
    // Keep the playground's logs for a look (the playground directory is removed after the test).
    const keep = join(tmpdir(), `hqts-campaign-failure-${Date.now()}`);
    await cp(join(pg.dir, "logs"), keep, { recursive: true }).catch(() => {});
    await writeFile(`${keep}.stderr`, r.stderr).catch(() => {});
    t.diagnostic(`logs kept in ${keep}`);
  }
  const { schedule: _s, writers: _w, ...figures } = out;
  t.diagnostic(JSON.stringify(figures));
  const why = `${JSON.stringify(figures, null, 2)}\n--- stderr ---\n${r.stderr.slice(-4000)}`;
  assert.equal(out["lost"], 0, why);
  assert.equal(out["duplicates"], 0, why);
  assert.equal(out["wrongValues"], 0, why);
  assert.equal(out["converged"], true, why);
  assert.equal(out["digestsEqual"], true, why);
  // The Merkle log survived the faults (sequencer moves, late commits): one checkpoint everywhere, every acked batch in it.
  assert.equal((out["log"] as { ok: boolean }).ok, true, why);
  assert.ok((out["faultsInjected"] as number) >= 20, why);
  assert.ok((out["ackedPoints"] as number) > 0, why);
  assert.equal(out["verdict"], "PASS", why);
  assert.equal(r.code, 0, why);
});
