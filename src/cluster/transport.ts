// Node-to-node transport for the replication protocol's messages
// (docs/format/replication.md, "Transport"). The protocol's state machines
// are asynchronous message passers: replies are messages too, so a send
// queues one encoded message for its peer, and the queue goes out as one POST
// (a sequence of messages), answered 202 as soon as the receiver has decoded
// them and handed them to its machine. No request/response pairing, no
// retries here: the protocol tolerates loss and re-sends what it must.
//
// Why a queue: a POST costs far more than the messages in it (headers, a
// request object, a socket write, the peer's parse), and under load a
// gateway sends several messages to each peer per event-loop turn. Messages
// sent during one turn leave together, and while a peer already has
// `maxPostsInFlightPerPeer` POSTs under way the queue grows until one
// returns: one POST per peer per turn under light load, fewer and larger
// ones under heavy load, never a message held back from an idle link.
//
// Outbound: one keep-alive Agent per peer (bounded sockets), a bounded number
// of messages queued or in flight per peer (beyond it a message is dropped
// and counted), a timeout per send, and `onUnreachable(peer)` as soon as a
// peer refuses connections, so a gateway can drop that replica at once.
//
// Inbound: `makeInboundHandler` gives a route handler (the shape of
// src/server/routes.ts `Handler`; this layer cannot import the server) that
// reads the body under a limit, decodes it and calls `onMessage`.

import { Agent, request, type IncomingMessage, type ServerResponse } from "node:http";
import { BadInputError, HqError } from "../core/errors.js";
import type { Message } from "./protocol/messages.js";
import {
  MAX_MESSAGE_BYTES,
  MAX_SEQUENCE_BYTES,
  MESSAGE_CONTENT_TYPE,
  MESSAGES_CONTENT_TYPE,
  checkPayloadDigests,
  decodeMessage,
  decodeMessageSequence,
  encodeMessage,
  encodeMessageSequence,
} from "./wire.js";
import { readBody } from "../net/body.js";

/** The path every node serves inbound messages on. */
export const INTERNAL_MSG_PATH = "/hq/v1/internal/msg";

/** Connection errors that prove the message was not delivered and the peer is not listening. */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH"]);

export interface TransportOptions {
  /** Called (synchronously, once per failed send) when a peer refuses connections. */
  readonly onUnreachable?: (peerUrl: string) => void;
  /** Called when a send fails for any other reason (timeout, reset, non-202 answer). */
  readonly onSendError?: (peerUrl: string, err: Error) => void;
  /** Messages queued or in flight to one peer at once; more are dropped and counted. Default 256. */
  readonly maxInFlightPerPeer?: number;
  /** POSTs under way to one peer at once; messages sent meanwhile wait and leave together. Default 4. */
  readonly maxPostsInFlightPerPeer?: number;
  /** Sockets per peer (keep-alive). Default 8. */
  readonly maxSocketsPerPeer?: number;
  /** Per-send timeout when the caller gives none. Default 5000 ms. */
  readonly defaultTimeoutMs?: number;
}

export interface SendOptions {
  /** Give up (and count a timeout) if the peer has not answered by then (from the send, queueing included). */
  readonly timeoutMs?: number;
}

interface Queued {
  readonly body: Uint8Array;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly resolve: () => void;
}

export interface TransportCounters {
  sent: number; // POSTs started
  delivered: number; // answered 202
  dropped: number; // refused by the in-flight bound
  unreachable: number; // connection refused / no route
  timeouts: number;
  failed: number; // any other failure: reset, non-202 answer, encode error
}

const zero = (): TransportCounters => ({ sent: 0, delivered: 0, dropped: 0, unreachable: 0, timeouts: 0, failed: 0 });

