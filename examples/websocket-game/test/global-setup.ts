import { startFerretDB, startForTests, startPostgres, startRedis } from '@cagey-sessions/test-servers';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Connection URLs of the servers started for this run; null when a server is not installed. */
    storeUrls: { postgres: string | null; redis: string | null; mongo: string | null };
  }
}

/**
 * Starts one PostgreSQL, one Redis and one FerretDB (the MongoDB-compatible server) for the whole run; every
 * test uses its own namespace on them.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [postgres, redis, mongo] = await Promise.all([
    startForTests('postgres', () => startPostgres()),
    startForTests('redis', () => startRedis()),
    startForTests('ferretdb', () => startFerretDB()),
  ]);
  project.provide('storeUrls', {
    postgres: postgres?.url ?? null,
    redis: redis?.url ?? null,
    mongo: mongo?.url ?? null,
  });
  return async () => {
    await Promise.all([postgres?.stop(), redis?.stop(), mongo?.stop()]);
  };
}
