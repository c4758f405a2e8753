// Typed errors with a stable code and a retry hint (after nats.js). The core
// knows nothing of HTTP: server/http-errors.ts maps codes to status codes in
// one place.

export type ErrorCode =
  | "bad_input" // malformed request: what and where
  | "too_large" // a size limit was exceeded
  | "conflict" // a point or batch id already holds other content
  | "overloaded" // a queue is full; retry later
  | "unavailable" // cannot serve now (no quorum, shutting down); retry
  | "not_found"
  | "corruption" // a checksum or digest did not match
  | "internal";

/** Where in the input a problem was found. All fields optional; fill what is known. */
export interface InputLocation {
  line?: number; // 1-based line number in the request body
  column?: number; // 1-based
  field?: string; // e.g. "timestamp", "tag key", "values[3]"
  offset?: number; // byte offset in a binary input or file
}

export interface HqErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  details?: Record<string, unknown>;
}

export class HqError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: HqErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HqError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, retryable: this.retryable, ...this.details };
  }
}

function describeLocation(loc: InputLocation): string {
  const parts: string[] = [];
  if (loc.line !== undefined) parts.push(`line ${loc.line}`);
  if (loc.column !== undefined) parts.push(`column ${loc.column}`);
  if (loc.field !== undefined) parts.push(`field ${loc.field}`);
  if (loc.offset !== undefined) parts.push(`offset ${loc.offset}`);
  return parts.join(", ");
}

/** 400: the input is malformed; the message names what and where. */
export class BadInputError extends HqError {
  readonly location: InputLocation;
  constructor(message: string, location: InputLocation = {}, options: HqErrorOptions = {}) {
    const where = describeLocation(location);
    super("bad_input", where === "" ? message : `${where}: ${message}`, {
      ...options,
      details: { ...location, ...options.details },
    });
    this.name = "BadInputError";
    this.location = location;
  }
}

/** 413 (or 400 for per-item limits): a limit was exceeded; names the limit and its value. */
export class TooLargeError extends HqError {
  constructor(what: string, limit: number, location: InputLocation = {}) {
    const where = describeLocation(location);
    super("too_large", `${where === "" ? "" : `${where}: `}${what} exceeds the limit of ${limit}`, {
      details: { limit, ...location },
    });
    this.name = "TooLargeError";
  }
}

export interface ConflictingPoint {
  series: string; // canonical series key
  timestampNs: string; // decimal int64 ns
  storedValue: number;
  offeredValue: number;
}

/** 409: content differs from what is already stored under the same identity. */
export class ConflictError extends HqError {
  readonly points: ConflictingPoint[];
  constructor(message: string, points: ConflictingPoint[] = [], details: Record<string, unknown> = {}) {
    super("conflict", message, { details: { ...details, conflicts: points } });
    this.name = "ConflictError";
    this.points = points;
  }
}

/** 429: a bounded queue is full. Always retryable. */
export class OverloadError extends HqError {
  readonly retryAfterS: number;
  constructor(message: string, retryAfterS = 1) {
    super("overloaded", message, { retryable: true, details: { retryAfterS } });
    this.name = "OverloadError";
    this.retryAfterS = retryAfterS;
  }
}

/** 503: cannot serve now; the outcome of a write is not acked. Always retryable. */
export class UnavailableError extends HqError {
  readonly retryAfterS: number;
  constructor(message: string, retryAfterS = 1, options: HqErrorOptions = {}) {
    super("unavailable", message, { ...options, retryable: true, details: { retryAfterS, ...options.details } });
    this.name = "UnavailableError";
    this.retryAfterS = retryAfterS;
  }
}

export class NotFoundError extends HqError {
  constructor(message: string) {
    super("not_found", message);
    this.name = "NotFoundError";
  }
}

/** A checksum or digest mismatch in stored or transferred data. */
export class CorruptionError extends HqError {
  readonly file: string;
  readonly offset: number;
  constructor(message: string, file: string, offset: number, options: HqErrorOptions = {}) {
    super("corruption", `${file} at byte ${offset}: ${message}`, { ...options, details: { file, offset, ...options.details } });
    this.name = "CorruptionError";
    this.file = file;
    this.offset = offset;
  }
}

export function isHqError(e: unknown): e is HqError {
  return e instanceof HqError;
}
