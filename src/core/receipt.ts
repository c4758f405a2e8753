// What a successful write answers: the gateway's promise about the batch.

import type { ConflictingPoint } from "./errors.js";

export interface Receipt {
  batchId: string;
  sha256: string; // hex digest of the canonical batch encoding
  shardId: number;
  hlc: string; // hybrid logical clock stamp, decimal
  samples: number; // samples in the batch
  accepted: number; // samples newly stored by this batch
  duplicates: number; // samples already stored with the same value (no-ops)
  conflicts: ConflictingPoint[]; // empty on success; 409 otherwise
  duplicate: boolean; // the whole batch id was already committed
  replicas: string[]; // node ids that fsynced the batch
  /** Cluster: the gateway's signed statement (docs/format/signed-note.md), a C2SP signed note. */
  statement?: string;
}
