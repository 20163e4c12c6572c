import { PostgresAdapter } from '@cagey-sessions/adapter-postgres';
import type { PersistenceAdapter } from '@cagey-sessions/core';
import { inject } from 'vitest';
import { awkwardUser, randomName } from './helpers.js';

/** The servers of this run; a test needing one that is missing is skipped with a loud warning (CI fails). */
export function servers() {
  const postgres = inject('postgresUrl');
  const redis = inject('redisUrl');
  const mongo = inject('mongoUrl');
  for (const [name, url] of [
    ['PostgreSQL', postgres],
    ['Redis', redis],
    ['FerretDB', mongo],
  ] as const) {
    if (!url)
      console.warn(
        `\n!!! ${name} is not installed: tests of @cagey-sessions/cli that need it are SKIPPED.\n`,
      );
  }
  return {
    postgres,
    redis,
    mongo,
    mongoIsFerretDB: inject('mongoIsFerretDB'),
    all: Boolean(postgres && redis && mongo),
  };
}

/** A fresh PostgreSQL table holding `count` awkward players (some written twice, so versions vary). */
export async function seedPostgres(url: string, count: number): Promise<{ table: string }> {
  const table = randomName('players');
  const adapter = new PostgresAdapter({ url, table });
  try {
    await adapter.setup();
    for (let i = 0; i < count; i += 500) {
      const records = [];
      for (let k = i; k < Math.min(count, i + 500); k++)
        records.push({ ...awkwardUser(k), expectedVersion: 0 });
      await adapter.save(records);
    }
    const again = [];
    for (let k = 0; k < count; k += 3) again.push({ ...awkwardUser(k), expectedVersion: 1 });
    for (let i = 0; i < again.length; i += 500) await adapter.save(again.slice(i, i + 500));
  } finally {
    await adapter.close();
  }
  return { table };
}

export async function countOf(adapter: PersistenceAdapter): Promise<number> {
  let count = 0;
  let cursor: string | undefined;
  do {
    const page = await adapter.scan!({ cursor, limit: 1000 });
    count += page.users.length;
    cursor = page.cursor;
  } while (cursor !== undefined);
  return count;
}
