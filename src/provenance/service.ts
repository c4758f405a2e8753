// Provenance on a cluster node (docs/provenance.md): the node's signing key
// published in etcd, the batch archive fed by commits, the sequencer (on the
// coordinator) that cuts committed batches into the Merkle log and publishes
// signed checkpoints in etcd, and the follower that keeps this node's ledger
// in step with them.
//
// Publication is one etcd transaction: compare the checkpoint key with the
// value this node last saw, then put the new checkpoint and the cut (its
// leaves and note) together. Two sequencers (an election overlapping a lease
// expiry) cannot both extend one checkpoint, so the log never forks; the
// loser drops its staged leaves and follows. A cut stays in etcd for
// CUTS_KEPT cuts so followers fetch it from there; a node away for longer
// fetches the leaves from a peer and checks them against the signed root.

import type { Logger } from "pino";
import { assert } from "../core/assert.js";
import { BadInputError, HqError, NotFoundError } from "../core/errors.js";
import { sha256, toHex } from "../core/hash.js";
import type { Receipt } from "../core/receipt.js";
import type { EtcdMeta, clusterKeys } from "../cluster/etcd.js";
import type { BatchInfo } from "../storage/engine.js";
import { encodeWithDigest, type Batch } from "../core/batch.js";
import type { BatchArchive } from "./archive.js";
import { checkpointOrigin, openCheckpoint, signCheckpoint, type Checkpoint } from "./checkpoint.js";
import type { FileSigner } from "./keys.js";
import { verifierFromKeyString } from "./keys.js";
import { compareLeaves, encodeLeaf, type LeafEntry } from "./leaf.js";
import { CUT_LEAVES_MAX, type Ledger } from "./ledger.js";
import type { Verifier } from "./note.js";
import { signStatement, statementFromReceipt } from "./statement.js";

/** Cuts kept in etcd (older ones are deleted by the sequencer); at 5 s a cut, about 20 minutes. */
export const CUTS_KEPT = 256;
/** A follower catching up from a peer appends at most this many leaves at once (memory bound). */
export const CATCH_UP_LEAVES_MAX = 1 << 20;
/** Bytes of one cut's value in etcd: its requests are limited to 1.5 MiB. */
const CUT_VALUE_BYTES_MAX = 1024 * 1024;
const PEER_TIMEOUT_MS = 5000;

export interface ProvenanceOptions {
  cluster: string;
  nodeId: string;
  etcd: EtcdMeta;
  keys: ReturnType<typeof clusterKeys>;
  engine: {
    listBatches(phase: "committed", fromHlc: bigint): BatchInfo[];
    lookupBatch(batchId: string): BatchInfo | null;
    /** The batches as rebuilt from the points stored here (docs/format/archive.md, "Batches not archived"); absent when unknown. */
    batchContents(batchIds: readonly string[]): Map<string, Batch>;
  };
  ledger: Ledger;
  archive: BatchArchive;
  signer: FileSigner;
  /** This node's retired verifier keys (published too: what they signed must keep verifying). */
  retiredKeys: readonly string[];
  /** Whether this node runs the sequencer now (the cluster's coordinator). */
  isSequencer: () => boolean;
  /** Base URLs of the other nodes (for ledger catch-up and archive fetches). */
  peers: () => string[];
  log: Logger;
  /** Pause between sequencer cuts and follower polls. */
  intervalMs: number;
  /** The bound a receipt promises: the batch is in a checkpoint within this many ms. */
  mmdMs: number;
}

export interface ProvenanceStats {
  treeSize: number;
  checkpointTimeMs: number | null;
  /** Committed batches on this node that no checkpoint holds yet. */
  unsequenced: number;
  cutsPublished: number;
  cutsLost: number;
  keys: number;
  archive: { batches: number; bytesOnDisk: number };
}

interface CutValue {
  start: number;
  entries: string[];
  note: string;
}

const cutKey = (prefix: string, start: number): string => `${prefix}${String(start).padStart(12, "0")}`;

export class ProvenanceService {
  readonly origin: string;
  private verifierList: Verifier[] = [];
  private verifierKeys: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private cutsPublished = 0;
  private cutsLost = 0;
  private unsequenced = 0;

  constructor(private readonly o: ProvenanceOptions) {
    this.origin = checkpointOrigin(o.cluster);
    // Our own key verifies from the start, before etcd answers.
    this.verifierList = [o.signer.verifier()];
    this.verifierKeys = [o.signer.verifierKey()];
  }

