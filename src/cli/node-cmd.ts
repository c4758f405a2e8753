// `hqts node`: one node (HTTP server + storage engine). Without --etcd it is
// standalone; with --etcd and --node-id it also registers in etcd and keeps a
// view of the cluster (membership, shard map, coordinator), served at
// GET /hq/v1/cluster. etcd is never in the path of a write or read.

import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { DEFAULT_LIMITS, type Limits } from "../core/limits.js";
import { isHqError } from "../core/errors.js";
import { openEngine } from "../storage/engine.js";
import { createHqServer } from "../server/server.js";
import type { StorageEngine } from "../storage/engine-api.js";
import { ClusterAgent } from "../cluster/membership.js";
import { EtcdMeta, parseEndpoints } from "../cluster/etcd.js";
import { inboundRoute } from "../cluster/transport.js";
import { peerReadRoute } from "../cluster/peer-read.js";
import { RepairLog } from "../repair/log.js";
import { repairsRoute } from "../repair/route.js";
import { SCRUB_BYTES_PER_SECOND_DEFAULT, SCRUB_PASS_INTERVAL_MS_DEFAULT } from "../storage/scrubber.js";
import { NodeIntegrity } from "./integrity-node.js";
import { encodeWithDigest } from "../core/batch.js";
import { GapJob } from "../gaps/job.js";
import { parseGapRules } from "../gaps/rules.js";
import { parseHaRules, type HaRule } from "../ingest/ha-dedup.js";
import { parseSelector } from "../query/selector.js";
import { readFile } from "node:fs/promises";
import type { Engine } from "../storage/engine.js";
import { UnavailableError } from "../core/errors.js";
import { openReplicatedEngine, Replication } from "./cluster-node.js";
import { NodeProvenance } from "./provenance-node.js";
import { CliError } from "./http.js";
import { VERSION } from "./version.js";

export interface NodeOptions {
  data: string;
  http: string;
  retention?: string;
  acceptDataLoss: boolean;
  logLevel: string;
  maxBodyBytes?: number;
  shutdownTimeout: string;
  /** Engine: cut the head into a block once it holds this many samples. */
  headSamplesMax?: number;
  /** Engine: ...or once its oldest unflushed write is this old (a duration, e.g. 30m). */
  flushInterval?: string;
  scrubRate?: string;
  gapRules?: string;
  gapScanInterval?: string;
  gapLookback?: string;
  scrubPassInterval?: string;
  antiEntropyInterval?: string;
  /** Cluster mode: etcd client URLs, comma-separated. */
  etcd?: string;
  nodeId?: string;
  cluster?: string;
  /** Base URL other nodes reach this one at (default: the address it listens on). */
  advertise?: string;
  /** Pause between checkpoints of the Merkle log (sequencer) and follower polls. */
  checkpointInterval?: string;
  /** The bound a receipt promises for the batch to appear in a checkpoint. */
  receiptMmd?: string;
  /** PromQL: samples one query may load. */
  queryMaxSamples?: number;
  /** PromQL: the longest a query may run. */
  queryTimeout?: string;
  /** HA pair deduplication rules, JSON (docs/ingest.md, "HA pairs"). */
  haDedup?: string;
  /** Cluster mode: "off" runs without the archive, signed receipts and the Merkle log (benchmarks). */
  provenance?: string;
  /** Pause between provenance audit rounds (stored points against their signed batches). */
  auditInterval?: string;
  /** "id=url,id=url": how this node reaches those peers, instead of the URLs they advertise. */
  peerRoute?: string;
  replicationFactor?: number;
}

const NODE_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Parses --peer-route "n2=http://127.0.0.1:8490,n3=http://127.0.0.1:8491". */
export function parsePeerRoutes(raw: string): Map<string, string> {
  const routes = new Map<string, string>();
  for (const part of raw.split(",")) {
    const eq = part.indexOf("=");
    const id = part.slice(0, eq).trim();
    const url = part.slice(eq + 1).trim();
    if (eq < 0 || !NODE_ID_RE.test(id)) throw new CliError(`--peer-route: "${part}" is not id=url (ids: 1-64 of [A-Za-z0-9_.-])`, 2);
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new CliError(`--peer-route: "${url}" (for ${id}) is not a URL`, 2);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new CliError(`--peer-route: ${url} (for ${id}) must be http(s)`, 2);
    if (routes.has(id)) throw new CliError(`--peer-route: ${id} is given twice`, 2);
    routes.set(id, url.replace(/\/+$/, ""));
  }
  return routes;
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000, y: 365 * 86_400_000 };

