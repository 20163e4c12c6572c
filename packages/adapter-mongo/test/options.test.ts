import { MongoClient } from 'mongodb';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createMongoAdapter, MongoAdapter } from '../src/index.js';

/** Never connected: constructing an adapter over it sends nothing. */
const client = new MongoClient('mongodb://127.0.0.1:1/');

afterAll(() => client.close());
afterEach(() => {
  vi.unstubAllEnvs();
});

function invalid(message: RegExp) {
  return expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringMatching(message) });
}

describe('MongoAdapter options', () => {
  it('options are validated: collection name, exactly one of client/db/url, batch sizes', () => {
    expect(() => new MongoAdapter({ client, collection: 'bad-name' })).toThrow(invalid(/collection/));
    expect(() => new MongoAdapter({ client, url: 'mongodb://127.0.0.1:1/' } as never)).toThrow(
      invalid(/either client .* or url/),
    );
    expect(() => new MongoAdapter({ url: 'http://example.invalid/' })).toThrow(/mongodb:\/\//);
    expect(() => new MongoAdapter({ client, database: 'a.b' })).toThrow(/Invalid database/);
    expect(() => new MongoAdapter({ client, batchSize: 0 })).toThrow(invalid(/batchSize/));
    expect(() => new MongoAdapter({ client, maxUpdatesPerBulkWrite: 1.5 })).toThrow(
      invalid(/maxUpdatesPerBulkWrite/),
    );
    expect(() => new MongoAdapter({} as never)).toThrow(invalid(/client .* or url/));
    expect(() => new MongoAdapter(null as never)).toThrow(invalid(/\{ client \}, \{ db \} or \{ url \}/));
  });

  it('a Db goes alone: with a client or a url, or with a database, it is refused', () => {
    const db = client.db('game');
    expect(() => new MongoAdapter({ db, client } as never)).toThrow(
      invalid(/exactly one of client, db or url/),
    );
    expect(() => new MongoAdapter({ db, url: 'mongodb://127.0.0.1:1/' } as never)).toThrow(
      invalid(/exactly one of client, db or url/),
    );
    expect(() => new MongoAdapter({ db, database: 'other' } as never)).toThrow(invalid(/database/));
    expect(new MongoAdapter({ db }).collection).toBe('cagey_user_data');
  });

  it('clientOptions and connectTimeout are refused next to a client or Db the caller owns', () => {
    for (const extra of [{ clientOptions: { retryWrites: false } }, { connectTimeout: '1s' }]) {
      const key = Object.keys(extra)[0]!;
      expect(() => new MongoAdapter({ client, ...extra } as never), key).toThrow(invalid(new RegExp(key)));
      expect(() => new MongoAdapter({ db: client.db('game'), ...extra } as never), key).toThrow(
        invalid(new RegExp(key)),
      );
    }
  });

  it('an unknown option is refused naming the nearest known one; maxBatchSize names its new name', () => {
    expect(() => new MongoAdapter({ client, colection: 'players' } as never)).toThrow(
      invalid(/unknown option "colection"\. Did you mean collection\?/),
    );
    expect(() => new MongoAdapter({ client, maxBatchSize: 10 } as never)).toThrow(
      invalid(/"maxBatchSize" was renamed to batchSize/),
    );
  });

  it('batchSize is exposed as maxBatchSize (default 1000); collection is exposed as given', () => {
    const byDefault = new MongoAdapter({ client });
    expect(byDefault.maxBatchSize).toBe(1000);
    expect(byDefault.collection).toBe('cagey_user_data');
    const tuned = new MongoAdapter({ client, batchSize: 50, collection: 'Player_Sessions' });
    expect(tuned.maxBatchSize).toBe(50);
    expect(tuned.collection).toBe('Player_Sessions');
    expect(tuned.collectionName, 'the deprecated alias').toBe('Player_Sessions');
    expect(tuned.name).toBe('mongo');
  });
});

describe('createMongoAdapter', () => {
  it('without client, db or url: the URL in MONGODB_URI, refused with INVALID_OPTIONS when unset or not mongodb://', async () => {
    vi.stubEnv('MONGODB_URI', '');
    expect(() => createMongoAdapter()).toThrow(invalid(/MONGODB_URI/));
    vi.stubEnv('MONGODB_URI', 'http://user:hunter2@example.invalid/');
    expect(() => createMongoAdapter()).toThrow(invalid(/mongodb:\/\//));
    expect(() => createMongoAdapter()).not.toThrow(/hunter2/);

    vi.stubEnv('MONGODB_URI', 'mongodb://127.0.0.1:1/');
    const fromEnv = createMongoAdapter({ collection: 'players', batchSize: 20, connectTimeout: 200 });
    expect(fromEnv.collection).toBe('players');
    expect(fromEnv.maxBatchSize).toBe(20);
    // It opened a client of its own from the URL: a call fails within connectTimeout, not on a missing client.
    await expect(fromEnv.load('p')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
    await fromEnv.close();
  });

  it('with a client, db or url it is the constructor, and MONGODB_URI is not read', () => {
    vi.stubEnv('MONGODB_URI', 'not a url');
    expect(createMongoAdapter({ client, collection: 'a' }).collection).toBe('a');
    expect(createMongoAdapter({ db: client.db('game') }).collection).toBe('cagey_user_data');
    expect(() => createMongoAdapter({ url: 'mongodb://127.0.0.1:1/' })).not.toThrow();
    expect(() => createMongoAdapter({ client, maxBatchSize: 5 } as never)).toThrow(
      invalid(/renamed to batchSize/),
    );
  });
});
