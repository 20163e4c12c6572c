import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { locatePostgres } from '../src/binaries.js';
import { canConnect, isPortFree, type PostgresServer, startPostgres } from '../src/index.js';
import { isGone, processState, processTree } from '../src/signals.js';
import { serverInstalled, settledWithin } from './helpers.js';

async function query<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** `pg_controldata` of a server's data directory (readable by root and by the server's owner). */
function controlData(dir: string): string {
  const binDir = locatePostgres().found!.binDir;
  return execFileSync(join(binDir, 'pg_controldata'), [join(dir, 'data')], {
    encoding: 'utf8',
    env: { ...process.env, LC_ALL: 'C' },
    timeout: 10_000,
  });
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

describe.skipIf(!serverInstalled('postgres') || process.platform !== 'linux')(
  'startPostgres: kill(), pause() and resume()',
  () => {
    let server: PostgresServer;
    const clients: pg.Client[] = [];

    /** A connected client whose connection errors are recorded, not thrown. */
    async function connected(): Promise<pg.Client> {
      const client = new pg.Client({ connectionString: server.url, connectionTimeoutMillis: 5_000 });
      client.on('error', () => undefined);
      clients.push(client);
      await client.connect();
      return client;
    }

    const postmasterPid = () =>
      Number(readFileSync(join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const backendPid = async (client: pg.Client) =>
      (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

    beforeAll(async () => {
      // Commits reach the kernel before they are acknowledged, so they survive SIGKILL (fsync stays off).
      server = await startPostgres({ settings: { synchronous_commit: 'on' } });
    });

    afterEach(async () => {
      for (const client of clients.splice(0)) await client.end().catch(() => undefined);
    });

    afterAll(async () => {
      await server?.stop();
    });

    it('pause() stops the postmaster and every backend: a query on an open connection hangs until resume()', async () => {
      const client = await connected();
      const backend = await backendPid(client);
      const postmaster = postmasterPid();
      await server.pause();
      try {
        expect(processState(postmaster)).toBe('T');
        expect(processState(backend)).toBe('T');
        const query = client.query('SELECT 42 AS answer');
        expect(await settledWithin(query, 500)).toBe('pending');
        // A new connection is not served either (the postmaster is stopped too).
        const late = new pg.Client({ connectionString: server.url, connectionTimeoutMillis: 300 });
        late.on('error', () => undefined);
        await expect(late.connect()).rejects.toThrow();
        await server.resume();
        expect(await settledWithin(query, 5_000)).toMatchObject({ value: { rows: [{ answer: 42 }] } });
      } finally {
        await server.resume();
      }
      expect(processState(backend)).not.toBe('T');
      expect((await (await connected()).query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    });

    it('kill() SIGKILLs the postmaster and every backend without a shutdown; restart() recovers committed rows', async () => {
      const client = await connected();
      await client.query('CREATE TABLE killed (id int PRIMARY KEY)');
      await client.query('INSERT INTO killed VALUES (1), (2)');
      const backend = await backendPid(client);
      const postmaster = postmasterPid();
      const tree = processTree(postmaster);
      expect(tree).toContain(backend);
      expect(tree.length).toBeGreaterThan(3);

      await server.kill();
      expect(tree.every(isGone)).toBe(true);
      expect(await canConnect(server.port)).toBe(false);
      await expect(client.query('SELECT 1')).rejects.toThrow();
      // No shutdown checkpoint was written: the control file still says the cluster was running.
      expect(controlData(server.dir)).toMatch(/Database cluster state:\s+in production/);

      const port = server.port;
      await server.restart();
      expect(server.port).toBe(port);
      expect(postmasterPid()).not.toBe(postmaster);
      const again = await connected();
      expect((await again.query('SELECT id FROM killed ORDER BY id')).rows).toEqual([{ id: 1 }, { id: 2 }]);
    });

    it('kill() of a paused server works, and restart() brings it back', async () => {
      await server.pause();
      await server.kill();
      expect(await canConnect(server.port)).toBe(false);
      await server.restart();
      expect((await (await connected()).query('SELECT count(*)::int AS n FROM killed')).rows).toEqual([
        { n: 2 },
      ]);
    });

    it('restart() of a paused server resumes it first and is an orderly restart', async () => {
      await server.pause();
      const started = Date.now();
      await server.restart();
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await (await connected()).query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    });
  },
);

describe.skipIf(!serverInstalled('postgres'))('startPostgres: stop() of a paused or killed server', () => {
  it('stop() of a paused server resumes it and shuts it down promptly, not after the SIGKILL timeout', async () => {
    const server = await startPostgres();
    await server.pause();
    const started = Date.now();
    await server.stop();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await canConnect(server.port)).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
    await expect(server.kill()).rejects.toThrow(/kill\(\) after stop/);
    await expect(server.pause()).rejects.toThrow(/pause\(\) after stop/);
    await expect(server.resume()).rejects.toThrow(/resume\(\) after stop/);
  });

  it('stop() after kill() removes the directory', async () => {
    const server = await startPostgres();
    await server.kill();
    await server.stop();
    expect(existsSync(server.dir)).toBe(false);
    expect(await isPortFree(server.port)).toBe(true);
  });
});
