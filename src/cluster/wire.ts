// The wire encoding of the replication protocol's messages
// (docs/format/replication.md). Pure: bytes in, bytes out, no I/O.
//
// Canonical: every message has exactly one encoding, and a decoder refuses
// anything else (overlong varints, booleans other than 0/1, unknown tags,
// trailing bytes). Decoding never throws anything but a typed HqError:
// BadInputError for malformed bytes, TooLargeError past MAX_MESSAGE_BYTES.

import { ByteReader, ByteWriter } from "../core/bytes.js";
import { sha256, toHex } from "../core/hash.js";
import { BadInputError, CorruptionError, HqError, TooLargeError, type ConflictingPoint } from "../core/errors.js";
import type {
  Ballot,
  BatchPayload,
  BatchSummary,
  FlushedBatch,
  FetchedBatch,
  Message,
  NodeId,
  PrepareAnswer,
  StatusAnswer,
} from "./protocol/messages.js";

/** The wire format's version; the first byte of every message. */
export const WIRE_VERSION = 1;
/** Largest encoded message, in bytes (both directions). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Longest list (replica sets, conflict points, summaries, batch ids, fetched batches). */
export const MAX_LIST_ITEMS = 1_000_000;
/** Longest string (node id, batch id, digest, series key, reason), in UTF-8 bytes. */
export const MAX_STRING_BYTES = 1024 * 1024;
/** Bigints (HLC stamps, ballot times) must satisfy -2^(N-1) <= v < 2^(N-1). */
export const MAX_BIGINT_BITS = 1024;
/** The media type of an encoded message on HTTP. */
export const MESSAGE_CONTENT_TYPE = "application/x-hqts-msg";
/** The media type of a sequence of encoded messages on HTTP (what the transport sends). */
export const MESSAGES_CONTENT_TYPE = "application/x-hqts-msgs";
/** Largest sequence: one largest message and its length prefix, or many smaller ones. */
export const MAX_SEQUENCE_BYTES = MAX_MESSAGE_BYTES + 16;

/** Type byte of each message (second byte of every message). */
export const MESSAGE_TYPE_CODES = Object.freeze({
  prepare: 1,
  "prepare-reply": 2,
  commit: 3,
  "commit-reply": 4,
  abort: 5,
  status: 6,
  "status-reply": 7,
  "catchup-list": 8,
  "catchup-list-reply": 9,
  fetch: 10,
  "fetch-reply": 11,
} as const satisfies Record<Message["type"], number>);

const PREPARE_ANSWER_CODES = { prepared: 1, duplicate: 2, conflict: 3, "id-conflict": 4, fenced: 5, "voted-higher": 6, unavailable: 7 } as const;
const STATUS_ANSWER_CODES = { committed: 1, prepared: 2, fenced: 3, unknown: 4 } as const;

const utf8 = new TextEncoder();
// ignoreBOM: a string starting with U+FEFF must come back unchanged.
const utf8d = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /\p{Cs}/u; // in u-mode a valid pair is one code point, so this matches lone halves only
const BIGINT_LIMIT = 1n << BigInt(MAX_BIGINT_BITS - 1);
const ZIGZAG_LIMIT = 1n << BigInt(MAX_BIGINT_BITS);
const BIGINT_MAX_BYTES = Math.ceil(MAX_BIGINT_BITS / 7);

// ---------------------------------------------------------------- encoding

class Enc {
  readonly w = new ByteWriter(256);

