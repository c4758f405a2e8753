// C2SP tlog-checkpoint: the signed head of a transparency log (here, the log
// of a cluster's batches). Pure: no I/O.
//
//   <origin>\n                 hqts/<cluster name>
//   <tree size>\n              decimal, no leading zeros
//   <base64 root hash>\n       32-byte RFC 6962 root
//   time <unix ms>\n           extension line: when the checkpoint was made
//   [<other extension line>\n ...]   ignored (C2SP: unknown extensions are skipped)

import { assert } from "../core/assert.js";
import { ProvenanceError } from "./errors.js";
import { decodeBase64Strict, hasControlChar, encodeBase64, signNote, verifyNote, type Signer, type Verifier } from "./note.js";

export const ROOT_HASH_BYTES = 32;
export const ORIGIN_PREFIX = "hqts/";
/** Longest origin line accepted (C2SP leaves it open; bound the parse). */
export const ORIGIN_CHARS_MAX = 256;
/** Most extension lines accepted after the three fixed lines. */
export const CHECKPOINT_EXTENSION_LINES_MAX = 16;

export interface Checkpoint {
  origin: string;
  treeSize: number;
  rootHash: Uint8Array; // 32 bytes
  timeMs: number; // unix milliseconds when the checkpoint was made
}

// Same rule as the cluster layer's etcd prefix (src/cluster/etcd.ts), which this layer may not import.
const CLUSTER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

export function isValidClusterName(cluster: string): boolean {
  return CLUSTER_NAME.test(cluster);
}

/** The origin line of a cluster's checkpoints: `hqts/<cluster name>`. */
export function checkpointOrigin(cluster: string): string {
  if (!isValidClusterName(cluster)) throw new ProvenanceError("malformed_checkpoint", `cluster name ${JSON.stringify(cluster)}: use 1-64 of [A-Za-z0-9_.-]`, { field: "cluster" });
  return `${ORIGIN_PREFIX}${cluster}`;
}

function bad(line: number, field: string, message: string): ProvenanceError {
  return new ProvenanceError("malformed_checkpoint", message, { line, field });
}

/** A non-negative safe integer in canonical decimal, or an error naming line and field. */
export function parseDecimal(s: string, line: number, field: string, reason: "malformed_checkpoint" | "malformed_statement"): number {
  const err = (m: string) => new ProvenanceError(reason, m, { line, field });
  if (!DECIMAL.test(s)) throw err(`${field} must be a decimal without sign or leading zeros, got ${JSON.stringify(s.slice(0, 40))}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw err(`${field} ${s} exceeds the limit of ${Number.MAX_SAFE_INTEGER}`);
  return n;
}

function checkOrigin(origin: string): void {
  assert(origin.length > 0 && origin.length <= ORIGIN_CHARS_MAX && !hasControlChar(origin), `checkpoint origin ${JSON.stringify(origin)} is not one line of 1..${ORIGIN_CHARS_MAX} characters`);
}

/** The note text of a checkpoint. */
export function formatCheckpoint(cp: Checkpoint): string {
  checkOrigin(cp.origin);
  assert(Number.isSafeInteger(cp.treeSize) && cp.treeSize >= 0, `tree size ${cp.treeSize} is not a non-negative safe integer`);
  assert(cp.rootHash.length === ROOT_HASH_BYTES, `root hash is ${cp.rootHash.length} bytes, not ${ROOT_HASH_BYTES}`);
  assert(Number.isSafeInteger(cp.timeMs) && cp.timeMs >= 0, `checkpoint time ${cp.timeMs} is not a non-negative safe integer`);
  return `${cp.origin}\n${cp.treeSize}\n${encodeBase64(cp.rootHash)}\ntime ${cp.timeMs}\n`;
}

/** Parses checkpoint note text strictly; with expectedOrigin, refuses another log's checkpoint. */
export function parseCheckpoint(text: string, expectedOrigin?: string): Checkpoint {
  if (!text.endsWith("\n")) throw bad(Math.max(1, text.split("\n").length), "final newline", "checkpoint text must end in a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 4) throw bad(lines.length + 1, ["origin", "tree size", "root hash", "time"][lines.length] ?? "time", `checkpoint has ${lines.length} lines; needs origin, tree size, root hash and time`);
  const [origin, sizeLine, rootLine] = lines as [string, string, string];
  if (origin.length === 0 || origin.length > ORIGIN_CHARS_MAX || hasControlChar(origin)) throw bad(1, "origin", `origin must be 1..${ORIGIN_CHARS_MAX} characters without control characters`);
  if (expectedOrigin !== undefined && origin !== expectedOrigin)
    throw new ProvenanceError("origin_mismatch", `origin ${JSON.stringify(origin)} is not the expected ${JSON.stringify(expectedOrigin)}`, { line: 1, field: "origin" });
  const treeSize = parseDecimal(sizeLine, 2, "tree size", "malformed_checkpoint");
  const rootHash = decodeBase64Strict(rootLine);
  if (rootHash === null) throw bad(3, "root hash", "root hash is not canonical base64");
  if (rootHash.length !== ROOT_HASH_BYTES) throw bad(3, "root hash", `root hash is ${rootHash.length} bytes, not ${ROOT_HASH_BYTES}`);
  const extensions = lines.slice(3);
  if (extensions.length > CHECKPOINT_EXTENSION_LINES_MAX) throw bad(4 + CHECKPOINT_EXTENSION_LINES_MAX, "extension", `${extensions.length} extension lines exceed the limit of ${CHECKPOINT_EXTENSION_LINES_MAX}`);
  let timeMs: number | undefined;
  extensions.forEach((l, i) => {
    const line = 4 + i;
    if (l.length === 0) throw bad(line, "extension", "empty extension line");
    if (hasControlChar(l)) throw bad(line, "extension", "control character in an extension line");
    if (!l.startsWith("time ")) return;
    if (timeMs !== undefined) throw bad(line, "time", "second time line");
    timeMs = parseDecimal(l.slice("time ".length), line, "time", "malformed_checkpoint");
  });
  // The time line is ours, not C2SP's; HQ-TS checkpoints always carry it, first.
  if (timeMs === undefined || !lines[3]!.startsWith("time ")) throw bad(4, "time", 'line 4 must be "time <unix ms>"');
  return { origin, treeSize, rootHash, timeMs };
}

/** The whole signed note of a checkpoint. */
export async function signCheckpoint(cp: Checkpoint, signer: Signer): Promise<string> {
  return signNote(formatCheckpoint(cp), [signer]);
}

/**
 * Verifies a signed checkpoint against trusted keys and parses it. Throws
 * unknown_signer when no trusted key signed it (e.g. a foreign key), and
 * origin_mismatch when it belongs to another log.
 */
export function openCheckpoint(signedNote: string | Uint8Array, verifiers: readonly Verifier[], expectedOrigin: string): Checkpoint & { signedBy: string[] } {
  const note = verifyNote(signedNote, verifiers);
  return { ...parseCheckpoint(note.text, expectedOrigin), signedBy: note.verifiedBy };
}
