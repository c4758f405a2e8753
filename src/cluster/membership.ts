// A node's presence in the cluster and its view of it, kept in etcd.
//
// - Registration: /hqts/<cluster>/members/<nodeId> = MemberInfo (JSON), under
//   a lease with a TTL (5 s) that a loop keeps alive every tickMs. A node that
//   dies (SIGKILL included) disappears from every view within the TTL. If the
//   lease expired while etcd was unreachable, the next tick grants a new one
//   and registers again.
// - View: one read of the whole /hqts/<cluster>/ prefix (members, shard map,
//   configuration, elections) on every tick and on every watch event. When
//   etcd is unreachable the node keeps its last view and says so
//   (etcd.reachable false, lastError); nothing on the data path waits for it.
// - Shard map: created once, atomically (txn put-if-absent), by whichever node
//   first sees at least min(replicationFactor, expected) members registered.
// - Coordinator: the election of background jobs (gap detector, checkpoint
//   sequencer, compaction). The holder is the node whose id sits at
//   /hqts/<cluster>/elections/coordinator, put-if-absent under its membership
//   lease, so the role dies with the node (within the TTL). A holder that
//   cannot reach etcd for a TTL stops believing it holds the role.

import type { Logger } from "pino";
import { HqError, isHqError } from "../core/errors.js";
import { clusterKeys, type EtcdMeta } from "./etcd.js";
import { DEFAULT_CLUSTER_CONFIG, initialShardMap, parseClusterConfig, parseShardMap, type ClusterConfig, type ShardMap } from "./shard-map.js";

export interface MemberInfo {
  id: string;
  /** Base URL other nodes and clients reach this node at. */
  http: string;
  startedAt: string;
  version: string;
  /** Always null: a node's Ed25519 verifier keys are published under keys/<node>/ (clusterKeys().keys, docs/provenance.md). */
  publicKey: string | null;
}

export interface ClusterView {
  cluster: string;
  nodeId: string;
  etcd: { endpoints: string[]; reachable: boolean; lastOkAt: string | null; lastError: string | null; leaseId: string | null };
  members: MemberInfo[];
  shardMap: ShardMap | null;
  coordinator: { holder: string | null; self: boolean };
  config: ClusterConfig;
}

export interface AgentOptions {
  meta: EtcdMeta;
  cluster: string;
  self: MemberInfo;
  log: Logger;
  leaseTtlS?: number;
  tickMs?: number;
  /** Replicas per shard (default 3); the shard map waits for this many members. */
  replicationFactor?: number;
}

const COORDINATOR = "coordinator";

export class ClusterAgent {
  private readonly meta: EtcdMeta;
  private readonly keys: ReturnType<typeof clusterKeys>;
  private readonly self: MemberInfo;
  private readonly selfJson: string;
  private readonly log: Logger;
  private readonly ttlS: number;
  private readonly tickMs: number;
  private readonly rf: number;
  private readonly cluster: string;

  private leaseId: string | null = null;
  private lastKeepAliveMs = 0;
  private reachable = false;
  private lastOkAt: string | null = null;
  private lastError: string | null = null;
  private members = new Map<string, MemberInfo>();
  private shardMap: ShardMap | null = null;
  private config: ClusterConfig = DEFAULT_CLUSTER_CONFIG;
  private coordinator: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private cancelWatch: (() => Promise<void>) | null = null;
  private running = false;
  private ticking: Promise<void> | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  private readonly listeners = new Set<(v: ClusterView) => void>();

