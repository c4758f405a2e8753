// Checks the architecture's rules on every run of the suite, so they do not
// live in memory only: imports point one way (down the layer ranks below), no
// import cycles between modules, and files marked private (`_name.ts`) are
// imported only from their own folder.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const SRC = join(ROOT, "src");

// Lower rank = more fundamental. A module may import its own layer or lower ranks only.
const RANK = { core: 0, ingest: 1, wal: 1, client: 1, net: 1, storage: 2, cluster: 3, repair: 4, gaps: 4, provenance: 4, query: 5, server: 6, chaos: 6, cli: 7, ".": 8 };

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const layerOf = (file) => {
  const rel = relative(SRC, file).split(sep);
  return rel.length === 1 ? "." : rel[0];
};

const problems = [];
const graph = new Map();
for (const file of walk(SRC)) {
  const text = readFileSync(file, "utf8");
  const deps = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+["'](\.[^"']+)["']/gm)) {
    const target = resolve(dirname(file), m[1].replace(/\.js$/, ".ts"));
    deps.push(target);
    const from = layerOf(file);
    const to = layerOf(target);
    if (!(from in RANK)) problems.push(`${relative(ROOT, file)}: folder src/${from} has no rank in scripts/check-layers.mjs`);
    else if (RANK[to] > RANK[from]) problems.push(`${relative(ROOT, file)} (${from}) imports ${relative(ROOT, target)} (${to}): imports must point down the layers`);
    const base = target.split(sep).pop();
    if (base.startsWith("_") && dirname(target) !== dirname(file)) problems.push(`${relative(ROOT, file)} imports private ${relative(ROOT, target)}`);
  }
  graph.set(file, deps);
}

const state = new Map();
const stack = [];
function visit(f) {
  state.set(f, 1);
  stack.push(f);
  for (const d of graph.get(f) ?? []) {
    if (!graph.has(d)) continue;
    if (state.get(d) === 1) problems.push(`import cycle: ${[...stack.slice(stack.indexOf(d)), d].map((x) => relative(ROOT, x)).join(" -> ")}`);
    else if (!state.has(d)) visit(d);
  }
  stack.pop();
  state.set(f, 2);
}
for (const f of graph.keys()) if (!state.has(f)) visit(f);

if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} problem(s)`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.error(`check-layers: ${graph.size} modules, layering and cycles OK`);
