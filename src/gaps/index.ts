// Gap detection and inferred data (docs/gaps.md): the pure functions that
// learn a series' expected interval, find and classify its gaps, compute fills
// and completeness, and the gap job (job.ts) that runs them and stores what
// they find.

export { LEARN_DELTAS_MAX_DEFAULT, LEARN_DELTAS_MIN_DEFAULT, learnIntervalNs, lowerMedian, type LearnIntervalOptions } from "./interval.js";
export {
  GAP_FACTOR_DEFAULT,
  GAP_FACTOR_MIN,
  STALE_AFTER_SLOTS_DEFAULT,
  classifyGap,
  findGaps,
  missingSlotsBetween,
  staleSince,
  type FindGapsOptions,
  type Gap,
  type GapContents,
  type GapState,
  type StaleOptions,
} from "./detect.js";
export {
  FILL_SLOTS_MAX_DEFAULT,
  buildInferredBatch,
  buildInferredBatches,
  canonicalJson,
  fillGap,
  type Fill,
  type FillMethod,
  type FillOptions,
  type FillPoint,
  type InferredBatchOptions,
} from "./fill.js";
export { FILL_POLICIES, GAP_RULES_MAX, MAX_FILL_NS_DEFAULT, parseDurationNs, parseGapRules, ruleFor, type FillPolicy, type GapRule } from "./rules.js";
export { completeness, type Completeness } from "./completeness.js";
export * from "./job.js";
