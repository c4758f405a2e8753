// The 3-node playground: etcd members and HQ-TS nodes as local processes.
// `up` starts everything and stays in the foreground; `stop-node` and
// `start-node` stop and restart one node with its etcd member; `status`
// reports. The playground restarts nothing by itself.

import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { isHqError } from "../../core/errors.js";
import { EtcdMeta, endpointStatus, type EndpointStatus } from "../etcd.js";
import {
  PlaygroundError,
  clusterFilePath,
  etcdAdvertisePeerUrl,
  findNode,
  nodeAdvertiseUrl,
  planCluster,
  readClusterFile,
  updateClusterFile,
  writeClusterFile,
  type ClusterFile,
  type FaultProxyRecord,
  type NodeEntry,
} from "./layout.js";
import { checkHealth, isAlive, logTail, portFree, spawnDetached, stopPid, replicationState, waitHealthy, waitReplicationReady } from "./procs.js";

export interface PlaygroundEnv {
  /** Path of the compiled CLI (dist/src/cli/main.js) that runs `hqts node`. */
  cliMain: string;
  /** etcd binary (default "etcd" on PATH, or $HQTS_ETCD). */
  etcdBin?: string;
  out: NodeJS.WritableStream;
  /** How long to wait for a process to become healthy. */
  readyTimeoutMs?: number;
}

// etcd tuning (DESIGN.md decision 2, measured on these machines): the
// defaults (heartbeat 100 ms, election timeout 1000 ms) never settled with
// 500 ms of delay on every peer link (5 elections in 20 s, no put succeeded),
// while 500/2500 stayed up. etcd is kept out of the write and read path, so
// its slower failover (about 6 s) costs nothing but a stale metadata view for
// a few seconds; stability under delay is what matters.
const ETCD_HEARTBEAT_MS = 500;
const ETCD_ELECTION_MS = 2500;

const etcdBin = (env: PlaygroundEnv): string => env.etcdBin ?? process.env["HQTS_ETCD"] ?? "etcd";
// What a pid's command line must contain to be ours (guards against pid reuse; the trailing space keeps n1 from matching n10).
const nodeMarker = (n: NodeEntry): string => `--data ${n.dataDir} `;
const etcdMarker = (n: NodeEntry): string => `--data-dir=${n.etcd.dataDir} `;

function etcdArgs(c: ClusterFile, n: NodeEntry, state: "new" | "existing", initialCluster?: string): string[] {
  return [
    `--name=${n.etcd.name}`,
    `--data-dir=${n.etcd.dataDir}`,
    `--listen-client-urls=${n.etcd.clientUrl}`,
    `--advertise-client-urls=${n.etcd.clientUrl}`,
    `--listen-peer-urls=${n.etcd.peerUrl}`,
    `--initial-advertise-peer-urls=${etcdAdvertisePeerUrl(n)}`,
    `--initial-cluster=${initialCluster ?? c.nodes.map((x) => `${x.etcd.name}=${etcdAdvertisePeerUrl(x)}`).join(",")}`,
    `--initial-cluster-state=${state}`,
    `--initial-cluster-token=${c.etcdToken}`,
    `--heartbeat-interval=${ETCD_HEARTBEAT_MS}`,
    `--election-timeout=${ETCD_ELECTION_MS}`,
    // etcd holds small metadata only: keep its history short.
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=1h",
    "--logger=zap",
    "--log-outputs=stderr",
  ];
}

/**
 * Node.js flags for every node process, from HQTS_NODE_EXEC_ARGV (split at whitespace): for profiling a cluster,
 * e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (Node refuses --cpu-prof in NODE_OPTIONS).
 */
function nodeExecArgv(): string[] {
  return (process.env.HQTS_NODE_EXEC_ARGV ?? "").split(/\s+/).filter((a) => a !== "");
}

