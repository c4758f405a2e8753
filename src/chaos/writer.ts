// The fault-injection harness's writer: writes batches of synthetic points
// (deterministic from a seed) over HTTP to a list of node endpoints, retries
// over the endpoints like a client, and keeps a ledger of every batch's fate:
// acked (with its receipt), outcome unknown (gave up, or the connection
// dropped without a later ack), or refused (a 4xx: a bug). The checker
// (checker.ts) compares the ledger with what every node holds.
//
// Memory is bounded per batch, not per point: a batch's points are a pure
// function of (seed, writer, seq) and are regenerated when needed.

import { parseRetryAfter } from "../client/errors.js";
import { classifyFetchError } from "../client/transport.js";

/** The metric every writer writes: Influx measurement `chaos`, field `v`. */
export const CHAOS_MEASUREMENT = "chaos";
export const CHAOS_METRIC = "chaos_v";

/** The shape of one writer's data; with a seq it determines every point of a batch. */
export interface PointSpec {
  /** Label `w` of every series this writer writes ([A-Za-z0-9_.-]+). */
  writer: string;
  seed: number;
  /** Series per batch: label `s` = "0" … String(seriesPerBatch - 1). */
  seriesPerBatch: number;
  /** Points per series per batch. */
  pointsPerSeries: number;
  /** Timestamp of the first point of batch 0, ns (decimal string, lossless). */
  baseNs: string;
  /** Distance between consecutive points of a series, ns (decimal string). */
  stepNs: string;
}

export type BatchOutcome = "acked" | "unknown" | "refused";

/** The receipt fields the ledger keeps (docs/http-api.md). */
export interface LedgerReceipt {
  batchId: string;
  accepted: number;
  duplicates: number;
  duplicate: boolean;
  replicas: string[];
}

/** One batch's fate. */
export interface LedgerBatch {
  seq: number;
  outcome: BatchOutcome;
  /** HTTP requests sent (or tried) for it. */
  attempts: number;
  /** Some attempt may have reached a server without a definite answer. */
  maybeApplied: boolean;
  receipt?: LedgerReceipt;
  /** The endpoint that acked it. */
  ackedBy?: string;
  /** Last failure: HTTP status or network code, and a message (truncated). */
  error?: string;
  /** The answer that refused the batch. */
  status?: number;
}

/** Everything the checker needs about one writer; plain JSON. */
export interface WriterLedger extends PointSpec {
  /** Indexed by seq (0, 1, …): every batch the writer started and finished. */
  batches: LedgerBatch[];
}

