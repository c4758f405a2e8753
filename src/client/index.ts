// The HTTP client (docs/client.md): HqClient, BatchWriter and their types.

export { HqClient } from "./client.js";
export type { HqClientOptions, RetryEvent, WriteOptions, WriteFormat, WritePrecision, ExportOptions, MetaOptions, NodeHealth } from "./client.js";
export type { Attempt, WriteResult } from "./types.js";
export { BatchWriter, DEFAULT_BATCH_WRITER } from "./batch-writer.js";
export type { BatchWriterOptions, BatchInfo, FailedBatch } from "./batch-writer.js";
export { encodePoints, type Point, type EncodedBody } from "./encode.js";
export { DEFAULT_RETRY, type RetryPolicy } from "./retry.js";
export { ConnectionError, fetchTransport, type Transport, type HttpRequest, type HttpAnswer, type ConnectionFailure } from "./transport.js";
export { errorFromAnswer } from "./errors.js";
export type { ExportedSeries, TimeArg, RangeOptions } from "./read.js";
