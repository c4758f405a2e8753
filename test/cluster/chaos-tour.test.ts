// The chaos tour on real processes: a 3-node playground with fault proxies
// (`cluster up --fault-proxy`) and a gap rule for the gap scenario's labels;
// `hqts chaos tour --dir DIR --json` runs kill-leader, corrupt-wal, delay,
// replay and gap under a live writer, each ending with heal, convergence and
// a durability check on every node. Every row must PASS (delay may SKIP when
// the playground has no proxies).

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { startPlayground, type Playground, cliAsync } from "../helpers/playground.js";

let pg: Playground | null = null;
let rulesDir: string | null = null;
after(async () => {
  await pg?.cleanup();
  if (rulesDir !== null) await rm(rulesDir, { recursive: true, force: true });
});

interface Row {
  scenario: string;
  expected: string;
  observed: string;
  pass: boolean;
  skipped?: boolean;
  figures: Record<string, unknown>;
}

test("chaos tour: kill-leader, corrupt-wal, delay, replay, gap all pass on a playground", { timeout: 240_000 }, async (t) => {
  rulesDir = await mkdtemp(join(tmpdir(), "hqts-chaos-rules-"));
  const rulesFile = join(rulesDir, "rules.json");
  await writeFile(rulesFile, JSON.stringify({ rules: [{ match: '{job="chaos-gap"}', interval: "10s", policy: "linear", maxFill: "24h" }] }));
  pg = await startPlayground({
    faultProxy: true,
    nodeArgs: ["--gap-rules", rulesFile, "--gap-scan-interval", "1s", "--gap-lookback", "12h", "--head-samples-max", "2000"],
  });
  const r = await cliAsync(["chaos", "tour", "--dir", pg.dir, "--json"], 180_000);
  let out: { results: Row[]; exitCode: number };
  try {
    out = JSON.parse(r.stdout) as { results: Row[]; exitCode: number };
  } catch {
    assert.fail(`chaos tour printed no JSON (exit ${r.code}):\n${r.stdout}\n--- stderr ---\n${r.stderr.slice(-4000)}`);
  }
  assert.deepEqual(
    out.results.map((x) => x.scenario),
    ["kill-leader", "corrupt-wal", "delay", "replay", "gap"],
  );
  for (const row of out.results) {
    t.diagnostic(`${row.scenario}: ${row.pass ? "PASS" : row.skipped === true ? "SKIP" : "FAIL"}: ${row.observed}`);
    const ok = row.pass || (row.scenario === "delay" && row.skipped === true);
    assert.ok(ok, `${row.scenario} failed: ${row.observed}\n${JSON.stringify(row.figures, null, 2)}\n--- stderr ---\n${r.stderr.slice(-4000)}`);
  }
  // With the proxies on, delay runs rather than skips.
  assert.equal(out.results.find((x) => x.scenario === "delay")!.skipped, undefined, "delay ran (the playground has fault proxies)");
  const kill = out.results[0]!.figures;
  assert.ok(typeof kill["failoverMs"] === "number" && kill["failoverMs"] <= 2000, `failover ${String(kill["failoverMs"])} ms`);
  assert.equal(out.exitCode, 0);
  assert.equal(r.code, 0, r.stderr.slice(-2000));
});
