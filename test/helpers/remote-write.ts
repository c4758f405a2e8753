// A remote-write request encoder from Prometheus's own schema (prompb), independent of the decoder under test.

import { createRequire } from "node:module";
import protobuf from "protobufjs";

const require = createRequire(import.meta.url);
const snappy = require("snappyjs") as { compress(b: Uint8Array): Uint8Array };

export const PROTO = `
syntax = "proto3";
package prometheus;
message WriteRequest { repeated TimeSeries timeseries = 1; reserved 2; repeated MetricMetadata metadata = 3; }
message MetricMetadata { int32 type = 1; string metric_family_name = 2; string help = 4; string unit = 5; }
message Sample { double value = 1; int64 timestamp = 2; }
message Exemplar { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
message Histogram { uint64 count_int = 1; double sum = 3; int64 timestamp = 15; }
message TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
message Label { string name = 1; string value = 2; }
`;
export const WriteRequest = protobuf.parse(PROTO).root.lookupType("prometheus.WriteRequest");

export interface Ts {
  labels: [string, string][];
  samples?: [value: number, timestampMs: number][];
  exemplars?: number;
  histograms?: number;
}

/** A metadata entry: a family name alone (type counter, help "help"), or every field; type as remote write's enum. */
export type Meta = string | { metric: string; type: number; help: string; unit?: string };

export function body(series: Ts[], metadata: Meta[] = []): Uint8Array {
  const msg = WriteRequest.fromObject({
    timeseries: series.map((s) => ({
      labels: s.labels.map(([name, value]) => ({ name, value })),
      samples: (s.samples ?? []).map(([value, timestamp]) => ({ value, timestamp })),
      exemplars: Array.from({ length: s.exemplars ?? 0 }, (_, i) => ({ labels: [{ name: "trace_id", value: `t${i}` }], value: 1, timestamp: 1_700_000_000_000 })),
      histograms: Array.from({ length: s.histograms ?? 0 }, () => ({ countInt: 1, sum: 1, timestamp: 1_700_000_000_000 })),
    })),
    metadata: metadata.map((m) => (typeof m === "string" ? { type: 1, metricFamilyName: m, help: "help" } : { type: m.type, metricFamilyName: m.metric, help: m.help, unit: m.unit ?? "" })),
  });
  return snappy.compress(WriteRequest.encode(msg).finish());
}

export const HEADERS = {
  "Content-Type": "application/x-protobuf",
  "Content-Encoding": "snappy",
  "X-Prometheus-Remote-Write-Version": "0.1.0",
  "User-Agent": "Prometheus/3.0.0",
};

