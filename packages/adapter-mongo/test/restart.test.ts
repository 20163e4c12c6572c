import { type FerretDBServer, ferretdbBinary, startFerretDB } from '@cagey-sessions/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MongoAdapter } from '../src/index.js';
import { FERRETDB_UPDATES_PER_BULK_WRITE } from './helpers.js';

/** This test restarts its server, so it runs on a FerretDB of its own (also when MONGODB_URI is set). */
function binaryOrWarn(): string | undefined {
  const binary = ferretdbBinary();
  if (binary === undefined) {
    const message = 'no FerretDB binary; build it with: bash tools/test-servers/build-ferretdb.sh';
    if (process.env.CI === 'true') throw new Error(message);
    console.warn(`\n!!! adapter-mongo restart test SKIPPED: ${message}\n`);
  }
  return binary;
}

describe.skipIf(binaryOrWarn() === undefined)('MongoAdapter across a server restart', () => {
  let server: FerretDBServer;
  let adapter: MongoAdapter;

  beforeAll(async () => {
    server = await startFerretDB();
    adapter = new MongoAdapter({
      url: server.url,
      clientOptions: { serverSelectionTimeoutMS: 20_000 },
      database: 'restart',
      maxUpdatesPerBulkWrite: FERRETDB_UPDATES_PER_BULK_WRITE,
    });
    await adapter.setup();
  });

  afterAll(async () => {
    await adapter?.close();
    await server?.stop();
  });

  it('the save after a restart succeeds on the same adapter and continues the versions', async () => {
    const users = Array.from({ length: 20 }, (_, i) => `player-${i}`);
    const first = await adapter.save(
      users.map((userId) => ({ userId, userData: { round: 1 }, expectedVersion: 0 })),
    );
    expect(first.every((result) => result.status === 'ok' && result.version === 1)).toBe(true);

    await server.restart();

    const second = await adapter.save(
      users.map((userId) => ({ userId, userData: { round: 2 }, expectedVersion: 1 })),
    );
    expect(second).toEqual(users.map(() => ({ status: 'ok', version: 2 })));
    expect(await adapter.load('player-7')).toEqual({ userData: { round: 2 }, version: 2 });
  });
});
