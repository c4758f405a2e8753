// BatchWriter: accumulates points and writes them in batches.
//
// - A batch is cut when the buffer holds `samplesMax` points, or
//   `flushIntervalMs` after its first point, or on flush()/close(). The batch
//   gets its Idempotency-Key when it is cut, so every retry of it (inside the
//   client) reuses the key and the server stores it once.
// - Batches are started in cut order, at most `pendingBatchesMax` at a time.
//   When that many are in flight and the buffer is full, add() waits
//   (backpressure): memory is bounded by (pendingBatchesMax + 1) * samplesMax
//   points. With pendingBatchesMax = 1 batches are also acked in order.
// - Every receipt goes to `onReceipt` (if given) and is returned by the next
//   flush()/close(). A batch that fails (refused, or attempts exhausted) is
//   never dropped silently: the writer turns failed, add()/flush()/close()
//   reject with that typed error (details name the batch), `onError` is
//   called, and the points are kept in `failedBatches` for the caller.

import { randomUUID } from "node:crypto";
import { HqError } from "../core/errors.js";
import type { Receipt } from "../core/receipt.js";
import { checkedLabels, type Point } from "./encode.js";
import type { WriteResult } from "./types.js";

export interface BatchWriterOptions {
  /** Points per batch (cut when reached). Default 10,000. */
  samplesMax: number;
  /** A non-empty buffer is cut this long after its first point. Default 1,000 ms. */
  flushIntervalMs: number;
  /** Batches in flight at most; add() waits beyond. Default 4. */
  pendingBatchesMax: number;
  onReceipt?: (receipt: Receipt, batch: BatchInfo) => void;
  onError?: (error: HqError, batch: BatchInfo) => void;
}

export interface BatchInfo {
  /** Cut order, from 1. */
  seq: number;
  idempotencyKey: string;
  samples: number;
  /** Where it was acked (success only). */
  endpoint?: string;
  /** Every attempt (success only; on failure see error.details.attempts). */
  attempts?: WriteResult["attempts"];
}

export interface FailedBatch {
  seq: number;
  idempotencyKey: string;
  points: Point[];
  error: HqError;
}

export type SendBatch = (points: Point[], idempotencyKey: string) => Promise<WriteResult>;

export const DEFAULT_BATCH_WRITER: Readonly<Pick<BatchWriterOptions, "samplesMax" | "flushIntervalMs" | "pendingBatchesMax">> = Object.freeze({
  samplesMax: 10_000,
  flushIntervalMs: 1_000,
  pendingBatchesMax: 4,
});

export class BatchWriter {
  readonly samplesMax: number;
  readonly flushIntervalMs: number;
  readonly pendingBatchesMax: number;
  /** Batches that failed, with their points (the writer is failed once this is non-empty). */
  readonly failedBatches: FailedBatch[] = [];

