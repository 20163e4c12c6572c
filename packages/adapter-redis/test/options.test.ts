import { type Duration, ValidationError } from '@cagey-sessions/core';
import { type Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisAdapter, DEFAULT_PREFIX, encodeUserKey, RedisAdapter } from '../src/index.js';
import { parseStoredValue } from '../src/scripts.js';

/** A client that never connects: these tests only construct adapters. */
function idleClient(): Redis {
  return new Redis({ lazyConnect: true });
}

function expectInvalidOptions(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).code).toBe('INVALID_OPTIONS');
    return error as ValidationError;
  }
  throw new Error('expected INVALID_OPTIONS');
}

describe('key prefix', () => {
  it('defaults to cagey:user:', () => {
    expect(new RedisAdapter({ client: idleClient() }).prefix).toBe(DEFAULT_PREFIX);
    expect(DEFAULT_PREFIX).toBe('cagey:user:');
  });

  it('is exposed as given, and keys get a colon after it when it has none', () => {
    const bare = new RedisAdapter({ client: idleClient(), prefix: 'game1' });
    expect(bare.prefix).toBe('game1');
    expect(bare.keyFor('alice')).toBe('game1:alice');
    const withColon = new RedisAdapter({ client: idleClient(), prefix: 'game1:' });
    expect(withColon.prefix).toBe('game1:');
    expect(withColon.keyFor('alice')).toBe('game1:alice');
  });

  it.each([
    ['empty', ''],
    ['with a space', 'my game:'],
    ['with a hash tag', '{users}:'],
    ['with a glob star', 'users*:'],
    ['with a newline', 'a\nb:'],
    ['non-ASCII', 'jeu_é:'],
    ['too long', 'p'.repeat(200)],
    ['not a string', 42],
  ])('is refused when %s', (_, prefix) => {
    expectInvalidOptions(() => new RedisAdapter({ client: idleClient(), prefix: prefix as string }));
  });
});

describe('user keys', () => {
  it('percent-encode colons, braces, spaces and unicode so no user part holds a colon', () => {
    const adapter = new RedisAdapter({ client: idleClient(), prefix: 'p:' });
    expect(adapter.keyFor('alice')).toBe('p:alice');
    expect(adapter.keyFor(5)).toBe('p:5');
    expect(adapter.keyFor('5')).toBe('p:5');
    expect(adapter.keyFor('a b:c{d}')).toBe('p:a%20b%3Ac%7Bd%7D');
    expect(adapter.keyFor('🎮')).toBe('p:%F0%9F%8E%AE');
    expect(adapter.keyFor('%41')).toBe('p:%2541');
  });

  it('map lone surrogates one-to-one instead of failing', () => {
    expect(encodeUserKey('a\ud800')).toBe('a%uD800');
    expect(encodeUserKey('\udfff🎮')).toBe('%uDFFF%F0%9F%8E%AE');
    expect(encodeUserKey('a\ud800')).not.toBe(encodeUserKey('a\ud801'));
    expect(encodeUserKey('a%uD800')).toBe('a%25uD800');
  });

  it('reject invalid user ids with INVALID_USER_ID', () => {
    const adapter = new RedisAdapter({ client: idleClient() });
    for (const userId of ['', 1.5, Number.NaN, 'a\u0000b']) {
      expect(() => adapter.keyFor(userId)).toThrow(expect.objectContaining({ code: 'INVALID_USER_ID' }));
    }
  });
});

describe('ttl', () => {
  it('is off by default', () => {
    expect(new RedisAdapter({ client: idleClient() }).ttlMs).toBeUndefined();
  });

  it('takes a duration string or a number of milliseconds', () => {
    expect(new RedisAdapter({ client: idleClient(), ttl: '7d' }).ttlMs).toBe(7 * 24 * 3600 * 1000);
    expect(new RedisAdapter({ client: idleClient(), ttl: 90_000 }).ttlMs).toBe(90_000);
    expect(new RedisAdapter({ client: idleClient(), ttl: '250ms' }).ttlMs).toBe(250);
  });

  it('takes a number below 1000 as milliseconds, not seconds', () => {
    expect(new RedisAdapter({ client: idleClient(), ttl: 90 }).ttlMs).toBe(90);
    expect(new RedisAdapter({ client: idleClient(), ttl: 1 }).ttlMs).toBe(1);
  });

  it('takes durations longer than a Node.js timer runs (24.8 days), as Redis keeps keys that long', () => {
    expect(new RedisAdapter({ client: idleClient(), ttl: '30d' }).ttlMs).toBe(30 * 24 * 3600 * 1000);
    expect(new RedisAdapter({ client: idleClient(), ttl: '1y' }).ttlMs).toBe(31_557_600_000);
    expect(new RedisAdapter({ client: idleClient(), ttl: 2 ** 31 }).ttlMs).toBe(2 ** 31);
  });

  it.each([0, -5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, 'soon', '', '-1d', null])(
    'refuses %s',
    (ttl) => {
      expectInvalidOptions(() => new RedisAdapter({ client: idleClient(), ttl: ttl as never }));
    },
  );
});

