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

  it('exposes the table as given and double-quotes it in SQL, a plain and a schema-qualified one', async () => {
    const cases = [
      [undefined, 'cagey_user_data', '"cagey_user_data"'],
      ['player_sessions', 'player_sessions', '"player_sessions"'],
      ['game.Players', 'game.Players', '"game"."Players"'],
    ] as const;
    for (const [table, exposed, quoted] of cases) {
      const sent: string[] = [];
      const recording = { query: async (text: string) => ({ rows: [sent.push(text)] }) };
      const adapter = new PostgresAdapter({ client: recording, table });
      expect(adapter.table).toBe(exposed);
      await adapter.setup();
      expect(sent[0]).toContain(`CREATE TABLE IF NOT EXISTS ${quoted} (`);
    }
  });

  it('refuses an unknown option, naming the nearest known one, and the old pool option by its new name', () => {
    expect(() => new PostgresAdapter({ client, tabel: 'x' } as never)).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: expect.stringContaining('Did you mean table?'),
      }),
    );
    expect(() => new PostgresAdapter({ client, maxBatchSize: 10 } as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringContaining('batchSize') }),
    );
    expect(() => new PostgresAdapter({ url: 'postgres://localhost/x', pool: { max: 2 } } as never)).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: expect.stringMatching(/pool"? was renamed to clientOptions/),
      }),
    );
    expect(() => createPostgresAdapter({ url: 'postgres://localhost/x', pool: {} } as never)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS', message: expect.stringContaining('clientOptions') }),
    );
  });

  it('takes a postgres:// or postgresql:// url and refuses any other without showing it', () => {
    expect(() => new PostgresAdapter({ url: 'postgresql://localhost/x' })).not.toThrow();
    for (const url of ['', 'mysql://user:s3cret@host/db', 'localhost:5432']) {
      const error = (() => {
        try {
          new PostgresAdapter({ url });
        } catch (caught) {
          return caught as Error;
        }
      })();
      expect(error).toMatchObject({ code: 'INVALID_OPTIONS' });
      expect(error!.message).not.toContain('s3cret');
    }
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

  it('refuses clientOptions and connectTimeout next to a client, which are for the pool it opens from a url', () => {
    for (const extra of [{ clientOptions: { max: 2 } }, { connectTimeout: '1s' }]) {
      expect(() => new PostgresAdapter({ client, ...extra } as never)).toThrow(
        expect.objectContaining({
          code: 'INVALID_OPTIONS',
          message: expect.stringContaining('your own pool'),
        }),
      );
    }
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

  it.each([1, 1500, '250ms', '1.5s', '5s', '2m', '2 minutes', '1h', '5000'] as const)(
    'accepts connectTimeout %j',
    (connectTimeout) => {
      expect(() => new PostgresAdapter({ url: 'postgres://localhost/x', connectTimeout })).not.toThrow();
    },
  );

  it('rejects a clientOptions that is not an object, and a clientOptions.password that is not a string', () => {
    expect(() => new PostgresAdapter({ url: 'postgres://localhost/x', clientOptions: 5 as never })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
    expect(
      () =>
        new PostgresAdapter({
          url: 'postgres://localhost/x',
          clientOptions: { password: (async () => 'pw') as never },
        }),
    ).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: expect.stringContaining('clientOptions.password'),
      }),
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
    expect(adapter.table).toBe('from_env');
    await adapter.close();
  });

  it('createPostgresAdapter uses a given client without reading DATABASE_URL', async () => {
    vi.stubEnv('DATABASE_URL', '');
    const adapter = createPostgresAdapter({ client });
    expect(await adapter.load('u1')).toBeUndefined();
  });
});
