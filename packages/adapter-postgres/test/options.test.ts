import { afterEach, describe, expect, it, vi } from 'vitest';
import { createPostgresAdapter, PostgresAdapter } from '../src/index.js';

const client = { query: async () => ({ rows: [] }) };

describe('options', () => {
  afterEach(() => vi.unstubAllEnvs());

  it.each([
    'users; DROP TABLE x',
    'users"; DROP TABLE x; --',
    'a.b.c',
    '1table',
    '',
    'public.',
    '.users',
    'x'.repeat(64),
  ])('rejects the table name %j with INVALID_OPTIONS before any SQL runs', (table) => {
    let queries = 0;
    const counting = { query: async () => ({ rows: [queries++] }) };
    expect(() => new PostgresAdapter({ client: counting, table })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
    expect(queries).toBe(0);
  });

  it('quotes a plain and a schema-qualified table name', () => {
    expect(new PostgresAdapter({ client }).table).toBe('"cagey_user_data"');
    expect(new PostgresAdapter({ client, table: 'player_sessions' }).table).toBe('"player_sessions"');
    expect(new PostgresAdapter({ client, table: 'game.Players' }).table).toBe('"game"."Players"');
  });

  it('requires exactly one of client and url', () => {
    expect(() => new PostgresAdapter({} as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
    expect(() => new PostgresAdapter({ client, url: 'postgres://localhost/x' } as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
    expect(() => new PostgresAdapter({ client: {} } as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
  });

  it.each([0, -1, 1.5, Number.NaN, 50_001])('rejects batchSize %s', (batchSize) => {
    expect(() => new PostgresAdapter({ client, batchSize })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
  });

  it.each([0, -1, 0.4, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, '', 'soon', '5 parsecs', '-5s', true])(
    'rejects connectTimeout %j',
    (connectTimeout) => {
      expect(
        () => new PostgresAdapter({ url: 'postgres://localhost/x', connectTimeout: connectTimeout as never }),
      ).toThrow(
        expect.objectContaining({
          code: 'INVALID_OPTIONS',
          message: expect.stringContaining('connectTimeout'),
        }),
      );
    },
  );

  it.each([1, 1500, '250ms', '1.5s', '5s', '2m', '2 minutes', '1h', '5000'])(
    'accepts connectTimeout %j',
    (connectTimeout) => {
      expect(() => new PostgresAdapter({ url: 'postgres://localhost/x', connectTimeout })).not.toThrow();
    },
  );

  it('rejects a pool option that is not an object, and a pool.password that is not a string', () => {
    expect(() => new PostgresAdapter({ url: 'postgres://localhost/x', pool: 5 as never })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
    expect(
      () =>
        new PostgresAdapter({
          url: 'postgres://localhost/x',
          pool: { password: (async () => 'pw') as never },
        }),
    ).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringContaining('pool.password') }),
    );
  });

  it('exposes batchSize as maxBatchSize, 500 by default', () => {
    expect(new PostgresAdapter({ client }).maxBatchSize).toBe(500);
    expect(new PostgresAdapter({ client, batchSize: 250 }).maxBatchSize).toBe(250);
  });

  it('createPostgresAdapter falls back to DATABASE_URL and otherwise refuses', async () => {
    vi.stubEnv('DATABASE_URL', '');
    expect(() => createPostgresAdapter()).toThrow(expect.objectContaining({ code: 'INVALID_OPTIONS' }));
    vi.stubEnv('DATABASE_URL', 'postgres://user:s3cret-pass@127.0.0.1:1/db');
    const adapter = createPostgresAdapter({ table: 'from_env' });
    expect(adapter).toBeInstanceOf(PostgresAdapter);
    expect(adapter.table).toBe('"from_env"');
    await adapter.close();
  });

  it('createPostgresAdapter uses a given client without reading DATABASE_URL', async () => {
    vi.stubEnv('DATABASE_URL', '');
    const adapter = createPostgresAdapter({ client });
    expect(await adapter.load('u1')).toBeUndefined();
  });
});
