// Request parameters and JSON answers; bodies are read by net/body.ts.

import type { IncomingMessage, ServerResponse } from "node:http";
import { readBody } from "../net/body.js";
import { toJson } from "./json.js";

export { readBody };

/** Query parameters, plus the form body for POSTs with application/x-www-form-urlencoded (Prometheus API). */
export async function requestParams(req: IncomingMessage, url: URL, formBytesMax: number): Promise<URLSearchParams> {
  const params = new URLSearchParams(url.searchParams);
  if (req.method === "POST") {
    const type = String(req.headers["content-type"] ?? "").toLowerCase();
    if (type.startsWith("application/x-www-form-urlencoded")) {
      const body = await readBody(req, formBytesMax);
      for (const [k, v] of new URLSearchParams(body.toString("utf8"))) params.append(k, v);
    } else {
      req.resume();
    }
  }
  return params;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = toJson(body);
  res.writeHead(status, { ...headers, "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}

/**
 * Writes a chunk; when the socket's buffer is full, returns a promise that
 * resolves true once it drained or false if the client went away (backpressure
 * for streamed answers). Returns null when the caller may go on at once.
 */
export function writeChunk(res: ServerResponse, chunk: string | Uint8Array): Promise<boolean> | null {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(chunk)) return null;
  return new Promise<boolean>((resolve) => {
    const onDrain = (): void => {
      res.off("close", onClose);
      resolve(true);
    };
    const onClose = (): void => {
      res.off("drain", onDrain);
      resolve(false);
    };
    res.once("drain", onDrain);
    res.once("close", onClose);
  });
}
