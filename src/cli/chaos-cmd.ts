// `hqts chaos <scenario|tour> --dir DIR [--json]`: the acceptance scenarios of
// src/chaos/scenarios.ts against a running playground. Progress goes to
// stderr; the table (or, with --json, the results) to stdout. Exit 1 when a
// scenario FAILed; SKIP (delay without `cluster up --fault-proxy`) does not.

import { fileURLToPath } from "node:url";
import { formatCampaign, runCampaign } from "../chaos/campaign.js";
import { SCENARIOS, formatTable, resultWord, runScenario, tour, type ScenarioName, type ScenarioResult } from "../chaos/scenarios.js";
import { readClusterFile } from "../cluster/playground/layout.js";
import { CliError } from "./http.js";

export const CHAOS_COMMANDS = [...SCENARIOS, "tour", "campaign"] as const;

export async function runChaos(what: string, opts: { dir: string; json: boolean; seconds?: string; seed?: string }, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (!(CHAOS_COMMANDS as readonly string[]).includes(what)) throw new CliError(`unknown scenario "${what}" (one of ${CHAOS_COMMANDS.join(", ")})`, 2);
  try {
    readClusterFile(opts.dir);
  } catch (e) {
    throw new CliError((e as Error).message, 2);
  }
  const ctx = { dir: opts.dir, log: (line: string) => void err.write(line + "\n"), cliMain: fileURLToPath(new URL("./main.js", import.meta.url)) };
  if (what === "campaign") {
    const seconds = Number(opts.seconds ?? "600");
    const seed = Number(opts.seed ?? "1");
    if (!Number.isFinite(seconds) || seconds <= 0) throw new CliError(`--seconds must be a positive number, got ${String(opts.seconds)}`, 2);
    if (!Number.isInteger(seed) || seed < 0) throw new CliError(`--seed must be an integer >= 0, got ${String(opts.seed)}`, 2);
    const r = await runCampaign(ctx, { seconds, seed });
    out.write(opts.json ? JSON.stringify(r, null, 2) + "\n" : formatCampaign(r));
    return r.exitCode;
  }
  let results: ScenarioResult[];
  let exitCode: number;
  if (what === "tour") ({ results, exitCode } = await tour(opts.dir, ctx.log, ctx.cliMain));
  else {
    const r = await runScenario(what as ScenarioName, ctx);
    results = [r];
    exitCode = resultWord(r) === "FAIL" ? 1 : 0;
  }
  out.write(opts.json ? JSON.stringify(what === "tour" ? { results, exitCode } : results[0], null, 2) + "\n" : formatTable(results));
  return exitCode;
}
