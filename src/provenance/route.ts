// The proof API (docs/http-api.md, "Provenance"): checkpoints, keys,
// inclusion and consistency proofs, batch proofs with canonical bytes, the
// ledger's leaves (followers catching up, auditors), and the archive as a
// peer route. Like repair/route.ts, the descriptors are structurally
// src/server/routes.ts `Route`s (the server layer sits above this one).

import type { IncomingMessage, ServerResponse } from "node:http";
import { BadInputError, HqError, NotFoundError, TooLargeError, UnavailableError } from "../core/errors.js";
import { toHex } from "../core/hash.js";
import { CUT_LEAVES_MAX, type Ledger } from "./ledger.js";
import { proofToHex } from "./merkle.js";
import type { ProvenanceService } from "./service.js";
import { readJsonBody } from "../net/body.js";

/** Batch ids per POST /hq/v1/proof/batches. */
export const PROOF_BATCHES_MAX = 256;
const BODY_BYTES_MAX = 256 * 1024;

type Handler = (ctx: unknown, req: IncomingMessage, res: ServerResponse, url: URL, pathParams: readonly string[]) => Promise<void>;
export interface ProofRoute {
  readonly name: string;
  readonly path: string;
  readonly methods: readonly string[];
  readonly handler: Handler;
}

export interface ProofSource {
  service: ProvenanceService;
  ledger: Ledger;
  engine: { lookupBatch(batchId: string): { phase: string; hlc: bigint } | null };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}

function intParam(url: URL, name: string, required: true): number;
function intParam(url: URL, name: string, required: false): number | null;
function intParam(url: URL, name: string, required: boolean): number | null {
  const v = url.searchParams.get(name);
  if (v === null) {
    if (required) throw new BadInputError(`${name} is required`, { field: name });
    return null;
  }
  if (!/^[0-9]{1,12}$/.test(v)) throw new BadInputError(`${name} must be a non-negative integer, got "${v.slice(0, 40)}"`, { field: name });
  return Number(v);
}


