// `hqts cluster ...`: the local playground (etcd members + HQ-TS nodes as
// processes on this machine). The work is in src/cluster/playground/, loaded
// on demand (it pulls in the etcd client, which other commands do not need).

import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { PlaygroundError, parseNodeArgs, readClusterFile } from "../cluster/playground/layout.js";
import { isHqError } from "../core/errors.js";
import type { PlaygroundEnv } from "../cluster/playground/playground.js";
import type { FaultOptions } from "./fault-proxy.js";
import { CliError } from "./http.js";

const pg = () => import("../cluster/playground/playground.js");
const fp = () => import("./fault-proxy.js");
const env = (): PlaygroundEnv => ({ cliMain: fileURLToPath(new URL("./main.js", import.meta.url)), out: process.stdout });

async function wrap(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof PlaygroundError) throw new CliError(e.message, e.exitCode);
    if (isHqError(e)) throw new CliError(`${e.message}${e.retryable ? " (transient: try again)" : ""}`);
    throw e;
  }
}

function port(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < 1024 || n > 65535) throw new InvalidArgumentError("must be a port number 1024..65535");
  return n;
}

// ---------------------------------------------------------------- status: integrity

/**
 * The `integrity` object of a node's GET /hq/v1/cluster, when it has one: `{ scrub: { passes, findings,
 * lastPassAt }, repairs: { total, byKind, last } }` (the scrubber and the repair log, docs/repairs.md). Null when the node does not answer or has none.
 */
