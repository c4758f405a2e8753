import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { InvariantError } from "../../src/core/assert.js";
import { BadInputError } from "../../src/core/errors.js";
import { fromHex, sha256, toHex } from "../../src/core/hash.js";
import {
  EMPTY_ROOT,
  MERKLE_LEAVES_MAX,
  MerkleLog,
  hashFromBase64,
  hashFromHex,
  leafHash,
  nodeHash,
  proofFromBase64,
  proofFromHex,
  proofToBase64,
  proofToHex,
  rootFromInclusion,
  verifyConsistency,
  verifyInclusion,
} from "../../src/provenance/merkle.js";

// Certificate Transparency test vectors (Go merkle package / Trillian testonly).
const CT_ENTRIES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"].map(fromHex);
const CT_LEAVES = CT_ENTRIES.map(leafHash);
const CT_EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const CT_ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];
// Leaf indices here are 0-based (the Go vectors number leaves from 1).
const CT_INCLUSION: { index: number; size: number; proof: string[] }[] = [
  {
    index: 0,
    size: 8,
    proof: [
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  },
  { index: 2, size: 3, proof: ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"] },
  {
    index: 1,
    size: 5,
    proof: [
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
  },
];
const CT_CONSISTENCY: { first: number; second: number; proof: string[] }[] = [
  { first: 1, second: 1, proof: [] },
  {
    first: 1,
    second: 8,
    proof: [
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
  },
  {
    first: 6,
    second: 8,
    proof: [
      "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  },
  {
    first: 2,
    second: 5,
    proof: [
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
  },
];

// A naive reference written straight from RFC 6962 §2.1 / RFC 9162 §2.1.3.1,
// §2.1.4.1, over a plain array of leaf hashes. It hashes with sha256 directly
// so a bug in nodeHash cannot hide in both.
const refNode = (l: Uint8Array, r: Uint8Array): Uint8Array => sha256(Uint8Array.of(1), l, r);
const refSplit = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};
function makeReference(leaves: readonly Uint8Array[]) {
  const memo = new Map<string, Uint8Array>();
  const mth = (lo: number, hi: number): Uint8Array => {
    if (hi === lo) return sha256();
    if (hi - lo === 1) return leaves[lo]!;
    const key = `${lo}:${hi}`;
    let h = memo.get(key);
    if (h === undefined) {
      const k = refSplit(hi - lo);
      h = refNode(mth(lo, lo + k), mth(lo + k, hi));
      memo.set(key, h);
    }
    return h;
  };
  const path = (m: number, lo: number, hi: number): Uint8Array[] => {
    if (hi - lo <= 1) return [];
    const k = refSplit(hi - lo);
    return m < k ? [...path(m, lo, lo + k), mth(lo + k, hi)] : [...path(m - k, lo + k, hi), mth(lo, lo + k)];
  };
  const subproof = (m: number, lo: number, hi: number, b: boolean): Uint8Array[] => {
    if (m === hi - lo) return b ? [] : [mth(lo, hi)];
    const k = refSplit(hi - lo);
    return m <= k ? [...subproof(m, lo, lo + k, b), mth(lo + k, hi)] : [...subproof(m - k, lo + k, hi, false), mth(lo, lo + k)];
  };
  return {
    root: (n: number) => mth(0, n),
    inclusion: (m: number, n: number) => path(m, 0, n),
    consistency: (m: number, n: number) => subproof(m, 0, n, true),
  };
}

const hexList = (hashes: readonly Uint8Array[]): string[] => hashes.map(toHex);
const entryFor = (i: number): Uint8Array => Uint8Array.of(i & 0xff, (i >>> 8) & 0xff, 0x5a);
const leavesFor = (n: number): Uint8Array[] => Array.from({ length: n }, (_, i) => leafHash(entryFor(i)));
const flipBit = (h: Uint8Array, bit: number): Uint8Array => {
  const copy = h.slice();
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return copy;
};

describe("provenance/merkle hashing", () => {
  it("matches RFC 6962: leaf and node prefixes, empty root", () => {
    assert.equal(toHex(EMPTY_ROOT), CT_EMPTY_ROOT);
    assert.deepEqual(leafHash(fromHex("abcd")), sha256(Uint8Array.of(0, 0xab, 0xcd)));
    const [a, b] = [CT_LEAVES[0]!, CT_LEAVES[1]!];
    assert.deepEqual(nodeHash(a, b), sha256(Uint8Array.of(1), a, b));
    assert.notDeepEqual(nodeHash(a, b), nodeHash(b, a));
    assert.throws(() => nodeHash(a.subarray(1), b), InvariantError);
  });

  it("gives the CT reference root for every size 0..8", () => {
    const log = new MerkleLog();
    assert.equal(toHex(log.root()), CT_EMPTY_ROOT);
    CT_LEAVES.forEach((leaf, i) => {
      assert.equal(log.append(leaf), i);
      assert.equal(log.size, i + 1);
      assert.equal(toHex(log.root()), CT_ROOTS[i], `root of ${i + 1} leaves`);
    });
    for (let n = 0; n <= 8; n++) assert.equal(toHex(log.root(n)), n === 0 ? CT_EMPTY_ROOT : CT_ROOTS[n - 1], `historical root of ${n}`);
  });

  it("gives the CT reference inclusion and consistency proofs", () => {
    const log = MerkleLog.fromLeafHashes(CT_LEAVES);
    for (const v of CT_INCLUSION) {
      const proof = log.inclusionProof(v.index, v.size);
      assert.deepEqual(hexList(proof), v.proof, `inclusion ${v.index} of ${v.size}`);
      assert.ok(verifyInclusion(CT_LEAVES[v.index]!, v.index, v.size, proof.map((h) => h), fromHex(CT_ROOTS[v.size - 1]!)));
    }
    for (const v of CT_CONSISTENCY) {
      const proof = log.consistencyProof(v.first, v.second);
      assert.deepEqual(hexList(proof), v.proof, `consistency ${v.first} to ${v.second}`);
      assert.ok(verifyConsistency(v.first, v.second, fromHex(CT_ROOTS[v.first - 1]!), fromHex(CT_ROOTS[v.second - 1]!), proof));
    }
  });
});

describe("provenance/merkle against a naive RFC reference", () => {
  const MAX = 70;
  const leaves = leavesFor(MAX);
  const ref = makeReference(leaves);
  const log = MerkleLog.fromLeafHashes(leaves);

  it("agrees on every root, inclusion proof and consistency proof up to 70 leaves, and they verify", () => {
    let inclusionCount = 0;
    let consistencyCount = 0;
    for (let n = 1; n <= MAX; n++) {
      const root = log.root(n);
      assert.deepEqual(root, ref.root(n), `root of ${n}`);
      for (let i = 0; i < n; i++) {
        const proof = log.inclusionProof(i, n);
        assert.deepEqual(hexList(proof), hexList(ref.inclusion(i, n)), `inclusion ${i} of ${n}`);
        assert.ok(verifyInclusion(leaves[i]!, i, n, proof, root), `verify inclusion ${i} of ${n}`);
        assert.deepEqual(rootFromInclusion(leaves[i]!, i, n, proof), root);
        inclusionCount++;
      }
      for (let m = 0; m <= n; m++) {
        const proof = log.consistencyProof(m, n);
        const expected = m === 0 || m === n ? [] : ref.consistency(m, n);
        assert.deepEqual(hexList(proof), hexList(expected), `consistency ${m} to ${n}`);
        assert.ok(verifyConsistency(m, n, log.root(m), root, proof), `verify consistency ${m} to ${n}`);
        consistencyCount++;
      }
    }
    assert.equal(inclusionCount, (MAX * (MAX + 1)) / 2);
    assert.equal(consistencyCount, (MAX * (MAX + 3)) / 2);
  });

  it("keeps historical roots equal to a fresh tree of that many leaves", () => {
    const big = leavesFor(300);
    const full = MerkleLog.fromLeafHashes(big);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), (k) => {
        const fresh = MerkleLog.fromLeafHashes(big.slice(0, k));
        assert.equal(fresh.size, k);
        assert.deepEqual(full.root(k), fresh.root());
        if (k > 0) assert.deepEqual(full.leafHashAt(k - 1), big[k - 1]);
      }),
      { numRuns: 60 },
    );
  });

  it("crosses chunk boundaries of the hash store intact", () => {
    const n = (1 << 15) + 3;
    const many = Array.from({ length: n }, (_, i) => sha256(Uint8Array.of(i & 0xff, (i >>> 8) & 0xff, i >>> 16)));
    const big = MerkleLog.fromLeafHashes(many);
    const bigRef = makeReference(many);
    for (const i of [0, (1 << 15) - 1, 1 << 15, n - 1]) {
      assert.deepEqual(big.leafHashAt(i), many[i]);
      assert.deepEqual(hexList(big.inclusionProof(i, n)), hexList(bigRef.inclusion(i, n)));
    }
    assert.deepEqual(big.root(), bigRef.root(n));
    assert.deepEqual(big.root(1 << 15), bigRef.root(1 << 15));
  });
});

describe("provenance/merkle verification refuses forgeries", () => {
  const N = 600;
  const leaves = leavesFor(N);
  const log = MerkleLog.fromLeafHashes(leaves);
  const sizeAndIndex = fc.integer({ min: 1, max: N }).chain((size) => fc.tuple(fc.constant(size), fc.integer({ min: 0, max: size - 1 })));
  const sizePair = fc.integer({ min: 2, max: N }).chain((second) => fc.tuple(fc.integer({ min: 1, max: second - 1 }), fc.constant(second)));
  const hash32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

  it("accepts generated inclusion proofs and rejects every single-bit flip", () => {
    fc.assert(
      fc.property(sizeAndIndex, fc.nat(), fc.nat(255), ([size, index], which, bit) => {
        const proof = log.inclusionProof(index, size);
        const root = log.root(size);
        assert.ok(verifyInclusion(leaves[index]!, index, size, proof, root));
        if (proof.length > 0) {
          const j = which % proof.length;
          const forged = proof.map((h, k) => (k === j ? flipBit(h, bit) : h));
          assert.equal(verifyInclusion(leaves[index]!, index, size, forged, root), false);
        }
        assert.equal(verifyInclusion(flipBit(leaves[index]!, bit), index, size, proof, root), false, "flipped leaf");
        assert.equal(verifyInclusion(leaves[index]!, index, size, proof, flipBit(root, bit)), false, "flipped root");
      }),
    );
  });

  it("rejects inclusion proofs with a hash removed or added", () => {
    fc.assert(
      fc.property(sizeAndIndex, fc.nat(), hash32, fc.boolean(), ([size, index], where, extra, duplicate) => {
        const proof = log.inclusionProof(index, size);
        const root = log.root(size);
        if (proof.length > 0) {
          const removed = proof.filter((_, k) => k !== where % proof.length);
          assert.equal(verifyInclusion(leaves[index]!, index, size, removed, root), false);
        }
        const at = where % (proof.length + 1);
        const added = [...proof.slice(0, at), duplicate && proof.length > 0 ? proof[at % proof.length]! : extra, ...proof.slice(at)];
        assert.equal(verifyInclusion(leaves[index]!, index, size, added, root), false);
      }),
    );
  });

  it("rejects an inclusion proof presented with a wrong index, size or root", () => {
    fc.assert(
      fc.property(sizeAndIndex, fc.integer({ min: 1, max: N }), ([size, index], otherSize) => {
        const proof = log.inclusionProof(index, size);
        const root = log.root(size);
        const leaf = leaves[index]!;
        for (const wrong of [index - 1, index + 1, index ^ 2, index ^ 1, size, -1]) {
          if (wrong !== index) assert.equal(verifyInclusion(leaf, wrong, size, proof, root), false, `index ${wrong}`);
        }
        for (const wrong of [size * 2, Math.floor(size / 2), 0, index]) {
          if (wrong !== size) assert.equal(verifyInclusion(leaf, index, wrong, proof, root), false, `size ${wrong}`);
        }
        if (otherSize !== size) assert.equal(verifyInclusion(leaf, index, size, proof, log.root(otherSize)), false, "root of another size");
        if (size > 1) {
          const other = index === 0 ? 1 : index - 1;
          assert.equal(verifyInclusion(leaves[other]!, index, size, proof, root), false, "another leaf");
        }
      }),
    );
  });

  it("binds the size only through the proof's shape, so the size must come from a signed checkpoint", () => {
    // PATH(0, D[3]) and PATH(0, D[4]) have the same shape, so the RFC 9162
    // algorithm cannot tell the sizes apart; no real tree of 4 leaves has
    // this root (leaf 2's hash would have to be an interior node).
    const proof = log.inclusionProof(0, 3);
    assert.ok(verifyInclusion(leaves[0]!, 0, 4, proof, log.root(3)));
  });

  it("accepts generated consistency proofs and rejects every single-bit flip and swapped roots", () => {
    fc.assert(
      fc.property(sizePair, fc.nat(), fc.nat(255), ([first, second], which, bit) => {
        const proof = log.consistencyProof(first, second);
        const [r1, r2] = [log.root(first), log.root(second)];
        assert.ok(verifyConsistency(first, second, r1, r2, proof));
        const j = which % proof.length;
        const forged = proof.map((h, k) => (k === j ? flipBit(h, bit) : h));
        assert.equal(verifyConsistency(first, second, r1, r2, forged), false, `flip in hash ${j}`);
        assert.equal(verifyConsistency(first, second, flipBit(r1, bit), r2, proof), false, "flipped first root");
        assert.equal(verifyConsistency(first, second, r1, flipBit(r2, bit), proof), false, "flipped second root");
        assert.equal(verifyConsistency(first, second, r2, r1, proof), false, "swapped roots");
        assert.equal(verifyConsistency(first, second, r1, r2, []), false, "empty proof");
      }),
    );
  });

  it("rejects consistency proofs with a hash removed or added", () => {
    fc.assert(
      fc.property(sizePair, fc.nat(), hash32, fc.boolean(), ([first, second], where, extra, duplicate) => {
        const proof = log.consistencyProof(first, second);
        const [r1, r2] = [log.root(first), log.root(second)];
        const removed = proof.filter((_, k) => k !== where % proof.length);
        assert.equal(verifyConsistency(first, second, r1, r2, removed), false, "removed");
        const at = where % (proof.length + 1);
        const added = [...proof.slice(0, at), duplicate ? proof[at % proof.length]! : extra, ...proof.slice(at)];
        assert.equal(verifyConsistency(first, second, r1, r2, added), false, "added");
        // A verifier that prepends first_hash itself must not also accept it from the prover.
        assert.equal(verifyConsistency(first, second, r1, r2, [r1, ...proof]), false, "first root prepended");
      }),
    );
  });

  it("rejects a consistency proof presented with wrong sizes", () => {
    fc.assert(
      fc.property(sizePair, ([first, second]) => {
        const proof = log.consistencyProof(first, second);
        const [r1, r2] = [log.root(first), log.root(second)];
        for (const wrong of [first - 1, first + 1, first ^ 2, 0, second]) {
          if (wrong !== first) assert.equal(verifyConsistency(wrong, second, r1, r2, proof), false, `first ${wrong}`);
        }
        for (const wrong of [second * 2, Math.floor(second / 2), first]) {
          if (wrong !== second) assert.equal(verifyConsistency(first, wrong, r1, r2, proof), false, `second ${wrong}`);
        }
      }),
    );
  });

  it("handles equal and empty sizes as documented", () => {
    const r5 = log.root(5);
    assert.ok(verifyConsistency(5, 5, r5, r5, []));
    assert.equal(verifyConsistency(5, 5, r5, r5, [r5]), false, "first == second with a non-empty proof");
    assert.equal(verifyConsistency(5, 5, r5, log.root(6), []), false, "first == second with different roots");
    assert.ok(verifyConsistency(0, 5, EMPTY_ROOT, r5, []));
    assert.equal(verifyConsistency(0, 5, EMPTY_ROOT, r5, [r5]), false, "from empty with a non-empty proof");
    assert.equal(verifyConsistency(0, 5, r5, r5, []), false, "from empty with a forged empty root");
    assert.ok(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, []));
    assert.equal(verifyConsistency(0, 0, r5, r5, []), false, "size 0 with a non-empty root");
    assert.equal(verifyConsistency(6, 5, r5, r5, []), false, "first > second");
    assert.equal(verifyInclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT), false, "inclusion in an empty tree");
    assert.equal(verifyInclusion(leaves[0]!, 0, 1, [], leaves[0]!), true, "a single leaf is its own root");
    assert.equal(verifyInclusion(leaves[0]!, 0, 1, [leaves[0]!], leaves[0]!), false, "size 1 with a non-empty proof");
  });

  it("returns false on garbage and never throws", () => {
    const root = log.root(10);
    const proof = log.inclusionProof(3, 10);
    const cases: [unknown, unknown, unknown, unknown, unknown][] = [
      [leaves[3]!.subarray(1), 3, 10, proof, root],
      [leaves[3], 3, 10, proof, root.subarray(0, 31)],
      [leaves[3], 3, 10, [...proof.slice(0, 3), new Uint8Array(33)], root],
      [leaves[3], 3, 10, [proof[0], null, proof[2], proof[3]], root],
      [leaves[3], 3, 10, [proof[0], , proof[2], proof[3]], root], // eslint-disable-line no-sparse-arrays
      [leaves[3], 3, 10, "proof", root],
      [leaves[3], 3, 10, new Array(1_000_000), root],
      [leaves[3], 3.5, 10, proof, root],
      [leaves[3], NaN, 10, proof, root],
      [leaves[3], 3, Infinity, proof, root],
      [leaves[3], 3, 2 ** 53, proof, root],
      [leaves[3], 3, MERKLE_LEAVES_MAX + 1, proof, root],
      [leaves[3], "3", 10, proof, root],
      [null, undefined, {}, [], 7],
    ];
    for (const [i, c] of cases.entries()) {
      const [leaf, index, size, p, r] = c as [Uint8Array, number, number, Uint8Array[], Uint8Array];
      assert.equal(verifyInclusion(leaf, index, size, p, r), false, `inclusion case ${i}`);
      if (r === root) assert.equal(rootFromInclusion(leaf, index, size, p), null, `root case ${i}`);
      assert.equal(verifyConsistency(index, size, leaf, r, p), false, `consistency case ${i}`);
    }
    assert.equal(verifyInclusion(leaves[3]!, 3, 10, proof, root), true, "the untouched case verifies");

    fc.assert(
      fc.property(fc.anything(), fc.anything(), fc.anything(), fc.anything(), fc.anything(), (a, b, c, d, e) => {
        const args = [a, b, c, d, e] as [never, never, never, never, never];
        assert.equal(verifyInclusion(...args), false);
        assert.equal(verifyConsistency(...args), false);
        assert.equal(rootFromInclusion(a as never, b as never, c as never, d as never), null);
      }),
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: -3, max: 2 ** 33 }), fc.double()),
        fc.oneof(fc.integer({ min: -3, max: 2 ** 33 }), fc.double()),
        fc.array(hash32, { maxLength: 40 }),
        hash32,
        hash32,
        (x, y, p, h1, h2) => {
          assert.doesNotThrow(() => verifyInclusion(h1, x, y, p, h2));
          assert.doesNotThrow(() => verifyConsistency(x, y, h1, h2, p));
        },
      ),
    );
  });
});

