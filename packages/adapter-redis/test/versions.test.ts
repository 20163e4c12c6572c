import { decideWrite, type StoredVersion } from '@cagey-sessions/core/adapter-kit';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { clusterUrl, randomPrefix, rawClient, rawKey, standaloneUrl } from './helpers.js';

/** Every stored state a versioned write can meet, as raw values (the layout written out) and as the kit sees it. */
const STATES: { name: string; raw: string | undefined; stored: StoredVersion }[] = [
  { name: 'missing', raw: undefined, stored: { version: 0, live: false } },
  { name: 'live v1', raw: '1:{"s":1}', stored: { version: 1, live: true } },
  {
    name: 'live v3 with a write id',
    raw: '3:w-stored:{"s":3}',
    stored: { version: 3, live: true, writeId: 'w-stored' },
  },
  { name: 'tombstone v4', raw: '4:', stored: { version: 4, live: false } },
];
const EXPECTED_VERSIONS = [undefined, 0, 1, 3, 4, 9];

const CASES = STATES.flatMap((state) =>
  EXPECTED_VERSIONS.map((expectedVersion) => ({ state, expectedVersion })),
);

const servers = [
  ['standalone server', standaloneUrl()],
  ['3-master Cluster', clusterUrl()],
] as const;

// The Lua save script and the kit's decideWrite must agree on every combination of stored state and
// expectedVersion: the outcome, the new version, and what a conflict reports.
describe.each(servers)('the save script follows decideWrite, on a %s', (_, url) => {
  let raw: Redis | Cluster;
  let adapter: RedisAdapter;
  const prefix = randomPrefix('versions');

  beforeAll(() => {
    if (!url) return;
    raw = rawClient(url);
    adapter = new RedisAdapter({ url, prefix });
  });
  afterAll(async () => {
    await adapter?.close();
    await raw?.quit();
  });

  it.skipIf(!url).each(CASES)(
    'stored $state.name, expectedVersion $expectedVersion',
    async ({ state, expectedVersion }) => {
      const userId = `${state.name}/${expectedVersion}`;
      const key = rawKey(prefix, userId);
      if (state.raw !== undefined) await raw.set(key, state.raw);

      const [result] = await adapter.save([
        {
          userId,
          userData: { n: 1 },
          writeId: 'w-new',
          ...(expectedVersion === undefined ? {} : { expectedVersion }),
        },
      ]);

      const decision = decideWrite(expectedVersion, state.stored);
      if (decision.write) {
        expect(result).toStrictEqual({ status: 'ok', version: decision.version });
        expect(await raw.get(key)).toBe(`${decision.version}:w-new:{"n":1}`);
      } else {
        expect(result).toStrictEqual({
          status: 'conflict',
          currentVersion: decision.currentVersion,
          ...(decision.currentWriteId === undefined ? {} : { currentWriteId: decision.currentWriteId }),
        });
        expect(await raw.get(key)).toBe(state.raw ?? null);
      }
    },
  );
});
