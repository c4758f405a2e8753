// `hqts verify` and `hqts export-bundle` (docs/verify.md): every exported
// point of a node checked against the signed batch it names, the batch
// against the signed checkpoint, the checkpoint against the keys and
// checkpoints seen before. The checks live in src/provenance/verify.ts; this
// file fetches, keeps the trust state and prints.

import { SingleBar } from "cli-progress";
import { constants } from "node:fs";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { isHqError } from "../core/errors.js";
import { parseApiTime } from "../core/time.js";
import { PlaygroundError, readClusterFile } from "../cluster/playground/layout.js";
import { BUNDLE_BYTES_MAX, BundleWriter, readBundle, verifyBundle } from "../provenance/bundle.js";
import { checkpointOrigin, parseCheckpoint } from "../provenance/checkpoint.js";
import { parseNote, parseVerifierKey } from "../provenance/note.js";
import {
  LineSplitter,
  PointVerifier,
  TRUST_KEYS_MAX,
  checkpointFailureReport,
  consistencyOf,
  parseTrustState,
  previousCheckpoint,
  recordCheckpoint,
  verifyCheckpoint,
  type TrustState,
  type VerifyReport,
} from "../provenance/verify.js";
import { CliError, describeFailure, request } from "./http.js";

/** Per request (checkpoint, keys, proofs); for the export, the longest silence allowed between two chunks. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Batch ids per POST /hq/v1/proof/batches: the node's limit (src/provenance/route.ts PROOF_BATCHES_MAX). */
export const PROOF_IDS_PER_REQUEST = 256;
/** Export bytes held for the second pass: the same bound as a bundle, so whatever verifies can be bundled. */
export const EXPORT_BYTES_MAX = BUNDLE_BYTES_MAX;
/** Longest export line (one series): below V8's string limit with room for JSON.parse. */
export const EXPORT_LINE_BYTES_MAX = 256 * 1024 * 1024;
/** Batches above which a TTY gets a progress bar. */
const PROGRESS_BATCHES_MIN = 10;
const TRUST_FILE_BYTES_MAX = 1024 * 1024;
const DEFAULT_MATCH = '{__name__=~".+"}';

export interface VerifyOptions {
  url?: string;
  dir?: string;
  match: string[];
  start?: string;
  end?: string;
  state?: string;
  trust?: string;
  bundle?: string;
  mmdMs?: number;
  json: boolean;
}

export interface ExportBundleOptions {
  url?: string;
  dir?: string;
  match: string[];
  start?: string;
  end?: string;
  out: string;
}

// ---------------------------------------------------------------------------
// HTTP

interface CheckpointAnswer {
  origin: string;
  size: number;
  root: string;
  timeMs: number;
  note: string;
}

function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return `${e.message}${cause?.code ? ` (${cause.code})` : cause?.message ? ` (${cause.message})` : ""}`;
}

async function httpJson(method: "GET" | "POST", url: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
  const a = await request(
    url,
    { method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } } : {}) },
    { retries: 0, timeoutMs: REQUEST_TIMEOUT_MS },
  );
  let json: unknown = null;
  try {
    json = JSON.parse(a.text);
  } catch {
    if (a.status === 200) throw new CliError(`${method} ${url}: the answer is not JSON: ${a.text.slice(0, 200)}`);
  }
  return { status: a.status, json, text: a.text };
}

async function okJson(method: "GET" | "POST", url: string, body?: unknown): Promise<unknown> {
  const a = await httpJson(method, url, body);
  if (a.status !== 200) throw new CliError(`${method} ${url}: ${describeFailure({ status: a.status, headers: new Headers(), text: a.text })}`);
  return a.json;
}

async function fetchCheckpoint(base: string): Promise<CheckpointAnswer> {
  const url = `${base}/hq/v1/proof/checkpoint`;
  const a = await httpJson("GET", url);
  if (a.status === 404)
    throw new CliError(`${url}: no checkpoint yet (HTTP 404): the log is empty or provenance is starting; write some data and try again in a few seconds`);
  if (a.status !== 200) throw new CliError(`GET ${url}: ${describeFailure({ status: a.status, headers: new Headers(), text: a.text })}`);
  const c = (a.json ?? {}) as Partial<CheckpointAnswer>;
  if (typeof c.origin !== "string" || typeof c.note !== "string" || typeof c.size !== "number")
    throw new CliError(`GET ${url}: the answer lacks origin, size or note: ${a.text.slice(0, 200)}`);
  return c as CheckpointAnswer;
}

