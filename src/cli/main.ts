#!/usr/bin/env node
// The `hqts` command line (bin/hqts runs this file from dist/).

import { Command, InvalidArgumentError, Option } from "commander";
import { addClusterCommands } from "./cluster-cmd.js";
import { CliError, baseUrl } from "./http.js";
import { runExport, runLabels, runQuery, runSeries } from "./read-cmds.js";
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
    .option("--node-id <id>", "cluster mode: this node's id, unique in the cluster (1-64 of [A-Za-z0-9_.-])")
    .option("--etcd <urls>", "cluster mode: etcd client URLs, comma-separated (e.g. http://10.0.0.1:2379,http://10.0.0.2:2379)")
    .option("--cluster <name>", "cluster mode: cluster name; its metadata lives under /hqts/<name>/ in etcd", "default")
    .option("--advertise <url>", "cluster mode: base URL other nodes and clients reach this node at (default: the listen address)")
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
        "for now: take a series selector and print a compact table (series, points, first, last).\n" +
          "PromQL expressions come in a later version; today only plain selectors such as 'up{job=\"node\"}' work.",
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

  addClusterCommands(program, act);

  return program;
}

await buildProgram().parseAsync(process.argv);
