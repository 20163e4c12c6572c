import { randomBytes } from 'node:crypto';
import type { PersistenceAdapter } from '@cagey-sessions/core';
import type { CopyOptions } from '../src/copy.js';
import type { RetryOptions } from '../src/retry.js';
import type { SourceUser } from '../src/source.js';
import { RunStats } from '../src/stats.js';

/**
 * The arguments of a run from a PostgreSQL table to a Redis prefix, the pair most tests move players between:
 * `runCli(['verify', ...postgresToRedis(postgres, table, redis, prefix)])`.
 */
export function postgresToRedis(postgres: string, table: string, redis: string, prefix: string): string[] {
  return ['--from', postgres, '--from-table', table, '--to', redis, '--to-prefix', prefix];
}

/** Ids and data that trip up stores: unicode, separators, numeric-looking ids, deep nesting, big values. */
export function awkwardUser(i: number): { userId: string; userData: Record<string, unknown> } {
  const ids = [
    `${i}`,
    `00${i}`,
    `user:${i}:x`,
    `user ${i} with spaces`,
    `ünïcødé-${i}-😀`,
    `${i}.5e3`,
    `{${i}}`,
    `a/b\\c%${i}`,
  ];
  const userId = ids[i % ids.length]!;
  let nested: Record<string, unknown> = { leaf: i };
  for (let depth = 0; depth < 20; depth++) nested = { [`level${depth}`]: nested, n: depth };
  return {
    userId,
    userData: {
      name: `pläyer ${i} — 玩家 🎮`,
      gold: i * 7,
      ratio: i / 3,
      flags: [true, false, null],
      quote: 'he said "hi"\n\ttab \u2028 line',
      nested,
      ...(i % 100 === 0 ? { big: 'x'.repeat(200_000) } : {}),
      empty: {},
      list: Array.from({ length: i % 5 }, (_, k) => ({ k, s: `${k}` })),
    },
  };
}

export function retryOptions(retryForMs = 5_000): RetryOptions {
  return { retryForMs, what: 'test', redact: (text) => text };
}

export function runOptions(target: PersistenceAdapter, overrides: Partial<CopyOptions> = {}): CopyOptions {
  return {
    target,
    batchSize: 100,
    concurrency: 4,
    dryRun: false,
    overwrite: false,
    live: false,
    signal: new AbortController().signal,
    retry: retryOptions(),
    stats: new RunStats(),
    ...overrides,
  };
}

/** Every page of a store's listing, collected (tests only: they hold few users). */
export async function* pagesOf(adapter: PersistenceAdapter, limit = 100): AsyncGenerator<SourceUser[]> {
  let cursor: string | undefined;
  do {
    const page = await adapter.scan!({ cursor, limit });
    cursor = page.cursor;
    yield page.users;
  } while (cursor !== undefined);
}

export function randomName(label: string): string {
  return `${label}_${randomBytes(4).toString('hex')}`;
}
