/**
 * `pnpm demo --nodes 3`: three game-server processes on one PostgreSQL store and one presence (PostgreSQL, then
 * Redis), bots reconnecting to any of them. The checks come from the servers' own session logs and the store
 * read back: no player live on two servers at once, every player's stored data what a server last
 * acknowledged, and handoffs really happened.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClusterSummary, overlapping } from '../src/cluster.js';
import type { LifeLine } from '../src/cluster-node.js';
import { randomNamespace, runDemoCli, storeEnv, temporaryDir } from './helpers.js';

const PLAYERS = 60;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function cluster(presence: 'postgres' | 'redis', env: NodeJS.ProcessEnv) {
  const data = temporaryDir('cluster-demo');
  cleanups.push(data.remove);
  const reportFile = join(data.dir, 'summary.json');
  const run = await runDemoCli(
    [
      '--nodes=3',
      `--presence=${presence}`,
      `--players=${PLAYERS}`,
      '--duration=6s',
      `--data-dir=${data.dir}`,
      `--namespace=${randomNamespace()}`,
      '--grace=700ms',
      '--interval=1s',
      '--seed=11',
      `--report=${reportFile}`,
    ],
    env,
  );
  const output = `${run.stdout}\n${run.stderr}`;
  expect(run.code, output).toBe(0);
  return { summary: JSON.parse(readFileSync(reportFile, 'utf8')) as ClusterSummary, output };
}

function expectClean(summary: ClusterSummary, output: string) {
  expect(summary, output).toMatchObject({
    ok: true,
    nodes: 3,
    liveOnTwoNodes: 0,
    checked: PLAYERS,
    differences: 0,
    missingPurchases: 0,
    botErrors: 0,
    serverExitCodes: [0, 0, 0],
  });
  // Without handoffs and play, zero overlaps and zero differences would prove nothing.
  expect(summary.handoffs, output).toBeGreaterThan(0);
  expect(summary.sessions).toBeGreaterThan(PLAYERS);
  expect(summary.actions).toBeGreaterThan(PLAYERS);
  expect(summary.handoffP99Ms).toBeTypeOf('number');
  expect(output).toContain('players live on two nodes at once: 0');
}

describe('pnpm demo --nodes 3, end to end', () => {
  it('on PostgreSQL with the PostgreSQL presence', async () => {
    const env = storeEnv('postgres', 'cluster demo on postgres');
    if (env === null) return;
    const { summary, output } = await cluster('postgres', env);
    expectClean(summary, output);
    expect(summary.presence).toBe('postgres');
  });

  it('on PostgreSQL with the Redis presence', async () => {
    const env = storeEnv('postgres', 'cluster demo with redis presence');
    const redis = storeEnv('redis', 'cluster demo with redis presence');
    if (env === null || redis === null) return;
    const { summary, output } = await cluster('redis', { ...env, REDIS_URL: redis.REDIS_URL });
    expectClean(summary, output);
    expect(summary.presence).toBe('redis');
  });
});

describe('overlapping', () => {
  const life = (event: 'start' | 'end', node: string, n: number, at: number): LifeLine => ({
    event,
    node,
    userId: 'u1',
    life: n,
    at,
  });

  it('finds a player live on two servers at once, and not one handed over in turn', () => {
    const handedOver = [life('start', 'a', 1, 10), life('end', 'a', 1, 20), life('start', 'b', 1, 21)];
    expect(overlapping(handedOver)).toEqual([]);
    const both = [life('start', 'a', 1, 10), life('start', 'b', 1, 15), life('end', 'a', 1, 20)];
    expect(overlapping(both)).toEqual(['u1: on a and b for 5.0 ms']);
    // A session never ended (its server still running at the end) overlaps any later one.
    expect(overlapping([life('start', 'a', 1, 10), life('start', 'b', 1, 30)])).toHaveLength(1);
  });
});
