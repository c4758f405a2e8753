// Typed errors for signed notes, checkpoints, receipt statements and key files.
//
// HqError's ErrorCode is a closed union that server/http-errors.ts maps
// exhaustively to HTTP statuses, so widening it would change the server's
// contract. Provenance failures therefore keep a coarse ErrorCode (which
// decides the HTTP status) plus a stable, finer `reason` that callers and
// clients branch on; `reason` is also copied into `details` so it survives JSON.

import { HqError, type ErrorCode, type HqErrorOptions } from "../core/errors.js";

export type ProvenanceReason =
  | "malformed_note" // note syntax: blank lines, control characters, bad signature line
  | "note_too_large" // a note or signature-count limit was exceeded
  | "malformed_key" // a signer or verifier key string does not parse or its id does not match
  | "malformed_checkpoint"
  | "malformed_statement"
  | "origin_mismatch" // a checkpoint from another log (cluster)
  | "signature_invalid" // a known key's signature does not verify: the note was altered
  | "unknown_signer" // no signature by any trusted key
  | "key_file_invalid" // a key file does not hold one well-formed key for the expected name
  | "key_file_permissions"; // a private key file is accessible by group or others

const CODE_BY_REASON: Readonly<Record<ProvenanceReason, ErrorCode>> = Object.freeze({
  malformed_note: "bad_input",
  note_too_large: "too_large",
  malformed_key: "bad_input",
  malformed_checkpoint: "bad_input",
  malformed_statement: "bad_input",
  origin_mismatch: "bad_input",
  signature_invalid: "bad_input",
  unknown_signer: "bad_input",
  // The node's own key file is local state, not client input: unreadable state
  // is corruption; a permission problem is an operator's mistake to fix.
  key_file_invalid: "corruption",
  key_file_permissions: "internal",
});

/** Where a provenance problem was found. */
export interface ProvenanceLocation {
  line?: number; // 1-based line of the note (text or signature block)
  field?: string; // e.g. "tree size", "sha256"
  file?: string; // a key file
}

function describe(loc: ProvenanceLocation): string {
  const parts: string[] = [];
  if (loc.file !== undefined) parts.push(loc.file);
  if (loc.line !== undefined) parts.push(`line ${loc.line}`);
  if (loc.field !== undefined) parts.push(`field ${loc.field}`);
  return parts.join(", ");
}

export class ProvenanceError extends HqError {
  readonly reason: ProvenanceReason;
  readonly location: ProvenanceLocation;

  constructor(reason: ProvenanceReason, message: string, location: ProvenanceLocation = {}, options: HqErrorOptions = {}) {
    const where = describe(location);
    super(CODE_BY_REASON[reason], where === "" ? message : `${where}: ${message}`, {
      ...options,
      retryable: false,
      details: { reason, ...location, ...options.details },
    });
    this.name = "ProvenanceError";
    this.reason = reason;
    this.location = location;
  }
}

export function isProvenanceError(e: unknown, reason?: ProvenanceReason): e is ProvenanceError {
  return e instanceof ProvenanceError && (reason === undefined || e.reason === reason);
}
