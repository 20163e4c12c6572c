import { randomBytes } from 'node:crypto';
import type { RunningServer } from '@cagey-sessions/test-servers';
import { startRedis } from '@cagey-sessions/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { randomPrefix, standaloneUrl } from './helpers.js';

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
