// HTTP and ingest metrics, registered into the node's prom-client Registry
// (the engine registers its own into the same one).

import { Counter, Histogram, collectDefaultMetrics, type Registry } from "prom-client";

export interface ServerMetrics {
  requests: Counter<"route" | "method" | "code">;
  duration: Histogram<"route" | "method">;
  ingestSamples: Counter<"format">;
  ingestRequests: Counter<"format" | "outcome">;
}

const registered = new WeakMap<Registry, ServerMetrics>();

/** Registers the server's metrics (once per registry) and the process metrics. */
export function serverMetrics(registry: Registry, opts: { processMetrics?: boolean } = {}): ServerMetrics {
  const existing = registered.get(registry);
  if (existing !== undefined) return existing;
  const m: ServerMetrics = {
    requests: new Counter({
      name: "hqts_http_requests_total",
      help: "HTTP requests answered, by route, method and status code.",
      labelNames: ["route", "method", "code"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "hqts_http_request_duration_seconds",
      help: "Time to answer an HTTP request (streamed answers: until the last byte), by route.",
      labelNames: ["route", "method"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    ingestSamples: new Counter({
      name: "hqts_ingest_samples_total",
      help: "Samples received in write requests that were acknowledged (duplicates included), by format. rate() gives samples/s.",
      labelNames: ["format"],
      registers: [registry],
    }),
    ingestRequests: new Counter({
      name: "hqts_ingest_requests_total",
      help: "Write requests by format and outcome (ok, duplicate, or the error code).",
      labelNames: ["format", "outcome"],
      registers: [registry],
    }),
  };
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  registered.set(registry, m);
  return m;
}
