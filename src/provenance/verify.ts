// The client's verification engine (docs/verify.md): a signed checkpoint
// checked against pinned keys and the checkpoints seen before, then every
// exported point checked against the signed batch it names. Pure: no I/O;
// src/cli/verify-cmd.ts and bundle.ts feed it what they fetched or read.
//
// Why a point is trustworthy once checked: the checkpoint's root fixes every
// leaf entry (inclusion proof), the entry fixes the SHA-256 of the batch's
// canonical bytes, and the bytes fix every (series, timestamp, value) and the
// batch's origin. A node can serve wrong data, but not data that passes.

import { decodeBatch, sameValue, type BatchSeries, type Origin } from "../core/batch.js";
import { BadInputError } from "../core/errors.js";
import { sha256, toHex } from "../core/hash.js";
import { Hlc } from "../core/hlc.js";
import { seriesKey, type Label } from "../core/labels.js";
import { openCheckpoint } from "./checkpoint.js";
import { isProvenanceError } from "./errors.js";
import { decodeLeaf } from "./leaf.js";
import { hashFromHex, leafHash, proofFromHex, verifyConsistency, verifyInclusion } from "./merkle.js";
import { decodeBase64Strict, parseNote, parseVerifierKey, type Verifier } from "./note.js";

/** The bound a receipt promises (ProvenanceOptions.mmdMs): a committed batch is in a checkpoint this long after. */
export const DEFAULT_MMD_MS = 60_000;
/** Failures listed in a report; the rest are counted, so a badly damaged replica gives a readable report. */
export const REPORT_FAILURES_MAX = 1000;
/** Point failures named per batch (or per series, for points naming no batch); the rest become one summary line. */
export const POINT_EXAMPLES_PER_BATCH = 10;
/** Checkpoints a trust state keeps: enough to recognise a lagging replica's older checkpoint. */
export const TRUST_CHECKPOINTS_KEPT = 100;
/** Keys a trust state or trust file may pin: a cluster has a few nodes, each with a few retired keys. */
export const TRUST_KEYS_MAX = 1000;

// ---------------------------------------------------------------------------
// Trust state: what the client saw before.

export interface TrustedCheckpoint {
  size: number;
  root: string; // hex
  timeMs: number;
  note: string;
}

export interface TrustState {
  origin: string;
  /** Verifier key strings (`<name>+<hex8>+<base64>`). */
  keys: string[];
  /** Sorted by size: the newest last. */
  checkpoints: TrustedCheckpoint[];
}

const HEX_ROOT = /^[0-9a-f]{64}$/;

/** Validates a trust state read from a file; errors name the field. */
export function parseTrustState(value: unknown, source: string): TrustState {
  const bad = (field: string, msg: string): BadInputError => new BadInputError(`${source}: ${msg}`, { field });
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad("state", "not a JSON object");
  const v = value as Record<string, unknown>;
  if (typeof v["origin"] !== "string" || v["origin"] === "") throw bad("origin", "origin must be a non-empty string");
  const keys = v["keys"];
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== "string")) throw bad("keys", "keys must be an array of verifier key strings");
  if (keys.length > TRUST_KEYS_MAX) throw bad("keys", `${keys.length} keys exceed the limit of ${TRUST_KEYS_MAX}`);
  const cps = v["checkpoints"];
  if (!Array.isArray(cps)) throw bad("checkpoints", "checkpoints must be an array");
  const checkpoints: TrustedCheckpoint[] = cps.map((c: unknown, i) => {
    const o = (typeof c === "object" && c !== null ? c : {}) as Record<string, unknown>;
    const size = o["size"];
    const root = o["root"];
    const timeMs = o["timeMs"];
    const note = o["note"];
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw bad(`checkpoints[${i}].size`, "size must be a non-negative integer");
    if (typeof root !== "string" || !HEX_ROOT.test(root)) throw bad(`checkpoints[${i}].root`, "root must be 64 lowercase hex digits");
    if (typeof timeMs !== "number" || !Number.isSafeInteger(timeMs)) throw bad(`checkpoints[${i}].timeMs`, "timeMs must be an integer");
    if (typeof note !== "string") throw bad(`checkpoints[${i}].note`, "note must be a string");
    return { size, root, timeMs, note };
  });
  for (let i = 1; i < checkpoints.length; i++)
    if (checkpoints[i - 1]!.size >= checkpoints[i]!.size) throw bad("checkpoints", "checkpoints must be sorted by size, one per size");
  return { origin: v["origin"], keys: keys as string[], checkpoints };
}