  fail(what: string): never {
    throw new BadInputError(`cannot encode message: ${what}`, { field: what.split(":")[0] });
  }
  u8(v: number): void {
    this.w.u8(v);
  }
  bool(v: boolean): void {
    this.w.u8(v ? 1 : 0);
  }
  /** Non-negative safe integer as canonical unsigned LEB128. */
  uint(field: string, v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) this.fail(`${field}: ${String(v)} is not a non-negative safe integer`);
    this.w.uvarint(v);
  }
  u32(field: string, v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) this.fail(`${field}: ${String(v)} is not a u32`);
    this.w.u32(v);
  }
  big(field: string, v: bigint): void {
    if (typeof v !== "bigint" || v >= BIGINT_LIMIT || v < -BIGINT_LIMIT) this.fail(`${field}: bigint outside ±2^${MAX_BIGINT_BITS - 1}`);
    let z = v >= 0n ? v << 1n : ((-v) << 1n) - 1n;
    while (z >= 0x80n) {
      this.w.u8(Number(z & 0x7fn) | 0x80);
      z >>= 7n;
    }
    this.w.u8(Number(z));
  }
  str(field: string, s: string): void {
    if (typeof s !== "string") this.fail(`${field}: not a string`);
    const b = utf8.encode(s);
    if (b.length > MAX_STRING_BYTES) this.fail(`${field}: string of ${b.length} bytes exceeds ${MAX_STRING_BYTES}`);
    // Lone surrogates would not survive UTF-8: refuse rather than change the string.
    if (LONE_SURROGATE.test(s)) this.fail(`${field}: string is not well-formed UTF-16 (lone surrogate)`);
    this.w.lenBytes(b);
  }
  bytes(field: string, b: Uint8Array): void {
    if (!(b instanceof Uint8Array)) this.fail(`${field}: not a Uint8Array`);
    this.w.lenBytes(b);
  }
  f64(v: number): void {
    this.w.f64(v);
  }
  list<T>(field: string, items: readonly T[], each: (item: T) => void): void {
    if (items.length > MAX_LIST_ITEMS) this.fail(`${field}: list of ${items.length} items exceeds ${MAX_LIST_ITEMS}`);
    this.w.uvarint(items.length);
    for (const it of items) each(it);
  }
  ballot(field: string, b: Ballot): void {
    this.big(`${field}.t`, b.t);
    this.str(`${field}.node`, b.node);
  }
  batch(b: BatchPayload): void {
    this.str("batch.batchId", b.batchId);
    this.u32("batch.shardId", b.shardId);
    this.str("batch.sha256", b.sha256);
    this.big("batch.hlc", b.hlc);
    this.bytes("batch.bytes", b.bytes);
  }
  nodes(field: string, ids: readonly NodeId[]): void {
    this.list(field, ids, (id) => this.str(field, id));
  }
  summary(s: BatchSummary): void {
    this.str("summary.batchId", s.batchId);
    this.str("summary.sha256", s.sha256);
    this.big("summary.hlc", s.hlc);
  }
}

function encodePrepareAnswer(e: Enc, a: PrepareAnswer): void {
  const code = PREPARE_ANSWER_CODES[a.kind];
  if (code === undefined) e.fail(`answer.kind: unknown prepare answer "${String((a as { kind: unknown }).kind)}"`);
  e.u8(code);
  switch (a.kind) {
    case "prepared":
      return;
    case "duplicate":
      if (a.state !== "prepared" && a.state !== "committed") e.fail(`answer.state: unknown "${String(a.state)}"`);
      return e.u8(a.state === "prepared" ? 1 : 2);
    case "conflict":
      return e.list("answer.points", a.points, (p: ConflictingPoint) => {
        e.str("point.series", p.series);
        e.str("point.timestampNs", p.timestampNs);
        e.f64(p.storedValue);
        e.f64(p.offeredValue);
      });
    case "id-conflict":
      return e.str("answer.sha256", a.sha256);
    case "fenced":
    case "voted-higher":
      return e.ballot("answer.ballot", a.ballot);
    case "unavailable":
      return e.str("answer.reason", a.reason);
  }
}

function encodeStatusAnswer(e: Enc, a: StatusAnswer): void {
  const code = STATUS_ANSWER_CODES[a.kind];
  if (code === undefined) e.fail(`answer.kind: unknown status answer "${String((a as { kind: unknown }).kind)}"`);
  e.u8(code);
  if (a.kind === "prepared" || a.kind === "fenced") e.ballot("answer.ballot", a.ballot);
}

/**
 * Encodes one message. Throws BadInputError for a message that cannot be
 * encoded (a field out of range) and TooLargeError past MAX_MESSAGE_BYTES.
 */
