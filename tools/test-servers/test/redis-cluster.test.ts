import { existsSync } from 'node:fs';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canConnect, isPortFree, type RedisCluster, startRedisCluster } from '../src/index.js';
import { isGone, processState } from '../src/signals.js';
import { serverInstalled } from './helpers.js';

function clusterClient(server: RedisCluster): Cluster {
  return new Cluster([...server.nodes], {
    clusterRetryStrategy: () => null,
    redisOptions: { maxRetriesPerRequest: 1 },
  });
}

/** Slot ranges per master port, from the cluster's own view. */
async function slotOwners(server: RedisCluster): Promise<Map<number, [number, number][]>> {
  const direct = new Redis(server.nodes[0]!.port, '127.0.0.1', { lazyConnect: true });
  try {
    await direct.connect();
    const owners = new Map<number, [number, number][]>();
    for (const [from, to, master] of await direct.cluster('SLOTS')) {
      if (master) owners.set(master[1], [...(owners.get(master[1]) ?? []), [from, to]]);
    }
    return owners;
  } finally {
    direct.disconnect();
  }
}

/** One key whose slot is served by each master, found by asking the cluster (CLUSTER KEYSLOT). */
async function keyPerMaster(server: RedisCluster): Promise<Map<number, string>> {
  const owners = await slotOwners(server);
  const direct = new Redis(server.nodes[0]!.port, '127.0.0.1', { lazyConnect: true });
  const keys = new Map<number, string>();
  try {
    await direct.connect();
    for (let i = 0; i < 1_000 && keys.size < owners.size; i++) {
      const key = `key-${i}`;
      const slot = await direct.cluster('KEYSLOT', key);
      for (const [port, ranges] of owners) {
        if (!keys.has(port) && ranges.some(([from, to]) => slot >= from && slot <= to)) keys.set(port, key);
      }
    }
  } finally {
    direct.disconnect();
  }
  return keys;
}

describe.skipIf(!serverInstalled('redis-cluster'))('startRedisCluster', () => {
  let server: RedisCluster;

  beforeAll(async () => {
    server = await startRedisCluster({ masters: 3 });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('starts three masters on distinct loopback ports that split all 16384 slots', async () => {
    expect(server.nodes).toHaveLength(3);
    expect(new Set(server.nodes.map((node) => node.port)).size).toBe(3);
    expect(server.nodes.every((node) => node.host === '127.0.0.1')).toBe(true);
    expect(server.url).toBe(`redis://127.0.0.1:${server.nodes[0]!.port}`);
    const owners = await slotOwners(server);
    expect([...owners.keys()].sort()).toEqual(server.nodes.map((node) => node.port).sort());
    const covered = [...owners.values()].flat().reduce((sum, [from, to]) => sum + (to - from + 1), 0);
    expect(covered).toBe(16_384);
  });

  it('a key on each master is written and read through an ioredis Cluster client', async () => {
    const keys = await keyPerMaster(server);
    expect(keys.size).toBe(3);
    const cluster = clusterClient(server);
    try {
      for (const [port, key] of keys) await cluster.set(key, `on-${port}`);
      for (const [port, key] of keys) expect(await cluster.get(key)).toBe(`on-${port}`);
    } finally {
      cluster.disconnect();
    }
    // Each value really lives on the master that owns its slot.
    for (const [port, key] of keys) {
      const direct = new Redis(port, '127.0.0.1', { lazyConnect: true });
      try {
        await direct.connect();
        expect(await direct.get(key)).toBe(`on-${port}`);
      } finally {
        direct.disconnect();
      }
    }
  });

  it('restart() brings every node back on its port with the cluster formed again', async () => {
    const ports = server.nodes.map((node) => node.port);
    await server.restart();
    expect(server.nodes.map((node) => node.port)).toEqual(ports);
    const keys = await keyPerMaster(server);
    const cluster = clusterClient(server);
    try {
      for (const key of keys.values()) await cluster.set(key, 'after-restart');
      for (const key of keys.values()) expect(await cluster.get(key)).toBe('after-restart');
    } finally {
      cluster.disconnect();
    }
  });

  it.skipIf(process.platform !== 'linux')(
    'pause() stops every node until resume(); kill() SIGKILLs every node and restart() forms the cluster again',
    async () => {
      const pids = new Map<number, number>();
      for (const { port } of server.nodes) {
        const direct = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          await direct.connect();
          pids.set(port, Number((await direct.info('server')).match(/process_id:(\d+)/)?.[1]));
        } finally {
          direct.disconnect();
        }
      }
      await server.pause();
      try {
        expect([...pids.values()].map(processState)).toEqual(['T', 'T', 'T']);
      } finally {
        await server.resume();
      }
      expect([...pids.values()].some((pid) => processState(pid) === 'T')).toBe(false);

      await server.kill();
      expect([...pids.values()].every(isGone)).toBe(true);
      for (const { port } of server.nodes) expect(await canConnect(port)).toBe(false);
      await server.restart();
      const keys = await keyPerMaster(server);
      const cluster = clusterClient(server);
      try {
        for (const key of keys.values()) await cluster.set(key, 'after-kill');
        for (const key of keys.values()) expect(await cluster.get(key)).toBe('after-kill');
      } finally {
        cluster.disconnect();
      }
    },
  );
});

describe.skipIf(!serverInstalled('redis-cluster'))('startRedisCluster: options and stop()', () => {
  it('rejects fewer than three masters before starting anything', async () => {
    await expect(startRedisCluster({ masters: 2 })).rejects.toThrow(RangeError);
  });

  it('stop() frees every client and bus port and removes the directory', async () => {
    const server = await startRedisCluster({ masters: 3 });
    await Promise.all([server.stop(), server.stop()]);
    for (const { port } of server.nodes) {
      expect(await isPortFree(port)).toBe(true);
      expect(await isPortFree(port + 10_000)).toBe(true);
    }
    expect(existsSync(server.dir)).toBe(false);
  });
});
