// `hqts cluster ...`: the local playground (etcd members + HQ-TS nodes as
// processes on this machine). The work is in src/cluster/playground/, loaded
// on demand (it pulls in the etcd client, which other commands do not need).

import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { PlaygroundError, parseNodeArgs } from "../cluster/playground/layout.js";
import { isHqError } from "../core/errors.js";
import type { PlaygroundEnv } from "../cluster/playground/playground.js";
import { CliError } from "./http.js";

const pg = () => import("../cluster/playground/playground.js");
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

/** `hqts cluster up`: starts everything, then stays in the foreground until SIGINT/SIGTERM. */
async function runUp(o: { nodes: number; dir: string; basePort: number; cluster: string; nodeArgs?: string }): Promise<void> {
  const nodeArgs = parseNodeArgs(o.nodeArgs ?? "");
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
  const r = await (await pg()).up(env(), { dir: o.dir, nodes: o.nodes, basePort: o.basePort, cluster: o.cluster, nodeArgs });
  stopFn = r.stop;
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
        "kept in cluster.json and reused by start-node (--data, --http, --node-id, --etcd, --cluster, --advertise are the playground's)",
    )
    .action(act(async (o: { nodes: number; dir: string; basePort: number; cluster: string; nodeArgs?: string }) => wrap(() => runUp(o))));

  cluster
    .command("status")
    .description(
      "health and replication state (running, rebuilding, joining) of every node, health of every etcd member,\n" +
        "etcd's leader, the registered members, the shard map, the coordinator",
    )
    .addOption(dirOpt())
    .option("--json", "print the report as JSON", false)
    .action(
      act(async (o: { dir: string; json: boolean }) =>
        wrap(async () => {
          const { status, formatStatus } = await pg();
          const r = await status({ dir: o.dir });
          process.stdout.write(o.json ? JSON.stringify(r, null, 2) + "\n" : formatStatus(r));
        }),
      ),
    );

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
