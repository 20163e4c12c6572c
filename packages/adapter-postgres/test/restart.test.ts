import { type RunningServer, startPostgres } from '@cagey-sessions/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { newPool, randomTable, serverUrl } from './helpers.js';

// This file restarts a server, so it starts its own instead of sharing the run's.
const available = serverUrl('adapter-postgres: server restart') !== null;

describe.skipIf(!available)('the adapter across a server restart', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('the pool reconnects: a save after the restart may reject once per stale connection, then saves succeed', async () => {
    const adapter = new PostgresAdapter({ url: server.url, table: randomTable(), clientOptions: { max: 3 } });
    try {
      await adapter.setup();
      // Three connections open and idle in the pool when the server goes away.
      await Promise.all([adapter.load('a'), adapter.load('b'), adapter.load('c')]);
      expect(await adapter.save([{ userId: 'u', userData: { step: 1 }, expectedVersion: 0 }])).toEqual([
        { status: 'ok', version: 1 },
      ]);

      await server.restart();

      const rejections: Error[] = [];
      let saved: unknown;
      // Bounded: each stale connection can fail one call; the pool holds at most 3.
      for (let attempt = 0; attempt < 4 && saved === undefined; attempt++) {
        try {
          saved = (await adapter.save([{ userId: 'u', userData: { step: 2 }, expectedVersion: 1 }]))[0];
        } catch (error) {
          rejections.push(error as Error);
        }
      }
      expect(saved).toEqual({ status: 'ok', version: 2 });
      expect(rejections.length).toBeLessThanOrEqual(3);
      for (const error of rejections) {
        expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
        expect(error.message).toMatch(/^\[postgres\] save failed: /);
        expect(error.message).not.toContain(new URL(server.url).password);
      }
      // A rejected save wrote nothing: the version went up exactly once.
      expect(await adapter.load('u')).toEqual({ userData: { step: 2 }, version: 2 });
      expect(await adapter.save([{ userId: 'u', userData: { step: 3 } }])).toEqual([
        { status: 'ok', version: 3 },
      ]);
    } finally {
      await adapter.close();
    }
  });

  it('a batch in flight while the server shuts down is written entirely or not at all', async () => {
    const table = randomTable();
    const adapter = new PostgresAdapter({ url: server.url, table, batchSize: 5000 });
    const pool = newPool(server.url);
    try {
      await adapter.setup();
      const ids = Array.from({ length: 5000 }, (_, i) => `p${i}`);
      await adapter.save(ids.map((userId) => ({ userId, userData: { v: 1 }, expectedVersion: 0 })));
      const inFlight = adapter.save(
        ids.map((userId) => ({ userId, userData: { v: 2, pad: 'x'.repeat(500) }, expectedVersion: 1 })),
      );
      const [saved] = await Promise.allSettled([inFlight, server.restart()]);
      const { rows } = await pool.query(
        `SELECT version::int AS v, count(*)::int AS n FROM "${table}" GROUP BY 1`,
      );
      // One version for all 5000 rows: the statement committed as a whole or rolled back as a whole.
      expect(rows).toHaveLength(1);
      expect(rows[0].n).toBe(5000);
      if (saved.status === 'fulfilled') {
        expect(saved.value.every((r) => r.status === 'ok' && r.version === 2)).toBe(true);
        expect(rows[0].v).toBe(2);
      } else {
        expect(saved.reason).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
      }
      const retried = await adapter.save([{ userId: 'p0', userData: { v: 3 } }]);
      expect(retried).toEqual([{ status: 'ok', version: rows[0].v + 1 }]);
    } finally {
      await adapter.close();
      await pool.end();
    }
  });
});
