// Provenance on a cluster node, wired: the batch archive (opened before the
// engine, which feeds it from every commit, WAL replay included), the ledger,
// the node's key, then the service (sequencer and follower) once etcd is
// known, the proof routes and the signing of receipts (docs/provenance.md).

import { join } from "node:path";
import type { Logger } from "pino";
import { HqError, UnavailableError } from "../core/errors.js";
import type { Receipt } from "../core/receipt.js";
import type { Batch, EncodedBatch } from "../core/batch.js";
import type { EtcdMeta } from "../cluster/etcd.js";
import { clusterKeys } from "../cluster/etcd.js";
import type { Engine } from "../storage/engine.js";
import { BatchArchive } from "../provenance/archive.js";
import { auditBlock, describeMismatch, type BlockAudit } from "../provenance/audit.js";
import { checkpointOrigin } from "../provenance/checkpoint.js";
import { loadOrCreateNodeKey, nodeVerifierKeys, type FileSigner } from "../provenance/keys.js";
import { Ledger } from "../provenance/ledger.js";
import { proofRoutes, type ProofRoute } from "../provenance/route.js";
import { ProvenanceService, type ProvenanceStats } from "../provenance/service.js";

/** The archive is synced this often, so a batch's bytes are durable soon after its commit, not only at a flush. */
const ARCHIVE_SYNC_INTERVAL_MS = 1000;

interface Writer {
  write(batch: Batch, batchId: string, encoded: EncodedBatch): Promise<Receipt>;
}

export class NodeProvenance {
  service: ProvenanceService | null = null;
  private engine: Engine | null = null;
  private syncTimer: NodeJS.Timeout | null = null;
  private archiveErrors = 0;
  private auditTimer: NodeJS.Timeout | null = null;
  private auditRunning: Promise<void> | null = null;
  private auditStopped = false;
  readonly auditStats = { blocks: 0, points: 0, mismatches: 0 };
  /** Runs an audit round (every block when forced); null until startAudit. */
  auditNow: ((force: boolean) => Promise<{ blocks: number; mismatches: number }>) | null = null;

