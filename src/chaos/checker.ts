// The durability checker: reads back every series of the chaos writers from
// EVERY node, one replica alone (consistency=local), and compares with the
// writers' ledgers (writer.ts). Per node: acked points lost, duplicates (one
// timestamp twice in a series), wrong values, and extra points (present but
// never acked) split into allowed (their batch's outcome is unknown) and not
// allowed. A point's batch is found from its timestamp (locateTime); the
// state per node is one bit per point the writers could have written.

import { CHAOS_METRIC, locateTime, pointTimeNs, pointValue, type BatchOutcome, type LedgerBatch, type WriterLedger } from "./writer.js";

export interface CheckOptions {
  /** One export request's deadline; default 60 s. */
  requestTimeoutMs?: number;
  /** Examples kept per kind and node; default 10. */
  examplesMax?: number;
  /** Series of writers no ledger names (an earlier run's): ignored instead of counted as extras. Default false. */
  ignoreForeignWriters?: boolean;
}

export interface PointRef {
  writer: string;
  series: string;
  tNs: string;
  /** Wrong values: the expected one. */
  expected?: number;
  /** What the node holds (a string for NaN/±Inf). */
  got?: number | string;
  /** The batch the timestamp belongs to, when it is one of a ledger's. */
  seq?: number;
  outcome?: BatchOutcome | "never-written" | "foreign";
}

export interface NodeReport {
  node: string;
  /** The export failed: nothing else in this report is meaningful. */
  error?: string;
  series: number;
  points: number;
  /** Acked points this node should hold (every acked point of every ledger). */
  ackedExpected: number;
  /** Acked points present with the right value. */
  ackedPresent: number;
  lost: number;
  duplicates: number;
  wrongValues: number;
  /** Present, never acked, of an unknown-outcome batch (or one that may have been applied before a refusal). */
  extrasAllowed: number;
  extrasNotAllowed: number;
  examples: { lost: PointRef[]; duplicates: PointRef[]; wrongValues: PointRef[]; extrasNotAllowed: PointRef[] };
}

export interface DurabilityReport {
  ok: boolean;
  /** Why not ok, one line per node and kind. */
  problems: string[];
  nodes: NodeReport[];
  ledger: { writers: number; batches: number; ackedBatches: number; ackedPoints: number; unknownBatches: number; refusedBatches: number };
}

export interface ExportLine {
  metric: Record<string, string>;
  values: (number | string)[];
  timestamps_ns: string[];
}

function parseExportLine(line: string): ExportLine {
  const o = JSON.parse(line) as Partial<ExportLine>;
  if (typeof o.metric !== "object" || o.metric === null || !Array.isArray(o.values) || !Array.isArray(o.timestamps_ns) || o.values.length !== o.timestamps_ns.length)
    throw new Error(`export: malformed line ${line.slice(0, 200)}`);
  return o as ExportLine;
}

/**
 * GET /api/v1/export of every chaos series from one replica alone, streamed
 * line by line (one series per line): memory is one series, not the export.
 * A cut stream throws (the server resets a failed export, docs/http-api.md).
 */