function nodeCommand(env: PlaygroundEnv, c: ClusterFile, n: NodeEntry): string[] {
  const port = new URL(n.http).port;
  // Every etcd endpoint, its own member first: the node survives the loss of the member beside it.
  const endpoints = [n.etcd.clientUrl, ...c.nodes.filter((x) => x !== n).map((x) => x.etcd.clientUrl)];
  return [
    env.cliMain,
    "node",
    "--data",
    n.dataDir,
    "--http",
    `127.0.0.1:${port}`,
    "--node-id",
    n.id,
    "--etcd",
    endpoints.join(","),
    "--cluster",
    c.cluster,
    "--advertise",
    nodeAdvertiseUrl(n),
    ...(n.peerRoutes !== undefined && Object.keys(n.peerRoutes).length > 0
      ? ["--peer-route", Object.entries(n.peerRoutes).map(([id, url]) => `${id}=${url}`).join(",")]
      : []),
    "--replication-factor",
    String(Math.min(3, c.nodes.length)),
    // Extra flags from `cluster up --node-args`, last so they may override the defaults above (not the owned ones).
    ...(c.nodeArgs ?? []),
  ];
}

function launchEtcd(env: PlaygroundEnv, c: ClusterFile, n: NodeEntry, initialCluster?: string): number {
  const state = initialCluster !== undefined || existsSync(`${n.etcd.dataDir}/member`) ? "existing" : "new";
  return spawnDetached(etcdBin(env), etcdArgs(c, n, state, initialCluster), n.etcd.log);
}

function launchNode(env: PlaygroundEnv, c: ClusterFile, n: NodeEntry): number {
  return spawnDetached(process.execPath, [...nodeExecArgv(), ...nodeCommand(env, c, n)], n.log);
}

const say = (env: PlaygroundEnv, s: string): void => void env.out.write(s + "\n");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * SIGTERMs every etcd member of the playground, the leader last. A leader told to stop first hands leadership to a
 * follower, and when none is left (all stopped at once) waits etcd's request timeout for that (5 s + 2 election
 * timeouts: 10 s here) before it exits. So the followers go first; the leader once it has stepped down for lack of a
 * quorum (one election timeout), or at a deadline.
 */
async function stopEtcdMembers(c: ClusterFile, deadlineMs: number): Promise<void> {
  const stop = (n: NodeEntry): Promise<boolean> => stopPid(n.etcd.pid, etcdMarker(n), "SIGTERM", deadlineMs).catch(() => false);
  const live = c.nodes.filter((n) => isAlive(n.etcd.pid, etcdMarker(n)));
  const isLeader = async (n: NodeEntry): Promise<boolean> => (await endpointStatus(n.etcd.clientUrl, 1000)).isLeader === true;
  const leaders = c.nodes.length > 1 ? (await Promise.all(live.map(async (n) => ((await isLeader(n)) ? n : null)))).filter((n) => n !== null) : [];
  await Promise.all(live.filter((n) => !leaders.includes(n)).map(stop));
  const until = Date.now() + 2 * ETCD_ELECTION_MS;
  while (leaders.length > 0 && Date.now() < until && (await Promise.all(leaders.map(isLeader))).some(Boolean)) await sleep(100);
  await Promise.all(leaders.map(stop));
}

/** Stops every process listed in cluster.json (nodes first, then etcd), by pid: SIGTERM, SIGKILL after a deadline. */
export async function stopAll(dir: string, deadlineMs = 10_000): Promise<void> {
  let c: ClusterFile;
  try {
    c = readClusterFile(dir);
  } catch {
    return;
  }
  await Promise.all(c.nodes.map((n) => stopPid(n.pid, nodeMarker(n), "SIGTERM", deadlineMs).catch(() => false)));
  await stopEtcdMembers(c, deadlineMs);
  updateClusterFile(dir, (f) => {
    for (const n of f.nodes) {
      if (!isAlive(n.pid, nodeMarker(n))) n.pid = null;
      if (!isAlive(n.etcd.pid, etcdMarker(n))) n.etcd.pid = null;
    }
    if (f.upPid === process.pid) f.upPid = null;
  });
}

/**
 * `cluster up --fault-proxy`, composed by the caller (the cli layer owns the proxies): the URL each node and etcd
 * member advertises (a proxy in front of it), what cluster.json records, and `start`, run once the playground's own
 * checks passed and before any process starts. The caller stops the proxies after `stop` (they go last).
 */
