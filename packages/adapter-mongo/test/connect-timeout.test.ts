import { freePort } from '@cagey-sessions/test-servers';
import { describe, expect, it } from 'vitest';
import { MongoAdapter } from '../src/index.js';
import { newClient, randomDatabase, randomName, serverOptions, serverUrl } from './helpers.js';
import { WireProxy } from './wire-proxy.js';

const url = serverUrl('adapter-mongo: connectTimeout');
const target = url === null ? undefined : /^mongodb:\/\/(?:[^@/?]*@)?([^,/?:]+):(\d+)/.exec(url);

/**
 * Runs `call` and resolves with how it failed and how long that took: what it rejected with, or the error
 * result of a save of one record (a save whose bulkWrite may have been sent ends in error results, not a
 * rejection). Fails if it succeeds.
 */
async function failure(call: () => Promise<unknown>): Promise<{ error: Error; ms: number }> {
  const started = performance.now();
  const error = await call().then(
    (value) => {
      const results = value as { status: string; error?: Error }[];
      if (Array.isArray(results) && results.length === 1 && results[0]!.status === 'error') {
        return results[0]!.error!;
      }
      throw new Error(`expected a failure, got ${JSON.stringify(value)}`);
    },
    (caught: unknown) => caught as Error,
  );
  return { error, ms: performance.now() - started };
}

async function dropDatabase(database: string): Promise<void> {
  const client = newClient(url!);
  try {
    await client.db(database).dropDatabase();
  } finally {
    await client.close();
  }
}

describe('connectTimeout', () => {
  it('is validated: a positive duration, and only for a client the adapter opens', () => {
    for (const connectTimeout of [0, -5, Number.NaN, 'soon', '5 parsecs', '', {}]) {
      expect(
        () => new MongoAdapter({ url: 'mongodb://127.0.0.1:1/', connectTimeout: connectTimeout as never }),
        String(connectTimeout),
      ).toThrow(
        expect.objectContaining({
          code: 'INVALID_OPTIONS',
          message: expect.stringMatching(/connectTimeout/),
        }),
      );
    }
    for (const connectTimeout of [250, '250ms', '2s', '1.5s', '1m', '1 minute'] as const) {
      expect(() => new MongoAdapter({ url: 'mongodb://127.0.0.1:1/', connectTimeout })).not.toThrow();
    }
    const client = newClient('mongodb://127.0.0.1:1/');
    expect(() => new MongoAdapter({ client, connectTimeout: '1s' } as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringMatching(/connectTimeout/) }),
    );
  });

  it('an unreachable server fails load, save, delete and setup within seconds; the same adapter works once it is reachable', async () => {
    const port = await freePort();
    const database = randomDatabase();
    const users = new MongoAdapter({
      url: `mongodb://127.0.0.1:${port}/`,
      connectTimeout: '1s',
      database,
      collection: randomName(),
      ...serverOptions(),
    });
    const calls = {
      load: () => users.load('p'),
      save: () => users.save([{ userId: 'p', userData: { n: 1 }, expectedVersion: 0 }]),
      delete: () => users.delete('p'),
      setup: () => users.setup(),
    };
    for (const [name, call] of Object.entries(calls)) {
      const { error, ms } = await failure(call);
      expect(error, name).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'mongo' });
      expect(ms, name).toBeLessThan(4_000);
    }
    if (target === null || target === undefined) return;
    // The server appears on that port: the client connects without being told.
    const proxy = await WireProxy.start({ host: target[1]!, port: Number(target[2]) }, port);
    try {
      await users.setup();
      expect(await users.save([{ userId: 'p', userData: { n: 1 }, expectedVersion: 0 }])).toEqual([
        { status: 'ok', version: 1 },
      ]);
      expect(await users.load('p')).toEqual({ userData: { n: 1 }, version: 1 });
    } finally {
      await users.close();
      await proxy.close();
      await dropDatabase(database);
    }
  });

  it("defaults to 5 seconds; the URL's and clientOptions' own timeouts win over it", async () => {
    const port = await freePort();
    const plain = new MongoAdapter({ url: `mongodb://127.0.0.1:${port}/`, collection: randomName() });
    const byDefault = await failure(() => plain.load('p'));
    expect(byDefault.ms).toBeGreaterThan(4_000);
    expect(byDefault.ms).toBeLessThan(9_000);
    await plain.close();

    const inUrl = new MongoAdapter({
      url: `mongodb://127.0.0.1:${port}/?serverSelectionTimeoutMS=300`,
      connectTimeout: '20s',
      collection: randomName(),
    });
    expect((await failure(() => inUrl.load('p'))).ms).toBeLessThan(2_000);
    await inUrl.close();

    const inOptions = new MongoAdapter({
      url: `mongodb://127.0.0.1:${port}/`,
      clientOptions: { serverSelectionTimeoutMS: 300 },
      connectTimeout: '20s',
      collection: randomName(),
    });
    expect((await failure(() => inOptions.load('p'))).ms).toBeLessThan(2_000);
    await inOptions.close();
  });

  it.skipIf(!target)(
    'a server that goes away after connecting fails calls within seconds, and they work again when it is back',
    async () => {
      const proxy = await WireProxy.start({ host: target![1]!, port: Number(target![2]) });
      const database = randomDatabase();
      const users = new MongoAdapter({
        url: proxy.urlFor(url!),
        connectTimeout: '1s',
        database,
        collection: randomName(),
        ...serverOptions(),
      });
      try {
        expect(await users.save([{ userId: 'p', userData: { n: 1 }, expectedVersion: 0 }])).toEqual([
          { status: 'ok', version: 1 },
        ]);
        proxy.down = true;
        const started = performance.now();
        const results = await users.save([{ userId: 'p', userData: { n: 2 }, expectedVersion: 1 }]);
        expect(results[0]!.status).toBe('error');
        expect((await failure(() => users.load('p'))).error).toMatchObject({ code: 'ADAPTER_ERROR' });
        expect(performance.now() - started).toBeLessThan(8_000);

        proxy.down = false;
        expect(await users.load('p')).toEqual({ userData: { n: 1 }, version: 1 });
        expect(await users.save([{ userId: 'p', userData: { n: 2 }, expectedVersion: 1 }])).toEqual([
          { status: 'ok', version: 2 },
        ]);
      } finally {
        await users.close();
        await proxy.close();
        await dropDatabase(database);
      }
    },
  );
});