export function proofRoutes(source: () => ProofSource | null): ProofRoute[] {
  const get = (): ProofSource => {
    const s = source();
    if (s === null) throw new UnavailableError("provenance is starting on this node", 1);
    return s;
  };
  const checkpoint: Handler = async (_c, req, res) => {
    req.resume();
    const { ledger } = get();
    const cp = ledger.latest();
    if (cp === null) throw new NotFoundError("no checkpoint yet: the sequencer publishes the first one a few seconds after the first write");
    send(res, 200, { origin: ledger.origin, size: cp.checkpoint.treeSize, root: toHex(cp.checkpoint.rootHash), timeMs: cp.checkpoint.timeMs, note: cp.note });
  };
  const checkpoints: Handler = async (_c, req, res) => {
    req.resume();
    const { ledger } = get();
    send(res, 200, {
      origin: ledger.origin,
      checkpoints: ledger.checkpoints().map((c) => ({ size: c.checkpoint.treeSize, root: toHex(c.checkpoint.rootHash), timeMs: c.checkpoint.timeMs, note: c.note })),
    });
  };
  const keys: Handler = async (_c, req, res) => {
    req.resume();
    const { service } = get();
    send(res, 200, { origin: service.origin, keys: service.verifierKeyStrings() });
  };
  const consistency: Handler = async (_c, req, res, url) => {
    req.resume();
    const { ledger, service } = get();
    const first = intParam(url, "first", true);
    const second = intParam(url, "second", true);
    service.checkSize(second, "second");
    if (first < 1 || first > second) throw new BadInputError(`first must be 1..${second}`, { field: "first" });
    send(res, 200, { first, second, proof: proofToHex(ledger.consistencyProof(first, second)) });
  };
  const inclusion: Handler = async (_c, req, res, url) => {
    req.resume();
    const { ledger, service } = get();
    const id = url.searchParams.get("batch");
    if (id === null || id === "") throw new BadInputError("batch is required", { field: "batch" });
    const size = intParam(url, "size", false) ?? ledger.size;
    service.checkSize(size, "size");
    const index = ledger.indexOf(id);
    if (index === null || index >= size) throw new NotFoundError(`batch ${id.slice(0, 128)} is not in the log of size ${size}`);
    send(res, 200, { batchId: id, index, size, entry: Buffer.from(await ledger.entryBytes(index)).toString("base64"), proof: proofToHex(ledger.inclusionProof(index, size)) });
  };
  const batches: Handler = async (_c, req, res) => {
    const { ledger, service, engine } = get();
    const body = (await readJsonBody(req, BODY_BYTES_MAX)) as { ids?: unknown; size?: unknown; bytes?: unknown };
    if (typeof body !== "object" || body === null) throw new BadInputError("body must be a JSON object", { field: "body" });
    if (!Array.isArray(body.ids) || body.ids.some((x) => typeof x !== "string")) throw new BadInputError("ids must be an array of batch ids", { field: "ids" });
    if (body.ids.length > PROOF_BATCHES_MAX) throw new TooLargeError("batch ids per request", PROOF_BATCHES_MAX, { field: "ids" });
    const size = body.size === undefined ? ledger.size : body.size;
    if (typeof size !== "number") throw new BadInputError("size must be a number", { field: "size" });
    service.checkSize(size, "size");
    const withBytes = body.bytes !== false;
    const out: unknown[] = [];
    for (const id of body.ids as string[]) {
      const index = ledger.indexOf(id);
      if (index === null || index >= size) {
        const b = engine.lookupBatch(id);
        out.push(b !== null && b.phase === "committed" ? { batchId: id, status: "pending", committedHlc: b.hlc.toString() } : { batchId: id, status: "unknown" });
        continue;
      }
      const answer: Record<string, unknown> = {
        batchId: id,
        status: "included",
        index,
        entry: Buffer.from(await ledger.entryBytes(index)).toString("base64"),
        proof: proofToHex(ledger.inclusionProof(index, size)),
      };
      if (withBytes) {
        try {
          answer["bytes"] = Buffer.from(await service.batchBytes(id)).toString("base64");
        } catch (e) {
          if (!(e instanceof HqError)) throw e;
          answer["bytesError"] = e.message;
        }
      }
      out.push(answer);
    }
    send(res, 200, { size, batches: out });
  };
  const leaves: Handler = async (_c, req, res, url) => {
    req.resume();
    const { ledger } = get();
    const from = intParam(url, "from", true);
    const to = intParam(url, "to", false) ?? Math.min(ledger.size, from + CUT_LEAVES_MAX);
    const entries = await ledger.range(from, to);
    send(res, 200, { from, to, size: ledger.size, entries: entries.map((e) => Buffer.from(e).toString("base64")) });
  };
  const archive: Handler = async (_c, req, res, url) => {
    req.resume();
    const { service } = get();
    const id = url.searchParams.get("id");
    if (id === null || id === "") throw new BadInputError("id is required", { field: "id" });
    const bytes = await service.localBatchBytes(id);
    if (bytes === null) throw new NotFoundError(`batch ${id.slice(0, 128)} is not in this node's archive`);
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(bytes.length) });
    res.end(bytes);
  };
  return [
    { name: "proof_checkpoint", path: "/hq/v1/proof/checkpoint", methods: ["GET"], handler: checkpoint },
    { name: "proof_checkpoints", path: "/hq/v1/proof/checkpoints", methods: ["GET"], handler: checkpoints },
    { name: "proof_keys", path: "/hq/v1/proof/keys", methods: ["GET"], handler: keys },
    { name: "proof_consistency", path: "/hq/v1/proof/consistency", methods: ["GET"], handler: consistency },
    { name: "proof_inclusion", path: "/hq/v1/proof/inclusion", methods: ["GET"], handler: inclusion },
    { name: "proof_batches", path: "/hq/v1/proof/batches", methods: ["POST"], handler: batches },
    { name: "ledger_leaves", path: "/hq/v1/ledger/leaves", methods: ["GET"], handler: leaves },
    { name: "internal_archive", path: "/hq/v1/internal/archive", methods: ["GET"], handler: archive },
  ];
}
