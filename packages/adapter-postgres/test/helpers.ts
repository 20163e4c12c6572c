import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

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
