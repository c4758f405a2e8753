// C2SP signed notes (the format of Go's golang.org/x/mod/sumdb/note) with
// Ed25519 keys. Pure: no I/O; randomness only in newSignerKey.
//
//   <text: UTF-8 lines, each ending "\n", none blank>
//   <blank line>
//   — <key name> <base64(4-byte key id || signature)>     (one or more)
//
// The key id binds the key name to the public key, so a signature made by a
// different key under the same name is "unknown", never "valid".

import { createPrivateKey, createPublicKey, randomBytes, sign as edSign, verify as edVerify, type KeyObject } from "node:crypto";
import { assert } from "../core/assert.js";
import { sha256, toHex } from "../core/hash.js";
import { ProvenanceError } from "./errors.js";

/** Largest signed note accepted, text and signatures together. */
export const NOTE_BYTES_MAX = 1024 * 1024;
/** Most signature lines accepted in one note (bounds the verification work). */
export const NOTE_SIGNATURES_MAX = 100;

/** Longest key name accepted, in UTF-8 bytes (Go sets none; bound it anyway). */
export const KEY_NAME_BYTES_MAX = 1024;

export const ALG_ED25519 = 0x01;
export const KEY_ID_BYTES = 4;
export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SEED_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;

const SIG_PREFIX = "\u2014 "; // EM DASH, space
const SIGNER_KEY_PREFIX = "PRIVATE+KEY+";

export interface Signer {
  readonly name: string;
  readonly keyId: Uint8Array; // 4 bytes
  readonly publicKey: Uint8Array; // 32-byte raw Ed25519 public key
  /** Ed25519 signature (64 bytes) over message. May be async (KMS, HSM). */
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /**
   * True when the private key is in this process and the public key was derived from it: a signature cannot come
   * from another key, so signNote skips checking each one (about 2/3 of the cost of a signed receipt). A remote
   * signer leaves it unset and every signature it makes is verified before it is handed out.
   */
  readonly local?: boolean;
}

export interface Verifier {
  readonly name: string;
  readonly keyId: Uint8Array; // 4 bytes
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

export interface NoteSignature {
  name: string;
  keyId: Uint8Array;
  keyIdHex: string;
  signature: Uint8Array; // without the key id
  line: number; // 1-based line in the whole note
}

export interface ParsedNote {
  text: string; // including its final "\n"
  signatures: NoteSignature[];
}

export interface VerifiedNote extends ParsedNote {
  /** Names of the trusted keys whose signatures verified, in note order. */
  verifiedBy: string[];
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------
// Encodings

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Standard base64 with padding, canonical only: Buffer's decoder skips junk
 * and ignores stray bits, which would let two strings mean one key or hash.
 */
export function decodeBase64Strict(s: string): Uint8Array | null {
  if (!BASE64.test(s)) return null;
  const b = Buffer.from(s, "base64");
  if (b.toString("base64") !== s) return null;
  return new Uint8Array(b);
}

export function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

/** Key names as Go's note package: non-empty, no whitespace, no "+"; also no control characters, at most KEY_NAME_BYTES_MAX bytes. */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !hasControlChar(name) && !name.includes("\u007f") && !/[\ud800-\udfff]/u.test(name) && encoder.encode(name).length <= KEY_NAME_BYTES_MAX;
}

/** Whether s holds an ASCII control character (below 0x20; "\n" too unless allowed). */
export function hasControlChar(s: string, allowNewline = false): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && !(allowNewline && c === 0x0a)) return true;
  }
  return false;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---------------------------------------------------------------------------
// Keys

/** First 4 bytes of SHA-256(name || "\n" || 0x01 || public key). */
export function keyId(name: string, publicKeyRaw: Uint8Array): Uint8Array {
  assert(publicKeyRaw.length === ED25519_PUBLIC_KEY_BYTES, `Ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes, got ${publicKeyRaw.length}`);
  return sha256(encoder.encode(`${name}\n`), new Uint8Array([ALG_ED25519]), publicKeyRaw).slice(0, KEY_ID_BYTES);
}

// DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410).
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  assert(seed.length === ED25519_SEED_BYTES, `Ed25519 seed is ${ED25519_SEED_BYTES} bytes, got ${seed.length}`);
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
}

