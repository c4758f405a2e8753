// A minimal HTTP client on node:http with keep-alive, so that both databases
// see the same client: same connection reuse, same request bytes, no
// compression, no retries hidden in a library.

import { Agent, request } from "node:http";

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export class HttpClient {
  readonly agent: Agent;

  constructor(
    readonly baseUrl: string,
    maxSockets = 1,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  close(): void {
    this.agent.destroy();
  }

  send(method: string, path: string, body?: Buffer, headers: Record<string, string> = {}, timeoutMs = 600_000): Promise<HttpResponse> {
    const url = new URL(path, this.baseUrl);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: this.agent,
          headers: body !== undefined ? { "content-type": "application/json", "content-length": String(body.length), ...headers } : headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url.pathname}: no answer within ${timeoutMs} ms`)));
      req.on("error", reject);
      if (body !== undefined) req.end(body);
      else req.end();
    });
  }

  get(path: string, timeoutMs?: number): Promise<HttpResponse> {
    return this.send("GET", path, undefined, {}, timeoutMs);
  }
}

/** Polls GET path until it answers 200, or throws after deadlineMs. */
export async function waitReady(client: HttpClient, path: string, deadlineMs: number, isDead: () => string | null): Promise<number> {
  const t0 = performance.now();
  let lastErr = "";
  while (performance.now() - t0 < deadlineMs) {
    const dead = isDead();
    if (dead !== null) throw new Error(`process exited before becoming ready (${dead})`);
    try {
      const r = await client.get(path, 2_000);
      if (r.status === 200) return performance.now() - t0;
      lastErr = `HTTP ${r.status}`;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    await delay(100);
  }
  throw new Error(`not ready after ${deadlineMs} ms (last: ${lastErr})`);
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function excerpt(b: Buffer, n = 300): string {
  const s = b.toString("utf8", 0, Math.min(b.length, n));
  return b.length > n ? `${s}...` : s;
}
