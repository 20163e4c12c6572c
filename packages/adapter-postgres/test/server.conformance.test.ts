import { userKey } from '@cagey-sessions/core';
import { runAdapterConformance } from '@cagey-sessions/testing/conformance';
import type pg from 'pg';
import { describe, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { newPool, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: conformance against a real server');
/** Reads rows directly, not through the adapter under test. */
let raw: pg.Pool;

if (url === null) {
  describe.skip('adapter conformance: postgres (server)', () => {
    it('needs a PostgreSQL server (see the warning above)', () => {});
  });
} else {
  runAdapterConformance<PostgresAdapter>({
    name: 'postgres (server)',
    beforeAll: async () => {
      raw = newPool(url);
    },
    afterAll: async ({ namespaces }) => {
      for (const namespace of namespaces) await raw.query(`DROP TABLE IF EXISTS "${namespace}"`);
      await raw.end();
    },
    // Each adapter opens its own pool from the URL, so two adapters are two independent "processes".
    createAdapter: ({ namespace }) =>
      new PostgresAdapter({ url, table: namespace, clientOptions: { max: 4 } }),
    inspect: async ({ namespace }, userId) => {
      const { rows } = await raw.query(
        `SELECT data, version FROM "${namespace}" WHERE user_id = $1 AND data IS NOT NULL`,
        [userKey(userId)],
      );
      const row = rows[0] as { data: unknown; version: string } | undefined;
      return row === undefined ? undefined : { userData: row.data, version: Number(row.version) };
    },
    injectedClient: async ({ namespace }) => {
      const client = newPool(url);
      return {
        adapter: new PostgresAdapter({ client, table: namespace }),
        clientWorks: async () => (await client.query('SELECT 1 AS one')).rows[0]?.one === 1,
        dispose: () => client.end(),
      };
    },
    capabilities: { rejectedUserData: { name: 'nul \u0000 inside' } },
  });
}
