import { runPresenceConformance } from '@cagey-sessions/testing/conformance';
import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { PostgresPresence } from '../src/index.js';
import { newPool, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: presence conformance against a real server');

if (url === null) {
  describe.skip('presence conformance: postgres (server)', () => {
    it('needs a PostgreSQL server (see the warning above)', () => {});
  });
} else {
  /** Drops the tables of every namespace the suite used, directly rather than through the presence. */
  let raw: pg.Pool;
  const namespaces = new Set<string>();
  beforeAll(() => {
    raw = newPool(url);
  });
  afterAll(async () => {
    for (const namespace of namespaces) {
      await raw.query(`DROP TABLE IF EXISTS "${namespace}_nodes", "${namespace}_users"`);
    }
    await raw.end();
  });

  runPresenceConformance({
    name: 'PostgresPresence (server)',
    // The suite's lease checks sleep fractions of this and expect renewals in time: 400 ms (its first default)
    // failed once in a full test run on 2 busy cores (load average 15), so the leases are longer here.
    leaseTtlMs: 2_000,
    // Each presence opens its own pool and listening connection from the URL: one process per node.
    createPresence: async ({ namespace }) => {
      namespaces.add(namespace);
      const presence = new PostgresPresence({ url, table: namespace, clientOptions: { max: 2 } });
      await presence.setup();
      return presence;
    },
  });
}
