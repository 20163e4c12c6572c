import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import type { PostgresClient } from '../src/index.js';

/** The URL of the server started by global-setup.ts, or null (with a loud warning) when none could start. */
export function serverUrl(suite: string): string | null {
  const url = inject('postgresUrl');
  if (url === null) {
    console.warn(
      `\n⚠ ${suite}: SKIPPED — PostgreSQL is not installed, so no test server could start.\n` +
        '  Install it with: bash tools/test-servers/install-servers.sh (CI fails instead of skipping).\n',
    );
  }
  return url;
}

/** A table name no other run or test uses. */
export function randomTable(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

export function newPool(url: string, options: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 4, ...options });
  pool.on('error', () => {});
  return pool;
}

/** Reads a user's row directly, bypassing the adapter. */
export async function readRow(
  pool: pg.Pool,
  table: string,
  userId: string,
): Promise<{ data: unknown; version: number } | undefined> {
  const { rows } = await pool.query(`SELECT data, version FROM ${table} WHERE user_id = $1`, [userId]);
  const row = rows[0] as { data: unknown; version: string } | undefined;
  return row === undefined ? undefined : { data: row.data, version: Number(row.version) };
}

/** A database a test file runs on: the run's server (skipped when there is none) or an in-process PGlite. */
export interface Backend {
  name: string;
  skip: boolean;
  open(): Promise<{ client: PostgresClient; close(): Promise<void> }>;
}

/** The real server at `url` (null: none, so skipped) and PGlite, for `describe.each`. */
export function backends(url: string | null): Backend[] {
  return [
    {
      name: 'a real server',
      skip: url === null,
      open: async () => {
        const pool = newPool(url!);
        return { client: pool, close: () => pool.end() };
      },
    },
    {
      name: 'PGlite',
      skip: false,
      open: async () => {
        const db = await PGlite.create();
        return { client: db, close: () => db.close() };
      },
    },
  ];
}

/**
 * Opens `backend` before the calling file's tests and closes it after them (nothing when skipped); returns a
 * client that sends every query to it.
 */
export function backendClient({ skip, open }: Backend): PostgresClient {
  let opened: { client: PostgresClient; close(): Promise<void> } | undefined;
  beforeAll(async () => {
    if (!skip) opened = await open();
  });
  afterAll(async () => {
    await opened?.close();
  });
  return { query: (text, values) => opened!.client.query(text, values) };
}
