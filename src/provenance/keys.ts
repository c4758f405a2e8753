// The node's signing key on disk: `<dir>/node.key` holds one signer key
// string (note.ts) and a newline, mode 0600. Created on first start, loaded
// afterwards; rotation keeps the old key under `<dir>/retired/<key id>.key`
// so its verifier key stays derivable and old signatures still verify.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { link, lstat, mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../core/assert.js";
import { toHex } from "../core/hash.js";
import { ProvenanceError } from "./errors.js";
import { newSignerKey, parseSignerKey, parseVerifierKey, verifierKeyString, type Signer, type Verifier } from "./note.js";

export const NODE_KEY_FILE = "node.key";
export const RETIRED_DIR = "retired";
/** Largest key file read: a key string is under 200 bytes; anything bigger is not a key file. */
export const KEY_FILE_BYTES_MAX = 4096;
const KEY_FILE_MODE = 0o600;
const KEY_DIR_MODE = 0o700;

/** A signer whose private key was read from a file. */
export class FileSigner implements Signer {
  readonly name: string;
  readonly keyId: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly file: string;
  /** The key was read from the file into this process (see Signer.local). */
  readonly local = true;
  private readonly inner: Signer;

  constructor(keyString: string, file: string) {
    try {
      this.inner = parseSignerKey(keyString);
    } catch (e) {
      throw new ProvenanceError("key_file_invalid", `not a signer key: ${(e as Error).message}`, { file }, { cause: e });
    }
    this.name = this.inner.name;
    this.keyId = this.inner.keyId;
    this.publicKey = this.inner.publicKey;
    this.file = file;
  }

  get keyIdHex(): string {
    return toHex(this.keyId);
  }

  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array> {
    return this.inner.sign(message);
  }

  /** The verifier key string to publish. */
  verifierKey(): string {
    return verifierKeyString(this.name, this.publicKey);
  }

  verifier(): Verifier {
    return parseVerifierKey(this.verifierKey());
  }
}

/** A verifier from its published key string (`<name>+<hex8>+<base64>`). */
export function verifierFromKeyString(str: string): Verifier {
  return parseVerifierKey(str);
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, constants.O_RDONLY);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/** Reads a key file, refusing anything but a private regular file holding one key for `name`. */
async function readKeyFile(file: string, name: string | undefined): Promise<FileSigner> {
  const st = await lstat(file);
  if (!st.isFile()) throw new ProvenanceError("key_file_invalid", "not a regular file", { file });
  if ((st.mode & 0o077) !== 0)
    throw new ProvenanceError("key_file_permissions", `mode ${(st.mode & 0o777).toString(8).padStart(4, "0")} lets group or others access the private key; chmod 600 it`, { file });
  if (st.size > KEY_FILE_BYTES_MAX) throw new ProvenanceError("key_file_invalid", `${st.size} bytes exceeds the limit of ${KEY_FILE_BYTES_MAX}`, { file });
  const text = await readFile(file, "utf8");
  // Exactly one line: stray content would be a sign of a mixed-up or edited file.
  if (!/^[^\n]+\n?$/.test(text)) throw new ProvenanceError("key_file_invalid", "must hold exactly one key line", { file });
  const signer = new FileSigner(text.trimEnd(), file);
  if (name !== undefined && signer.name !== name)
    throw new ProvenanceError("key_file_invalid", `holds the key of ${JSON.stringify(signer.name)}, not ${JSON.stringify(name)}`, { file });
  return signer;
}

/** Writes a new key file atomically: temp file, fsync, rename, fsync dir. */
async function writeKeyFile(dir: string, file: string, keyString: string): Promise<void> {
  const tmp = join(dir, `.${NODE_KEY_FILE}.tmp-${process.pid}-${toHex(new Uint8Array(randomBytes(4)))}`);
  const fd = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, KEY_FILE_MODE);
  try {
    await fd.writeFile(`${keyString}\n`, "utf8");
    // The umask can only clear bits, but a pre-set ACL default could add some: force the mode.
    await fd.chmod(KEY_FILE_MODE);
    await fd.sync();
  } catch (e) {
    await fd.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fd.close();
  await rename(tmp, file);
  await fsyncDir(dir);
}

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

/** The node's signing key: loaded from `<dir>/node.key`, or created there on first start. */
export async function loadOrCreateNodeKey(dir: string, name: string): Promise<FileSigner> {
  const file = join(dir, NODE_KEY_FILE);
  try {
    return await readKeyFile(file, name);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  await mkdir(dir, { recursive: true, mode: KEY_DIR_MODE });
  await writeKeyFile(dir, file, newSignerKey(name));
  return readKeyFile(file, name);
}

export interface Rotation {
  signer: FileSigner; // the new key, now in node.key
  retiredFile: string;
  retiredVerifierKey: string; // keep publishing it: old signatures verify with it
}

/**
 * Replaces the node key with a new one. The old key is first hard-linked to
 * `retired/<key id>.key`, then node.key is atomically replaced, so at every
 * instant node.key holds a whole key and the old one is never lost.
 */
export async function rotateNodeKey(dir: string, name: string): Promise<Rotation> {
  const file = join(dir, NODE_KEY_FILE);
  const old = await readKeyFile(file, name);
  const retiredDir = join(dir, RETIRED_DIR);
  await mkdir(retiredDir, { recursive: true, mode: KEY_DIR_MODE });
  const retiredFile = join(retiredDir, `${old.keyIdHex}.key`);
  try {
    await link(file, retiredFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    // A rotation that crashed after this step already retired this key; anything else there is a clash.
    const existing = await readKeyFile(retiredFile, name);
    if (existing.verifierKey() !== old.verifierKey()) throw new ProvenanceError("key_file_invalid", `already holds another key with id ${old.keyIdHex}`, { file: retiredFile });
  }
  await fsyncDir(retiredDir);
  let fresh = newSignerKey(name);
  // A 32-bit id clash between two keys of one node would make the retired file ambiguous.
  while (parseSignerKey(fresh).keyId.every((b, i) => b === old.keyId[i])) fresh = newSignerKey(name);
  await writeKeyFile(dir, file, fresh);
  const signer = await readKeyFile(file, name);
  assert(signer.keyIdHex !== old.keyIdHex, "rotated key has the old key id");
  return { signer, retiredFile, retiredVerifierKey: old.verifierKey() };
}

/** Verifier key strings to publish for a node: the current key first, then every retired key. */
export async function nodeVerifierKeys(dir: string, name: string): Promise<string[]> {
  const current = await readKeyFile(join(dir, NODE_KEY_FILE), name);
  let retired: string[] = [];
  try {
    retired = (await readdir(join(dir, RETIRED_DIR))).filter((f) => f.endsWith(".key")).sort();
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  const keys = [current.verifierKey()];
  for (const f of retired) keys.push((await readKeyFile(join(dir, RETIRED_DIR, f), name)).verifierKey());
  return keys;
}
