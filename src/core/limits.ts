// Every size has a limit and every limit has an error. Defaults here; the node
// takes overrides from its flags.

export interface Limits {
  /** Largest request body accepted, after decompression. */
  bodyBytesMax: number;
  /** Longest single line in a line-oriented format. */
  lineBytesMax: number;
  /** Distinct series in one write request. */
  seriesPerBatchMax: number;
  /** Samples in one write request (one batch = one WAL record). */
  samplesPerBatchMax: number;
  labelsPerSeriesMax: number;
  labelNameBytesMax: number;
  labelValueBytesMax: number;
  idempotencyKeyBytesMax: number;
  /** Series returned by one read (export/series). */
  seriesPerReadMax: number;
  /** Samples returned by one read. */
  samplesPerReadMax: number;
  /** Writes waiting for the WAL at once before new ones get 429. */
  pendingWritesMax: number;
  /** PromQL: samples one query may load (Prometheus's -query.max-samples). */
  querySamplesMax: number;
  /** PromQL: the longest a query may run (Prometheus's -query.timeout); a request's `timeout` may only lower it. */
  queryTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  bodyBytesMax: 64 * 1024 * 1024,
  lineBytesMax: 16 * 1024 * 1024,
  seriesPerBatchMax: 100_000,
  samplesPerBatchMax: 1_000_000,
  labelsPerSeriesMax: 64,
  labelNameBytesMax: 256,
  labelValueBytesMax: 4096,
  idempotencyKeyBytesMax: 128,
  seriesPerReadMax: 500_000,
  samplesPerReadMax: 50_000_000,
  pendingWritesMax: 1024,
  querySamplesMax: 50_000_000,
  queryTimeoutMs: 120_000,
});
