import { ValidationError } from '@cagey-sessions/core';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  createRedisPresence,
  DEFAULT_PRESENCE_PREFIX,
  RedisPresence,
  type RedisPresenceOptions,
} from '../src/index.js';

/** A client that never connects: these tests only construct presences. */
function idleClient(): Redis {
  return new Redis({ lazyConnect: true });
}

function invalidOptions(options: unknown): ValidationError {
  try {
    new RedisPresence(options as RedisPresenceOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).code).toBe('INVALID_OPTIONS');
    return error as ValidationError;
  }
  throw new Error('expected INVALID_OPTIONS');
}

describe('RedisPresence options', () => {
  it('defaults the prefix to cagey:presence: and exposes the client it was given', async () => {
    const client = idleClient();
    const presence = new RedisPresence({ client });
    expect(presence.prefix).toBe(DEFAULT_PRESENCE_PREFIX);
    expect(DEFAULT_PRESENCE_PREFIX).toBe('cagey:presence:');
    expect(presence.client).toBe(client);
    expect(presence.name).toBe('redis');
    expect(presence.connectTimeoutMs).toBeUndefined();
    await presence.close();
    expect(client.status).toBe('wait');
  });

  it.each([
    ['no options', undefined],
    ['neither client nor url', {}],
    ['both client and url', { client: idleClient(), url: 'redis://127.0.0.1:6379' }],
    ['an unknown scheme', { url: 'http://127.0.0.1:6379' }],
    ['a client that is not ioredis', { client: {} }],
    ['connectTimeout with a client', { client: idleClient(), connectTimeout: '1s' }],
    ['clientOptions with a client', { client: idleClient(), clientOptions: {} }],
    ['a prefix with a brace', { client: idleClient(), prefix: '{game}:' }],
    ['a prefix with a space', { client: idleClient(), prefix: 'my game:' }],
    ['a bad connectTimeout', { url: 'redis://127.0.0.1:6379', connectTimeout: 'soon' }],
    ['a log that is not an object', { client: idleClient(), log: 'console' }],
    ['an option set to null', { client: idleClient(), prefix: null }],
  ])('refuses %s with INVALID_OPTIONS', (_, options) => {
    invalidOptions(options);
  });

  it('names the nearest known option for a typo', () => {
    expect(invalidOptions({ client: idleClient(), prefx: 'a:' }).message).toContain('Did you mean prefix?');
  });

  it('never repeats a url in an error: it may hold a password', () => {
    const error = invalidOptions({ url: 'redis+cluster://user:s3cret-pw@host:1/9' });
    expect(error.message).not.toContain('s3cret-pw');
  });

  it('createRedisPresence falls back to REDIS_URL', async () => {
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = 'redis://127.0.0.1:1';
    try {
      const presence = createRedisPresence({ prefix: 'env:', clientOptions: { lazyConnect: true } });
      expect(presence.connectTimeoutMs).toBe(5000);
      await presence.close();
      delete process.env.REDIS_URL;
      expect(() => createRedisPresence()).toThrow(/REDIS_URL/);
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });
});
