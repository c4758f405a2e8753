// The only module of the client that knows how bytes travel: one HTTP
// exchange over Node's global fetch (undici), with a deadline, classified into
// an answer (any status) or a ConnectionError saying whether the request may
// have reached the server. Everything else (retries, errors, receipts) is
// transport-agnostic and takes a `Transport` function, so tests and other
// runtimes can swap it.

import { HqError } from "../core/errors.js";

export interface HttpRequest {
  url: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: Uint8Array | string;
  timeoutMs: number;
}

export interface HttpAnswer {
  status: number;
  /** Header lookup, case-insensitive; null when absent. */
  header(name: string): string | null;
  /** The whole body as text (already read: a body cut half-way is a ConnectionError). */
  body: string;
}

export type Transport = (req: HttpRequest) => Promise<HttpAnswer>;

/**
 * How a request failed below HTTP.
 * - `refused`: nothing listens there (ECONNREFUSED, unknown host): the request was never sent.
 * - `reset`: the connection broke (reset, closed, cut answer): the outcome is unknown.
 * - `timeout`: no complete answer within the deadline: the outcome is unknown.
 * - `other`: anything else the network layer reported: treated as unknown.
 */
export type ConnectionFailure = "refused" | "reset" | "timeout" | "other";

/** A request that got no (complete) HTTP answer. Always retryable; `sent` false means it surely never reached the server. */
export class ConnectionError extends HqError {
  readonly failure: ConnectionFailure;
  /** The network layer's code (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, TIMEOUT, ...). */
  readonly errno: string;
  readonly sent: boolean;
  constructor(failure: ConnectionFailure, errno: string, message: string, cause?: unknown) {
    super("unavailable", message, { retryable: true, cause, details: { failure, errno } });
    this.name = "ConnectionError";
    this.failure = failure;
    this.errno = errno;
    this.sent = failure !== "refused";
  }
}

const REFUSED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);
const TIMEOUTS = new Set(["ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

function errnoOf(e: unknown): string {
  // fetch wraps the socket error: TypeError("fetch failed", { cause }); a
  // happy-eyeballs connect failure is an AggregateError with per-address errors.
  for (let cur: unknown = e, depth = 0; cur !== null && cur !== undefined && depth < 5; depth++) {
    const o = cur as { code?: unknown; errors?: unknown; cause?: unknown; name?: unknown };
    if (o.name === "TimeoutError") return "TIMEOUT";
    if (typeof o.code === "string") return o.code;
    if (Array.isArray(o.errors) && o.errors.length > 0) {
      const first = o.errors[0] as { code?: unknown };
      if (typeof first.code === "string") return first.code;
    }
    cur = o.cause;
  }
  return "UNKNOWN";
}

/** Classifies whatever fetch (or reading its body) threw. */
export function classifyFetchError(e: unknown, url: string): ConnectionError {
  const errno = errnoOf(e);
  const text = e instanceof Error ? (e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message) : String(e);
  const failure: ConnectionFailure = REFUSED.has(errno) ? "refused" : errno === "TIMEOUT" || TIMEOUTS.has(errno) ? "timeout" : errno === "UNKNOWN" ? "other" : "reset";
  return new ConnectionError(failure, errno, `${url}: ${failure === "timeout" ? "no answer in time" : text} (${errno})`, e);
}

/** The default transport: Node's global fetch. */
export const fetchTransport: Transport = async (req) => {
  const signal = AbortSignal.timeout(req.timeoutMs);
  try {
    const res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      ...(req.body !== undefined ? { body: req.body } : {}),
      signal,
    });
    const body = await res.text();
    return { status: res.status, header: (n) => res.headers.get(n), body };
  } catch (e) {
    // The Fetch standard blocks some ports (6000, 6665-6669, 10080, ...): a configuration error, never worth a retry.
    if (e instanceof Error && e.cause instanceof Error && e.cause.message === "bad port")
      throw new HqError("bad_input", `${req.url}: fetch refuses this port (a blocked "bad port" of the Fetch standard); use another port`, { cause: e });
    throw classifyFetchError(e, req.url);
  }
};