interface Peer {
  readonly peerUrl: string;
  readonly url: URL;
  readonly agent: Agent;
  /** Messages accepted and not yet settled (queued or in a POST): at most maxInFlight. */
  inFlight: number;
  /** Messages waiting for a POST, oldest first; changed by send() and flush() only. */
  readonly queue: Queued[];
  /** POSTs under way: at most maxPosts. */
  posts: number;
  /** A flush is scheduled for the end of this event-loop turn. */
  flushScheduled: boolean;
  readonly counters: TransportCounters;
}

/** A POST carries at most this many bytes of messages, unless one message alone is larger. */
const POST_BYTES_MAX = 8 * 1024 * 1024;

export class Transport {
  private readonly peers = new Map<string, Peer>();
  private readonly totals = zero();
  private readonly maxInFlight: number;
  private readonly maxSockets: number;
  private readonly maxPosts: number;
  private readonly defaultTimeoutMs: number;
  private closed = false;

  constructor(private readonly options: TransportOptions = {}) {
    this.maxInFlight = options.maxInFlightPerPeer ?? 256;
    this.maxPosts = options.maxPostsInFlightPerPeer ?? 4;
    this.maxSockets = options.maxSocketsPerPeer ?? 8;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 5000;
  }

  /**
   * Sends one message to `peerUrl` (the peer's base URL, e.g.
   * `http://10.0.0.2:8428`), in the next POST to that peer. Never rejects:
   * the promise settles when the attempt is over (delivered, dropped, or
   * failed), and the outcome shows in the counters and callbacks. A message
   * that cannot be encoded counts as failed (and goes to `onSendError`).
   */
  send(peerUrl: string, msg: Message, opts: SendOptions = {}): Promise<void> {
    let peer: Peer;
    let body: Uint8Array;
    try {
      if (this.closed) throw new HqError("unavailable", "the transport is closed");
      peer = this.peer(peerUrl);
      body = encodeMessage(msg);
    } catch (e) {
      this.totals.failed++;
      this.options.onSendError?.(peerUrl, e as Error);
      return Promise.resolve();
    }
    if (peer.inFlight >= this.maxInFlight) {
      peer.counters.dropped++;
      this.totals.dropped++;
      return Promise.resolve();
    }
    peer.inFlight++;
    this.count(peer, "sent");
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise<void>((resolve) => {
      peer.queue.push({ body, timeoutMs, deadlineMs: performance.now() + timeoutMs, resolve });
      this.scheduleFlush(peer);
    });
  }

  private scheduleFlush(peer: Peer): void {
    if (peer.flushScheduled || peer.posts >= this.maxPosts) return;
    peer.flushScheduled = true;
    setImmediate(() => {
      peer.flushScheduled = false;
      this.flush(peer);
    });
  }

  /** Sends what is queued, as few POSTs as fit the bounds. */
  private flush(peer: Peer): void {
    if (this.closed) return;
    while (peer.queue.length > 0 && peer.posts < this.maxPosts) {
      let bytes = 0;
      let n = 0;
      while (n < peer.queue.length && (n === 0 || bytes + peer.queue[n]!.body.length <= POST_BYTES_MAX)) bytes += peer.queue[n++]!.body.length;
      const group = peer.queue.splice(0, n);
      peer.posts++;
      void this.post(peer, group).finally(() => {
        peer.posts--;
        peer.inFlight -= group.length;
        for (const q of group) q.resolve();
        if (peer.queue.length > 0) this.scheduleFlush(peer);
      });
    }
  }

  /** Counters summed over every peer. */
  stats(): Readonly<TransportCounters> {
    return { ...this.totals };
  }

  /** Counters and current in-flight sends of one peer (zeros for a peer never sent to). */
  peerStats(peerUrl: string): Readonly<TransportCounters & { inFlight: number }> {
    const p = this.peers.get(peerUrl);
    return p === undefined ? { ...zero(), inFlight: 0 } : { ...p.counters, inFlight: p.inFlight };
  }