export function encodeMessage(msg: Message): Uint8Array {
  const e = new Enc();
  const code = MESSAGE_TYPE_CODES[msg.type];
  if (code === undefined) e.fail(`type: unknown message type "${String((msg as { type: unknown }).type)}"`);
  e.u8(WIRE_VERSION);
  e.u8(code);
  e.str("from", msg.from);
  e.big("hlc", msg.hlc);
  e.u32("shardId", msg.shardId);
  switch (msg.type) {
    case "prepare":
      e.batch(msg.batch);
      e.ballot("ballot", msg.ballot);
      e.nodes("replicas", msg.replicas);
      break;
    case "prepare-reply":
      e.str("batchId", msg.batchId);
      e.ballot("ballot", msg.ballot);
      encodePrepareAnswer(e, msg.answer);
      break;
    case "commit":
    case "abort":
    case "status":
      e.str("batchId", msg.batchId);
      e.str("sha256", msg.sha256);
      e.ballot("ballot", msg.ballot);
      break;
    case "commit-reply":
      e.str("batchId", msg.batchId);
      e.ballot("ballot", msg.ballot);
      e.bool(msg.committed);
      break;
    case "status-reply":
      e.str("batchId", msg.batchId);
      e.ballot("ballot", msg.ballot);
      encodeStatusAnswer(e, msg.answer);
      break;
    case "catchup-list":
      e.uint("round", msg.round);
      e.bool(msg.includePrepared);
      e.big("fromHlc", msg.fromHlc);
      break;
    case "catchup-list-reply":
      e.uint("round", msg.round);
      e.list("committed", msg.committed, (s) => e.summary(s));
      e.list("prepared", msg.prepared, (s) => {
        e.summary(s);
        e.ballot("prepared.ballot", s.ballot);
      });
      break;
    case "fetch":
      e.uint("round", msg.round);
      e.list("batchIds", msg.batchIds, (id) => e.str("batchIds", id));
      break;
    case "fetch-reply":
      e.uint("round", msg.round);
      e.list("batches", msg.batches, (f: FetchedBatch) => {
        e.batch(f.batch);
        if (f.state !== "committed" && f.state !== "prepared") e.fail(`batches.state: unknown "${String(f.state)}"`);
        e.u8(f.state === "committed" ? 1 : 2);
        e.ballot("batches.ballot", f.ballot);
        e.nodes("batches.replicas", f.replicas);
      });
      e.list("flushed", msg.flushed, (f: FlushedBatch) => {
        e.summary(f);
        e.uint("flushed.shardId", f.shardId);
        e.uint("flushed.sampleCount", f.sampleCount);
        if (f.origin !== "original" && f.origin !== "inferred") e.fail(`flushed.origin: unknown "${String(f.origin)}"`);
        e.u8(f.origin === "original" ? 0 : 1);
        e.str("flushed.inference", f.inference ?? "");
      });
      break;
  }
  if (e.w.length > MAX_MESSAGE_BYTES) throw new TooLargeError(`encoded ${msg.type} message of ${e.w.length} bytes`, MAX_MESSAGE_BYTES);
  return e.w.finish();
}

// ---------------------------------------------------------------- decoding

class Dec {
  readonly r: ByteReader;
  field = "version";

  constructor(
    bytes: Uint8Array,
    readonly source: string,
  ) {
    this.r = new ByteReader(bytes, source);
  }

