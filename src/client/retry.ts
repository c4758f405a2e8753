// The retry policy as pure functions (no I/O, no clock): exponential backoff
// with "full jitter" (AWS Architecture Blog, "Exponential Backoff And
// Jitter"): wait a uniform random time in [0, min(max, initial * 2^k)].

export interface RetryPolicy {
  /** Attempts per call, the first included (>= 1). */
  attemptsMax: number;
  /** Backoff cap of the first wait. */
  backoffInitialMs: number;
  /** Backoff cap, doubled per wait up to this. */
  backoffMaxMs: number;
  /** true: full jitter (uniform in [0, cap]); false: wait the cap exactly. */
  jitter: boolean;
  /** A server's Retry-After is honoured up to this (per endpoint: other endpoints may be tried sooner). */
  retryAfterMaxMs: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({
  attemptsMax: 10,
  backoffInitialMs: 50,
  backoffMaxMs: 2_000,
  jitter: true,
  retryAfterMaxMs: 30_000,
});

export function resolveRetry(p: Partial<RetryPolicy> | undefined): RetryPolicy {
  const r: RetryPolicy = { ...DEFAULT_RETRY, ...(p ?? {}) };
  const ok = (n: number, min: number): boolean => Number.isFinite(n) && n >= min;
  if (!ok(r.attemptsMax, 1) || !Number.isInteger(r.attemptsMax)) throw new RangeError(`retry.attemptsMax must be an integer >= 1, got ${r.attemptsMax}`);
  if (!ok(r.backoffInitialMs, 0)) throw new RangeError(`retry.backoffInitialMs must be >= 0, got ${r.backoffInitialMs}`);
  if (!ok(r.backoffMaxMs, r.backoffInitialMs)) throw new RangeError(`retry.backoffMaxMs must be >= backoffInitialMs, got ${r.backoffMaxMs}`);
  if (!ok(r.retryAfterMaxMs, 0)) throw new RangeError(`retry.retryAfterMaxMs must be >= 0, got ${r.retryAfterMaxMs}`);
  return r;
}

/** The cap of the k-th wait (k from 0): min(max, initial * 2^k). */
export function backoffCapMs(k: number, p: RetryPolicy): number {
  return Math.min(p.backoffMaxMs, p.backoffInitialMs * 2 ** Math.min(k, 52));
}

/** The k-th wait: full jitter over the cap, or the cap itself. `random` returns [0, 1). */
export function backoffMs(k: number, p: RetryPolicy, random: () => number): number {
  const cap = backoffCapMs(k, p);
  return p.jitter ? Math.floor(random() * (cap + 1)) : cap;
}
