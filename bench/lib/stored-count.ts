// Counts what a database holds for a selector by streaming /api/v1/export
// (JSON lines, one series per line; HQ-TS and VictoriaMetrics both answer it):
// series, points, and timestamps repeated within a series. For an HQ-TS cluster
// node, `consistency=local` counts that node's own replica, not a majority merge.

import { request } from "node:http";
import { delay, excerpt } from "./http.js";

export interface StoredCount {
  url: string;
  series: number;
  points: number;
  duplicated: number;
}

export class ExportStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** `range` (ms) null: all of time. */
export function countStored(url: string, selector: string, range: { minTs: number; maxTs: number } | null, local: boolean): Promise<StoredCount> {
  // A margin of a minute either side; unix seconds, which both parse.
  const window = range === null ? "" : `&start=${Math.floor(range.minTs / 1000) - 60}&end=${Math.ceil(range.maxTs / 1000) + 60}`;
  const u = new URL(`/api/v1/export?match[]=${encodeURIComponent(selector)}${window}${local ? "&consistency=local" : ""}`, url);
  return new Promise((resolve, reject) => {
    let series = 0;
    let points = 0;
    let duplicated = 0;
    let rest = "";
    const line = (l: string): void => {
      if (l === "") return;
      const o = JSON.parse(l) as { timestamps_ns?: string[]; timestamps?: number[] };
      const ts = o.timestamps_ns ?? (o.timestamps ?? []).map(String);
      series++;
      points += ts.length;
      const seen = new Set<string>();
      for (const t of ts) {
        if (seen.has(t)) duplicated++;
        seen.add(t);
      }
    };
    const req = request(u, { method: "GET" }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => reject(new ExportStatusError(res.statusCode ?? 0, `export from ${url}: HTTP ${String(res.statusCode)} ${excerpt(Buffer.concat(chunks), 300)}`)));
        return;
      }
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        rest += chunk;
        let nl: number;
        try {
          while ((nl = rest.indexOf("\n")) >= 0) {
            line(rest.slice(0, nl));
            rest = rest.slice(nl + 1);
          }
        } catch (e) {
          req.destroy(e as Error);
        }
      });
      res.on("error", reject);
      res.on("end", () => {
        try {
          line(rest);
          resolve({ url, series, points, duplicated });
        } catch (e) {
          reject(e as Error);
        }
      });
    });
    req.setTimeout(300_000, () => req.destroy(new Error(`export from ${url}: no answer within 300 s`)));
    req.on("error", reject);
    req.end();
  });
}

export interface StoredCheck {
  expectedPoints: number;
  perReplica: (StoredCount & { name: string; missing: number; extra: number })[];
  ok: boolean;
  waitedMs: number;
}

/**
 * Counts on every replica until each holds exactly `expected` points without duplicates (a cluster replica may still be
 * catching up), or `deadlineMs` passes; a 503 (busy, catching up) is asked again.
 */
export async function checkStored(
  replicas: readonly { name: string; url: string }[],
  selector: string,
  range: { minTs: number; maxTs: number },
  expected: number,
  local: boolean,
  deadlineMs = 60_000,
): Promise<StoredCheck> {
  const t0 = performance.now();
  for (;;) {
    const per = await Promise.all(
      replicas.map(async (r) => {
        for (;;) {
          try {
            return { ...(await countStored(r.url, selector, range, local)), name: r.name };
          } catch (e) {
            if (!(e instanceof ExportStatusError && e.status === 503) || performance.now() - t0 > deadlineMs) throw e;
            await delay(500);
          }
        }
      }),
    );
    const perReplica = per.map((p) => ({ ...p, missing: Math.max(0, expected - p.points), extra: Math.max(0, p.points - expected) }));
    const ok = perReplica.every((p) => p.points === expected && p.duplicated === 0);
    if (ok || performance.now() - t0 > deadlineMs) return { expectedPoints: expected, perReplica, ok, waitedMs: performance.now() - t0 };
    await delay(500);
  }
}
