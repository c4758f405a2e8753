// Committed points of a batch copied from a peer replica (Engine.repair, and the replay of its REPAIR records): the
// checks a part must pass before anything of it is applied, and the per-point decisions. Catch-up of flushed data,
// rebuild of a wiped node, read repair and anti-entropy (src/cluster/point-sync.ts) copy points by value once a peer
// has flushed the batch bytes into a block (blocks keep points, not bytes).

import { assert } from "../core/assert.js";
import { encodeBatch, type Batch } from "../core/batch.js";
import { BadInputError, ConflictError, TooLargeError, type ConflictingPoint } from "../core/errors.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";
import { RECORD_BYTES_MAX_DEFAULT } from "../wal/wal.js";
import type { BatchTable } from "./batch-table.js";
import type { BlockSet } from "./block-set.js";
import type { RepairMeta } from "./engine-api.js";
import type { Head } from "./engine-head.js";
import type { BatchState, Op, SeriesState } from "./engine-state.js";
import { storeOp, visitPoints } from "./point-check.js";
import { encodeWalRepair, nonCanonical } from "./wal-payload.js";

/** What installRepair decided and did. */
export interface RepairInstall {
  deferred: boolean;
  /** The batch the points were installed as (null when deferred). */
  st: BatchState | null;
  /** The batch id was unknown and is now registered as committed. */
  registered: boolean;
  /** Anything changed here (registration, stored points, points taken over): the repair must be logged. */
  changed: boolean;
  stored: number;
  present: number;
  divergent: ConflictingPoint[];
  divergentCount: number;
}

/**
 * Refuses a part before anything of it is applied (BadInputError, TooLargeError): a WAL record the WAL would refuse
 * must not leave visible points behind. Returns the REPAIR record's payload.
 */
export function repairRecord(meta: RepairMeta, part: Batch, partBytes: Uint8Array): Uint8Array {
  const id = meta.batchId;
  if (!/^[0-9a-f]{64}$/.test(meta.sha256)) throw new BadInputError(`repair of batch ${id}: sha256 must be 64 lowercase hex digits`, { field: "sha256" });
  if (meta.hlc < INT64_MIN || meta.hlc > INT64_MAX) throw new BadInputError(`repair of batch ${id}: hlc ${meta.hlc} is not an int64`, { field: "hlc" });
  if (!Number.isSafeInteger(meta.sampleCount) || meta.sampleCount < part.sampleCount)
    throw new BadInputError(`repair of batch ${id}: a part of ${part.sampleCount} samples of a batch of ${meta.sampleCount}`, { field: "sampleCount" });
  const problem = nonCanonical(part);
  if (problem !== null) throw new BadInputError(`repair of batch ${id}: the part is not a canonical batch: ${problem}`);
  // What the WAL replays is partBytes, what is applied now is part: they must be one content.
  assert(equalBytes(encodeBatch(part), partBytes), `repair of batch ${id}: partBytes is not the canonical encoding of part`);
  const payload = encodeWalRepair({ batchId: id, sha256: meta.sha256, hlc: meta.hlc, sampleCount: meta.sampleCount, partBytes });
  if (payload.length > RECORD_BYTES_MAX_DEFAULT) throw new TooLargeError("bytes of one repair record (split the part)", RECORD_BYTES_MAX_DEFAULT);
  return payload;
}

/**
 * The synchronous part of a repair, shared with WAL replay: the batch id's fate, per-point decisions, head changes.
 *
 * The id held here with another digest → ConflictError, nothing stored. Held but undecided (reserved or prepared) →
 * nothing stored, `deferred`: the replication protocol decides it. Unknown → registered as committed with the
 * meta's digest, stamp and size (a later write of it answers duplicate). Then per point, as a write's plan but never
 * refusing the whole part: absent → stored; the same value bits of the same origin class there → present (held by an
 * undecided batch, the repair takes it over so it stays visible whatever becomes of that batch); an original where
 * an inferred point stands → stored (replaces it); an inferred one where an original stands → present (kept);
 * another value of the same origin class → divergent: not stored, reported (at most 100) and counted.
 */
export function installRepair(head: Head, blocks: BlockSet, batches: BatchTable, meta: RepairMeta, part: Batch): RepairInstall {
  const id = meta.batchId;
  const known = batches.get(id);
  if (known !== undefined) {
    if (known.sha256 !== meta.sha256)
      throw new ConflictError(`batch id "${id}" is held here with other content (stored SHA-256 ${known.sha256}, repair names ${meta.sha256})`, [], { batchId: id });
    if (known.phase !== "committed")
      return { deferred: true, st: null, registered: false, changed: false, stored: 0, present: 0, divergent: [], divergentCount: 0 };
    // The digest names origin, shard, inference and size: a part describing the batch otherwise is not of it.
    const differs =
      known.origin !== part.origin ? "origin"
      : known.shardId !== part.shardId ? "shard id"
      : known.inference !== part.inference ? "inference"
      : known.sampleCount !== meta.sampleCount ? "sample count"
      : null;
    if (differs !== null) throw new BadInputError(`repair of batch ${id}: its ${differs} differs from the batch held here under the same digest`);
  }
  const ops: Op[] = [];
  const takeovers: { s: SeriesState; t: bigint }[] = [];
  const divergent: ConflictingPoint[] = [];
  let divergentCount = 0;
  let present = 0;
  visitPoints(head, blocks, part, (s, key, t, v, hi, c) => {
    switch (c.kind) {
      case "absent":
      case "replaces":
        ops.push(storeOp(head, s, hi, t, v));
        return;
      case "same":
        present++;
        if (c.heldUndecided) takeovers.push({ s, t });
        return;
      case "differs":
        divergentCount++;
        if (divergent.length < 100) divergent.push({ series: key, timestampNs: t.toString(), storedValue: c.stored.v, offeredValue: v });
        return;
      case "yields":
        present++; // an original stands there: inference yields
        return;
    }
  });
  let st = known;
  const registered = st === undefined;
  if (st === undefined) {
    const desc = { shardId: part.shardId, origin: part.origin, inference: part.inference, sampleCount: meta.sampleCount };
    st = head.register(id, meta.sha256, desc, meta.hlc, "committed");
  } else if ((ops.length > 0 || takeovers.length > 0) && st.headRef < 0) {
    // Flushed already: it re-enters the head table, and the next flush names it in a second block (BatchTable allows it).
    head.reenter(st);
  }
  head.applyOps(ops, part.origin, st.headRef);
  // Held by an undecided batch until now: visible from here on.
  for (const { s, t } of takeovers) head.takeOver(s, t, st);
  return { deferred: false, st, registered, changed: registered || ops.length > 0 || takeovers.length > 0, stored: ops.length, present, divergent, divergentCount };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}