async function fetchKeys(base: string, origin: string): Promise<string[]> {
  const url = `${base}/hq/v1/proof/keys`;
  const k = ((await okJson("GET", url)) ?? {}) as { origin?: unknown; keys?: unknown };
  if (k.origin !== origin) throw new CliError(`GET ${url}: keys for origin ${JSON.stringify(k.origin)}, but the checkpoint is for ${JSON.stringify(origin)}`);
  if (!Array.isArray(k.keys) || k.keys.some((x) => typeof x !== "string")) throw new CliError(`GET ${url}: keys is not a list of key strings`);
  if (k.keys.length === 0 || k.keys.length > TRUST_KEYS_MAX) throw new CliError(`GET ${url}: ${k.keys.length} keys (1..${TRUST_KEYS_MAX} expected)`);
  for (const key of k.keys as string[]) {
    try {
      parseVerifierKey(key);
    } catch (e) {
      throw new CliError(`GET ${url}: malformed key ${JSON.stringify(key.slice(0, 100))}: ${errorText(e)}`);
    }
  }
  return k.keys as string[];
}

/** RFC 9162 consistency proof between two sizes from the first source that can give it; undefined when none can. */
async function fetchConsistency(first: number, second: number, sources: readonly string[]): Promise<string[] | undefined> {
  if (first === 0) return []; // the node refuses first=0; every tree extends the empty one, checked against EMPTY_ROOT
  for (const base of sources) {
    const url = `${base}/hq/v1/proof/consistency?first=${first}&second=${second}`;
    let a: Awaited<ReturnType<typeof httpJson>>;
    try {
      a = await httpJson("GET", url);
    } catch {
      continue; // another source may answer; with none, the check fails and says so
    }
    const proof = (a.json as { proof?: unknown } | null)?.proof;
    if (a.status === 200 && Array.isArray(proof) && proof.every((h) => typeof h === "string")) return proof as string[];
  }
  return undefined;
}

function exportParams(o: { match: string[]; start?: string; end?: string }): URLSearchParams {
  const p = new URLSearchParams();
  for (const m of o.match.length > 0 ? o.match : [DEFAULT_MATCH]) p.append("match[]", m);
  p.set("start", o.start ?? "0");
  p.set("end", o.end ?? String(Date.now() / 1000));
  // Each replica's own data: a majority read would merge replicas and hide which one holds what.
  p.set("consistency", "local");
  return p;
}

/** Streams /api/v1/export line by line; the timeout is per silence, so a big export is not cut at 30 s. */
async function streamExport(base: string, params: URLSearchParams, onLine: (text: string) => void | Promise<void>): Promise<{ bytes: number }> {
  const url = `${base}/api/v1/export?${params.toString()}`;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new Error(`no data for ${REQUEST_TIMEOUT_MS / 1000} s`)), REQUEST_TIMEOUT_MS);
  let bytes = 0;
  try {
    let res: Response;
    try {
      res = await fetch(url, { signal: ctl.signal });
    } catch (e) {
      throw new CliError(`GET ${url}: ${errorText(e)}`);
    }
    if (!res.ok) throw new CliError(`GET ${url}: ${describeFailure({ status: res.status, headers: res.headers, text: await res.text() })}`);
    if (res.body === null) return { bytes };
    const splitter = new LineSplitter(EXPORT_LINE_BYTES_MAX, "the export");
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        timer.refresh();
        bytes += chunk.length;
        if (bytes > EXPORT_BYTES_MAX)
          throw new CliError(`GET ${url}: the export exceeds the limit of ${EXPORT_BYTES_MAX} bytes; narrow it with --match, --start and --end`);
        for (const line of splitter.push(chunk)) if (line.trim() !== "") await onLine(line);
      }
      for (const line of splitter.end()) if (line.trim() !== "") await onLine(line);
    } catch (e) {
      if (e instanceof CliError) throw e;
      if (isHqError(e)) throw new CliError(`GET ${url}: ${e.message}; narrow it with --match, --start and --end`);
      throw new CliError(`GET ${url}: ${errorText(e)}`);
    }
    return { bytes };
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Trust state

