// HTTP calls of the CLI (fetch), with retries for what the server says is
// retryable. Writes are idempotent (batch id = Idempotency-Key or content
// digest), so retrying a write whose answer was lost stores nothing twice.

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export interface ServerErrorBody {
  error?: string;
  code?: string;
  retryable?: boolean;
  line?: number;
  [k: string]: unknown;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
}

export function baseUrl(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  try {
    return new URL(withScheme).toString().replace(/\/+$/, "");
  } catch {
    throw new CliError(`bad --url "${raw}"`, 2);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 502 || status === 503 || status === 504;
}

/** Parses the JSON error body of an answer when there is one. */
export function errorBody(text: string): ServerErrorBody | null {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null ? (v as ServerErrorBody) : null;
  } catch {
    return null;
  }
}

export function describeFailure(a: HttpAnswer): string {
  const body = errorBody(a.text);
  const msg = body?.error ?? (a.text.trim().slice(0, 500) || "(empty body)");
  return `HTTP ${a.status}: ${msg}`;
}

/**
 * Sends a request, retrying network errors and 429/502/503/504 (honouring
 * Retry-After) up to `retries` times. Answers are returned whatever their
 * status; the caller decides.
 */
export async function request(
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: Uint8Array | string },
  opts: { retries: number; timeoutMs: number; onRetry?: (why: string, attempt: number) => void },
): Promise<HttpAnswer> {
  for (let attempt = 0; ; attempt++) {
    let why: string;
    let waitMs = Math.min(10_000, 250 * 2 ** attempt);
    try {
      const res = await fetch(url, {
        method: init.method,
        headers: init.headers ?? {},
        ...(init.body !== undefined ? { body: init.body } : {}),
        signal: AbortSignal.timeout(opts.timeoutMs),
      });
      const text = await res.text();
      const a: HttpAnswer = { status: res.status, headers: res.headers, text };
      if (!isRetryableStatus(res.status) || attempt >= opts.retries) return a;
      why = describeFailure(a);
      const after = Number(res.headers.get("retry-after"));
      if (Number.isFinite(after) && after > 0) waitMs = Math.min(60_000, after * 1000);
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      why = `${(e as Error).message}${cause?.code ? ` (${cause.code})` : cause?.message ? ` (${cause.message})` : ""}`;
      if (attempt >= opts.retries) throw new CliError(`cannot reach ${new URL(url).origin}: ${why}`);
    }
    opts.onRetry?.(why, attempt + 1);
    await sleep(waitMs);
  }
}

/** GET/POST that streams the answer body to a sink; non-2xx answers become a CliError with the server's message. */
export async function streamTo(url: string, sink: NodeJS.WritableStream, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    throw new CliError(`cannot reach ${new URL(url).origin}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new CliError(describeFailure({ status: res.status, headers: res.headers, text: await res.text() }));
  if (res.body === null) return;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    if (!sink.write(chunk)) await new Promise<void>((r) => sink.once("drain", () => r()));
  }
}
