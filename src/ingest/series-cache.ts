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
  // Two levels (series text, then field or label values) so no lookup has to build a joined key string.
  private readonly groups = new Map<string, Map<string, string>>();
  private entries = 0;

  constructor(
    private readonly builder: BatchBuilder,
    private readonly limits: Limits,
  ) {}

  /**
   * The builder key for the series identified by (`group`, `member`), two
   * strings that together must determine the label set exactly; `pairs` is
   * called only on a miss.
   */
  key(group: string, member: string, pairs: () => Iterable<readonly [string, string]>, loc: InputLocation): string {
    let members = this.groups.get(group);
    const hit = members?.get(member);
    if (hit !== undefined) return hit;
    const key = this.builder.series(canonicalLabels(pairs(), this.limits, loc), loc);
    if (this.entries >= ENTRIES_MAX) {
      this.groups.clear();
      this.entries = 0;
      members = undefined;
    }
    if (members === undefined) {
      members = new Map();
      this.groups.set(group, members);
    }
    members.set(member, key);
    this.entries++;
    return key;
  }
}
