// A tiny node:http server on 127.0.0.1 (port 0) whose answers a test scripts
// request by request, recording what it saw (method, path, headers, body).

import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export type Action =
  | { status: number; headers?: Record<string, string>; body?: string | object }
  /** Destroy the connection without answering (the outcome is unknown to the client). */
  | "reset"
  /** Never answer (the client's timeout fires). */
  | "hang";

export interface Scripted {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

/** `script(seen, n)` decides the answer to the n-th request (0-based). */
export async function scriptedServer(script: (req: Seen, n: number) => Action): Promise<Scripted> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s: Seen = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      const n = seen.length;
      seen.push(s);
      const a = script(s, n);
      if (a === "reset") {
        req.socket.destroy();
        return;
      }
      if (a === "hang") return;
      const body = a.body === undefined ? "" : typeof a.body === "string" ? a.body : JSON.stringify(a.body);
      res.writeHead(a.status, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)), ...(a.headers ?? {}) });
      res.end(body);
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A receipt as the server answers it. */
export function receiptBody(batchId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { batchId, sha256: "ab".repeat(32), shardId: 0, hlc: "1", samples: 1, accepted: 1, duplicates: 0, conflicts: [], duplicate: false, replicas: ["n1"], ...extra };
}

/** An error body in the server's shape (src/server/http-errors.ts). */
export function errorBody(code: string, message: string, retryable: boolean, details: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...details, status: "error", errorType: "x", error: message, code, retryable };
}
