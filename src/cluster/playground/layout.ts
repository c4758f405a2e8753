// The playground's layout: ports, directories and DIR/cluster.json.
//
// Port scheme, from --base-port B, node index i = 0, 1, 2, ...:
//   HQ-TS node i HTTP     B + i        (8428, 8429, 8430 for B = 8428)
//   etcd member i client  B + 10 + i   (8438, 8439, 8440)
//   etcd member i peer    B + 20 + i   (8448, 8449, 8450)
// and with `cluster up --fault-proxy` (the proxies run in the `cluster up` process):
//   link "*->etcd-nK"     B + 40 + i   (in front of member i's peer port: its advertised peer URL)
//   control API           B + 50
//   link "nI->nJ"         B + 60 + 10·i + j   (node i's own route to node j: its --peer-route)
// so at most 10 nodes. Node ids are n1, n2, ...; node nK's etcd member is
// etcd-nK, "beside" it (started and stopped together with it).
//
// Directories under DIR: nodes/<id>/ (node data; its WAL in nodes/<id>/wal),
// etcd/etcd-<id>/ (member data), logs/<id>.log and logs/etcd-<id>.log.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";

export const MAX_NODES = 10;

export class PlaygroundError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "PlaygroundError";
  }
}

export interface EtcdMemberEntry {
  name: string;
  clientUrl: string;
  /** Real peer URL (--listen-peer-urls). */
  peerUrl: string;
  /** Peer URL the member advertises (--initial-advertise-peer-urls, --initial-cluster): a fault proxy in front of peerUrl; absent = peerUrl. */
  advertisePeerUrl?: string;
  /** null while stopped. */
  pid: number | null;
  dataDir: string;
  log: string;
}

export interface NodeEntry {
  id: string;
  /** Base URL, e.g. http://127.0.0.1:8428. */
  http: string;
  /** URL the node announces to its peers (--advertise); absent = http. */
  advertise?: string;
  /** peer id -> URL this node reaches that peer at (--peer-route: its own link proxy with --fault-proxy); absent = advertised URLs. */
  peerRoutes?: Record<string, string>;
  /** null while stopped. */
  pid: number | null;
  dataDir: string;
  walDir: string;
  log: string;
  etcd: EtcdMemberEntry;
}

export interface ClusterFile {
  version: 1;
  /** Cluster name (etcd prefix /hqts/<cluster>/). */
  cluster: string;
  dir: string;
  basePort: number;
  /** etcd --initial-cluster-token. */
  etcdToken: string;
  /** pid of the `hqts cluster up` that runs in the foreground (null once it stopped). */
  upPid: number | null;
  /** Extra flags given to every `hqts node` (from `cluster up --node-args`); reused by `start-node`. Absent in older files. */
  nodeArgs?: string[];
  nodes: NodeEntry[];
  /** `cluster up --fault-proxy`: the link proxies' control API and links; null (or absent) without it. */
  faultProxy?: FaultProxyRecord | null;
}

export interface FaultProxyRecord {
  /** Base URL of the control API (docs/chaos.md), e.g. http://127.0.0.1:8478. */
  control: string;
  /** Link name ("n1->n2", "*->etcd-n1") -> proxy listen address and target, "127.0.0.1:PORT". */
  links: Record<string, { listen: string; target: string }>;
}

/** Offsets of the fault-proxy ports from the base port (see the scheme above). */
export const FAULT_PROXY_ETCD_PEER_OFFSET = 40;
export const FAULT_PROXY_CONTROL_OFFSET = 50;
/** Link "nI->nJ" (node indexes i, j from 0) listens at B + FAULT_PROXY_PAIR_OFFSET + 10·i + j. */
export const FAULT_PROXY_PAIR_OFFSET = 60;
export const faultProxyPairPort = (basePort: number, from: number, to: number): number => basePort + FAULT_PROXY_PAIR_OFFSET + 10 * from + to;

/** The URL peers reach node n at, unless their own --peer-route says otherwise. */
export const nodeAdvertiseUrl = (n: NodeEntry): string => n.advertise ?? n.http;
/** The peer URL member n advertises to the other members (its proxy with --fault-proxy). */
export const etcdAdvertisePeerUrl = (n: NodeEntry): string => n.etcd.advertisePeerUrl ?? n.etcd.peerUrl;