export interface ChaosPoint {
  /** Label `s`. */
  series: string;
  tNs: bigint;
  value: number;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function mix(a: number, b: number): number {
  let h = Math.imul(a ^ b, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The value of point k of series s in batch seq: derived from (seed, writer, seq, s, k), 3 decimals. */
export function pointValue(spec: Pick<PointSpec, "writer" | "seed">, seq: number, series: number, k: number): number {
  const h = mix(mix(mix(mix(spec.seed >>> 0, hashString(spec.writer)), seq), series), k);
  return ((h % 2_000_000_000) - 1_000_000_000) / 1000;
}

/** Timestamp of point k of batch seq (any series): strictly increasing in (seq, k). */
export function pointTimeNs(spec: PointSpec, seq: number, k: number): bigint {
  return BigInt(spec.baseNs) + BigInt(seq * spec.pointsPerSeries + k) * BigInt(spec.stepNs);
}

/** The inverse of pointTimeNs: which (seq, k) a timestamp belongs to, or undefined when it is none's. */
export function locateTime(spec: PointSpec, tNs: bigint): { seq: number; k: number } | undefined {
  const off = tNs - BigInt(spec.baseNs);
  const step = BigInt(spec.stepNs);
  if (off < 0n || off % step !== 0n) return undefined;
  const idx = off / step;
  if (idx > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  const n = Number(idx);
  return { seq: Math.floor(n / spec.pointsPerSeries), k: n % spec.pointsPerSeries };
}

/** Every point of batch seq. */
export function* batchPoints(spec: PointSpec, seq: number): Generator<ChaosPoint> {
  for (let s = 0; s < spec.seriesPerBatch; s++)
    for (let k = 0; k < spec.pointsPerSeries; k++) yield { series: String(s), tNs: pointTimeNs(spec, seq, k), value: pointValue(spec, seq, s, k) };
}

/** Influx line protocol of batch seq (precision ns). `valueOf` overrides values (tests: wrong values). */
export function batchBody(spec: PointSpec, seq: number, valueOf?: (p: ChaosPoint) => number): string {
  const lines: string[] = [];
  for (const p of batchPoints(spec, seq)) lines.push(`${CHAOS_MEASUREMENT},w=${spec.writer},s=${p.series} v=${valueOf ? valueOf(p) : p.value} ${p.tNs}`);
  return lines.join("\n");
}

/** The idempotency key of batch seq. */
export function batchKey(spec: PointSpec, seq: number): string {
  return `chaos-${spec.writer}-${spec.seed}-${seq}`;
}

export interface LoggingWriterOptions {
  /** Node base URLs ("http://127.0.0.1:8428"); requests rotate over them on retryable failures. */
  endpoints: string[];
  /** Label `w` ([A-Za-z0-9_.-]+, unique per writer of a run). */
  writer: string;
  seed?: number;
  seriesPerBatch?: number;
  pointsPerSeries?: number;
  /** First timestamp, ns; default 1_700_000_000_000_000_000 (2023-11-14). */
  baseNs?: bigint;
  /** Default 1 ms. */
  stepNs?: bigint;
  /** Stop after this many batches (finished then resolves); default: until stop(). */
  batchesMax?: number;
  /** Pause between batches; default 0. */
  intervalMs?: number;
  /** Give a batch up (outcome unknown) after this long without an ack; default 10 s. */
  batchDeadlineMs?: number;
  /** One request's deadline; default 2 s (then the outcome of that attempt is unknown). */
  requestTimeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Send each batch to the next endpoint (every node a gateway); default false: move on failures only. */
  rotateEveryBatch?: boolean;
  /**
   * Test hook: called after an attempt got its answer; true discards the
   * answer as if the connection had dropped (the server did apply it).
   */
  dropResponse?: (seq: number, attempt: number) => boolean;
  /**
   * Called as each batch gets its outcome, with when it started and ended (performance.now() ms): per-ack
   * latency, and which endpoint acked when (scenarios.ts measures failover and latency under delay with it).
   */
  onBatch?: (batch: LedgerBatch, t: { startMs: number; endMs: number }) => void;
}

export interface WriterStats {
  writer: string;
  batches: number;
  ackedBatches: number;
  ackedPoints: number;
  /** Acks whose receipt said `duplicate: true` (a retry of a batch already stored). */
  duplicateAcks: number;
  /** Requests beyond the first of each batch. */
  retries: number;
  unknownBatches: number;
  refusedBatches: number;
  /** Longest time from a failure (with no ack since) to the next ack: the failover figure. */
  longestFailoverMs: number;
  /** A failure with no ack since is going on. */
  failing: boolean;
}

const WRITER_NAME = /^[A-Za-z0-9_.-]+$/;

export class LoggingWriter {
  private readonly opts: Required<Omit<LoggingWriterOptions, "batchesMax" | "dropResponse" | "onBatch">> & Pick<LoggingWriterOptions, "batchesMax" | "dropResponse" | "onBatch">;
  private readonly spec: PointSpec;
  private readonly batches: LedgerBatch[] = [];
  private endpoint = 0;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private rng: number;
  private firstFailureAt: number | undefined;
  private readonly st = { ackedBatches: 0, ackedPoints: 0, duplicateAcks: 0, retries: 0, unknownBatches: 0, refusedBatches: 0, longestFailoverMs: 0 };
  private wake: (() => void) | undefined;

  constructor(opts: LoggingWriterOptions) {
    if (opts.endpoints.length === 0) throw new RangeError("LoggingWriter: no endpoint");
    if (!WRITER_NAME.test(opts.writer)) throw new RangeError(`LoggingWriter: writer name ${JSON.stringify(opts.writer)} must match ${WRITER_NAME}`);
    this.opts = {
      seed: 1,
      seriesPerBatch: 10,
      pointsPerSeries: 5,
      baseNs: 1_700_000_000_000_000_000n,
      stepNs: 1_000_000n,
      intervalMs: 0,
      batchDeadlineMs: 10_000,
      requestTimeoutMs: 2_000,
      backoffInitialMs: 20,
      backoffMaxMs: 1_000,
      rotateEveryBatch: false,
      ...opts,
      endpoints: opts.endpoints.map((u) => u.replace(/\/+$/, "")),
    };
    const o = this.opts;
    for (const [k, v] of [["seriesPerBatch", o.seriesPerBatch], ["pointsPerSeries", o.pointsPerSeries]] as const)
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`LoggingWriter: ${k} must be an integer >= 1, got ${v}`);
    if (o.stepNs < 1n) throw new RangeError("LoggingWriter: stepNs must be >= 1");
    this.spec = {
      writer: o.writer,
      seed: o.seed,
      seriesPerBatch: o.seriesPerBatch,
      pointsPerSeries: o.pointsPerSeries,
      baseNs: String(o.baseNs),
      stepNs: String(o.stepNs),
    };
    this.rng = mix(o.seed >>> 0, hashString(o.writer)) || 1;
  }

  /** Starts writing (once); `finished` resolves when it ends (batchesMax reached or stopped). */
  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  /** Resolves when the writing loop has ended. */
  get finished(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  /** Stops after the batch in flight has an outcome (ack, refusal, or its deadline); answers the ledger. */
  async stop(): Promise<WriterLedger> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
    return this.ledger();
  }

  /** A snapshot of the ledger (plain JSON; batches are shared, not copied). */
  ledger(): WriterLedger {
    return { ...this.spec, batches: [...this.batches] };
  }

  stats(): WriterStats {
    return { writer: this.spec.writer, batches: this.batches.length, ...this.st, failing: this.firstFailureAt !== undefined };
  }

  private random(): number {
    // xorshift32: deterministic jitter per (seed, writer).
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng / 0x1_0000_0000;
  }

  /** Waits ms, or less when stop() is called (stop cuts pauses between batches only). */
  private pause(ms: number, interruptible: boolean): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((r) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        r();
      }
      if (interruptible) this.wake = done;
    });
  }

