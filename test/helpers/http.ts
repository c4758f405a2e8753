// Small HTTP helpers for integration tests (fetch against a real node).

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: () => unknown;
}

export async function http(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {}): Promise<Answer> {
  const res = await fetch(url, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

export interface ExportLine {
  metric: Record<string, string>;
  values: (number | string)[];
  timestamps: number[];
  timestamps_ns: string[];
  origins: string[];
  batches: string[];
}

/** GET /api/v1/export for one or more selectors; parses the JSON lines. */
export async function exportSeries(base: string, match: string | string[], extra: Record<string, string> = {}): Promise<ExportLine[]> {
  const p = new URLSearchParams();
  for (const m of Array.isArray(match) ? match : [match]) p.append("match[]", m);
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  const a = await http(`${base}/api/v1/export?${p.toString()}`);
  if (a.status !== 200) throw new Error(`export answered ${a.status}: ${a.text}`);
  return a.text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as ExportLine);
}

/** Sorted by series text, for comparisons independent of order. */
export function byMetric(lines: ExportLine[]): ExportLine[] {
  return [...lines].sort((a, b) => (JSON.stringify(a.metric) < JSON.stringify(b.metric) ? -1 : 1));
}

export interface ReceiptJson {
  batchId: string;
  sha256: string;
  samples: number;
  accepted: number;
  duplicates: number;
  duplicate: boolean;
  conflicts: unknown[];
  replicas: string[];
  hlc: string;
  shardId: number;
}