/** Flags the playground sets itself on every node: --node-args may not give them. */
const OWNED_NODE_FLAGS = ["--data", "--http", "--node-id", "--etcd", "--cluster", "--advertise", "--peer-route"];

/**
 * `--node-args "<flags>"`: split at whitespace (no quoting: a flag's value cannot contain a space). Refuses
 * quotes (they would reach the node literally) and the flags the playground sets itself.
 */
export function parseNodeArgs(raw: string): string[] {
  const args = raw.split(/\s+/).filter((a) => a !== "");
  const quoted = args.find((a) => /["'`\\]/.test(a));
  if (quoted !== undefined) throw new PlaygroundError(`--node-args: no quoting or escaping (values are split at whitespace): ${quoted}`, 2);
  const owned = args.find((a) => OWNED_NODE_FLAGS.includes(a.split("=")[0]!));
  if (owned !== undefined) throw new PlaygroundError(`--node-args: ${owned.split("=")[0]} is set by the playground itself (${OWNED_NODE_FLAGS.join(", ")} are)`, 2);
  return args;
}

export function clusterFilePath(dir: string): string {
  return join(resolve(dir), "cluster.json");
}

export function planCluster(dirRaw: string, nodes: number, basePort: number, cluster = "playground", nodeArgs: readonly string[] = []): ClusterFile {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) throw new PlaygroundError(`--nodes must be 1..${MAX_NODES}`, 2);
  if (!Number.isInteger(basePort) || basePort < 1024 || basePort + 20 + nodes - 1 > 65535)
    throw new PlaygroundError(`--base-port must leave room for ports base..base+${20 + nodes - 1} within 1024..65535`, 2);
  const dir = resolve(dirRaw);
  const list: NodeEntry[] = [];
  for (let i = 0; i < nodes; i++) {
    const id = `n${i + 1}`;
    const dataDir = join(dir, "nodes", id);
    list.push({
      id,
      http: `http://127.0.0.1:${basePort + i}`,
      pid: null,
      dataDir,
      walDir: join(dataDir, "wal"),
      log: join(dir, "logs", `${id}.log`),
      etcd: {
        name: `etcd-${id}`,
        clientUrl: `http://127.0.0.1:${basePort + 10 + i}`,
        peerUrl: `http://127.0.0.1:${basePort + 20 + i}`,
        pid: null,
        dataDir: join(dir, "etcd", `etcd-${id}`),
        log: join(dir, "logs", `etcd-${id}.log`),
      },
    });
  }
  return { version: 1, cluster, dir, basePort, etcdToken: `hqts-${cluster}`, upPid: null, nodeArgs: [...nodeArgs], nodes: list };
}

export function readClusterFile(dir: string): ClusterFile {
  const p = clusterFilePath(dir);
  let raw: string;
  try {
    raw = readFileSync(p, "utf8");
  } catch {
    throw new PlaygroundError(`${p} not found: is a playground running there (hqts cluster up --dir ${dir})?`, 2);
  }
  try {
    const v = JSON.parse(raw) as ClusterFile;
    if (v.version !== 1 || !Array.isArray(v.nodes)) throw new Error("unknown version or no nodes");
    if (v.nodeArgs !== undefined && !(Array.isArray(v.nodeArgs) && v.nodeArgs.every((a) => typeof a === "string"))) throw new Error("nodeArgs is not a list of strings");
    return v;
  } catch (e) {
    throw new PlaygroundError(`${p} is malformed: ${(e as Error).message}`);
  }
}

/** Atomic rewrite: write a temporary file, fsync it, rename it over cluster.json. */
export function writeClusterFile(c: ClusterFile): void {
  const p = clusterFilePath(c.dir);
  const tmp = `${p}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, JSON.stringify(c, null, 2) + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, p);
}

/** Re-reads cluster.json, applies `fn` to it, writes it back atomically (the other commands may have changed pids). */
export function updateClusterFile(dir: string, fn: (c: ClusterFile) => void): ClusterFile {
  const c = readClusterFile(dir);
  fn(c);
  writeClusterFile(c);
  return c;
}

export function findNode(c: ClusterFile, id: string): NodeEntry {
  const n = c.nodes.find((x) => x.id === id);
  if (n === undefined) throw new PlaygroundError(`no node "${id}" in ${clusterFilePath(c.dir)} (nodes: ${c.nodes.map((x) => x.id).join(", ")})`, 2);
  return n;
}
