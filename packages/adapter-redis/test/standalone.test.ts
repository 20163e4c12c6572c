import { createHash } from 'node:crypto';
import { AdapterError, ConflictError } from '@cagey-sessions/core';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { scripts } from '../src/scripts.js';
import { randomPrefix, rawKey, rawVersion, rawWriteId, readRaw, standaloneUrl } from './helpers.js';

const url = standaloneUrl();

describe.skipIf(!url)('RedisAdapter on a standalone server', () => {
  let raw: Redis;
  const adapters: RedisAdapter[] = [];

  function adapter(options: Partial<ConstructorParameters<typeof RedisAdapter>[0]> = {}): RedisAdapter {
    const created = new RedisAdapter({ url: url!, prefix: randomPrefix(), ...options } as never);
    adapters.push(created);
    return created;
  }

  beforeAll(() => {
    raw = new Redis(url!);
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close()));
  });
  afterAll(async () => {
    await raw.quit();
  });

  describe('data model', () => {
    it('stores each user as "<version>:<json>" under the prefix plus the percent-encoded user key', async () => {
      const a = adapter();
      const users = ['alice', 5, 'a b:c{d}*', '🎮 player', 'x'.repeat(300)];
      const results = await a.save(users.map((userId, i) => ({ userId, userData: { i } })));
      expect(results.every((r) => r.status === 'ok')).toBe(true);
      for (const [i, userId] of users.entries()) {
        const key = rawKey(a.prefix, userId);
        expect(key).toBe(a.keyFor(userId));
        expect(await raw.get(key)).toBe(`1:{"i":${i}}`);
        expect(key.slice(a.prefix.length)).not.toContain(':');
      }
      const keys = await raw.keys(`${a.prefix}*`);
      expect(keys.sort()).toEqual(users.map((u) => rawKey(a.prefix, u)).sort());
    });

    it('keeps a tombstone holding the next version after delete', async () => {
      const a = adapter();
      await a.save([{ userId: 'u', userData: { n: 1 } }]);
      await a.save([{ userId: 'u', userData: { n: 2 } }]);
      expect(await a.delete('u')).toBe(true);
      expect(await raw.get(a.keyFor('u'))).toBe('3:');
      expect(await a.load('u')).toBeUndefined();
      expect(await a.save([{ userId: 'u', userData: { n: 3 }, expectedVersion: 0 }])).toEqual([
        { status: 'ok', version: 4 },
      ]);
    });
  });

  describe('write ids', () => {
    it('stores the write id with the record as "<version>:<writeId>:<json>", on inserts and overwrites', async () => {
      const a = adapter();
      expect(
        await a.save([
          { userId: 'alice', userData: { gold: 1 }, expectedVersion: 0, writeId: 'w-1' },
          { userId: 'bob', userData: { gold: 2 }, writeId: 'node1.42_x' },
          { userId: 'carol', userData: { gold: 3 } },
        ]),
      ).toEqual([
        { status: 'ok', version: 1 },
        { status: 'ok', version: 1 },
        { status: 'ok', version: 1 },
      ]);
      expect(await raw.get(a.keyFor('alice'))).toBe('1:w-1:{"gold":1}');
      expect(await raw.get(a.keyFor('bob'))).toBe('1:node1.42_x:{"gold":2}');
      expect(await raw.get(a.keyFor('carol'))).toBe('1:{"gold":3}');
      await a.save([
        { userId: 'alice', userData: { gold: 4 }, expectedVersion: 1, writeId: 'w-2' },
        { userId: 'bob', userData: { gold: 5 } },
      ]);
      // Each write replaces the stored write id; a write without one leaves none.
      expect(await raw.get(a.keyFor('alice'))).toBe('2:w-2:{"gold":4}');
      expect(await raw.get(a.keyFor('bob'))).toBe('2:{"gold":5}');
      expect(await a.load('alice')).toEqual({ userData: { gold: 4 }, version: 2 });
    });

    it('a conflict reports the write id stored with the live record', async () => {
      const a = adapter();
      await a.save([
        { userId: 'with', userData: { n: 1 }, writeId: 'stored-write' },
        { userId: 'without', userData: { n: 1 } },
      ]);
      const results = await a.save([
        { userId: 'with', userData: { n: 2 }, expectedVersion: 0, writeId: 'late-1' },
        { userId: 'without', userData: { n: 2 }, expectedVersion: 5, writeId: 'late-2' },
      ]);
      expect(results[0]).toStrictEqual({
        status: 'conflict',
        currentVersion: 1,
        currentWriteId: 'stored-write',
      });
      expect(results[1]).toStrictEqual({ status: 'conflict', currentVersion: 1 });
      expect(await raw.get(a.keyFor('with'))).toBe('1:stored-write:{"n":1}');

      // The stale writer's retry meets the write id of the write that won.
      expect(
        await a.save([{ userId: 'with', userData: { n: 3 }, expectedVersion: 1, writeId: 'w-b' }]),
      ).toEqual([{ status: 'ok', version: 2 }]);
      expect(
        await a.save([{ userId: 'with', userData: { n: 4 }, expectedVersion: 1, writeId: 'w-c' }]),
      ).toStrictEqual([{ status: 'conflict', currentVersion: 2, currentWriteId: 'w-b' }]);

      // A tombstone carries no write id.
      expect(await a.delete('with')).toBe(true);
      expect(await raw.get(a.keyFor('with'))).toBe('3:');
      expect(
        await a.save([{ userId: 'with', userData: {}, expectedVersion: 2, writeId: 'w-d' }]),
      ).toStrictEqual([{ status: 'conflict', currentVersion: 0 }]);
    });

    it('loads, overwrites and deletes values written before write ids existed ("<version>:<json>")', async () => {
      const a = adapter();
      await raw.set(a.keyFor('old'), '7:{"gold":70,"name":"x:y"}');
      await raw.set(a.keyFor('old2'), '3:{"gold":30}');
      await raw.set(a.keyFor('gone'), '4:');
      expect(await a.load('old')).toEqual({ userData: { gold: 70, name: 'x:y' }, version: 7 });
      expect(await a.load('gone')).toBeUndefined();
      const results = await a.save([
        { userId: 'old', userData: { gold: 71 }, expectedVersion: 7, writeId: 'upgrade-1' },
        { userId: 'old2', userData: { gold: 31 }, expectedVersion: 2, writeId: 'stale' },
        { userId: 'gone', userData: { gold: 1 }, expectedVersion: 0, writeId: 'again' },
      ]);
      expect(results).toStrictEqual([
        { status: 'ok', version: 8 },
        { status: 'conflict', currentVersion: 3 },
        { status: 'ok', version: 5 },
      ]);
      expect(await raw.get(a.keyFor('old'))).toBe('8:upgrade-1:{"gold":71}');
      expect(await raw.get(a.keyFor('old2'))).toBe('3:{"gold":30}');
      expect(await raw.get(a.keyFor('gone'))).toBe('5:again:{"gold":1}');
      expect(await a.delete('old2', 3)).toBe(true);
      expect(await raw.get(a.keyFor('old2'))).toBe('4:');
    });

    it('reads a 64-character write id behind a 16-digit version (the whole head the scripts read)', async () => {
      const a = adapter();
      const writeId = `${'w'.repeat(62)}-9`;
      const version = 9_007_199_254_740_990;
      await raw.set(a.keyFor('long'), `${version}:${writeId}:{"n":1}`);
      expect(await a.load('long')).toEqual({ userData: { n: 1 }, version });
      expect(await a.save([{ userId: 'long', userData: { n: 2 }, expectedVersion: 1 }])).toStrictEqual([
        { status: 'conflict', currentVersion: version, currentWriteId: writeId },
      ]);
      expect(
        await a.save([{ userId: 'long', userData: { n: 2 }, expectedVersion: version, writeId: 'next' }]),
      ).toEqual([{ status: 'ok', version: version + 1 }]);
      expect(await rawWriteId(raw, a.keyFor('long'))).toBe('next');
      await expect(a.delete('long', version)).rejects.toMatchObject({ currentVersion: version + 1 });
      expect(await a.delete('long', version + 1)).toBe(true);
      expect(await rawVersion(raw, a.keyFor('long'))).toBe(version + 2);
    });

    it('refuses values that only look like the layout, without touching them', async () => {
      const a = adapter();
      const foreign = {
        colonless: '12:abc',
        longId: `1:${'a'.repeat(65)}:{}`,
        badChar: '1:w!d:{}',
        noJson: '1:w-1:',
      };
      for (const [userId, value] of Object.entries(foreign)) await raw.set(a.keyFor(userId), value);
      const results = await a.save(
        Object.keys(foreign).map((userId) => ({ userId, userData: {}, writeId: 'w-x' })),
      );
      for (const [i, [userId, value]] of Object.entries(foreign).entries()) {
        expect(results[i]).toMatchObject({ status: 'error' });
        expect((results[i] as { error: Error }).error.message).toContain(`user "${userId}"`);
        expect(await raw.get(a.keyFor(userId))).toBe(value);
        await expect(a.load(userId)).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
        await expect(a.delete(userId)).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      }
    });
  });

  describe('prefix isolation', () => {
    it('two adapters with different prefixes on one server never see each other’s users', async () => {
      const base = randomPrefix('iso');
      // The nested prefix is the hard case: user "b:x" under base must not be user "x" under base + "b:".
      const outer = adapter({ prefix: base });
      const inner = adapter({ prefix: `${base}b:` });
      await outer.save([{ userId: 'b:x', userData: { owner: 'outer' } }]);
      await inner.save([
        { userId: 'x', userData: { owner: 'inner' } },
        { userId: 'shared', userData: { owner: 'inner' } },
      ]);
      await outer.save([{ userId: 'shared', userData: { owner: 'outer' } }]);
      expect(await outer.load('b:x')).toEqual({ userData: { owner: 'outer' }, version: 1 });
      expect(await inner.load('x')).toEqual({ userData: { owner: 'inner' }, version: 1 });
      expect(await outer.load('x')).toBeUndefined();
      expect(await inner.load('shared')).toEqual({ userData: { owner: 'inner' }, version: 1 });
      expect(await outer.load('shared')).toEqual({ userData: { owner: 'outer' }, version: 1 });
      expect(await inner.delete('shared')).toBe(true);
      expect(await outer.load('shared')).toEqual({ userData: { owner: 'outer' }, version: 1 });
    });
  });

  describe('scripts', () => {
    it('a script flushed with SCRIPT FLUSH between two saves is reloaded transparently', async () => {
      const a = adapter();
      await a.setup();
      const users = Array.from({ length: 250 }, (_, i) => `user${i}`);
      const first = await a.save(
        users.map((userId) => ({ userId, userData: { round: 1 }, expectedVersion: 0 })),
      );
      expect(first.every((r) => r.status === 'ok' && r.version === 1)).toBe(true);
      await raw.script('FLUSH');
      const second = await a.save(
        users.map((userId) => ({ userId, userData: { round: 2 }, expectedVersion: 1 })),
      );
      expect(second).toEqual(users.map(() => ({ status: 'ok', version: 2 })));
      expect(await readRaw(raw, a.keyFor('user249'))).toEqual({ userData: { round: 2 }, version: 2 });
      await raw.script('FLUSH');
      expect(await a.delete('user0', 2)).toBe(true);
      expect(await rawVersion(raw, a.keyFor('user0'))).toBe(3);
    });

    it('setup() loads the scripts into the server', async () => {
      const a = adapter();
      await raw.script('FLUSH');
      await a.setup();
      const shas = scripts.map((script) => createHash('sha1').update(script.lua).digest('hex'));
      expect(await raw.script('EXISTS', ...shas)).toEqual(scripts.map(() => 1));
    });
  });

  describe('batches', () => {
    it('sends a batch as one pipeline of script calls, not one round trip per record', async () => {
      const client = new Redis(url!);
      const a = new RedisAdapter({ client, prefix: randomPrefix() });
      await a.setup();
      const pipelines = vi.spyOn(client, 'pipeline');
      const sent = vi.spyOn(client, 'sendCommand');
      const results = await a.save(
        Array.from({ length: 1000 }, (_, i) => ({ userId: i, userData: { i }, expectedVersion: 0 })),
      );
      expect(results.filter((r) => r.status === 'ok')).toHaveLength(1000);
      expect(pipelines).toHaveBeenCalledTimes(1);
      // Users share script calls: far fewer commands than records.
      expect(sent.mock.calls.length).toBeLessThanOrEqual(20);
      expect(sent.mock.calls.every(([command]) => command.name === 'evalsha')).toBe(true);
      await a.close();
      await client.quit();
    });

    it('a key holding another type fails only its own record, with the server’s error as cause', async () => {
      const a = adapter();
      await raw.hset(a.keyFor('hash'), 'field', 'value');
      await raw.set(a.keyFor('foreign'), 'not written by the adapter');
      const results = await a.save([
        { userId: 'before', userData: { n: 1 } },
        { userId: 'hash', userData: { n: 2 } },
        { userId: 'foreign', userData: { n: 3 } },
        { userId: 'after', userData: { n: 4 } },
      ]);
      expect(results[0]).toEqual({ status: 'ok', version: 1 });
      expect(results[3]).toEqual({ status: 'ok', version: 1 });
      for (const [index, text] of [
        [1, 'WRONGTYPE'],
        [2, 'CAGEY_FOREIGN_VALUE'],
      ] as const) {
        const result = results[index]!;
        expect(result.status).toBe('error');
        const error = (result as { error: Error }).error as AdapterError;
        expect(error).toBeInstanceOf(AdapterError);
        expect(error.code).toBe('ADAPTER_ERROR');
        expect((error.cause as Error).message).toContain(text);
      }
      expect(await raw.hget(a.keyFor('hash'), 'field')).toBe('value');
      expect(await raw.get(a.keyFor('foreign'))).toBe('not written by the adapter');
      expect(await readRaw(raw, a.keyFor('after'))).toEqual({ userData: { n: 4 }, version: 1 });
    });

    it('spreads a batch over several script calls and keeps results in input order', async () => {
      const a = adapter();
      await a.save([{ userId: 'taken', userData: {} }]);
      // 1 MB records force a script call each; the conflict sits between them.
      const big = 'b'.repeat(1024 * 1024);
      const results = await a.save([
        { userId: 'big1', userData: { big } },
        { userId: 'taken', userData: {}, expectedVersion: 0 },
        { userId: 'big2', userData: { big } },
        ...Array.from({ length: 150 }, (_, i) => ({ userId: `small${i}`, userData: { i } })),
      ]);
      expect(results[0]).toEqual({ status: 'ok', version: 1 });
      expect(results[1]).toEqual({ status: 'conflict', currentVersion: 1 });
      expect(results[2]).toEqual({ status: 'ok', version: 1 });
      expect(results.slice(3).every((r) => r.status === 'ok')).toBe(true);
      expect((await a.load('big2'))?.userData).toEqual({ big });
    });
  });

  describe('errors', () => {
    it('load of a key the adapter did not write rejects with ADAPTER_ERROR naming the key', async () => {
      const a = adapter();
      await raw.set(a.keyFor('foreign'), '{"not":"versioned"}');
      const error = await a.load('foreign').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AdapterError);
      expect((error as AdapterError).code).toBe('ADAPTER_ERROR');
      expect((error as AdapterError).message).toContain(a.keyFor('foreign'));
    });

    it('delete with a stale expectedVersion rejects with ConflictError and leaves the record', async () => {
      const a = adapter();
      await a.save([{ userId: 'u', userData: { n: 1 } }]);
      await a.save([{ userId: 'u', userData: { n: 2 } }]);
      const error = await a.delete('u', 1).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ code: 'VERSION_CONFLICT', expectedVersion: 1, currentVersion: 2 });
      expect(await readRaw(raw, a.keyFor('u'))).toEqual({ userData: { n: 2 }, version: 2 });
    });

    it('save rejects as a whole when the connection is gone, wrapping the driver error', async () => {
      const client = new Redis(url!);
      const a = new RedisAdapter({ client, prefix: randomPrefix() });
      await a.setup();
      client.disconnect();
      const error = await a
        .save([
          { userId: 'a', userData: {} },
          { userId: 'b', userData: {} },
        ])
        .catch((e) => e);
      expect(error).toBeInstanceOf(AdapterError);
      expect(error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'redis' });
      expect(error.cause).toBeInstanceOf(Error);
      await expect(a.load('a')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      await expect(a.delete('a')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
    });
  });

  describe('ttl', () => {
    it('is not set by default', async () => {
      const a = adapter();
      await a.save([{ userId: 'u', userData: {} }]);
      expect(await raw.pttl(a.keyFor('u'))).toBe(-1);
    });

    it('is applied on every write and on the tombstone', async () => {
      const a = adapter({ ttl: '1h' });
      await a.save([{ userId: 'u', userData: {} }]);
      await raw.pexpire(a.keyFor('u'), 60_000);
      await a.save([{ userId: 'u', userData: { n: 2 } }]);
      const afterSave = await raw.pttl(a.keyFor('u'));
      expect(afterSave).toBeGreaterThan(3_500_000);
      expect(afterSave).toBeLessThanOrEqual(3_600_000);
      await raw.pexpire(a.keyFor('u'), 60_000);
      await a.delete('u');
      expect(await raw.pttl(a.keyFor('u'))).toBeGreaterThan(3_500_000);
      expect(await rawVersion(raw, a.keyFor('u'))).toBe(3);
    });

    it('makes Redis drop the user once it elapses', async () => {
      const a = adapter({ ttl: 200 });
      const subscriber = new Redis(url!);
      try {
        await raw.config('SET', 'notify-keyspace-events', 'Ex');
        await subscriber.subscribe('__keyevent@0__:expired');
        const key = a.keyFor('short-lived');
        const expired = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the key did not expire within 10 s')), 10_000);
          subscriber.on('message', (_channel, expiredKey) => {
            if (expiredKey === key) {
              clearTimeout(timer);
              resolve();
            }
          });
        });
        // The expired event for this key proves it was written and then dropped; a load right after the save
        // could already miss it on a busy machine.
        expect(await a.save([{ userId: 'short-lived', userData: { n: 1 } }])).toEqual([
          { status: 'ok', version: 1 },
        ]);
        await expired;
        expect(await a.load('short-lived')).toBeUndefined();
        expect(await raw.exists(key)).toBe(0);
      } finally {
        subscriber.disconnect();
      }
    });
  });

  describe('client ownership', () => {
    it('closes a client it opened from a url', async () => {
      const a = adapter();
      await a.load('anyone');
      await a.close();
      expect(a.client.status).toBe('end');
    });

    it('closes a client it opened from a url even when no call was made', async () => {
      const a = adapter();
      await vi.waitFor(() => expect(a.client.status).toBe('ready'), { timeout: 5000, interval: 10 });
      await a.close();
      expect(a.client.status).toBe('end');
    });

    it('leaves an injected client open, and it keeps working', async () => {
      const client = new Redis(url!);
      const a = new RedisAdapter({ client });
      await a.load('anyone');
      await a.close();
      expect(await client.ping()).toBe('PONG');
      await client.quit();
    });
  });
});
