import { type PostgresServer, startPostgres } from '@cagey-sessions/test-servers';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type FaultProxy, matchesText, postgresReplyComplete, startFaultProxy } from '../src/index.js';
import { serverInstalled, settledWithin } from './helpers.js';

async function direct<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe.skipIf(!serverInstalled('postgres'))('fault proxy in front of a real PostgreSQL', () => {
  let server: PostgresServer;
  let proxy: FaultProxy;
  const clients: pg.Client[] = [];

  /** A client connected through the proxy; connection errors are recorded instead of thrown. */
  async function proxied(): Promise<{ client: pg.Client; errors: Error[] }> {
    const client = new pg.Client({
      connectionString: proxy.urlFor(server.url),
      connectionTimeoutMillis: 5_000,
    });
    const errors: Error[] = [];
    client.on('error', (error) => errors.push(error));
    clients.push(client);
    await client.connect();
    return { client, errors };
  }

  beforeAll(async () => {
    server = await startPostgres();
    await direct(server.url, 'CREATE TABLE cut_target (id int PRIMARY KEY, note text)');
  });

  afterAll(async () => {
    await server?.stop();
  });

  beforeEach(async () => {
    proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => undefined);
    await proxy.close();
  });

  it('an INSERT cut after its reply is committed, though the client only sees a connection error', async () => {
    const { client } = await proxied();
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    const cut = proxy.cutAfterReply({
      request: matchesText('INSERT INTO cut_target'),
      replyComplete: postgresReplyComplete,
    });
    const insert = client.query('INSERT INTO cut_target VALUES ($1, $2)', [1, 'unacknowledged']);
    const outcome = await settledWithin(insert, 5_000);
    expect(outcome).toMatchObject({ error: expect.any(Error) });
    expect(await settledWithin(cut, 1_000)).toEqual({ value: undefined });
    expect(await direct(server.url, 'SELECT note FROM cut_target WHERE id = 1')).toEqual([
      { note: 'unacknowledged' },
    ]);
    // The connection is gone; a new one through the proxy works.
    const again = await proxied();
    expect((await again.client.query('SELECT count(*)::int AS n FROM cut_target')).rows).toEqual([{ n: 1 }]);
  });

  it('a COMMIT cut after its ReadyForQuery has committed the whole transaction', async () => {
    const { client } = await proxied();
    await client.query('BEGIN');
    await client.query("INSERT INTO cut_target VALUES (2, 'in transaction')");
    const cut = proxy.cutAfterReply({ request: matchesText('COMMIT'), replyComplete: postgresReplyComplete });
    expect(await settledWithin(client.query('COMMIT'), 5_000)).toMatchObject({ error: expect.any(Error) });
    expect(await settledWithin(cut, 1_000)).toEqual({ value: undefined });
    expect(await direct(server.url, 'SELECT note FROM cut_target WHERE id = 2')).toEqual([
      { note: 'in transaction' },
    ]);
  });

  it('a query hangs while the proxy is a black hole and completes after heal()', async () => {
    const { client } = await proxied();
    proxy.blackhole();
    const query = client.query('SELECT 42 AS answer');
    expect(await settledWithin(query, 500)).toBe('pending');
    proxy.heal();
    expect(await settledWithin(query, 5_000)).toMatchObject({ value: { rows: [{ answer: 42 }] } });
  });

  it('reset() fails the open connection with a connection error; refuse() fails new ones until heal()', async () => {
    const { client, errors } = await proxied();
    const sleeping = client.query('SELECT pg_sleep(5)');
    // Give the query time to reach the server before the reset.
    await new Promise((resolve) => setTimeout(resolve, 100));
    proxy.reset();
    expect(await settledWithin(sleeping, 2_000)).toMatchObject({ error: expect.any(Error) });
    expect(errors.length).toBeGreaterThan(0);

    proxy.refuse();
    await expect(proxied()).rejects.toThrow();
    proxy.heal();
    const { client: healed } = await proxied();
    expect((await healed.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });
});