export interface FaultProxySetup {
  /** node id -> (peer id -> URL): the node's --peer-route, its own proxy to each peer. */
  nodePeerRoutes: Record<string, Record<string, string>>;
  /** node id -> peer URL its etcd member advertises (--initial-advertise-peer-urls, --initial-cluster). */
  etcdPeerAdvertise: Record<string, string>;
  record: FaultProxyRecord;
  start: () => Promise<void>;
}

/**
 * `hqts cluster up`: starts the etcd members and the nodes, waits for them
 * to be healthy and for every node's replication to run (rebuilt from its
 * peers, so a write is not answered 503), writes cluster.json, and resolves
 * with a function that stops everything (cluster.json re-read: it stops what
 * start-node started).
 */
export async function up(
  env: PlaygroundEnv,
  opts: { dir: string; nodes: number; basePort: number; cluster?: string; nodeArgs?: readonly string[]; faultProxy?: FaultProxySetup },
): Promise<{ file: ClusterFile; stop: () => Promise<void> }> {
  const plan = planCluster(opts.dir, opts.nodes, opts.basePort, opts.cluster, opts.nodeArgs);
  plan.faultProxy = opts.faultProxy?.record ?? null;
  if (opts.faultProxy !== undefined) {
    for (const n of plan.nodes) {
      const routes = opts.faultProxy.nodePeerRoutes[n.id];
      const p = opts.faultProxy.etcdPeerAdvertise[n.id];
      if (routes === undefined || p === undefined) throw new PlaygroundError(`fault proxy: no routes for ${n.id}`);
      n.peerRoutes = routes;
      n.etcd.advertisePeerUrl = p;
    }
  }
  if (existsSync(clusterFilePath(plan.dir))) {
    const old = readClusterFile(plan.dir);
    const live = old.nodes.flatMap((n) => [isAlive(n.pid, nodeMarker(n)) ? `${n.id} (pid ${n.pid})` : "", isAlive(n.etcd.pid, etcdMarker(n)) ? `${n.etcd.name} (pid ${n.etcd.pid})` : ""]).filter((s) => s !== "");
    if (live.length > 0 || isAlive(old.upPid))
      throw new PlaygroundError(`a playground already runs in ${plan.dir}: ${[...live, old.upPid !== null && isAlive(old.upPid) ? `cluster up (pid ${old.upPid})` : ""].filter((s) => s !== "").join(", ")}`);
    if (old.basePort !== plan.basePort || old.nodes.length !== plan.nodes.length)
      throw new PlaygroundError(`${plan.dir} holds a playground of ${old.nodes.length} nodes at base port ${old.basePort}; use the same --nodes/--base-port or another --dir`, 2);
    // etcd members keep the peer URLs they advertised in their data: a member's proxy must stay (or stay away).
    if ((old.faultProxy ?? null) === null !== (plan.faultProxy === null))
      throw new PlaygroundError(`${plan.dir} holds a playground started ${plan.faultProxy === null ? "with" : "without"} --fault-proxy (its etcd members keep their advertised peer URLs); use the same flag or another --dir`, 2);
  }
  const ports = plan.nodes.flatMap((n) => [n.http, n.etcd.clientUrl, n.etcd.peerUrl].map((u) => Number(new URL(u).port)));
  if (plan.faultProxy) {
    ports.push(Number(new URL(plan.faultProxy.control).port));
    for (const l of Object.values(plan.faultProxy.links)) ports.push(Number(l.listen.slice(l.listen.lastIndexOf(":") + 1)));
  }
  const busy: number[] = [];
  for (const p of ports) if (!(await portFree(p))) busy.push(p);
  if (busy.length > 0) throw new PlaygroundError(`ports in use: ${busy.join(", ")} (the playground needs ${ports.join(", ")}; pick another --base-port)`);

  // The proxies listen before any process dials an advertised URL.
  if (opts.faultProxy !== undefined) await opts.faultProxy.start();

  await mkdir(`${plan.dir}/logs`, { recursive: true });
  for (const n of plan.nodes) {
    await mkdir(n.dataDir, { recursive: true });
    await mkdir(`${plan.dir}/etcd`, { recursive: true });
  }
  plan.upPid = process.pid;
  writeClusterFile(plan);
  const stop = (): Promise<void> => stopAll(plan.dir);
  const timeout = env.readyTimeoutMs ?? 30_000;

  try {
    for (const n of plan.nodes) n.etcd.pid = launchEtcd(env, plan, n);
    writeClusterFile(plan);
    // The members need each other for a quorum: wait for all of them together.
    const etcdWaits = await Promise.all(plan.nodes.map((n) => waitHealthy(n.etcd.clientUrl, "etcd", n.etcd.pid!, etcdMarker(n), timeout)));
    etcdWaits.forEach((w, i) => {
      const n = plan.nodes[i]!;
      if (w !== null) throw new PlaygroundError(`etcd member ${n.etcd.name} (${n.etcd.clientUrl}): ${w}\n--- ${n.etcd.log} ---\n${logTail(n.etcd.log)}`);
    });
    for (const n of plan.nodes) n.pid = launchNode(env, plan, n);
    writeClusterFile(plan);
    const nodeWaits = await Promise.all(plan.nodes.map((n) => waitHealthy(n.http, "node", n.pid!, nodeMarker(n), timeout)));
    nodeWaits.forEach((w, i) => {
      const n = plan.nodes[i]!;
      if (w !== null) throw new PlaygroundError(`node ${n.id} (${n.http}): ${w}\n--- ${n.log} ---\n${logTail(n.log)}`);
    });
    // Healthy is not ready: a fresh replica rebuilds from its peers before it votes, and answers writes 503 until then.
    const replWaits = await Promise.all(plan.nodes.map((n) => waitReplicationReady(n.http, n.pid!, nodeMarker(n), timeout)));
    replWaits.forEach((w, i) => {
      const n = plan.nodes[i]!;
      if (w !== null) throw new PlaygroundError(`node ${n.id} (${n.http}): ${w}\n--- ${n.log} ---\n${logTail(n.log)}`);
    });
  } catch (e) {
    await stop();
    throw e;
  }
  say(env, `HQ-TS playground "${plan.cluster}" is up (${plan.nodes.length} nodes, data in ${plan.dir}):`);
  for (const n of plan.nodes) say(env, `  ${n.id}  ${n.http}  (pid ${n.pid})   etcd ${n.etcd.name}  ${n.etcd.clientUrl}  (pid ${n.etcd.pid})`);
  if (plan.nodeArgs !== undefined && plan.nodeArgs.length > 0) say(env, `node args: ${plan.nodeArgs.join(" ")}`);
  if (plan.faultProxy) say(env, `fault proxy: control ${plan.faultProxy.control}, links ${Object.keys(plan.faultProxy.links).join(", ")} (hqts cluster fault|heal --dir ${plan.dir})`);
  say(env, `cluster.json: ${clusterFilePath(plan.dir)}    logs: ${plan.dir}/logs/`);
  say(env, `try: curl ${plan.nodes[0]!.http}/hq/v1/cluster     hqts cluster status --dir ${plan.dir}`);
  say(env, "Ctrl-C stops everything.");
  return { file: plan, stop };
}

