import type { PersistenceAdapter, StoredUser } from '@cagey-sessions/core';
import { type RetryOptions, withRetry } from './retry.js';
import { batchesOf, runBounded, type SourceUser } from './source.js';
import type { RunStats } from './stats.js';

export interface VerifyOptions {
  /** The store compared against (`--to`). */
  other: PersistenceAdapter;
  batchSize: number;
  concurrency: number;
  /** The target is live: a newer version there (the player played since) is not a difference. */
  live: boolean;
  signal: AbortSignal;
  retry: RetryOptions;
  stats: RunStats;
}

/** Compares every user of `pages` (the source) with what `other` holds: missing, different data or version. */
export async function verifyAgainst(
  pages: AsyncIterable<SourceUser[]>,
  options: VerifyOptions,
): Promise<void> {
  const { other, stats } = options;
  await runBounded(
    batchesOf(pages, options.batchSize),
    options.concurrency,
    options.signal,
    async (batch) => {
      const stored = await loadAll(other, batch, options.retry);
      batch.forEach((user, index) => {
        const found = stored[index];
        if (found === undefined) {
          stats.problem({
            userId: user.userId,
            kind: 'missing',
            message: `missing in the target (source version ${user.version})`,
          });
        } else if (options.live && found.version > user.version) {
          stats.newerInTarget++;
        } else {
          const path = firstDifference(user.userData, found.userData, '');
          if (path !== undefined) {
            stats.problem({
              userId: user.userId,
              kind: 'data',
              message: `data differs at ${path || '(root)'}`,
            });
          } else if (found.version !== user.version) {
            stats.problem({
              userId: user.userId,
              kind: 'version',
              message: `same data, version ${found.version} in the target, ${user.version} in the source`,
            });
          }
        }
      });
      stats.done += batch.length;
    },
  );
}

/** Second pass: users the target holds that the source does not. */
export async function findExtra(pages: AsyncIterable<SourceUser[]>, options: VerifyOptions): Promise<void> {
  const { other, stats } = options;
  await runBounded(
    batchesOf(pages, options.batchSize),
    options.concurrency,
    options.signal,
    async (batch) => {
      const stored = await loadAll(other, batch, options.retry);
      batch.forEach((user, index) => {
        if (stored[index] !== undefined) return;
        if (options.live) stats.newerInTarget++;
        else
          stats.problem({
            userId: user.userId,
            kind: 'extra',
            message: `only in the target (version ${user.version})`,
          });
      });
    },
  );
}

/** Loads every user of the batch, a bounded number at a time. */
async function loadAll(
  adapter: PersistenceAdapter,
  batch: readonly SourceUser[],
  retry: RetryOptions,
): Promise<(StoredUser | undefined)[]> {
  const results: (StoredUser | undefined)[] = new Array(batch.length);
  let next = 0;
  const worker = async () => {
    while (next < batch.length) {
      const index = next++;
      results[index] = await withRetry(() => adapter.load(batch[index]!.userId), retry);
    }
  };
  await Promise.all(Array.from({ length: Math.min(LOADS_PER_BATCH, batch.length) }, worker));
  return results;
}

const LOADS_PER_BATCH = 16;

/**
 * The path of the first place two JSON values differ (`inventory[3].name`), or undefined when they are equal.
 * Object key order does not matter (PostgreSQL's jsonb and MongoDB reorder keys).
 */
export function firstDifference(a: unknown, b: unknown, path: string): string | undefined {
  if (a === b) return undefined;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return path;
  if (Array.isArray(a) !== Array.isArray(b)) return path;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    if (a.length !== other.length) return `${path}.length`;
    for (let i = 0; i < a.length; i++) {
      const found = firstDifference(a[i], other[i], `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(left), ...Object.keys(right)]);
  for (const key of keys) {
    const child = path === '' ? key : `${path}.${key}`;
    if (!(key in left) || !(key in right)) return child;
    const found = firstDifference(left[key], right[key], child);
    if (found !== undefined) return found;
  }
  return undefined;
}