export function defaultStatePath(origin: string): string {
  // Only file-name-safe characters: the origin comes from the node.
  const safe = origin.replace(/\//g, "_").replace(/[^A-Za-z0-9_.-]/g, "_");
  return join(process.env["HOME"] ?? homedir(), ".config", "hqts", `trust-${safe}.json`);
}

async function readState(file: string): Promise<TrustState | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CliError(`cannot read the trust state ${file}: ${errorText(e)}`);
  }
  try {
    return parseTrustState(JSON.parse(text), file);
  } catch (e) {
    throw new CliError(`the trust state ${file} is damaged (${errorText(e)}); fix it, or move it away to trust the node's keys afresh`);
  }
}

/** Atomic, private: the state decides what is trusted, so no one else may write it and a crash leaves the old one. */
async function writeState(file: string, state: TrustState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await fd.writeFile(JSON.stringify(state, null, 2) + "\n", "utf8");
    await fd.chmod(0o600);
    await fd.sync();
  } finally {
    await fd.close();
  }
  await rename(tmp, file);
}

/** A --trust file: one verifier key string per line; blank lines and `#` comments are skipped. */
export async function readTrustFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new CliError(`--trust ${file}: ${errorText(e)}`, 2);
  }
  if (Buffer.byteLength(text) > TRUST_FILE_BYTES_MAX) throw new CliError(`--trust ${file}: larger than the limit of ${TRUST_FILE_BYTES_MAX} bytes`, 2);
  const keys: string[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    try {
      parseVerifierKey(line);
    } catch (e) {
      throw new CliError(`--trust ${file}: line ${i + 1}: ${errorText(e)}`, 2);
    }
    keys.push(line);
  });
  if (keys.length === 0) throw new CliError(`--trust ${file}: no keys in it`, 2);
  if (keys.length > TRUST_KEYS_MAX) throw new CliError(`--trust ${file}: ${keys.length} keys exceed the limit of ${TRUST_KEYS_MAX}`, 2);
  return keys;
}

interface Trust {
  file: string;
  state: TrustState | null;
  /** --trust: used instead of the pinned keys. */
  override: string[] | null;
}

/** Loads (once per origin) the state, pinning the node's keys on first use when nothing else is trusted. */
async function trustFor(opts: VerifyOptions, origin: string, base: string, err: NodeJS.WritableStream, cache: Map<string, Trust>): Promise<Trust> {
  const known = cache.get(origin);
  if (known !== undefined) return known;
  const file = opts.state ?? defaultStatePath(origin);
  let state = await readState(file);
  if (state !== null && state.origin !== origin)
    throw new CliError(`the trust state ${file} is for ${JSON.stringify(state.origin)}, but ${base} serves ${JSON.stringify(origin)}`);
  const override = opts.trust !== undefined ? await readTrustFile(opts.trust) : null;
  if (state === null && override !== null) state = { origin, keys: override, checkpoints: [] };
  if (state === null) {
    const keys = await fetchKeys(base, origin);
    err.write(`hqts: trusting ${keys.length} key${keys.length === 1 ? "" : "s"} on first use: ${keys.join(", ")} (pinned in ${file} once the checkpoint verifies)\n`);
    state = { origin, keys, checkpoints: [] };
  }
  const t: Trust = { file, state, override };
  cache.set(origin, t);
  return t;
}

// ---------------------------------------------------------------------------
// Verifying one node

interface NodeRef {
  id: string | null;
  url: string;
}

export interface NodeResult {
  node: string | null;
  url: string;
  report: VerifyReport | null;
  /** Why the node could not be verified at all (unreachable, no checkpoint, ...). */
  error: string | null;
  elapsedMs: number;
  samplesPerSecond: number;
  /** The size of the checkpoint seen before that this one was compared with. */
  comparedWith: number | null;
}

function progressBar(err: NodeJS.WritableStream, total: number, label: string): SingleBar | null {
  const tty = (err as NodeJS.WriteStream).isTTY === true;
  if (!tty || total <= PROGRESS_BATCHES_MIN) return null;
  const bar = new SingleBar({ stream: err as NodeJS.WriteStream, format: `${label} [{bar}] {value}/{total} batches  {eta_formatted}`, hideCursor: true, clearOnComplete: true });
  bar.start(total, 0);
  return bar;
}

