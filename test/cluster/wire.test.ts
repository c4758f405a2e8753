// The replication wire format (docs/format/replication.md): exact round
// trips for every message type, typed errors (never anything else) on
// damaged bytes, canonical encoding, limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BadInputError, HqError, TooLargeError } from "../../src/core/errors.js";
import {
  MAX_BIGINT_BITS,
  MAX_LIST_ITEMS,
  MESSAGE_TYPE_CODES,
  WIRE_VERSION,
  decodeMessage,
  encodeMessage,
} from "../../src/cluster/wire.js";
import type { Ballot, BatchPayload, Message, PrepareAnswer, StatusAnswer } from "../../src/cluster/protocol/messages.js";

// Plain objects (fast-check may otherwise build null-prototype records, which deepStrictEqual tells apart).
const rec = <T>(m: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> => fc.record(m, { noNullPrototype: true }) as fc.Arbitrary<T>;
const LIM = 1n << BigInt(MAX_BIGINT_BITS - 1);
const big = fc.oneof(
  fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
  fc.bigInt({ min: -LIM, max: LIM - 1n }),
  fc.constantFrom(0n, -1n, 1n, -LIM, LIM - 1n, (1n << 64n) + 5n),
);
const str = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 8 }), fc.string({ unit: "binary", maxLength: 8 }));
const nodeId = fc.oneof(str, fc.constantFrom("", "n1#3", "节点-🦀#7", "ノード\u0000x", "\ufeffbom"));
const ballot: fc.Arbitrary<Ballot> = rec({ t: big, node: nodeId });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const round = fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER));
const list = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T[]> => fc.array(a, { maxLength: 4 });
const batch: fc.Arbitrary<BatchPayload> = rec({
  batchId: str,
  shardId: u32,
  sha256: fc.oneof(str, fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 })),
  hlc: big,
  bytes: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(new Uint8Array(0))),
});
const base = { from: nodeId, hlc: big, shardId: u32 };

const prepareAnswer: fc.Arbitrary<PrepareAnswer> = fc.oneof(
  fc.constant({ kind: "prepared" as const }),
  rec({ kind: fc.constant("duplicate" as const), state: fc.constantFrom("prepared" as const, "committed" as const) }),
  rec({
    kind: fc.constant("conflict" as const),
    points: list(rec({ series: str, timestampNs: fc.bigInt().map(String), storedValue: fc.double(), offeredValue: fc.double() })),
  }),
  rec({ kind: fc.constant("id-conflict" as const), sha256: str }),
  rec({ kind: fc.constant("fenced" as const), ballot }),
  rec({ kind: fc.constant("voted-higher" as const), ballot }),
  rec({ kind: fc.constant("unavailable" as const), reason: str }),
);
const statusAnswer: fc.Arbitrary<StatusAnswer> = fc.oneof(
  fc.constant({ kind: "committed" as const }),
  rec({ kind: fc.constant("prepared" as const), ballot }),
  rec({ kind: fc.constant("fenced" as const), ballot }),
  fc.constant({ kind: "unknown" as const }),
);
const summary = rec({ batchId: str, sha256: str, hlc: big });

const byType = {
  prepare: rec({ type: fc.constant("prepare" as const), ...base, batch, ballot, replicas: list(nodeId) }),
  "prepare-reply": rec({ type: fc.constant("prepare-reply" as const), ...base, batchId: str, ballot, answer: prepareAnswer }),
  commit: rec({ type: fc.constant("commit" as const), ...base, batchId: str, sha256: str, ballot }),
  "commit-reply": rec({ type: fc.constant("commit-reply" as const), ...base, batchId: str, ballot, committed: fc.boolean() }),
  abort: rec({ type: fc.constant("abort" as const), ...base, batchId: str, sha256: str, ballot }),
  status: rec({ type: fc.constant("status" as const), ...base, batchId: str, sha256: str, ballot }),
  "status-reply": rec({ type: fc.constant("status-reply" as const), ...base, batchId: str, ballot, answer: statusAnswer }),
  "catchup-list": rec({ type: fc.constant("catchup-list" as const), ...base, round, includePrepared: fc.boolean(), fromHlc: big }),
  "catchup-list-reply": rec({
    type: fc.constant("catchup-list-reply" as const),
    ...base,
    round,
    committed: list(summary),
    prepared: list(rec({ batchId: str, sha256: str, hlc: big, ballot })),
  }),
  fetch: rec({ type: fc.constant("fetch" as const), ...base, round, batchIds: list(str) }),
  "fetch-reply": rec({
    type: fc.constant("fetch-reply" as const),
    ...base,
    round,
    batches: list(rec({ batch, state: fc.constantFrom("committed" as const, "prepared" as const), ballot, replicas: list(nodeId) })),
    flushed: list(
      rec({
        batchId: str,
        sha256: str,
        hlc: big,
        shardId: fc.nat(),
        sampleCount: fc.nat(),
        origin: fc.constantFrom("original" as const, "inferred" as const),
        inference: fc.option(fc.string({ minLength: 1 }), { nil: null }),
      }),
    ),
  }),
} satisfies { [K in Message["type"]]: fc.Arbitrary<Extract<Message, { type: K }>> };

