// The shard map kept in etcd at /hqts/<cluster>/shards, and the cluster
// configuration at /hqts/<cluster>/config.
//
// For now there is one shard (id 0) covering every series, replicated on
// RF = min(replicationFactor, members) nodes. It is created once, atomically
// (a txn put-if-absent), by the first node that finds none once enough
// members have registered; every node reads and watches it. A shard id
// already travels with every batch, so growing to more shards later (hash of
// the series over replica groups, as Mimir's ring) changes this file, not the
// data path.

import { HqError } from "../core/errors.js";

export interface ShardInfo {
  id: number;
  /** Node ids holding a replica, sorted. */
  replicas: string[];
}

export interface ShardMap {
  version: 1;
  createdAt: string;
  createdBy: string;
  replicationFactor: number;
  shards: ShardInfo[];
}

/** The first shard map of a cluster: one shard on the first `rf` member ids (sorted). */
export function initialShardMap(memberIds: readonly string[], replicationFactor: number, createdBy: string, now = new Date()): ShardMap {
  const ids = [...new Set(memberIds)].sort();
  const rf = Math.min(replicationFactor, ids.length);
  if (rf < 1) throw new HqError("internal", "cannot build a shard map with no members");
  return { version: 1, createdAt: now.toISOString(), createdBy, replicationFactor: rf, shards: [{ id: 0, replicas: ids.slice(0, rf) }] };
}

/** Parses and checks a shard map read from etcd; throws HqError "corruption"-free "internal" on a malformed one. */
export function parseShardMap(raw: string): ShardMap {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw new HqError("internal", `the shard map in etcd is not JSON: ${(e as Error).message}`);
  }
  const m = v as Partial<ShardMap>;
  const ok =
    typeof m === "object" &&
    m !== null &&
    m.version === 1 &&
    typeof m.replicationFactor === "number" &&
    Array.isArray(m.shards) &&
    m.shards.every((s) => typeof s.id === "number" && Array.isArray(s.replicas) && s.replicas.every((r) => typeof r === "string"));
  if (!ok) throw new HqError("internal", `the shard map in etcd is malformed: ${raw.slice(0, 200)}`);
  return m as ShardMap;
}

/** Cluster-wide configuration (placeholder: the gap and retention jobs will read it). */
export interface ClusterConfig {
  version: 1;
  /** Retention as a duration string (e.g. "30d"), or null to keep everything. */
  retention: string | null;
  /** Default gap policy for series without one. */
  gapPolicy: "none" | "previous" | "linear";
}

export const DEFAULT_CLUSTER_CONFIG: ClusterConfig = { version: 1, retention: null, gapPolicy: "none" };

export function parseClusterConfig(raw: string): ClusterConfig {
  try {
    const v = JSON.parse(raw) as Partial<ClusterConfig>;
    if (v.version !== 1) throw new Error(`unknown version ${String(v.version)}`);
    return { ...DEFAULT_CLUSTER_CONFIG, ...v };
  } catch (e) {
    throw new HqError("internal", `the cluster configuration in etcd is malformed: ${(e as Error).message}`);
  }
}
