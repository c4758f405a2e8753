// The write client of bench/write-shapes.ts: a closed loop (C workers taking
// the next request from one shared queue, in order) and an open loop (requests
// sent on a fixed schedule whatever is outstanding; latency counted from the
// scheduled send time, so a slow answer cannot hide the requests behind it).
// Request i goes to node i mod N (round robin); an answer 429 or 503 is retried
// after Retry-After through the next node and counted; any other non-2xx answer,
// or a dropped connection, fails the run, except the keep-alive race below.
//
// node:http with keep-alive, as lib/http.ts, but idle sockets are closed by the
// client after 4 s, before the server's 5 s keep-alive timeout (Node's default,
// which HQ-TS keeps), and a request whose *reused* socket was reset before any
// answer (the server closed that idle socket as the request went out) is sent
// again on a fresh one and counted apart ("resets"): what Node's documentation
// prescribes for that race, and what HTTP clients such as Prometheus's do.

import { Agent, request } from "node:http";
import { delay, excerpt } from "./http.js";
import type { WriteReq } from "./shape-data.js";

const REQUEST_TIMEOUT_MS = 120_000;
/** Give up on a request still refused (429/503) after this long. */
const RETRY_BUDGET_MS = 120_000;
const RETRY_AFTER_DEFAULT_S = 1;
const RETRY_AFTER_MAX_S = 10;
const IDLE_SOCKET_MS = 4_000;
const RESETS_MAX = 3;

export class WriteFailed extends Error {}

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: Buffer;
}

class ConnectionError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly reusedSocket: boolean,
  ) {
    super(message);
  }
}

class Poster {
  private readonly agent: Agent;

  constructor(
    readonly baseUrl: string,
    maxSockets: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets, timeout: IDLE_SOCKET_MS });
  }

  close(): void {
    this.agent.destroy();
  }

  post(req: WriteReq): Promise<Answer> {
    const url = new URL(req.path, this.baseUrl);
    return new Promise((resolve, reject) => {
      const r = request(url, { method: "POST", agent: this.agent, headers: { ...req.headers, "content-length": String(req.body.length) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e) => reject(new ConnectionError(e.message, (e as NodeJS.ErrnoException).code, false)));
        res.on("end", () => {
          const ra = res.headers["retry-after"];
          resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(ra) ? ra[0] : ra, body: Buffer.concat(chunks) });
        });
      });
      r.setTimeout(REQUEST_TIMEOUT_MS, () => r.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      r.on("error", (e) => reject(new ConnectionError(e.message, (e as NodeJS.ErrnoException).code, r.reusedSocket)));
      r.end(req.body);
    });
  }
}

export interface SendStats {
  statuses: Record<string, number>;
  /** Attempts answered 429/503 and sent again. */
  retries: number;
  /** Attempts on a reused keep-alive socket reset before any answer, sent again on a new one. */
  resets: number;
  ackedRequests: number;
  ackedSamples: number;
}

export const newStats = (): SendStats => ({ statuses: {}, retries: 0, resets: 0, ackedRequests: 0, ackedSamples: 0 });

export class Sender {
  private readonly clients: Poster[];
  /** Set once any request failed for good: the loops stop taking new requests. */
  failure: Error | null = null;