  /** The keys checkpoints and receipts of this cluster may be signed with (every node's, retired ones included). */
  verifiers(): readonly Verifier[] {
    return this.verifierList;
  }

  verifierKeyStrings(): readonly string[] {
    return this.verifierKeys;
  }

  /** Publishes this node's key, then runs a round every intervalMs. */
  async start(): Promise<void> {
    await this.o.etcd.put(`${this.o.keys.keys}${this.o.nodeId}/${this.o.signer.keyIdHex}`, this.o.signer.verifierKey());
    for (const k of this.o.retiredKeys) await this.o.etcd.put(`${this.o.keys.keys}${this.o.nodeId}/${toHex(verifierFromKeyString(k).keyId)}`, k);
    await this.refreshKeys().catch((e: Error) => this.o.log.warn({ err: e.message }, "provenance: keys not read from etcd yet"));
    const loop = (): void => {
      if (this.stopped) return;
      this.running = this.round()
        .catch((e: unknown) => this.o.log.warn({ err: (e as Error).message }, "provenance round failed"))
        .finally(() => {
          this.running = null;
          if (!this.stopped) this.timer = setTimeout(loop, this.o.intervalMs);
        });
    };
    this.timer = setTimeout(loop, Math.min(this.o.intervalMs, 500));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    await this.running;
  }

  /** One round: keys, follow the published log, and (on the sequencer) cut. Exposed for tests. */
  async round(): Promise<void> {
    await this.refreshKeys();
    const published = await this.follow();
    // One scan of the engine's batches a round: what the log lacks is both the sequencer's cut and the stat.
    const pending = this.o.engine.listBatches("committed", 0n).filter((b) => !this.o.ledger.has(b.batchId));
    const cut = this.o.isSequencer() && published !== undefined ? await this.sequence(published, pending) : 0;
    this.unsequenced = pending.length - cut;
  }

  private async refreshKeys(): Promise<void> {
    const { kvs } = await this.o.etcd.getPrefix(this.o.keys.keys);
    const keys = [...new Set([this.o.signer.verifierKey(), ...kvs.values()])].sort();
    const list: Verifier[] = [];
    for (const k of keys) {
      try {
        list.push(verifierFromKeyString(k));
      } catch (e) {
        this.o.log.warn({ key: k.slice(0, 120), err: (e as Error).message }, "provenance: a published key does not parse; ignored");
      }
    }
    this.verifierList = list;
    this.verifierKeys = keys;
  }

  /**
   * Brings the ledger up to the checkpoint published in etcd. Answers the raw value of the checkpoint key when the
   * ledger now holds exactly it (null: none published yet), undefined when it could not catch up this round.
   */
  private async follow(): Promise<string | null | undefined> {
    const raw = await this.o.etcd.get(this.o.keys.checkpoint);
    if (raw === null) return this.o.ledger.size === 0 ? null : undefined;
    const pub = JSON.parse(raw) as { size: number; note: string };
    const cp = openCheckpoint(pub.note, this.verifierList, this.origin);
    assert(cp.treeSize === pub.size, "published checkpoint: size field differs from the note");
    const ledger = this.o.ledger;
    if (ledger.size > cp.treeSize) {
      this.o.log.error({ ledger: ledger.size, published: cp.treeSize }, "provenance: this ledger is ahead of the published checkpoint");
      return undefined;
    }
    while (ledger.size < cp.treeSize) {
      const v = await this.o.etcd.get(cutKey(this.o.keys.cuts, ledger.size));
      if (v === null) break;
      const cut = JSON.parse(v) as CutValue;
      assert(cut.start === ledger.size, "a cut stored under another start");
      await ledger.append(
        cut.entries.map((e) => new Uint8Array(Buffer.from(e, "base64"))),
        cut.note,
        this.verifierList,
      );
    }
    if (ledger.size < cp.treeSize) await this.catchUpFromPeers(pub.note, cp);
    if (ledger.size !== cp.treeSize) return undefined;
    if (Buffer.compare(ledger.root(), cp.rootHash) !== 0) {
      // Cannot happen while the published log never forks: every append checked a signed root.
      this.o.log.error({ size: cp.treeSize }, "provenance: the ledger's root differs from the published checkpoint at the same size");
      return undefined;
    }
    return raw;
  }

