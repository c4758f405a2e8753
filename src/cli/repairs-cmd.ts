// `hqts repairs`: the repairs a node made (GET /hq/v1/repairs; src/repair/),
// as a table or JSON; with --dir, every node of a playground merged by time.

import { PlaygroundError, readClusterFile } from "../cluster/playground/layout.js";
import { REPAIR_KINDS, REPAIR_LIST_LIMIT_MAX, type RepairRecord } from "../repair/log.js";
import { REPAIRS_PATH } from "../repair/route.js";
import { CliError, describeFailure, request } from "./http.js";

export interface RepairsOptions {
  /** One node (base URL); exactly one of url and dir. */
  url?: string;
  /** A playground directory: every node in DIR/cluster.json. */
  dir?: string;
  since?: string;
  /** One kind, or several comma-separated. */
  kind?: string;
  limit: number;
  json: boolean;
  timeoutMs: number;
}

interface Answer {
  data: RepairRecord[];
  warnings: string[];
}

async function fetchRepairs(base: string, params: URLSearchParams, timeoutMs: number): Promise<Answer> {
  const a = await request(`${base}${REPAIRS_PATH}?${params.toString()}`, { method: "GET" }, { retries: 2, timeoutMs });
  if (a.status === 404) throw new CliError(`${describeFailure(a)} (only a cluster node, started with --etcd, serves the repair log: is this a standalone node?)`);
  if (a.status !== 200) throw new CliError(describeFailure(a));
  let body: { data?: unknown; warnings?: unknown };
  try {
    body = JSON.parse(a.text) as { data?: unknown; warnings?: unknown };
  } catch {
    throw new CliError(`${base}: the answer is not JSON: ${a.text.slice(0, 200)}`);
  }
  if (!Array.isArray(body.data)) throw new CliError(`${base}: the answer has no data list`);
  return { data: body.data as RepairRecord[], warnings: Array.isArray(body.warnings) ? body.warnings.map(String) : [] };
}

/** Nanoseconds (decimal int64) as RFC 3339 with ms, or the number itself when out of range. */
function isoNs(ns: string): string {
  try {
    const n = BigInt(ns);
    const ms = n / 1_000_000n - (n < 0n && n % 1_000_000n !== 0n ? 1n : 0n);
    const d = new Date(Number(ms));
    return Number.isNaN(d.getTime()) ? ns : d.toISOString();
  } catch {
    return ns;
  }
}

/** The WHERE column: file[@offset[+length]] and/or the time window. */
export function formatWhere(w: RepairRecord["where"] | undefined): string {
  if (w === undefined || w === null) return "-";
  const parts: string[] = [];
  if (w.file !== undefined) {
    let f = w.file;
    if (w.offset !== undefined) f += `@${w.offset}`;
    if (w.length !== undefined) f += `+${w.length}`;
    parts.push(f);
  } else if (w.offset !== undefined) parts.push(`@${w.offset}${w.length !== undefined ? `+${w.length}` : ""}`);
  if (w.fromNs !== undefined || w.toNs !== undefined) parts.push(`${w.fromNs !== undefined ? isoNs(w.fromNs) : "…"}..${w.toNs !== undefined ? isoNs(w.toNs) : "…"}`);
  return parts.length === 0 ? "-" : parts.join(" ");
}

/** The table: one row per record; with `withNode`, a NODE column. Right-aligned numbers. */
export function formatRepairs(records: readonly RepairRecord[], withNode: boolean): string {
  const header = ["TIME", ...(withNode ? ["NODE"] : []), "ID", "KIND", "TRIGGER", "WHERE", "FROM", "OUTCOME", "STORED"];
  const rows: string[][] = [header];
  for (const r of records)
    rows.push([
      String(r.at),
      ...(withNode ? [String(r.node)] : []),
      String(r.id),
      String(r.kind),
      String(r.trigger),
      formatWhere(r.where),
      r.fromPeer ?? "-",
      String(r.outcome),
      String(r.points?.stored ?? "-"),
    ]);
  const right = new Set([header.indexOf("ID"), header.indexOf("STORED")]);
  const widths = header.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) => row.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd());
  return lines.join("\n") + "\n";
}