  constructor(urls: readonly string[], socketsPerNode: number) {
    this.clients = urls.map((u) => new Poster(u, socketsPerNode));
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  /** Sends request `req` (global index i) until acked; throws WriteFailed on a non-retryable answer or after RETRY_BUDGET_MS. */
  async send(i: number, req: WriteReq, stats: SendStats): Promise<void> {
    const t0 = performance.now();
    let resets = 0;
    for (let attempt = 0; ; attempt++) {
      const client = this.clients[(i + attempt - resets) % this.clients.length]!;
      let a: Answer;
      try {
        a = await client.post(req);
      } catch (e) {
        const ce = e instanceof ConnectionError ? e : null;
        if (ce !== null && ce.reusedSocket && (ce.code === "ECONNRESET" || ce.code === "EPIPE") && resets < RESETS_MAX) {
          resets++;
          stats.resets++;
          continue;
        }
        stats.statuses["error"] = (stats.statuses["error"] ?? 0) + 1;
        throw this.fail(new WriteFailed(`request ${i} to ${client.baseUrl}${req.path}: ${(e as Error).message}${ce?.reusedSocket === true ? " (on a reused keep-alive socket)" : ""}`));
      }
      const status = a.status;
      stats.statuses[String(status)] = (stats.statuses[String(status)] ?? 0) + 1;
      if (status >= 200 && status < 300) {
        stats.ackedRequests++;
        stats.ackedSamples += req.samples;
        return;
      }
      if ((status === 429 || status === 503) && performance.now() - t0 < RETRY_BUDGET_MS && this.failure === null) {
        stats.retries++;
        const ra = Number(a.retryAfter);
        await delay(Math.min(a.retryAfter !== undefined && Number.isFinite(ra) && ra >= 0 ? ra : RETRY_AFTER_DEFAULT_S, RETRY_AFTER_MAX_S) * 1000);
        continue;
      }
      throw this.fail(new WriteFailed(`request ${i} to ${client.baseUrl}${req.path} (${req.samples} samples): HTTP ${status} ${excerpt(a.body, 300)}`));
    }
  }

  private fail(e: Error): Error {
    if (this.failure === null) this.failure = e;
    return e;
  }
}

export const pct = (sorted: readonly number[], p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;

export interface LatencySummary {
  n: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export function summarize(lat: readonly number[]): LatencySummary {
  const s = [...lat].sort((a, b) => a - b);
  return { n: s.length, p50Ms: pct(s, 50), p90Ms: pct(s, 90), p99Ms: pct(s, 99), maxMs: s[s.length - 1] ?? Number.NaN };
}

export interface ClosedResult {
  concurrency: number;
  firstIndex: number;
  /** Index of the first request not sent. */
  nextIndex: number;
  requests: number;
  samples: number;
  /** From the first send to the last ack. */
  wallS: number;
  samplesPerSec: number;
  requestsPerSec: number;
  /** Per request, from its first send to its ack (Retry-After waits included). */
  latency: LatencySummary;
  stats: SendStats;
  /** True if the run stopped at its time limit rather than at the end of the requests. */
  timeLimited: boolean;
}

/**
 * `concurrency` workers take requests first..end-1 in order from one queue; each sends its next when the previous is
 * acked. With `seconds`, no request is started after that long (the ones in flight finish).
 */
export async function closedLoop(sender: Sender, reqs: readonly WriteReq[], o: { concurrency: number; first?: number; end?: number; seconds?: number; onProgress?: (done: number) => void }): Promise<ClosedResult> {
  const first = o.first ?? 0;
  const end = Math.min(o.end ?? reqs.length, reqs.length);
  const stats = newStats();
  const lat: number[] = [];
  let next = first;
  let timeLimited = false;
  const t0 = performance.now();
  const stopAt = o.seconds !== undefined ? t0 + o.seconds * 1000 : Number.POSITIVE_INFINITY;
  let lastAck = t0;
  const worker = async (): Promise<void> => {
    while (next < end && sender.failure === null) {
      if (performance.now() >= stopAt) {
        timeLimited = true;
        return;
      }
      const i = next++;
      const s = performance.now();
      await sender.send(i, reqs[i]!, stats);
      const e = performance.now();
      lat.push(e - s);
      lastAck = Math.max(lastAck, e);
      o.onProgress?.(stats.ackedRequests);
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(o.concurrency, end - first)) }, () => worker()));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected !== undefined) throw sender.failure ?? (rejected.reason as Error);
  const wallS = (lastAck - t0) / 1000;
  return {
    concurrency: o.concurrency,
    firstIndex: first,
    nextIndex: next,
    requests: stats.ackedRequests,
    samples: stats.ackedSamples,
    wallS,
    samplesPerSec: stats.ackedSamples / wallS,
    requestsPerSec: stats.ackedRequests / wallS,
    latency: summarize(lat),
    stats,
    timeLimited,
  };
}

export interface OpenRecord {
  /** Scheduled send time, ms from the loop's start. */
  dueMs: number;
  sentMs: number;
  ackMs: number;
  /** From the scheduled send time (or the actual one if a timer fired early) to the ack. */
  latencyMs: number;
}

export interface OpenResult {
  ratePerSec: number;
  firstIndex: number;
  nextIndex: number;
  requests: number;
  samples: number;
  wallS: number;
  samplesPerSec: number;
  latency: LatencySummary;
  /** Service time, from the actual send. */
  service: LatencySummary;
  /** Worst lag of the sender behind its own schedule (large = the client was the limit). */
  maxSendLagMs: number;
  stats: SendStats;
  records: OpenRecord[];
}

/**
 * Request first+k is due at start + k/rate s and sent then, whatever is still outstanding, until `keepGoing(elapsedMs)`
 * says stop (checked before each send) or the requests run out; `onTick(elapsedMs)` runs before each send.
 */
export async function openLoop(
  sender: Sender,
  reqs: readonly WriteReq[],
  o: { ratePerSec: number; first: number; keepGoing: (elapsedMs: number) => boolean; onTick?: (elapsedMs: number) => void },
): Promise<OpenResult> {
  const stats = newStats();
  const records: OpenRecord[] = [];
  const inflight: Promise<void>[] = [];
  let firstError: Error | null = null;
  let maxLag = 0;
  const t0 = performance.now() + 20;
  let k = 0;
  for (; o.first + k < reqs.length && sender.failure === null; k++) {
    const due = t0 + (k * 1000) / o.ratePerSec;
    const wait = due - performance.now();
    if (wait > 0) await delay(wait);
    const now = performance.now();
    o.onTick?.(now - t0);
    if (!o.keepGoing(now - t0)) break;
    maxLag = Math.max(maxLag, now - due);
    const i = o.first + k;
    const from = Math.min(due, now);
    // Handled at once (a rejection left pending until the loop ends would be an unhandled one).
    inflight.push(
      sender.send(i, reqs[i]!, stats).then(
        () => {
          const e = performance.now();
          records.push({ dueMs: due - t0, sentMs: now - t0, ackMs: e - t0, latencyMs: e - from });
        },
        (e: unknown) => {
          firstError ??= e as Error;
        },
      ),
    );
  }
  await Promise.all(inflight);
  if (firstError !== null) throw sender.failure ?? firstError;
  const wallS = records.reduce((m, r) => Math.max(m, r.ackMs), 0) / 1000;
  return {
    ratePerSec: o.ratePerSec,
    firstIndex: o.first,
    nextIndex: o.first + k,
    requests: stats.ackedRequests,
    samples: stats.ackedSamples,
    wallS,
    samplesPerSec: stats.ackedSamples / wallS,
    latency: summarize(records.map((r) => r.latencyMs)),
    service: summarize(records.map((r) => r.ackMs - r.sentMs)),
    maxSendLagMs: maxLag,
    stats,
    records,
  };
}
