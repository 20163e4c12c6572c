import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { create } from '@cagey-sessions/core';
import type { RunningServer } from '@cagey-sessions/test-servers';
import { startRedis } from '@cagey-sessions/test-servers';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisAdapter, type RedisAdapterUrlOptions } from '../src/index.js';
import { randomPrefix, standaloneUrl, timed } from './helpers.js';

/** Everything an error shows when logged or serialised: every property at any depth, hidden ones included. */
function everythingIn(value: unknown): string {
  return `${inspect(value, { depth: Infinity, showHidden: true })}\n${JSON.stringify(value)}`;
}

// A server of this file's own: password-protected, and restarted in the middle of a test.
describe.skipIf(!standaloneUrl())('RedisAdapter against a server it can lose', () => {
  const password = `pw-${randomBytes(12).toString('hex')}`;
  let server: RunningServer;

  beforeAll(async () => {
    server = await startRedis({ password });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('recovers when the server restarts between two saves, reloading its scripts', async () => {
    const adapter = new RedisAdapter({ url: server.url, prefix: randomPrefix() });
    try {
      await adapter.setup();
      const users = Array.from({ length: 50 }, (_, i) => `user${i}`);
      const before = await adapter.save(users.map((userId) => ({ userId, userData: { round: 1 } })));
      expect(before.every((r) => r.status === 'ok')).toBe(true);

      await server.restart();

      // The restarted server has no scripts (and, without persistence, no data): the save goes through anyway.
      const after = await adapter.save(users.map((userId) => ({ userId, userData: { round: 2 } })));
      expect(after.map((r) => r.status)).toEqual(users.map(() => 'ok'));
      const loaded = await adapter.load('user7');
      expect(loaded?.userData).toEqual({ round: 2 });
      expect(loaded?.version).toBe((after[7] as { version: number }).version);
      expect(await adapter.delete('user7')).toBe(true);
    } finally {
      await adapter.close();
    }
  });

  describe('a wrong password appears nowhere in an error, in any property at any depth', () => {
    // Characters that URLs percent-encode, so both spellings can be looked for.
    const wrong = `wr:ong/pa@ss w%rd-${randomBytes(6).toString('hex')}`;
    const encoded = encodeURIComponent(wrong);
    const hostPort = () => `127.0.0.1:${server.port}`;

    function expectClean(error: unknown): void {
      expect(error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'redis' });
      const text = everythingIn(error);
      expect(text).not.toContain(wrong);
      expect(text).not.toContain(encoded);
      expect(text).not.toContain(password);
    }

    async function expectEveryCallClean(adapter: RedisAdapter): Promise<void> {
      const errors = await Promise.all([
        adapter.setup().catch((error: unknown) => error),
        adapter.load('x').catch((error: unknown) => error),
        adapter.save([{ userId: 'x', userData: {}, writeId: 'w-1' }]).catch((error: unknown) => error),
        adapter.delete('x').catch((error: unknown) => error),
      ]);
      for (const error of errors) expectClean(error);
    }

    const refused: [string, () => RedisAdapterUrlOptions][] = [
      ['in a redis:// url', () => ({ url: `redis://:${encoded}@${hostPort()}` })],
      ['in a redis:// url with a user name', () => ({ url: `redis://default:${encoded}@${hostPort()}` })],
      ['in a redis+cluster:// url', () => ({ url: `redis+cluster://default:${encoded}@${hostPort()}` })],
      [
        'in clientOptions.password',
        () => ({ url: `redis://${hostPort()}`, clientOptions: { password: wrong } }),
      ],
      [
        'in clientOptions.redisOptions.password of a cluster url',
        () => ({
          url: `redis+cluster://${hostPort()}`,
          clientOptions: { redisOptions: { password: wrong } },
        }),
      ],
    ];

    it.each(refused)('%s: calls fail at once with WRONGPASS, without the password', async (_, options) => {
      const adapter = new RedisAdapter({ ...options(), prefix: randomPrefix(), connectTimeout: '5s' });
      try {
        const started = performance.now();
        await expectEveryCallClean(adapter);
        // The server refused the credentials: waiting for the connection would not help.
        expect(performance.now() - started).toBeLessThan(2500);
        const error = await adapter.load('x').catch((e: unknown) => e);
        expect((error as Error).message).toContain('WRONGPASS');
      } finally {
        await adapter.close();
      }
    });

    it('in a rediss:// url (TLS never established): calls fail within connectTimeout, without the password', async () => {
      const adapter = new RedisAdapter({
        url: `rediss://:${encoded}@${hostPort()}`,
        prefix: randomPrefix(),
        connectTimeout: 500,
      });
      try {
        await expectEveryCallClean(adapter);
      } finally {
        await adapter.close();
      }
    });

    it("in an injected client's options", async () => {
      const client = new Redis({
        host: '127.0.0.1',
        port: server.port,
        password: wrong,
        maxRetriesPerRequest: 1,
      });
      client.on('error', () => {});
      const adapter = new RedisAdapter({ client, prefix: randomPrefix() });
      try {
        await expectEveryCallClean(adapter);
      } finally {
        await adapter.close();
        client.disconnect();
      }
    });

    it("through a SessionManager: persistNow()'s error, persistError events and every log line", async () => {
      const logged: string[] = [];
      const capture =
        (level: string) =>
        (...args: unknown[]) => {
          logged.push(`${level} ${everythingIn(args)}`);
        };
      const log = {
        debug: capture('debug'),
        info: capture('info'),
        warn: capture('warn'),
        error: capture('error'),
      };
      const adapter = new RedisAdapter({ url: `redis://:${encoded}@${hostPort()}`, prefix: randomPrefix() });
      const manager = create(
        { log, adapter },
        { userData: { persistence: { retry: { initialDelay: '20ms', maxDelay: '50ms' } } } },
      );
      const events: unknown[] = [];
      manager.on('persistError', (_session, error) => {
        events.push(error);
      });
      try {
        const session = await manager.create();
        await session.start();
        const userData = { gold: 1 };
        await session.setUser('player-1', userData);
        userData.gold = 2;
        const failed = await timed(session.persistNow());
        expect(failed.rejected).toBe(true);
        // Let a few background retries fail and be logged too.
        await new Promise((resolve) => setTimeout(resolve, 300));
        await manager.destroy(false);
        expect(events.length + logged.length).toBeGreaterThan(0);
        for (const text of [everythingIn(failed.error), ...events.map(everythingIn), ...logged]) {
          expect(text).not.toContain(wrong);
          expect(text).not.toContain(encoded);
          expect(text).not.toContain(password);
        }
      } finally {
        await adapter.close();
      }
    });
  });

  it('never puts the password into an error message, whatever fails', async () => {
    const url = new URL(server.url);
    url.password = 'not-the-password-123';
    const wrong = new RedisAdapter({
      url: url.toString(),
      prefix: randomPrefix(),
      clientOptions: { maxRetriesPerRequest: 1, retryStrategy: () => null },
    });
    const closedPort = new URL(server.url);
    closedPort.port = '1';
    const unreachable = new RedisAdapter({
      url: closedPort.toString(),
      clientOptions: { maxRetriesPerRequest: 0, retryStrategy: () => null },
    });
    try {
      const errors = await Promise.all([
        wrong.load('x').catch((error: unknown) => error),
        wrong.save([{ userId: 'x', userData: {} }]).catch((error: unknown) => error),
        unreachable.load('x').catch((error: unknown) => error),
        unreachable.delete('x').catch((error: unknown) => error),
      ]);
      for (const error of errors) {
        expect(error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'redis' });
        const text = `${(error as Error).message}\n${(error as Error).stack}`;
        expect(text).not.toContain('not-the-password-123');
        expect(text).not.toContain(password);
      }
    } finally {
      await Promise.all([wrong.close(), unreachable.close()]);
    }
  });
});
