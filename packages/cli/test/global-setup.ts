import { startFerretDB, startForTests, startPostgres, startRedis } from '@cagey-sessions/test-servers';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URLs of the servers started for this run; null for one that is not installed (CI fails instead). */
    postgresUrl: string | null;
    redisUrl: string | null;
    mongoUrl: string | null;
    /** Whether `mongoUrl` is the FerretDB started here (MONGODB_URI names a real MongoDB instead). */
    mongoIsFerretDB: boolean;
  }
}

/**
 * One PostgreSQL, one Redis and one FerretDB for the whole run, stopped afterwards. With MONGODB_URI set, that
 * server is used instead of FerretDB.
 */
export default async function setup(project: TestProject) {
  const external = process.env.MONGODB_URI;
  const [postgres, redis, mongo] = await Promise.all([
    startForTests('postgres', () => startPostgres()),
    startForTests('redis', () => startRedis()),
    external ? undefined : startForTests('ferretdb', () => startFerretDB()),
  ]);
  project.provide('postgresUrl', postgres?.url ?? null);
  project.provide('redisUrl', redis?.url ?? null);
  project.provide('mongoUrl', external ?? mongo?.url ?? null);
  project.provide('mongoIsFerretDB', !external);
  return async () => {
    await Promise.all([postgres?.stop(), redis?.stop(), mongo?.stop()]);
  };
}
