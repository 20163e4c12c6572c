import type { Duration } from '@cagey-sessions/core';
import type { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { clusterUrl, randomPrefix, rawClient, readRaw } from './helpers.js';

const url = clusterUrl();

describe.skipIf(!url)('RedisAdapter on a 3-master Redis Cluster', () => {
  let raw: Cluster;
  const adapters: RedisAdapter[] = [];

  function adapter(options: { prefix?: string; ttl?: Duration } = {}): RedisAdapter {
    const created = new RedisAdapter({ url: url!, prefix: randomPrefix('c'), ...options });
    adapters.push(created);
    return created;
  }

  async function keysPerMaster(prefix: string): Promise<number[]> {
    return Promise.all(raw.nodes('master').map(async (node) => (await node.keys(`${prefix}*`)).length));
  }

  beforeAll(async () => {
    raw = rawClient(url!) as Cluster;
    await raw.ping();
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close()));
  });
  afterAll(async () => {
    await raw.quit();
  });

  it('opens a Cluster client from a redis+cluster:// url', () => {
    expect(adapter().isCluster).toBe(true);
  });

  it('writes a 10,000-record batch in one pipeline per master, keys spread over every master', async () => {
    const client = rawClient(url!) as Cluster;
    const a = new RedisAdapter({ client, prefix: randomPrefix('big') });
    try {
      await a.setup();
      const pipelines = vi.spyOn(client, 'pipeline');
      const records = Array.from({ length: 10_000 }, (_, i) => ({
        userId: `player-${i}`,
        userData: { i, name: `Player ${i}` },
        expectedVersion: 0,
      }));
      const first = await a.save(records);
      expect(first.filter((r) => r.status === 'ok' && r.version === 1)).toHaveLength(10_000);
      expect(pipelines).toHaveBeenCalledTimes(3);

      const perMaster = await keysPerMaster(a.prefix);
      expect(perMaster).toHaveLength(3);
      expect(perMaster.every((count) => count > 2000)).toBe(true);
      expect(perMaster.reduce((sum, count) => sum + count, 0)).toBe(10_000);

      const second = await a.save(
        records.map((r) => ({ ...r, userData: { i: r.userData.i }, expectedVersion: 1 })),
      );
      expect(second.every((r) => r.status === 'ok' && r.version === 2)).toBe(true);
      for (const i of [0, 4321, 9999]) {
        expect(await readRaw(raw, a.keyFor(`player-${i}`))).toEqual({ userData: { i }, version: 2 });
      }
    } finally {
      await a.close();
      await client.quit();
    }
  });

  it('reports a conflict on one node without failing records on the other nodes', async () => {
    const a = adapter();
    await a.save([{ userId: 'taken', userData: { n: 1 } }]);
    const users = Array.from({ length: 300 }, (_, i) => `u${i}`);
    const results = await a.save([
      ...users.map((userId) => ({ userId, userData: {}, expectedVersion: 0 })),
      { userId: 'taken', userData: { n: 2 }, expectedVersion: 0 },
    ]);
    expect(results.slice(0, 300).every((r) => r.status === 'ok')).toBe(true);
    expect(results[300]).toEqual({ status: 'conflict', currentVersion: 1 });
    expect(await readRaw(raw, a.keyFor('taken'))).toEqual({ userData: { n: 1 }, version: 1 });
  });

  it('stores write ids, reports them in conflicts and reads the layout without them, on every node', async () => {
    const a = adapter();
    const users = Array.from({ length: 60 }, (_, i) => `w${i}`);
    // Half the users hold values written before write ids existed.
    await Promise.all(
      users
        .filter((_, i) => i % 2 === 1)
        .map((userId, i) => raw.set(a.keyFor(userId), `${i + 2}:{"old":${i}}`)),
    );
    const oldVersions = new Map(users.filter((_, i) => i % 2 === 1).map((userId, i) => [userId, i + 2]));
    const first = await a.save(
      users.map((userId) => ({
        userId,
        userData: { n: 1 },
        expectedVersion: oldVersions.get(userId) ?? 0,
        writeId: `first-${userId}`,
      })),
    );
    expect(first).toEqual(
      users.map((userId) => ({ status: 'ok', version: (oldVersions.get(userId) ?? 0) + 1 })),
    );
    const stale = await a.save(
      users.map((userId) => ({ userId, userData: { n: 2 }, expectedVersion: 0, writeId: `stale-${userId}` })),
    );
    expect(stale).toStrictEqual(
      users.map((userId) => ({
        status: 'conflict',
        currentVersion: (oldVersions.get(userId) ?? 0) + 1,
        currentWriteId: `first-${userId}`,
      })),
    );
    const perMaster = await keysPerMaster(a.prefix);
    expect(perMaster.filter((count) => count > 0)).toHaveLength(3);
    expect(await raw.get(a.keyFor('w1'))).toBe('3:first-w1:{"n":1}');
    expect(await a.load('w1')).toEqual({ userData: { n: 1 }, version: 3 });
  });

  it('reloads scripts transparently after SCRIPT FLUSH on every master', async () => {
    const a = adapter();
    await a.setup();
    const users = Array.from({ length: 500 }, (_, i) => `user${i}`);
    await a.save(users.map((userId) => ({ userId, userData: { round: 1 } })));
    await Promise.all(raw.nodes('master').map((node) => node.script('FLUSH')));
    const second = await a.save(
      users.map((userId) => ({ userId, userData: { round: 2 }, expectedVersion: 1 })),
    );
    expect(second).toEqual(users.map(() => ({ status: 'ok', version: 2 })));
    await Promise.all(raw.nodes('master').map((node) => node.script('FLUSH')));
    expect(await a.delete('user7', 2)).toBe(true);
    expect(await a.load('user7')).toBeUndefined();
    expect(await a.load('user8')).toEqual({ userData: { round: 2 }, version: 2 });
  });

  it('applies the ttl on every node', async () => {
    const a = adapter({ ttl: '10m' });
    const users = Array.from({ length: 50 }, (_, i) => `ttl${i}`);
    await a.save(users.map((userId) => ({ userId, userData: {} })));
    const ttls = await Promise.all(users.map((userId) => raw.pttl(a.keyFor(userId))));
    expect(ttls.every((ttl) => ttl > 500_000 && ttl <= 600_000)).toBe(true);
  });
});