async function integrityOf(http: string): Promise<Record<string, unknown> | null> {
  try {
    const res = await fetch(`${http}/hq/v1/cluster`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) return null;
    const v = ((await res.json()) as { integrity?: unknown }).integrity;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Every node's integrity object by node id (empty when cluster.json cannot be read: status reports that itself). */
async function integrityByNode(dir: string): Promise<Map<string, Record<string, unknown> | null>> {
  let nodes: { id: string; http: string }[];
  try {
    nodes = readClusterFile(dir).nodes;
  } catch {
    return new Map();
  }
  return new Map(await Promise.all(nodes.map(async (n) => [n.id, await integrityOf(n.http)] as const)));
}

/** With --fault-proxy: the links (for --json) and the "faults: ..." line; undefined without fault proxies. */
async function faultsOf(dir: string): Promise<{ control: string; links: unknown; line: string } | undefined> {
  let control: string;
  try {
    const f = readClusterFile(dir).faultProxy;
    if (f === undefined || f === null) return undefined;
    control = f.control;
  } catch {
    return undefined;
  }
  const { getLinks, activeFaultsLine } = await fp();
  try {
    const links = await getLinks(control);
    return { control, links, line: activeFaultsLine(links) };
  } catch (e) {
    return { control, links: null, line: `faults: unknown (fault proxy control ${control}: ${(e as Error).message})` };
  }
}

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;
const count = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : Array.isArray(v) ? v.length : null);

/** The INTEGRITY cell, e.g. "scrub 3 passes, 0 findings; 2 repairs"; "-" when the node gave none. */
export function formatIntegrity(integrity: unknown): string {
  if (typeof integrity !== "object" || integrity === null) return "-";
  const i = integrity as { scrub?: unknown; repairs?: unknown };
  const parts: string[] = [];
  if (typeof i.scrub === "object" && i.scrub !== null) {
    const s = i.scrub as { passes?: unknown; findings?: unknown };
    const passes = count(s.passes);
    const findings = count(s.findings);
    parts.push(`scrub ${passes === null ? "? passes" : plural(passes, "pass", "passes")}, ${findings === null ? "? findings" : plural(findings, "finding", "findings")}`);
  }
  if (typeof i.repairs === "object" && i.repairs !== null) {
    const total = count((i.repairs as { total?: unknown }).total);
    parts.push(total === null ? "? repairs" : plural(total, "repair", "repairs"));
  }
  return parts.length === 0 ? "-" : parts.join("; ");
}

/**
 * Adds an INTEGRITY column at the right of the node table of `formatStatus`'s text (the line starting with
 * "NODE" and one line per node after it); when that table is not found, appends one line per node instead.
 */
export function withIntegrityColumn(text: string, nodeIds: readonly string[], cells: ReadonlyMap<string, string>): string {
  const lines = text.split("\n");
  const h = lines.findIndex((l) => /^NODE\s/.test(l));
  const rows = h < 0 ? [] : lines.slice(h + 1, h + 1 + nodeIds.length);
  const aligned = h >= 0 && rows.length === nodeIds.length && rows.every((l, k) => l.startsWith(nodeIds[k]!) && /\s/.test(l.charAt(nodeIds[k]!.length)));
  if (!aligned) {
    const extra = ["", "integrity:", ...nodeIds.map((id) => `  ${id}  ${cells.get(id) ?? "-"}`)];
    const end = text.endsWith("\n") ? lines.slice(0, -1) : lines;
    return [...end, ...extra].join("\n") + "\n";
  }
  const width = Math.max(...[lines[h]!, ...rows].map((l) => l.length));
  lines[h] = `${lines[h]!.padEnd(width)}  INTEGRITY`;
  nodeIds.forEach((id, k) => {
    lines[h + 1 + k] = `${lines[h + 1 + k]!.padEnd(width)}  ${cells.get(id) ?? "-"}`.trimEnd();
  });
  return lines.join("\n");
}

/** `hqts cluster up`: starts everything, then stays in the foreground until SIGINT/SIGTERM. */
async function runUp(o: { nodes: number; dir: string; basePort: number; cluster: string; nodeArgs?: string; faultProxy?: boolean }): Promise<void> {
  const nodeArgs = parseNodeArgs(o.nodeArgs ?? "");
  // --fault-proxy: the link proxies run in this process; they are stopped last, after every node and etcd member.
  const proxies = o.faultProxy === true ? (await fp()).planFaultProxies(o.basePort, o.nodes) : null;
  let stopping: Promise<void> | null = null;
  let stopFn: (() => Promise<void>) | null = null;
  const onSignal = (sig: string): void => {
    if (stopping !== null) return;
    process.stdout.write(`\n${sig}: stopping every node and etcd member\n`);
    stopping = (stopFn ?? (async () => undefined))().then(
      () => {
        process.stdout.write("stopped\n");
        process.exit(0);
      },
      (e: unknown) => {
        process.stderr.write(`hqts: error while stopping: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  let r: Awaited<ReturnType<Awaited<ReturnType<typeof pg>>["up"]>>;
  try {
    r = await (await pg()).up(env(), { dir: o.dir, nodes: o.nodes, basePort: o.basePort, cluster: o.cluster, nodeArgs, ...(proxies !== null ? { faultProxy: proxies.setup } : {}) });
  } catch (e) {
    await proxies?.close();
    throw e;
  }
  const stopPlayground = r.stop;
  stopFn = async () => {
    try {
      await stopPlayground();
    } finally {
      await proxies?.close();
    }
  };
  // Stay in the foreground: the children are detached, so keep the event loop alive ourselves.
  setInterval(() => undefined, 1 << 30);
}

export function addClusterCommands(program: Command, act: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>): void {
  const cluster = program
    .command("cluster")
    .description("a local playground cluster: etcd members and HQ-TS nodes as processes on this machine (docs/playground.md)");
  const dirOpt = (): Option => new Option("--dir <dir>", "playground directory (holds cluster.json, data and logs)").default("data/playground");

  cluster
    .command("up")
    .description(
      "start N etcd members and N nodes, wait until all are healthy and every node's replication runs, write\n" +
        "DIR/cluster.json and stay in the foreground;\n" +
        "SIGINT/SIGTERM stops everything. Ports from --base-port B: node i HTTP B+i, etcd client B+10+i, etcd peer B+20+i (i from 0)",
    )
    .option("--nodes <n>", "number of nodes (1-10)", (v) => Number.parseInt(v, 10), 3)
    .addOption(dirOpt())
    .option("--base-port <port>", "first port of the scheme", port, 8428)
    .option("--cluster <name>", "cluster name (etcd prefix /hqts/<name>/)", "playground")
    .option(
      "--node-args <flags>",
      'extra flags for every `hqts node`, split at whitespace, e.g. "--head-samples-max 1000 --flush-interval 5s";\n' +
        "kept in cluster.json and reused by start-node (--data, --http, --node-id, --etcd, --cluster, --advertise, --peer-route are the playground's)",
    )
    .option(
      "--fault-proxy",
      "route node-to-node and etcd peer traffic through link proxies run by this process (\"nI->nJ\" at B+60+10i+j,\n" +
        'one per ordered pair of nodes; "*->etcd-nK" at B+40+i in front of etcd peer i; control API at B+50);\n' +
        "inject faults with hqts cluster fault|heal (docs/chaos.md). Clients still reach the nodes directly",
      false,
    )
    .action(act(async (o: { nodes: number; dir: string; basePort: number; cluster: string; nodeArgs?: string; faultProxy: boolean }) => wrap(() => runUp(o))));

  cluster
    .command("status")
    .description(
      "health and replication state (running, rebuilding, joining) of every node, health of every etcd member,\n" +
        "etcd's leader, the registered members, the shard map, the coordinator; INTEGRITY: scrub passes and findings\n" +
        "and repairs recorded, when the node reports them (details: hqts repairs --dir DIR)",
    )
    .addOption(dirOpt())
    .option("--json", "print the report as JSON", false)
    .action(
      act(async (o: { dir: string; json: boolean }) =>
        wrap(async () => {
          const { status, formatStatus } = await pg();
          const [r, integrity] = await Promise.all([status({ dir: o.dir }), integrityByNode(o.dir)]);
          // The node's `integrity` (scrub passes and findings, repairs), when it gives one: a column and a JSON field.
          const report = { ...r, nodes: r.nodes.map((n) => ({ ...n, integrity: integrity.get(n.id) ?? null })) };
          const cells = new Map(report.nodes.map((n) => [n.id, formatIntegrity(n.integrity)]));
          const faults = await faultsOf(o.dir);
          process.stdout.write(
            o.json
              ? JSON.stringify(faults === undefined ? report : { ...report, faultProxy: faults }, null, 2) + "\n"
              : withIntegrityColumn(
                  formatStatus(r),
                  r.nodes.map((n) => n.id),
                  cells,
                ) + (faults === undefined ? "" : `${faults.line}\n`),
          );
        }),
      ),
    );

  cluster
    .command("fault")
    .description(
      "set link faults through the fault proxies of `cluster up --fault-proxy` (every link without --link; only the\n" +
        'given fields change) and print every link\'s state. Links: "nI->nJ" (node nI\'s traffic to node nJ), "*->etcd-nK"\n' +
        "(to etcd member nK's peer port); up = towards the link's target, down = its answers. A --link may hold *\n" +
        '(any run of characters): "n1->*" is all n1 sends, "*->n1" all sent to n1',
    )
    .addOption(dirOpt())
    .option("--link <pattern>", 'link name or pattern, e.g. "n1->n2", "*->n2" (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--delay <duration>", "one-way delay per direction, e.g. 500ms, 2s")
    .option("--jitter <duration>", "extra delay, uniform in [0, jitter]")
    .option("--bandwidth <bytes/s>", "bandwidth limit in bytes per second (0 = unlimited)")
    .option("--drop <rate>", "probability 0..1 that a new connection is reset")
    .option("--partition", "cut the link (nothing forwarded in the chosen direction)")
    .addOption(new Option("--direction <dir>", "which direction the faults apply to").choices(["up", "down", "both"]).default("both"))
    .action(act(async (o: FaultOptions) => wrap(async () => void process.stdout.write(await (await fp()).runFault(o)))));

  cluster
    .command("heal")
    .description("switch every fault off on every link of `cluster up --fault-proxy` and print the links")
    .addOption(dirOpt())
    .action(act(async (o: { dir: string }) => wrap(async () => void process.stdout.write(await (await fp()).runHeal(o.dir)))));

  cluster
    .command("stop-node")
    .description("stop one node together with its etcd member (waits until both are gone) and clear their pids in cluster.json")
    .argument("<id>", "node id, e.g. n2")
    .addOption(new Option("--signal <sig>", "TERM: graceful (SIGKILL after 10 s); KILL: at once").choices(["KILL", "TERM"]).default("TERM"))
    .addOption(dirOpt())
    .action(act(async (id: string, o: { signal: "KILL" | "TERM"; dir: string }) => wrap(async () => (await pg()).stopNode(env(), { dir: o.dir, id, signal: o.signal }))));

  cluster
    .command("start-node")
    .description(
      "start one node and its etcd member again (detached; logs in DIR/logs/; the node with cluster.json's nodeArgs),\n" +
        "update cluster.json and wait until the node is healthy and its replication runs.\n" +
        "A member whose WAL is corrupt is repaired: member remove, wipe, member add, restart",
    )
    .argument("<id>", "node id, e.g. n2")
    .addOption(dirOpt())
    .action(act(async (id: string, o: { dir: string }) => wrap(async () => (await pg()).startNode(env(), { dir: o.dir, id }))));
}
