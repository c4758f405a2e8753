// HTTP error answers → the core's typed errors, in one place (the inverse of
// src/server/http-errors.ts). The server's JSON body carries `code`,
// `retryable`, the message and details; the class is chosen by `code`, or by
// the status when the body is not ours (a proxy's 502, say).

import {
  BadInputError,
  ConflictError,
  CorruptionError,
  HqError,
  NotFoundError,
  OverloadError,
  TooLargeError,
  UnavailableError,
  type ConflictingPoint,
  type ErrorCode,
  type InputLocation,
} from "../core/errors.js";

/** Statuses whose outcome is "not done, try again" even when the body says nothing. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

const ENVELOPE = new Set(["status", "errorType", "error", "code", "retryable"]);

/** Retry-After in seconds (delta-seconds or an HTTP date), or undefined. */
export function parseRetryAfter(raw: string | null, nowMs = Date.now()): number | undefined {
  if (raw === null || raw.trim() === "") return undefined;
  const t = raw.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(t)) return Number(t);
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - nowMs) / 1000);
}

function locationOf(d: Record<string, unknown>): InputLocation {
  const loc: InputLocation = {};
  if (typeof d["line"] === "number") loc.line = d["line"];
  if (typeof d["column"] === "number") loc.column = d["column"];
  if (typeof d["field"] === "string") loc.field = d["field"];
  if (typeof d["offset"] === "number") loc.offset = d["offset"];
  return loc;
}

function conflictsOf(d: Record<string, unknown>): ConflictingPoint[] {
  const raw = d["conflicts"];
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((c): ConflictingPoint[] => {
    if (c === null || typeof c !== "object") return [];
    const o = c as Record<string, unknown>;
    const num = (v: unknown): number => (typeof v === "number" ? v : v === "NaN" ? NaN : v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v));
    return [{ series: String(o["series"]), timestampNs: String(o["timestampNs"]), storedValue: num(o["storedValue"]), offeredValue: num(o["offeredValue"]) }];
  });
}

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
    case 405:
    case 415:
    case 422:
      return "bad_input";
    case 404:
      return "not_found";
    case 409:
      return "conflict";
    case 413:
      return "too_large";
    case 429:
      return "overloaded";
    case 502:
    case 503:
    case 504:
      return "unavailable";
    default:
      return "internal";
  }
}

const KNOWN_CODES: ReadonlySet<string> = new Set<ErrorCode>(["bad_input", "too_large", "conflict", "overloaded", "unavailable", "not_found", "corruption", "internal"]);

export interface AnswerContext {
  status: number;
  body: string;
  retryAfter: string | null;
  endpoint: string;
}

/**
 * The typed error for an HTTP error answer. The message is the server's;
 * `details` holds the server's details plus `httpStatus`, `endpoint` and,
 * when the body's code is not one of ours, `serverCode`.
 */
export function errorFromAnswer(a: AnswerContext): HqError {
  let parsed: Record<string, unknown> = {};
  try {
    const v: unknown = JSON.parse(a.body);
    if (v !== null && typeof v === "object" && !Array.isArray(v)) parsed = v as Record<string, unknown>;
  } catch {
    parsed = {};
  }
  const rawCode = typeof parsed["code"] === "string" ? parsed["code"] : undefined;
  const code: ErrorCode = rawCode !== undefined && KNOWN_CODES.has(rawCode) ? (rawCode as ErrorCode) : codeForStatus(a.status);
  const message = typeof parsed["error"] === "string" ? parsed["error"] : `HTTP ${a.status}${a.body === "" ? "" : `: ${a.body.slice(0, 200)}`}`;
  const details: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) if (!ENVELOPE.has(k)) details[k] = v;
  const retryAfterS = parseRetryAfter(a.retryAfter) ?? (typeof details["retryAfterS"] === "number" ? details["retryAfterS"] : 1);

  let err: HqError;
  switch (code) {
    case "bad_input":
      err = new BadInputError(message, locationOf(details), { details });
      break;
    case "too_large":
      err = new TooLargeError("request", typeof details["limit"] === "number" ? details["limit"] : 0, locationOf(details));
      break;
    case "conflict":
      err = new ConflictError(message, conflictsOf(details), details);
      break;
    case "overloaded":
      err = new OverloadError(message, retryAfterS);
      break;
    case "unavailable":
      err = new UnavailableError(message, retryAfterS);
      break;
    case "not_found":
      err = new NotFoundError(message);
      break;
    case "corruption":
      err = new CorruptionError(message, String(details["file"] ?? "?"), Number(details["offset"] ?? 0));
      break;
    default:
      err = new HqError(code, message, { retryable: parsed["retryable"] === true });
  }
  // The server's message exactly (constructors prefix locations the server already wrote).
  err.message = message;
  Object.assign(err.details, details, { httpStatus: a.status, endpoint: a.endpoint }, rawCode !== undefined && rawCode !== code ? { serverCode: rawCode } : {});
  return err;
}

/** Whether an error answer may be retried: the server's own flag when it gave one, else the status. */
export function isRetryableAnswer(status: number, err: HqError): boolean {
  return err.retryable || RETRYABLE_STATUSES.has(status);
}
