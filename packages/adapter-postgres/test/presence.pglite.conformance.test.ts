import { runPresenceConformance } from '@cagey-sessions/testing/conformance';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll } from 'vitest';
import { PostgresPresence } from '../src/index.js';

/** One in-process database: PGlite's NOTIFY reaches listeners of the same instance, so nodes share it. */
let db: PGlite;
beforeAll(async () => {
  db = await PGlite.create();
});
afterAll(async () => {
  await db.close();
});

runPresenceConformance({
  name: 'PostgresPresence (PGlite in-process)',
  // The suite's lease checks sleep fractions of this and expect renewals in time: 400 ms (its first default)
  // failed once in a full test run on 2 busy cores (load average 15), so the leases are longer here.
  leaseTtlMs: 2_000,
  createPresence: async ({ namespace }) => {
    const presence = new PostgresPresence({ client: db, table: namespace });
    await presence.setup();
    return presence;
  },
});
