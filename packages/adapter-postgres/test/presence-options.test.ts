import { inspect } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPostgresPresence, PostgresPresence, type PostgresPresenceOptions } from '../src/index.js';
import { newPool, randomTable, serverUrl } from './helpers.js';
import { inbox, message, sendUntilReceived } from './presence-helpers.js';

const url = serverUrl('adapter-postgres: presence options and connections');

describe('PostgresPresence options', () => {
  const client = { query: async () => ({ rows: [] }), listen: async () => async () => {} };
  const refused = (options: unknown, pattern: RegExp) =>
    expect(() => new PostgresPresence(options as PostgresPresenceOptions)).toThrow(
      expect.objectContaining({
        name: 'ValidationError',
        code: 'INVALID_OPTIONS',
        message: expect.stringMatching(pattern),
      }),
    );

  it('refuses unusable options with INVALID_OPTIONS, naming the problem', () => {
    refused(undefined, /options are required/);
    refused({}, /pass client/);
    refused({ client, url: 'postgres://x' }, /either client/);
    refused({ url: 'mysql://x' }, /must start with postgres:\/\//);
    refused({ client: { query: async () => ({ rows: [] }) } }, /LISTEN/);
    refused({ client, connectTimeout: '1s' }, /apply to the connections the presence opens/);
    refused({ client, tabel: 'x' }, /Did you mean table\?/);
    refused({ client, table: 'a; DROP TABLE b' }, /Invalid table name/);
    refused({ client, table: 'a.b.c' }, /Invalid table name/);
    refused({ client, table: 'x'.repeat(58) }, /at most 57 characters/);
    refused({ client, log: 'console' }, /log must be an object/);
    refused({ url: 'postgres://x', connectTimeout: 0 }, /connectTimeout must be a positive duration/);
    refused({ url: 'postgres://x', clientOptions: { password: () => 'x' } }, /password must be a string/);
  });

  it('takes a schema-qualified table and exposes it as given', () => {
    expect(new PostgresPresence({ client, table: 'game.presence' }).table).toBe('game.presence');
    expect(new PostgresPresence({ client }).table).toBe('cagey_presence');
  });

  it('createPostgresPresence() reads DATABASE_URL when given neither client nor url', () => {
    vi.stubEnv('DATABASE_URL', '');
    try {
      expect(() => createPostgresPresence()).toThrow(/DATABASE_URL/);
      vi.stubEnv('DATABASE_URL', 'postgres://u:p@127.0.0.1:1/db');
      expect(createPostgresPresence({ table: 'p' })).toBeInstanceOf(PostgresPresence);
      expect(() => new PostgresPresence({} as PostgresPresenceOptions)).toThrow(/pass client/);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe.skipIf(url === null)('PostgresPresence connections, on a real server', () => {
  let raw: pg.Pool;
  beforeAll(() => {
    raw = newPool(url!);
  });
  afterAll(async () => {
    await raw?.end();
  });

  /** Connections to the server named `application_name`, the caller's excepted. */
  const connectionsNamed = async (name: string) =>
    (
      await raw.query(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
        [name],
      )
    ).rows[0].n as number;

  it('setup() from several processes at the same moment creates the tables once, without an error', async () => {
    const table = randomTable('p');
    const presences = Array.from({ length: 6 }, () => new PostgresPresence({ url: url!, table }));
    try {
      await Promise.all(presences.map((presence) => presence.setup()));
      await Promise.all(presences.map((presence) => presence.setup()));
      const { rows } = await raw.query(
        `SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ($1, $2)`,
        [`${table}_nodes`, `${table}_users`],
      );
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await Promise.all(presences.map((presence) => presence.close()));
    }
  });

  it('over a url, close() ends both the pool and the connection it listens on', async () => {
    const table = randomTable('p');
    const name = `presence-${table}`;
    const presence = new PostgresPresence({ url: url!, table, clientOptions: { application_name: name } });
    await presence.setup();
    await presence.join('a', 30_000, () => {});
    expect(await connectionsNamed(name)).toBeGreaterThanOrEqual(2);
    await presence.close();
    await expect.poll(() => connectionsNamed(name), { timeout: 10_000 }).toBe(0);
  });

  it('over a pg.Pool, one connection is checked out for messages while a node is joined, and given back after', async () => {
    const table = randomTable('p');
    const pool = newPool(url!, { max: 3 });
    const presence = new PostgresPresence({ client: pool, table });
    try {
      await presence.setup();
      const received = inbox();
      await presence.join('a', 30_000, received.onMessage);
      await presence.join('b', 30_000, () => {});
      expect(pool.totalCount - pool.idleCount).toBe(1);
      await presence.send('a', message('u'));
      await expect.poll(() => received.messages, { timeout: 10_000 }).toEqual([message('u')]);
      await presence.leave('a');
      expect(pool.totalCount - pool.idleCount).toBe(1);
      await presence.leave('b');
      expect(pool.totalCount - pool.idleCount).toBe(0);
      await presence.close();
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await presence.close();
      await pool.end();
    }
  });

  it('over a pg.Client, queries and messages share it; close() undoes its LISTENs and leaves it open', async () => {
    const table = randomTable('p');
    const client = new pg.Client({ connectionString: url! });
    await client.connect();
    const presence = new PostgresPresence({ client, table });
    const sender = new PostgresPresence({ url: url!, table });
    try {
      await presence.setup();
      const received = inbox();
      await presence.join('a', 30_000, received.onMessage);
      expect(await presence.claim('u', 'a')).toEqual({ acquired: true });
      await sender.send('a', message('u'));
      await expect.poll(() => received.messages, { timeout: 10_000 }).toEqual([message('u')]);
      expect((await client.query('SELECT pg_listening_channels() AS c')).rows).toHaveLength(1);
      await presence.close();
      expect((await client.query('SELECT pg_listening_channels() AS c')).rows).toEqual([]);
      expect(client.listenerCount('notification')).toBe(0);
    } finally {
      await presence.close();
      await sender.close();
      await client.end();
    }
  });

  it('a node that joins while the listening connection is being reopened leaves the other nodes their messages', async () => {
    const table = randomTable('p');
    const name = `presence-${table}`;
    const presence = new PostgresPresence({ url: url!, table, clientOptions: { application_name: name } });
    const sender = new PostgresPresence({ url: url!, table });
    try {
      await presence.setup();
      const [toA, toB] = [inbox(), inbox()];
      await presence.join('a', 30_000, toA.onMessage);
      await sendUntilReceived(sender, 'a', toA.messages, 'before');
      // Cut the listening connection, then join another node at once: before the scheduled reconnection.
      await raw.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
        [name],
      );
      for (let attempt = 0; attempt < 50; attempt++) {
        if (
          await presence.join('b', 30_000, toB.onMessage).then(
            () => true,
            () => false,
          )
        )
          break;
      }
      await sendUntilReceived(sender, 'b', toB.messages, 'b-after');
      await sendUntilReceived(sender, 'a', toA.messages, 'a-after');
    } finally {
      await Promise.all([presence.close(), sender.close()]);
    }
  });

  it('over a pg.Client whose connection drops, messages stop and a warning says why, once; nothing throws', async () => {
    const table = randomTable('p');
    const client = new pg.Client({ connectionString: url! });
    client.on('error', () => {});
    await client.connect();
    const warn = vi.fn();
    const presence = new PostgresPresence({ client, table, log: { warn } });
    try {
      await presence.setup();
      await presence.join('a', 30_000, () => {});
      const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
      await raw.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await expect.poll(() => warn.mock.calls.length, { timeout: 10_000 }).toBe(1);
      expect(String(warn.mock.calls[0]![0])).toMatch(/lost its connection: presence messages stop/);
      await expect(presence.claim('u', 'a')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
    } finally {
      await presence.close();
      await client.end().catch(() => {});
    }
  });

  it('errors hold no password: a wrong one in the url or in clientOptions', async () => {
    const wrong = 'wr0ng/P@ss:w%rd#x 9';
    const server = new URL(url!);
    const withWrong = `postgres://${server.username}:${encodeURIComponent(wrong)}@${server.host}/postgres`;
    for (const options of [
      { url: withWrong, connectTimeout: '5s' },
      {
        url: `postgres://${server.username}@${server.host}/postgres`,
        clientOptions: { password: wrong },
      },
    ] as PostgresPresenceOptions[]) {
      const presence = new PostgresPresence({ ...options, table: randomTable('p') });
      try {
        for (const call of [() => presence.join('a', 1000, () => {}), () => presence.claim('u', 'a')]) {
          const error = await call().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
          const everything = `${inspect(error, { depth: Infinity, showHidden: true })}`;
          expect(everything).not.toContain(wrong);
          expect(everything).not.toContain(encodeURIComponent(wrong));
        }
      } finally {
        await presence.close();
      }
    }
  });
});