  private async catchUpFromPeers(note: string, cp: Checkpoint): Promise<void> {
    const from = this.o.ledger.size;
    for (const peer of this.o.peers()) {
      try {
        const entries: Uint8Array[] = [];
        while (from + entries.length < cp.treeSize) {
          const lo = from + entries.length;
          const hi = Math.min(cp.treeSize, lo + CUT_LEAVES_MAX);
          const res = await fetch(`${peer}/hq/v1/ledger/leaves?from=${lo}&to=${hi}`, { signal: AbortSignal.timeout(PEER_TIMEOUT_MS) });
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
          const body = (await res.json()) as { entries?: unknown };
          if (!Array.isArray(body.entries) || body.entries.length !== hi - lo) throw new Error(`asked ${hi - lo} leaves, got ${Array.isArray(body.entries) ? body.entries.length : "none"}`);
          for (const e of body.entries) entries.push(new Uint8Array(Buffer.from(String(e), "base64")));
          if (entries.length > CATCH_UP_LEAVES_MAX) throw new Error(`more than ${CATCH_UP_LEAVES_MAX} leaves behind`);
        }
        await this.o.ledger.append(entries, note, this.verifierList, CATCH_UP_LEAVES_MAX);
        this.o.log.info({ peer, from, to: cp.treeSize }, "provenance: ledger caught up from a peer");
        return;
      } catch (e) {
        this.o.log.warn({ peer, from, to: cp.treeSize, err: (e as Error).message }, "provenance: ledger catch-up from a peer failed");
      }
    }
  }

  /** Cuts the committed batches not in the log yet, signs and publishes the checkpoint, then keeps it. */
  /** Answers how many batches it put in the log (0 when none, or when another sequencer published first). */
  private async sequence(publishedRaw: string | null, unsequenced: readonly BatchInfo[]): Promise<number> {
    const ledger = this.o.ledger;
    const pending = unsequenced
      .map((b): LeafEntry => ({ batchId: b.batchId, sha256: b.sha256, shardId: b.shardId, hlc: b.hlc, sampleCount: b.sampleCount, origin: b.origin }))
      .sort(compareLeaves);
    if (pending.length === 0) return 0;
    const entries: Uint8Array[] = [];
    let bytes = 0;
    for (const e of pending) {
      const enc = encodeLeaf(e);
      // base64 grows by a third; the note and JSON add little.
      if (entries.length >= CUT_LEAVES_MAX || bytes + (enc.length * 4) / 3 + 8 > CUT_VALUE_BYTES_MAX - 4096) break;
      entries.push(enc);
      bytes += (enc.length * 4) / 3 + 8;
    }
    const staged = await ledger.stage(entries);
    try {
      const cp: Checkpoint = { origin: this.origin, treeSize: staged.start + entries.length, rootHash: staged.root, timeMs: Date.now() };
      const note = await signCheckpoint(cp, this.o.signer);
      const cut: CutValue = { start: staged.start, entries: entries.map((e) => Buffer.from(e).toString("base64")), note };
      const r = await this.o.etcd.putIfValue(this.o.keys.checkpoint, publishedRaw, JSON.stringify({ size: cp.treeSize, note }), [[cutKey(this.o.keys.cuts, staged.start), JSON.stringify(cut)]]);
      if (!r.swapped) {
        staged.abort();
        this.cutsLost++;
        this.o.log.warn({ size: cp.treeSize }, "provenance: another sequencer published first; following it");
        return 0;
      }
      await staged.commit(note, cp);
      this.cutsPublished++;
      this.o.log.debug({ size: cp.treeSize, leaves: entries.length, root: toHex(cp.rootHash) }, "provenance: checkpoint published");
    } catch (e) {
      staged.abort();
      throw e;
    }
    await this.dropOldCuts().catch((e: Error) => this.o.log.warn({ err: e.message }, "provenance: old cuts not deleted"));
    return entries.length;
  }

  private async dropOldCuts(): Promise<void> {
    const keys = (await this.o.etcd.keysWithPrefix(this.o.keys.cuts)).sort();
    for (const k of keys.slice(0, Math.max(0, keys.length - CUTS_KEPT))) await this.o.etcd.delete(k);
  }

  /** The gateway's signed promise for an acknowledged write (docs/format/signed-note.md). */
  async signReceipt(r: Receipt): Promise<string> {
    return signStatement(statementFromReceipt(r, { cluster: this.o.cluster, gateway: this.o.nodeId, timeMs: Date.now(), mmdMs: this.o.mmdMs }), this.o.signer);
  }

