import { inspect } from 'node:util';
import { create } from '@cagey-sessions/core';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { PostgresAdapter, type PostgresAdapterOptions } from '../src/index.js';
import { newPool, randomTable, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: credentials in errors');

/** A wrong password whose percent-encoded form differs from it. */
const WRONG = 'wr0ng/P@ss:w%rd#x 9';
const WRONG_ENCODED = encodeURIComponent(WRONG);

/** Everything an error shows to a logger or a serialiser, hidden properties and every `cause` included. */
function everythingIn(value: unknown): string {
  let json: string;
  try {
    json = JSON.stringify(value) ?? '';
  } catch (error) {
    json = String(error);
  }
  return `${inspect(value, { depth: Infinity, showHidden: true })}\n${json}`;
}

function expectNoSecret(text: string, secrets: readonly string[]): void {
  for (const secret of secrets) expect(text, `leaks ${JSON.stringify(secret)}`).not.toContain(secret);
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error as Error & { code?: string },
  );
}

describe.skipIf(url === null)('no password in errors, over a real server', () => {
  const server = url === null ? new URL('postgres://x') : new URL(url);
  const host = server.host;
  const realPassword = decodeURIComponent(server.password);
  const secrets = [WRONG, WRONG_ENCODED, realPassword, encodeURIComponent(realPassword)];
  let table: string;
  let pools: pg.Pool[] = [];

  beforeAll(async () => {
    table = randomTable('cred');
    const pool = newPool(url!);
    await new PostgresAdapter({ client: pool, table }).setup();
    await pool.end();
  });
  afterAll(async () => {
    const pool = newPool(url!);
    await pool.query(`DROP TABLE IF EXISTS "${table}"`);
    await pool.end();
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
    await Promise.all(pools.map((pool) => pool.end()));
    pools = [];
  });

  function injected(config: pg.PoolConfig): pg.Pool {
    const pool = new pg.Pool({ max: 2, ...config });
    pool.on('error', () => {});
    pools.push(pool);
    return pool;
  }

  /** The ways a wrong password reaches the adapter. */
  const forms: { name: string; options: () => PostgresAdapterOptions }[] = [
    {
      name: 'a postgres:// url',
      options: () => ({ url: `postgres://postgres:${WRONG_ENCODED}@${host}/postgres` }),
    },
    {
      name: 'a postgresql:// url',
      options: () => ({ url: `postgresql://postgres:${WRONG_ENCODED}@${host}/postgres` }),
    },
    {
      name: 'the clientOptions.password option',
      options: () => ({ url: `postgres://postgres@${host}/postgres`, clientOptions: { password: WRONG } }),
    },
    {
      name: 'an injected pg.Pool from a connection string',
      options: () => ({
        client: injected({ connectionString: `postgresql://postgres:${WRONG_ENCODED}@${host}/postgres` }),
      }),
    },
    {
      name: 'an injected pg.Pool with a password option',
      options: () => ({
        client: injected({
          host: server.hostname,
          port: Number(server.port),
          user: 'postgres',
          database: 'postgres',
          password: WRONG,
        }),
      }),
    },
  ];

  it.each(forms)(
    'a wrong password in $name: setup, load and save fail authentication, and no error shows a password',
    async ({ options }) => {
      const adapter = new PostgresAdapter({ ...options(), table });
      try {
        const errors = [
          await rejection(adapter.setup()),
          await rejection(adapter.load('u')),
          await rejection(adapter.save([{ userId: 'u', userData: { a: 1 } }])),
        ];
        for (const error of errors) {
          expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
          // The password really reached the server (pg did not drop it on the way).
          expect(error.message).toMatch(/failed: password authentication failed for user "postgres"$/);
          expect((error.cause as { code?: string }).code).toBe('28P01');
          expectNoSecret(everythingIn(error), secrets);
        }
      } finally {
        await adapter.close();
      }
    },
  );

  /**
   * A driver error that repeats the password in plain text (a DSN in key=value form, a field of its own):
   * only the secrets the adapter hands to core's wrapDriverError can remove it.
   */
  function leakyError(): Error {
    return Object.assign(
      new Error(`could not connect: host=${server.hostname} user=postgres password=${WRONG} dbname=postgres`),
      {
        code: '08001',
        detail: `attempted with ${WRONG_ENCODED}`,
        attempt: { dsn: `user=postgres pw=${WRONG}` },
      },
    );
  }

  it.each(forms)(
    'a driver error that repeats the password ($name) reaches the caller without it, at any depth',
    async ({ options }) => {
      // Every pg.Pool's query (the adapter's own and an injected one) fails with the leaky error.
      vi.spyOn(pg.Pool.prototype, 'query').mockImplementation((() => Promise.reject(leakyError())) as never);
      const adapter = new PostgresAdapter({ ...options(), table });
      try {
        for (const call of [
          () => adapter.setup(),
          () => adapter.load('u'),
          () => adapter.save([{ userId: 'u', userData: {} }]),
          () => adapter.delete('u'),
        ]) {
          const error = await rejection(call());
          expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
          expect(error.message).toContain('password=***');
          expect((error.cause as { code?: string }).code).toBe('08001');
          expectNoSecret(everythingIn(error), secrets);
        }
      } finally {
        await adapter.close();
      }
    },
  );

  it.each([
    ['a password option', { password: WRONG, host: server.hostname, user: 'postgres' }],
    ['a connection string', { connectionString: `postgres://postgres:${WRONG_ENCODED}@${host}/postgres` }],
  ])(
    'an injected pg.Client with %s: a driver error repeating the password is shown without it',
    async (_, config) => {
      vi.spyOn(pg.Client.prototype, 'query').mockImplementation((() =>
        Promise.reject(leakyError())) as never);
      const client = new pg.Client(config);
      const adapter = new PostgresAdapter({ client, table });
      const error = await rejection(adapter.save([{ userId: 'u', userData: {} }]));
      expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
      expectNoSecret(everythingIn(error), secrets);
    },
  );

  it('the PGPASSWORD pg falls back to is not shown either', async () => {
    vi.stubEnv('PGPASSWORD', WRONG);
    vi.spyOn(pg.Pool.prototype, 'query').mockImplementation((() => Promise.reject(leakyError())) as never);
    const adapter = new PostgresAdapter({ url: `postgres://postgres@${host}/postgres`, table });
    try {
      expectNoSecret(everythingIn(await rejection(adapter.load('u'))), secrets);
    } finally {
      await adapter.close();
    }
  });

  it('clientOptions.password is what the adapter connects with when the url has none; the url password wins', async () => {
    const withOption = new PostgresAdapter({
      url: `postgres://postgres@${host}/postgres`,
      clientOptions: { password: realPassword },
      table,
    });
    const urlWins = new PostgresAdapter({ url: url!, clientOptions: { password: WRONG }, table });
    try {
      expect(await withOption.save([{ userId: 'opt', userData: { a: 1 } }])).toEqual([
        { status: 'ok', version: 1 },
      ]);
      expect(await urlWins.load('opt')).toEqual({ userData: { a: 1 }, version: 1 });
    } finally {
      await withOption.close();
      await urlWins.close();
    }
    expect(
      () => new PostgresAdapter({ url: url!, clientOptions: { password: (() => 'x') as unknown as string } }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_OPTIONS' }));
  });

  it.each([
    ['the password really fails', false],
    ['the driver error repeats the password', true],
  ])(
    'through core (%s): persistNow() rejects and neither the rejection nor any log call shows a password',
    async (_, leaky) => {
      if (leaky) {
        vi.spyOn(pg.Pool.prototype, 'query').mockImplementation((() =>
          Promise.reject(leakyError())) as never);
      }
      const logged: string[] = [];
      const capture =
        (level: string) =>
        (...args: unknown[]) =>
          logged.push(`${level} ${args.map((arg) => everythingIn(arg)).join(' ')}`);
      const log = {
        debug: capture('debug'),
        info: capture('info'),
        warn: capture('warn'),
        error: capture('error'),
      };
      const adapter = new PostgresAdapter({
        url: `postgres://postgres:${WRONG_ENCODED}@${host}/postgres`,
        table,
      });
      const manager = create(
        { log, adapter },
        { userData: { persistence: { retry: { initialDelay: '10ms' } } } },
      );
      try {
        const session = await manager.create();
        await session.start();
        await session.setUser('player-1', { gold: 1 });
        const error = await rejection(session.persistNow());
        expect(error.message.length).toBeGreaterThan(0);
        expectNoSecret(everythingIn(error), secrets);
      } finally {
        await manager.destroy(false).catch((error: unknown) => logged.push(everythingIn(error)));
        await adapter.close();
      }
      expect(logged.length).toBeGreaterThan(0);
      expectNoSecret(logged.join('\n'), secrets);
    },
  );
});
