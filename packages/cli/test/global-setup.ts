import { startFerretDB, startForTests, startPostgres, startRedis } from '@cagey-sessions/test-servers';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URLs of the servers started for this run; null for one that is not installed (CI fails instead). */
    postgresUrl: string | null;
    redisUrl: string | null;
    mongoUrl: string | null;
  }
}

/** One PostgreSQL, one Redis and one FerretDB for the whole run, stopped afterwards. */
export default async function setup(project: TestProject) {
  const [postgres, redis, mongo] = await Promise.all([
    startForTests('postgres', () => startPostgres()),
    startForTests('redis', () => startRedis()),
    startForTests('ferretdb', () => startFerretDB()),
  ]);
  project.provide('postgresUrl', postgres?.url ?? null);
  project.provide('redisUrl', redis?.url ?? null);
  project.provide('mongoUrl', mongo?.url ?? null);
  return async () => {
    await Promise.all([postgres?.stop(), redis?.stop(), mongo?.stop()]);
  };
}