async function verifyNode(node: NodeRef, opts: VerifyOptions, others: readonly string[], expectedOrigin: string | null, err: NodeJS.WritableStream, trusts: Map<string, Trust>): Promise<NodeResult> {
  const t0 = performance.now();
  const cp = await fetchCheckpoint(node.url);
  if (expectedOrigin !== null && cp.origin !== expectedOrigin) throw new CliError(`${node.url} serves the log ${JSON.stringify(cp.origin)}, not this cluster's ${JSON.stringify(expectedOrigin)}`);
  const trust = await trustFor(opts, cp.origin, node.url, err, trusts);
  const state = trust.state!;
  const keys = trust.override ?? state.keys;
  // The proof to ask for depends on the size; read it from the note (checked by verifyCheckpoint, not trusted here).
  let claimedSize = cp.size;
  try {
    claimedSize = parseCheckpoint(parseNote(cp.note).text).treeSize;
  } catch {
    // verifyCheckpoint reports the malformed note
  }
  const prev = previousCheckpoint(state, claimedSize);
  let proof: string[] | undefined;
  if (prev !== undefined && prev.size !== claimedSize) {
    // A smaller checkpoint (a lagging replica) can only be proved a prefix by a node whose log is longer.
    const sources = claimedSize > prev.size ? [node.url] : [node.url, ...others];
    proof = await fetchConsistency(Math.min(prev.size, claimedSize), Math.max(prev.size, claimedSize), sources);
  }
  const check = verifyCheckpoint(cp.note, keys, cp.origin, prev, proof);
  const done = (report: VerifyReport): NodeResult => {
    const elapsedMs = performance.now() - t0;
    return { node: node.id, url: node.url, report, error: null, elapsedMs, samplesPerSecond: elapsedMs > 0 ? (report.samples * 1000) / elapsedMs : 0, comparedWith: prev?.size ?? null };
  };
  if (check.checkpoint === null) return done(checkpointFailureReport(check));
  const checkpoint = check.checkpoint;
  const verifier = new PointVerifier({
    checkpoint,
    consistency: consistencyOf(check),
    checkpointProblems: check.problems,
    ...(opts.mmdMs !== undefined ? { mmdMs: opts.mmdMs } : {}),
    nowMs: Date.now(),
  });

  // Pass 1: the lines are kept (bounded by EXPORT_BYTES_MAX) for pass 2, after the proofs.
  const lines: string[] = [];
  await streamExport(node.url, exportParams(opts), (text) => {
    verifier.addSeries(text);
    lines.push(text);
  });
  const ids = verifier.unansweredBatchIds();
  const bar = progressBar(err, ids.length, node.id ?? node.url);
  try {
    for (let i = 0; i < ids.length; i += PROOF_IDS_PER_REQUEST) {
      const chunk = ids.slice(i, i + PROOF_IDS_PER_REQUEST);
      const answer = await okJson("POST", `${node.url}/hq/v1/proof/batches`, { ids: chunk, size: checkpoint.size, bytes: true });
      verifier.addProofResponse(chunk, answer);
      bar?.increment(chunk.length);
    }
  } finally {
    bar?.stop();
  }
  // Pass 2.
  for (let i = 0; i < lines.length; i++) {
    verifier.checkSeries(lines[i]);
    lines[i] = ""; // its points are checked: let the memory go
  }
  const report = verifier.report();
  if (check.problems.length === 0) {
    // The log's head is learned even when this replica's data fails: rewrites are about the log, not one replica.
    trust.state = recordCheckpoint(state, checkpoint);
    await writeState(trust.file, trust.state);
  }
  return done(report);
}

// ---------------------------------------------------------------------------
// Output

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `${ms} ms` : d.toISOString();
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function rate(r: NodeResult): string {
  return `${Math.round(r.samplesPerSecond)} samples/s (${(r.elapsedMs / 1000).toFixed(2)} s)`;
}