/**
 * The checkpoint seen before that a new one of `size` is compared with: the
 * one of the same size when known (a lagging replica's checkpoint can only be
 * matched that way without a proof from a node further ahead), else the newest.
 */
export function previousCheckpoint(state: TrustState, size: number): TrustedCheckpoint | undefined {
  return state.checkpoints.find((c) => c.size === size) ?? state.checkpoints[state.checkpoints.length - 1];
}

/** The state with `cp` added (kept sorted by size, one per size, the newest `keep`). */
export function recordCheckpoint(state: TrustState, cp: VerifiedCheckpoint, keep = TRUST_CHECKPOINTS_KEPT): TrustState {
  const checkpoints = state.checkpoints.filter((c) => c.size !== cp.size);
  checkpoints.push({ size: cp.size, root: cp.root, timeMs: cp.timeMs, note: cp.note });
  checkpoints.sort((a, b) => a.size - b.size);
  return { ...state, checkpoints: checkpoints.slice(-keep) };
}

// ---------------------------------------------------------------------------
// Checkpoints

export interface VerifiedCheckpoint {
  origin: string;
  size: number;
  root: string; // hex
  rootHash: Uint8Array;
  timeMs: number;
  /** `name+keyid` of every trusted key whose signature verified. */
  signedBy: string[];
  note: string;
}

export interface CheckpointCheck {
  /** null when the note is not signed by a trusted key or does not parse: nothing in it may be used. */
  checkpoint: VerifiedCheckpoint | null;
  /** null when there was nothing to compare with (or the checkpoint itself failed). */
  consistent: boolean | null;
  problems: string[];
}

export type Consistency = "first-seen" | "consistent" | "rewritten" | "unchecked";

