import { startForTests, startPostgres } from '@cagey-sessions/test-servers';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the PostgreSQL server started for this run, or null when PostgreSQL is not installed. */
    postgresUrl: string | null;
  }
}

/** Starts one ephemeral PostgreSQL for the whole run (stopped afterwards) and hands its URL to the tests. */
export default async function setup(project: TestProject) {
  const server = await startForTests('postgres', () => startPostgres());
  project.provide('postgresUrl', server?.url ?? null);
  return async () => {
    await server?.stop();
  };
}