/** `hqts cluster stop-node`: signals the node and its etcd member, waits until both are gone, clears their pids. */
export async function stopNode(env: PlaygroundEnv, opts: { dir: string; id: string; signal: "KILL" | "TERM" }): Promise<void> {
  const c = readClusterFile(opts.dir);
  const n = findNode(c, opts.id);
  const sig: NodeJS.Signals = opts.signal === "KILL" ? "SIGKILL" : "SIGTERM";
  const [a, b] = await Promise.all([stopPid(n.pid, nodeMarker(n), sig), stopPid(n.etcd.pid, etcdMarker(n), sig)]);
  updateClusterFile(opts.dir, (f) => {
    const m = findNode(f, opts.id);
    m.pid = null;
    m.etcd.pid = null;
  });
  say(env, `${n.id}: node ${a ? `stopped (SIG${opts.signal}, pid ${n.pid})` : "was not running"}; ${n.etcd.name}: ${b ? `stopped (SIG${opts.signal}, pid ${n.etcd.pid})` : "was not running"}`);
}

// How etcd 3.4 fails over a damaged WAL depends on where the damage lands: `walpb: crc mismatch`; a fatal
// "discovery failed" carrying whatever decode error the bytes produced (seen: "proto: Record: wiretype end group
// for non-group", "proto: wrong wireType = 0 for field Data", "unexpected EOF"); or, when the damage only cut the
// log short, a start and then a raft panic at the leader's first heartbeat ("tocommit(N) is out of range
// [lastIndex(M)]. Was the raft log corrupted, truncated, or lost?"). So the class is matched, not each message:
// any "discovery failed" at restart except a port clash, which a wipe would not cure.
const DAMAGED_WAL =
  /walpb: crc mismatch|"msg":"discovery failed","error":"(?![^"]*address already in use)[^"]*"|tocommit\([0-9]+\) is out of range \[lastIndex\([0-9]+\)\]\. Was the raft log corrupted, truncated, or lost\?/;

/** The reason, when an etcd member's log (since its last start) shows it failed over a damaged WAL; else null. */
export function damagedWalReason(log: string): string | null {
  const m = DAMAGED_WAL.exec(log);
  return m === null ? null : m[0].replace(/^"msg":"discovery failed","error":"/, "").replace(/"$/, "");
}

/**
 * A member whose WAL is corrupt refuses to start (`walpb: crc mismatch`).
 * Repair, as DESIGN.md says: remove it from the etcd cluster, wipe its data
 * dir, add it back, start it with --initial-cluster-state existing; it
 * catches up from the others (measured: 1.4 s).
 */
async function repairEtcdMember(env: PlaygroundEnv, c: ClusterFile, n: NodeEntry, why: string): Promise<number> {
  const others = c.nodes.filter((x) => x !== n && isAlive(x.etcd.pid, etcdMarker(x))).map((x) => x.etcd.clientUrl);
  if (others.length === 0) throw new PlaygroundError(`${n.etcd.name} has a corrupt WAL and no other etcd member runs to repair it from`);
  say(env, `${n.etcd.name}: corrupt WAL (${why}); repairing: member remove, wipe ${n.etcd.dataDir}, member add, restart`);
  const meta = new EtcdMeta({ endpoints: others, callTimeoutMs: 3000 });
  try {
    // etcd refuses a reconfiguration ("etcdserver: unhealthy cluster") until the remaining members have
    // been connected to each other for 5 s, e.g. just after another member restarted: retry up to a deadline.
    const retrying = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
      const until = Date.now() + 20_000;
      for (;;) {
        try {
          return await meta.call(op, fn);
        } catch (e) {
          if (!(isHqError(e) && e.retryable) || Date.now() > until) throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    const list = await retrying("member list", () => meta.client.cluster.memberList({}, meta.deadline()));
    const old = list.members.find((m) => m.name === n.etcd.name || m.peerURLs.includes(etcdAdvertisePeerUrl(n)));
    if (old !== undefined) await retrying("member remove", () => meta.client.cluster.memberRemove({ ID: old.ID }, meta.deadline()));
    await rm(n.etcd.dataDir, { recursive: true, force: true });
    const added = await retrying("member add", () => meta.client.cluster.memberAdd({ peerURLs: [etcdAdvertisePeerUrl(n)] }, meta.deadline()));
    const initial = added.members
      .filter((m) => m.peerURLs.length > 0)
      .map((m) => `${m.ID === added.member.ID || m.name === "" ? n.etcd.name : m.name}=${m.peerURLs[0]}`)
      .join(",");
    return launchEtcd(env, c, n, initial);
  } finally {
    meta.close();
  }
}

/**
 * `hqts cluster start-node`: starts the etcd member (repairing a corrupt WAL) and the node, detached, so they outlive
 * this command, with cluster.json's nodeArgs; waits until the node is healthy and its replication runs.
 */
export async function startNode(env: PlaygroundEnv, opts: { dir: string; id: string }): Promise<void> {
  const c = readClusterFile(opts.dir);
  const n = findNode(c, opts.id);
  const timeout = env.readyTimeoutMs ?? 30_000;
  await mkdir(`${c.dir}/logs`, { recursive: true });

  if (!isAlive(n.etcd.pid, etcdMarker(n))) {
    const logStart = logTail(n.etcd.log, 1e9).length;
    let pid = launchEtcd(env, c, n);
    updateClusterFile(c.dir, (f) => (findNode(f, n.id).etcd.pid = pid));
    let w = await waitHealthy(n.etcd.clientUrl, "etcd", pid, etcdMarker(n), timeout);
    const fresh = logTail(n.etcd.log, 1e9).slice(logStart);
    const corrupt = damagedWalReason(fresh);
    if (w !== null && !isAlive(pid, etcdMarker(n)) && corrupt !== null) {
      pid = await repairEtcdMember(env, c, n, corrupt);
      updateClusterFile(c.dir, (f) => (findNode(f, n.id).etcd.pid = pid));
      w = await waitHealthy(n.etcd.clientUrl, "etcd", pid, etcdMarker(n), timeout);
      if (w === null) say(env, `${n.etcd.name}: repaired and caught up`);
    }
    if (w !== null) {
      if (!isAlive(pid, etcdMarker(n))) updateClusterFile(c.dir, (f) => (findNode(f, n.id).etcd.pid = null));
      throw new PlaygroundError(`etcd member ${n.etcd.name}: ${w}\n--- ${n.etcd.log} ---\n${logTail(n.etcd.log)}`);
    }
    say(env, `${n.etcd.name}: started (pid ${pid}, ${n.etcd.clientUrl})`);
  } else say(env, `${n.etcd.name}: already running (pid ${n.etcd.pid})`);

  let nodePid = n.pid!;
  if (!isAlive(n.pid, nodeMarker(n))) {
    const pid = (nodePid = launchNode(env, c, n));
    updateClusterFile(c.dir, (f) => (findNode(f, n.id).pid = pid));
    const w = await waitHealthy(n.http, "node", pid, nodeMarker(n), timeout);
    if (w !== null) {
      if (!isAlive(pid, nodeMarker(n))) updateClusterFile(c.dir, (f) => (findNode(f, n.id).pid = null));
      throw new PlaygroundError(`node ${n.id}: ${w}\n--- ${n.log} ---\n${logTail(n.log)}`);
    }
    say(env, `${n.id}: started (pid ${pid}, ${n.http})`);
  } else say(env, `${n.id}: already running (pid ${n.pid})`);

  // Healthy is not ready: the node takes writes once its replication runs (rebuilt, shard map known from etcd).
  const w = await waitReplicationReady(n.http, nodePid, nodeMarker(n), timeout);
  if (w !== null) {
    const still = isAlive(nodePid, nodeMarker(n));
    if (!still) updateClusterFile(c.dir, (f) => (findNode(f, n.id).pid = null));
    throw new PlaygroundError(`node ${n.id} (${n.http})${still ? ` runs (pid ${nodePid}, left running) but` : ""} is not ready for writes: ${w}\n--- ${n.log} ---\n${logTail(n.log)}`);
  }
  say(env, `${n.id}: replication running`);
}

export interface NodeStatus {
  id: string;
  http: string;
  pid: number | null;
  alive: boolean;
  health: string;
  healthy: boolean;
  /** Replica lag, in batches behind its peers (catch-up), or its state when that says more ("rebuilding"). */
  lag: string | null;
  /**
   * Replication as the node reports it (GET /hq/v1/cluster): "running" (takes writes), "rebuilding" (from its
   * peers, after a fresh start or data loss), "joining" (no shard map yet), "opening", "stopped", "failed"; null when
   * the node does not answer.
   */
  replication: string | null;
  /** The node's raw replication stats, when it answered. */
  replicationStats: unknown;
  etcd: { name: string; clientUrl: string; pid: number | null; alive: boolean; healthy: boolean; status: EndpointStatus };
}

export interface StatusReport {
  cluster: string;
  dir: string;
  nodes: NodeStatus[];
  etcdLeader: string | null;
  /** The view of the first healthy node (GET /hq/v1/cluster). */
  view: { from: string; members: { id: string; http: string }[]; shardMap: unknown; coordinator: { holder: string | null } } | null;
}

interface ClusterViewJson {
  members?: { id: string; http: string }[];
  shardMap?: unknown;
  coordinator?: { holder: string | null };
  replication?: unknown;
}

/** GET /hq/v1/cluster of one node; null when it does not answer. */
async function clusterView(http: string): Promise<ClusterViewJson | null> {
  try {
    const res = await fetch(`${http}/hq/v1/cluster`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) return null;
    return (await res.json()) as ClusterViewJson;
  } catch {
    return null;
  }
}

/** `hqts cluster status`: health and replication state of every node, health of every etcd member, etcd's leader, the registered members, the shard map, the coordinator. */
export async function status(opts: { dir: string }): Promise<StatusReport> {
  const c = readClusterFile(opts.dir);
  const views = new Map<string, ClusterViewJson | null>();
  const nodes = await Promise.all(
    c.nodes.map(async (n): Promise<NodeStatus> => {
      const [h, eh, es, v] = await Promise.all([checkHealth(n.http, "node"), checkHealth(n.etcd.clientUrl, "etcd"), endpointStatus(n.etcd.clientUrl), clusterView(n.http)]);
      views.set(n.id, v);
      return {
        id: n.id,
        http: n.http,
        pid: n.pid,
        alive: isAlive(n.pid, nodeMarker(n)),
        health: h.detail,
        healthy: h.ok,
        lag: lagText(v?.replication),
        replication: v === null ? null : replicationState(v.replication as { state?: unknown; rebuilding?: unknown } | undefined),
        replicationStats: v?.replication ?? null,
        etcd: { name: n.etcd.name, clientUrl: n.etcd.clientUrl, pid: n.etcd.pid, alive: isAlive(n.etcd.pid, etcdMarker(n)), healthy: eh.ok, status: es },
      };
    }),
  );
  const leaderNode = nodes.find((n) => n.etcd.status.isLeader === true);
  let view: StatusReport["view"] = null;
  for (const n of nodes.filter((x) => x.healthy)) {
    const v = views.get(n.id);
    if (v === null || v === undefined) continue; // try the next node
    view = { from: n.id, members: (v.members ?? []).map((m) => ({ id: m.id, http: m.http })), shardMap: v.shardMap ?? null, coordinator: { holder: v.coordinator?.holder ?? null } };
    break;
  }
  return { cluster: c.cluster, dir: c.dir, nodes, etcdLeader: leaderNode?.etcd.name ?? null, view };
}

export function formatStatus(r: StatusReport): string {
  const lines: string[] = [];
  lines.push(`playground "${r.cluster}" in ${r.dir}`);
  lines.push("");
  const rows: string[][] = [["NODE", "HTTP", "PID", "HEALTH", "REPLICATION", "LAG", "ETCD", "CLIENT URL", "PID", "HEALTH", "ROLE"]];
  for (const n of r.nodes) {
    const role = !n.etcd.status.ok ? "-" : n.etcd.status.isLeader ? "leader" : "follower";
    rows.push(
      [
        n.id,
        n.http,
        n.alive ? String(n.pid) : "-",
        n.healthy ? "ok" : `DOWN (${n.health})`,
        n.replication ?? "-",
        n.lag ?? "n/a",
        n.etcd.name,
        n.etcd.clientUrl,
        n.etcd.alive ? String(n.etcd.pid) : "-",
        n.etcd.healthy ? "ok" : "DOWN",
        role,
      ],
    );
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) lines.push(row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
  lines.push("");
  lines.push(`etcd leader: ${r.etcdLeader ?? "none reachable"}`);
  if (r.view === null) lines.push("cluster view: no healthy node to ask");
  else {
    lines.push(`registered members (as seen by ${r.view.from}): ${r.view.members.map((m) => `${m.id} ${m.http}`).join(", ") || "none"}`);
    lines.push(`shard map: ${r.view.shardMap === null ? "not created yet" : JSON.stringify(r.view.shardMap)}`);
    lines.push(`coordinator: ${r.view.coordinator.holder ?? "none elected"}`);
  }
  return lines.join("\n") + "\n";
}

/** The LAG column: batches behind the peers (0 once caught up), "rebuilding" while a rebuild runs, else unknown. */
function lagText(rep: unknown): string | null {
  const r = rep as { lagBatches?: unknown; rebuilding?: unknown; upToDate?: unknown } | undefined;
  if (r === undefined || r === null) return null;
  if (r.rebuilding === true) return "rebuilding";
  if (typeof r.lagBatches !== "number") return null;
  return r.upToDate === true && r.lagBatches === 0 ? "0" : `${r.lagBatches} batches`;
}
