// Line formats repeat the same series text on every line; canonicalising the
// labels (sort, limit checks, key building) once per distinct text instead
// of once per sample is most of their parse time.

import type { BatchBuilder } from "../core/batch.js";
import type { InputLocation } from "../core/errors.js";
import { canonicalLabels } from "../core/labels.js";
import type { Limits } from "../core/limits.js";

// Bounded so that a body of all-distinct series cannot grow it past the
// builder's own series limit by much; clearing only costs speed.
const ENTRIES_MAX = 100_000;

export class SeriesCache {
  private readonly keys = new Map<string, string>();

  constructor(
    private readonly builder: BatchBuilder,
    private readonly limits: Limits,
  ) {}

  /**
   * The builder key for the series whose raw text is `rawKey`; `pairs` is
   * called only on a miss. `rawKey` must determine the label set exactly.
   */
  key(rawKey: string, pairs: () => Iterable<readonly [string, string]>, loc: InputLocation): string {
    const hit = this.keys.get(rawKey);
    if (hit !== undefined) return hit;
    const key = this.builder.series(canonicalLabels(pairs(), this.limits, loc), loc);
    if (this.keys.size >= ENTRIES_MAX) this.keys.clear();
    this.keys.set(rawKey, key);
    return key;
  }
}
