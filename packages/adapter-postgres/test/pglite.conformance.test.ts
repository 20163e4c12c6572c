import { userKey } from '@cagey-sessions/core';
import { runAdapterConformance } from '@cagey-sessions/testing/conformance';
import { PGlite } from '@electric-sql/pglite';
import { PostgresAdapter } from '../src/index.js';

/** One in-process database for the suite; every test works in its own table. */
let db: PGlite;

runAdapterConformance<PostgresAdapter>({
  name: 'postgres (PGlite in-process)',
  beforeAll: async () => {
    db = await PGlite.create();
  },
  afterAll: async () => {
    await db.close();
  },
  createAdapter: ({ namespace }) => new PostgresAdapter({ client: db, table: namespace }),
  inspect: async ({ namespace }, userId) => {
    const { rows } = await db.query<{ data: unknown; version: number }>(
      `SELECT data, version FROM "${namespace}" WHERE user_id = $1 AND data IS NOT NULL`,
      [userKey(userId)],
    );
    const row = rows[0];
    return row === undefined ? undefined : { userData: row.data, version: Number(row.version) };
  },
  injectedClient: async ({ namespace }) => ({
    adapter: new PostgresAdapter({ client: db, table: namespace }),
    clientWorks: async () => (await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one === 1,
    // The database is the suite's; it stays open for the other tests.
    dispose: async () => {},
  }),
  capabilities: { rejectedUserData: { name: 'nul \u0000 inside' } },
});