  fail(what: string, at = this.r.offset): never {
    throw new BadInputError(`malformed replication message from ${this.source}: ${what}`, { field: this.field, offset: at });
  }
  at(field: string): this {
    this.field = field;
    return this;
  }
  u8(): number {
    return this.r.u8();
  }
  bool(): boolean {
    const at = this.r.offset;
    const b = this.r.u8();
    if (b > 1) this.fail(`boolean byte ${b} (want 0 or 1)`, at);
    return b === 1;
  }
  u32(): number {
    return this.r.u32();
  }
  /** Canonical unsigned LEB128 of a safe integer (at most 8 bytes, no overlong forms). */
  uint(): number {
    const at = this.r.offset;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.r.u8();
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (i > 0 && b === 0) this.fail("overlong varint", at);
        if (!Number.isSafeInteger(result)) this.fail("varint is not a safe integer", at);
        return result;
      }
      mul *= 0x80;
    }
    return this.fail("varint longer than 8 bytes", at);
  }
  big(): bigint {
    const at = this.r.offset;
    let z = 0n;
    let shift = 0n;
    for (let i = 0; i < BIGINT_MAX_BYTES; i++) {
      const b = this.r.u8();
      z |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) {
        if (i > 0 && b === 0) this.fail("overlong bigint varint", at);
        if (z >= ZIGZAG_LIMIT) this.fail(`bigint outside ±2^${MAX_BIGINT_BITS - 1}`, at);
        return z & 1n ? -((z + 1n) >> 1n) : z >> 1n;
      }
      shift += 7n;
    }
    return this.fail(`bigint varint longer than ${BIGINT_MAX_BYTES} bytes`, at);
  }
  len(max: number, what: string): number {
    const at = this.r.offset;
    const n = this.uint();
    if (n > max) this.fail(`${what} of ${n} exceeds the limit of ${max}`, at);
    // Every item takes at least one byte: refuse counts the rest cannot hold before allocating.
    if (n > this.r.remaining) this.fail(`${what} of ${n} but only ${this.r.remaining} bytes remain`, at);
    return n;
  }
  str(): string {
    const n = this.len(MAX_STRING_BYTES, "string length");
    const at = this.r.offset;
    const b = this.r.bytes(n);
    try {
      return utf8d.decode(b);
    } catch {
      return this.fail("invalid UTF-8 string", at);
    }
  }
  bytes(): Uint8Array {
    const n = this.len(MAX_MESSAGE_BYTES, "byte string length");
    return new Uint8Array(this.r.bytes(n)); // a copy: the message does not pin the caller's buffer
  }
  f64(): number {
    return this.r.f64();
  }
  list<T>(field: string, each: () => T): T[] {
    this.at(field);
    const n = this.len(MAX_LIST_ITEMS, "list length");
    const out: T[] = [];
    for (let i = 0; i < n; i++) {
      this.at(`${field}[${i}]`);
      out.push(each());
    }
    return out;
  }
  ballot(field: string): Ballot {
    const t = this.at(`${field}.t`).big();
    const node = this.at(`${field}.node`).str();
    return { t, node };
  }
  batch(field: string): BatchPayload {
    const batchId = this.at(`${field}.batchId`).str();
    const shardId = this.at(`${field}.shardId`).u32();
    const sha256 = this.at(`${field}.sha256`).str();
    const hlc = this.at(`${field}.hlc`).big();
    const bytes = this.at(`${field}.bytes`).bytes();
    return { batchId, shardId, sha256, hlc, bytes };
  }
  nodes(field: string): NodeId[] {
    return this.list(field, () => this.str());
  }
  summary(field: string): BatchSummary {
    const batchId = this.at(`${field}.batchId`).str();
    const sha256 = this.at(`${field}.sha256`).str();
    const hlc = this.at(`${field}.hlc`).big();
    return { batchId, sha256, hlc };
  }
}

function decodePrepareAnswer(d: Dec): PrepareAnswer {
  const at = d.r.offset;
  const code = d.at("answer.kind").u8();
  switch (code) {
    case PREPARE_ANSWER_CODES.prepared:
      return { kind: "prepared" };
    case PREPARE_ANSWER_CODES.duplicate: {
      const s = d.at("answer.state").u8();
      if (s !== 1 && s !== 2) d.fail(`duplicate state ${s} (want 1 or 2)`, d.r.offset - 1);
      return { kind: "duplicate", state: s === 1 ? "prepared" : "committed" };
    }
    case PREPARE_ANSWER_CODES.conflict: {
      const points = d.list("answer.points", (): ConflictingPoint => {
        const series = d.str();
        const timestampNs = d.str();
        const storedValue = d.f64();
        const offeredValue = d.f64();
        return { series, timestampNs, storedValue, offeredValue };
      });
      return { kind: "conflict", points };
    }
    case PREPARE_ANSWER_CODES["id-conflict"]:
      return { kind: "id-conflict", sha256: d.at("answer.sha256").str() };
    case PREPARE_ANSWER_CODES.fenced:
      return { kind: "fenced", ballot: d.ballot("answer.ballot") };
    case PREPARE_ANSWER_CODES["voted-higher"]:
      return { kind: "voted-higher", ballot: d.ballot("answer.ballot") };
    case PREPARE_ANSWER_CODES.unavailable:
      return { kind: "unavailable", reason: d.at("answer.reason").str() };
    default:
      return d.fail(`unknown prepare answer kind ${code}`, at);
  }
}

