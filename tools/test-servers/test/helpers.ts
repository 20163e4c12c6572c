import { existsSync, readFileSync } from 'node:fs';
import { INSTALL_HINT, type ServerKind, serverAvailability } from '../src/index.js';
import { processTree } from '../src/signals.js';

/**
 * Whether `kind` can run here. Missing binaries skip the tests with a warning, except with CI=true, where they
 * fail the run (the same policy `startForTests` applies to other packages).
 */
export function serverInstalled(kind: ServerKind): boolean {
  const { available, missing } = serverAvailability(kind);
  if (available) return true;
  const message = `${kind} not installed (${missing.join(', ')}); install with: ${INSTALL_HINT}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`\n!!! SKIPPING ${kind} tests: ${message}\n`);
  return false;
}

/** Bounded poll for a condition that another process brings about (e.g. a server exiting after a signal). */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1_000 && Date.now() < deadline; i++) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return condition();
}

export const dirExists = (dir: string) => existsSync(dir);

/** Resolves `promise`'s outcome, or 'pending' when it has not settled within `ms`. */
export async function settledWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<{ value: T } | { error: unknown } | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Pids of this process's descendants with `argument` on their command line (Linux /proc). */
export function descendantsWithArgument(argument: string): number[] {
  return processTree(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(argument);
    } catch {
      return false;
    }
  });
}