function consistencyText(report: VerifyReport, comparedWith: number | null): string {
  switch (report.consistency) {
    case "first-seen":
      return "first checkpoint seen (nothing to compare with)";
    case "consistent":
      return `consistent with checkpoint ${comparedWith ?? "?"} seen before`;
    case "rewritten":
      return `REWRITTEN: not consistent with checkpoint ${comparedWith ?? "?"} seen before`;
    case "unchecked":
      return "unchecked (no consistency proof offline, and no checkpoint of this size seen before)";
  }
}

export function formatReport(title: string, report: VerifyReport, comparedWith: number | null, speed: string | null, warnings: readonly string[] = []): string {
  const out: string[] = [title];
  for (const w of warnings) out.push(`  WARNING     ${w}`);
  const cp = report.checkpoint;
  out.push(cp === null ? "  checkpoint  NOT TRUSTED" : `  checkpoint  size ${cp.size}, root ${cp.root}, ${iso(cp.timeMs)}, signed by ${cp.signedBy.join(", ")}`);
  if (cp !== null) {
    out.push(`  consistency ${consistencyText(report, comparedWith)}`);
    out.push(`  series      ${report.series}`);
    out.push(`  samples     ${report.samplesVerified} verified, ${report.samplesPending} pending, of ${report.samples}`);
    const b = report.batches;
    out.push(`  batches     ${b.verified} verified, ${b.pending} pending, ${b.failed} failed, of ${b.total}`);
    if (speed !== null) out.push(`  speed       ${speed}`);
  }
  out.push(`  result      ${report.ok ? "OK" : "FAILED"}`);
  if (report.failures.length > 0) {
    out.push(`  failures (${report.failures.length + report.failuresOmitted}):`);
    for (const f of report.failures) out.push(`    ${f.reason}`);
    if (report.failuresOmitted > 0) out.push(`    ... and ${report.failuresOmitted} more`);
  }
  return out.join("\n") + "\n";
}

function formatTable(results: readonly NodeResult[]): string {
  const rows = [["NODE", "CHECKPOINT", "CONSISTENCY", "SAMPLES", "VERIFIED", "PENDING", "BATCHES", "FAILED", "RESULT"]];
  for (const r of results) {
    const rep = r.report;
    if (rep === null) rows.push([r.node ?? r.url, "-", "-", "-", "-", "-", "-", "-", `ERROR: ${r.error ?? ""}`]);
    else
      rows.push([
        r.node ?? r.url,
        rep.checkpoint === null ? "untrusted" : String(rep.checkpoint.size),
        rep.consistency,
        String(rep.samples),
        String(rep.samplesVerified),
        String(rep.samplesPending),
        String(rep.batches.total),
        String(rep.batches.failed),
        rep.ok ? "OK" : `FAILED (${rep.failures.length + rep.failuresOmitted})`,
      ]);
  }
  const numeric = new Set([3, 4, 5, 6, 7]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (i === row.length - 1 ? 0 : row[i]!.length))));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n") + "\n";
}

function checkTimes(o: { start?: string; end?: string }): void {
  for (const [flag, v] of [["--start", o.start], ["--end", o.end]] as const) {
    if (v === undefined) continue;
    try {
      parseApiTime(v, { field: flag });
    } catch (e) {
      throw new CliError(`${errorText(e)} (use RFC 3339 or Unix seconds)`, 2);
    }
  }
}

function nodesOf(o: { url?: string; dir?: string }): { nodes: NodeRef[]; origin: string | null } {
  if (o.url !== undefined) return { nodes: [{ id: null, url: o.url }], origin: null };
  try {
    const c = readClusterFile(o.dir!);
    if (c.nodes.length === 0) throw new CliError(`${o.dir}/cluster.json lists no nodes`);
    return { nodes: c.nodes.map((n) => ({ id: n.id, url: n.http })), origin: checkpointOrigin(c.cluster) };
  } catch (e) {
    if (e instanceof PlaygroundError) throw new CliError(e.message, e.exitCode);
    if (e instanceof CliError) throw e;
    throw new CliError(`${o.dir}/cluster.json: ${errorText(e)}`);
  }
}

// ---------------------------------------------------------------------------
// Commands

