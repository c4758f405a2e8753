// Metric metadata as Prometheus's remote write carries it and its API answers
// it: a type, a help text and a unit per metric family. Plain types, shared by
// the remote-write decoder, the store (storage/metadata.ts) and the API.

/** Prometheus's metric types in the order of remote write's MetricType enum (0 = unknown), as its API names them. */
export const METRIC_TYPES = ["unknown", "counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"] as const;
export type MetricType = (typeof METRIC_TYPES)[number];

export interface MetricMetadata {
  metric: string;
  type: MetricType;
  help: string;
  unit: string;
}

/** One answer entry of /api/v1/metadata. */
export interface MetadataEntry {
  type: MetricType;
  help: string;
  unit: string;
}
