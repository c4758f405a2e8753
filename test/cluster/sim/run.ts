// Runs the simulation: `npx tsx test/cluster/sim/run.ts --seed 123 --verbose`
// replays one seed with its trace; `--seeds 1000 [--from N]` runs many.

import { check } from "./checker.js";
import { DEFAULT_SIM, World, type SimOptions } from "./world.js";

export interface SeedOutcome {
  seed: number;
  violations: string[];
  acked: number;
  conflicts: number;
  unavailable: number;
  log: string[];
  error?: unknown;
}

export function runSeed(seed: number, overrides: Partial<SimOptions> = {}): SeedOutcome {
  const w = new World({ ...DEFAULT_SIM, seed, ...overrides });
  try {
    const r = w.run();
    const violations = check(r);
    return {
      seed,
      violations,
      acked: r.ops.filter((o) => o.outcome === "acked").length,
      conflicts: r.ops.filter((o) => o.outcome === "conflict").length,
      unavailable: r.ops.filter((o) => o.outcome === "gave-up").length,
      log: w.log,
    };
  } catch (error) {
    return { seed, violations: [`threw: ${(error as Error).stack ?? String(error)}`], acked: 0, conflicts: 0, unavailable: 0, log: w.log, error };
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const val = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const verbose = args.includes("--verbose");
  const one = val("--seed");
  if (one !== undefined) {
    const out = runSeed(Number(one), { verbose });
    if (verbose) console.log(out.log.join("\n"));
    console.log(`seed ${out.seed}: acked ${out.acked}, 409 ${out.conflicts}, gave up ${out.unavailable}`);
    for (const v of out.violations) console.log(`VIOLATION: ${v}`);
    process.exitCode = out.violations.length > 0 ? 1 : 0;
    return;
  }
  const n = Number(val("--seeds") ?? 1000);
  const from = Number(val("--from") ?? 1);
  const t0 = performance.now();
  let failed = 0;
  const totals = { acked: 0, conflicts: 0, unavailable: 0 };
  for (let s = from; s < from + n; s++) {
    const out = runSeed(s);
    totals.acked += out.acked;
    totals.conflicts += out.conflicts;
    totals.unavailable += out.unavailable;
    if (out.violations.length > 0) {
      failed++;
      console.log(`seed ${s} FAILED (replay: npx tsx test/cluster/sim/run.ts --seed ${s} --verbose)\n  ${out.violations.slice(0, 5).join("\n  ")}`);
    }
  }
  console.log(`${n} seeds from ${from}: ${failed} failed; acked ${totals.acked}, 409 ${totals.conflicts}, gave up ${totals.unavailable}; ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  process.exitCode = failed > 0 ? 1 : 0;
}

if (process.argv[1]?.endsWith("run.ts") || process.argv[1]?.endsWith("run.js")) main();
