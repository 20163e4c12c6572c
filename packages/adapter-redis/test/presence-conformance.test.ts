import { runPresenceConformance } from '@cagey-sessions/testing/conformance';
import { describe, it } from 'vitest';
import { RedisPresence } from '../src/index.js';
import { clusterUrl, standaloneUrl } from './helpers.js';

const standalone = standaloneUrl();
const cluster = clusterUrl();

// Each presence opens its own connections, as the presence of one game-server process does.
if (standalone) {
  runPresenceConformance({
    name: 'RedisPresence (standalone server)',
    createPresence: ({ namespace }) => new RedisPresence({ url: standalone, prefix: `${namespace}:` }),
  });
} else {
  describe('RedisPresence (standalone server)', () => it.skip('redis-server is not installed', () => {}));
}

if (cluster) {
  runPresenceConformance({
    name: 'RedisPresence (3-master Cluster)',
    createPresence: ({ namespace }) => new RedisPresence({ url: cluster, prefix: `${namespace}:` }),
  });
} else {
  describe('RedisPresence (3-master Cluster)', () => it.skip('redis-server is not installed', () => {}));
}
