/**
 * What the conformance suite cannot see of the Redis listing: a database shared with many other keys, keys of
 * a longer prefix under this one, a client `keyPrefix`, values of another layout, cursors across a Cluster.
 */
import type { ScannedUser } from '@cagey-sessions/core';
import { encodeCursor } from '@cagey-sessions/core/adapter-kit';
import { type Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { clusterUrl, randomPrefix, rawClient, rawKey, standaloneUrl } from './helpers.js';

async function listAll(adapter: RedisAdapter, limit?: number) {
  const users: ScannedUser[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await adapter.scan({ cursor, limit });
    users.push(...page.users);
    cursor = page.cursor;
    pages++;
  } while (cursor !== undefined);
  return { ids: [...new Set(users.map((user) => user.userId))].sort(), users, pages };
}

function scanTests(name: string, url: string) {
  describe(name, () => {
    let raw: Redis | Cluster;
    beforeAll(() => {
      raw = rawClient(url);
    });
    afterAll(async () => {
      await raw.quit();
    });

    it('finds its few users among 5,000 other keys, also with limit 1 (pages may be empty, the listing ends)', async () => {
      const prefix = randomPrefix('few');
      const crowd = randomPrefix('crowd');
      for (let i = 0; i < 5000; i += 500) {
        // One command per key: a Cluster pipeline must stay within one node.
        await Promise.all(Array.from({ length: 500 }, (_, j) => raw.set(`${crowd}${i + j}`, 'x')));
      }
      const adapter = new RedisAdapter({ url, prefix });
      try {
        await adapter.save(['a', 'b', 'c'].map((userId) => ({ userId, userData: { userId } })));
        expect((await listAll(adapter, 1)).ids).toEqual(['a', 'b', 'c']);
        expect((await listAll(adapter)).ids).toEqual(['a', 'b', 'c']);
      } finally {
        await adapter.close();
      }
    });

    it('skips keys of a longer prefix under its own and keys of another layout; a foreign value fails the page', async () => {
      const prefix = randomPrefix('outer');
      const adapter = new RedisAdapter({ url, prefix });
      const inner = new RedisAdapter({ url, prefix: `${prefix}inner:` });
      try {
        await adapter.save([{ userId: 'mine', userData: {} }]);
        await inner.save([{ userId: 'theirs', userData: {} }]);
        await raw.set(`${prefix}%zz`, '1:{}'); // no user key encodes to this
        expect((await listAll(adapter)).ids).toEqual(['mine']);
        await raw.set(rawKey(prefix, 'foreign'), 'not a cagey value');
        await expect(listAll(adapter)).rejects.toMatchObject({
          code: 'ADAPTER_ERROR',
          message: expect.stringMatching(/"foreign" holds a value this adapter did not write/),
        });
      } finally {
        await adapter.close();
        await inner.close();
      }
    });

    it('lists users of ids that need encoding, by their stored string form', async () => {
      const prefix = randomPrefix('ids');
      const adapter = new RedisAdapter({ url, prefix });
      const ids = ['a:b', 'glob*?[x]', '100%', 'ünï', 'lone \ud800 surrogate', 42];
      try {
        await adapter.save(ids.map((userId) => ({ userId, userData: { id: String(userId) } })));
        const { users } = await listAll(adapter, 2);
        expect(users.map((user) => user.userId).sort()).toEqual(ids.map(String).sort());
        for (const user of users) expect(user.userData).toEqual({ id: user.userId });
      } finally {
        await adapter.close();
      }
    });

    it('a cursor naming a node that is not a master (any more) fails with ADAPTER_ERROR: start again', async () => {
      const adapter = new RedisAdapter({ url, prefix: randomPrefix('gone') });
      try {
        await adapter.save([{ userId: 'a', userData: {} }]);
        const cursor = encodeCursor('redis', ['10.255.255.1:6379', '12', []]);
        await expect(adapter.scan({ cursor })).rejects.toMatchObject({
          code: 'ADAPTER_ERROR',
          message: expect.stringMatching(/no longer a master .*Start the listing again without a cursor/),
        });
      } finally {
        await adapter.close();
      }
    });

    it('pages through the users of every master with a cursor that says where it stands', async () => {
      const prefix = randomPrefix('spread');
      const adapter = new RedisAdapter({ url, prefix });
      const ids = Array.from({ length: 300 }, (_, i) => `u${i}`);
      try {
        await adapter.save(ids.map((userId) => ({ userId, userData: {} })));
        const { ids: listed, pages } = await listAll(adapter, 50);
        expect(listed).toEqual([...ids].sort());
        expect(pages).toBeGreaterThanOrEqual(6);
      } finally {
        await adapter.close();
      }
    });
  });
}

const standalone = standaloneUrl();
const cluster = clusterUrl();

if (standalone) {
  scanTests('scan (standalone server)', standalone);

  it('scan works through a client with an ioredis keyPrefix, which SCAN patterns do not get by themselves', async () => {
    const client = new Redis(standalone, { keyPrefix: 'app*1:' });
    const prefix = randomPrefix('kp');
    const adapter = new RedisAdapter({ client, prefix });
    const plain = new RedisAdapter({ url: standalone, prefix });
    try {
      await adapter.save([{ userId: 'inside', userData: { n: 1 } }]);
      await plain.save([{ userId: 'outside', userData: { n: 2 } }]); // same prefix, without the client's keyPrefix
      expect((await listAll(adapter)).users).toEqual([{ userId: 'inside', userData: { n: 1 }, version: 1 }]);
      expect((await listAll(plain)).users).toEqual([{ userId: 'outside', userData: { n: 2 }, version: 1 }]);
    } finally {
      await adapter.close();
      await plain.close();
      await client.quit();
    }
  });
} else {
  describe('scan (standalone server)', () => it.skip('redis-server is not installed', () => {}));
}

if (cluster) scanTests('scan (3-master Cluster)', cluster);
else describe('scan (3-master Cluster)', () => it.skip('redis-server is not installed', () => {}));
