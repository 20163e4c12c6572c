/**
 * What the conformance suite cannot make happen on purpose: two processes restoring the same new user at once,
 * so that one insert meets the other's document (a duplicate key), and the store's state after a restore.
 */
import type { Db, MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MongoAdapter, type UserDocument } from '../src/index.js';
import { newClient, randomDatabase, randomName, serverOptions, serverUrl } from './helpers.js';

const url = serverUrl('adapter-mongo: restore races');
const database = randomDatabase();

describe.skipIf(url === null)('restore', () => {
  let raw: MongoClient;
  beforeAll(() => {
    raw = newClient(url!);
  });
  afterAll(async () => {
    await raw.db(database).dropDatabase();
    await raw.close();
  });

  const open = (collection: string) =>
    new MongoAdapter({ url: url!, database, collection, ...serverOptions() });

  it('two processes restoring the same new users at once: the higher version is stored, the lower one wins or conflicts', async () => {
    const collection = randomName('race');
    const [a, b] = [open(collection), open(collection)];
    try {
      await a.setup();
      const users = Array.from({ length: 40 }, (_, i) => `u${i}`);
      // Both read "no document", both insert: for each user one insert meets the other's document.
      const [low, high] = await Promise.all([
        a.restore(users.map((userId) => ({ userId, userData: { from: 'a' }, version: 5 }))),
        b.restore(users.map((userId) => ({ userId, userData: { from: 'b' }, version: 7 }))),
      ]);
      expect(high.every((result) => result.status === 'ok' && result.version === 7)).toBe(true);
      for (const result of low) {
        // Either a wrote first (then b's restore replaced it) or b did (then a's is a conflict with version 7).
        expect(result.status === 'ok' ? result.version : result).toEqual(
          result.status === 'ok' ? 5 : { status: 'conflict', currentVersion: 7, currentWriteId: undefined },
        );
      }
      const documents = await raw
        .db(database)
        .collection<UserDocument>(collection)
        .find({}, { projection: { data: 1, version: 1 } })
        .toArray();
      expect(documents).toHaveLength(40);
      expect(documents.every((d) => d.version === 7 && d.data?.from === 'b')).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });

  /**
   * A `Db` whose collections' `find` runs `meanwhile` after the read and before handing its documents over:
   * another process's write landing between the adapter's read and its bulkWrite, every time.
   */
  function interleaved(meanwhile: () => Promise<void>): Db {
    const db = raw.db(database);
    const collectionOf = (name: string) => {
      const collection = db.collection(name);
      return new Proxy(collection, {
        get(target, property) {
          if (property === 'find') {
            return (...args: Parameters<typeof target.find>) => {
              const cursor = target.find(...args);
              const toArray = cursor.toArray.bind(cursor);
              cursor.toArray = async () => {
                const documents = await toArray();
                await meanwhile();
                return documents;
              };
              return cursor;
            };
          }
          const value = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    };
    return new Proxy(db, {
      get(target, property) {
        if (property === 'collection') return collectionOf;
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  it.each([
    ['an older version: written over it', 5, { status: 'ok', version: 7 }, 7],
    ['a newer version: a conflict, the newer one kept', 9, { status: 'conflict', currentVersion: 9 }, 9],
  ] as const)(
    'an insert that meets a document another process inserted after the read (%s)',
    async (_name, theirs, result, stored) => {
      const collection = randomName('dup');
      const documents = raw.db(database).collection<UserDocument>(collection);
      let inserted = false;
      const adapter = new MongoAdapter({
        db: interleaved(async () => {
          if (inserted) return;
          inserted = true;
          await documents.insertOne({
            _id: 'racer',
            data: { theirs: true },
            version: theirs,
            updatedAt: new Date(),
          });
        }),
        collection,
        ...serverOptions(),
      });
      try {
        const [outcome] = await adapter.restore([{ userId: 'racer', userData: { ours: true }, version: 7 }]);
        expect(inserted, 'the other process wrote between the read and the bulkWrite').toBe(true);
        expect(outcome).toMatchObject(result);
        expect(await documents.findOne({ _id: 'racer' })).toMatchObject({ version: stored });
      } finally {
        await adapter.close();
      }
    },
  );

  it('revives a tombstone of a lower version with exactly the restored version and write id', async () => {
    const collection = randomName('revive');
    const adapter = open(collection);
    try {
      await adapter.setup();
      await adapter.save([{ userId: 'gone', userData: { n: 1 } }]);
      await adapter.delete('gone'); // tombstone at version 2
      expect(
        await adapter.restore([{ userId: 'gone', userData: { n: 9 }, version: 3, writeId: 'import-1' }]),
      ).toEqual([{ status: 'ok', version: 3 }]);
      const document = await raw.db(database).collection<UserDocument>(collection).findOne({ _id: 'gone' });
      expect(document).toMatchObject({ data: { n: 9 }, version: 3, writeId: 'import-1' });
      expect(document).not.toHaveProperty('deleted');
    } finally {
      await adapter.close();
    }
  });
});