  constructor(opts: AgentOptions) {
    this.meta = opts.meta;
    this.cluster = opts.cluster;
    this.keys = clusterKeys(opts.cluster);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(opts.self.id)) throw new HqError("bad_input", `node id "${opts.self.id}": use 1-64 of [A-Za-z0-9_.-]`, { details: { field: "--node-id" } });
    this.self = opts.self;
    this.selfJson = JSON.stringify(opts.self);
    this.log = opts.log.child({ component: "cluster" });
    this.ttlS = opts.leaseTtlS ?? 5;
    this.tickMs = opts.tickMs ?? Math.min(1000, (this.ttlS * 1000) / 3);
    this.rf = opts.replicationFactor ?? 3;
  }

  /** Starts the loop. Never fails because etcd is down: the first tick is awaited, its failure only logged. */
  async start(): Promise<void> {
    this.running = true;
    await this.tick();
    this.schedule();
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      void this.tick().finally(() => this.schedule());
    }, this.tickMs);
    this.timer.unref();
  }

  /** Subscribes to view changes (after every refresh). */
  onChange(fn: (v: ClusterView) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  view(): ClusterView {
    const leaseFresh = this.leaseId !== null && Date.now() - this.lastKeepAliveMs < this.ttlS * 1000 - this.tickMs;
    return {
      cluster: this.cluster,
      nodeId: this.self.id,
      etcd: { endpoints: [...this.meta.endpoints], reachable: this.reachable, lastOkAt: this.lastOkAt, lastError: this.lastError, leaseId: this.leaseId },
      members: [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
      shardMap: this.shardMap,
      coordinator: { holder: this.coordinator, self: this.coordinator === this.self.id && leaseFresh },
      config: this.config,
    };
  }

  /** Whether this node currently holds the coordinator role (and its lease is fresh). */
  isCoordinator(): boolean {
    return this.view().coordinator.self;
  }

  private ok(): void {
    this.reachable = true;
    this.lastOkAt = new Date().toISOString();
    this.lastError = null;
  }

  private failed(what: string, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (this.reachable || this.lastError !== msg) this.log.warn({ err: msg, what, retryable: isHqError(e) ? e.retryable : undefined }, "etcd call failed; keeping the last cluster view");
    this.reachable = false;
    this.lastError = msg;
  }

  private async tick(): Promise<void> {
    if (this.ticking !== null) return this.ticking;
    this.ticking = (async () => {
      try {
        await this.keepRegistered();
        if (this.cancelWatch === null && this.running) {
          this.cancelWatch = await this.meta.watchPrefix(this.keys.root + "/", () => void this.refresh());
        }
        await this.refresh();
        await this.ensureMetadata();
      } catch (e) {
        this.failed("tick", e);
      } finally {
        this.ticking = null;
      }
    })();
    return this.ticking;
  }

  private async keepRegistered(): Promise<void> {
    if (this.leaseId !== null) {
      try {
        await this.meta.keepAliveOnce(this.leaseId);
        this.lastKeepAliveMs = Date.now();
        this.ok();
        return;
      } catch (e) {
        if (!(isHqError(e) && e.code === "not_found")) throw e;
        this.log.warn({ leaseId: this.leaseId }, "membership lease expired (etcd was unreachable for longer than its TTL); registering again");
        this.leaseId = null;
      }
    }
    const lease = await this.meta.grantLease(this.ttlS);
    const key = this.keys.member(this.self.id);
    const before = await this.meta.get(key);
    await this.meta.put(key, this.selfJson, lease);
    this.leaseId = lease;
    this.lastKeepAliveMs = Date.now();
    this.ok();
    if (before !== null && before !== this.selfJson) this.log.info({ previous: before }, "replaced an earlier registration of this node id (a previous run)");
    this.log.info({ key, leaseId: lease, ttlS: this.ttlS }, "registered in etcd");
  }

  /** Re-reads the cluster's whole prefix: one call, consistent at one revision. */
  refresh(): Promise<void> {
    if (this.refreshing !== null) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        try {
          const { kvs } = await this.meta.getPrefix(this.keys.root + "/");
          this.ok();
          this.apply(kvs);
        } catch (e) {
          this.failed("refresh", e);
        }
      } while (this.refreshAgain && this.running);
      this.refreshing = null;
    })();
    return this.refreshing;
  }

  private apply(kvs: Map<string, string>): void {
    const members = new Map<string, MemberInfo>();
    let shardMap: ShardMap | null = null;
    let config = DEFAULT_CLUSTER_CONFIG;
    for (const [k, v] of kvs) {
      if (k.startsWith(this.keys.members)) {
        try {
          const m = JSON.parse(v) as MemberInfo;
          if (typeof m.id === "string" && typeof m.http === "string") members.set(m.id, m);
        } catch {
          this.log.warn({ key: k }, "ignoring a malformed member registration");
        }
      } else if (k === this.keys.shards) {
        try {
          shardMap = parseShardMap(v);
        } catch (e) {
          this.log.error({ err: (e as Error).message }, "malformed shard map in etcd; keeping the previous one");
          shardMap = this.shardMap;
        }
      } else if (k === this.keys.config) {
        try {
          config = parseClusterConfig(v);
        } catch (e) {
          this.log.error({ err: (e as Error).message }, "malformed cluster configuration in etcd; keeping the previous one");
          config = this.config;
        }
      }
    }
    const coordinator = kvs.get(this.keys.election(COORDINATOR)) ?? null;
    const changed =
      JSON.stringify([...members.keys()]) !== JSON.stringify([...this.members.keys()]) ||
      JSON.stringify(shardMap) !== JSON.stringify(this.shardMap) ||
      coordinator !== this.coordinator;
    if (coordinator !== this.coordinator) this.log.info({ coordinator, self: coordinator === this.self.id }, "coordinator changed");
    this.members = members;
    this.shardMap = shardMap;
    this.config = config;
    this.coordinator = coordinator;
    if (changed) {
      const v = this.view();
      for (const fn of this.listeners) fn(v);
    }
  }

  /** Creates what is missing: the configuration, the shard map (once enough members are in), the coordinator. */
  private async ensureMetadata(): Promise<void> {
    if (!this.running) return;
    let dirty = false;
    if (!this.members.has(this.self.id)) dirty = true; // our own registration not seen yet: read again below
    const cfg = await this.meta.putIfAbsent(this.keys.config, JSON.stringify(DEFAULT_CLUSTER_CONFIG));
    if (cfg.created) {
      this.log.info("created the cluster configuration (defaults)");
      dirty = true;
    }
    if (this.shardMap === null && this.members.size >= this.rf) {
      const map = initialShardMap([...this.members.keys()], this.rf, this.self.id);
      const r = await this.meta.putIfAbsent(this.keys.shards, JSON.stringify(map));
      if (r.created) this.log.info({ shardMap: map }, "created the shard map");
      dirty = true;
    }
    if (this.coordinator === null && this.leaseId !== null) {
      const r = await this.meta.putIfAbsent(this.keys.election(COORDINATOR), this.self.id, this.leaseId);
      if (r.created) this.log.info("elected coordinator");
      dirty = true;
    }
    if (dirty) await this.refresh();
  }

  /** Stops the loop; revokes the lease (best effort) so the node leaves the view at once. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== null) clearTimeout(this.timer);
    await this.ticking?.catch(() => undefined);
    if (this.cancelWatch !== null) await this.cancelWatch();
    this.cancelWatch = null;
    if (this.leaseId !== null) {
      try {
        await this.meta.revokeLease(this.leaseId);
        this.log.info("left the cluster (lease revoked)");
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, "could not revoke the membership lease; it expires by itself");
      }
      this.leaseId = null;
    }
  }
}
