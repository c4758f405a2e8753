// A private copy of the compiled HQ-TS (dist/src) taken when a run starts, so
// that every HQ-TS process of the run executes the same build even if dist/ is
// rebuilt meanwhile (src/ may be under edit while a long benchmark runs).
// Layout: DIR/package.json (for "type": "module" and the CLI's version) and
// DIR/dist/src/...; packages still resolve from the repository's node_modules,
// an ancestor of DIR.

import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface HqBuild {
  /** The copied CLI entry point (DIR/dist/src/cli/main.js). */
  cliMain: string;
  /** An executable that runs it (`exec node cliMain "$@"`), for lib/dbs.ts's HqtsDriver. */
  wrapper: string;
  /** The newest file of dist/src (tsc rewrites only the files that changed). */
  builtAt: string;
}

export function snapshotBuild(repoRoot: string, dir: string): HqBuild {
  const src = join(repoRoot, "dist", "src");
  const main = join(src, "cli", "main.js");
  if (!existsSync(main)) throw new Error(`${main} is missing: build first (npx tsc -p tsconfig.json)`);
  mkdirSync(join(dir, "dist"), { recursive: true });
  cpSync(src, join(dir, "dist", "src"), { recursive: true });
  copyFileSync(join(repoRoot, "package.json"), join(dir, "package.json"));
  const cliMain = join(dir, "dist", "src", "cli", "main.js");
  const wrapper = join(dir, "hqts");
  const q = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;
  writeFileSync(wrapper, `#!/bin/sh\nexec ${q(process.execPath)} ${q(cliMain)} "$@"\n`);
  chmodSync(wrapper, 0o755);
  // A build that does not load (a half-edited src/ compiled) fails here, once, rather than on every target.
  const r = spawnSync(process.execPath, [cliMain, "--version"], { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) throw new Error(`the HQ-TS build copied from ${src} does not run (${cliMain} --version): ${(r.stderr || r.stdout || String(r.error)).trim().slice(0, 600)}`);
  return { cliMain, wrapper, builtAt: new Date(newestMtimeMs(src)).toISOString() };
}

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtimeMs(p) : statSync(p).mtimeMs);
  }
  return newest;
}
