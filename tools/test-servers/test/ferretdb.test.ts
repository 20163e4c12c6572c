import { existsSync, readdirSync } from 'node:fs';
import { MongoClient } from 'mongodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  FERRETDB_BUILD_HINT,
  type FerretDBServer,
  ferretdbBinary,
  isPortFree,
  pingOk,
  startFerretDB,
} from '../src/index.js';
import { isGone, processState } from '../src/signals.js';
import { descendantsWithArgument, settledWithin } from './helpers.js';

/** Missing binary: a loud skip locally, a failure with CI=true (CI builds it with build-ferretdb.sh first). */
function ferretdbInstalled(): boolean {
  if (ferretdbBinary() !== undefined) return true;
  const message = `no FerretDB binary; build it with: ${FERRETDB_BUILD_HINT}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`\n!!! SKIPPING ferretdb tests: ${message}\n`);
  return false;
}

describe.skipIf(!ferretdbInstalled())('startFerretDB', () => {
  let server: FerretDBServer;

  beforeAll(async () => {
    server = await startFerretDB();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('answers ping on loopback at the URL it returns', async () => {
    expect(server.url).toBe(`mongodb://127.0.0.1:${server.port}/`);
    expect(server.host).toBe('127.0.0.1');
    expect(await pingOk(server.port)).toBe(true);
    expect(await isPortFree(server.port)).toBe(false);
  });

  it('keeps its SQLite data in its own temporary directory', async () => {
    expect(existsSync(server.dir)).toBe(true);
    expect(server.dir).toContain('cagey-test-server-ferretdb-');
    expect(readdirSync(server.dir)).toContain('state.json');
  });

  it('restart() comes back on the same port and answers ping', async () => {
    const port = server.port;
    await server.restart();
    expect(server.port).toBe(port);
    expect(await pingOk(port)).toBe(true);
  });

  it('stop() frees the port and removes the directory, and is idempotent', async () => {
    const other = await startFerretDB();
    expect(await pingOk(other.port)).toBe(true);
    await other.stop();
    await other.stop();
    expect(await pingOk(other.port)).toBe(false);
    expect(await isPortFree(other.port)).toBe(true);
    expect(existsSync(other.dir)).toBe(false);
    await expect(other.restart()).rejects.toThrow(/after stop/);
  });

  it('pingOk is false where nothing listens', async () => {
    const other = await startFerretDB();
    await other.stop();
    expect(await pingOk(other.port)).toBe(false);
  });

  it('a missing binary is reported as unavailable with the build command', async () => {
    await expect(startFerretDB({ binary: '/nonexistent/ferretdb' })).rejects.toMatchObject({
      code: 'SERVER_UNAVAILABLE',
      message: expect.stringContaining(FERRETDB_BUILD_HINT),
    });
  });
});

describe.skipIf(!ferretdbInstalled())('startFerretDB: kill(), pause() and resume()', () => {
  let server: FerretDBServer;
  const clients: MongoClient[] = [];

  /** A client that gives up quickly instead of waiting 30 s for a server. */
  async function connected(): Promise<MongoClient> {
    const client = new MongoClient(server.url, { serverSelectionTimeoutMS: 3_000, connectTimeoutMS: 3_000 });
    clients.push(client);
    await client.connect();
    return client;
  }

  /** FerretDB's pid: the process of this test run whose command line names its listen address. */
  const serverPid = () => {
    const [pid] = descendantsWithArgument(`--listen-addr=127.0.0.1:${server.port}`);
    expect(pid).toBeDefined();
    return pid!;
  };

  beforeAll(async () => {
    server = await startFerretDB();
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close(true).catch(() => undefined);
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('kill() SIGKILLs the server; restart() finds the documents in its SQLite files', async () => {
    const client = await connected();
    await client
      .db('game')
      .collection('players')
      .insertOne({ _id: 'p1' as never, level: 7 });
    await server.kill();
    expect(await pingOk(server.port)).toBe(false);
    expect(await isPortFree(server.port)).toBe(true);
    await server.restart();
    expect(await pingOk(server.port)).toBe(true);
    const after = await connected();
    expect(
      await after
        .db('game')
        .collection('players')
        .findOne({ _id: 'p1' as never }),
    ).toEqual({
      _id: 'p1',
      level: 7,
    });
  });

  it.skipIf(process.platform !== 'linux')(
    'pause() makes the server unresponsive until resume()',
    async () => {
      const client = await connected();
      await client
        .db('game')
        .collection('players')
        .insertOne({ _id: 'p2' as never, level: 1 });
      const pid = serverPid();
      await server.pause();
      try {
        expect(processState(pid)).toBe('T');
        expect(await pingOk(server.port)).toBe(false);
        const find = client
          .db('game')
          .collection('players')
          .findOne({ _id: 'p2' as never });
        expect(await settledWithin(find, 500)).toBe('pending');
        await server.resume();
        expect(await settledWithin(find, 5_000)).toMatchObject({ value: { _id: 'p2', level: 1 } });
      } finally {
        await server.resume();
      }
      expect(await pingOk(server.port)).toBe(true);
      await server.kill();
      expect(isGone(pid)).toBe(true);
      await server.restart();
    },
  );
});
