import { startForTests, startRedisCluster } from '@cagey-sessions/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomName } from './helpers.js';
import { runCli, summaryOf } from './process.js';
import { seedPostgres, servers } from './stores.js';

const { postgres } = servers();
let cluster: Awaited<ReturnType<typeof startRedisCluster>> | undefined;
let clusterUrl: string | undefined;

beforeAll(async () => {
  cluster = await startForTests('redis-cluster', () => startRedisCluster({ masters: 3 }));
  if (cluster)
    clusterUrl = `redis+cluster://${cluster.nodes.map((node) => `${node.host}:${node.port}`).join(',')}`;
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

describe.skipIf(!postgres)('a Redis Cluster by URL', () => {
  it('migrates to redis+cluster://h1:p1,h2:p2,h3:p3, counts and verifies there, and back', async () => {
    if (!clusterUrl) return;
    const players = 2000;
    const { table } = await seedPostgres(postgres!, players);
    const prefix = `${randomName('cl')}:`;
    const source = ['--from', postgres!, '--from-table', table];
    const target = ['--to', clusterUrl, '--to-prefix', prefix];
    const migrated = await runCli(['migrate', ...source, ...target, '--json']);
    expect(summaryOf(migrated).counts, migrated.stderr).toMatchObject({ users: players, copied: players });
    const count = await runCli(['count', clusterUrl, '--prefix', prefix, '--json']);
    expect(summaryOf(count).counts.users).toBe(players);
    const verified = await runCli(['verify', ...source, ...target, '--json']);
    expect(summaryOf(verified)).toMatchObject({ problemCount: 0, exitCode: 0 });
    const back = ['--to', postgres!, '--to-table', randomName('from_cluster')];
    const returned = await runCli([
      'migrate',
      '--from',
      clusterUrl,
      '--from-prefix',
      prefix,
      ...back,
      '--json',
    ]);
    expect(summaryOf(returned).counts).toMatchObject({ users: players, copied: players });
    const endToEnd = await runCli(['verify', ...source, ...back, '--json']);
    expect(summaryOf(endToEnd)).toMatchObject({ problemCount: 0, exitCode: 0 });
  }, 300_000);
});
