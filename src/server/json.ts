// JSON for answers. JSON has no NaN or ±Inf and no int64: sample values that
// are not finite are written as the strings "NaN", "+Inf", "-Inf" (what the
// Prometheus API does for sample values, and what our /api/v1/import accepts
// back); bigints are written as decimal strings; -0 stays "-0" so a value
// exported and re-imported keeps its exact bits (core/batch.ts sameValue).

/** A sample value as a JSON token. */
export function jsonNumber(v: number): string {
  if (Number.isFinite(v)) return Object.is(v, -0) ? "-0" : String(v);
  if (v !== v) return '"NaN"';
  return v > 0 ? '"+Inf"' : '"-Inf"';
}

function replacer(_key: string, v: unknown): unknown {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number" && !Number.isFinite(v)) return v !== v ? "NaN" : v > 0 ? "+Inf" : "-Inf";
  return v;
}

/** JSON.stringify that keeps NaN/Inf and bigints instead of turning them into null or throwing. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, replacer);
}