describe("provenance/merkle log arguments", () => {
  const log = MerkleLog.fromLeafHashes(leavesFor(10));
  const badInput = (field: string) => (e: unknown) => e instanceof BadInputError && e.location.field === field && e.message.includes(field);

  it("throws BadInputError naming the argument", () => {
    assert.throws(() => log.inclusionProof(10, 10), badInput("index"));
    assert.throws(() => log.inclusionProof(0, 0), badInput("index"));
    assert.throws(() => log.inclusionProof(-1, 5), badInput("index"));
    assert.throws(() => log.inclusionProof(1.5, 5), badInput("index"));
    assert.throws(() => log.inclusionProof(0, 11), badInput("size"));
    assert.throws(() => log.inclusionProof(0, NaN), badInput("size"));
    assert.throws(() => log.consistencyProof(4, 3), badInput("first"));
    assert.throws(() => log.consistencyProof(-1, 3), badInput("first"));
    assert.throws(() => log.consistencyProof(3, 11), badInput("second"));
    assert.throws(() => log.root(11), badInput("size"));
    assert.throws(() => log.root(-1), badInput("size"));
    assert.throws(() => log.leafHashAt(10), badInput("index"));
    assert.throws(() => log.leafHashAt(-1), badInput("index"));
    assert.throws(() => log.append(new Uint8Array(31)), InvariantError);
    assert.equal(log.size, 10);
  });

  it("hands out copies, so callers cannot corrupt the cached tree", () => {
    const before = log.root();
    log.root().fill(0);
    log.leafHashAt(0).fill(0);
    for (const h of log.inclusionProof(0, 10)) h.fill(0);
    for (const h of log.consistencyProof(3, 10)) h.fill(0);
    assert.deepEqual(log.root(), before);
    assert.deepEqual(log.root(), makeReference(leavesFor(10)).root(10));
    const appended = leafHash(Uint8Array.of(1));
    const mine = MerkleLog.fromLeafHashes([appended]);
    appended.fill(0);
    assert.deepEqual(mine.leafHashAt(0), leafHash(Uint8Array.of(1)));
  });
});