export function consistencyOf(check: CheckpointCheck): Consistency {
  if (check.consistent === null) return "first-seen";
  return check.consistent ? "consistent" : "rewritten";
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Opens a signed checkpoint with the trusted keys and, given the checkpoint
 * seen before, checks the log only grew. `consistencyProof` (hex hashes) is
 * RFC 9162's proof from the smaller of the two sizes to the larger: a larger
 * checkpoint must extend the previous one; a smaller one is accepted only
 * with a proof that it is a prefix of the previous one (a replica lagging
 * behind), and without a proof is a rewrite, as is an equal size with
 * another root. A larger checkpoint without a proof is not shown to extend
 * the previous one and counts as inconsistent: a node that cannot prove its
 * log only grew is indistinguishable from one that rewrote it.
 */
export function verifyCheckpoint(
  note: string,
  trustedKeys: readonly string[],
  origin: string,
  previous?: { size: number; root: string },
  consistencyProof?: readonly string[],
): CheckpointCheck {
  const problems: string[] = [];
  const verifiers: Verifier[] = [];
  for (const k of trustedKeys) {
    try {
      verifiers.push(parseVerifierKey(k));
    } catch (e) {
      problems.push(`trusted key ${JSON.stringify(k.slice(0, 100))} is malformed: ${errorText(e)}`);
    }
  }
  let opened: ReturnType<typeof openCheckpoint>;
  try {
    opened = openCheckpoint(note, verifiers, origin);
  } catch (e) {
    if (isProvenanceError(e, "unknown_signer")) {
      let signers = "nobody";
      try {
        signers = parseNote(note).signatures.map((s) => `${s.name}+${s.keyIdHex}`).join(", ") || "nobody";
      } catch {
        signers = "unparsable signatures";
      }
      problems.push(`checkpoint not signed by a trusted key (signed by: ${signers})`);
    } else if (isProvenanceError(e, "signature_invalid")) problems.push(`checkpoint signature does not verify, the note was altered: ${errorText(e)}`);
    else if (isProvenanceError(e, "origin_mismatch")) problems.push(`checkpoint is from another log: ${errorText(e)}`);
    else if (e instanceof Error) problems.push(`checkpoint is malformed: ${errorText(e)}`);
    else throw e;
    return { checkpoint: null, consistent: null, problems };
  }
  const trusted = new Set(verifiers.map((v) => `${v.name}+${toHex(v.keyId)}`));
  const signedBy = [...new Set(parseNote(note).signatures.map((s) => `${s.name}+${s.keyIdHex}`).filter((k) => trusted.has(k)))];
  const checkpoint: VerifiedCheckpoint = {
    origin: opened.origin,
    size: opened.treeSize,
    root: toHex(opened.rootHash),
    rootHash: opened.rootHash,
    timeMs: opened.timeMs,
    signedBy,
    note,
  };
  if (previous === undefined) return { checkpoint, consistent: null, problems };

  const rewritten = `history rewritten: checkpoint ${checkpoint.size} is not consistent with checkpoint ${previous.size} seen before`;
  let prevRoot: Uint8Array;
  try {
    prevRoot = hashFromHex(previous.root, "previous root");
  } catch (e) {
    problems.push(`the checkpoint seen before has a malformed root: ${errorText(e)}`);
    return { checkpoint, consistent: false, problems };
  }
  if (checkpoint.size === previous.size) {
    const same = bytesEqual(prevRoot, checkpoint.rootHash);
    if (!same) problems.push(`${rewritten} (same size, another root)`);
    return { checkpoint, consistent: same, problems };
  }
  if (consistencyProof === undefined) {
    problems.push(
      checkpoint.size < previous.size
        ? `${rewritten} (smaller, and no proof that it is a prefix of the one seen before)`
        : `${rewritten} (no consistency proof given)`,
    );
    return { checkpoint, consistent: false, problems };
  }
  let proof: Uint8Array[];
  try {
    proof = proofFromHex(consistencyProof, "consistency proof");
  } catch (e) {
    problems.push(`${rewritten} (malformed proof: ${errorText(e)})`);
    return { checkpoint, consistent: false, problems };
  }
  const ok =
    checkpoint.size > previous.size
      ? verifyConsistency(previous.size, checkpoint.size, prevRoot, checkpoint.rootHash, proof)
      : verifyConsistency(checkpoint.size, previous.size, checkpoint.rootHash, prevRoot, proof);
  if (!ok) problems.push(`${rewritten} (the consistency proof does not verify)`);
  return { checkpoint, consistent: ok, problems };
}

// ---------------------------------------------------------------------------
// Export lines

/** One line of /api/v1/export (docs/http-api.md), the fields the verifier reads. */
export interface ExportLine {
  metric: Record<string, string>;
  values: (number | string)[];
  timestamps_ns: string[];
  origins: string[];
  batches: (string | null)[];
}

const NS_DECIMAL = /^-?[0-9]{1,19}$/;
const NON_FINITE: Readonly<Record<string, number>> = { NaN: Number.NaN, "+Inf": Number.POSITIVE_INFINITY, "-Inf": Number.NEGATIVE_INFINITY };

/** Checks the shape of a parsed export line; BadInputError names the field. */
export function parseExportLine(value: unknown): ExportLine {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new BadInputError("an export line must be a JSON object", { field: "line" });
  const v = value as Record<string, unknown>;
  const metric = v["metric"];
  if (typeof metric !== "object" || metric === null || Array.isArray(metric) || Object.values(metric).some((x) => typeof x !== "string"))
    throw new BadInputError("metric must be an object of label values", { field: "metric" });
  const arrays = ["values", "timestamps_ns", "origins", "batches"] as const;
  for (const f of arrays) if (!Array.isArray(v[f])) throw new BadInputError(`${f} must be an array`, { field: f });
  const n = (v["values"] as unknown[]).length;
  for (const f of arrays)
    if ((v[f] as unknown[]).length !== n) throw new BadInputError(`${f} has ${(v[f] as unknown[]).length} entries, values has ${n}`, { field: f });
  return value as ExportLine;
}

/** An export line given as its JSON text or already parsed. */
function toExportLine(line: unknown): ExportLine {
  if (typeof line !== "string") return parseExportLine(line);
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw new BadInputError(`not JSON: ${errorText(e)}`, { field: "line" });
  }
  return parseExportLine(v);
}

