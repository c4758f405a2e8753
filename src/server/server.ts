// The HTTP server of a node: node:http, no framework. It listens before the
// engine is open (health answers 503 "starting" meanwhile), serves, and shuts
// down gracefully: stop accepting, let in-flight requests finish up to a
// deadline, then close the engine.

import { SeriesInternCache } from "../core/series-intern.js";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Limits } from "../core/limits.js";
import type { HaRule } from "../ingest/ha-dedup.js";
import type { GapRule } from "../gaps/rules.js";
import { NotFoundError, UnavailableError } from "../core/errors.js";
import type { StorageEngine } from "../storage/engine-api.js";
import { sendError, sendMethodNotAllowed } from "./http-errors.js";
import { serverMetrics, type ServerMetrics } from "./metrics.js";
import { matchRoute, type NodeState, type Route, type RouteContext } from "./routes.js";
import { localReader, type BatchWriter, type Reader } from "./context.js";

export interface HqServerOptions {
  limits: Limits;
  log: Logger;
  registry: Registry;
  version?: string;
  /** Register process metrics (collectDefaultMetrics) into the registry. Default true. */
  processMetrics?: boolean;
  /** Longest a request may take to arrive completely (slow-loris guard). Default 5 min. */
  requestTimeoutMs?: number;
  /** In cluster mode: the node's view of the cluster, served at GET /hq/v1/cluster. */
  clusterInfo?: () => unknown;
  /** Gap rules (docs/gaps.md); none by default (gaps are recorded with learned intervals, never filled). */
  gapRules?: () => readonly GapRule[];
  haRules?: () => readonly HaRule[];
  /** Routes beyond the public API (cluster: the node-to-node message endpoint), matched first. */
  extraRoutes?: readonly Route[];
}

export interface HqServer {
  readonly server: Server;
  readonly metrics: ServerMetrics;
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(host: string, port: number): Promise<{ host: string; port: number; url: string }>;
  /** Makes the node ready: requests are served by this engine from now on. */
  setEngine(engine: StorageEngine): void;
  /** Cluster mode: ingest goes through this write path (the quorum gateway) from now on. */
  setWriter(writer: BatchWriter): void;
  /** Cluster mode: reads go through this reader (majority merge) from now on. */
  setReader(reader: Reader): void;
  state(): NodeState;
  inFlight(): number;
  /**
   * Graceful stop: refuse new connections and requests (503), wait for the
   * in-flight ones up to deadlineMs, cut whatever remains, close the engine.
   */
  shutdown(deadlineMs: number): Promise<void>;
}

export function createHqServer(opts: HqServerOptions): HqServer {
  let engine: StorageEngine | null = null;
  let writer: BatchWriter | null = null;
  let reader: Reader | null = null;
  let engineReader: Reader | null = null;
  let state: NodeState = "starting";
  let inFlight = 0;
  const idleWaiters: (() => void)[] = [];
  const metrics = serverMetrics(opts.registry, { processMetrics: opts.processMetrics ?? true });
  const log = opts.log;

  const ctx: RouteContext = {
    limits: opts.limits,
    log,
    registry: opts.registry,
    metrics,
    version: opts.version ?? "0.0.0",
    startedAtMs: Date.now(),
    remoteWriteSeries: new SeriesInternCache(),
    ...(opts.clusterInfo !== undefined ? { clusterInfo: opts.clusterInfo } : {}),
    state: () => state,
    writer: () => writer,
    gapRules: opts.gapRules ?? (() => []),
    haRules: opts.haRules ?? (() => []),
    reader: () => {
      if (reader !== null) {
        ctx.engine(); // 503 while starting or closing, as local reads
        return reader;
      }
      const e = ctx.engine();
      return (engineReader ??= localReader(e));
    },
    engine: () => {
      if (state === "starting" || engine === null) throw new UnavailableError("the node is starting", 1);
      if (state === "closing") throw new UnavailableError("the node is shutting down", 1);
      return engine;
    },
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const started = process.hrtime.bigint();
    inFlight++;
    let routeName = "unmatched";
    const method = req.method ?? "GET";
    res.on("close", () => {
      inFlight--;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.requests.inc({ route: routeName, method, code: String(res.statusCode) });
      metrics.duration.observe({ route: routeName, method }, seconds);
      if (inFlight === 0) for (const w of idleWaiters.splice(0)) w();
    });
    if (state === "closing") res.setHeader("Connection", "close");

    void (async () => {
      try {
        const url = new URL(req.url ?? "/", "http://localhost");
        const found = matchRoute(url.pathname, method, opts.extraRoutes);
        if (found.route === null) {
          req.resume();
          if (found.allowed !== null) {
            routeName = "method_not_allowed";
            sendMethodNotAllowed(res, method, found.allowed);
            return;
          }
          throw new NotFoundError(`no such endpoint: ${method} ${url.pathname.slice(0, 200)}`);
        }
        routeName = found.route.name;
        await found.route.handler(ctx, req, res, url, found.params);
      } catch (e) {
        sendError(res, e, log, routeName);
      }
    })();
  };

  const server = createServer({ requestTimeout: opts.requestTimeoutMs ?? 5 * 60_000 }, onRequest);
  server.on("clientError", (err, socket) => {
    log.debug({ err: err.message }, "client error");
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });

  return {
    server,
    metrics,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const a = server.address() as AddressInfo;
          const shownHost = a.family === "IPv6" ? `[${a.address}]` : a.address;
          resolve({ host: a.address, port: a.port, url: `http://${shownHost}:${a.port}` });
        });
      });
    },
    setEngine(e) {
      engine = e;
      if (state === "starting") state = "ready";
    },
    setWriter(w) {
      writer = w;
    },
    setReader(r) {
      reader = r;
    },
    state: () => state,
    inFlight: () => inFlight,
    async shutdown(deadlineMs) {
      if (state === "closing") return;
      state = "closing";
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([
          new Promise<boolean>((resolve) => idleWaiters.push(() => resolve(false))),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), deadlineMs);
          }),
        ]);
        clearTimeout(timer);
        if (timedOut) log.warn({ inFlight }, "shutdown deadline passed; cutting the remaining requests");
      }
      server.closeAllConnections();
      await closed;
      if (engine !== null) await engine.close();
    },
  };
}