export async function* exportLocal(node: string, timeoutMs = 60_000): AsyncGenerator<ExportLine> {
  const p = new URLSearchParams();
  p.append("match[]", `{__name__="${CHAOS_METRIC}"}`);
  p.set("consistency", "local");
  const res = await fetch(`${node.replace(/\/+$/, "")}/api/v1/export?${p.toString()}`, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`export answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
  if (res.body === null) return;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let buf = "";
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== "") yield parseExportLine(line);
    }
  }
  buf += decoder.decode();
  if (buf.trim() !== "") yield parseExportLine(buf);
}

function ackedCount(l: WriterLedger): number {
  let n = 0;
  for (const b of l.batches) if (b.outcome === "acked") n++;
  return n * l.seriesPerBatch * l.pointsPerSeries;
}

function allowedExtra(b: LedgerBatch): boolean {
  return b.outcome === "unknown" || (b.outcome === "refused" && b.maybeApplied);
}

/**
 * One node's comparison, fed series by series. Timestamps of the ledger's
 * batches are tracked in one bitmap per series (a bit per point the writer
 * could have written); any other timestamp (never written, foreign writer) in
 * a set, for duplicate detection only.
 */
export class NodeTally {
  private readonly r: NodeReport;
  private readonly byWriter: Map<string, WriterLedger>;
  private readonly max: number;
  private readonly bitmaps = new Map<string, Uint8Array>();
  private readonly strays = new Map<string, Set<string>>();

  constructor(
    node: string,
    private readonly ledgers: WriterLedger[],
    private readonly opts: CheckOptions = {},
  ) {
    this.max = opts.examplesMax ?? 10;
    this.byWriter = new Map(ledgers.map((l) => [l.writer, l]));
    this.r = {
      node,
      series: 0,
      points: 0,
      ackedExpected: ledgers.reduce((n, l) => n + ackedCount(l), 0),
      ackedPresent: 0,
      lost: 0,
      duplicates: 0,
      wrongValues: 0,
      extrasAllowed: 0,
      extrasNotAllowed: 0,
      examples: { lost: [], duplicates: [], wrongValues: [], extrasNotAllowed: [] },
    };
  }

  private example(list: PointRef[], p: PointRef): void {
    if (list.length < this.max) list.push(p);
  }

  /** First sighting of a timestamp outside the ledger's bitmaps? */
  private firstStray(writer: string, series: string, tNs: string): boolean {
    const k = `${writer}\u0000${series}`;
    let set = this.strays.get(k);
    if (!set) this.strays.set(k, (set = new Set()));
    if (set.has(tNs)) return false;
    set.add(tNs);
    return true;
  }

  add(line: ExportLine): void {
    const r = this.r;
    const writer = line.metric["w"] ?? "";
    const series = line.metric["s"] ?? "";
    const l = this.byWriter.get(writer);
    if (l === undefined && this.opts.ignoreForeignWriters === true) return;
    r.series++;
    const sIdx = /^(0|[1-9][0-9]{0,8})$/.test(series) ? Number(series) : -1;
    const known = l !== undefined && sIdx >= 0 && sIdx < l.seriesPerBatch;
    let bits: Uint8Array | undefined;
    if (known) {
      const k = `${writer}\u0000${series}`;
      bits = this.bitmaps.get(k);
      if (!bits) this.bitmaps.set(k, (bits = new Uint8Array(Math.ceil((l.batches.length * l.pointsPerSeries) / 8))));
    }
    for (let i = 0; i < line.timestamps_ns.length; i++) {
      r.points++;
      const tNs = line.timestamps_ns[i]!;
      const got = line.values[i]!;
      let at: { seq: number; k: number } | undefined;
      if (l !== undefined) {
        try {
          at = locateTime(l, BigInt(tNs));
        } catch {
          at = undefined;
        }
      }
      const batch = known && at !== undefined ? l.batches[at.seq] : undefined;
      if (l === undefined || batch === undefined || at === undefined || batch.seq !== at.seq) {
        if (!this.firstStray(writer, series, tNs)) {
          r.duplicates++;
          this.example(r.examples.duplicates, { writer, series, tNs, got });
          continue;
        }
        r.extrasNotAllowed++;
        this.example(r.examples.extrasNotAllowed, { writer, series, tNs, got, ...(at ? { seq: at.seq } : {}), outcome: l === undefined ? "foreign" : "never-written" });
        continue;
      }
      const bit = at.seq * l.pointsPerSeries + at.k;
      const mask = 1 << (bit & 7);
      if ((bits![bit >> 3]! & mask) !== 0) {
        r.duplicates++;
        this.example(r.examples.duplicates, { writer, series, tNs, got, seq: at.seq });
        continue;
      }
      bits![bit >> 3]! |= mask;
      const expected = pointValue(l, at.seq, sIdx, at.k);
      const right = typeof got === "number" && Object.is(got, expected);
      if (batch.outcome === "acked") {
        if (right) r.ackedPresent++;
        else {
          r.wrongValues++;
          this.example(r.examples.wrongValues, { writer, series, tNs, expected, got, seq: at.seq, outcome: batch.outcome });
        }
      } else if (!right) {
        // Not acked and not even what the writer sent: no outcome allows that.
        r.wrongValues++;
        this.example(r.examples.wrongValues, { writer, series, tNs, expected, got, seq: at.seq, outcome: batch.outcome });
      } else if (allowedExtra(batch)) r.extrasAllowed++;
      else {
        r.extrasNotAllowed++;
        this.example(r.examples.extrasNotAllowed, { writer, series, tNs, got, seq: at.seq, outcome: batch.outcome });
      }
    }
  }

  /** Counts the acked points never seen (lost) and answers the report. */
  finish(): NodeReport {
    const r = this.r;
    for (const l of this.ledgers) {
      for (let s = 0; s < l.seriesPerBatch; s++) {
        const bits = this.bitmaps.get(`${l.writer}\u0000${s}`);
        for (const b of l.batches) {
          if (b.outcome !== "acked") continue;
          for (let k = 0; k < l.pointsPerSeries; k++) {
            const bit = b.seq * l.pointsPerSeries + k;
            if (bits !== undefined && (bits[bit >> 3]! & (1 << (bit & 7))) !== 0) continue;
            r.lost++;
            this.example(r.examples.lost, { writer: l.writer, series: String(s), tNs: String(pointTimeNs(l, b.seq, k)), expected: pointValue(l, b.seq, s, k), seq: b.seq, outcome: "acked" });
          }
        }
      }
    }
    return r;
  }
}

/** Compares one node's export (already read) with the ledgers. */
export function compareNode(node: string, lines: Iterable<ExportLine>, ledgers: WriterLedger[], opts: CheckOptions = {}): NodeReport {
  const t = new NodeTally(node, ledgers, opts);
  for (const line of lines) t.add(line);
  return t.finish();
}

function problemsOf(r: NodeReport): string[] {
  if (r.error !== undefined) return [`${r.node}: not read: ${r.error}`];
  const out: string[] = [];
  if (r.lost > 0) out.push(`${r.node}: ${r.lost} of ${r.ackedExpected} acked points lost`);
  if (r.duplicates > 0) out.push(`${r.node}: ${r.duplicates} duplicate points`);
  if (r.wrongValues > 0) out.push(`${r.node}: ${r.wrongValues} wrong values`);
  if (r.extrasNotAllowed > 0) out.push(`${r.node}: ${r.extrasNotAllowed} points present that were never acked (and not of an unknown-outcome batch)`);
  return out;
}

function ledgerSummary(ledgers: WriterLedger[]): DurabilityReport["ledger"] {
  const s = { writers: ledgers.length, batches: 0, ackedBatches: 0, ackedPoints: 0, unknownBatches: 0, refusedBatches: 0 };
  for (const l of ledgers)
    for (const b of l.batches) {
      s.batches++;
      if (b.outcome === "acked") {
        s.ackedBatches++;
        s.ackedPoints += l.seriesPerBatch * l.pointsPerSeries;
      } else if (b.outcome === "unknown") s.unknownBatches++;
      else s.refusedBatches++;
    }
  return s;
}

/**
 * Reads every chaos series from every node (consistency=local) and compares
 * with the ledgers. ok: no node lost an acked point, holds a duplicate or a
 * wrong value, or holds a point no ledger allows; every node was read; and no
 * writer had a batch refused (a 4xx is a bug).
 */
export async function checkDurability(nodes: string[], ledger: WriterLedger | WriterLedger[], opts: CheckOptions = {}): Promise<DurabilityReport> {
  const ledgers = Array.isArray(ledger) ? ledger : [ledger];
  const names = new Set<string>();
  for (const l of ledgers) {
    if (names.has(l.writer)) throw new RangeError(`checkDurability: two ledgers of writer ${l.writer}`);
    names.add(l.writer);
  }
  const reports = await Promise.all(
    nodes.map(async (node): Promise<NodeReport> => {
      try {
        const tally = new NodeTally(node, ledgers, opts);
        for await (const line of exportLocal(node, opts.requestTimeoutMs)) tally.add(line);
        return tally.finish();
      } catch (e) {
        const empty = compareNode(node, [], [], opts);
        return { ...empty, error: (e as Error).message };
      }
    }),
  );
  const summary = ledgerSummary(ledgers);
  const problems = reports.flatMap(problemsOf);
  if (summary.refusedBatches > 0) problems.push(`${summary.refusedBatches} batches refused with a 4xx (a bug: see the ledger's errors)`);
  return { ok: problems.length === 0, problems, nodes: reports, ledger: summary };
}

export interface ConvergeOptions extends CheckOptions {
  /** Give up after this long; default 30 s. */
  timeoutMs?: number;
  /** Between two rounds of reads; default 100 ms. */
  pollMs?: number;
}

/**
 * Polls every node until each holds every acked point (lost 0 everywhere and
 * every node readable) or the deadline passes. Answers whether it converged,
 * the time it took and the last check. `options` may be just the timeout in ms.
 * Polling with a deadline, not a sleep standing in for synchronisation.
 */
export async function waitConverged(
  nodes: string[],
  ledger: WriterLedger | WriterLedger[],
  options: ConvergeOptions | number = {},
): Promise<{ converged: boolean; elapsedMs: number; rounds: number; last: DurabilityReport }> {
  const opts: ConvergeOptions = typeof options === "number" ? { timeoutMs: options } : options;
  const t0 = performance.now();
  const deadline = t0 + (opts.timeoutMs ?? 30_000);
  for (let rounds = 1; ; rounds++) {
    const last = await checkDurability(nodes, ledger, opts);
    const converged = last.nodes.every((n) => n.error === undefined && n.lost === 0);
    const now = performance.now();
    if (converged || now >= deadline) return { converged, elapsedMs: now - t0, rounds, last };
    await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 100, Math.max(0, deadline - now))));
  }
}
