// The write side: POST every request body to /api/v1/import, in order, from
// one client (or `concurrency` workers taking the next body from one queue).

import { delay, excerpt, type HttpClient } from "./http.js";

export interface IngestResult {
  concurrency: number;
  requests: number;
  samples: number;
  bodyBytes: number;
  seconds: number;
  samplesPerSec: number;
  /** Requests answered 429/503 and sent again (after Retry-After); their time is included. */
  retries: number;
  statuses: Record<string, number>;
  /** Per-request latency, ms. */
  requestP50Ms: number;
  requestMaxMs: number;
}

const MAX_RETRIES = 20;

export async function ingest(client: HttpClient, requests: readonly Buffer[], requestSamples: readonly number[], concurrency: number, progress?: (done: number, total: number) => void): Promise<IngestResult> {
  if (concurrency < 1) throw new Error("concurrency must be >= 1");
  const statuses: Record<string, number> = {};
  const lat: number[] = [];
  let retries = 0;
  let next = 0;
  let done = 0;
  const post = async (i: number): Promise<void> => {
    const body = requests[i];
    if (body === undefined) return;
    for (let attempt = 0; ; attempt++) {
      const s = performance.now();
      const r = await client.send("POST", "/api/v1/import", body);
      lat.push(performance.now() - s);
      statuses[String(r.status)] = (statuses[String(r.status)] ?? 0) + 1;
      if (r.status >= 200 && r.status < 300) return;
      if ((r.status === 429 || r.status === 503) && attempt < MAX_RETRIES) {
        retries++;
        const ra = Number(r.headers["retry-after"]);
        await delay(Number.isFinite(ra) && ra > 0 ? Math.min(ra, 10) * 1000 : 500);
        continue;
      }
      throw new Error(`POST /api/v1/import (request ${i + 1}/${requests.length}, ${requestSamples[i] ?? "?"} samples): HTTP ${r.status} ${excerpt(r.body)}`);
    }
  };
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < requests.length) {
      const i = next++;
      await post(i);
      done++;
      progress?.(done, requests.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, requests.length) }, () => worker()));
  const seconds = (performance.now() - t0) / 1000;
  const samples = requestSamples.reduce((a, b) => a + b, 0);
  lat.sort((a, b) => a - b);
  return {
    concurrency,
    requests: requests.length,
    samples,
    bodyBytes: requests.reduce((a, b) => a + b.length, 0),
    seconds,
    samplesPerSec: samples / seconds,
    retries,
    statuses,
    requestP50Ms: lat[Math.max(0, Math.ceil(lat.length / 2) - 1)] ?? Number.NaN,
    requestMaxMs: lat[lat.length - 1] ?? Number.NaN,
  };
}