/** `hqts verify`; returns the exit code: 0 every check passed, 1 something failed. Usage errors throw CliError(…, 2). */
export async function runVerify(opts: VerifyOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (opts.bundle !== undefined) {
    if (opts.url !== undefined || opts.dir !== undefined) throw new CliError("--bundle is checked offline: give it without --url or --dir", 2);
    if (opts.match.length > 0 || opts.start !== undefined || opts.end !== undefined)
      throw new CliError("--match, --start and --end choose what goes into a bundle (hqts export-bundle); they do not apply to --bundle", 2);
    return runVerifyBundle(opts, out);
  }
  if ((opts.url === undefined) === (opts.dir === undefined)) throw new CliError("give --url (one node), --dir (every node of a playground) or --bundle FILE", 2);
  checkTimes(opts);
  const { nodes, origin } = nodesOf(opts);
  const runStart = performance.now();
  const trusts = new Map<string, Trust>();
  const results: NodeResult[] = [];
  for (const n of nodes) {
    const others = nodes.filter((x) => x !== n).map((x) => x.url);
    try {
      results.push(await verifyNode(n, opts, others, origin, err, trusts));
    } catch (e) {
      // One node's failure must not hide the others' reports; usage errors stop the run.
      if (e instanceof CliError && e.exitCode === 2) throw e;
      if (!(e instanceof CliError) && !isHqError(e)) throw e;
      results.push({ node: n.id, url: n.url, report: null, error: e.message, elapsedMs: 0, samplesPerSecond: 0, comparedWith: null });
    }
  }
  const ok = results.every((r) => r.report?.ok === true);
  if (opts.json) {
    const view = results.map((r) => ({ node: r.node, url: r.url, error: r.error, elapsedMs: Math.round(r.elapsedMs), samplesPerSecond: Math.round(r.samplesPerSecond), ...r.report }));
    const elapsedMs = Math.round(performance.now() - runStart);
    out.write(JSON.stringify(opts.url !== undefined ? view[0] : { ok, elapsedMs, nodes: view }, null, 2) + "\n");
  } else {
    for (const r of results) {
      const title = r.node === null ? `node ${r.url}` : `node ${r.node} (${r.url})`;
      out.write(r.report === null ? `${title}\n  result      ERROR: ${r.error}\n` : formatReport(title, r.report, r.comparedWith, rate(r)));
    }
    if (opts.dir !== undefined) {
      const seconds = (performance.now() - runStart) / 1000;
      const samples = results.reduce((n, r) => n + (r.report?.samples ?? 0), 0);
      out.write(`\n${formatTable(results)}(${plural(results.length, "node")}, ${plural(samples, "sample")} in ${seconds.toFixed(2)} s: ${Math.round(seconds > 0 ? samples / seconds : 0)} samples/s)\n`);
    }
  }
  return ok ? 0 : 1;
}

async function runVerifyBundle(opts: VerifyOptions, out: NodeJS.WritableStream): Promise<number> {
  const file = opts.bundle!;
  const t0 = performance.now();
  let trusted: string[] | null = opts.trust !== undefined ? await readTrustFile(opts.trust) : null;
  let known: TrustState | null = null;
  // The state file depends on the origin, which only the bundle names: with --state it is known up front.
  if (opts.state !== undefined) known = await readState(opts.state);
  let result: Awaited<ReturnType<typeof verifyBundle>>;
  try {
    if (opts.state === undefined) {
      // Peek at the origin for the default state file; the bundle is read again by verifyBundle.
      for await (const item of readBundle(file)) {
        if (item.kind === "header") known = await readState(defaultStatePath(item.header.origin));
        break;
      }
    }
    if (trusted === null && known !== null) trusted = known.keys;
    result = await verifyBundle(file, { trustedKeys: trusted, known: known?.checkpoints ?? [], ...(opts.mmdMs !== undefined ? { mmdMs: opts.mmdMs } : {}) });
  } catch (e) {
    if (e instanceof CliError) throw e;
    if (isHqError(e) || (e as NodeJS.ErrnoException).code !== undefined) throw new CliError(`--bundle ${file}: ${errorText(e)}`);
    throw e;
  }
  if (known !== null && known.origin !== result.header.origin) throw new CliError(`the trust state is for ${JSON.stringify(known.origin)}, the bundle for ${JSON.stringify(result.header.origin)}`);
  const elapsedMs = performance.now() - t0;
  const speed = elapsedMs > 0 ? (result.report.samples * 1000) / elapsedMs : 0;
  if (opts.json) out.write(JSON.stringify({ bundle: file, warnings: result.warnings, elapsedMs: Math.round(elapsedMs), samplesPerSecond: Math.round(speed), ...result.report }, null, 2) + "\n");
  else out.write(formatReport(`bundle ${file} (${result.header.origin})`, result.report, result.report.checkpoint?.size ?? null, `${Math.round(speed)} samples/s (${(elapsedMs / 1000).toFixed(2)} s)`, result.warnings));
  return result.report.ok ? 0 : 1;
}