function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  assert(raw.length === ED25519_PUBLIC_KEY_BYTES, `Ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" });
}

function rawPublicKey(key: KeyObject): Uint8Array {
  const der = new Uint8Array(createPublicKey(key).export({ format: "der", type: "spki" }));
  assert(der.length === SPKI_ED25519_PREFIX.length + ED25519_PUBLIC_KEY_BYTES, "Ed25519 SPKI length");
  return der.slice(SPKI_ED25519_PREFIX.length);
}

/** An in-memory Ed25519 signer from a 32-byte seed. */
export function ed25519Signer(name: string, seed: Uint8Array): Signer & { readonly seed: Uint8Array } {
  if (!isValidKeyName(name)) throw new ProvenanceError("malformed_key", `invalid key name ${JSON.stringify(name)} (1..${KEY_NAME_BYTES_MAX} bytes, no whitespace, no "+")`, { field: "key name" });
  const privateKey = privateKeyFromSeed(seed);
  const publicKey = rawPublicKey(privateKey);
  return {
    name,
    keyId: keyId(name, publicKey),
    publicKey,
    seed: seed.slice(),
    local: true,
    sign: (message: Uint8Array) => new Uint8Array(edSign(null, message, privateKey)),
  };
}

/** An Ed25519 verifier for a raw public key. */
export function ed25519Verifier(name: string, publicKeyRaw: Uint8Array): Verifier & { readonly publicKey: Uint8Array } {
  if (!isValidKeyName(name)) throw new ProvenanceError("malformed_key", `invalid key name ${JSON.stringify(name)} (1..${KEY_NAME_BYTES_MAX} bytes, no whitespace, no "+")`, { field: "key name" });
  const key = publicKeyFromRaw(publicKeyRaw);
  return {
    name,
    keyId: keyId(name, publicKeyRaw),
    publicKey: publicKeyRaw.slice(),
    verify: (message: Uint8Array, signature: Uint8Array) =>
      signature.length === ED25519_SIGNATURE_BYTES && edVerify(null, message, key, signature),
  };
}

/** `<name>+<hex8 key id>+<base64(0x01 || public key)>`, as Go's note.NewVerifier reads it. */
export function verifierKeyString(name: string, publicKeyRaw: Uint8Array): string {
  assert(isValidKeyName(name), `invalid key name ${JSON.stringify(name)} (1..${KEY_NAME_BYTES_MAX} bytes, no whitespace, no "+")`);
  return `${name}+${toHex(keyId(name, publicKeyRaw))}+${encodeBase64(Uint8Array.of(ALG_ED25519, ...publicKeyRaw))}`;
}

/** `PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || seed)>`, as Go's note.NewSigner reads it. */
export function signerKeyString(name: string, seed: Uint8Array): string {
  const s = ed25519Signer(name, seed);
  return `${SIGNER_KEY_PREFIX}${name}+${toHex(s.keyId)}+${encodeBase64(Uint8Array.of(ALG_ED25519, ...seed))}`;
}

/** A fresh signer key string (random seed). */
export function newSignerKey(name: string): string {
  return signerKeyString(name, new Uint8Array(randomBytes(ED25519_SEED_BYTES)));
}

function splitKey(s: string, parts: number, what: string): string[] {
  const fields = s.split("+");
  // base64 contains "+", so the last field takes the rest.
  if (fields.length < parts) throw new ProvenanceError("malformed_key", `${what}: expected ${parts} "+"-separated fields`, { field: what });
  return [...fields.slice(0, parts - 1), fields.slice(parts - 1).join("+")];
}

function decodeKeyBody(name: string, hex8: string, b64: string, what: string): { id: Uint8Array; key: Uint8Array } {
  if (!isValidKeyName(name)) throw new ProvenanceError("malformed_key", `${what}: invalid key name ${JSON.stringify(name)} (1..${KEY_NAME_BYTES_MAX} bytes, no whitespace, no "+")`, { field: what });
  if (!/^[0-9a-f]{8}$/.test(hex8)) throw new ProvenanceError("malformed_key", `${what}: key id must be 8 lowercase hex digits`, { field: what });
  const raw = decodeBase64Strict(b64);
  if (raw === null || raw.length === 0) throw new ProvenanceError("malformed_key", `${what}: key is not canonical base64`, { field: what });
  if (raw[0] !== ALG_ED25519) throw new ProvenanceError("malformed_key", `${what}: unsupported algorithm ${raw[0]} (only Ed25519 = 1)`, { field: what });
  const key = raw.slice(1);
  if (key.length !== 32) throw new ProvenanceError("malformed_key", `${what}: Ed25519 key must be 32 bytes, got ${key.length}`, { field: what });
  return { id: new Uint8Array(Buffer.from(hex8, "hex")), key };
}

/** Parses a verifier key string; checks that its key id matches its name and key. */
export function parseVerifierKey(str: string): Verifier & { readonly publicKey: Uint8Array } {
  const [name, hex8, b64] = splitKey(str.trim(), 3, "verifier key") as [string, string, string];
  const { id, key } = decodeKeyBody(name, hex8, b64, "verifier key");
  const v = ed25519Verifier(name, key);
  if (!bytesEqual(v.keyId, id)) throw new ProvenanceError("malformed_key", `verifier key: key id ${hex8} does not match name and key (${toHex(v.keyId)})`, { field: "verifier key" });
  return v;
}

/** Parses a signer key string; checks that its key id matches its name and derived public key. */
export function parseSignerKey(str: string): Signer & { readonly seed: Uint8Array } {
  const s = str.trim();
  if (!s.startsWith(SIGNER_KEY_PREFIX)) throw new ProvenanceError("malformed_key", `signer key: must start with ${SIGNER_KEY_PREFIX}`, { field: "signer key" });
  const [name, hex8, b64] = splitKey(s.slice(SIGNER_KEY_PREFIX.length), 3, "signer key") as [string, string, string];
  const { id, key: seed } = decodeKeyBody(name, hex8, b64, "signer key");
  const signer = ed25519Signer(name, seed);
  if (!bytesEqual(signer.keyId, id)) throw new ProvenanceError("malformed_key", `signer key: key id ${hex8} does not match name and key (${toHex(signer.keyId)})`, { field: "signer key" });
  return signer;
}

// ---------------------------------------------------------------------------
// Notes

/** Checks note text: non-empty, ends "\n", no blank lines, no control characters but "\n". */
function checkText(text: string): void {
  if (text.length === 0 || !text.endsWith("\n")) throw new ProvenanceError("malformed_note", "note text must be non-empty and end in a newline", { line: 1 + (text.match(/\n/g)?.length ?? 0) });
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((l, i) => {
    if (l.length === 0) throw new ProvenanceError("malformed_note", "blank line inside the note text", { line: i + 1 });
    if (hasControlChar(l)) throw new ProvenanceError("malformed_note", "control character in the note text", { line: i + 1 });
    if (/[\ud800-\udfff]/u.test(l)) throw new ProvenanceError("malformed_note", "note text is not valid UTF-8", { line: i + 1 });
  });
}

/** Signs text with every signer, in order; returns the whole signed note. */
export async function signNote(text: string, signers: readonly Signer[]): Promise<string> {
  checkText(text);
  if (signers.length === 0) throw new ProvenanceError("malformed_note", "a note needs at least one signer");
  if (signers.length > NOTE_SIGNATURES_MAX) throw new ProvenanceError("note_too_large", `${signers.length} signers exceed the limit of ${NOTE_SIGNATURES_MAX}`);
  const msg = encoder.encode(text);
  let out = `${text}\n`;
  for (const s of signers) {
    assert(isValidKeyName(s.name), `signer has an invalid key name ${JSON.stringify(s.name)}`);
    // A signer whose id is not derived from its key would make notes nobody can verify.
    assert(bytesEqual(s.keyId, keyId(s.name, s.publicKey)), `signer ${s.name}: key id does not match its public key`);
    const sig = await s.sign(msg);
    // A remote (KMS) signer holding another key than it claims would hand out notes nobody can verify: check before publishing.
    if (s.local !== true && !ed25519Verifier(s.name, s.publicKey).verify(msg, sig))
      throw new ProvenanceError("signature_invalid", `signer ${s.name}+${toHex(s.keyId)} produced a signature that does not verify with its own public key`);
    out += `${SIG_PREFIX}${s.name} ${encodeBase64(Uint8Array.of(...s.keyId, ...sig))}\n`;
  }
  const size = encoder.encode(out).length;
  if (size > NOTE_BYTES_MAX) throw new ProvenanceError("note_too_large", `signed note of ${size} bytes exceeds the limit of ${NOTE_BYTES_MAX}`);
  return out;
}

/** Splits a signed note into text and signature lines; checks syntax only, not signatures. */
export function parseNote(note: string | Uint8Array): ParsedNote {
  const size = typeof note === "string" ? encoder.encode(note).length : note.length;
  if (size > NOTE_BYTES_MAX) throw new ProvenanceError("note_too_large", `note of ${size} bytes exceeds the limit of ${NOTE_BYTES_MAX}`);
  let s: string;
  if (typeof note === "string") s = note;
  else {
    try {
      s = strictDecoder.decode(note);
    } catch (e) {
      throw new ProvenanceError("malformed_note", "note is not valid UTF-8", {}, { cause: e });
    }
  }
  const split = s.indexOf("\n\n");
  if (split < 0) throw new ProvenanceError("malformed_note", "no blank line before the signatures");
  const text = s.slice(0, split + 1);
  checkText(text);
  const textLines = text.split("\n").length - 1;
  const block = s.slice(split + 2);
  if (block.length === 0) throw new ProvenanceError("malformed_note", "no signature lines", { line: textLines + 2 });
  if (!block.endsWith("\n")) throw new ProvenanceError("malformed_note", "signature block must end in a newline", { line: textLines + 1 + block.split("\n").length });
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > NOTE_SIGNATURES_MAX)
    throw new ProvenanceError("note_too_large", `${lines.length} signature lines exceed the limit of ${NOTE_SIGNATURES_MAX}`, { line: textLines + 2 + NOTE_SIGNATURES_MAX });
  const signatures = lines.map((l, i): NoteSignature => {
    const line = textLines + 2 + i;
    if (!l.startsWith(SIG_PREFIX)) throw new ProvenanceError("malformed_note", 'signature line must start with "\u2014 " (EM DASH, space)', { line });
    const rest = l.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(" ");
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const b64 = sp < 0 ? "" : rest.slice(sp + 1);
    if (!isValidKeyName(name)) throw new ProvenanceError("malformed_note", `invalid key name ${JSON.stringify(name)} (1..${KEY_NAME_BYTES_MAX} bytes, no whitespace, no "+")`, { line });
    const raw = decodeBase64Strict(b64);
    if (raw === null || raw.length <= KEY_ID_BYTES) throw new ProvenanceError("malformed_note", "signature is not canonical base64 of a key id and a signature", { line });
    const id = raw.slice(0, KEY_ID_BYTES);
    return { name, keyId: id, keyIdHex: toHex(id), signature: raw.slice(KEY_ID_BYTES), line };
  });
  return { text, signatures };
}

/**
 * Verifies a signed note against trusted keys. Signatures by keys not in
 * `verifiers` (unknown name or key id) are ignored; a trusted key's signature
 * that does not verify rejects the note; so does a note no trusted key signed.
 */
export function verifyNote(note: string | Uint8Array | ParsedNote, verifiers: readonly Verifier[]): VerifiedNote {
  const parsed = typeof note === "string" || note instanceof Uint8Array ? parseNote(note) : note;
  const byKey = new Map<string, Verifier>();
  for (const v of verifiers) byKey.set(`${v.name}+${toHex(v.keyId)}`, v);
  const msg = encoder.encode(parsed.text);
  const verifiedBy: string[] = [];
  const seen = new Set<string>();
  for (const sig of parsed.signatures) {
    const k = `${sig.name}+${sig.keyIdHex}`;
    const v = byKey.get(k);
    if (v === undefined) continue;
    // Go's note package refuses a second signature by one known key too: it is never needed and hides which one counted.
    if (seen.has(k)) throw new ProvenanceError("malformed_note", `second signature by key ${k}`, { line: sig.line });
    seen.add(k);
    if (!v.verify(msg, sig.signature)) throw new ProvenanceError("signature_invalid", `signature by key ${k} does not verify`, { line: sig.line });
    verifiedBy.push(sig.name);
  }
  if (verifiedBy.length === 0) {
    const names = parsed.signatures.map((s) => `${s.name}+${s.keyIdHex}`).join(", ");
    throw new ProvenanceError("unknown_signer", `no signature by a trusted key (signed by: ${names === "" ? "nobody" : names})`);
  }
  return { ...parsed, verifiedBy };
}
