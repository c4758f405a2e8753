// Hybrid logical clock (Kulkarni et al.): 48 bits of wall ms, 16 bits of
// logical counter, packed in a bigint. Time comes in through a Clock so tests
// and the simulator can drive it.

export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

const LOGICAL_BITS = 16n;
const LOGICAL_MASK = (1n << LOGICAL_BITS) - 1n;

export class Hlc {
  private last = 0n;
  constructor(private readonly clock: Clock = systemClock) {}

  now(): bigint {
    const wall = BigInt(this.clock.nowMs()) << LOGICAL_BITS;
    this.last = wall > this.last ? wall : this.last + 1n;
    return this.last;
  }

  /** Merges a stamp seen from a peer so our next stamp is after it. */
  observe(remote: bigint): void {
    if (remote > this.last) this.last = remote;
  }

  /** A span of wall time as an HLC difference. */
  static spanOfMs(ms: number): bigint {
    return BigInt(ms) << LOGICAL_BITS;
  }

  static wallMs(stamp: bigint): number {
    return Number(stamp >> LOGICAL_BITS);
  }
  static logical(stamp: bigint): number {
    return Number(stamp & LOGICAL_MASK);
  }
}
