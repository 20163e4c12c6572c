import { describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { backendClient, backends, newPool, randomTable, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: write ids on a real server');

/** The table as version 0.1 created it: no write_id column. */
function oldDdl(table: string): string {
  return `CREATE TABLE "${table}" (
  user_id    text        PRIMARY KEY,
  data       jsonb,
  version    bigint      NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70)`;
}

describe.each(backends(url))('write ids on $name', (backend) => {
  const { skip } = backend;
  const client = backendClient(backend);

  async function rowOf(table: string, userId: string) {
    const { rows } = await client.query(
      `SELECT data IS NULL AS tombstone, version::int AS version, write_id FROM "${table}" WHERE user_id = $1`,
      [userId],
    );
    return rows[0] as { tombstone: boolean; version: number; write_id: string | null } | undefined;
  }

  async function freshAdapter() {
    const table = randomTable('w');
    const adapter = new PostgresAdapter({ client, table });
    await adapter.setup();
    return { adapter, table };
  }

  it.skipIf(skip)(
    'every kind of write stores its write id: unconditional, insert, update, revive; delete clears it',
    async () => {
      const { adapter, table } = await freshAdapter();
      expect(
        await adapter.save([
          { userId: 'free', userData: { n: 1 }, writeId: 'w-free-1' },
          { userId: 'new', userData: { n: 1 }, expectedVersion: 0, writeId: 'w-new-1' },
          { userId: 'none', userData: { n: 1 } },
        ]),
      ).toEqual([
        { status: 'ok', version: 1 },
        { status: 'ok', version: 1 },
        { status: 'ok', version: 1 },
      ]);
      expect(await rowOf(table, 'free')).toEqual({ tombstone: false, version: 1, write_id: 'w-free-1' });
      expect(await rowOf(table, 'new')).toEqual({ tombstone: false, version: 1, write_id: 'w-new-1' });
      expect(await rowOf(table, 'none')).toEqual({ tombstone: false, version: 1, write_id: null });

      // Updates (unconditional over a live row, and versioned) replace the stored id; no id replaces it by none.
      expect(
        await adapter.save([
          { userId: 'free', userData: { n: 2 } },
          { userId: 'new', userData: { n: 2 }, expectedVersion: 1, writeId: 'w-new-2' },
          { userId: 'none', userData: { n: 2 }, writeId: 'A.b_c-9' },
        ]),
      ).toEqual([
        { status: 'ok', version: 2 },
        { status: 'ok', version: 2 },
        { status: 'ok', version: 2 },
      ]);
      expect(await rowOf(table, 'free')).toEqual({ tombstone: false, version: 2, write_id: null });
      expect(await rowOf(table, 'new')).toEqual({ tombstone: false, version: 2, write_id: 'w-new-2' });
      expect(await rowOf(table, 'none')).toEqual({ tombstone: false, version: 2, write_id: 'A.b_c-9' });

      // A tombstone carries no write id; reviving it (insert or unconditional write) stores the new one.
      expect(await adapter.delete('new', 2)).toBe(true);
      expect(await adapter.delete('none')).toBe(true);
      expect(await rowOf(table, 'new')).toEqual({ tombstone: true, version: 3, write_id: null });
      expect(await rowOf(table, 'none')).toEqual({ tombstone: true, version: 3, write_id: null });
      expect(
        await adapter.save([
          { userId: 'new', userData: { n: 4 }, expectedVersion: 0, writeId: 'w-new-4' },
          { userId: 'none', userData: { n: 4 }, writeId: 'w-none-4' },
        ]),
      ).toEqual([
        { status: 'ok', version: 4 },
        { status: 'ok', version: 4 },
      ]);
      expect(await rowOf(table, 'new')).toEqual({ tombstone: false, version: 4, write_id: 'w-new-4' });
      expect(await rowOf(table, 'none')).toEqual({ tombstone: false, version: 4, write_id: 'w-none-4' });
    },
  );

  it.skipIf(skip)(
    'a conflict reports the write id stored with the live record, none when it has none, and leaves the row alone',
    async () => {
      const { adapter, table } = await freshAdapter();
      await adapter.save([
        { userId: 'a', userData: { n: 1 }, expectedVersion: 0, writeId: 'w-a-1' },
        { userId: 'b', userData: { n: 1 } },
        { userId: 'gone', userData: { n: 1 }, writeId: 'w-gone-1' },
      ]);
      await adapter.delete('gone');
      const results = await adapter.save([
        { userId: 'a', userData: { n: 9 }, expectedVersion: 0, writeId: 'w-a-x' },
        { userId: 'b', userData: { n: 9 }, expectedVersion: 7, writeId: 'w-b-x' },
        { userId: 'gone', userData: { n: 9 }, expectedVersion: 1, writeId: 'w-gone-x' },
        { userId: 'missing', userData: { n: 9 }, expectedVersion: 3, writeId: 'w-missing-x' },
      ]);
      expect(results).toStrictEqual([
        { status: 'conflict', currentVersion: 1, currentWriteId: 'w-a-1' },
        { status: 'conflict', currentVersion: 1 },
        { status: 'conflict', currentVersion: 0 },
        { status: 'conflict', currentVersion: 0 },
      ]);
      expect(await rowOf(table, 'a')).toEqual({ tombstone: false, version: 1, write_id: 'w-a-1' });
      expect(await rowOf(table, 'gone')).toEqual({ tombstone: true, version: 2, write_id: null });
      expect(await rowOf(table, 'missing')).toBeUndefined();
    },
  );

  it.skipIf(skip)(
    'a committed write whose acknowledgement was lost: sending it again meets a conflict naming its own write id',
    async () => {
      const { adapter } = await freshAdapter();
      await adapter.save([{ userId: 'p', userData: { gold: 1 }, expectedVersion: 0, writeId: 'attempt-1' }]);
      const attempt = { userId: 'p', userData: { gold: 2 }, expectedVersion: 1, writeId: 'attempt-2' };
      expect(await adapter.save([attempt])).toEqual([{ status: 'ok', version: 2 }]);
      // The caller never saw that result (connection cut after commit) and sends the same attempt again.
      expect(await adapter.save([attempt])).toStrictEqual([
        { status: 'conflict', currentVersion: 2, currentWriteId: 'attempt-2' },
      ]);
      expect(await adapter.load('p')).toEqual({ userData: { gold: 2 }, version: 2 });
    },
  );

  it.skipIf(skip)(
    'setup() adds write_id to a table created by 0.1, keeping its rows; running it again changes nothing',
    async () => {
      const table = randomTable('old');
      await client.query(oldDdl(table));
      await client.query(
        `INSERT INTO "${table}" (user_id, data, version) VALUES ('veteran', '{"gold": 7}', 3), ('ghost', NULL, 2)`,
      );
      const adapter = new PostgresAdapter({ client, table });
      await adapter.setup();
      await adapter.setup();
      const { rows } = await client.query(
        `SELECT column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_name = $1 ORDER BY ordinal_position`,
        [table],
      );
      expect(rows.map((row) => (row as { column_name: string }).column_name)).toEqual([
        'user_id',
        'data',
        'version',
        'updated_at',
        'write_id',
      ]);
      expect(rows[4]).toEqual({ column_name: 'write_id', data_type: 'text', is_nullable: 'YES' });
      expect(await adapter.load('veteran')).toEqual({ userData: { gold: 7 }, version: 3 });
      expect(await adapter.save([{ userId: 'veteran', userData: {}, expectedVersion: 1 }])).toStrictEqual([
        { status: 'conflict', currentVersion: 3 },
      ]);
      expect(
        await adapter.save([
          { userId: 'veteran', userData: { gold: 8 }, expectedVersion: 3, writeId: 'w-v-4' },
          { userId: 'ghost', userData: { gold: 1 }, expectedVersion: 0, writeId: 'w-g-3' },
        ]),
      ).toEqual([
        { status: 'ok', version: 4 },
        { status: 'ok', version: 3 },
      ]);
      expect(await rowOf(table, 'veteran')).toEqual({ tombstone: false, version: 4, write_id: 'w-v-4' });
      expect(await rowOf(table, 'ghost')).toEqual({ tombstone: false, version: 3, write_id: 'w-g-3' });
    },
  );

  it.skipIf(skip)(
    'a 0.1 table without setup(): save and delete fail with an ADAPTER_ERROR that says how to migrate',
    async () => {
      const table = randomTable('old');
      await client.query(oldDdl(table));
      const adapter = new PostgresAdapter({ client, table });
      const error = await adapter.save([{ userId: 'u', userData: {} }]).then(
        () => undefined,
        (e: unknown) => e as Error & { code: string; cause: { code: string } },
      );
      expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
      expect(error!.message).toMatch(/^\[postgres\] save failed: column "write_id" .*does not exist/);
      expect(error!.message).toContain('run adapter.setup() once');
      expect(error!.message).toContain(`ALTER TABLE "${table}" ADD COLUMN IF NOT EXISTS write_id text`);
      expect(error!.cause.code).toBe('42703');
      await expect(adapter.delete('u')).rejects.toMatchObject({
        code: 'ADAPTER_ERROR',
        message: expect.stringContaining('ADD COLUMN IF NOT EXISTS write_id text'),
      });
      expect(await adapter.load('u')).toBeUndefined();
      await adapter.setup();
      expect(await adapter.save([{ userId: 'u', userData: {} }])).toEqual([{ status: 'ok', version: 1 }]);
    },
  );
});

describe.skipIf(url === null)('write id migration on a real server', () => {
  it('4 adapters on separate pools running setup() at once on a 0.1 table all succeed; the column is added once', async () => {
    const schema = randomTable('mig');
    const table = `${schema}.players`;
    const pools = Array.from({ length: 4 }, () => newPool(url!, { max: 1 }));
    try {
      await pools[0]!.query(`CREATE SCHEMA "${schema}"`);
      await pools[0]!.query(oldDdl(`${schema}"."players`));
      for (let round = 0; round < 3; round++) {
        await Promise.all(pools.map((client) => new PostgresAdapter({ client, table }).setup()));
      }
      const { rows } = await pools[0]!.query(
        `SELECT count(*)::int AS n FROM pg_attribute
         WHERE attrelid = $1::regclass AND attname = 'write_id' AND NOT attisdropped`,
        [`"${schema}"."players"`],
      );
      expect(rows[0].n).toBe(1);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });

  it('setup() on a current table needs no DDL privilege; on a 0.1 table it needs one and says so', async () => {
    const pool = newPool(url!, { max: 1 });
    const current = randomTable('cur');
    const old = randomTable('old');
    const role = randomTable('r');
    try {
      await new PostgresAdapter({ client: pool, table: current }).setup();
      await pool.query(oldDdl(old));
      await pool.query(`CREATE ROLE ${role}`);
      await pool.query(`GRANT SELECT, INSERT, UPDATE ON "${current}", "${old}" TO ${role}`);
      const client = await pool.connect();
      try {
        await client.query(`SET ROLE ${role}`);
        await new PostgresAdapter({ client, table: current }).setup();
        await expect(new PostgresAdapter({ client, table: old }).setup()).rejects.toMatchObject({
          code: 'ADAPTER_ERROR',
          message: expect.stringMatching(/^\[postgres\] setup failed: must be owner of table/),
        });
      } finally {
        await client.query('RESET ROLE');
        client.release();
      }
    } finally {
      await pool.end();
    }
  });
});