  /** Closes every pooled connection; later sends fail (counted). In-flight sends are aborted. */
  close(): void {
    this.closed = true;
    for (const p of this.peers.values()) {
      p.agent.destroy();
      // Queued messages never leave now: they fail, like the in-flight ones the destroyed sockets abort.
      const queued = p.queue.splice(0);
      p.inFlight -= queued.length;
      if (queued.length > 0) this.count(p, "failed", queued.length);
      for (const q of queued) q.resolve();
    }
    this.peers.clear();
  }

  private peer(peerUrl: string): Peer {
    let p = this.peers.get(peerUrl);
    if (p !== undefined) return p;
    let base: URL;
    try {
      base = new URL(peerUrl);
    } catch {
      throw new BadInputError(`peer URL "${peerUrl.slice(0, 200)}" is not a URL`, { field: "peerUrl" });
    }
    if (base.protocol !== "http:") throw new BadInputError(`peer URL "${peerUrl.slice(0, 200)}": only http: is supported`, { field: "peerUrl" });
    p = {
      peerUrl,
      url: new URL(INTERNAL_MSG_PATH, base),
      agent: new Agent({ keepAlive: true, maxSockets: this.maxSockets, maxFreeSockets: this.maxSockets }),
      inFlight: 0,
      queue: [],
      posts: 0,
      flushScheduled: false,
      counters: zero(),
    };
    this.peers.set(peerUrl, p);
    return p;
  }

  private count(peer: Peer, what: keyof TransportCounters, messages = 1): void {
    peer.counters[what] += messages;
    this.totals[what] += messages;
  }

  /** One POST of a group of messages; every message in it shares the outcome. */
  private post(peer: Peer, group: readonly Queued[]): Promise<void> {
    const peerUrl = peer.peerUrl;
    const body = encodeMessageSequence(group.map((q) => q.body));
    let first = group[0]!;
    for (const q of group) if (q.deadlineMs < first.deadlineMs) first = q;
    const timeoutMs = first.timeoutMs;
    const waitMs = Math.max(1, Math.round(first.deadlineMs - performance.now()));
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = (outcome: keyof TransportCounters, err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.count(peer, outcome, group.length);
        if (outcome === "unreachable") this.options.onUnreachable?.(peerUrl);
        else if (err !== null) this.options.onSendError?.(peerUrl, err);
        resolve();
      };
      const req = request(peer.url, {
        method: "POST",
        agent: peer.agent,
        headers: { "Content-Type": MESSAGES_CONTENT_TYPE, "Content-Length": String(body.length) },
      });
      const timer = setTimeout(() => {
        done("timeouts", new Error(`no answer from ${peerUrl} within ${timeoutMs} ms`));
        req.destroy();
      }, waitMs);
      req.on("error", (e: NodeJS.ErrnoException) => {
        done(e.code !== undefined && UNREACHABLE_CODES.has(e.code) ? "unreachable" : "failed", e);
      });
      req.on("response", (res: IncomingMessage) => {
        if (res.statusCode === 202) {
          res.resume();
          res.on("end", () => done("delivered", null));
          res.on("error", (e) => done("failed", e));
          return;
        }
        // Keep the first KiB of the answer for the error message.
        const chunks: Buffer[] = [];
        let n = 0;
        res.on("data", (c: Buffer) => {
          if (n < 1024) chunks.push(c);
          n += c.length;
        });
        const fail = (): void => {
          const text = Buffer.concat(chunks).subarray(0, 1024).toString("utf8");
          done("failed", new Error(`${peerUrl} answered ${res.statusCode ?? "?"}: ${text}`));
        };
        res.on("end", fail);
        res.on("error", fail);
      });
      req.end(body);
    });
  }
}

// ---------------------------------------------------------------- inbound

export interface InboundLimits {
  /** Largest body accepted (413 past it). Default and ceiling: MAX_SEQUENCE_BYTES (a single message: MAX_MESSAGE_BYTES). */
  readonly maxBodyBytes?: number;
}

