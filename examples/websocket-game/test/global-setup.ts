import { startForTests, startPostgres, startRedis } from '@cagey-sessions/test-servers';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Connection URLs of the servers started for this run; null when a server is not installed. */
    storeUrls: { postgres: string | null; redis: string | null; mongo: string | null };
  }
}

/** Starts one PostgreSQL and one Redis for the whole run; the tests give each run its own namespace. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [postgres, redis] = await Promise.all([
    startForTests('postgres', () => startPostgres()),
    startForTests('redis', () => startRedis()),
  ]);
  project.provide('storeUrls', {
    postgres: postgres?.url ?? null,
    redis: redis?.url ?? null,
    mongo: null,
  });
  return async () => {
    await Promise.all([postgres?.stop(), redis?.stop()]);
  };
}