describe("provenance/merkle wire format", () => {
  const proof = MerkleLog.fromLeafHashes(leavesFor(9)).inclusionProof(4, 9);

  it("round-trips proofs through base64 and hex", () => {
    assert.deepEqual(proofFromBase64(proofToBase64(proof), "proof"), proof);
    assert.deepEqual(proofFromHex(proofToHex(proof), "proof"), proof);
    assert.deepEqual(proofToBase64([EMPTY_ROOT]), ["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]);
    assert.deepEqual(hashFromHex(CT_EMPTY_ROOT.toUpperCase(), "root"), EMPTY_ROOT);
    assert.deepEqual(hashFromBase64("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "root"), EMPTY_ROOT);
  });

  it("rejects malformed entries with the field and index", () => {
    const named = (field: string) => (e: unknown) => e instanceof BadInputError && e.location.field === field;
    const good = proofToBase64(proof);
    const short = Buffer.alloc(31).toString("base64");
    assert.throws(() => proofFromBase64([good[0], short], "proof"), named("proof[1]"));
    assert.throws(() => proofFromBase64([good[0], good[1] + "AAAA"], "proof"), named("proof[1]"));
    // Same bytes, but the unused low bits of the last character are set: not canonical.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const last = alphabet.indexOf(good[0]!.charAt(42));
    const loose = good[0]!.slice(0, 42) + alphabet.charAt(last | 1) + "=";
    assert.notEqual(loose, good[0]);
    assert.deepEqual(new Uint8Array(Buffer.from(loose, "base64")), proof[0], "decodes to the same bytes");
    assert.throws(() => proofFromBase64([loose], "inclusion"), named("inclusion[0]"));
    assert.throws(() => proofFromBase64([good[0]!.replace(/.$/, "")], "proof"), named("proof[0]"));
    assert.throws(() => proofFromBase64([42], "proof"), named("proof[0]"));
    assert.throws(() => proofFromBase64("abc", "proof"), named("proof"));
    assert.throws(() => proofFromBase64(new Array(65).fill(good[0]), "proof"), /proof hash count exceeds the limit of 64/);
    assert.throws(() => proofFromHex([CT_EMPTY_ROOT, CT_EMPTY_ROOT.slice(2)], "proof"), named("proof[1]"));
    assert.throws(() => proofFromHex([CT_EMPTY_ROOT.replace(/^e/, "g")], "proof"), named("proof[0]"));
    assert.throws(() => proofToBase64([new Uint8Array(31)]), InvariantError);
  });
});
