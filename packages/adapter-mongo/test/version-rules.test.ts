import { decideWrite, type StoredVersion } from '@cagey-sessions/core/adapter-kit';
import type { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MongoAdapter, type UserDocument } from '../src/index.js';
import { newClient, randomDatabase, randomName, serverOptions, serverUrl } from './helpers.js';

const url = serverUrl("adapter-mongo: the version rules against core's decideWrite");
const database = randomDatabase();
const updatedAt = new Date('2026-01-01T00:00:00Z');

/** Stored states, each as a document written straight to the collection and as `decideWrite` sees it. */
const STATES: { name: string; document: Omit<UserDocument, '_id'> | undefined; stored: StoredVersion }[] = [
  { name: 'missing', document: undefined, stored: { version: 0, live: false } },
  {
    name: 'live at version 1',
    document: { data: { was: 1 }, version: 1, updatedAt },
    stored: { version: 1, live: true },
  },
  {
    name: 'live at version 3 with a write id',
    document: { data: { was: 3 }, version: 3, updatedAt, writeId: 'w-stored' },
    stored: { version: 3, live: true, writeId: 'w-stored' },
  },
  {
    name: 'a tombstone at version 4',
    document: { version: 4, updatedAt, deleted: true },
    stored: { version: 4, live: false },
  },
];
const EXPECTED_VERSIONS = [undefined, 0, 1, 3, 4, 9];
const CASES = STATES.flatMap((state) =>
  EXPECTED_VERSIONS.map((expectedVersion) => ({ ...state, expectedVersion })),
);

describe.skipIf(url === null)("a save's outcome is core's decideWrite decision", () => {
  let client: MongoClient;
  let adapter: MongoAdapter;

  beforeAll(async () => {
    client = newClient(url!);
    adapter = new MongoAdapter({ client, database, collection: randomName(), ...serverOptions() });
    await adapter.setup();
  });

  afterAll(async () => {
    await adapter?.close();
    await client?.db(database).dropDatabase();
    await client?.close();
  });

  it.each(CASES.map((c, i) => [c.name, String(c.expectedVersion), i, c] as const))(
    'stored %s, expectedVersion %s',
    async (_name, _expected, i, { document, stored, expectedVersion }) => {
      const collection = client.db(database).collection<UserDocument>(adapter.collection);
      const userId = `rule-${i}`;
      if (document !== undefined) await collection.insertOne({ _id: userId, ...document });

      const decision = decideWrite(expectedVersion, stored);
      const [result] = await adapter.save([
        { userId, userData: { written: true }, expectedVersion, writeId: 'w-probe' },
      ]);

      const after = await collection.findOne({ _id: userId });
      if (decision.write) {
        expect(result).toEqual({ status: 'ok', version: decision.version });
        expect(after).toEqual({
          _id: userId,
          data: { written: true },
          version: decision.version,
          updatedAt: expect.any(Date),
          writeId: 'w-probe',
        });
      } else {
        expect(result).toEqual({
          status: 'conflict',
          currentVersion: decision.currentVersion,
          currentWriteId: decision.currentWriteId,
        });
        // A conflict leaves the stored document as it was.
        expect(after).toEqual(document === undefined ? null : { _id: userId, ...document });
      }
    },
  );
});
