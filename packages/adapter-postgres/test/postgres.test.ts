import type { SaveRecord } from '@cagey-sessions/core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PostgresAdapter, type PostgresClient } from '../src/index.js';
import { newPool, randomTable, readRow, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: real-server tests');

/** Counts statements sent through a real pool, to prove a batch is one round trip. */
function counting(pool: pg.Pool): PostgresClient & { statements: number } {
  const client = {
    statements: 0,
    query: (text: string, values?: unknown[]) => {
      client.statements++;
      return pool.query(text, values);
    },
  };
  return client;
}

describe.skipIf(url === null)('postgres adapter on a real server', () => {
  let pool: pg.Pool;
  beforeAll(() => {
    pool = newPool(url!);
  });
  afterAll(async () => {
    await pool.end();
  });

  async function freshAdapter(options: { table?: string; batchSize?: number; client?: PostgresClient } = {}) {
    const table = options.table ?? randomTable();
    const adapter = new PostgresAdapter({
      client: options.client ?? pool,
      table,
      batchSize: options.batchSize,
    });
    await adapter.setup();
    return { adapter, table };
  }

  it('setup creates the documented table: text primary key, jsonb data, bigint version, timestamptz updated_at, text write_id', async () => {
    const { table } = await freshAdapter();
    const { rows } = await pool.query(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_name = $1 ORDER BY ordinal_position`,
      [table],
    );
    expect(rows).toEqual([
      { column_name: 'user_id', data_type: 'text', is_nullable: 'NO' },
      { column_name: 'data', data_type: 'jsonb', is_nullable: 'YES' },
      { column_name: 'version', data_type: 'bigint', is_nullable: 'NO' },
      { column_name: 'updated_at', data_type: 'timestamp with time zone', is_nullable: 'NO' },
      { column_name: 'write_id', data_type: 'text', is_nullable: 'YES' },
    ]);
    const pk = await pool.query(
      `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
       WHERE i.indrelid = $1::regclass AND i.indisprimary`,
      [table],
    );
    expect(pk.rows).toEqual([{ attname: 'user_id' }]);
    const options = await pool.query('SELECT reloptions FROM pg_class WHERE oid = $1::regclass', [table]);
    expect(options.rows[0].reloptions).toEqual(['fillfactor=70']);
  });

  it('setup creates a missing schema for a schema-qualified table, and running it again changes nothing', async () => {
    const schema = randomTable('s');
    const table = `${schema}.players`;
    const adapter = new PostgresAdapter({ client: pool, table });
    await adapter.setup();
    await adapter.setup();
    expect((await adapter.save([{ userId: 'u1', userData: { a: 1 } }]))[0]).toEqual({
      status: 'ok',
      version: 1,
    });
    expect(await readRow(pool, `"${schema}"."players"`, 'u1')).toEqual({ data: { a: 1 }, version: 1 });
  });

  it('setup on an existing table needs no DDL privilege and takes no lock', async () => {
    const { table } = await freshAdapter();
    const role = randomTable('r');
    await pool.query(`CREATE ROLE ${role}`);
    await pool.query(`GRANT SELECT, INSERT, UPDATE ON "${table}" TO ${role}`);
    const client = await pool.connect();
    try {
      await client.query(`SET ROLE ${role}`);
      const adapter = new PostgresAdapter({ client, table });
      await adapter.setup();
      expect((await adapter.save([{ userId: 'u1', userData: {} }]))[0]).toEqual({ status: 'ok', version: 1 });
      await client.query('RESET ROLE');
    } finally {
      client.release();
    }
  });

  it('a record holding \\u0000 fails alone before anything is sent; its neighbours are stored in one statement', async () => {
    const client = counting(pool);
    const { adapter, table } = await freshAdapter({ client });
    client.statements = 0;
    const results = await adapter.save([
      { userId: 'a', userData: { n: 1 } },
      { userId: 'b', userData: { n: 2 } },
      { userId: 'bad', userData: { name: 'x\u0000y' } },
      { userId: 'c', userData: { n: 3 }, expectedVersion: 0 },
      { userId: 'd', userData: { literal: '\\u0000 is fine as text' } },
    ]);
    expect(client.statements).toBe(1);
    expect(results[2]).toMatchObject({ status: 'error', error: { code: 'INVALID_USER_DATA', path: 'name' } });
    expect(results.filter((r) => r.status === 'ok')).toHaveLength(4);
    expect(await readRow(pool, table, 'bad')).toBeUndefined();
    expect(await readRow(pool, table, 'c')).toEqual({ data: { n: 3 }, version: 1 });
    expect((await adapter.load('d'))?.userData).toEqual({ literal: '\\u0000 is fine as text' });
  });

  it('a record the database refuses after sending fails alone: only then is the batch split to find it', async () => {
    const client = counting(pool);
    const { adapter, table } = await freshAdapter({ client });
    // A rule a team might add to the table; the adapter cannot know it before the database says no.
    await pool.query(`ALTER TABLE "${table}" ADD CONSTRAINT no_banned CHECK (data->>'banned' IS NULL)`);
    const records: SaveRecord[] = Array.from({ length: 100 }, (_, i) => ({
      userId: `u${i}`,
      userData: i === 37 || i === 80 ? { banned: true } : { i },
    }));
    client.statements = 0;
    const results = await adapter.save(records);
    expect(results[37]).toMatchObject({ status: 'error', error: { code: 'ADAPTER_ERROR' } });
    expect(((results[37] as { error: Error }).error.cause as { code: string }).code).toBe('23514');
    expect(results[80]).toMatchObject({ status: 'error' });
    expect(results.filter((r) => r.status === 'ok')).toHaveLength(98);
    expect(client.statements).toBeGreaterThan(1);
    expect(client.statements).toBeLessThan(30);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${table}"`);
    expect(rows[0].n).toBe(98);

    client.statements = 0;
    const clean = await adapter.save(records.filter((_, i) => i !== 37 && i !== 80));
    expect(clean.every((r) => r.status === 'ok' && r.version === 2)).toBe(true);
    expect(client.statements).toBe(1);
  });

  it('a save split into statements: a failing first statement rejects, a later one fails only the unwritten records', async () => {
    const table = randomTable();
    await new PostgresAdapter({ client: pool, table }).setup();
    let statements = 0;
    let failOn = 0;
    // A real pool whose n-th statement fails as if the connection dropped before it was sent.
    const flaky: PostgresClient = {
      query: (text, values) => {
        statements++;
        if (statements === failOn) return Promise.reject(new Error('Connection terminated unexpectedly'));
        return pool.query(text, values);
      },
    };
    const adapter = new PostgresAdapter({ client: flaky, table, batchSize: 10 });
    const records = Array.from({ length: 30 }, (_, i) => ({
      userId: `u${String(i).padStart(2, '0')}`,
      userData: { i },
    }));

    statements = 0;
    failOn = 1;
    await expect(adapter.save(records)).rejects.toMatchObject({
      code: 'ADAPTER_ERROR',
      message: '[postgres] save failed: Connection terminated unexpectedly',
    });
    expect(statements).toBe(1);

    statements = 0;
    failOn = 2;
    const results = await adapter.save(records);
    expect(statements).toBe(2);
    expect(results.slice(0, 10).every((r) => r.status === 'ok')).toBe(true);
    expect(
      results.slice(10).every((r) => r.status === 'error' && r.error.message.includes('terminated')),
    ).toBe(true);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${table}"`);
    expect(rows[0].n).toBe(10);
  });

  it('stores and loads a 5 MB userData unchanged', async () => {
    const { adapter, table } = await freshAdapter();
    const userData = {
      blob: 'é😀x'.repeat(1024 * 1024),
      list: Array.from({ length: 20_000 }, (_, i) => ({ i, s: `item-${i}` })),
    };
    expect(Buffer.byteLength(JSON.stringify(userData))).toBeGreaterThan(5 * 1024 * 1024);
    expect(await adapter.save([{ userId: 'big', userData }])).toEqual([{ status: 'ok', version: 1 }]);
    expect(await adapter.load('big')).toEqual({ userData, version: 1 });
    const { rows } = await pool.query(`SELECT octet_length(data::text) AS n FROM "${table}"`);
    expect(Number(rows[0].n)).toBeGreaterThan(5 * 1024 * 1024);
  });

  it('writes a batch of 10,000 in batchSize statements; the next write is fenced by the new versions', async () => {
    const client = counting(pool);
    const { adapter, table } = await freshAdapter({ client, batchSize: 1000 });
    const records = Array.from({ length: 10_000 }, (_, i) => ({
      userId: i,
      userData: { gold: i, name: `player ${i}` },
      expectedVersion: 0,
    }));
    client.statements = 0;
    const first = await adapter.save(records);
    expect(client.statements).toBe(10);
    expect(first.every((r) => r.status === 'ok' && r.version === 1)).toBe(true);
    const { rows } = await pool.query(`SELECT count(*)::int AS n, max(version)::int AS v FROM "${table}"`);
    expect(rows[0]).toEqual({ n: 10_000, v: 1 });

    const second = await adapter.save(
      records.map((r) => ({ ...r, userData: { gold: -1 }, expectedVersion: 1 })),
    );
    expect(second.every((r) => r.status === 'ok' && r.version === 2)).toBe(true);
    const stale = await adapter.save(records.slice(0, 3).map((r) => ({ ...r, expectedVersion: 1 })));
    expect(stale).toEqual(Array(3).fill({ status: 'conflict', currentVersion: 2 }));
    expect(await readRow(pool, table, '9999')).toEqual({ data: { gold: -1 }, version: 2 });
  });

  it('one statement carries a batch of 10,000 when batchSize allows it', async () => {
    const client = counting(pool);
    const { adapter } = await freshAdapter({ client, batchSize: 10_000 });
    client.statements = 0;
    const results = await adapter.save(
      Array.from({ length: 10_000 }, (_, i) => ({ userId: i, userData: { i } })),
    );
    expect(client.statements).toBe(1);
    expect(results.every((r) => r.status === 'ok')).toBe(true);
  });

  it('the same user twice in one batch: the first record is written, the later one fails with DUPLICATE_KEY', async () => {
    const { adapter, table } = await freshAdapter();
    const results = await adapter.save([
      { userId: 'u', userData: { step: 1 }, expectedVersion: 0 },
      { userId: 'other', userData: {} },
      { userId: 'u', userData: { step: 2 }, expectedVersion: 1 },
    ]);
    expect(results.slice(0, 2)).toEqual([
      { status: 'ok', version: 1 },
      { status: 'ok', version: 1 },
    ]);
    expect(results[2]).toMatchObject({ status: 'error', error: { code: 'DUPLICATE_KEY' } });
    expect(await readRow(pool, table, 'u')).toEqual({ data: { step: 1 }, version: 1 });
  });

  it('racing writers with the same expectedVersion: exactly one wins each round, losers see its version', async () => {
    const table = randomTable();
    const pools = Array.from({ length: 4 }, () => newPool(url!, { max: 1 }));
    try {
      const adapters = pools.map((client) => new PostgresAdapter({ client, table }));
      await Promise.all(adapters.map((a) => a.setup()));
      let expected = 0;
      for (let round = 0; round < 25; round++) {
        // Every few rounds the record is deleted, so inserts race against a tombstone too.
        if (round % 5 === 4) {
          expect(await adapters[0]!.delete('hot', expected)).toBe(true);
          expected = 0;
        }
        const results = (
          await Promise.all(
            adapters.map((a, w) =>
              a.save([
                { userId: 'hot', userData: { round, w }, expectedVersion: expected },
                { userId: `own-${w}`, userData: { round } },
              ]),
            ),
          )
        ).map((r) => r[0]!);
        const winners = results.filter((r) => r.status === 'ok');
        expect(winners).toHaveLength(1);
        const version = (winners[0] as { version: number }).version;
        for (const r of results) if (r.status === 'conflict') expect(r.currentVersion).toBe(version);
        const winner = results.findIndex((r) => r.status === 'ok');
        expect(await readRow(pool, table, 'hot')).toEqual({ data: { round, w: winner }, version });
        expected = version;
      }
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('a statement rolled back as a serialization failure is sent again: writers at REPEATABLE READ all succeed', async () => {
    const table = randomTable();
    // At REPEATABLE READ a row updated by a concurrent statement aborts the later one (40001) as a whole.
    const pools = Array.from({ length: 2 }, () =>
      newPool(url!, { max: 1, options: '-c default_transaction_isolation=repeatable\\ read' }),
    );
    try {
      const [a, b] = pools.map((client) => new PostgresAdapter({ client, table })) as [
        PostgresAdapter,
        PostgresAdapter,
      ];
      await a.setup();
      const ids = Array.from({ length: 200 }, (_, i) => `user-${i}`);
      for (let round = 0; round < 3; round++) {
        const results = await Promise.all([
          a.save(ids.map((userId) => ({ userId, userData: { round, by: 'a' } }))),
          b.save(ids.map((userId) => ({ userId, userData: { round, by: 'b' } }))),
        ]);
        expect(results.flat().filter((r) => r.status !== 'ok')).toEqual([]);
      }
      const { rows } = await pool.query(`SELECT DISTINCT version::int AS v FROM "${table}"`);
      expect(rows).toEqual([{ v: 6 }]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('delete leaves a tombstone row holding the next version and no data', async () => {
    const { adapter, table } = await freshAdapter();
    await adapter.save([{ userId: 'u', userData: { a: 1 } }]);
    await adapter.save([{ userId: 'u', userData: { a: 2 } }]);
    expect(await adapter.delete('u')).toBe(true);
    expect(await readRow(pool, table, 'u')).toEqual({ data: null, version: 3 });
    expect(await adapter.save([{ userId: 'u', userData: { a: 3 }, expectedVersion: 0 }])).toEqual([
      { status: 'ok', version: 4 },
    ]);
  });

  it('works over a single pg.Client: concurrent calls queue on it, and close() leaves it connected', async () => {
    const single = new pg.Client({ connectionString: url! });
    await single.connect();
    try {
      const { adapter } = await freshAdapter({ client: single });
      const results = await Promise.all(
        Array.from({ length: 5 }, (_, k) =>
          adapter.save(Array.from({ length: 50 }, (_, i) => ({ userId: `u${i}`, userData: { k } }))),
        ),
      );
      expect(results.flat().every((r) => r.status === 'ok')).toBe(true);
      expect((await adapter.load('u49'))?.version).toBe(5);
      await adapter.close();
      expect((await single.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await single.end();
    }
  });

  it('an injected pool stays open after close(); the adapter then rejects with ADAPTER_CLOSED', async () => {
    const injected = newPool(url!);
    try {
      const { adapter } = await freshAdapter({ client: injected });
      await adapter.close();
      await adapter.close();
      expect((await injected.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await expect(adapter.load('u')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
      await expect(adapter.save([{ userId: 'u', userData: {} }])).rejects.toMatchObject({
        code: 'ADAPTER_CLOSED',
      });
    } finally {
      await injected.end();
    }
  });

  it('a pool opened from url is ended by close(): its connections are gone', async () => {
    const applicationName = randomTable('app');
    const table = randomTable();
    const adapter = new PostgresAdapter({
      url: url!,
      table,
      clientOptions: { application_name: applicationName },
    });
    await adapter.setup();
    await Promise.all([adapter.load('a'), adapter.load('b'), adapter.load('c')]);
    const count = async () =>
      (
        await pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [
          applicationName,
        ])
      ).rows[0].n as number;
    expect(await count()).toBeGreaterThan(0);
    await adapter.close();
    // The server ends a backend shortly after the client's Terminate message: poll, bounded.
    await vi.waitFor(async () => expect(await count()).toBe(0), { timeout: 10_000, interval: 50 });
  });

  it('errors name the operation and wrap the driver error, never showing the password or the URL', async () => {
    const parsed = new URL(url!);
    const wrongPassword = 'wrong-Pa55word-zz';
    const attempts = [
      new URL(url!),
      Object.assign(new URL(url!), { password: wrongPassword }),
      Object.assign(new URL(url!), { port: '1' }),
    ];
    attempts[0]!.pathname = '/no_such_database_x';
    for (const target of attempts) {
      const adapter = new PostgresAdapter({
        url: target.toString(),
        table: randomTable(),
        clientOptions: { connectionTimeoutMillis: 5000 },
      });
      const error = await adapter.load('u').then(
        () => undefined,
        (e: unknown) => e as Error & { code: string; cause: unknown },
      );
      await adapter.close();
      expect(error).toMatchObject({ code: 'ADAPTER_ERROR', name: 'AdapterError' });
      expect(error!.message).toMatch(/^\[postgres\] load failed: /);
      expect(error!.cause).toBeInstanceOf(Error);
      for (const secret of [parsed.password, wrongPassword, target.toString()]) {
        expect(error!.message).not.toContain(secret);
        expect(String(error!.stack)).not.toContain(secret);
      }
    }
  });

  it('a missing table is an ADAPTER_ERROR that says so', async () => {
    const adapter = new PostgresAdapter({ client: pool, table: randomTable() });
    await expect(adapter.save([{ userId: 'u', userData: {} }])).rejects.toMatchObject({
      code: 'ADAPTER_ERROR',
      message: expect.stringMatching(/save failed: relation .* does not exist/),
    });
  });
});