  /**
   * The canonical bytes of a committed batch: this node's own (the archive, or rebuilt from its stored points), else
   * a peer's, checked against the digest and then archived here (this node's points no longer rebuild it).
   */
  async batchBytes(batchId: string): Promise<Uint8Array> {
    const found = await this.batchBytesMany([batchId]);
    const bytes = found.get(batchId);
    if (bytes !== undefined) return bytes;
    if (this.o.engine.lookupBatch(batchId) === null) throw new NotFoundError(`batch ${batchId} is not stored here`);
    throw new NotFoundError(`batch ${batchId}: its canonical bytes are in no archive, and no stored points, reachable from here`);
  }

  /** batchBytes for many batches: the local ones in one pass over storage, the rest from peers one by one. Absent: none. */
  async batchBytesMany(batchIds: readonly string[]): Promise<Map<string, Uint8Array>> {
    const out = await this.localBatchBytesMany(batchIds);
    for (const batchId of batchIds) {
      if (out.has(batchId)) continue;
      const expected = await this.expectedSha256(batchId);
      if (expected === null) continue;
      for (const peer of this.o.peers()) {
        try {
          const res = await fetch(`${peer}/hq/v1/internal/archive?id=${encodeURIComponent(batchId)}`, { signal: AbortSignal.timeout(PEER_TIMEOUT_MS) });
          if (res.status !== 200) continue;
          const bytes = new Uint8Array(await res.arrayBuffer());
          if (toHex(sha256(bytes)) !== expected) {
            this.o.log.warn({ peer, batchId }, "provenance: a peer's copy of a batch does not match its digest");
            continue;
          }
          this.o.archive.put(batchId, expected, bytes);
          out.set(batchId, bytes);
          break;
        } catch {
          // next peer
        }
      }
    }
    return out;
  }

  /** This node's archive or stored points only (the peer route: never asks further). */
  async localBatchBytes(batchId: string): Promise<Uint8Array | null> {
    return (await this.localBatchBytesMany([batchId])).get(batchId) ?? null;
  }

  /**
   * Canonical bytes this node holds on its own: archived copies (batches whose points are not all stored as theirs,
   * and everything archived before batches were rebuilt), else rebuilt from the stored points in one pass and kept
   * only when they hash to the batch's digest: a rewritten point makes its batch come out wrong here, never right.
   */
  private async localBatchBytesMany(batchIds: readonly string[]): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    const rebuild: string[] = [];
    for (const batchId of batchIds) {
      const archived = await this.o.archive.get(batchId).catch((e: unknown) => {
        if (e instanceof HqError && e.code === "corruption") return null;
        throw e;
      });
      if (archived !== null) out.set(batchId, archived);
      else rebuild.push(batchId);
    }
    if (rebuild.length === 0) return out;
    for (const [batchId, batch] of this.o.engine.batchContents(rebuild)) {
      const expected = await this.expectedSha256(batchId);
      const encoded = encodeWithDigest(batch);
      if (expected !== null && encoded.sha256 === expected) out.set(batchId, encoded.bytes);
      else this.o.log.warn({ batchId, rebuilt: encoded.sha256, expected }, "provenance: a batch rebuilt from the points stored here does not match its digest");
    }
    return out;
  }

  /** The digest a batch's bytes must have: its signed leaf's once in the log, else what storage recorded; null: unknown here. */
  private async expectedSha256(batchId: string): Promise<string | null> {
    const i = this.o.ledger.indexOf(batchId);
    if (i !== null) return (await this.o.ledger.entry(i)).sha256;
    return this.o.engine.lookupBatch(batchId)?.sha256 ?? null;
  }

  stats(): ProvenanceStats {
    const a = this.o.archive.stats();
    return {
      treeSize: this.o.ledger.size,
      checkpointTimeMs: this.o.ledger.latest()?.checkpoint.timeMs ?? null,
      unsequenced: this.unsequenced,
      cutsPublished: this.cutsPublished,
      cutsLost: this.cutsLost,
      keys: this.verifierList.length,
      archive: { batches: a.batches, bytesOnDisk: a.bytesOnDisk },
    };
  }

  /** Checks arguments of a proof request against the ledger (400 naming the field). */
  checkSize(size: number, field: string): void {
    if (!Number.isInteger(size) || size < 1 || size > this.o.ledger.size) throw new BadInputError(`${field} must be 1..${this.o.ledger.size}`, { field });
  }
}
