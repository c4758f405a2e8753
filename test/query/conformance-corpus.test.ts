// PromQL conformance (docs/promql.md): Prometheus's own PromQL test corpus (../shared/conformance/promql,
// Prometheus 3.14's promqltest scripts) run against HQ-TS: every `load` goes
// through the storage engine's write path, every `eval` through the PromQL
// engine over the store. Prints pass / fail / skip per file with the reasons;
// asserts that at least 95% of the evals not skipped pass, and that every skip
// has a reason the README allows (native histograms: HQ-TS stores floats).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { runScript, type FileResult } from "../../src/query/promql/conformance.js";
import { StoreConformanceEngine } from "../../src/query/promql/store-engine.js";

const CORPUS = resolve(process.cwd(), "../shared/conformance/promql");
const PASS_RATE_MIN = 0.95;

test("PromQL conformance: Prometheus's corpus against the HQ-TS store and engine", { timeout: 600_000 }, async (t) => {
  assert.ok(existsSync(CORPUS), `the corpus is at ${CORPUS} (a checkout beside ../shared)`);
  const files = (await readdir(CORPUS)).filter((n) => n.endsWith(".test")).sort();
  assert.ok(files.length >= 10, `corpus files: ${files.join(", ")}`);
  const results: FileResult[] = [];
  for (const name of files) {
    const engine = new StoreConformanceEngine();
    try {
      results.push(await runScript(await readFile(join(CORPUS, name), "utf8"), name, engine));
    } finally {
      await engine.close();
    }
  }
  let pass = 0;
  let fail = 0;
  let skip = 0;
  for (const r of results) {
    pass += r.pass;
    fail += r.fail;
    skip += r.skip;
    const rate = r.pass + r.fail === 0 ? "-" : `${((100 * r.pass) / (r.pass + r.fail)).toFixed(1)}%`;
    t.diagnostic(`${r.file.padEnd(22)} pass ${String(r.pass).padStart(4)}  fail ${String(r.fail).padStart(3)}  skip ${String(r.skip).padStart(3)}  ${rate}${r.skip > 0 ? `  skipped: ${[...r.skipReasons].map(([k, v]) => `${v} ${k}`).join("; ")}` : ""}`);
    for (const f of r.failures.slice(0, 5)) t.diagnostic(`   ${r.file}:${f.line} ${JSON.stringify(f).slice(0, 300)}`);
    for (const u of r.unsupported) t.diagnostic(`   ${r.file}:${u.line} unsupported: ${u.reason}`);
    for (const reason of r.skipReasons.keys()) assert.match(reason, /native histogram/, `${r.file}: a skip without an allowed reason: ${reason}`);
  }
  const rate = pass / (pass + fail);
  t.diagnostic(`total: ${pass} pass, ${fail} fail, ${skip} skipped (native histograms); ${(rate * 100).toFixed(1)}% of the evals run`);
  assert.ok(pass + fail >= 700, `evals run: ${pass + fail}`);
  assert.ok(rate >= PASS_RATE_MIN, `pass rate ${(rate * 100).toFixed(1)}% is below ${PASS_RATE_MIN * 100}%`);
});
