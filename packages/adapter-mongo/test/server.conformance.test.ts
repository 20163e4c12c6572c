import { userKey } from '@cagey-sessions/core';
import {
  type ConformanceOptions,
  checkConformance,
  runAdapterConformance,
} from '@cagey-sessions/testing/conformance';
import type { MongoClient } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { MongoAdapter, type UserDocument } from '../src/index.js';
import { newClient, onFerretDB, randomDatabase, serverOptions, serverUrl } from './helpers.js';

const url = serverUrl('adapter-mongo: conformance against a real server');
const database = randomDatabase();
/** Reads documents directly, not through the adapter under test. */
let raw: MongoClient;

function options(url: string): ConformanceOptions<MongoAdapter> {
  return {
    name: onFerretDB() ? 'mongo (FerretDB)' : 'mongo (MONGODB_URI server)',
    beforeAll: async () => {
      raw = newClient(url);
    },
    afterAll: async () => {
      await raw.db(database).dropDatabase();
      await raw.close();
    },
    // Each adapter opens its own client from the URL, so two adapters are two independent "processes".
    createAdapter: ({ namespace }) =>
      new MongoAdapter({ url, database, collection: namespace, ...serverOptions() }),
    inspect: async ({ namespace }, userId) => {
      const document = await raw
        .db(database)
        .collection<UserDocument>(namespace)
        .findOne({ _id: userKey(userId) });
      if (document === null || document.deleted === true) return undefined;
      return { userData: document.data, version: document.version };
    },
    injectedClient: async ({ namespace }) => {
      const client = newClient(url);
      return {
        adapter: new MongoAdapter({ client, database, collection: namespace, ...serverOptions() }),
        clientWorks: async () => (await client.db('admin').command({ ping: 1 })).ok === 1,
        dispose: () => client.close(),
      };
    },
    // Field names MongoDB would read as operators or paths are refused by the adapter (see the README).
    capabilities: {
      rejectedUserData: { stats: { 'gold.total': 1 } },
      // FerretDB 1.x reads the whole collection for a find sorted on _id (each scan page) and for every
      // conditional update: 10,000 users take minutes there. A real MongoDB (MONGODB_URI) lists 10,000.
      ...(onFerretDB() ? { scanUsers: 2000 } : {}),
    },
    testTimeout: onFerretDB() ? 180_000 : 60_000,
  };
}

/** The roundTrip check whose fixture has keys with dots and a `$` prefix, which the adapter refuses by design. */
const KEYS_CHECK = /^keys: dots, \$-prefixed/;
/** The roundTrip check with arrays inside arrays, which FerretDB 1.x refuses. */
const NESTED_ARRAYS_CHECK = /^structures: .*nested and mixed arrays/;

if (url === null) {
  describe.skip('adapter conformance: mongo', () => {
    it('needs a MongoDB-compatible server (see the warning above)', () => {});
  });
} else {
  if (onFerretDB()) {
    console.warn(
      '\n!!! adapter-mongo conformance on FerretDB: the concurrency group is NOT run. FerretDB 1.x applies a ' +
        'conditional update as a read and then a write, so two writers holding the same version both succeed ' +
        '(its two-inserts race passes, the update races fail). Run with MONGODB_URI=<a MongoDB> to cover it.\n',
    );
  }
  runAdapterConformance<MongoAdapter>({
    ...options(url),
    // roundTrip runs below, where the one check the adapter fails by design is asserted to fail that way.
    // FerretDB 1.x applies a conditional update as a read, then an unconditional write: two writers holding
    // the same version both succeed, so the concurrency group can only pass on MongoDB (see the README).
    skip: onFerretDB() ? ['roundTrip', 'concurrency'] : ['roundTrip'],
  });

  describe('adapter conformance: mongo, roundTrip group', () => {
    it('every roundTrip check passes except the ones the store refuses by design, which fail record by record', async () => {
      const report = await checkConformance<MongoAdapter>({ ...options(url), only: ['roundTrip'] });
      expect(report.passed.length).toBeGreaterThanOrEqual(5);
      const failed = new Map(
        report.failed.map((outcome) => [outcome.name, String((outcome.error as Error).message)]),
      );
      const keys = [...failed.keys()].find((name) => KEYS_CHECK.test(name));
      // The adapter refuses "$" and "." field names before sending (INVALID_USER_DATA result for that record).
      expect(keys, 'the dotted/$ keys check fails').toBeDefined();
      expect(failed.get(keys!)).toMatch(/status: 'error'/);
      failed.delete(keys!);
      if (onFerretDB()) {
        // FerretDB 1.x refuses arrays directly inside arrays; MongoDB stores them.
        const nested = [...failed.keys()].find((name) => NESTED_ARRAYS_CHECK.test(name));
        expect(nested, 'FerretDB: the nested-arrays check fails').toBeDefined();
        failed.delete(nested!);
      }
      expect([...failed.entries()], 'no other roundTrip check fails').toEqual([]);
    });
  });
}