/** Parses durations such as 30d, 12h, 1h30m, 500ms, 2w; "0" or "forever" → null (keep everything). */
export function parseDuration(raw: string, flag: string): number | null {
  if (raw === "0" || raw === "forever" || raw === "inf") return null;
  const re = /([0-9]+)(ms|s|m|h|d|w|y)/gy;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(raw)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    consumed = re.lastIndex;
  }
  if (consumed !== raw.length || consumed === 0 || !Number.isSafeInteger(total) || total <= 0)
    throw new CliError(`${flag}: cannot parse duration "${raw}" (examples: 30d, 12h, 1h30m, 500ms, 0 for forever)`, 2);
  return total;
}

/** A duration that must be positive (no "0 for forever"), e.g. --flush-interval. */
function parsePositiveDuration(raw: string, flag: string): number {
  let ms: number | null = null;
  try {
    ms = parseDuration(raw, flag);
  } catch {
    // the message below, without parseDuration's "0 for forever"
  }
  if (ms === null) throw new CliError(`${flag}: expected a positive duration such as 30m, 5s, 1h30m or 500ms, got "${raw}"`, 2);
  return ms;
}

/** HOST:PORT, [IPv6]:PORT or :PORT (all interfaces). */
export function parseHostPort(raw: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(raw);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new CliError(`--http: expected HOST:PORT, got "${raw}"`, 2);
  const host = m[1] ?? (m[2] === "" ? "0.0.0.0" : m[2]!);
  return { host, port };
}