  private async run(): Promise<void> {
    for (let seq = 0; !this.stopping && (this.opts.batchesMax === undefined || seq < this.opts.batchesMax); seq++) {
      if (seq > 0) await this.pause(this.opts.intervalMs, true);
      if (this.stopping) break;
      const startMs = performance.now();
      const rec = await this.writeBatch(seq);
      this.batches.push(rec);
      this.opts.onBatch?.(rec, { startMs, endMs: performance.now() });
    }
  }

  private failed(): void {
    this.firstFailureAt ??= performance.now();
  }

  private async writeBatch(seq: number): Promise<LedgerBatch> {
    const o = this.opts;
    const body = batchBody(this.spec, seq);
    const key = batchKey(this.spec, seq);
    const deadline = performance.now() + o.batchDeadlineMs;
    const rec: LedgerBatch = { seq, outcome: "unknown", attempts: 0, maybeApplied: false };
    for (let attempt = 0; ; attempt++) {
      const base = o.endpoints[this.endpoint % o.endpoints.length]!;
      const url = `${base}/api/v2/write?precision=ns`;
      rec.attempts++;
      if (attempt > 0) this.st.retries++;
      let retryAfterMs: number | undefined;
      const left = deadline - performance.now();
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": "text/plain; charset=utf-8", "Idempotency-Key": key, Accept: "application/json" },
          body,
          signal: AbortSignal.timeout(Math.max(1, Math.ceil(Math.min(o.requestTimeoutMs, left)))),
        });
        const text = await res.text();
        if (o.dropResponse?.(seq, attempt) === true) {
          rec.maybeApplied = true;
          rec.error = `answer ${res.status} dropped (test hook)`;
        } else if (res.status === 200 || res.status === 204) {
          const receipt = parseReceipt(res.status === 200 ? text : res.headers.get("x-hq-receipt"));
          if (receipt === undefined) {
            // An ack we cannot read is still an ack; keep what we know.
            rec.error = `unreadable receipt: ${text.slice(0, 200)}`;
          }
          rec.outcome = "acked";
          if (receipt) rec.receipt = receipt;
          rec.ackedBy = base;
          if (o.rotateEveryBatch) this.endpoint++;
          this.st.ackedBatches++;
          this.st.ackedPoints += o.seriesPerBatch * o.pointsPerSeries;
          if (receipt?.duplicate === true) this.st.duplicateAcks++;
          if (this.firstFailureAt !== undefined) {
            this.st.longestFailoverMs = Math.max(this.st.longestFailoverMs, performance.now() - this.firstFailureAt);
            this.firstFailureAt = undefined;
          }
          return rec;
        } else if (res.status === 429 || res.status >= 500) {
          // 429: not taken. 5xx: a node may have stored it before failing (say, no quorum).
          if (res.status !== 429) rec.maybeApplied = true;
          rec.error = `HTTP ${res.status}: ${text.slice(0, 200)}`;
          const ra = parseRetryAfter(res.headers.get("retry-after"));
          if (ra !== undefined) retryAfterMs = Math.min(ra * 1000, o.backoffMaxMs);
        } else {
          rec.outcome = "refused";
          rec.status = res.status;
          rec.error = `HTTP ${res.status}: ${text.slice(0, 500)}`;
          this.st.refusedBatches++;
          this.failed();
          return rec;
        }
      } catch (e) {
        const ce = classifyFetchError(e, url);
        if (ce.sent) rec.maybeApplied = true;
        rec.error = ce.message.slice(0, 300);
      }
      this.failed();
      this.endpoint++;
      const wait = retryAfterMs ?? Math.floor(this.random() * (Math.min(o.backoffMaxMs, o.backoffInitialMs * 2 ** Math.min(attempt, 20)) + 1));
      if (performance.now() + wait >= deadline) {
        rec.outcome = "unknown";
        this.st.unknownBatches++;
        return rec;
      }
      await this.pause(wait, false);
    }
  }
}

function parseReceipt(raw: string | null): LedgerReceipt | undefined {
  if (raw === null || raw === "") return undefined;
  try {
    const r = JSON.parse(raw) as Record<string, unknown>;
    if (typeof r["batchId"] !== "string") return undefined;
    return {
      batchId: r["batchId"],
      accepted: Number(r["accepted"]),
      duplicates: Number(r["duplicates"]),
      duplicate: r["duplicate"] === true,
      replicas: Array.isArray(r["replicas"]) ? r["replicas"].map(String) : [],
    };
  } catch {
    return undefined;
  }
}
