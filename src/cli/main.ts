#!/usr/bin/env node
// The `hqts` command line (bin/hqts runs this file from dist/).

import { Command, InvalidArgumentError, Option } from "commander";
import { addClusterCommands } from "./cluster-cmd.js";
import { CliError, baseUrl } from "./http.js";
import { runCompleteness, runExport, runGaps, runLabels, runQuery, runSeries } from "./read-cmds.js";
import { VERSION } from "./version.js";
import type { NodeOptions } from "./node-cmd.js";
import { runWrite, type WriteOptions } from "./write-cmd.js";

function positiveInt(flag: string) {
  return (v: string): number => {
    if (!/^[0-9]+$/.test(v) || Number(v) <= 0 || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError(`${flag} must be a positive integer`);
    return Number(v);
  };
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function seconds(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a positive number of seconds`);
    return n;
  };
}

/** Runs an action; CliErrors become `hqts: message` and their exit code, anything else a stack trace and exit 1. */
function act<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      if (e instanceof CliError) {
        process.stderr.write(`hqts: ${e.message}\n`);
        process.exitCode = e.exitCode;
      } else {
        process.stderr.write(`hqts: unexpected error (a bug): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
        process.exitCode = 1;
      }
    }
  };
}

const urlOption = (): Option => new Option("--url <url>", "node to talk to, e.g. http://127.0.0.1:8428").env("HQTS_URL").makeOptionMandatory();
const timeoutOption = (): Option => new Option("--timeout <seconds>", "per-request timeout").argParser(seconds("--timeout")).default(300);