export async function runNode(opts: NodeOptions): Promise<void> {
  const { host, port } = parseHostPort(opts.http);
  const retentionMs = opts.retention === undefined ? null : parseDuration(opts.retention, "--retention");
  const shutdownMs = parseDuration(opts.shutdownTimeout, "--shutdown-timeout") ?? 30_000;
  const flushIntervalMs = opts.flushInterval === undefined ? undefined : parsePositiveDuration(opts.flushInterval, "--flush-interval");
  const scrubRate = opts.scrubRate === undefined ? SCRUB_BYTES_PER_SECOND_DEFAULT : Number(opts.scrubRate);
  if (!Number.isSafeInteger(scrubRate) || scrubRate < 0) throw new CliError(`--scrub-rate: expected bytes per second (0 turns it off), got "${opts.scrubRate}"`, 2);
  const scrubPassIntervalMs = opts.scrubPassInterval === undefined ? SCRUB_PASS_INTERVAL_MS_DEFAULT : parsePositiveDuration(opts.scrubPassInterval, "--scrub-pass-interval");
  const antiEntropyIntervalMs = opts.antiEntropyInterval === undefined ? 60_000 : parseDuration(opts.antiEntropyInterval, "--anti-entropy-interval");
  const gapScanIntervalMs = opts.gapScanInterval === undefined ? 60_000 : parseDuration(opts.gapScanInterval, "--gap-scan-interval");
  const gapLookbackMs = opts.gapLookback === undefined ? 24 * 3_600_000 : parsePositiveDuration(opts.gapLookback, "--gap-lookback");
  const gapRules = opts.gapRules === undefined ? [] : await loadGapRules(opts.gapRules);
  const haRules = opts.haDedup === undefined ? [] : await loadHaRules(opts.haDedup);
  const checkpointIntervalMs = opts.checkpointInterval === undefined ? 5000 : parsePositiveDuration(opts.checkpointInterval, "--checkpoint-interval");
  const receiptMmdMs = opts.receiptMmd === undefined ? 60_000 : parsePositiveDuration(opts.receiptMmd, "--receipt-mmd");
  if (opts.provenance !== undefined && opts.provenance !== "on" && opts.provenance !== "off") throw new CliError(`--provenance: on or off, got "${opts.provenance}"`, 2);
  const provenanceOn = opts.provenance !== "off";
  const auditIntervalMs = opts.auditInterval === undefined ? 60_000 : parseDuration(opts.auditInterval, "--audit-interval");
  if (receiptMmdMs < 2 * checkpointIntervalMs) throw new CliError(`--receipt-mmd (${receiptMmdMs} ms) must be at least twice --checkpoint-interval (${checkpointIntervalMs} ms)`, 2);
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    ...(opts.maxBodyBytes !== undefined ? { bodyBytesMax: opts.maxBodyBytes } : {}),
    ...(opts.queryMaxSamples !== undefined ? { querySamplesMax: opts.queryMaxSamples } : {}),
    ...(opts.queryTimeout !== undefined ? { queryTimeoutMs: parsePositiveDuration(opts.queryTimeout, "--query-timeout") } : {}),
  };
  const dataDir = resolve(opts.data);
  const log = pino({ level: opts.logLevel, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));

  process.on("uncaughtException", (e) => {
    log.fatal({ err: e, stack: e.stack }, "BUG: uncaught exception; exiting (the WAL keeps every acknowledged write)");
    process.exit(1);
  });
  process.on("unhandledRejection", (e) => {
    log.fatal({ err: e instanceof Error ? e : String(e) }, "BUG: unhandled promise rejection; exiting");
    process.exit(1);
  });

  if ((opts.etcd === undefined) !== (opts.nodeId === undefined)) throw new CliError("--etcd and --node-id go together (cluster mode); give both or neither", 2);
  let etcdEndpoints: string[] | null = null;
  try {
    if (opts.etcd !== undefined) etcdEndpoints = parseEndpoints(opts.etcd);
  } catch (e) {
    throw new CliError(`--etcd: ${(e as Error).message}`, 2);
  }
  let agent: ClusterAgent | null = null;

  await mkdir(dataDir, { recursive: true });
  const registry = new Registry();
  let replication: Replication | null = null;
  let replicaEngine: Engine | null = null;
  let repairs: RepairLog | null = null;
  let integrity: NodeIntegrity | null = null;
  let gapJob: GapJob | null = null;
  let provenance: NodeProvenance | null = null;
  const hq = createHqServer({
    limits,
    log,
    registry,
    version: VERSION,
    gapRules: () => gapRules,
    haRules: () => haRules,
    ...(etcdEndpoints !== null
      ? {
          clusterInfo: () => ({
            ...(agent?.view() ?? { state: "joining" }),
            replication: replication?.stats() ?? { state: "opening" },
            integrity: integrity?.stats() ?? null,
            gaps: gapJob?.stats() ?? null,
            provenance: provenance?.stats() ?? null,
          }),
          extraRoutes: [
            inboundRoute((msg) => replication?.deliver(msg)),
            peerReadRoute(() => {
              if (replicaEngine === null) throw new UnavailableError("the node is starting", 1);
              return replicaEngine;
            }),
            repairsRoute(() => repairs),
            // Resolved per request: provenance opens with the engine, after the server listens.
            ...NodeProvenance.lazyRoutes(() => provenance),
          ],
        }
      : {}),
  });
  let engine: StorageEngine | null = null;
  let stopping = false;

  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, inFlight: hq.inFlight(), deadlineMs: shutdownMs }, "shutting down: finishing in-flight requests");
    try {
      if (gapJob !== null) await gapJob.stop();
      if (integrity !== null) await integrity.stop();
      if (replication !== null) await replication.stop();
      if (repairs !== null) await repairs.close();
      if (provenance !== null) await provenance.stopService();
      if (agent !== null) await agent.stop();
      await hq.shutdown(shutdownMs);
      if (provenance !== null) await provenance.close();
      log.info("stopped cleanly");
      process.exit(0);
    } catch (e) {
      log.error({ err: e }, "error while shutting down");
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));

  let addr: { url: string };
  try {
    addr = await hq.listen(host, port);
  } catch (e) {
    throw new CliError(`cannot listen on ${opts.http}: ${(e as Error).message}`);
  }
  process.stdout.write(`hqts node listening on ${addr.url} (data ${dataDir})\n`);
  log.info({ url: addr.url, dataDir, retentionMs, version: VERSION }, "listening; opening the storage engine");

  try {
    const engineOpts = {
      dataDir,
      limits,
      retentionMs,
      acceptDataLoss: opts.acceptDataLoss,
      log,
      metrics: registry,
      ...(opts.headSamplesMax !== undefined ? { headSamplesMax: opts.headSamplesMax } : {}),
      ...(flushIntervalMs !== undefined ? { flushIntervalMs } : {}),
    };
    if (etcdEndpoints !== null) {
      const peerRoutes = opts.peerRoute === undefined ? new Map<string, string>() : parsePeerRoutes(opts.peerRoute);
      // Before the engine: its WAL replay hands every committed batch's bytes to the archive.
      if (provenanceOn) provenance = await NodeProvenance.open(dataDir, opts.cluster ?? "default", opts.nodeId!, log);
      // A replica never refuses to start over damage: it quarantines it and rebuilds what was lost from its peers.
      const rs = await openReplicatedEngine({ ...engineOpts, ...(provenance?.engineHooks() ?? {}), onDamage: "quarantine" });
      engine = rs.engine;
      replication = new Replication(rs, opts.nodeId!, log, opts.replicationFactor ?? 3, peerRoutes);
      hq.setWriter(provenance !== null ? provenance.signingWriter(replication.writer) : replication.writer);
      hq.setReader(replication.reader);
      replicaEngine = rs.engine;
      repairs = await RepairLog.open(dataDir, opts.nodeId!, registry, { log });
      integrity = new NodeIntegrity(rs, replication, repairs, dataDir, log, registry, {
        scrubBytesPerSecond: scrubRate === 0 ? null : scrubRate,
        scrubPassIntervalMs,
        antiEntropyIntervalMs,
      });
    } else engine = await openEngine(engineOpts);
  } catch (e) {
    log.fatal({ err: e }, "cannot open the storage engine");
    await hq.shutdown(1000).catch(() => undefined);
    const hint =
      isHqError(e) && e.code === "corruption" && !opts.acceptDataLoss
        ? "\nThe node refuses to start over damaged data. To start anyway, quarantining the damaged files (their points are lost " +
          "on this node), run again with --accept-data-loss (standalone only; in a cluster, repair from the replicas instead)."
        : "";
    throw new CliError(`cannot open the storage engine in ${dataDir}: ${(e as Error).message}${hint}`);
  }
  if (stopping) {
    await engine.close();
    return;
  }
  hq.setEngine(engine);
  log.info({ url: addr.url }, "ready");
  if (gapScanIntervalMs !== null) {
    // One node at a time runs it: the cluster's coordinator (elected in etcd), or a standalone node itself.
    const local = engine;
    gapJob = new GapJob(
      {
        select: async (sets, o) => (replication !== null ? (await replication.reader.select(sets, o, false)).value : local.select(sets, o)),
        write: (batch, id) => (replication !== null ? replication.writer.write(batch, id, encodeWithDigest(batch)) : local.write(batch, id, encodeWithDigest(batch))),
        isLeader: () => (etcdEndpoints === null ? true : (agent?.isCoordinator() ?? false)),
        rules: () => gapRules,
        nowNs: () => BigInt(Date.now()) * 1_000_000n,
        log,
      },
      { intervalMs: gapScanIntervalMs, lookbackNs: BigInt(gapLookbackMs) * 1_000_000n },
    );
    gapJob.start();
  }
  if (etcdEndpoints !== null) {
    const meta = new EtcdMeta({ endpoints: etcdEndpoints });
    try {
      agent = new ClusterAgent({
        meta,
        cluster: opts.cluster ?? "default",
        self: { id: opts.nodeId!, http: opts.advertise ?? addr.url, startedAt: new Date().toISOString(), version: VERSION, publicKey: null },
        log,
        ...(opts.replicationFactor !== undefined ? { replicationFactor: opts.replicationFactor } : {}),
      });
    } catch (e) {
      await hq.shutdown(1000).catch(() => undefined);
      throw new CliError((e as Error).message, 2);
    }
    // Not awaited for readiness: the node serves whether or not etcd answers.
    void agent.start();
    // Before joining: damage found at open makes the replica rebuild, and the driver reads that when it starts.
    await integrity!.start();
    replication!.join(agent);
    const a = agent;
    if (provenance !== null) {
      provenance.start({
        meta,
        engine: replicaEngine!,
        isSequencer: () => a.isCoordinator(),
        peers: () => replication!.peerUrls(),
        intervalMs: checkpointIntervalMs,
        mmdMs: receiptMmdMs,
      });
      if (auditIntervalMs !== null) {
        const integ = integrity!;
        provenance.startAudit({ intervalMs: auditIntervalMs, passMs: 6 * 3_600_000, onDamage: (path, size, detail) => integ.reportBlockDamage(path, size, detail) });
      }
    }
  }
}

/** Reads --ha-dedup FILE (docs/ingest.md, "HA pairs"); every node of a cluster should be given the same rules. */
async function loadHaRules(path: string): Promise<HaRule[]> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new CliError(`--ha-dedup ${path}: ${(e as Error).message}`, 2);
  }
  try {
    return parseHaRules(raw, parseSelector, (d) => parsePositiveDuration(d, "interval"));
  } catch (e) {
    throw new CliError(`--ha-dedup ${path}: ${(e as Error).message}`, 2);
  }
}

/** Reads --gap-rules FILE (docs/gaps.md); every node of a cluster should be given the same rules. */
async function loadGapRules(path: string): Promise<ReturnType<typeof parseGapRules>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new CliError(`--gap-rules ${path}: ${(e as Error).message}`, 2);
  }
  try {
    return parseGapRules(raw, parseSelector);
  } catch (e) {
    throw new CliError(`--gap-rules ${path}: ${(e as Error).message}`, 2);
  }
}