/** Structurally a src/server/routes.ts `Handler` (the context is not used). */
export type InboundHandler = (ctx: unknown, req: IncomingMessage, res: ServerResponse, url: URL, pathParams: readonly string[]) => Promise<void>;

/** Structurally a src/server/routes.ts `Route`. */
export interface InboundRoute {
  readonly name: string;
  readonly path: string;
  readonly methods: readonly string[];
  readonly handler: InboundHandler;
}

function answer(res: ServerResponse, status: number, body: Record<string, unknown> | null, close = false): void {
  if (res.headersSent) return;
  const text = body === null ? "" : JSON.stringify(body);
  const headers: Record<string, string> = { "Content-Length": String(Buffer.byteLength(text)) };
  if (body !== null) headers["Content-Type"] = "application/json";
  if (close) headers["Connection"] = "close";
  res.writeHead(status, headers);
  res.end(text);
}

function errorBody(err: HqError): Record<string, unknown> {
  return { ...err.details, status: "error", errorType: "bad_data", error: err.message, code: err.code, retryable: err.retryable };
}

/**
 * The handler for `POST /hq/v1/internal/msg`: reads the body (413 past the
 * limit), decodes it (400 naming the problem when malformed), calls
 * `onMessage` for each message in order and answers 202. The body is one
 * message (`application/x-hqts-msg`) or a sequence (`application/x-hqts-msgs`,
 * what this transport sends); a sequence is decoded and checked whole before
 * any of it is delivered. Wrong content type → 415, wrong content encoding →
 * 415. If `onMessage` throws, the handler rethrows without answering (the
 * server's error path logs it and answers 500).
 */
export function makeInboundHandler(onMessage: (msg: Message) => void, limits: InboundLimits = {}): InboundHandler {
  const limit = Math.min(limits.maxBodyBytes ?? MAX_SEQUENCE_BYTES, MAX_SEQUENCE_BYTES);
  return async (_ctx, req, res) => {
    const source = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
    const type = String(req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    const encoding = String(req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
    const known = type === MESSAGE_CONTENT_TYPE || type === MESSAGES_CONTENT_TYPE;
    if (!known || (encoding !== "identity" && encoding !== "")) {
      req.resume();
      const what = !known
        ? `Content-Type "${type.slice(0, 80)}" (want ${MESSAGES_CONTENT_TYPE} or ${MESSAGE_CONTENT_TYPE})`
        : `Content-Encoding "${encoding.slice(0, 40)}" (want identity)`;
      answer(res, 415, { status: "error", errorType: "bad_data", error: `unsupported ${what}`, code: "bad_input", retryable: false });
      return;
    }
    let msgs: Message[];
    try {
      // Content-Encoding was refused above, so readBody reads the raw bytes.
      const body = await readBody(req, type === MESSAGE_CONTENT_TYPE ? Math.min(limit, MAX_MESSAGE_BYTES) : limit);
      msgs = type === MESSAGE_CONTENT_TYPE ? [decodeMessage(body, source)] : decodeMessageSequence(body, source);
      for (const msg of msgs) checkPayloadDigests(msg, source);
    } catch (e) {
      const err = e instanceof HqError ? e : new BadInputError(String(e));
      // Past the limit the rest of the body is discarded; close so the peer stops sending it.
      answer(res, err.code === "too_large" ? 413 : 400, errorBody(err), err.code === "too_large");
      return;
    }
    for (const msg of msgs) onMessage(msg); // throwing is a bug on this node: the server's error path logs it and answers 500
    answer(res, 202, null);
  };
}

/** The route descriptor for the server's route table (the lead wires it in). */
export function inboundRoute(onMessage: (msg: Message) => void, limits: InboundLimits = {}): InboundRoute {
  return { name: INTERNAL_MSG_PATH, path: INTERNAL_MSG_PATH, methods: ["POST"], handler: makeInboundHandler(onMessage, limits) };
}
