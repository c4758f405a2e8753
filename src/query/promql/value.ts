// The values a PromQL query yields, shared by the evaluator and the
// conformance harness. Plain data: times in ms since the Unix epoch, label
// sets in the canonical form of core/labels.ts (sorted by name).

import type { Labels } from "../../core/labels.js";

/** One element of an instant vector. */
export interface Sample {
  labels: Labels;
  value: number;
}

export interface Point {
  tMs: number;
  value: number;
}

/** One series of a matrix (range vector or range-query result), points in time order. */
export interface Series {
  labels: Labels;
  points: Point[];
}

export type InstantVector = Sample[];
export type Matrix = Series[];

export interface Scalar {
  tMs: number;
  value: number;
}

export interface Str {
  tMs: number;
  value: string;
}

export type Value =
  | { type: "scalar"; result: Scalar }
  | { type: "string"; result: Str }
  | { type: "vector"; result: InstantVector }
  | { type: "matrix"; result: Matrix };

// Prometheus marks a series as gone with one particular NaN (value.StaleNaN).
// JS arithmetic may canonicalise NaN payloads, so the marker is only reliable
// when it travels through Float64Array/DataView, never through arithmetic.
const STALE_BITS_HI = 0x7ff00000;
const STALE_BITS_LO = 0x00000002;
const view = new DataView(new ArrayBuffer(8));

function makeStaleNaN(): number {
  view.setUint32(0, STALE_BITS_HI);
  view.setUint32(4, STALE_BITS_LO);
  return view.getFloat64(0);
}

/** Prometheus's stale marker, 0x7ff0000000000002. */
export const STALE_NAN: number = makeStaleNaN();

/**
 * The quiet spelling of the marker, 0x7ff8000000000002: V8 sets the quiet bit when the signalling NaN passes
 * through a float register, and storage keeps what it was given (docs/format/batch.md). Ordinary NaNs never carry
 * the payload 2, so both spellings mean "stale".
 */
export const STALE_BITS_HI_QUIETED = 0x7ff80000;
export { STALE_BITS_HI, STALE_BITS_LO };

/** Whether the high and low 32-bit words of a float64 are a stale marker (either spelling). */
export function isStaleWords(hi: number, lo: number): boolean {
  return lo === STALE_BITS_LO && (hi === STALE_BITS_HI || hi === STALE_BITS_HI_QUIETED);
}

export function isStaleNaN(v: number): boolean {
  if (!Number.isNaN(v)) return false;
  view.setFloat64(0, v);
  return isStaleWords(view.getUint32(0), view.getUint32(4));
}
