// Offline verification bundles (docs/verify.md, "Bundles"): one gzip'ed JSON
// file holding a signed checkpoint, the keys, export lines and the proof
// answers for their batches, so `hqts verify --bundle` needs no network.
//
// The file is plain JSON, laid out one element per line so that it is written
// and read as a stream: a bundle near its 1 GiB limit is bigger than any one
// V8 string (about 512 MiB) and could not go through JSON.parse whole.
//
//   {"format":"hqts-bundle/1","origin":…,"keys":[…],"checkpoint":{…},
//   "series":[
//   <export line>
//   ,<export line>
//   ],
//   "batches":[
//   <proof answer>
//   ,<proof answer>
//   ]}

import { once } from "node:events";
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { rename, unlink } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip, type Gzip } from "node:zlib";
import { BadInputError, TooLargeError } from "../core/errors.js";
import {
  LineSplitter,
  PointVerifier,
  checkpointFailureReport,
  consistencyOf,
  verifyCheckpoint,
  type Consistency,
  type TrustedCheckpoint,
  type VerifyReport,
} from "./verify.js";

export const BUNDLE_FORMAT = "hqts-bundle/1";
/** Uncompressed bytes of a bundle, written or read: bounds what a verifier must hold. */
export const BUNDLE_BYTES_MAX = 1024 ** 3;
/** Longest line read: below V8's string limit with room for the JSON parse. */
export const BUNDLE_LINE_BYTES_MAX = 256 * 1024 * 1024;

export interface BundleCheckpoint {
  origin: string;
  size: number;
  root: string; // hex
  timeMs: number;
  /** The whole signed note: the only part of the bundle that is signed. */
  note: string;
}

export interface BundleHeader {
  format: typeof BUNDLE_FORMAT;
  origin: string;
  /** The node's verifier keys when the bundle was made: evidence only, not trust (see verifyBundle). */
  keys: string[];
  checkpoint: BundleCheckpoint;
}

const SERIES_OPEN = '"series":[';
const SERIES_CLOSE = "],";
const BATCHES_OPEN = '"batches":[';
const BATCHES_CLOSE = "]}";

/** Writes a bundle to a temporary file beside `file`, renamed into place by close(): a failed run leaves no half bundle. */
export class BundleWriter {
  private readonly gzip: Gzip;
  private readonly done: Promise<void>;
  private error: unknown = null;
  private bytes = 0;
  private section: "series" | "batches" | "closed" = "series";
  private itemsInSection = 0;

  private constructor(
    readonly file: string,
    private readonly tmp: string,
    private readonly maxBytes: number,
  ) {
    this.gzip = createGzip();
    const out: WriteStream = createWriteStream(tmp, { flags: "wx" });
    this.done = pipeline(this.gzip, out).catch((e: unknown) => {
      this.error = e;
      throw e;
    });
    // Rejections surface in write() and close(); this keeps an early one from counting as unhandled.
    this.done.catch(() => undefined);
  }

  static async open(file: string, header: Omit<BundleHeader, "format">, maxBytes = BUNDLE_BYTES_MAX): Promise<BundleWriter> {
    const w = new BundleWriter(file, `${file}.tmp-${process.pid}`, maxBytes);
    const head = JSON.stringify({ format: BUNDLE_FORMAT, origin: header.origin, keys: header.keys, checkpoint: header.checkpoint });
    await w.write(`${head.slice(0, -1)},\n${SERIES_OPEN}\n`);
    return w;
  }

  get uncompressedBytes(): number {
    return this.bytes;
  }

  private async write(text: string): Promise<void> {
    if (this.error !== null) throw this.error;
    this.bytes += Buffer.byteLength(text);
    if (this.bytes > this.maxBytes) throw new TooLargeError("bundle size (uncompressed bytes)", this.maxBytes, { field: "bundle" });
    if (!this.gzip.write(text)) await once(this.gzip, "drain");
  }

  private async item(json: string): Promise<void> {
    await this.write(`${this.itemsInSection === 0 ? "" : ","}${json}\n`);
    this.itemsInSection += 1;
  }

