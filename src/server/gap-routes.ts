// Gap and completeness endpoints (docs/gaps.md): what the gap job found and how
// complete the selected series are, for dashboards and `hqts gaps`/`hqts completeness`:
//   /hq/v1/gaps?match[]=&start=&end=[&state=]        the gaps the gap job recorded for the selected series
//   /hq/v1/completeness?match[]=&start=&end=         per series: expected slots, original, inferred, missing
// Both read through the node's reader, so in a cluster they are complete (majority) like every read.

import type { IncomingMessage, ServerResponse } from "node:http";
import { BadInputError } from "../core/errors.js";
import { labelsToObject, seriesKey, type Labels } from "../core/labels.js";
import { makeMatcher } from "../core/matchers.js";
import { INT64_MAX, INT64_MIN } from "../core/time.js";
import { completeness } from "../gaps/completeness.js";
import { learnIntervalNs } from "../gaps/interval.js";
import { GAP_SERIES_PREFIX } from "../gaps/job.js";
import { ruleFor } from "../gaps/rules.js";
import type { RouteContext } from "./context.js";
import { requestParams, sendJson } from "./http-util.js";
import { apiBody, FORM_BYTES_MAX, matchSets, partialParam, readerFor, timeRange } from "./read-routes.js";

const GAP_STATES = ["open", "filled", "backfilled", "stale"] as const;
type GapState = (typeof GAP_STATES)[number];

/** One entry of the /hq/v1/gaps answer. */
export interface GapView {
  series: Record<string, string>;
  state: GapState;
  startNs: string;
  endNs: string | null;
  missingSlots: number | null;
  inferredPoints: number;
  method: string | null;
}

export async function handleGaps(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const reader = readerFor(ctx, params);
  const sets = matchSets(params, true)!;
  const { startNs, endNs } = timeRange(params);
  const rawState = params.get("state");
  if (rawState !== null && rawState !== "" && !(GAP_STATES as readonly string[]).includes(rawState))
    throw new BadInputError(`state must be one of ${GAP_STATES.join(", ")}, got "${rawState.slice(0, 20)}"`, { field: "state" });
  const allowPartial = partialParam(params);
  const targets = await reader.seriesLabels(sets, INT64_MIN, INT64_MAX, ctx.limits.seriesPerReadMax, allowPartial);
  const byKey = new Map<string, Labels>();
  for (const l of targets.value) byKey.set(seriesKey(l), l); // the gap job names its target by the canonical key
  // A gap is stored at its start; one that began before `start` and reaches into the range is listed too.
  const recs = await reader.select([[makeMatcher("__name__", "=~", `${GAP_SERIES_PREFIX}.+`)]], {
    startNs: INT64_MIN,
    endNs,
    includeInferred: true,
    seriesMax: ctx.limits.seriesPerReadMax,
    samplesMax: ctx.limits.samplesPerReadMax,
  }, allowPartial);
  const gaps = new Map<string, GapView & { lengthNs: bigint | null; backfilled: boolean }>();
  const stale: GapView[] = [];
  for (const s of recs.value) {
    const name = s.labels.find(([n]) => n === "__name__")?.[1] ?? "";
    const target = s.labels.find(([n]) => n === "target")?.[1];
    if (target === undefined) continue;
    const labels = byKey.get(target);
    if (labels === undefined) continue;
    for (let i = 0; i < s.timestampsNs.length; i++) {
      const t = s.timestampsNs[i]!;
      const v = s.values[i]!;
      if (name === "hqts_gap_stale") {
        if (t >= startNs) stale.push({ series: labelsToObject(labels), state: "stale", startNs: t.toString(), endNs: null, missingSlots: v, inferredPoints: 0, method: null });
        continue;
      }
      const k = `${target}\u0000${t}`;
      let g = gaps.get(k);
      if (g === undefined)
        gaps.set(k, (g = { series: labelsToObject(labels), state: "open", startNs: t.toString(), endNs: null, missingSlots: null, inferredPoints: 0, method: null, lengthNs: null, backfilled: false }));
      if (name === "hqts_gap_length_ns") g.lengthNs = BigInt(Math.round(v));
      else if (name === "hqts_gap_missing_slots") g.missingSlots = v;
      else if (name === "hqts_gap_filled") {
        g.inferredPoints = v;
        g.method = s.labels.find(([n]) => n === "method")?.[1] ?? null;
      } else if (name === "hqts_gap_backfilled") g.backfilled = true;
    }
  }
  const out: GapView[] = [];
  for (const g of gaps.values()) {
    if (g.lengthNs === null) continue; // markers without their record: not listed until the record is visible
    const end = BigInt(g.startNs) + g.lengthNs;
    if (end < startNs) continue;
    const state: GapState = g.backfilled ? "backfilled" : g.inferredPoints > 0 ? "filled" : "open";
    out.push({ series: g.series, state, startNs: g.startNs, endNs: end.toString(), missingSlots: g.missingSlots, inferredPoints: g.inferredPoints, method: g.method });
  }
  out.push(...stale);
  const filtered = rawState === null || rawState === "" ? out : out.filter((g) => g.state === rawState);
  filtered.sort((a, b) => (JSON.stringify(a.series) < JSON.stringify(b.series) ? -1 : JSON.stringify(a.series) > JSON.stringify(b.series) ? 1 : BigInt(a.startNs) < BigInt(b.startNs) ? -1 : 1));
  sendJson(res, 200, apiBody(filtered, { ...recs, partial: recs.partial || targets.partial }));
}

export async function handleCompleteness(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const params = await requestParams(req, url, FORM_BYTES_MAX);
  const reader = readerFor(ctx, params);
  const sets = matchSets(params, true)!;
  const { startNs, endNs } = timeRange(params);
  if (params.get("start") === null || params.get("end") === null) throw new BadInputError("completeness needs both start and end", { field: params.get("start") === null ? "start" : "end" });
  const sel = await reader.select(
    sets,
    { startNs, endNs, includeInferred: true, seriesMax: ctx.limits.seriesPerReadMax, samplesMax: ctx.limits.samplesPerReadMax },
    partialParam(params),
  );
  const rules = ctx.gapRules();
  const data = [];
  for (const s of sel.value) {
    const name = s.labels.find(([n]) => n === "__name__")?.[1] ?? "";
    if (name.startsWith(GAP_SERIES_PREFIX)) continue;
    const originals: bigint[] = [];
    for (let i = 0; i < s.timestampsNs.length; i++) if (s.origins[i] === 0) originals.push(s.timestampsNs[i]!);
    const intervalNs = ruleFor(s.labels, rules)?.intervalNs ?? learnIntervalNs(originals);
    if (intervalNs === null || intervalNs === undefined) {
      data.push({ series: labelsToObject(s.labels), intervalNs: null, expectedSlots: null, original: originals.length, inferred: s.timestampsNs.length - originals.length, missingSlots: null });
      continue;
    }
    const c = completeness(s.timestampsNs, s.origins, startNs, endNs, intervalNs);
    data.push({ series: labelsToObject(s.labels), intervalNs: intervalNs.toString(), ...c });
  }
  sendJson(res, 200, apiBody(data, sel));
}
