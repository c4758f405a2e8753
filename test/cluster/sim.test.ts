// The seeded deterministic simulation (test/cluster/sim/). A failing seed is
// printed with its replay command:
//   HQTS_SIM_SEED=123 npx tsx --test test/cluster/sim.test.ts
//   npx tsx test/cluster/sim/run.ts --seed 123 --verbose
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runSeed } from "./sim/run.js";

const one = process.env["HQTS_SIM_SEED"];
const count = Number(process.env["HQTS_SIM_SEEDS"] ?? 3000);
const from = Number(process.env["HQTS_SIM_FROM"] ?? 1);

describe("cluster protocol simulation", () => {
  it(one !== undefined ? `replays seed ${one}` : `holds its invariants over ${count} seeds`, () => {
    const seeds = one !== undefined ? [Number(one)] : Array.from({ length: count }, (_, i) => from + i);
    const failures: string[] = [];
    let acked = 0;
    let conflicts = 0;
    for (const s of seeds) {
      const out = runSeed(s, { verbose: one !== undefined });
      acked += out.acked;
      conflicts += out.conflicts;
      if (out.violations.length > 0) {
        failures.push(`seed ${s} (replay: HQTS_SIM_SEED=${s} or npx tsx test/cluster/sim/run.ts --seed ${s} --verbose):\n  ${out.violations.slice(0, 5).join("\n  ")}`);
        if (one !== undefined) console.log(out.log.join("\n"));
      }
    }
    assert.ok(one !== undefined || acked > seeds.length, `too few writes acked (${acked}): the simulation is not exercising the write path`);
    assert.ok(one !== undefined || conflicts > 0, "no conflicting writes were exercised");
    assert.deepEqual(failures, []);
  });
});