function labelsOf(metric: Record<string, string>): Label[] {
  // Canonical order (labels.ts canonicalLabels): by name, code unit order.
  return Object.entries(metric).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function valueOf(raw: number | string): number | null {
  if (typeof raw === "number") return raw;
  return NON_FINITE[raw] ?? null;
}

function formatValue(v: number): string {
  return Object.is(v, -0) ? "-0" : String(v);
}

/** RFC 3339 with nanoseconds, or the decimal itself when out of Date's range. */
export function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n - (ns < 0n && ns % 1_000_000n !== 0n ? 1n : 0n);
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return `${ns}ns`;
  const sub = (((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, "0");
  return d.toISOString().replace(/\.\d{3}Z$/, `.${sub}Z`);
}

function indexOfTs(ts: BigInt64Array, t: bigint): number {
  let lo = 0;
  let hi = ts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const x = ts[mid]!;
    if (x === t) return mid;
    if (x < t) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

// ---------------------------------------------------------------------------
// Points

export interface VerifyFailure {
  batchId: string | null;
  reason: string;
}

export interface VerifyReport {
  ok: boolean;
  /** null when the checkpoint itself could not be trusted (then nothing else was checked). */
  checkpoint: { size: number; root: string; timeMs: number; signedBy: string[] } | null;
  consistency: Consistency;
  series: number;
  samples: number;
  samplesVerified: number;
  samplesPending: number;
  batches: { total: number; verified: number; pending: number; failed: number };
  /** At most REPORT_FAILURES_MAX; failuresOmitted counts the rest. */
  failures: VerifyFailure[];
  failuresOmitted: number;
}

/** The report when the checkpoint failed: nothing was checked against it. */
export function checkpointFailureReport(check: CheckpointCheck): VerifyReport {
  return {
    ok: false,
    checkpoint: null,
    consistency: check.checkpoint === null ? "unchecked" : consistencyOf(check),
    series: 0,
    samples: 0,
    samplesVerified: 0,
    samplesPending: 0,
    batches: { total: 0, verified: 0, pending: 0, failed: 0 },
    failures: check.problems.map((reason) => ({ batchId: null, reason })),
    failuresOmitted: 0,
  };
}

type BatchStatus = "asked" | "verified" | "pending" | "failed";

interface BatchState {
  status: BatchStatus;
  /** Points seen by addSeries and not yet by checkSeries: the decoded batch is dropped at 0. */
  refs: number;
  content: Map<string, BatchSeries> | null;
  origin: Origin | null;
  pointFailures: number;
}

export interface PointVerifierOptions {
  /** From verifyCheckpoint: its root is what every inclusion proof must reach. */
  checkpoint: VerifiedCheckpoint;
  consistency: Consistency;
  /** verifyCheckpoint's problems (a rewrite): failures of the whole run. */
  checkpointProblems?: readonly string[];
  mmdMs?: number;
  failuresMax?: number;
  /**
   * The verifier's clock (ms), when checking live: a batch committed longer than mmdMs before it and still in no
   * checkpoint is a broken promise even when the newest checkpoint is old (a stalled sequencer). Absent for bundles
   * (checked later, offline: only the checkpoint's own time counts).
   */
  nowMs?: number;
}

/**
 * Checks exported points against signed batches, streaming:
 *   1. addSeries(line) for every export line (counts the points per batch);
 *   2. unansweredBatchIds() → ask the node (256 at a time), addProofResponse
 *      (or addBatch per answer) with what it says;
 *   3. checkSeries(line) for every line again, in any order;
 *   4. report().
 * Memory: one entry per batch id, plus each verified batch decoded (about
 * 16 bytes a sample) until its last point is checked. The caller holds or
 * re-reads the lines between passes.
 */
export class PointVerifier {
  private readonly cp: VerifiedCheckpoint;
  private readonly consistency: Consistency;
  private readonly mmdMs: number;
  private readonly nowMs: number | null;
  private readonly failuresMax: number;
  private readonly batches = new Map<string, BatchState>();
  private readonly failures: VerifyFailure[] = [];
  private failuresOmitted = 0;
  private linesChecked = 0;
  private samples = 0;
  private samplesVerified = 0;
  private samplesPending = 0;

  constructor(opts: PointVerifierOptions) {
    this.cp = opts.checkpoint;
    this.consistency = opts.consistency;
    this.mmdMs = opts.mmdMs ?? DEFAULT_MMD_MS;
    this.nowMs = opts.nowMs ?? null;
    this.failuresMax = opts.failuresMax ?? REPORT_FAILURES_MAX;
    for (const p of opts.checkpointProblems ?? []) this.fail(null, p);
  }

  /** Batch ids referenced so far. */
  get batchCount(): number {
    return this.batches.size;
  }

  private fail(batchId: string | null, reason: string): void {
    if (this.failures.length < this.failuresMax) this.failures.push({ batchId, reason });
    else this.failuresOmitted += 1;
  }

  private state(id: string): BatchState {
    let s = this.batches.get(id);
    if (s === undefined) {
      s = { status: "asked", refs: 0, content: null, origin: null, pointFailures: 0 };
      this.batches.set(id, s);
    }
    return s;
  }

  /**
   * Pass 1: records the batches a line's points name. `line` is the JSON text
   * of an export line or its parsed value. A malformed line is skipped here
   * and reported by checkSeries.
   */
  addSeries(line: unknown): void {
    let l: ExportLine;
    try {
      l = toExportLine(line);
    } catch {
      return;
    }
    let lastId: string | null = null;
    let last: BatchState | null = null;
    for (const id of l.batches) {
      if (typeof id !== "string") continue;
      // Batch ids come in long runs (a batch is usually a whole series): one map lookup per run.
      if (id !== lastId) {
        lastId = id;
        last = this.state(id);
      }
      last!.refs += 1;
    }
  }

  /** Referenced batch ids with no answer yet: what to ask the node for. */
  unansweredBatchIds(): string[] {
    const out: string[] = [];
    for (const [id, s] of this.batches) if (s.status === "asked") out.push(id);
    return out;
  }

  /**
   * One POST /hq/v1/proof/batches answer for `askedIds`: checks it is for the
   * checkpoint's size and answers every id in order, then checks each batch.
   */
  addProofResponse(askedIds: readonly string[], response: unknown): void {
    const r = (typeof response === "object" && response !== null ? response : {}) as { size?: unknown; batches?: unknown };
    const list = Array.isArray(r.batches) ? (r.batches as unknown[]) : null;
    const why =
      r.size !== this.cp.size
        ? `the proofs are for tree size ${String(r.size)}, not the checkpoint's ${this.cp.size}`
        : list === null
          ? "the answer has no batches list"
          : list.length !== askedIds.length
            ? `the answer holds ${list.length} batches for ${askedIds.length} asked`
            : null;
    if (why !== null) {
      for (const id of askedIds) this.failBatch(this.state(id), id, `the node's proof answer is unusable: ${why}`);
      return;
    }
    askedIds.forEach((id, i) => this.addBatch(list![i], id));
  }

  private failBatch(s: BatchState, id: string, reason: string): void {
    s.status = "failed";
    s.content = null;
    this.fail(id, `batch ${id}: ${reason}`);
  }

  /** Checks one batch's answer (`askedId`: the id it must be for, when known). */
  addBatch(answer: unknown, askedId?: string): void {
    const a = (typeof answer === "object" && answer !== null ? answer : {}) as Record<string, unknown>;
    const claimed = typeof a["batchId"] === "string" ? a["batchId"] : null;
    const id = askedId ?? claimed;
    if (id === null) {
      this.fail(null, "a proof answer names no batch id");
      return;
    }
    const s = this.state(id);
    if (s.status !== "asked") {
      this.failBatch(s, id, "answered twice");
      return;
    }
    if (claimed !== id) {
      this.failBatch(s, id, `the node answered for batch ${JSON.stringify(claimed)} instead`);
      return;
    }
    switch (a["status"]) {
      case "included":
        this.checkIncluded(s, id, a);
        return;
      case "pending":
        this.checkPending(s, id, a);
        return;
      case "unknown":
        this.failBatch(s, id, "the node does not know this batch, yet stored points name it");
        return;
      default:
        this.failBatch(s, id, `unexpected proof status ${JSON.stringify(a["status"])}`);
    }
  }

  private checkPending(s: BatchState, id: string, a: Record<string, unknown>): void {
    const raw = a["committedHlc"];
    if (typeof raw !== "string" || !/^[0-9]{1,19}$/.test(raw)) {
      this.failBatch(s, id, `pending, with a malformed committedHlc ${JSON.stringify(raw)}`);
      return;
    }
    const committedMs = Hlc.wallMs(BigInt(raw));
    // A batch committed well before the checkpoint was cut should be in it: the sequencer promised mmdMs.
    if (committedMs < this.cp.timeMs - this.mmdMs) {
      s.status = "failed";
      this.fail(id, `batch ${id} committed at ${new Date(committedMs).toISOString()} is missing from checkpoint ${this.cp.size} (bound ${this.mmdMs / 1000} s)`);
      return;
    }
    if (this.nowMs !== null && committedMs < this.nowMs - this.mmdMs) {
      s.status = "failed";
      this.fail(
        id,
        `batch ${id} committed at ${new Date(committedMs).toISOString()} is in no checkpoint ${Math.round((this.nowMs - committedMs) / 1000)} s later (bound ${this.mmdMs / 1000} s; the newest checkpoint, ${this.cp.size}, is from ${new Date(this.cp.timeMs).toISOString()}: is the sequencer running?)`,
      );
      return;
    }
    s.status = "pending";
  }

  private checkIncluded(s: BatchState, id: string, a: Record<string, unknown>): void {
    const entryBytes = typeof a["entry"] === "string" ? decodeBase64Strict(a["entry"]) : null;
    if (entryBytes === null) return this.failBatch(s, id, "the leaf entry is not base64");
    let entry: ReturnType<typeof decodeLeaf>;
    try {
      entry = decodeLeaf(entryBytes, "leaf entry");
    } catch (e) {
      return this.failBatch(s, id, `the leaf entry does not decode: ${errorText(e)}`);
    }
    if (entry.batchId !== id) return this.failBatch(s, id, `the leaf entry is for batch ${JSON.stringify(entry.batchId)}`);
    const index = a["index"];
    let proof: Uint8Array[];
    try {
      proof = proofFromHex(a["proof"], "proof");
    } catch (e) {
      return this.failBatch(s, id, `not included in checkpoint ${this.cp.size} (malformed proof: ${errorText(e)})`);
    }
    if (typeof index !== "number" || !verifyInclusion(leafHash(entryBytes), index, this.cp.size, proof, this.cp.rootHash))
      return this.failBatch(s, id, `not included in checkpoint ${this.cp.size} (proof does not verify)`);
    if (typeof a["bytes"] !== "string") {
      const why = typeof a["bytesError"] === "string" ? a["bytesError"] : "no bytes in the answer";
      return this.failBatch(s, id, `the node could not produce the canonical bytes (${why}), so its points cannot be checked`);
    }
    const bytes = decodeBase64Strict(a["bytes"]);
    if (bytes === null) return this.failBatch(s, id, "the canonical bytes are not base64");
    if (toHex(sha256(bytes)) !== entry.sha256) return this.failBatch(s, id, "canonical bytes do not match the signed digest");
    let batch: ReturnType<typeof decodeBatch>;
    try {
      batch = decodeBatch(bytes, `batch ${id}`);
    } catch (e) {
      return this.failBatch(s, id, `the canonical bytes do not decode: ${errorText(e)}`);
    }
    if (batch.sampleCount !== entry.sampleCount)
      return this.failBatch(s, id, `the canonical bytes hold ${batch.sampleCount} samples, the signed entry says ${entry.sampleCount}`);
    if (batch.origin !== entry.origin) return this.failBatch(s, id, `the canonical bytes say origin ${batch.origin}, the signed entry says ${entry.origin}`);
    if (batch.shardId !== entry.shardId) return this.failBatch(s, id, `the canonical bytes say shard ${batch.shardId}, the signed entry says ${entry.shardId}`);
    s.status = "verified";
    s.origin = batch.origin;
    // Kept only while points still need it (refs counts them).
    s.content = s.refs > 0 ? new Map(batch.series.map((x) => [x.key, x])) : null;
  }

  private pointFailure(s: BatchState, id: string, reason: string): void {
    s.pointFailures += 1;
    if (s.pointFailures <= POINT_EXAMPLES_PER_BATCH) this.fail(id, `batch ${id}: ${reason}`);
  }

  /** Pass 2: checks every point of a line (JSON text or parsed) against the batch it names. */
  checkSeries(line: unknown): void {
    this.linesChecked += 1;
    let l: ExportLine;
    try {
      l = toExportLine(line);
    } catch (e) {
      this.fail(null, `export line ${this.linesChecked} is malformed: ${errorText(e)}`);
      return;
    }
    const key = seriesKey(labelsOf(l.metric));
    let unnamed = 0;
    let firstUnnamed = "";
    let lastId: string | null = null;
    let s: BatchState | null = null;
    for (let i = 0; i < l.values.length; i++) {
      this.samples += 1;
      const id = l.batches[i];
      const tsText = l.timestamps_ns[i];
      const ts = typeof tsText === "string" && NS_DECIMAL.test(tsText) ? BigInt(tsText) : null;
      if (typeof id !== "string") {
        unnamed += 1;
        if (unnamed === 1) firstUnnamed = ts === null ? String(tsText) : isoNs(ts);
        continue;
      }
      if (id !== lastId) {
        lastId = id;
        s = this.state(id);
      }
      const b = s!;
      if (b.refs > 0) b.refs -= 1;
      const releaseAfter = b.refs === 0;
      try {
        if (b.status === "pending") {
          this.samplesPending += 1;
          continue;
        }
        if (b.status !== "verified") continue; // the batch's own failure (or missing answer) is reported once
        if (ts === null) {
          this.pointFailure(b, id, `stored point ${key} has a malformed timestamp ${JSON.stringify(tsText)}`);
          continue;
        }
        const at = `${key} @${isoNs(ts)}`;
        if (b.content === null) {
          this.pointFailure(b, id, `stored point ${at} was checked with no matching addSeries (a caller bug)`);
          continue;
        }
        const value = valueOf(l.values[i]!);
        if (value === null) {
          this.pointFailure(b, id, `stored point ${at} has a malformed value ${JSON.stringify(l.values[i])}`);
          continue;
        }
        const bs = b.content.get(key);
        const j = bs === undefined ? -1 : indexOfTs(bs.timestampsNs, ts);
        if (bs === undefined || j < 0) {
          this.pointFailure(b, id, `stored point ${at} is not in the signed batch`);
          continue;
        }
        const signed = bs.values[j]!;
        // The export writes every NaN as "NaN", losing its payload: a stored NaN matches any signed NaN.
        const same = Number.isNaN(value) ? Number.isNaN(signed) : sameValue(value, signed);
        if (!same) {
          this.pointFailure(b, id, `stored point ${at} has value ${formatValue(value)}, the signed batch says ${formatValue(signed)}`);
          continue;
        }
        if (l.origins[i] !== b.origin) {
          this.pointFailure(b, id, `stored point ${at} is marked ${String(l.origins[i])}, the signed batch is ${String(b.origin)}`);
          continue;
        }
        this.samplesVerified += 1;
      } finally {
        if (releaseAfter) b.content = null;
      }
    }
    if (unnamed > 0) this.fail(null, `series ${key}: ${unnamed} stored point${unnamed === 1 ? "" : "s"} name no batch (first @${firstUnnamed}); every stored point must name its batch`);
  }

  report(): VerifyReport {
    const failures = [...this.failures];
    let omitted = this.failuresOmitted;
    const add = (f: VerifyFailure): void => {
      if (failures.length < this.failuresMax) failures.push(f);
      else omitted += 1;
    };
    let verified = 0;
    let pending = 0;
    let failed = 0;
    for (const [id, s] of this.batches) {
      if (s.status === "asked") add({ batchId: id, reason: `batch ${id}: no proof answer from the node, so its points are unchecked` });
      if (s.pointFailures > POINT_EXAMPLES_PER_BATCH)
        add({ batchId: id, reason: `batch ${id}: ${s.pointFailures - POINT_EXAMPLES_PER_BATCH} more stored points differ from the signed batch` });
      if (s.status === "verified" && s.pointFailures === 0) verified += 1;
      else if (s.status === "pending") pending += 1;
      else failed += 1;
    }
    return {
      ok: failures.length === 0 && omitted === 0 && this.consistency !== "rewritten",
      checkpoint: { size: this.cp.size, root: this.cp.root, timeMs: this.cp.timeMs, signedBy: [...this.cp.signedBy] },
      consistency: this.consistency,
      series: this.linesChecked,
      samples: this.samples,
      samplesVerified: this.samplesVerified,
      samplesPending: this.samplesPending,
      batches: { total: this.batches.size, verified, pending, failed },
      failures,
      failuresOmitted: omitted,
    };
  }
}

// ---------------------------------------------------------------------------
// Lines

/**
 * Splits a byte stream into lines ("\n"; a final unterminated line counts),
 * refusing a line longer than `maxLineBytes`: V8 strings stop at about
 * 512 MiB, and one huge line would be held whole.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;

  constructor(
    private readonly maxLineBytes: number,
    private readonly what: string,
  ) {}

  push(chunk: Uint8Array): string[] {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const out: string[] = [];
    let start = 0;
    for (let nl = buf.indexOf(0x0a, start); nl >= 0; nl = buf.indexOf(0x0a, start)) {
      this.append(buf.subarray(start, nl));
      out.push(this.take());
      start = nl + 1;
    }
    if (start < buf.length) this.append(Buffer.from(buf.subarray(start)));
    return out;
  }

  end(): string[] {
    return this.partBytes > 0 ? [this.take()] : [];
  }

  private append(b: Buffer): void {
    if (this.partBytes + b.length > this.maxLineBytes)
      throw new BadInputError(`a line of ${this.what} is longer than the limit of ${this.maxLineBytes} bytes`, { field: this.what });
    if (b.length > 0) this.parts.push(b);
    this.partBytes += b.length;
  }

  private take(): string {
    const text = this.parts.length === 1 ? this.parts[0]!.toString("utf8") : Buffer.concat(this.parts).toString("utf8");
    this.parts = [];
    this.partBytes = 0;
    return text;
  }
}