describe('connectTimeout', () => {
  const opened: RedisAdapter[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((adapter) => adapter.close()));
  });

  function owned(connectTimeout?: Duration, clientOptions: RedisOptions | ClusterOptions = {}) {
    const adapter = new RedisAdapter({
      url: 'redis://127.0.0.1:6390',
      clientOptions: { lazyConnect: true, ...clientOptions },
      ...(connectTimeout === undefined ? {} : { connectTimeout }),
    });
    opened.push(adapter);
    return adapter;
  }

  it("defaults to '5s' and sets the client's connect and socket timeouts and a bounded retry count", () => {
    const adapter = owned();
    expect(adapter.connectTimeoutMs).toBe(5000);
    expect((adapter.client as Redis).options).toMatchObject({
      connectTimeout: 5000,
      socketTimeout: 5000,
      maxRetriesPerRequest: 0,
    });
  });

  it('takes a duration string or a number of milliseconds', () => {
    expect(owned('2s').connectTimeoutMs).toBe(2000);
    expect(owned(750).connectTimeoutMs).toBe(750);
    expect((owned('1.5s').client as Redis).options.connectTimeout).toBe(1500);
  });

  it('applies to every node of a Cluster client; clientOptions set explicitly win', async () => {
    const cluster = new RedisAdapter({
      url: 'redis+cluster://127.0.0.1:7000',
      clientOptions: { lazyConnect: true, redisOptions: { socketTimeout: 60_000 } },
      connectTimeout: '3s',
    });
    opened.push(cluster);
    expect((cluster.client as Cluster).options.redisOptions).toMatchObject({
      connectTimeout: 3000,
      socketTimeout: 60_000,
    });
    expect((owned('3s', { maxRetriesPerRequest: 5 }).client as Redis).options.maxRetriesPerRequest).toBe(5);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, '', 'soon', '-5s', null])(
    'refuses %s',
    (value) => {
      expectInvalidOptions(
        () => new RedisAdapter({ url: 'redis://127.0.0.1:6390', connectTimeout: value as never }),
      );
    },
  );

  it('is refused with an injected client, whose timeouts its owner sets', () => {
    const error = expectInvalidOptions(
      () => new RedisAdapter({ client: idleClient(), connectTimeout: '1s' } as never),
    );
    expect(error.message).toContain('connectTimeout');
    expect(new RedisAdapter({ client: idleClient() }).connectTimeoutMs).toBeUndefined();
  });
});

describe('stored values', () => {
  it('parse with and without a write id, and tombstones as undefined', () => {
    expect(parseStoredValue('3:{"a":1}')).toEqual({ version: 3, json: '{"a":1}', writeId: undefined });
    expect(parseStoredValue('3:w-1.x_Y:{"a":"b:c"}')).toEqual({
      version: 3,
      json: '{"a":"b:c"}',
      writeId: 'w-1.x_Y',
    });
    expect(parseStoredValue(`12:${'i'.repeat(64)}:{}`)).toEqual({
      version: 12,
      json: '{}',
      writeId: 'i'.repeat(64),
    });
    expect(parseStoredValue('4:')).toBeUndefined();
  });

  it.each([
    ['no version', '{"a":1}'],
    ['an empty value', ''],
    ['a version too large to be exact', '12345678901234567:{}'],
    ['text after the version', '1:abc'],
    ['a write id with a forbidden character', '1:w/1:{}'],
    ['a write id longer than 64 characters', `1:${'i'.repeat(65)}:{}`],
    ['a write id and no JSON', '1:w-1:'],
  ])('refuse %s', (_, value) => {
    expect(() => parseStoredValue(value)).toThrow(/layout/);
  });
});

