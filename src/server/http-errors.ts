// The one place where errors become HTTP answers (DESIGN.md decision 11).
//
//   bad_input   400  bad_data     the message names what and where
//   too_large   413  bad_data     names the limit
//   conflict    409  conflict     lists the conflicting points
//   overloaded  429  unavailable  Retry-After
//   unavailable 503  unavailable  Retry-After
//   not_found   404  not_found
//   corruption  500  internal     stored data failed a checksum: this node cannot answer correctly
//   internal    500  internal
//   (routing)   404 unknown route (not_found), 405 wrong method (sendMethodNotAllowed)
//
// Anything thrown that is not an HqError is a bug: it is logged with its stack
// and answered 500 without details; the server stays up.
//
// Prometheus retries 5xx and drops 4xx, so nothing transient may be a 4xx:
// overload is the only 4xx that is retryable, and clients that honour
// Retry-After (and Prometheus remote write, which retries 429) handle it.

import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import { isHqError, type ErrorCode, type HqError } from "../core/errors.js";
import { InvariantError } from "../core/assert.js";
import { toJson } from "./json.js";

export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = Object.freeze({
  bad_input: 400,
  too_large: 413,
  conflict: 409,
  overloaded: 429,
  unavailable: 503,
  not_found: 404,
  corruption: 500,
  internal: 500,
});

/** Prometheus API `errorType` for each code (clients such as Grafana show it). */
export const PROM_ERROR_TYPE: Readonly<Record<ErrorCode, string>> = Object.freeze({
  bad_input: "bad_data",
  too_large: "bad_data",
  conflict: "conflict",
  overloaded: "unavailable",
  unavailable: "unavailable",
  not_found: "not_found",
  corruption: "internal",
  internal: "internal",
});

export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/** The HTTP answer for a typed error. */
export function answerFor(err: HqError): ErrorAnswer {
  const status = STATUS_BY_CODE[err.code];
  const headers: Record<string, string> = {};
  if (err.code === "overloaded" || err.code === "unavailable") {
    const after = Number(err.details["retryAfterS"] ?? 1);
    headers["Retry-After"] = String(Number.isFinite(after) && after > 0 ? Math.ceil(after) : 1);
  }
  return {
    status,
    headers,
    body: {
      ...err.details,
      status: "error",
      errorType: PROM_ERROR_TYPE[err.code],
      error: err.message,
      code: err.code,
      retryable: err.retryable,
    },
  };
}

/** The answer for something that is not an HqError: a bug. */
export function answerForBug(): ErrorAnswer {
  return {
    status: 500,
    headers: {},
    body: { status: "error", errorType: "internal", error: "internal error (a bug; it has been logged)", code: "internal", retryable: false },
  };
}

/** Classifies, logs and answers an error. Safe to call when headers were already sent (the connection is then cut). */
export function sendError(res: ServerResponse, err: unknown, log: Logger, route: string): number {
  let answer: ErrorAnswer;
  if (isHqError(err)) {
    answer = answerFor(err);
    if (answer.status >= 500) log.error({ err, route, code: err.code }, "request failed");
    else log.debug({ route, code: err.code, msg: err.message }, "request refused");
  } else {
    answer = answerForBug();
    const e = err instanceof Error ? err : new Error(String(err));
    log.error({ err: e, stack: e.stack, route, invariant: err instanceof InvariantError }, "BUG: unexpected error while serving a request");
  }
  if (res.headersSent) {
    // A streamed answer broke half-way: the only honest thing is to cut the
    // connection so the client sees a truncated response, not a complete one.
    res.destroy(err instanceof Error ? err : undefined);
    return answer.status;
  }
  const text = toJson(answer.body);
  res.writeHead(answer.status, {
    ...answer.headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": String(Buffer.byteLength(text)),
  });
  res.end(text);
  return answer.status;
}

/** 405 (routing, not an HqError code): the path exists, the method does not. Same body shape as every error. */
export function sendMethodNotAllowed(res: ServerResponse, method: string, allowed: readonly string[]): void {
  const text = toJson({
    status: "error",
    errorType: "bad_data",
    error: `method ${method.slice(0, 20)} is not allowed here; use ${allowed.join(", ")}`,
    code: "method_not_allowed",
    retryable: false,
    allowed,
  });
  res.writeHead(405, { Allow: allowed.join(", "), "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}
