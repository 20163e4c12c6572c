import { runAdapterConformance } from '@cagey-sessions/testing/conformance';
import type { Cluster, Redis } from 'ioredis';
import { describe, it } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { clusterUrl, rawClient, rawKey, readRaw, standaloneUrl } from './helpers.js';

/** The suite against one server: keys under `<namespace>:`, inspected with a separate raw client. */
function conformance(name: string, url: string): void {
  let raw: Redis | Cluster;
  runAdapterConformance<RedisAdapter>({
    name,
    async beforeAll() {
      raw = rawClient(url);
      await raw.ping();
    },
    async afterAll() {
      await raw.quit();
    },
    createAdapter: ({ namespace }) => new RedisAdapter({ url, prefix: `${namespace}:` }),
    inspect: ({ namespace }, userId) => readRaw(raw, rawKey(`${namespace}:`, userId)),
    async injectedClient({ namespace }) {
      const client = rawClient(url);
      return {
        adapter: new RedisAdapter({ client, prefix: `${namespace}:` }),
        clientWorks: async () => (await client.ping()) === 'PONG',
        dispose: async () => {
          await client.quit();
        },
      };
    },
    // SCAN may return a key more than once (see the README): a user may be listed twice, never missed.
    capabilities: { scanDelivery: 'atLeastOnce' },
  });
}

const standalone = standaloneUrl();
const cluster = clusterUrl();

if (standalone) conformance('redis (standalone server)', standalone);
else describe('redis (standalone server)', () => it.skip('redis-server is not installed', () => {}));

if (cluster) conformance('redis (3-master Cluster)', cluster);
else describe('redis (3-master Cluster)', () => it.skip('redis-server is not installed', () => {}));
