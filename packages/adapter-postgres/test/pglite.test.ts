import { MAX_USER_ID_BYTES } from '@cagey-sessions/core';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { randomTable } from './helpers.js';

describe('postgres adapter on an embedded PGlite', () => {
  let db: PGlite;
  beforeAll(async () => {
    db = await PGlite.create();
  });
  afterAll(async () => {
    await db.close();
  });

  async function freshAdapter(table = randomTable()) {
    const adapter = new PostgresAdapter({ client: db, table });
    await adapter.setup();
    return { adapter, table };
  }

  it('takes a PGlite instance unchanged: setup, save, load and delete with versions', async () => {
    const { adapter, table } = await freshAdapter();
    expect(await adapter.save([{ userId: 7, userData: { gold: 1 }, expectedVersion: 0 }])).toEqual([
      { status: 'ok', version: 1 },
    ]);
    expect(await adapter.load('7')).toEqual({ userData: { gold: 1 }, version: 1 });
    expect(await adapter.delete(7, 1)).toBe(true);
    const { rows } = await db.query<{ data: unknown; version: number }>(
      `SELECT data, version FROM "${table}" WHERE user_id = '7'`,
    );
    expect(rows).toEqual([{ data: null, version: 2 }]);
  });

  it('setup() 4 times at once on one PGlite succeeds, also for a schema-qualified table', async () => {
    const table = `${randomTable('s')}.players`;
    const adapters = Array.from({ length: 4 }, () => new PostgresAdapter({ client: db, table }));
    await Promise.all(adapters.map((a) => a.setup()));
    expect((await adapters[3]!.save([{ userId: 'u', userData: {} }]))[0]).toEqual({
      status: 'ok',
      version: 1,
    });
  });

  it('a record holding \\u0000 fails alone; its neighbours are stored', async () => {
    const { adapter } = await freshAdapter();
    const results = await adapter.save([
      { userId: 'a', userData: { n: 1 } },
      { userId: 'bad', userData: { 'key\u0000': 1 } },
      { userId: 'c', userData: { n: 3 } },
    ]);
    expect(results[1]).toMatchObject({ status: 'error', error: { code: 'INVALID_USER_DATA' } });
    expect(results[0]).toEqual({ status: 'ok', version: 1 });
    expect(results[2]).toEqual({ status: 'ok', version: 1 });
    expect(await adapter.load('bad')).toBeUndefined();
  });

  it('a record refused by the database (a CHECK constraint) fails alone after the batch is split', async () => {
    const { adapter, table } = await freshAdapter();
    await db.query(`ALTER TABLE "${table}" ADD CONSTRAINT small_gold CHECK ((data->>'gold')::int < 100)`);
    const results = await adapter.save(
      Array.from({ length: 20 }, (_, i) => ({ userId: i, userData: { gold: i === 13 ? 500 : i } })),
    );
    expect(results[13]).toMatchObject({ status: 'error', error: { code: 'ADAPTER_ERROR' } });
    expect(results.filter((r) => r.status === 'ok')).toHaveLength(19);
  });

  it('writes a batch of 3,000 over PGlite with one result per record in order', async () => {
    const { adapter } = await freshAdapter();
    const results = await adapter.save(
      Array.from({ length: 3000 }, (_, i) => ({ userId: `p${i}`, userData: { i }, expectedVersion: 0 })),
    );
    expect(results.every((r) => r.status === 'ok' && r.version === 1)).toBe(true);
    expect(await adapter.load('p2999')).toEqual({ userData: { i: 2999 }, version: 1 });
  });

  it('user ids up to MAX_USER_ID_BYTES are stored; messages naming a user quote it and cut a long one', async () => {
    const { adapter } = await freshAdapter();
    const longest = 'é'.repeat(MAX_USER_ID_BYTES / 2);
    expect(await adapter.save([{ userId: longest, userData: { a: 1 } }])).toEqual([
      { status: 'ok', version: 1 },
    ]);
    expect(await adapter.load(longest)).toEqual({ userData: { a: 1 }, version: 1 });

    const conflict = await adapter.delete(longest, 7).catch((error: Error) => error);
    expect(conflict).toMatchObject({ code: 'VERSION_CONFLICT', currentVersion: 1 });
    expect((conflict as Error).message).toContain(`User ${JSON.stringify(longest.slice(0, 64))}…`);
    expect((conflict as Error).message).not.toContain(longest.slice(0, 65));

    const tooLong = `${longest}x`;
    const invalid = await adapter.load(tooLong).catch((error: Error) => error);
    expect(invalid).toMatchObject({ code: 'INVALID_USER_ID' });
    expect((invalid as Error).message).not.toContain(longest.slice(0, 65));
    const [result] = await adapter.save([{ userId: tooLong, userData: {} }]);
    expect(result).toMatchObject({ status: 'error', error: { code: 'INVALID_USER_ID' } });
  });

  it('close() leaves the PGlite instance open', async () => {
    const { adapter } = await freshAdapter();
    await adapter.close();
    expect((await db.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await expect(adapter.load('x')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
  });
});
