import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Cluster, Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { clusterUrl, randomPrefix, rawClient, standaloneUrl } from './helpers.js';

const worker = fileURLToPath(new URL('./fixtures/presence-exit.ts', import.meta.url));
const tsconfig = fileURLToPath(new URL('../tsconfig.test.json', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');

describe.each([
  ['a standalone server', standaloneUrl()],
  ['a 3-master Cluster', clusterUrl()],
])('RedisPresence on %s, in a process of its own', (_, url) => {
  it.skipIf(!url)(
    'a process that closes its presence exits by itself, leaving no lease and no user record',
    async () => {
      const prefix = randomPrefix('exit');
      // execFile's timeout kills a process that does not exit: the promise then rejects and the test fails.
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', tsx, worker, url!, prefix],
        {
          env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
          timeout: 20_000,
        },
      );
      expect(JSON.parse(stdout)).toEqual({
        claim: { acquired: true },
        message: { type: 'released', userId: 'player-1', from: 'exiting-node' },
      });
      const raw: Redis | Cluster = rawClient(url!);
      try {
        await raw.ping(); // a Cluster client knows its masters once it is ready
        const nodes: Redis[] = 'nodes' in raw ? raw.nodes('master') : [raw];
        expect(nodes.length).toBeGreaterThan(0);
        const left = await Promise.all(nodes.map((node) => node.keys(`${prefix}*`)));
        expect(left.flat()).toEqual([]);
      } finally {
        await raw.quit();
      }
    },
  );
});
