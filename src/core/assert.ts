// Invariant checks (TIGER_STYLE): a broken invariant is a bug, so it crashes
// loudly instead of being swallowed. Never use these for user input: bad input
// gets a typed HqError (see errors.ts).

export class InvariantError extends Error {
  override readonly name = "InvariantError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(`invariant violated: ${message}`);
}

export function unreachable(value: never, message = "unreachable"): never {
  throw new InvariantError(`${message}: ${String(value)}`);
}
