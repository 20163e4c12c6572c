import { type RunningServer, startPostgres } from '@cagey-sessions/test-servers';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresPresence } from '../src/index.js';
import { newPool, randomTable, serverUrl } from './helpers.js';
import { inbox, sendUntilReceived } from './presence-helpers.js';

// This file restarts and kills a server, so it starts its own instead of sharing the run's.
const available = serverUrl('adapter-postgres: presence across a server restart') !== null;

describe.skipIf(!available)('PostgresPresence across a server restart', () => {
  let server: RunningServer;
  let pool: pg.Pool;
  beforeAll(async () => {
    // Acknowledged commits survive kill(): a lease written before the crash is there after it.
    server = await startPostgres({ settings: { synchronous_commit: 'on' } });
    pool = newPool(server.url);
  });
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });

  it('the listening connection comes back and LISTENs again after a restart and after a crash, over a url and over a pool', async () => {
    const table = randomTable('p');
    const overUrl = new PostgresPresence({ url: server.url, table });
    const overPool = new PostgresPresence({ client: pool, table });
    const sender = new PostgresPresence({ url: server.url, table });
    try {
      await sender.setup();
      const [toUrl, toPool] = [inbox(), inbox()];
      await overUrl.join('url-node', 600_000, toUrl.onMessage);
      await overPool.join('pool-node', 600_000, toPool.onMessage);
      await sendUntilReceived(sender, 'url-node', toUrl.messages, 'before');
      await sendUntilReceived(sender, 'pool-node', toPool.messages, 'before');

      await server.restart();
      await sendUntilReceived(sender, 'url-node', toUrl.messages, 'after-restart');
      await sendUntilReceived(sender, 'pool-node', toPool.messages, 'after-restart');

      await server.kill();
      await server.restart();
      await sendUntilReceived(sender, 'url-node', toUrl.messages, 'after-crash');
      await sendUntilReceived(sender, 'pool-node', toPool.messages, 'after-crash');

      // Messages only ever reached their own node, each once per send that got through.
      expect(new Set(toUrl.messages.map((m) => m.userId))).toEqual(
        new Set(['before', 'after-restart', 'after-crash']),
      );
      expect(new Set(toPool.messages.map((m) => m.userId))).toEqual(
        new Set(['before', 'after-restart', 'after-crash']),
      );
    } finally {
      await Promise.all([overUrl.close(), overPool.close(), sender.close()]);
    }
  });

  it('while the server is down calls fail with ADAPTER_ERROR (no password in them), and work again once it is back', async () => {
    const table = randomTable('p');
    const presence = new PostgresPresence({ url: server.url, table, connectTimeout: '2s' });
    const password = decodeURIComponent(new URL(server.url).password);
    try {
      await presence.setup();
      await presence.join('a', 600_000, () => {});
      expect(await presence.claim('u1', 'a')).toEqual({ acquired: true });
      await server.kill();
      for (const call of [() => presence.claim('u2', 'a'), () => presence.renew('a', 600_000)]) {
        const error = (await call().catch((e: unknown) => e)) as Error & { code?: string };
        expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
        expect(`${error.message} ${JSON.stringify(error.cause)}`).not.toContain(password);
      }
      await server.restart();
      let renewed: boolean | undefined;
      // Each pooled connection the crash broke fails one call; the pool holds at most 10.
      for (let attempt = 0; attempt < 11 && renewed === undefined; attempt++) {
        renewed = await presence.renew('a', 600_000).catch(() => undefined);
      }
      expect(renewed).toBe(true);
      expect(await presence.claim('u1', 'a')).toEqual({ acquired: true });
      expect(await presence.locate('u1')).toBe('a');
    } finally {
      await presence.close();
    }
  });
});
