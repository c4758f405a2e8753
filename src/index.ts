// The package's public API: core types, typed errors and the HTTP client.

export { HqError, BadInputError, TooLargeError, ConflictError, OverloadError, UnavailableError, NotFoundError, CorruptionError, isHqError } from "./core/errors.js";
export type { ErrorCode, InputLocation, ConflictingPoint } from "./core/errors.js";
export type { Receipt } from "./core/receipt.js";
export type { Label, Labels } from "./core/labels.js";
export type { Batch, BatchSeries, Origin } from "./core/batch.js";
export type { Matcher, MatchOp } from "./core/matchers.js";
export type { Limits } from "./core/limits.js";
export { DEFAULT_LIMITS } from "./core/limits.js";
export type { Precision } from "./core/time.js";
export { parseSelector } from "./query/selector.js";
export * from "./client/index.js";
