// Composition of a replicating node (cluster mode): the engine opened with the
// replica log hooks, the protocol's store over it, the node driver running the
// machines, the transport between nodes. The CLI is the composition root: the
// cluster layer cannot see the server, and the server cannot see the cluster.

import { open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { Batch, EncodedBatch } from "../core/batch.js";
import { UnavailableError } from "../core/errors.js";
import { Hlc } from "../core/hlc.js";
import type { Receipt } from "../core/receipt.js";
import { decodeLogRecord, encodeLogRecord, EngineStore } from "../cluster/engine-store.js";
import type { ClusterAgent, ClusterView } from "../cluster/membership.js";
import { NodeDriver } from "../cluster/node-driver.js";
import type { Message } from "../cluster/protocol/messages.js";
import { applyLogRecord, type ReplicaLogRecord } from "../cluster/protocol/store.js";
import { Transport } from "../cluster/transport.js";
import { MajorityReader } from "../cluster/majority-read.js";
import { PeerReader, peerReadRoute } from "../cluster/peer-read.js";
import { adoptFlushed, PointSync, type InstallReport, type SyncReport } from "../cluster/point-sync.js";
import type { FlushedBatch } from "../cluster/protocol/messages.js";
import { Engine, type EngineOptions } from "../storage/engine.js";

/** Bumped durably at every start, so ballots stay unique across restarts of this node. */
async function nextIncarnation(dataDir: string): Promise<number> {
  const path = join(dataDir, "incarnation");
  let last = 0;
  try {
    last = Number((await readFile(path, "utf8")).trim());
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (!Number.isSafeInteger(last) || last < 0) throw new Error(`${path}: not an incarnation number`);
  const next = last + 1;
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, "w");
  await fh.writeFile(`${next}\n`);
  await fh.sync();
  await fh.close();
  await rename(tmp, path);
  const dir = await open(dataDir, "r");
  await dir.sync();
  await dir.close();
  return next;
}

export interface ReplicatedStorage {
  readonly engine: Engine;
  readonly store: EngineStore;
  readonly hlc: Hlc;
  readonly incarnation: number;
  /** The node has rebuilt from its peers at least once (a "rebuilt" record is durable): it may vote. */
  rebuilt: boolean;
  persist(record: ReplicaLogRecord, sync: boolean): Promise<void>;
  /** Called once a "rebuilt" record is durable (a rebuild from the peers is complete). */
  readonly onRebuilt: (() => void)[];
}

/** Opens the engine for a replica: its WAL replays the replica log into the protocol's store. */
export async function openReplicatedEngine(opts: EngineOptions): Promise<ReplicatedStorage> {
  const incarnation = await nextIncarnation(opts.dataDir);
  const hlc = new Hlc();
  // The engine's replay hooks need the store, and the store needs the engine: bind it once both exist.
  const bound: { store: EngineStore | null } = { store: null };
  const store = (): EngineStore => {
    if (bound.store === null) throw new Error("replica store used before it was bound");
    return bound.store;
  };
  const rs: ReplicatedStorage = {
    engine: new Engine({
      ...opts,
      onReplicaLog: (payload) => {
        const rec = decodeLogRecord(payload, `${opts.dataDir}/wal`);
        if (rec.type === "rebuilt") rs.rebuilt = true;
        if ("ballot" in rec) hlc.observe(rec.ballot.t);
        applyLogRecord(store(), rec);
      },
      // A flush deletes old WAL segments: what the protocol still needs is logged again first.
      relog: () => [...store().relogRecords(), ...(rs.rebuilt ? [{ type: "rebuilt" } as const] : [])].map(encodeLogRecord),
    }),
    get store() {
      return store();
    },
    hlc,
    incarnation,
    rebuilt: false,
    async persist(record, _sync) {
      // Every record rides the WAL's group commit; waiting for the fsync of unsynced marks costs nothing extra.
      await rs.engine.appendReplicaLog(encodeLogRecord(record));
      if (record.type === "rebuilt") {
        rs.rebuilt = true;
        for (const f of rs.onRebuilt) f();
      }
    },
    onRebuilt: [],
  };
  bound.store = new EngineStore(rs.engine);
  await rs.engine.open();
  return rs;
}

/** Routes inbound node-to-node messages to the driver once it exists (the protocol tolerates the loss before). */
export class Replication {
  private driver: NodeDriver | null = null;
  private readonly peers = new Map<string, string>();
  private shardReplicas: readonly string[] | null = null;
  readonly transport: Transport;
  private readonly peerReader = new PeerReader();
  readonly pointSync: PointSync;
  /** Reads merged over a majority of the shard's replicas (decision 7); 503 until the node knows its shard. */
  readonly reader: MajorityReader;

  constructor(
    private readonly rs: ReplicatedStorage,
    private readonly nodeId: string,
    private readonly log: Logger,
    replicationFactor: number,
    /** peer id -> URL to reach it at instead of the URL it advertises (--peer-route). */
    private readonly peerRoutes: ReadonlyMap<string, string> = new Map(),
  ) {
    this.transport = new Transport({ onUnreachable: (url) => this.driver?.onUnreachable(url) });
    this.pointSync = new PointSync(rs.engine, this.peerReader, log);
    this.reader = new MajorityReader({
      engine: rs.engine,
      reader: this.peerReader,
      peers: () => (this.shardReplicas ?? []).filter((id) => id !== this.nodeId).flatMap((id) => this.peers.get(id) ?? []),
      replicationFactor: () => this.shardReplicas?.length ?? replicationFactor,
      selfCounts: () => this.rs.rebuilt,
      log,
      onRepair: (url, r) => this.onReadRepair?.(url, r),
    });
  }

  /** Every other node's URL known so far (its --peer-route where given). */
  peerUrls(): string[] {
    return [...this.peers].filter(([id]) => id !== this.nodeId).map(([, url]) => url);
  }

  /** The node-to-node read route (answers from this node's engine only). */
  readRoute(): ReturnType<typeof peerReadRoute> {
    return peerReadRoute(() => this.rs.engine);
  }

  /** Told of every read repair that stored points. */
  onReadRepair: ((peerUrl: string, report: InstallReport) => void) | null = null;

  /** Told of every point sync the protocol asked for (catch-up of flushed batches, or a rebuild). */
  onPointSync: ((peerUrl: string, report: SyncReport, rebuilding: boolean, adopted: readonly string[]) => void) | null = null;

  /** Catch-up of a peer's flushed batches, or a rebuild: copy its points, then adopt the batch ids (docs/protocol.md). */
  private async syncPoints(peerUrl: string, flushed: readonly FlushedBatch[]): Promise<void> {
    const rebuilding = !this.rs.rebuilt;
    const r = await this.pointSync.syncFrom(peerUrl);
    for (const f of flushed) await adoptFlushed(this.rs.engine, f);
    this.log.info({ ...r, install: r.install, adopted: flushed.length, rebuilding }, "point sync from a peer");
    this.onPointSync?.(peerUrl, r, rebuilding, flushed.map((f) => f.batchId));
  }

  /** Stored data was lost while running: stop counting this replica and voting until rebuilt from every peer. */
  dataLost(): void {
    this.rs.rebuilt = false;
    this.driver?.dataLost();
  }

  /** The other replicas of this node's shard and their URLs (empty until the node knows its shard). */
  peerList(): { id: string; url: string }[] {
    return (this.shardReplicas ?? []).filter((id) => id !== this.nodeId).flatMap((id) => {
      const url = this.peers.get(id);
      return url === undefined ? [] : [{ id, url }];
    });
  }

  /** For the inbound message route; messages before the driver exists are dropped (peers resend). */
  deliver(msg: Message): void {
    this.driver?.onMessage(msg);
  }

  /** The write path for the server: 503 until the node has joined its shard. */
  readonly writer = {
    write: (batch: Batch, batchId: string, encoded: EncodedBatch): Promise<Receipt> => {
      if (this.driver === null) return Promise.reject(new UnavailableError("this node is joining its cluster; retry", 1));
      return this.driver.write(batch, batchId, encoded);
    },
  };

  /** Keeps every member URL ever seen: a replica that is down keeps its address (its sends fail fast). */
  private learn(view: ClusterView): void {
    for (const m of view.members) this.peers.set(m.id, this.peerRoutes.get(m.id) ?? m.http);
  }

  /** Starts the driver once the shard map names this node's replica set. */
  join(agent: ClusterAgent): void {
    const tryStart = (view: ClusterView): void => {
      this.learn(view);
      if (this.driver !== null || view.shardMap === null) return;
      const shard = view.shardMap.shards.find((s) => s.replicas.includes(this.nodeId));
      if (shard === undefined) {
        this.log.warn({ shardMap: view.shardMap }, "this node holds no replica in the shard map; it serves reads of its own data only");
        return;
      }
      this.driver = new NodeDriver({
        nodeId: this.nodeId,
        shardId: shard.id,
        replicas: shard.replicas,
        peerUrl: (id) => this.peers.get(id) ?? null,
        store: this.rs.store,
        persist: (rec, sync) => this.rs.persist(rec, sync),
        transport: this.transport,
        hlc: this.rs.hlc,
        incarnation: this.rs.incarnation,
        rebuilding: !this.rs.rebuilt,
        log: this.log,
        config: { catchupIntervalMs: 2000 },
        syncPoints: (url, flushed) => this.syncPoints(url, flushed),
      });
      this.shardReplicas = shard.replicas;
      this.driver.start();
      this.log.info({ shard: shard.id, replicas: shard.replicas, incarnation: this.rs.incarnation, rebuilding: !this.rs.rebuilt }, "replication started");
    };
    agent.onChange(tryStart);
    tryStart(agent.view());
  }

  stats(): unknown {
    return { ...(this.driver?.stats() ?? { state: "joining" }), reads: this.reader.stats() };
  }

  async stop(): Promise<void> {
    await this.driver?.stop();
    this.transport.close();
    this.peerReader.close();
  }
}
