import { startForTests, startRedis, startRedisCluster } from '@cagey-sessions/test-servers';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A standalone redis-server for this run, or null when redis-server is not installed. */
    redisUrl: string | null;
    /** A 3-master Redis Cluster for this run (`redis+cluster://…`), or null when it cannot be started. */
    redisClusterUrl: string | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await startForTests('redis', () => startRedis());
  const cluster = await startForTests('redis-cluster', () => startRedisCluster({ masters: 3 }));
  project.provide('redisUrl', redis?.url ?? null);
  project.provide(
    'redisClusterUrl',
    cluster ? `redis+cluster://${cluster.nodes.map((node) => `${node.host}:${node.port}`).join(',')}` : null,
  );
  return async () => {
    await Promise.all([redis?.stop(), cluster?.stop()]);
  };
}
