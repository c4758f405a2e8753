// The gateway's signed receipt statement: a signed note whose text states,
// line by line, which batch a cluster accepted and the bound (mmd: maximum
// merge delay) within which it will appear in a signed checkpoint. A client
// keeps it as evidence; an auditor later asks for an inclusion proof.
// Pure: no I/O.

import { resolveBatchId } from "../core/batch.js";
import { isHqError } from "../core/errors.js";
import { DEFAULT_LIMITS } from "../core/limits.js";
import type { Receipt } from "../core/receipt.js";
import { assert } from "../core/assert.js";
import { isValidClusterName, parseDecimal } from "./checkpoint.js";
import { ProvenanceError } from "./errors.js";
import { signNote, verifyNote, type Signer, type Verifier } from "./note.js";

export const STATEMENT_HEADER = "hqts-receipt/v1";
/** Longest gateway node id accepted. */
export const GATEWAY_ID_CHARS_MAX = 256;
const INT64_MAX = (1n << 63n) - 1n;

export interface ReceiptStatement {
  cluster: string;
  batchId: string;
  sha256: string; // 64 lowercase hex: digest of the canonical batch encoding
  shardId: number;
  hlc: string; // decimal, 0..2^63-1
  samples: number;
  gateway: string; // node id of the gateway that issued it
  timeMs: number; // unix ms when issued
  mmdMs: number; // the batch appears in a checkpoint within this many ms of timeMs
}

const FIELDS = ["cluster", "batch", "sha256", "shard", "hlc", "samples", "gateway", "time", "mmd"] as const;
type Field = (typeof FIELDS)[number];

const SHA256_HEX = /^[0-9a-f]{64}$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const PRINTABLE_NO_SPACE = /^[\x21-\x7e]+$/;

function bad(line: number, field: string, message: string, cause?: unknown): ProvenanceError {
  return new ProvenanceError("malformed_statement", message, { line, field }, cause === undefined ? {} : { cause });
}

/** Checks a batch id with the ingest rule (core/batch.ts resolveBatchId), naming the statement line. */
function checkBatchId(id: string, line: number): void {
  if (id === "") throw bad(line, "batch", "batch id is empty");
  try {
    resolveBatchId(id, "", DEFAULT_LIMITS.idempotencyKeyBytesMax);
  } catch (e) {
    if (isHqError(e)) throw bad(line, "batch", `batch id: ${e.message}`, e);
    throw e;
  }
}

function checkHlc(s: string, line: number): void {
  if (!DECIMAL.test(s) || s.length > 19 || BigInt(s) > INT64_MAX) throw bad(line, "hlc", `hlc must be a decimal in 0..${INT64_MAX} without leading zeros`);
}

function checkGateway(s: string, line: number): void {
  if (!PRINTABLE_NO_SPACE.test(s) || s.length > GATEWAY_ID_CHARS_MAX) throw bad(line, "gateway", `gateway node id must be 1..${GATEWAY_ID_CHARS_MAX} printable ASCII characters without spaces`);
}

/** Validates every field; the same rules as parsing, so what is formatted always parses. */
function validate(st: ReceiptStatement): void {
  if (!isValidClusterName(st.cluster)) throw bad(2, "cluster", "cluster name must be 1-64 of [A-Za-z0-9_.-]");
  checkBatchId(st.batchId, 3);
  if (!SHA256_HEX.test(st.sha256)) throw bad(4, "sha256", "sha256 must be 64 lowercase hex digits");
  const nat = (v: number, line: number, field: string) => {
    if (!Number.isSafeInteger(v) || v < 0) throw bad(line, field, `${field} must be a non-negative safe integer, got ${v}`);
  };
  nat(st.shardId, 5, "shard");
  checkHlc(st.hlc, 6);
  nat(st.samples, 7, "samples");
  checkGateway(st.gateway, 8);
  nat(st.timeMs, 9, "time");
  nat(st.mmdMs, 10, "mmd");
}

export function formatStatement(st: ReceiptStatement): string {
  validate(st);
  const values: Record<Field, string> = {
    cluster: st.cluster,
    batch: st.batchId,
    sha256: st.sha256,
    shard: String(st.shardId),
    hlc: st.hlc,
    samples: String(st.samples),
    gateway: st.gateway,
    time: String(st.timeMs),
    mmd: String(st.mmdMs),
  };
  return `${STATEMENT_HEADER}\n${FIELDS.map((f) => `${f} ${values[f]}\n`).join("")}`;
}

/** Parses statement note text strictly: the header, then exactly the ten fields in order, one space each. */
export function parseStatement(text: string): ReceiptStatement {
  if (!text.endsWith("\n")) throw bad(Math.max(1, text.split("\n").length), "final newline", "statement text must end in a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines[0] !== STATEMENT_HEADER) throw bad(1, "header", `first line must be ${JSON.stringify(STATEMENT_HEADER)}`);
  if (lines.length > FIELDS.length + 1) throw bad(FIELDS.length + 2, "end", "unexpected line after mmd");
  const v = {} as Record<Field, string>;
  FIELDS.forEach((f, i) => {
    const line = i + 2;
    const l = lines[i + 1];
    if (l === undefined) throw bad(line, f, `missing line "${f} ..."`);
    if (!l.startsWith(`${f} `)) throw bad(line, f, `line must be "${f} <value>"`);
    v[f] = l.slice(f.length + 1);
  });
  const num = (f: Field, line: number) => parseDecimal(v[f], line, f, "malformed_statement");
  const st: ReceiptStatement = {
    cluster: v.cluster,
    batchId: v.batch,
    sha256: v.sha256,
    shardId: num("shard", 5),
    hlc: v.hlc,
    samples: num("samples", 7),
    gateway: v.gateway,
    timeMs: num("time", 9),
    mmdMs: num("mmd", 10),
  };
  validate(st);
  return st;
}

/** The statement for a write receipt. */
export function statementFromReceipt(r: Receipt, ctx: { cluster: string; gateway: string; timeMs: number; mmdMs: number }): ReceiptStatement {
  return { cluster: ctx.cluster, batchId: r.batchId, sha256: r.sha256, shardId: r.shardId, hlc: r.hlc, samples: r.samples, gateway: ctx.gateway, timeMs: ctx.timeMs, mmdMs: ctx.mmdMs };
}

export async function signStatement(st: ReceiptStatement, signer: Signer): Promise<string> {
  const text = formatStatement(st);
  // Parsing what we format catches a drift between the two before a client sees it.
  assert(formatStatement(parseStatement(text)) === text, "receipt statement does not round-trip");
  return signNote(text, [signer]);
}

/** Verifies a signed statement against trusted gateway keys and parses it. */
export function openStatement(signedNote: string | Uint8Array, verifiers: readonly Verifier[]): ReceiptStatement & { signedBy: string[] } {
  const note = verifyNote(signedNote, verifiers);
  return { ...parseStatement(note.text), signedBy: note.verifiedBy };
}