  private buffer: Point[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private slotWaiters: (() => void)[] = [];
  /** Serialises add/flush/close and timer cuts, so points keep their order. */
  private chain: Promise<void> = Promise.resolve();
  private seq = 0;
  private done: { seq: number; receipt: Receipt }[] = [];
  private failure: HqError | undefined;
  private closed = false;

  private readonly callbacks: Pick<BatchWriterOptions, "onReceipt" | "onError">;

  constructor(
    private readonly send: SendBatch,
    opts: Partial<BatchWriterOptions> = {},
  ) {
    this.callbacks = { ...(opts.onReceipt !== undefined ? { onReceipt: opts.onReceipt } : {}), ...(opts.onError !== undefined ? { onError: opts.onError } : {}) };
    this.samplesMax = opts.samplesMax ?? DEFAULT_BATCH_WRITER.samplesMax;
    this.flushIntervalMs = opts.flushIntervalMs ?? DEFAULT_BATCH_WRITER.flushIntervalMs;
    this.pendingBatchesMax = opts.pendingBatchesMax ?? DEFAULT_BATCH_WRITER.pendingBatchesMax;
    for (const [name, v] of [["samplesMax", this.samplesMax], ["pendingBatchesMax", this.pendingBatchesMax]] as const)
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
    if (!(this.flushIntervalMs > 0)) throw new RangeError(`flushIntervalMs must be > 0, got ${this.flushIntervalMs}`);
  }

  /** Points buffered, not yet cut into a batch. */
  get buffered(): number {
    return this.buffer.length;
  }
  /** Batches sent and not yet answered. */
  get pending(): number {
    return this.inFlight.size;
  }
  /** The first batch failure, if any (sticky). */
  get error(): HqError | undefined {
    return this.failure;
  }

  /**
   * Adds points. Resolves once they are buffered; waits while the buffer is
   * full and `pendingBatchesMax` batches are in flight. Rejects at once for an
   * invalid point (nothing of the call is added), and once the writer has failed.
   */
  add(points: Point | readonly Point[]): Promise<void> {
    const list: readonly Point[] = Array.isArray(points) ? points : [points as Point];
    return this.enqueue(async () => {
      this.check();
      list.forEach((p, i) => checkedLabels(p, i));
      for (const p of list) {
        this.buffer.push(p);
        if (this.buffer.length === 1) this.startTimer();
        if (this.buffer.length >= this.samplesMax) {
          await this.cut();
          this.check();
        }
      }
    });
  }

  /** Cuts the buffer and waits for every batch in flight; resolves with the receipts acked since the last flush/close, in cut order. */
  flush(): Promise<Receipt[]> {
    return this.enqueue(async () => {
      if (this.failure === undefined) await this.cut();
      await this.drain();
      this.check();
      const out = this.done.sort((a, b) => a.seq - b.seq).map((d) => d.receipt);
      this.done = [];
      return out;
    });
  }

  /** flush(), then refuses further points. Safe to call twice. */
  async close(): Promise<Receipt[]> {
    try {
      return await this.flush();
    } finally {
      this.closed = true;
      this.stopTimer();
    }
  }

  /** Points buffered but not sent (e.g. after a failure), removed from the writer. */
  takeUnsent(): Point[] {
    const out = this.buffer;
    this.buffer = [];
    this.stopTimer();
    return out;
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new Error("BatchWriter is closed");
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private startTimer(): void {
    this.stopTimer();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Errors reach the caller through add/flush/close (this.failure); the timer only cuts.
      void this.enqueue(() => (this.failure === undefined ? this.cut() : Promise.resolve())).catch(() => undefined);
    }, this.flushIntervalMs);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Waits for a free slot, then starts the buffer as one batch with a fresh key. Runs inside the chain. */
  private async cut(): Promise<void> {
    if (this.buffer.length === 0) return;
    while (this.inFlight.size >= this.pendingBatchesMax) await new Promise<void>((r) => this.slotWaiters.push(r));
    const points = this.buffer;
    this.buffer = [];
    this.stopTimer();
    const info: BatchInfo = { seq: ++this.seq, idempotencyKey: randomUUID(), samples: points.length };
    const p: Promise<void> = this.send(points, info.idempotencyKey).then(
      (r) => {
        this.done.push({ seq: info.seq, receipt: r.receipt });
        this.callback(() => this.callbacks.onReceipt?.(r.receipt, { ...info, endpoint: r.endpoint, attempts: r.attempts }));
      },
      (e: unknown) => {
        const err = e instanceof HqError ? e : new HqError("internal", e instanceof Error ? e.message : String(e), { cause: e });
        Object.assign(err.details, { batchSeq: info.seq, batchKey: info.idempotencyKey, batchSamples: info.samples });
        this.failedBatches.push({ seq: info.seq, idempotencyKey: info.idempotencyKey, points, error: err });
        this.failure ??= err;
        this.callback(() => this.callbacks.onError?.(err, info));
      },
    );
    const tracked = p.finally(() => {
      this.inFlight.delete(tracked);
      this.slotWaiters.shift()?.();
    });
    this.inFlight.add(tracked);
  }

  /** A throwing callback fails the writer (surfaced by the next call) instead of going unhandled. */
  private callback(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.failure ??= e instanceof HqError ? e : new HqError("internal", `BatchWriter callback threw: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }
}