function decodeStatusAnswer(d: Dec): StatusAnswer {
  const at = d.r.offset;
  const code = d.at("answer.kind").u8();
  switch (code) {
    case STATUS_ANSWER_CODES.committed:
      return { kind: "committed" };
    case STATUS_ANSWER_CODES.prepared:
      return { kind: "prepared", ballot: d.ballot("answer.ballot") };
    case STATUS_ANSWER_CODES.fenced:
      return { kind: "fenced", ballot: d.ballot("answer.ballot") };
    case STATUS_ANSWER_CODES.unknown:
      return { kind: "unknown" };
    default:
      return d.fail(`unknown status answer kind ${code}`, at);
  }
}

function decodeBody(d: Dec): Message {
  const version = d.at("version").u8();
  if (version !== WIRE_VERSION) d.fail(`unsupported wire version ${version} (this node speaks ${WIRE_VERSION})`, 0);
  const code = d.at("type").u8();
  const from = d.at("from").str();
  const hlc = d.at("hlc").big();
  const shardId = d.at("shardId").u32();
  switch (code) {
    case MESSAGE_TYPE_CODES.prepare: {
      const batch = d.batch("batch");
      const ballot = d.ballot("ballot");
      const replicas = d.nodes("replicas");
      return { type: "prepare", from, hlc, shardId, batch, ballot, replicas };
    }
    case MESSAGE_TYPE_CODES["prepare-reply"]: {
      const batchId = d.at("batchId").str();
      const ballot = d.ballot("ballot");
      const answer = decodePrepareAnswer(d);
      return { type: "prepare-reply", from, hlc, shardId, batchId, ballot, answer };
    }
    case MESSAGE_TYPE_CODES.commit:
    case MESSAGE_TYPE_CODES.abort:
    case MESSAGE_TYPE_CODES.status: {
      const batchId = d.at("batchId").str();
      const sha256 = d.at("sha256").str();
      const ballot = d.ballot("ballot");
      const type = code === MESSAGE_TYPE_CODES.commit ? "commit" : code === MESSAGE_TYPE_CODES.abort ? "abort" : "status";
      return { type, from, hlc, shardId, batchId, sha256, ballot };
    }
    case MESSAGE_TYPE_CODES["commit-reply"]: {
      const batchId = d.at("batchId").str();
      const ballot = d.ballot("ballot");
      const committed = d.at("committed").bool();
      return { type: "commit-reply", from, hlc, shardId, batchId, ballot, committed };
    }
    case MESSAGE_TYPE_CODES["status-reply"]: {
      const batchId = d.at("batchId").str();
      const ballot = d.ballot("ballot");
      const answer = decodeStatusAnswer(d);
      return { type: "status-reply", from, hlc, shardId, batchId, ballot, answer };
    }
    case MESSAGE_TYPE_CODES["catchup-list"]: {
      const round = d.at("round").uint();
      const includePrepared = d.at("includePrepared").bool();
      const fromHlc = d.at("fromHlc").big();
      return { type: "catchup-list", from, hlc, shardId, round, includePrepared, fromHlc };
    }
    case MESSAGE_TYPE_CODES["catchup-list-reply"]: {
      const round = d.at("round").uint();
      const committed = d.list("committed", () => d.summary("committed"));
      const prepared = d.list("prepared", () => {
        const s = d.summary("prepared");
        return { ...s, ballot: d.ballot("prepared.ballot") };
      });
      return { type: "catchup-list-reply", from, hlc, shardId, round, committed, prepared };
    }
    case MESSAGE_TYPE_CODES.fetch: {
      const round = d.at("round").uint();
      const batchIds = d.list("batchIds", () => d.str());
      return { type: "fetch", from, hlc, shardId, round, batchIds };
    }
    case MESSAGE_TYPE_CODES["fetch-reply"]: {
      const round = d.at("round").uint();
      const batches = d.list("batches", (): FetchedBatch => {
        const batch = d.batch("batches.batch");
        const at = d.r.offset;
        const s = d.at("batches.state").u8();
        if (s !== 1 && s !== 2) d.fail(`batch state ${s} (want 1 or 2)`, at);
        const ballot = d.ballot("batches.ballot");
        const replicas = d.nodes("batches.replicas");
        return { batch, state: s === 1 ? "committed" : "prepared", ballot, replicas };
      });
      const flushed = d.list("flushed", (): FlushedBatch => {
        const sum = d.summary("flushed");
        const fShard = d.at("flushed.shardId").uint();
        const sampleCount = d.at("flushed.sampleCount").uint();
        const at = d.r.offset;
        const o = d.at("flushed.origin").u8();
        if (o !== 0 && o !== 1) d.fail(`origin ${o} (want 0 or 1)`, at);
        const inf = d.at("flushed.inference").str();
        return { ...sum, shardId: fShard, sampleCount, origin: o === 0 ? "original" : "inferred", inference: inf === "" ? null : inf };
      });
      return { type: "fetch-reply", from, hlc, shardId, round, batches, flushed };
    }
    default:
      return d.fail(`unknown message type ${code}`, 1);
  }
}