/** `hqts export-bundle`: one node's checkpoint, keys, export and proofs in one gzip'ed file. */
export async function runExportBundle(opts: ExportBundleOptions, err: NodeJS.WritableStream): Promise<void> {
  if ((opts.url === undefined) === (opts.dir === undefined)) throw new CliError("give --url (a node) or --dir (a playground: its first node that answers)", 2);
  checkTimes(opts);
  const { nodes, origin } = nodesOf(opts);
  let node: NodeRef | null = null;
  let cp: CheckpointAnswer | null = null;
  const errors: string[] = [];
  for (const n of nodes) {
    try {
      cp = await fetchCheckpoint(n.url);
      node = n;
      break;
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      errors.push(e.message);
    }
  }
  if (node === null || cp === null) throw new CliError(errors.join("; "));
  if (origin !== null && cp.origin !== origin) throw new CliError(`${node.url} serves the log ${JSON.stringify(cp.origin)}, not this cluster's ${JSON.stringify(origin)}`);
  const keys = await fetchKeys(node.url, cp.origin);
  // A bundle whose checkpoint its own keys do not open would only fail later, offline.
  const check = verifyCheckpoint(cp.note, keys, cp.origin);
  if (check.checkpoint === null) throw new CliError(`${node.url}: ${check.problems.join("; ")}`);
  const size = check.checkpoint.size;
  const writer = await BundleWriter.open(opts.out, { origin: cp.origin, keys, checkpoint: { origin: cp.origin, size, root: check.checkpoint.root, timeMs: check.checkpoint.timeMs, note: cp.note } });
  let series = 0;
  let samples = 0;
  const ids = new Set<string>();
  try {
    await streamExport(node.url, exportParams(opts), async (text) => {
      const line = JSON.parse(text) as { batches?: unknown };
      if (Array.isArray(line.batches)) {
        samples += line.batches.length;
        for (const b of line.batches) if (typeof b === "string") ids.add(b);
      }
      series += 1;
      await writer.addSeriesLine(text);
    });
    const list = [...ids];
    const bar = progressBar(err, list.length, node.id ?? node.url);
    try {
      for (let i = 0; i < list.length; i += PROOF_IDS_PER_REQUEST) {
        const chunk = list.slice(i, i + PROOF_IDS_PER_REQUEST);
        const url = `${node.url}/hq/v1/proof/batches`;
        const a = (await okJson("POST", url, { ids: chunk, size, bytes: true })) as { size?: unknown; batches?: unknown } | null;
        if (a?.size !== size || !Array.isArray(a.batches) || a.batches.length !== chunk.length)
          throw new CliError(`POST ${url}: the answer is not for size ${size} or does not answer all ${chunk.length} batch ids`);
        for (const b of a.batches) await writer.addBatch(b);
        bar?.increment(chunk.length);
      }
    } finally {
      bar?.stop();
    }
    await writer.close();
  } catch (e) {
    await writer.abort();
    if (e instanceof CliError) throw e;
    if (isHqError(e)) throw new CliError(`${opts.out}: ${e.message}${e.code === "too_large" ? "; narrow the bundle with --match, --start and --end" : ""}`);
    if (e instanceof SyntaxError) throw new CliError(`${node.url}: an export line is not JSON: ${e.message}`);
    throw new CliError(`${opts.out}: ${errorText(e)}`);
  }
  err.write(
    `hqts: wrote ${opts.out}: checkpoint ${size} of ${cp.origin} from ${node.id ?? node.url}, ${plural(series, "series", "series")}, ${plural(samples, "sample")}, ${plural(ids.size, "batch", "batches")}, ${writer.uncompressedBytes} bytes uncompressed\n`,
  );
}
