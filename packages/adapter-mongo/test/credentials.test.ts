import { inspect } from 'node:util';
import { create } from '@cagey-sessions/core';
import { freePort } from '@cagey-sessions/test-servers';
import { describe, expect, it } from 'vitest';
import { MongoAdapter } from '../src/index.js';
import { newClient, onFerretDB, randomDatabase, randomName, serverOptions, serverUrl } from './helpers.js';
import { WireProxy } from './wire-proxy.js';

const url = serverUrl('adapter-mongo: credentials in errors and logs');
const target = url === null ? undefined : /^mongodb:\/\/(?:[^@/?]*@)?([^,/?:]+):(\d+)/.exec(url);

/** A password with characters a URL must escape. */
const URL_PASSWORD = 'Hunter2:s3cret/@pass';
const OPTIONS_PASSWORD = 'opt10ns-pa55word';

/** Fails when `value`, printed in full, holds either password in any form a URL or a message could carry. */
function expectNoPassword(value: unknown, what: string): void {
  const printed = inspect(value, { depth: Number.POSITIVE_INFINITY, showHidden: true, getters: true });
  for (const secret of [URL_PASSWORD, OPTIONS_PASSWORD]) {
    for (const form of [secret, encodeURIComponent(secret), 'Hunter2', 's3cret', 'pa55word']) {
      expect(
        printed.includes(form),
        `${what} holds ${JSON.stringify(form)}:\n${printed.slice(0, 3_000)}`,
      ).toBe(false);
    }
  }
}

async function settle(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return await call();
  } catch (error) {
    return error;
  }
}

describe('passwords never reach an error or a log line', () => {
  it('a URL password and a clientOptions.auth password are in no error of any call on an unreachable server', async () => {
    const port = await freePort();
    const adapters = [
      new MongoAdapter({
        url: `mongodb://player:${encodeURIComponent(URL_PASSWORD)}@127.0.0.1:${port}/game`,
        connectTimeout: 300,
        collection: randomName(),
      }),
      new MongoAdapter({
        url: `mongodb://127.0.0.1:${port}/game`,
        clientOptions: { auth: { username: 'player', password: OPTIONS_PASSWORD } },
        connectTimeout: 300,
        collection: randomName(),
      }),
    ];
    for (const users of adapters) {
      const outcomes = [
        await settle(() => users.load('p')),
        await settle(() => users.save([{ userId: 'p', userData: { n: 1 }, expectedVersion: 0 }])),
        await settle(() => users.save([{ userId: 'p', userData: { n: 1 } }])),
        await settle(() => users.delete('p', 3)),
        await settle(() => users.setup()),
      ];
      for (const outcome of outcomes) {
        expect(outcome).toBeInstanceOf(Error);
        expect(outcome).toMatchObject({ code: 'ADAPTER_ERROR' });
        expectNoPassword(outcome, (outcome as Error).message);
      }
      await users.close();
    }
  });

  it('URLs with a password that the driver cannot parse fail the constructor without the password', async () => {
    const password = encodeURIComponent(URL_PASSWORD);
    for (const bad of [
      `mongodb://player:${password}@127.0.0.1:99999999/`,
      `mongodb://player:${password}@127.0.0.1:1/?authMechanism=NOPE`,
      `mongodb://player:${password}@127.0.0.1:1/?serverSelectionTimeoutMS=soon`,
      `mongodb://player:${password}@127.0.0.1:1,127.0.0.1:2/?directConnection=true`,
      `mongodb+srv://player:${password}@127.0.0.1:1/`,
    ]) {
      const caught = await settle(async () => new MongoAdapter({ url: bad }));
      expect(caught, bad.replace(password, '…')).toMatchObject({ code: 'ADAPTER_ERROR' });
      expectNoPassword(caught, bad.replace(password, '…'));
    }
  });

  it.skipIf(target === null || target === undefined || !onFerretDB())(
    'a session manager over a server with credentials (PLAIN on FerretDB) whose connection is cut: no error, event or log line holds the password',
    async () => {
      const proxy = await WireProxy.start({ host: target![1]!, port: Number(target![2]) });
      const database = randomDatabase();
      const logged: unknown[] = [];
      const log = {
        debug: (...args: unknown[]) => logged.push(args),
        info: (...args: unknown[]) => logged.push(args),
        warn: (...args: unknown[]) => logged.push(args),
        error: (...args: unknown[]) => logged.push(args),
      };
      const adapter = new MongoAdapter({
        url: proxy.urlFor(
          `mongodb://player:${encodeURIComponent(URL_PASSWORD)}@${target![1]}:${target![2]}/?authMechanism=PLAIN`,
        ),
        clientOptions: { retryWrites: false },
        connectTimeout: '1s',
        database,
        collection: randomName(),
        ...serverOptions(),
      });
      const manager = create<{ gold: number }>(
        { log, adapter },
        {
          userData: {
            persistence: { shutdownTimeout: '3s', retry: { initialDelay: '100ms', maxDelay: '500ms' } },
          },
        },
      );
      const caught: unknown[] = [];
      try {
        const session = await manager.create();
        await session.start();
        const player = await session.identify('p1', { defaults: { gold: 0 } });
        player.gold += 10;
        await session.persistNow();
        expect(await adapter.load('p1')).toEqual({ userData: { gold: 10 }, version: 1 });

        // The write is cut on its way and the server stays away: the write fails and is retried, in vain.
        proxy.once(
          (command) => command.name === 'update',
          'cut',
          () => {
            proxy.down = true;
          },
        );
        player.gold += 10;
        caught.push(await settle(() => session.persistNow()));
        const other = await manager.create();
        await other.start();
        caught.push(await settle(() => other.identify('p2')));
        caught.push(await settle(() => manager.destroy(true)));
      } finally {
        proxy.down = false;
        await adapter.close();
        await proxy.close();
        const client = newClient(url!);
        await client.db(database).dropDatabase();
        await client.close();
      }
      expect(caught.every((error) => error instanceof Error)).toBe(true);
      expect(logged.length).toBeGreaterThan(0);
      expectNoPassword(caught, 'the errors the calls rejected with');
      expectNoPassword(logged, 'the log');
    },
  );
});