describe('construction', () => {
  const savedUrl = process.env.REDIS_URL;
  afterEach(() => {
    if (savedUrl === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = savedUrl;
  });

  it('needs exactly one of client and url', () => {
    expectInvalidOptions(() => new RedisAdapter({} as never));
    expectInvalidOptions(() => new RedisAdapter({ client: idleClient(), url: 'redis://127.0.0.1' } as never));
    expectInvalidOptions(() => new RedisAdapter({ client: {} as never }));
  });

  it('takes batchSize as the maxBatchSize core uses, and refuses a non-positive one', () => {
    expectInvalidOptions(() => new RedisAdapter({ client: idleClient(), batchSize: 0 }));
    expectInvalidOptions(() => new RedisAdapter({ client: idleClient(), batchSize: 1.5 }));
    expect(new RedisAdapter({ client: idleClient(), batchSize: 50 }).maxBatchSize).toBe(50);
    expect(new RedisAdapter({ client: idleClient() }).maxBatchSize).toBe(1000);
  });

  it('refuses the old option maxBatchSize, naming its new name', () => {
    const error = expectInvalidOptions(
      () => new RedisAdapter({ client: idleClient(), maxBatchSize: 50 } as never),
    );
    expect(error.message).toBe('[redis] Invalid options: "maxBatchSize" was renamed to batchSize.');
  });

  it('refuses an unknown option, naming the nearest known one', () => {
    const error = expectInvalidOptions(() => new RedisAdapter({ client: idleClient(), tll: '7d' } as never));
    expect(error.message).toContain('Did you mean ttl?');
    expect(
      expectInvalidOptions(() => createRedisAdapter({ url: 'redis://127.0.0.1:1', prefx: 'p' } as never))
        .message,
    ).toContain('Did you mean prefix?');
  });

  it('refuses an option set to null instead of reading it as the default', () => {
    const error = expectInvalidOptions(
      () => new RedisAdapter({ client: idleClient(), prefix: null } as never),
    );
    expect(error.message).toContain('prefix');
  });

  it('refuses clientOptions with an injected client, which its owner configures', () => {
    const error = expectInvalidOptions(
      () => new RedisAdapter({ client: idleClient(), clientOptions: { db: 1 } } as never),
    );
    expect(error.message).toContain('clientOptions');
  });

  it('does not repeat a url holding a password in its error', () => {
    for (const url of [
      'postgres://user:hunter2@127.0.0.1:5432/db',
      'redis+cluster://user:hunter2@127.0.0.1:7000,bad host:7001',
      'redis+cluster://user:hunter2@127.0.0.1:99999',
      'redis+cluster://user:hunter2@127.0.0.1:7000/3',
      'hunter2',
    ]) {
      const error = expectInvalidOptions(() => new RedisAdapter({ url }));
      expect(error.message).not.toContain('hunter2');
    }
  });

  it('opens a Cluster client for a redis+cluster:// url and owns it', async () => {
    const adapter = new RedisAdapter({
      url: 'redis+cluster://user:pw@127.0.0.1:7000,[::1]:7001',
      clientOptions: { lazyConnect: true },
    });
    expect(adapter.isCluster).toBe(true);
    expect((adapter.client as Cluster).options.redisOptions).toMatchObject({
      username: 'user',
      password: 'pw',
    });
    await adapter.close();
  });

  it('opens a standalone client for a redis:// url', async () => {
    const adapter = new RedisAdapter({
      url: 'redis://127.0.0.1:6390/2',
      clientOptions: { lazyConnect: true },
    });
    expect(adapter.isCluster).toBe(false);
    expect((adapter.client as Redis).options).toMatchObject({ port: 6390, db: 2 });
    await adapter.close();
  });

  it('createRedisAdapter falls back to REDIS_URL', async () => {
    process.env.REDIS_URL = 'redis://127.0.0.1:6391';
    const adapter = createRedisAdapter({ prefix: 'env', clientOptions: { lazyConnect: true } });
    expect((adapter.client as Redis).options.port).toBe(6391);
    expect(adapter.keyFor('u')).toBe('env:u');
    await adapter.close();
  });

  it('createRedisAdapter without client, url or REDIS_URL says what to pass', () => {
    delete process.env.REDIS_URL;
    const error = expectInvalidOptions(() => createRedisAdapter());
    expect(error.message).toContain('REDIS_URL');
  });

  it('rejects every call after close() with ADAPTER_CLOSED, and close() is idempotent', async () => {
    const adapter = new RedisAdapter({ client: idleClient() });
    await adapter.close();
    await adapter.close();
    for (const call of [
      () => adapter.load('a'),
      () => adapter.save([{ userId: 'a', userData: {} }]),
      () => adapter.delete('a'),
      () => adapter.setup(),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'ADAPTER_CLOSED', adapter: 'redis' });
    }
  });
});