  /** One export line, as the node sent it (its JSON text, without the newline). */
  async addSeriesLine(text: string): Promise<void> {
    if (this.section !== "series") throw new BadInputError("bundle: every series line must come before the first batch", { field: "series" });
    if (text.includes("\n")) throw new BadInputError("bundle: an export line must be one line of JSON", { field: "series" });
    await this.item(text);
  }

  /** One element of a POST /hq/v1/proof/batches answer's `batches`. */
  async addBatch(answer: unknown): Promise<void> {
    if (this.section === "closed") throw new BadInputError("bundle: already closed", { field: "batches" });
    if (this.section === "series") {
      await this.write(`${SERIES_CLOSE}\n${BATCHES_OPEN}\n`);
      this.section = "batches";
      this.itemsInSection = 0;
    }
    await this.item(JSON.stringify(answer));
  }

  async close(): Promise<void> {
    if (this.section === "series") await this.write(`${SERIES_CLOSE}\n${BATCHES_OPEN}\n`);
    this.section = "closed";
    await this.write(`${BATCHES_CLOSE}\n`);
    this.gzip.end();
    await this.done;
    await rename(this.tmp, this.file);
  }

  /** Drops the temporary file; for a run that failed after open(). */
  async abort(): Promise<void> {
    this.section = "closed";
    this.gzip.destroy();
    await this.done.catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}

export type BundleItem = { kind: "header"; header: BundleHeader } | { kind: "series"; text: string } | { kind: "batch"; answer: unknown };

function checkHeader(v: unknown, bad: (msg: string) => BadInputError): BundleHeader {
  const h = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
  if (h["format"] !== BUNDLE_FORMAT) throw bad(`format ${JSON.stringify(h["format"])} is not ${BUNDLE_FORMAT}`);
  if (typeof h["origin"] !== "string") throw bad("origin must be a string");
  if (!Array.isArray(h["keys"]) || h["keys"].some((k) => typeof k !== "string")) throw bad("keys must be an array of verifier key strings");
  const c = (typeof h["checkpoint"] === "object" && h["checkpoint"] !== null ? h["checkpoint"] : {}) as Record<string, unknown>;
  if (typeof c["note"] !== "string") throw bad("checkpoint.note must be the signed checkpoint note");
  return h as unknown as BundleHeader;
}

/**
 * Reads a bundle as a stream of items (the header first), checking the
 * layout line by line; errors name the file and line. Stops at
 * BUNDLE_BYTES_MAX uncompressed bytes.
 */
export async function* readBundle(file: string, maxBytes = BUNDLE_BYTES_MAX): AsyncGenerator<BundleItem> {
  const src = createReadStream(file);
  const gunzip = createGunzip();
  src.on("error", (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  const splitter = new LineSplitter(BUNDLE_LINE_BYTES_MAX, `bundle ${file}`);
  let lineNo = 0;
  type Section = "header" | "series-open" | "series" | "batches-open" | "batches" | "end";
  let state = "header" as Section;
  let items = 0;
  const bad = (msg: string): BadInputError => new BadInputError(`${file}: bundle line ${lineNo}: ${msg}`, { line: lineNo });
  function* handle(line: string): Generator<BundleItem> {
    lineNo += 1;
    switch (state) {
      case "header": {
        if (!line.startsWith("{") || !line.endsWith(",")) throw bad(`not an ${BUNDLE_FORMAT} header line`);
        let v: unknown;
        try {
          v = JSON.parse(`${line.slice(0, -1)}}`);
        } catch (e) {
          throw bad(`the header is not JSON: ${(e as Error).message}`);
        }
        state = "series-open";
        yield { kind: "header", header: checkHeader(v, bad) };
        return;
      }
      case "series-open":
        if (line !== SERIES_OPEN) throw bad(`expected ${SERIES_OPEN}`);
        state = "series";
        items = 0;
        return;
      case "series":
      case "batches": {
        if (line === (state === "series" ? SERIES_CLOSE : BATCHES_CLOSE)) {
          state = state === "series" ? "batches-open" : "end";
          return;
        }
        if (items > 0 && !line.startsWith(",")) throw bad("expected a comma before the next element");
        if (items === 0 && line.startsWith(",")) throw bad("a comma before the first element");
        const text = items > 0 ? line.slice(1) : line;
        items += 1;
        if (state === "series") {
          yield { kind: "series", text };
          return;
        }
        let answer: unknown;
        try {
          answer = JSON.parse(text);
        } catch (e) {
          throw bad(`a proof answer is not JSON: ${(e as Error).message}`);
        }
        yield { kind: "batch", answer };
        return;
      }
      case "batches-open":
        if (line !== BATCHES_OPEN) throw bad(`expected ${BATCHES_OPEN}`);
        state = "batches";
        items = 0;
        return;
      case "end":
        throw bad("data after the end of the bundle");
    }
  }
  let bytes = 0;
  try {
    try {
      for await (const chunk of gunzip as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (bytes > maxBytes) throw new TooLargeError(`${file}: bundle size (uncompressed bytes)`, maxBytes, { field: "bundle" });
        for (const line of splitter.push(chunk)) yield* handle(line);
      }
    } catch (e) {
      // zlib's own messages ("incorrect header check") do not say which file or why it matters.
      if ((e as { code?: string }).code?.startsWith("Z_") === true) throw new BadInputError(`${file} is not a gzip'ed bundle (or is truncated): ${(e as Error).message}`);
      throw e;
    }
    for (const line of splitter.end()) yield* handle(line);
    // handle() moves `state` on; TypeScript does not see that through the generator.
    if ((state as Section) !== "end") throw new BadInputError(`${file}: the bundle ends early, at line ${lineNo} (truncated?)`, { line: lineNo });
  } finally {
    src.destroy();
    gunzip.destroy();
  }
}

export interface BundleVerifyOptions {
  /** Pinned keys (--trust or the trust state); null = the bundle's own keys, with a warning. */
  trustedKeys: readonly string[] | null;
  /** Checkpoints seen before (the trust state): only one of the same size can be compared offline. */
  known?: readonly TrustedCheckpoint[];
  mmdMs?: number;
}

export interface BundleVerifyResult {
  header: BundleHeader;
  report: VerifyReport;
  warnings: string[];
}

export const BUNDLE_KEYS_WARNING = "keys taken from the bundle itself: pin them with --trust";

/**
 * Verifies a bundle file with no network: pass 1 reads the series (counting
 * the batches they name) and the proof answers, pass 2 re-reads the file to
 * check every point, so only the verified batches are held in memory.
 */
export async function verifyBundle(file: string, opts: BundleVerifyOptions): Promise<BundleVerifyResult> {
  const warnings: string[] = [];
  let header: BundleHeader | null = null;
  let verifier: PointVerifier | null = null;
  for await (const item of readBundle(file)) {
    if (item.kind === "header") {
      header = item.header;
      if (opts.trustedKeys === null) warnings.push(BUNDLE_KEYS_WARNING);
      const keys = opts.trustedKeys ?? header.keys;
      const claimedSize = header.checkpoint.size;
      const same = opts.known?.find((c) => c.size === claimedSize);
      // Offline there is no consistency proof: only a checkpoint of the same size seen before can be compared.
      const check = verifyCheckpoint(header.checkpoint.note, keys, header.origin, same);
      if (check.checkpoint === null) return { header, report: checkpointFailureReport(check), warnings };
      if (check.checkpoint.size !== header.checkpoint.size || check.checkpoint.root !== header.checkpoint.root)
        warnings.push("the bundle's checkpoint fields differ from its signed note; the note was used");
      const consistency: Consistency = same !== undefined ? consistencyOf(check) : (opts.known?.length ?? 0) > 0 ? "unchecked" : "first-seen";
      verifier = new PointVerifier({
        checkpoint: check.checkpoint,
        consistency,
        checkpointProblems: check.problems,
        ...(opts.mmdMs !== undefined ? { mmdMs: opts.mmdMs } : {}),
      });
    } else if (item.kind === "series") verifier!.addSeries(item.text);
    else verifier!.addBatch(item.answer);
  }
  if (header === null || verifier === null) throw new BadInputError(`${file}: the bundle has no header`);
  for await (const item of readBundle(file)) {
    if (item.kind === "series") verifier.checkSeries(item.text);
    else if (item.kind === "batch") break; // the series all come first
  }
  return { header, report: verifier.report(), warnings };
}