  private constructor(
    readonly archive: BatchArchive,
    readonly ledger: Ledger,
    readonly signer: FileSigner,
    private readonly retiredKeys: readonly string[],
    private readonly cluster: string,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  static async open(dataDir: string, cluster: string, nodeId: string, log: Logger): Promise<NodeProvenance> {
    const archive = await BatchArchive.open(join(dataDir, "archive"), { log });
    const ledger = await Ledger.open(join(dataDir, "ledger"), checkpointOrigin(cluster), log);
    const signer = await loadOrCreateNodeKey(join(dataDir, "keys"), `${cluster}/${nodeId}`);
    const retired = (await nodeVerifierKeys(join(dataDir, "keys"), `${cluster}/${nodeId}`)).filter((k) => k !== signer.verifierKey());
    log.info({ key: signer.verifierKey(), retired: retired.length }, "node signing key");
    const p = new NodeProvenance(archive, ledger, signer, retired, cluster, nodeId, log);
    p.syncTimer = setInterval(() => void p.archive.sync().catch((e: Error) => log.error({ err: e.message }, "batch archive: sync failed")), ARCHIVE_SYNC_INTERVAL_MS);
    p.syncTimer.unref();
    return p;
  }

  /**
   * EngineOptions hooks: the bytes of every committed batch that its stored points cannot rebuild go into the
   * archive, durable before the WAL lets them go.
   */
  engineHooks(): { onCommitted: (batchId: string, sha256: string, bytes: Uint8Array, selfContained: boolean) => void; beforeWalDrop: () => Promise<void> } {
    return {
      onCommitted: (batchId, sha256, bytes, selfContained) => {
        // A batch rebuilt from the points stored here needs no copy (docs/format/archive.md, "Batches not archived").
        if (selfContained) return;
        try {
          this.archive.put(batchId, sha256, bytes);
        } catch (e) {
          // Never fails the commit: a batch missing here is fetched from a peer's archive when a proof needs it.
          if (!(e instanceof HqError)) throw e;
          if (this.archiveErrors++ % 1000 === 0) this.log.warn({ batchId, err: e.message, errors: this.archiveErrors }, "batch archive: a committed batch not archived");
        }
      },
      beforeWalDrop: () => this.archive.sync(),
    };
  }

  /** Starts the sequencer/follower once etcd and the engine are there. */
  start(o: { meta: EtcdMeta; engine: Engine; isSequencer: () => boolean; peers: () => string[]; intervalMs: number; mmdMs: number }): void {
    this.engine = o.engine;
    this.service = new ProvenanceService({
      cluster: this.cluster,
      nodeId: this.nodeId,
      etcd: o.meta,
      keys: clusterKeys(this.cluster),
      engine: o.engine,
      ledger: this.ledger,
      archive: this.archive,
      signer: this.signer,
      retiredKeys: this.retiredKeys,
      isSequencer: o.isSequencer,
      peers: o.peers,
      log: this.log,
      intervalMs: o.intervalMs,
      mmdMs: o.mmdMs,
    });
    const svc = this.service;
    const attempt = (): void => {
      svc.start().catch((e: Error) => {
        // etcd not reachable yet: the key is published on a later try.
        this.log.warn({ err: e.message }, "provenance: not started yet; retrying");
        setTimeout(attempt, 2000).unref();
      });
    };
    attempt();
  }

  /**
   * Audits every block against its batches' canonical bytes, each block once per `passMs` (blocks never change; a
   * restart audits them all again). A block whose points differ from their signed batches goes to `onDamage`.
   */
  startAudit(o: { intervalMs: number; passMs: number; onDamage: (path: string, sizeBytes: number, detail: string) => Promise<void> }): void {
    let audited = new Set<string>();
    let passStarted = Date.now();
    const round = async (force: boolean): Promise<{ blocks: number; mismatches: number }> => {
      const engine = this.engine;
      const svc = this.service;
      const done = { blocks: 0, mismatches: 0 };
      if (engine === null || svc === null) return done;
      if (Date.now() - passStarted > o.passMs) {
        audited = new Set();
        passStarted = Date.now();
      }
      for (const t of engine.scrubTargets()) {
        if (t.kind !== "block" || (audited.has(t.path) && !force) || this.auditStopped) continue;
        let a: BlockAudit;
        try {
          a = await auditBlock(t.path, {
            batchBytes: (ids) => svc.batchBytesMany(ids),
            expectedSha256: async (id, stored) => {
              const i = this.ledger.indexOf(id);
              return i === null ? stored : (await this.ledger.entry(i)).sha256;
            },
          });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // the block went (retention, a flush's merge)
          throw e;
        }
        audited.add(t.path);
        done.blocks++;
        done.mismatches += a.mismatches;
        this.auditStats.blocks++;
        this.auditStats.points += a.checked;
        if (a.batchesUnchecked.length > 0) this.log.warn({ block: t.path, batches: a.batchesUnchecked.slice(0, 5), count: a.batchesUnchecked.length }, "provenance audit: batches with no canonical bytes here or on a peer; their points unchecked");
        if (a.mismatches > 0) {
          this.auditStats.mismatches += a.mismatches;
          const detail = `provenance audit: ${a.mismatches} of ${a.checked} stored points differ from their signed batches (${a.examples.slice(0, 3).map(describeMismatch).join("; ")})`;
          this.log.error({ block: t.path, mismatches: a.mismatches, examples: a.examples.slice(0, 3).map(describeMismatch) }, "provenance audit: block rewritten behind our back");
          await o.onDamage(t.path, t.sizeBytes, detail);
        }
      }
      return done;
    };
    // One round at a time, whether from the timer or asked for.
    let chain: Promise<unknown> = Promise.resolve();
    this.auditNow = (force) => {
      const r = chain.then(() => round(force));
      chain = r.catch(() => undefined);
      return r;
    };
    const loop = (): void => {
      if (this.auditStopped) return;
      this.auditRunning = this.auditNow!(false)
        .then(() => undefined)
        .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, "provenance audit round failed"))
        .finally(() => {
          this.auditRunning = null;
          if (!this.auditStopped) this.auditTimer = setTimeout(loop, o.intervalMs);
        });
    };
    this.auditTimer = setTimeout(loop, o.intervalMs);
  }

  /** The write path with the gateway's signed statement added to every receipt. */
  signingWriter(inner: Writer): Writer {
    return {
      write: async (batch, batchId, encoded) => {
        const r = await inner.write(batch, batchId, encoded);
        const svc = this.service;
        if (svc === null) return r;
        return { ...r, statement: await svc.signReceipt(r) };
      },
    };
  }

  /** The proof routes, for a node whose provenance opens later (503 until then). */
  static lazyRoutes(current: () => NodeProvenance | null): ProofRoute[] {
    const audit: ProofRoute = {
      name: "/hq/v1/admin/audit",
      path: "/hq/v1/admin/audit",
      methods: ["POST"],
      // Every block checked against its signed batches now; a rewritten block is detached and repaired as damage.
      handler: async (_ctx, req, res) => {
        req.resume();
        const run = current()?.auditNow ?? null;
        if (run === null) throw new UnavailableError("the provenance audit is not running on this node (cluster mode, --audit-interval not 0)", 1);
        const r = await run(true);
        const text = JSON.stringify(r);
        res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(text)) });
        res.end(text);
      },
    };
    return [
      ...proofRoutes(() => {
        const p = current();
        return p === null || p.service === null || p.engine === null ? null : { service: p.service, ledger: p.ledger, engine: p.engine };
      }),
      audit,
    ];
  }

  stats(): (ProvenanceStats & { audit: { blocks: number; points: number; mismatches: number } }) | null {
    const s = this.service?.stats();
    return s === undefined ? null : { ...s, audit: { ...this.auditStats } };
  }

  /** Stops the sequencer and follower (before etcd's client closes). */
  async stopService(): Promise<void> {
    this.auditStopped = true;
    if (this.auditTimer !== null) clearTimeout(this.auditTimer);
    await this.auditRunning;
    await this.service?.stop();
  }

  /** After the engine closed (its last flush syncs the archive). */
  async close(): Promise<void> {
    if (this.syncTimer !== null) clearInterval(this.syncTimer);
    await this.archive.close();
    await this.ledger.close();
  }
}
