import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canConnect, isPortFree, type PostgresServer, startPostgres } from '../src/index.js';
import { serverInstalled } from './helpers.js';

async function query<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe.skipIf(!serverInstalled('postgres'))('startPostgres', () => {
  let server: PostgresServer;

  beforeAll(async () => {
    server = await startPostgres();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('serves a password-protected database on loopback at the URL it returns', async () => {
    const url = new URL(server.url);
    expect(url.protocol).toBe('postgres:');
    expect(url.hostname).toBe('127.0.0.1');
    expect(Number(url.port)).toBe(server.port);
    expect(decodeURIComponent(url.password)).toBe(server.password);
    expect(server.password.length).toBeGreaterThanOrEqual(16);

    await query(server.url, 'CREATE TABLE greetings (id int PRIMARY KEY, text text NOT NULL)');
    await query(server.url, 'INSERT INTO greetings VALUES ($1, $2)', [1, 'hello']);
    expect(await query(server.url, 'SELECT text FROM greetings WHERE id = 1')).toEqual([{ text: 'hello' }]);
  });

  it('rejects a wrong password (scram-sha-256), so URLs in tests carry a real secret', async () => {
    const wrong = new URL(server.url);
    wrong.password = 'not-the-password';
    await expect(query(wrong.toString(), 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });
  });

  it('runs with the test settings and listens on 127.0.0.1 only', async () => {
    const rows = await query<{ name: string; setting: string }>(
      server.url,
      `SELECT name, setting FROM pg_settings WHERE name = ANY($1) ORDER BY name`,
      [['fsync', 'full_page_writes', 'listen_addresses', 'max_connections', 'synchronous_commit']],
    );
    expect(Object.fromEntries(rows.map((row) => [row.name, row.setting]))).toEqual({
      fsync: 'off',
      full_page_writes: 'off',
      listen_addresses: '127.0.0.1',
      max_connections: '200',
      synchronous_commit: 'off',
    });
  });

  it('keeps its data dir and unix socket in its own temporary directory', async () => {
    const [row] = await query<{ data_directory: string }>(server.url, 'SHOW data_directory');
    expect(row?.data_directory).toBe(join(server.dir, 'data'));
    expect(existsSync(join(server.dir, `.s.PGSQL.${server.port}`))).toBe(true);
  });

  it('restart() comes back on the same port with the same data, and clients can reconnect', async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 2 });
    // The fast shutdown terminates the pool's idle connection (57P01); the pool reports it and discards it.
    pool.on('error', () => undefined);
    try {
      await pool.query('CREATE TABLE survivors (id int PRIMARY KEY)');
      await pool.query('INSERT INTO survivors VALUES (7)');
      const port = server.port;
      await server.restart();
      expect(server.port).toBe(port);
      // The pool's idle connection was cut by the fast shutdown; a fresh query gets a new one.
      let rows: unknown[] | undefined;
      for (let attempt = 0; attempt < 3 && !rows; attempt++) {
        rows = await pool.query('SELECT id FROM survivors').then(
          (result) => result.rows,
          () => undefined,
        );
      }
      expect(rows).toEqual([{ id: 7 }]);
    } finally {
      await pool.end();
    }
  });

  it('restart() is serialised: two at once both complete and the server works after', async () => {
    await Promise.all([server.restart(), server.restart()]);
    expect(await query(server.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('two servers run side by side on different ports with separate data', async () => {
    const other = await startPostgres({ password: 'p@ss/word with:chars' });
    try {
      expect(other.port).not.toBe(server.port);
      expect(other.dir).not.toBe(server.dir);
      expect(await query(other.url, `SELECT to_regclass('greetings') AS found`)).toEqual([{ found: null }]);
    } finally {
      await other.stop();
    }
  });
});

describe.skipIf(!serverInstalled('postgres'))('startPostgres: stop()', () => {
  it('frees the port, removes the directory, is idempotent, and refuses restart() afterwards', async () => {
    const server = await startPostgres();
    expect(await canConnect(server.port)).toBe(true);
    expect(existsSync(server.dir)).toBe(true);

    await Promise.all([server.stop(), server.stop()]);
    await server.stop();

    expect(await canConnect(server.port)).toBe(false);
    expect(await isPortFree(server.port)).toBe(true);
    expect(existsSync(server.dir)).toBe(false);
    await expect(server.restart()).rejects.toThrow(/after stop/);
  });

  it('reports a startup failure with the server output instead of hanging', async () => {
    await expect(startPostgres({ settings: { max_connections: 'lots' } })).rejects.toThrow(
      /exited during startup[\s\S]*max_connections/,
    );
  });
});