const anyMessage: fc.Arbitrary<Message> = fc.oneof(...Object.values(byType));

function assertTyped(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof HqError, `not a typed error: ${String(e)}`);
    assert.ok(e instanceof BadInputError || e instanceof TooLargeError, `unexpected error class ${(e as Error).name}`);
    return;
  }
}

test("the arbitraries cover every message type", () => {
  assert.deepEqual(Object.keys(byType).sort(), Object.keys(MESSAGE_TYPE_CODES).sort());
});

for (const [type, arb] of Object.entries(byType)) {
  test(`${type}: round-trips exactly, and the encoding is canonical`, () => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<Message>, (msg) => {
        const bytes = encodeMessage(msg);
        assert.equal(bytes[0], WIRE_VERSION);
        assert.equal(bytes[1], MESSAGE_TYPE_CODES[msg.type]);
        const back = decodeMessage(bytes, "test");
        assert.deepStrictEqual(back, msg);
        assert.deepStrictEqual(encodeMessage(back), bytes);
      }),
      { numRuns: 300 },
    );
  });
}

test("every single-byte flip decodes to a message that re-encodes to those bytes, or throws a typed error", () => {
  fc.assert(
    fc.property(anyMessage, fc.nat(), fc.integer({ min: 1, max: 255 }), (msg, posSeed, xor) => {
      const bytes = encodeMessage(msg);
      const damaged = bytes.slice();
      const pos = posSeed % damaged.length;
      damaged[pos] = damaged[pos]! ^ xor;
      let back: Message | null = null;
      assertTyped(() => (back = decodeMessage(damaged, "flip")));
      if (back !== null) assert.deepStrictEqual(encodeMessage(back), damaged); // canonical: accepted bytes are the only encoding
    }),
    { numRuns: 3000 },
  );
});

test("exhaustive flips and truncations of a few messages", () => {
  const samples = fc.sample(anyMessage, { numRuns: 40, seed: 42 });
  for (const msg of samples) {
    const bytes = encodeMessage(msg);
    for (let i = 0; i < bytes.length; i++) {
      for (const xor of [0x01, 0x80, 0xff]) {
        const d = bytes.slice();
        d[i] = d[i]! ^ xor;
        assertTyped(() => decodeMessage(d, "flip"));
      }
      // Every proper prefix is refused.
      assert.throws(() => decodeMessage(bytes.subarray(0, i), "truncated"), BadInputError);
    }
  }
});

test("trailing bytes are rejected", () => {
  fc.assert(
    fc.property(anyMessage, fc.uint8Array({ minLength: 1, maxLength: 8 }), (msg, extra) => {
      const bytes = encodeMessage(msg);
      const longer = new Uint8Array(bytes.length + extra.length);
      longer.set(bytes);
      longer.set(extra, bytes.length);
      assert.throws(() => decodeMessage(longer, "peer"), (e: unknown) => e instanceof BadInputError && /trailing/.test(e.message));
    }),
  );
});

test("random garbage only ever gives typed errors", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
      assertTyped(() => decodeMessage(junk, "junk"));
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 1, max: 11 }), (junk, type) => {
      const b = new Uint8Array([WIRE_VERSION, type, ...junk]);
      assertTyped(() => decodeMessage(b, "junk"));
    }),
    { numRuns: 3000 },
  );
});

const commit: Message = { type: "commit", from: "a", hlc: 5n, shardId: 3, batchId: "b", sha256: "s", ballot: { t: 7n, node: "a#1" } };