export function buildProgram(): Command {
  const program = new Command("hqts")
    .description("HQ-TS: a high-integrity time-series database")
    .version(VERSION)
    .showHelpAfterError()
    .configureHelp({ sortOptions: false });

  program
    .command("node")
    .description(
      "run a node: HTTP API + storage engine (prints the address it listens on). Standalone, or with --etcd and\n" +
        "--node-id a member of a cluster: it registers in etcd and serves its view of the cluster at GET /hq/v1/cluster",
    )
    .requiredOption("--data <dir>", "data directory (created if missing)")
    .requiredOption("--http <host:port>", "address to listen on, e.g. 127.0.0.1:8428 (port 0 picks a free one)")
    .option("--retention <duration>", "drop blocks older than this, e.g. 30d, 12h; 0 keeps everything (default: keep everything)")
    .option("--accept-data-loss", "start even over a corrupt WAL or block, quarantining the damaged files (standalone only)", false)
    .addOption(new Option("--log-level <level>", "log level (JSON logs on stderr)").choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"))
    .option("--max-body-bytes <n>", "largest request body accepted, after decompression (default 64 MiB)", positiveInt("--max-body-bytes"))
    .option("--shutdown-timeout <duration>", "on SIGTERM/SIGINT, how long in-flight requests may take to finish", "30s")
    .option("--head-samples-max <n>", "cut the in-memory head into a block once it holds this many samples (default 4000000)", positiveInt("--head-samples-max"))
    .option("--flush-interval <duration>", "...or once its oldest unflushed write is this old, e.g. 30m, 5s (default 30m)")
    .option("--scrub-rate <bytes/s>", "cluster mode: re-read and check every WAL segment and block at this many bytes per second; 0 turns the scrubber off (default 8388608)")
    .option("--scrub-pass-interval <duration>", "cluster mode: least time from the start of one scrub pass to the next (default 60s)")
    .option("--anti-entropy-interval <duration>", "cluster mode: pause between anti-entropy rounds with the other replicas; 0 turns it off (default 60s)")
    .option("--query-max-samples <n>", "PromQL: samples one query may load before it fails with 422 (default 50000000)", positiveInt("--query-max-samples"))
    .option("--query-timeout <duration>", "PromQL: the longest a query may run before it fails with 503 timeout (default 2m)")
    .option("--ha-dedup <file>", "deduplicate HA pairs of Prometheus: JSON rules {\"rules\":[{\"match\":\"{job=~\\\".+\\\"}\",\"replicaLabel\":\"__replica__\",\"interval\":\"15s\"}]} (docs/ingest.md, \"HA pairs\")")
    .option("--gap-rules <file>", "gap rules, JSON: expected interval and fill policy per selector (docs/gaps.md); the same file on every node")
    .option("--gap-scan-interval <duration>", "pause between gap scans (one node at a time runs them); 0 turns the gap job off (default 60s)")
    .option("--gap-lookback <duration>", "how far back each gap scan looks (default 24h)")
    .option("--node-id <id>", "cluster mode: this node's id, unique in the cluster (1-64 of [A-Za-z0-9_.-])")
    .option("--etcd <urls>", "cluster mode: etcd client URLs, comma-separated (e.g. http://10.0.0.1:2379,http://10.0.0.2:2379)")
    .option("--cluster <name>", "cluster mode: cluster name; its metadata lives under /hqts/<name>/ in etcd", "default")
    .option("--advertise <url>", "cluster mode: base URL other nodes and clients reach this node at (default: the listen address)")
    .option("--checkpoint-interval <duration>", "cluster mode: pause between checkpoints of the Merkle log of batches (the sequencer runs on the coordinator) (default 5s)")
    .option("--receipt-mmd <duration>", "cluster mode: the bound a signed receipt promises for its batch to appear in a checkpoint (default 60s)")
    .option("--provenance <on|off>", "cluster mode: off runs without the batch archive, signed receipts, the Merkle log and its proofs (for benchmarks; default on)")
    .option("--audit-interval <duration>", "cluster mode: pause between provenance audit rounds, which check stored points against their signed batches and repair a rewritten block from the replicas; 0 turns it off (default 60s)")
    .option("--peer-route <routes>", "cluster mode: how to reach some peers instead of the URLs they advertise, id=url comma-separated (the playground's fault proxies use it)")
    .option("--replication-factor <n>", "cluster mode: replicas per shard when this node creates the shard map", positiveInt("--replication-factor"), 3)
    .action(
      act(async (o: NodeOptions) => {
        // Loaded on demand: the server and engine stack is not needed by client commands.
        const { runNode } = await import("./node-cmd.js");
        await runNode(o);
      }),
    );

  program
    .command("write")
    .description(
      "send samples from a file or stdin (gzip-compressed files are fine); the format is detected unless given.\n" +
        "Large vmjson/influx inputs are split on line boundaries into requests of at most --batch-samples samples;\n" +
        "CSV is sent in one request. Prints one receipt (JSON) per request on stdout and a summary on stderr.\n" +
        "Retries 429/503 and network errors: writes are idempotent, so a retry never stores a point twice.",
    )
    .argument("[file]", "input file, or - for stdin", "-")
    .addOption(urlOption())
    .addOption(new Option("--format <format>", "input format (default: detected)").choices(["vmjson", "influx", "csv"]))
    .addOption(new Option("--precision <p>", "Influx timestamp precision").choices(["ns", "us", "ms", "s"]))
    .option("--csv-format <spec>", "CSV column spec, as VictoriaMetrics' format= parameter (e.g. 2:metric:temp,1:time:unix_s)")
    .option("--idempotency-key <key>", "batch id instead of the content digest; with several requests, request i gets <key>.<i>")
    .option("--batch-samples <n>", "at most this many samples per request", positiveInt("--batch-samples"), 50_000)
    .option("--batch-bytes <n>", "at most about this many bytes per request (before gzip)", positiveInt("--batch-bytes"), 16 * 1024 * 1024)
    .option("--no-gzip", "send request bodies uncompressed")
    .option("--retries <n>", "retries per request for retryable failures", (v) => Number.parseInt(v, 10), 5)
    .addOption(timeoutOption())
    .option("-q, --quiet", "no summary on stderr", false)
    .action(
      act(
        async (
          file: string,
          o: Omit<WriteOptions, "timeoutMs"> & { timeout: number },
        ) => {
          await runWrite(
            file,
            {
              url: baseUrl(o.url),
              ...(o.format !== undefined ? { format: o.format } : {}),
              ...(o.precision !== undefined ? { precision: o.precision } : {}),
              ...(o.csvFormat !== undefined ? { csvFormat: o.csvFormat } : {}),
              ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {}),
              batchSamples: o.batchSamples,
              batchBytes: o.batchBytes,
              gzip: o.gzip,
              retries: Number.isFinite(o.retries) && o.retries >= 0 ? o.retries : 5,
              timeoutMs: o.timeout * 1000,
              quiet: o.quiet,
            },
            process.stdout,
            process.stderr,
          );
        },
      ),
    );

  const readOpts = (c: Command): Command =>
    c
      .addOption(urlOption())
      .option("--start <time>", "RFC 3339 or Unix seconds (default: the beginning of time)")
      .option("--end <time>", "RFC 3339 or Unix seconds (default: the end of time)")
      .addOption(timeoutOption());

  readOpts(
    program
      .command("export")
      .description("print the samples of the matching series as JSON lines (VictoriaMetrics export format + timestamps_ns, origins, batches)")
      .option("--match <selector>", "series selector, e.g. 'up{job=\"node\"}' (repeatable: series matching any)", collect, [] as string[]),
  )
    .addOption(new Option("--inferred <mode>", "include or exclude inferred (gap-filled) points").choices(["include", "exclude"]).default("include"))
    .action(
      act(async (o: { url: string; match: string[]; start?: string; end?: string; timeout: number; inferred: "include" | "exclude" }) => {
        await runExport({ ...o, url: baseUrl(o.url), timeoutMs: o.timeout * 1000 }, process.stdout);
      }),
    );

  readOpts(
    program
      .command("query")
      .description(
        "print a compact table (series, points, first, last) of the points stored for a series selector such as " +
          "'up{job=\"node\"}'. It does not evaluate PromQL: the node answers PromQL on GET /api/v1/query and " +
          "/api/v1/query_range (docs/promql.md).",
      )
      .argument("<selector>", "series selector"),
  )
    .addOption(new Option("--inferred <mode>", "include or exclude inferred points").choices(["include", "exclude"]).default("include"))
    .action(
      act(async (selector: string, o: { url: string; start?: string; end?: string; timeout: number; inferred: "include" | "exclude" }) => {
        await runQuery({ ...o, match: [selector], url: baseUrl(o.url), timeoutMs: o.timeout * 1000 }, process.stdout);
      }),
    );

  readOpts(
    program
      .command("series")
      .description("list the series matching a selector")
      .option("--match <selector>", "series selector (repeatable)", collect, [] as string[]),
  ).action(
    act(async (o: { url: string; match: string[]; start?: string; end?: string; timeout: number }) => {
      await runSeries({ ...o, url: baseUrl(o.url), timeoutMs: o.timeout * 1000 }, process.stdout);
    }),
  );

  readOpts(
    program
      .command("labels")
      .description("list label names, or the values of one label when NAME is given")
      .argument("[name]", "label name whose values to list")
      .option("--match <selector>", "only series matching this selector (repeatable)", collect, [] as string[]),
  ).action(
    act(async (name: string | undefined, o: { url: string; match: string[]; start?: string; end?: string; timeout: number }) => {
      await runLabels(name, { ...o, url: baseUrl(o.url), timeoutMs: o.timeout * 1000 }, process.stdout);
    }),
  );

  readOpts(
    program
      .command("gaps")
      .description("list the gaps the gap job recorded for the selected series (open, filled, backfilled, stale)")
      .option("--match <selector>", "series selector (repeatable)", collect, [] as string[])
      .addOption(new Option("--state <state>", "only gaps in this state").choices(["open", "filled", "backfilled", "stale"]))
      .option("--json", "print the JSON answer", false),
  ).action(
    act(async (o: { url: string; match: string[]; start?: string; end?: string; timeout: number; state?: string; json: boolean }) => {
      await runGaps({ ...o, url: baseUrl(o.url), timeoutMs: o.timeout * 1000 }, process.stdout);
    }),
  );

  readOpts(
    program
      .command("completeness")
      .description("per series over [start, end]: expected slots, original points, inferred points, missing slots")
      .option("--match <selector>", "series selector (repeatable)", collect, [] as string[])
      .option("--json", "print the JSON answer", false),
  ).action(
    act(async (o: { url: string; match: string[]; start?: string; end?: string; timeout: number; json: boolean }) => {
      await runCompleteness({ ...o, url: baseUrl(o.url), timeoutMs: o.timeout * 1000 }, process.stdout);
    }),
  );

  program
    .command("repairs")
    .description(
      "list the repairs a node made and recorded in its repair log (GET /hq/v1/repairs): data copied from a peer after\n" +
        "WAL or block damage, a rebuild after a lost data directory, catch-up, anti-entropy convergence, read repair.\n" +
        "Prints a table (time, id, kind, trigger, where, from peer, outcome, points stored) or, with --json, the records.\n" +
        "With --dir, asks every node of a playground (DIR/cluster.json) and merges their records by time",
    )
    .addOption(new Option("--url <url>", "node to ask, e.g. http://127.0.0.1:8428").env("HQTS_URL"))
    .option("--dir <dir>", "a playground directory: ask every node listed in DIR/cluster.json instead of one --url")
    .option("--since <id>", "only records with a larger id (one node's ids, so --url only): the oldest --limit of them, to page forward")
    .option("--kind <kind>", "only records of this kind; several comma-separated (wal-damage, block-damage, block-missing, data-loss, catch-up, anti-entropy, read-repair)")
    .option("--limit <n>", "at most this many records, 1-10000 (without --since: the newest)", positiveInt("--limit"), 100)
    .option("--json", "print the records as a JSON array instead of a table", false)
    .addOption(timeoutOption())
    .addHelpText(
      "after",
      "\nExamples:\n" +
        "  hqts repairs --url http://127.0.0.1:8428\n" +
        "  hqts repairs --url http://127.0.0.1:8428 --kind wal-damage,block-damage --json\n" +
        "  hqts repairs --url http://127.0.0.1:8428 --since 42        # what came after record 42\n" +
        "  hqts repairs --dir data/playground                         # every node, merged by time\n" +
        "\nExit codes: 0 ok; 1 a node failed or did not answer (with --dir, after printing what the others answered); 2 bad usage.\n" +
        "Fields and the log file: docs/repairs.md",
    )
    .action(
      act(async (o: { url?: string; dir?: string; since?: string; kind?: string; limit: number; json: boolean; timeout: number }, cmd: Command) => {
        const { runRepairs } = await import("./repairs-cmd.js");
        // HQTS_URL in the environment does not count against an explicit --dir.
        const url = o.url === "" || (o.dir !== undefined && cmd.getOptionValueSource("url") === "env") ? undefined : o.url;
        await runRepairs(
          {
            ...(url !== undefined ? { url: baseUrl(url) } : {}),
            ...(o.dir !== undefined ? { dir: o.dir } : {}),
            ...(o.since !== undefined ? { since: o.since } : {}),
            ...(o.kind !== undefined ? { kind: o.kind } : {}),
            limit: o.limit,
            json: o.json,
            timeoutMs: o.timeout * 1000,
          },
          process.stdout,
          process.stderr,
        );
      }),
    );

  program
    .command("chaos")
    .description(
      "run an acceptance scenario of the chaos harness against a running playground (hqts cluster up --dir DIR), under\n" +
        "a live writer, ending with heal, convergence and a durability check on every node: kill-leader, corrupt-wal,\n" +
        "delay (needs cluster up --fault-proxy, else SKIP), replay, gap; `tour` runs all five and prints a table;\n" +
        "`campaign` runs seeded random faults (kill-node, kill-etcd, delay, partition, corrupt-wal) for --seconds under\n" +
        "continuous writes, then heals and checks convergence, durability and window digests on every node",
    )
    .argument("<scenario>", "kill-leader | corrupt-wal | delay | replay | gap | tour | campaign")
    .requiredOption("--dir <dir>", "the playground directory (DIR/cluster.json)")
    .option("--json", "print the results as JSON instead of a table", false)
    .option("--seconds <n>", "campaign: how long to inject faults", "600")
    .option("--seed <n>", "campaign: the schedule's seed (same seed, same schedule)", "1")
    .addHelpText("after", "\nExit codes: 0 every scenario PASS (or SKIP); 1 a scenario FAILed; 2 bad usage.\nScenarios and what they check: docs/chaos.md")
    .action(
      act(async (scenario: string, o: { dir: string; json: boolean; seconds: string; seed: string }) => {
        const { runChaos } = await import("./chaos-cmd.js");
        process.exitCode = await runChaos(scenario, o, process.stdout, process.stderr);
      }),
    );

  program
    .command("verify")
    .description(
      "check every exported point of a node against the signed batch it names, each batch against the node's signed\n" +
        "checkpoint (inclusion proof), and the checkpoint against pinned keys and the checkpoints seen before (consistency).\n" +
        "Reads each replica's own data (consistency=local); with --dir, every node of a playground in turn.\n" +
        "With --bundle, checks a file from `hqts export-bundle` with no network",
    )
    .addOption(new Option("--url <url>", "node to verify, e.g. http://127.0.0.1:8428").env("HQTS_URL"))
    .option("--dir <dir>", "a playground directory: verify every node listed in DIR/cluster.json")
    .option("--match <selector>", 'series selector (repeatable; default {__name__=~".+"}: everything)', collect, [] as string[])
    .option("--start <time>", "RFC 3339 or Unix seconds (default: the beginning of time)")
    .option("--end <time>", "RFC 3339 or Unix seconds (default: now)")
    .option("--state <file>", "trust state: pinned keys and checkpoints seen (default ~/.config/hqts/trust-<origin>.json)")
    .option("--trust <file>", "verifier keys to trust, one per line, instead of the pinned ones")
    .option("--mmd <seconds>", "the cluster's merge delay bound: a batch committed longer than this before the checkpoint must be in it", seconds("--mmd"), 60)
    .option("--bundle <file>", "verify a bundle file (hqts export-bundle) offline instead of a node")
    .option("--json", "print the report(s) as JSON", false)
    .addHelpText(
      "after",
      "\nExamples:\n" +
        "  hqts verify --url http://127.0.0.1:8428\n" +
        "  hqts verify --dir data/playground --match 'up{job=\"node\"}' --start 2024-01-01T00:00:00Z\n" +
        "  hqts verify --bundle evidence.json.gz --trust keys.txt\n" +
        "\nExit codes: 0 every check passed; 1 a check failed or a node could not be verified; 2 bad usage.\n" +
        "Trust model, failures and the bundle format: docs/verify.md",
    )
    .action(
      act(
        async (
          o: { url?: string; dir?: string; match: string[]; start?: string; end?: string; state?: string; trust?: string; mmd: number; bundle?: string; json: boolean },
          cmd: Command,
        ) => {
          const { runVerify } = await import("./verify-cmd.js");
          // HQTS_URL in the environment does not count against an explicit --dir or --bundle.
          const fromEnv = cmd.getOptionValueSource("url") === "env" && (o.dir !== undefined || o.bundle !== undefined);
          const url = o.url === "" || fromEnv ? undefined : o.url;
          process.exitCode = await runVerify(
            {
              ...(url !== undefined ? { url: baseUrl(url) } : {}),
              ...(o.dir !== undefined ? { dir: o.dir } : {}),
              match: o.match,
              ...(o.start !== undefined ? { start: o.start } : {}),
              ...(o.end !== undefined ? { end: o.end } : {}),
              ...(o.state !== undefined ? { state: o.state } : {}),
              ...(o.trust !== undefined ? { trust: o.trust } : {}),
              ...(o.bundle !== undefined ? { bundle: o.bundle } : {}),
              mmdMs: Math.round(o.mmd * 1000),
              json: o.json,
            },
            process.stdout,
            process.stderr,
          );
        },
      ),
    );

  program
    .command("key")
    .description(
      "a cluster node's signing key (DATA/keys/node.key, made at its first start): `show` prints its verifier key;\n" +
        "`rotate` (node stopped) retires it to DATA/keys/retired/ and makes a new one. The old verifier key stays\n" +
        "published in etcd, so what it signed still verifies; the node publishes the new one when it starts (docs/provenance.md)",
    )
    .argument("<action>", "show or rotate")
    .requiredOption("--data <dir>", "the node's data directory")
    .requiredOption("--node-id <id>", "the node's id")
    .option("--cluster <name>", "the cluster's name", "default")
    .action(
      act(async (action: string, o: { data: string; nodeId: string; cluster: string }) => {
        const { join } = await import("node:path");
        const keys = await import("../provenance/keys.js");
        const dir = join(o.data, "keys");
        const name = `${o.cluster}/${o.nodeId}`;
        if (action === "show") {
          for (const k of await keys.nodeVerifierKeys(dir, name)) process.stdout.write(`${k}\n`);
        } else if (action === "rotate") {
          const r = await keys.rotateNodeKey(dir, name);
          process.stdout.write(`new key:     ${r.signer.verifierKey()}\nretired key: ${r.retiredVerifierKey} (${r.retiredFile})\n`);
        } else throw new CliError(`key: unknown action "${action}" (show or rotate)`, 2);
      }),
    );

  program
    .command("export-bundle")
    .description(
      "write one node's signed checkpoint, keys, export (consistency=local) and the proofs of every batch the export\n" +
        "names into one gzip'ed JSON file, for `hqts verify --bundle FILE` anywhere, with no network (at most 1 GiB uncompressed)",
    )
    .addOption(new Option("--url <url>", "node to export from, e.g. http://127.0.0.1:8428").env("HQTS_URL"))
    .option("--dir <dir>", "a playground directory: its first node (in DIR/cluster.json) that answers")
    .option("--match <selector>", 'series selector (repeatable; default {__name__=~".+"}: everything)', collect, [] as string[])
    .option("--start <time>", "RFC 3339 or Unix seconds (default: the beginning of time)")
    .option("--end <time>", "RFC 3339 or Unix seconds (default: now)")
    .requiredOption("--out <file>", "the bundle file to write (replaced only once complete)")
    .addHelpText("after", "\nExit codes: 0 written; 1 a node failed or the bundle would exceed 1 GiB; 2 bad usage.\nThe bundle format: docs/verify.md")
    .action(
      act(async (o: { url?: string; dir?: string; match: string[]; start?: string; end?: string; out: string }, cmd: Command) => {
        const { runExportBundle } = await import("./verify-cmd.js");
        const url = o.url === "" || (o.dir !== undefined && cmd.getOptionValueSource("url") === "env") ? undefined : o.url;
        await runExportBundle(
          {
            ...(url !== undefined ? { url: baseUrl(url) } : {}),
            ...(o.dir !== undefined ? { dir: o.dir } : {}),
            match: o.match,
            ...(o.start !== undefined ? { start: o.start } : {}),
            ...(o.end !== undefined ? { end: o.end } : {}),
            out: o.out,
          },
          process.stderr,
        );
      }),
    );

  addClusterCommands(program, act);

  return program;
}

await buildProgram().parseAsync(process.argv);
