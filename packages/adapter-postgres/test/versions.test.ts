import type { SaveResult } from '@cagey-sessions/core';
import { decideWrite, type StoredVersion } from '@cagey-sessions/core/adapter-kit';
import { describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { backendClient, backends, randomTable, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: version rules on a real server');

/** What a user's row holds before the save, as the kit's decideWrite sees it and as a row in the table. */
const states: {
  name: string;
  stored: StoredVersion;
  row?: { data: string | null; writeId: string | null };
}[] = [
  { name: 'missing', stored: { version: 0, live: false } },
  { name: 'live v1', stored: { version: 1, live: true }, row: { data: '{"old":1}', writeId: null } },
  {
    name: 'live v3 with a write id',
    stored: { version: 3, live: true, writeId: 'w-stored' },
    row: { data: '{"old":3}', writeId: 'w-stored' },
  },
  { name: 'tombstone v4', stored: { version: 4, live: false }, row: { data: null, writeId: null } },
];
const expectedVersions = [undefined, 0, 1, 3, 4, 9];

const cases = states.flatMap((state) =>
  expectedVersions.map((expectedVersion) => ({
    ...state,
    expectedVersion,
    userId: `${state.name.replaceAll(' ', '-')}/${expectedVersion ?? 'none'}`,
  })),
);

/** The result decideWrite's decision stands for. */
function resultOf(stored: StoredVersion, expectedVersion: number | undefined): SaveResult {
  const decision = decideWrite(expectedVersion, stored);
  if (decision.write) return { status: 'ok', version: decision.version };
  return decision.currentWriteId === undefined
    ? { status: 'conflict', currentVersion: decision.currentVersion }
    : {
        status: 'conflict',
        currentVersion: decision.currentVersion,
        currentWriteId: decision.currentWriteId,
      };
}

describe.each(backends(url))('the version rules on $name agree with the kit’s decideWrite', (backend) => {
  const { skip } = backend;
  const client = backendClient(backend);

  /** A table holding every case's user in its stored state, written directly, not through the adapter. */
  async function seeded(): Promise<{ adapter: PostgresAdapter; table: string }> {
    const table = randomTable('v');
    const adapter = new PostgresAdapter({ client, table });
    await adapter.setup();
    for (const { userId, stored, row } of cases) {
      if (row === undefined) continue;
      await client.query(
        `INSERT INTO "${table}" (user_id, data, version, write_id) VALUES ($1, $2::jsonb, $3, $4)`,
        [userId, row.data, stored.version, row.writeId],
      );
    }
    return { adapter, table };
  }

  async function rowOf(table: string, userId: string) {
    const { rows } = await client.query(
      `SELECT data::text AS data, version::int AS version, write_id FROM "${table}" WHERE user_id = $1`,
      [userId],
    );
    return rows[0] as { data: string | null; version: number; write_id: string | null } | undefined;
  }

  /** The row the decision leaves: the new record when written, the stored one untouched otherwise. */
  function rowAfter(result: SaveResult, c: (typeof cases)[number]) {
    if (result.status === 'ok') return { data: '{"new": true}', version: result.version, write_id: 'w-new' };
    if (c.row === undefined) return undefined;
    return {
      data: c.row.data?.replace(':', ': ') ?? null,
      version: c.stored.version,
      write_id: c.row.writeId,
    };
  }

  it.skipIf(skip)(
    `each of ${cases.length} cases (4 stored states × 6 expected versions) saved alone gives decideWrite's outcome`,
    async () => {
      const { adapter, table } = await seeded();
      const disagreements: unknown[] = [];
      for (const c of cases) {
        const expected = resultOf(c.stored, c.expectedVersion);
        const [result] = await adapter.save([
          {
            userId: c.userId,
            userData: { new: true },
            expectedVersion: c.expectedVersion,
            writeId: 'w-new',
          },
        ]);
        const row = await rowOf(table, c.userId);
        try {
          expect(result).toStrictEqual(expected);
          expect(row).toEqual(rowAfter(expected, c));
        } catch {
          disagreements.push({ case: c.userId, expected, result, row });
        }
      }
      expect(disagreements).toEqual([]);
    },
  );

  it.skipIf(skip)('the same cases saved as one batch give the same outcomes, in order', async () => {
    const { adapter, table } = await seeded();
    const results = await adapter.save(
      cases.map((c) => ({
        userId: c.userId,
        userData: { new: true },
        expectedVersion: c.expectedVersion,
        writeId: 'w-new',
      })),
    );
    const expected = cases.map((c) => resultOf(c.stored, c.expectedVersion));
    expect(results).toStrictEqual(expected);
    for (const [i, c] of cases.entries())
      expect(await rowOf(table, c.userId)).toEqual(rowAfter(expected[i]!, c));
  });
});