test("unknown version, unknown type and bad tags are refused with the field named", () => {
  const bytes = encodeMessage(commit);
  const v = bytes.slice();
  v[0] = 2;
  assert.throws(() => decodeMessage(v, "peer-x"), (e: unknown) => e instanceof BadInputError && /version 2/.test(e.message) && /peer-x/.test(e.message));
  const t = bytes.slice();
  t[1] = 99;
  assert.throws(() => decodeMessage(t, "p"), (e: unknown) => e instanceof BadInputError && /unknown message type 99/.test(e.message));
  const reply: Message = { type: "commit-reply", from: "a", hlc: 1n, shardId: 0, batchId: "b", ballot: { t: 1n, node: "a" }, committed: true };
  const r = encodeMessage(reply);
  r[r.length - 1] = 2;
  assert.throws(() => decodeMessage(r, "p"), (e: unknown) => e instanceof BadInputError && e.location.field === "committed");
  assert.throws(() => decodeMessage(new Uint8Array(0), "p"), BadInputError);
});

test("overlong varints and out-of-range bigints are refused (canonical encoding)", () => {
  // [version, type, from "" , hlc ...]: an overlong zero for hlc.
  const overlong = new Uint8Array([WIRE_VERSION, MESSAGE_TYPE_CODES.commit, 0, 0x80, 0x00]);
  assert.throws(() => decodeMessage(overlong, "p"), (e: unknown) => e instanceof BadInputError && /overlong/.test(e.message));
  assert.throws(() => encodeMessage({ ...commit, hlc: LIM }), BadInputError);
  assert.throws(() => encodeMessage({ ...commit, hlc: -LIM - 1n }), BadInputError);
  const huge = new Uint8Array([WIRE_VERSION, MESSAGE_TYPE_CODES.commit, 0, ...new Array<number>(200).fill(0xff)]);
  assert.throws(() => decodeMessage(huge, "p"), BadInputError);
});

test("encoder refuses what it cannot carry exactly", () => {
  assert.throws(() => encodeMessage({ ...commit, shardId: -1 }), BadInputError);
  assert.throws(() => encodeMessage({ ...commit, shardId: 1.5 }), BadInputError);
  assert.throws(() => encodeMessage({ ...commit, from: "x\ud800" }), BadInputError);
  assert.throws(() => encodeMessage({ type: "fetch", from: "a", hlc: 0n, shardId: 0, round: -1, batchIds: [] }), BadInputError);
});

test("list lengths past the limit or past the remaining bytes are refused before allocating", () => {
  const w = [WIRE_VERSION, MESSAGE_TYPE_CODES.fetch, 0, 0, 0, 0, 0, 0, /* round */ 0];
  const enc = (n: number): number[] => {
    const out: number[] = [];
    while (n >= 0x80) {
      out.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    out.push(n);
    return out;
  };
  assert.throws(() => decodeMessage(new Uint8Array([...w, ...enc(MAX_LIST_ITEMS + 1)]), "p"), (e: unknown) => e instanceof BadInputError && /exceeds the limit/.test(e.message));
  assert.throws(() => decodeMessage(new Uint8Array([...w, ...enc(1000)]), "p"), (e: unknown) => e instanceof BadInputError && /remain/.test(e.message));
  // And a valid empty list decodes.
  assert.deepStrictEqual(decodeMessage(new Uint8Array([...w, 0]), "p"), { type: "fetch", from: "", hlc: 0n, shardId: 0, round: 0, batchIds: [] });
});

test("batch bytes are carried as-is and copied out of the input buffer", () => {
  const bytes = new Uint8Array(100_000).map((_, i) => (i * 31) & 0xff);
  const msg: Message = {
    type: "prepare",
    from: "gw",
    hlc: 1n,
    shardId: 2,
    batch: { batchId: "id", shardId: 2, sha256: "00", hlc: 9n, bytes },
    ballot: { t: 1n, node: "gw#1" },
    replicas: ["a", "b", "c"],
  };
  const wire = encodeMessage(msg);
  const back = decodeMessage(Buffer.from(wire), "p");
  assert.ok(back.type === "prepare");
  assert.deepStrictEqual(back.batch.bytes, bytes);
  assert.equal(Object.getPrototypeOf(back.batch.bytes), Uint8Array.prototype);
  assert.notEqual(back.batch.bytes.buffer, wire.buffer);
});

test("the layout of a commit message, byte by byte (docs/format/replication.md)", () => {
  const b = encodeMessage({ type: "commit", from: "A", hlc: -1n, shardId: 0x01020304, batchId: "x", sha256: "y", ballot: { t: 64n, node: "" } });
  assert.deepEqual(
    [...b],
    [1, 3, 1, 0x41, /* hlc -1 zigzag */ 1, /* shard u32 LE */ 4, 3, 2, 1, 1, 0x78, 1, 0x79, /* t=64 → zigzag 128 */ 0x80, 0x01, 0],
  );
});