/** Oldest first by time; ties by node, then id. */
function byTime(a: RepairRecord, b: RepairRecord): number {
  if (a.at !== b.at) return a.at < b.at ? -1 : 1;
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return Number(a.id) - Number(b.id);
}

export async function runRepairs(opts: RepairsOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<void> {
  if ((opts.url === undefined) === (opts.dir === undefined)) throw new CliError("give --url (one node) or --dir (every node of a playground)", 2);
  if (opts.since !== undefined && !/^[0-9]{1,16}$/.test(opts.since)) throw new CliError(`--since must be a record id (a decimal integer), got "${opts.since}"`, 2);
  if (opts.since !== undefined && opts.dir !== undefined) throw new CliError("--since takes one node's record id: use it with --url, not --dir", 2);
  if (opts.kind !== undefined) {
    const bad = opts.kind.split(",").map((k) => k.trim()).find((k) => !(REPAIR_KINDS as readonly string[]).includes(k));
    if (bad !== undefined) throw new CliError(`--kind: unknown kind "${bad}" (kinds: ${REPAIR_KINDS.join(", ")})`, 2);
  }
  if (!Number.isSafeInteger(opts.limit) || opts.limit < 1 || opts.limit > REPAIR_LIST_LIMIT_MAX) throw new CliError(`--limit must be 1..${REPAIR_LIST_LIMIT_MAX}`, 2);
  const params = new URLSearchParams();
  if (opts.since !== undefined) params.set("since", opts.since);
  if (opts.kind !== undefined) params.set("kind", opts.kind.split(",").map((k) => k.trim()).join(","));
  params.set("limit", String(opts.limit));

  if (opts.url !== undefined) {
    const a = await fetchRepairs(opts.url, params, opts.timeoutMs);
    for (const w of a.warnings) err.write(`hqts: warning: ${w}\n`);
    out.write(opts.json ? JSON.stringify(a.data, null, 2) + "\n" : formatRepairs(a.data, false) + `(${a.data.length} repair${a.data.length === 1 ? "" : "s"})\n`);
    return;
  }

  let nodes: { id: string; http: string }[];
  try {
    nodes = readClusterFile(opts.dir!).nodes;
  } catch (e) {
    if (e instanceof PlaygroundError) throw new CliError(e.message, e.exitCode);
    throw e;
  }
  const answers = await Promise.all(
    nodes.map(async (n) => {
      try {
        return { n, a: await fetchRepairs(n.http, params, opts.timeoutMs), error: null };
      } catch (e) {
        return { n, a: null, error: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
  const merged: RepairRecord[] = [];
  for (const { n, a } of answers) {
    if (a === null) continue;
    for (const w of a.warnings) err.write(`hqts: warning: ${n.id}: ${w}\n`);
    for (const r of a.data) merged.push({ ...r, node: typeof r.node === "string" && r.node !== "" ? r.node : n.id });
  }
  merged.sort(byTime);
  const shown = merged.slice(-opts.limit);
  const failed = answers.filter((x) => x.error !== null);
  const answered = answers.length - failed.length;
  out.write(
    opts.json
      ? JSON.stringify(shown, null, 2) + "\n"
      : formatRepairs(shown, true) + `(${shown.length} repair${shown.length === 1 ? "" : "s"} from ${answered} of ${answers.length} node${answers.length === 1 ? "" : "s"})\n`,
  );
  if (failed.length > 0)
    throw new CliError(`${failed.length} of ${answers.length} nodes did not answer; their repairs are missing above: ${failed.map((x) => `${x.n.id} (${x.error})`).join("; ")}`);
}
