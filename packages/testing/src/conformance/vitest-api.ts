/**
 * vitest is an optional peer: MemoryAdapter and FaultyAdapter work without it, so the suite loads it on import
 * and only complains when the suite is actually used.
 */
type Vitest = typeof import('vitest');

let loaded: Vitest | undefined;
let failure: unknown;
try {
  loaded = await import('vitest');
} catch (error) {
  failure = error;
}

export function vitest(): Vitest {
  if (loaded === undefined) {
    throw new Error(
      'The conformance suite of @cagey-sessions/testing needs vitest (>= 3): install it as a dev dependency ' +
        '(pnpm add -D vitest) and run the suite from a vitest test file.',
      { cause: failure },
    );
  }
  return loaded;
}