/**
 * Decodes one message. `source` names where the bytes came from (a peer's
 * URL) for error messages. Throws BadInputError on malformed bytes
 * (including trailing bytes) and TooLargeError past MAX_MESSAGE_BYTES;
 * never anything else.
 */
export function decodeMessage(bytes: Uint8Array, source: string): Message {
  if (!(bytes instanceof Uint8Array)) throw new BadInputError(`replication message from ${source} is not a byte array`);
  if (bytes.length > MAX_MESSAGE_BYTES) throw new TooLargeError(`replication message of ${bytes.length} bytes from ${source}`, MAX_MESSAGE_BYTES);
  const d = new Dec(bytes, source);
  try {
    const msg = decodeBody(d);
    if (d.r.remaining !== 0) d.at("end").fail(`${d.r.remaining} trailing bytes after the ${msg.type} message`);
    return msg;
  } catch (e) {
    if (e instanceof CorruptionError) throw new BadInputError(`malformed replication message from ${source}: truncated`, { field: d.field, offset: e.offset }, { cause: e });
    if (e instanceof HqError) throw e;
    // Not expected (every read is bounds-checked), but the contract is "typed errors only".
    throw new BadInputError(`malformed replication message from ${source}: ${e instanceof Error ? e.message : String(e)}`, { field: d.field, offset: d.r.offset }, { cause: e });
  }
}

/**
 * A sequence of encoded messages: each one's byte length (uvarint), then its
 * bytes; nothing else (docs/format/replication.md, "Transport").
 */
export function encodeMessageSequence(messages: readonly Uint8Array[]): Uint8Array {
  let bytes = 0;
  for (const m of messages) bytes += m.length + 10;
  const w = new ByteWriter(bytes);
  for (const m of messages) w.lenBytes(m);
  if (w.length > MAX_SEQUENCE_BYTES) throw new TooLargeError(`message sequence of ${w.length} bytes`, MAX_SEQUENCE_BYTES);
  return w.finish();
}

/** Decodes a whole sequence (every message, or a BadInputError/TooLargeError naming the one that is wrong). */
export function decodeMessageSequence(bytes: Uint8Array, source: string): Message[] {
  if (bytes.length > MAX_SEQUENCE_BYTES) throw new TooLargeError(`message sequence of ${bytes.length} bytes from ${source}`, MAX_SEQUENCE_BYTES);
  const r = new ByteReader(bytes, source);
  const out: Message[] = [];
  while (r.remaining > 0) {
    if (out.length >= MAX_LIST_ITEMS) throw new TooLargeError(`messages in one sequence from ${source}`, MAX_LIST_ITEMS);
    const at = r.offset;
    let body: Uint8Array;
    try {
      body = r.lenBytes();
    } catch (e) {
      throw new BadInputError(`malformed message sequence from ${source}: message ${out.length} is truncated`, { field: `message[${out.length}]`, offset: at }, { cause: e });
    }
    out.push(decodeMessage(body, `${source} (message ${out.length} of a sequence, at byte ${at})`));
  }
  if (out.length === 0) throw new BadInputError(`empty message sequence from ${source}`, { offset: 0 });
  return out;
}

/**
 * The batches a message carries must hash to the digests they travel with. The transport checks this on receipt
 * (a copy damaged in transit is refused, counted, and re-sent by the protocol) so that no replica ever stores bytes
 * under a digest they do not have. Throws CorruptionError naming the batch.
 */
export function checkPayloadDigests(msg: Message, source: string): void {
  const check = (b: BatchPayload): void => {
    if (toHex(sha256(b.bytes)) !== b.sha256) throw new CorruptionError(`batch ${b.batchId}: SHA-256 of the bytes received does not match the digest sent with them`, source, 0);
  };
  if (msg.type === "prepare") check(msg.batch);
  else if (msg.type === "fetch-reply") for (const f of msg.batches) check(f.batch);
}
