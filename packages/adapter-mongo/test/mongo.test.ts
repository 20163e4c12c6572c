import { AdapterError, ValidationError } from '@cagey-sessions/core';
import type { CommandStartedEvent, MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createMongoAdapter, MongoAdapter, type UserDocument } from '../src/index.js';
import { newClient, onFerretDB, randomDatabase, randomName, serverOptions, serverUrl } from './helpers.js';

const url = serverUrl('adapter-mongo: adapter-specific tests');
const database = randomDatabase();

describe.skipIf(url === null)('MongoAdapter against a server', () => {
  let client: MongoClient;
  let commands: CommandStartedEvent[] = [];

  beforeAll(() => {
    client = newClient(url!, { monitorCommands: true });
    client.on('commandStarted', (event) => commands.push(event));
  });

  afterAll(async () => {
    await client.db(database).dropDatabase();
    await client.close();
  });

  function adapter(collection = randomName(), extra: object = {}): MongoAdapter {
    return new MongoAdapter({ client, database, collection, ...serverOptions(), ...extra });
  }

  function raw(adapter: MongoAdapter) {
    return client.db(database).collection<UserDocument>(adapter.collection);
  }

  /** The write and read commands sent to the adapter's collection since the last call. */
  function takeCommands(adapter: MongoAdapter): string[] {
    const names = commands
      .filter((event) => (event.command as Record<string, unknown>)[event.commandName] === adapter.collection)
      .map((event) => event.commandName);
    commands = [];
    return names;
  }

  describe('data model', () => {
    it('stores { _id: userKey, data, version, updatedAt, writeId } and a tombstone without data after delete', async () => {
      const users = adapter();
      const before = Date.now();
      expect(await users.save([{ userId: 42, userData: { gold: 7, bag: ['sword'] } }])).toEqual([
        { status: 'ok', version: 1 },
      ]);
      const document = await raw(users).findOne({ _id: '42' });
      expect(document).toMatchObject({ _id: '42', data: { gold: 7, bag: ['sword'] }, version: 1 });
      expect(document!.updatedAt).toBeInstanceOf(Date);
      expect(document!.updatedAt.getTime()).toBeGreaterThanOrEqual(before - 1_000);
      expect(typeof document!.writeId).toBe('string');
      expect(document!.deleted).toBeUndefined();

      expect(await users.delete(42)).toBe(true);
      const tombstone = await raw(users).findOne({ _id: '42' });
      expect(tombstone).toMatchObject({ _id: '42', version: 2, deleted: true });
      expect(tombstone!.data).toBeUndefined();
      await users.close();
    });

    it('setup() creates the collection and is idempotent', async () => {
      const users = adapter();
      await users.setup();
      await users.setup();
      const found = await client.db(database).listCollections({ name: users.collection }).toArray();
      expect(found).toHaveLength(1);
    });
  });

  describe('field names MongoDB would read as operators or paths', () => {
    it.each([
      ['a $-prefixed key', { $inc: { gold: 1000 } }, '$inc'],
      ['a dotted key', { stats: { 'gold.total': 5 } }, 'stats.gold.total'],
      ['a $-prefixed key inside an array', { log: [{ ok: 1 }, { $where: 'x' }] }, 'log[1].$where'],
      ['a key with NUL', { 'a\u0000b': 1 }, 'a\u0000b'],
    ])(
      '%s: the record fails with INVALID_USER_DATA naming the path; neighbours are written; nothing is interpreted',
      async (_what, userData, path) => {
        const users = adapter();
        await users.save([{ userId: 'victim', userData: { gold: 1 } }]);
        const results = await users.save([
          { userId: 'before', userData: { n: 1 } },
          { userId: 'victim', userData, expectedVersion: 1 },
          { userId: 'after', userData: { n: 2 } },
        ]);
        expect(results[0]).toEqual({ status: 'ok', version: 1 });
        expect(results[2]).toEqual({ status: 'ok', version: 1 });
        expect(results[1]!.status).toBe('error');
        const error = (results[1] as { error: unknown }).error as ValidationError;
        expect(error).toBeInstanceOf(ValidationError);
        expect(error.code).toBe('INVALID_USER_DATA');
        expect(error.path).toBe(path);
        expect(error.message).toMatch(/cannot start with "\$" or contain "\."/);
        expect(await raw(users).findOne({ _id: 'victim' })).toMatchObject({ data: { gold: 1 }, version: 1 });
        expect(await users.load('victim')).toEqual({ userData: { gold: 1 }, version: 1 });
      },
    );

    it('strings that look like operators are plain values, stored and loaded as they are', async () => {
      const users = adapter();
      const userData = { note: '$inc', path: 'a.b', nested: { op: { x: '$set' } }, list: ['$unset', '.'] };
      expect(await users.save([{ userId: 'values', userData }])).toEqual([{ status: 'ok', version: 1 }]);
      expect(await users.load('values')).toEqual({ userData, version: 1 });
      expect((await raw(users).findOne({ _id: 'values' }))!.data).toEqual(userData);
    });
  });

  describe('round trips', () => {
    it('a batch of conditional writes is one bulkWrite, and a read follows only when something conflicted', async () => {
      const users = adapter(randomName(), { maxUpdatesPerBulkWrite: undefined });
      const n = 40;
      const ids = Array.from({ length: n }, (_, i) => `user-${i}`);
      takeCommands(users);
      const inserted = await users.save(
        ids.map((userId) => ({ userId, userData: { v: 1 }, expectedVersion: 0 })),
      );
      expect(inserted.every((result) => result.status === 'ok' && result.version === 1)).toBe(true);
      expect(takeCommands(users)).toEqual(['insert']);

      const updated = await users.save(
        ids.map((userId) => ({ userId, userData: { v: 2 }, expectedVersion: 1 })),
      );
      expect(updated.every((result) => result.status === 'ok' && result.version === 2)).toBe(true);
      expect(takeCommands(users)).toEqual(['update']);

      const stale = await users.save(
        ids.map((userId, i) => ({ userId, userData: { v: 3 }, expectedVersion: i === 7 ? 1 : 2 })),
      );
      expect(stale[7]).toEqual({ status: 'conflict', currentVersion: 2 });
      expect(stale.filter((result) => result.status === 'ok')).toHaveLength(n - 1);
      expect(takeCommands(users)).toEqual(['update', 'find']);
    });

    it('maxUpdatesPerBulkWrite splits the updates of a save into bulkWrites of at most that many', async () => {
      const users = adapter(randomName(), { maxUpdatesPerBulkWrite: 10 });
      takeCommands(users);
      const records = (version: number) =>
        Array.from({ length: 25 }, (_, i) => ({
          userId: i,
          userData: { i, version },
          expectedVersion: version,
        }));
      const inserted = await users.save(records(0));
      expect(inserted.every((result) => result.status === 'ok' && result.version === 1)).toBe(true);
      expect(takeCommands(users), 'inserts are not limited').toEqual(['insert']);
      const updated = await users.save(records(1));
      expect(updated.every((result) => result.status === 'ok' && result.version === 2)).toBe(true);
      expect(takeCommands(users)).toEqual(['update', 'update', 'update']);
      expect(await raw(users).countDocuments({ version: 2 })).toBe(25);
    });

    it('a 10,000-record batch is stored whole, with versions, in one save', {
      timeout: 240_000,
    }, async () => {
      const users = adapter();
      const n = 10_000;
      const payload = 'x'.repeat(200);
      const results = await users.save(
        Array.from({ length: n }, (_, i) => ({ userId: i, userData: { i, payload }, expectedVersion: 0 })),
      );
      expect(results).toHaveLength(n);
      expect(results.filter((result) => result.status === 'ok' && result.version === 1)).toHaveLength(n);
      expect(await raw(users).countDocuments()).toBe(n);
      for (const i of [0, 1, 4_999, 9_998, 9_999]) {
        expect(await users.load(i)).toEqual({ userData: { i, payload }, version: 1 });
      }
      // A second pass of unconditional writes continues every version (a read, then conditional writes).
      if (!onFerretDB()) {
        const again = await users.save(Array.from({ length: n }, (_, i) => ({ userId: i, userData: { i } })));
        expect(again.filter((result) => result.status === 'ok' && result.version === 2)).toHaveLength(n);
      }
    });
  });

  describe('write ids', () => {
    it("stores each record's writeId with the write and reports the stored one in every conflict", async () => {
      const users = adapter();
      const stored = async () => (await raw(users).findOne({ _id: 'p' }))?.writeId;
      expect(
        await users.save([{ userId: 'p', userData: { n: 1 }, expectedVersion: 0, writeId: 'w1' }]),
      ).toEqual([{ status: 'ok', version: 1 }]);
      expect(await stored()).toBe('w1');
      expect(
        await users.save([{ userId: 'p', userData: { n: 2 }, expectedVersion: 1, writeId: 'w2' }]),
      ).toEqual([{ status: 'ok', version: 2 }]);
      expect(await stored()).toBe('w2');
      expect(await users.save([{ userId: 'p', userData: { n: 3 }, writeId: 'w3.x_y-z' }])).toEqual([
        { status: 'ok', version: 3 },
      ]);
      expect(await stored()).toBe('w3.x_y-z');

      // A stale writer, and a second "new player": conflicts naming the stored write id; nothing is touched.
      expect(
        await users.save([{ userId: 'p', userData: { stale: true }, expectedVersion: 2, writeId: 'w4' }]),
      ).toEqual([{ status: 'conflict', currentVersion: 3, currentWriteId: 'w3.x_y-z' }]);
      expect(
        await users.save([{ userId: 'p', userData: { stale: true }, expectedVersion: 0, writeId: 'w5' }]),
      ).toEqual([{ status: 'conflict', currentVersion: 3, currentWriteId: 'w3.x_y-z' }]);
      expect(await raw(users).findOne({ _id: 'p' })).toMatchObject({ data: { n: 3 }, version: 3 });

      // A write without a write id stores none the caller could mistake for its own.
      expect(await users.save([{ userId: 'p', userData: { n: 4 } }])).toEqual([{ status: 'ok', version: 4 }]);
      const [conflict] = await users.save([{ userId: 'p', userData: {}, expectedVersion: 1, writeId: 'w6' }]);
      expect(conflict).toEqual({ status: 'conflict', currentVersion: 4, currentWriteId: undefined });

      // A deleted user: no live record, no write id.
      await users.delete('p');
      expect(await users.save([{ userId: 'p', userData: {}, expectedVersion: 4, writeId: 'w7' }])).toEqual([
        { status: 'conflict', currentVersion: 0, currentWriteId: undefined },
      ]);
      expect(
        await users.save([{ userId: 'p', userData: { n: 6 }, expectedVersion: 0, writeId: 'w8' }]),
      ).toEqual([{ status: 'ok', version: 6 }]);
      expect(await stored()).toBe('w8');
    });

    it('a record already stored under its own write id is reported written, with the stored version', async () => {
      const users = adapter();
      // An earlier attempt of this very write committed (as the revival of a deleted user) but its answer was lost.
      await raw(users).insertOne({
        _id: 'back',
        data: { n: 1 },
        version: 4,
        updatedAt: new Date(),
        writeId: 'w-1',
      });
      expect(
        await users.save([
          { userId: 'back', userData: { n: 1 }, expectedVersion: 0, writeId: 'w-1' },
          { userId: 'other', userData: { n: 1 }, expectedVersion: 0, writeId: 'w-2' },
        ]),
      ).toEqual([
        { status: 'ok', version: 4 },
        { status: 'ok', version: 1 },
      ]);
      expect(await raw(users).findOne({ _id: 'back' })).toMatchObject({ version: 4, writeId: 'w-1' });
    });

    it('an invalid writeId fails its record alone', async () => {
      const users = adapter();
      const results = await users.save([
        { userId: 'a', userData: {}, writeId: 'has space' },
        { userId: 'b', userData: {}, writeId: 'x'.repeat(65) },
        { userId: 'c', userData: {}, writeId: 'fine' },
      ]);
      expect(results[0]).toMatchObject({ status: 'error', error: { code: 'INVALID_OPTIONS' } });
      expect(results[1]).toMatchObject({ status: 'error', error: { code: 'INVALID_OPTIONS' } });
      expect(results[2]).toEqual({ status: 'ok', version: 1 });
      expect(await raw(users).countDocuments()).toBe(1);
    });
  });

  describe('errors', () => {
    it('a driver error is an AdapterError with the cause, and never shows the password of the URL', async () => {
      const users = new MongoAdapter({
        url: 'mongodb://player:hunter2-secret@127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300',
        collection: 'nowhere',
      });
      const error = (await users.load('someone').catch((caught: unknown) => caught)) as AdapterError;
      expect(error).toBeInstanceOf(AdapterError);
      expect(error.code).toBe('ADAPTER_ERROR');
      expect(error.adapter).toBe('mongo');
      expect(error.cause).toBeInstanceOf(Error);
      expect(error.message).toMatch(/^\[mongo\] load failed: /);
      expect(error.message).not.toContain('hunter2');
      await expect(users.save([{ userId: 'a', userData: {} }])).rejects.toMatchObject({
        code: 'ADAPTER_ERROR',
      });
      await users.close();
    });

    it('a user who keeps losing races is named the way core names users (numbers bare, long ids cut)', async () => {
      const collection = randomName();
      const real = client.db(database).collection<UserDocument>(collection);
      // A collection whose every write is overtaken by another writer: each bulkWrite bumps the stored
      // versions first, and each delete's update matches nothing while the record stays at its version.
      const rival = new Proxy(real, {
        get(target, property, receiver) {
          if (property === 'bulkWrite') {
            return async (...args: Parameters<typeof real.bulkWrite>) => {
              await target.updateMany({}, { $inc: { version: 1 }, $set: { writeId: 'rival' } });
              return target.bulkWrite(...args);
            };
          }
          if (property === 'updateOne') {
            return async () => ({ acknowledged: true, matchedCount: 0, modifiedCount: 0, upsertedCount: 0 });
          }
          const value = Reflect.get(target, property, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const fake = { db: () => ({ collection: () => rival }) } as unknown as MongoClient;
      const users = new MongoAdapter({ client: Promise.resolve(fake), collection });
      const longId = `player-${'x'.repeat(200)}`;
      await real.insertMany([
        { _id: '12345', data: {}, version: 1, updatedAt: new Date() },
        { _id: longId, data: {}, version: 1, updatedAt: new Date() },
      ]);
      const results = await users.save([
        { userId: 12345, userData: { n: 1 } },
        { userId: longId, userData: { n: 1 } },
      ]);
      const messages = results.map((result) => (result as { error?: Error }).error?.message);
      expect(messages[0]).toBe('[mongo] save of user 12345 lost 10 races with concurrent writers; retry it.');
      expect(messages[1]).toContain(`save of user "${longId.slice(0, 64)}"… lost 10 races`);
      expect(messages[1]).not.toContain(longId.slice(0, 65));

      const deleted = (await users
        .delete(12345, (await real.findOne({ _id: '12345' }))!.version)
        .catch((error: unknown) => error)) as Error;
      expect(deleted.message).toBe('[mongo] delete of user 12345 kept racing concurrent writes; retry it.');
    });

    it('a save whose bulkWrite cannot reach the server rejects as a whole', async () => {
      const users = new MongoAdapter({
        url: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300',
        collection: 'nowhere',
      });
      await expect(
        users.save([
          { userId: 'a', userData: {}, expectedVersion: 0 },
          { userId: 'b', userData: {}, expectedVersion: 3 },
        ]),
      ).rejects.toBeInstanceOf(AdapterError);
      await users.close();
    });
  });

  describe('a store that refuses a value the adapter lets through', () => {
    // FerretDB 1.x refuses arrays inside arrays and stops an update command at the first refused statement;
    // MongoDB stores them. Either way, neighbours must get their exact results.
    it('a refused update in the middle of a batch fails alone; the updates after it are still written', async () => {
      const users = adapter();
      const ids = ['u1', 'u2', 'u3', 'u4', 'u5'];
      await users.save(ids.map((userId) => ({ userId, userData: { v: 1 }, expectedVersion: 0 })));
      const grid = {
        grid: [
          [1, 2],
          [3, 4],
        ],
      };
      const results = await users.save(
        ids.map((userId) => ({ userId, userData: userId === 'u3' ? grid : { v: 2 }, expectedVersion: 1 })),
      );
      for (const i of [0, 1, 3, 4]) expect(results[i], ids[i]).toEqual({ status: 'ok', version: 2 });
      for (const userId of ['u1', 'u2', 'u4', 'u5']) {
        expect(await users.load(userId)).toEqual({ userData: { v: 2 }, version: 2 });
      }
      if (onFerretDB()) {
        expect(results[2]!.status).toBe('error');
        expect((results[2] as { error: unknown }).error as AdapterError).toMatchObject({
          code: 'ADAPTER_ERROR',
        });
        expect(((results[2] as { error: unknown }).error as AdapterError).message).toMatch(/nested arrays/);
        expect(await users.load('u3')).toEqual({ userData: { v: 1 }, version: 1 });
      } else {
        expect(results[2]).toEqual({ status: 'ok', version: 2 });
        expect(await users.load('u3')).toEqual({ userData: grid, version: 2 });
      }
    });

    it('a refused insert fails alone; the inserts around it are written', async () => {
      const users = adapter();
      const grid = { grid: [[1]] };
      const results = await users.save([
        { userId: 'a', userData: { ok: 1 }, expectedVersion: 0 },
        { userId: 'b', userData: grid, expectedVersion: 0 },
        { userId: 'c', userData: { ok: 3 }, expectedVersion: 0 },
      ]);
      expect(results[0]).toEqual({ status: 'ok', version: 1 });
      expect(results[2]).toEqual({ status: 'ok', version: 1 });
      expect(results[1]!.status).toBe(onFerretDB() ? 'error' : 'ok');
      expect(await raw(users).countDocuments()).toBe(onFerretDB() ? 2 : 3);
    });
  });

  describe('createMongoAdapter', () => {
    it('without client, db or url, works on the server MONGODB_URI names, and close() closes that client', async () => {
      vi.stubEnv('MONGODB_URI', url!);
      try {
        const users = createMongoAdapter({ database, collection: randomName(), ...serverOptions() });
        expect(await users.save([{ userId: 'env', userData: { a: 1 } }])).toEqual([
          { status: 'ok', version: 1 },
        ]);
        expect(await raw(users).findOne({ _id: 'env' })).toMatchObject({ data: { a: 1 }, version: 1 });
        await users.close();
        await expect(users.load('env')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
      } finally {
        vi.unstubAllEnvs();
      }
    });
  });

  describe('clients the caller owns', () => {
    it('over a Db: close() leaves its client working', async () => {
      const users = new MongoAdapter({ db: client.db(database), collection: randomName() });
      expect(await users.save([{ userId: 'x', userData: { a: 1 } }])).toEqual([{ status: 'ok', version: 1 }]);
      await users.close();
      await expect(users.load('x')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
      expect((await client.db('admin').command({ ping: 1 })).ok).toBe(1);
    });

    it('over a promise of a client: waits for it, and close() leaves the client open', async () => {
      const own = newClient(url!);
      const users = new MongoAdapter({ client: own.connect(), database, collection: randomName() });
      expect(await users.save([{ userId: 'x', userData: { a: 1 } }])).toEqual([{ status: 'ok', version: 1 }]);
      expect(await users.load('x')).toEqual({ userData: { a: 1 }, version: 1 });
      await users.close();
      expect((await own.db('admin').command({ ping: 1 })).ok).toBe(1);
      await own.close();
    });

    it('a promise of a client that rejects fails the call with ADAPTER_ERROR, and a later call tries again', async () => {
      let attempts = 0;
      const users = new MongoAdapter({
        client: {
          // biome-ignore lint/suspicious/noThenProperty: a thenable stands in for a promise that rejects
          then: (_resolve: unknown, reject: (error: Error) => void) => {
            attempts++;
            reject(new Error('no client today'));
          },
        } as unknown as Promise<MongoClient>,
        collection: randomName(),
      });
      await expect(users.load('x')).rejects.toMatchObject({
        code: 'ADAPTER_ERROR',
        message: /no client today/,
      });
      await expect(users.load('x')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      expect(attempts).toBe(2);
    });
  });
});
