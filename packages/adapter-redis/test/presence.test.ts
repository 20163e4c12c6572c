import { randomBytes } from 'node:crypto';
import type { PresenceMessage } from '@cagey-sessions/core';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisPresence, type RedisPresenceCommonOptions } from '../src/index.js';
import { clusterUrl, randomPrefix, rawClient, standaloneUrl } from './helpers.js';

/** A user key's bucket, written out independently: 32-bit FNV-1a of the encoded key, mod 256, two hex digits. */
function bucket(encoded: string): string {
  let hash = 2166136261n;
  for (const character of encoded) {
    hash = ((hash ^ BigInt(character.charCodeAt(0))) * 16777619n) % 2n ** 32n;
  }
  return (hash % 256n).toString(16).padStart(2, '0');
}

/** The key layout, written out independently of the presence's code. */
const rawKeys = (prefix: string) => ({
  lease: (nodeId: string) => `${prefix}node:${encodeURIComponent(nodeId)}`,
  user: (userId: string) =>
    `${prefix}user:{${bucket(encodeURIComponent(userId))}}:${encodeURIComponent(userId)}`,
  channel: (nodeId: string) => `${prefix}messages:${encodeURIComponent(nodeId)}`,
});

const randomId = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;

/** Resolves once `condition` holds, checking every 20 ms; the test's timeout bounds the wait. */
async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** Clients subscribed to `channel`, over every node of a Cluster (a subscription lives on one node). */
async function subscribers(raw: Redis | Cluster, channel: string): Promise<number> {
  const nodes: Redis[] =
    'nodes' in raw && typeof raw.nodes === 'function' ? raw.nodes('all') : [raw as Redis];
  const counts = await Promise.all(
    nodes.map(async (node) => Number(((await node.pubsub('NUMSUB', channel)) as unknown[])[1])),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}

/** Messages a node received. */
function inbox(): { messages: PresenceMessage[]; onMessage: (message: PresenceMessage) => void } {
  const messages: PresenceMessage[] = [];
  return { messages, onMessage: (message) => messages.push(message) };
}

function presenceTests(label: string, url: string | null): void {
  describe.skipIf(!url)(`RedisPresence on ${label}`, () => {
    let raw: Redis | Cluster;
    let prefix: string;
    let keys: ReturnType<typeof rawKeys>;
    const opened: RedisPresence[] = [];

    /** A presence with its own connections, as one game-server process has. */
    function presence(options: RedisPresenceCommonOptions = {}): RedisPresence {
      const created = new RedisPresence({ url: url!, prefix, ...options });
      opened.push(created);
      return created;
    }

    beforeAll(async () => {
      raw = rawClient(url!);
      await raw.ping();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((p) => p.close()));
      prefix = randomPrefix('p');
      keys = rawKeys(prefix);
    });
    afterAll(async () => {
      await raw.quit();
    });
    prefix = randomPrefix('p');
    keys = rawKeys(prefix);

    it('join writes a lease holding a token with a TTL of Redis; claim of a free user stores <token>:<nodeId>', async () => {
      const p = presence();
      await p.join('game-1', 30_000, () => {});
      const token = await raw.get(keys.lease('game-1'));
      expect(token).toMatch(/^[0-9a-f]{32}$/);
      const pttl = await raw.pttl(keys.lease('game-1'));
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(30_000);

      expect(await p.claim('alice', 'game-1')).toEqual({ acquired: true });
      expect(await raw.get(keys.user('alice'))).toBe(`${token}:game-1`);
      // No expiry on a user record: it must never lapse while its node is alive.
      expect(await raw.pttl(keys.user('alice'))).toBe(-1);
      expect(await p.locate('alice')).toBe('game-1');
    });

    it('stores a user under the key the README shows: alice is in bucket e7', async () => {
      const p = presence();
      await p.join('game-1', 30_000, () => {});
      await p.claim('alice', 'game-1');
      expect(keys.user('alice')).toBe(`${prefix}user:{e7}:alice`);
      expect(await raw.exists(`${prefix}user:{e7}:alice`)).toBe(1);
    });

    it('a claim by the holding incarnation is acquired again and changes nothing', async () => {
      const p = presence();
      await p.join('game-1', 30_000, () => {});
      await p.claim('bob', 'game-1');
      const before = await raw.get(keys.user('bob'));
      expect(await p.claim('bob', 'game-1')).toEqual({ acquired: true });
      expect(await raw.get(keys.user('bob'))).toBe(before);
    });

    it('a user held under a live lease is refused to another node, naming the owner, record untouched', async () => {
      const a = presence();
      const b = presence();
      await a.join('node-a', 30_000, () => {});
      await b.join('node-b', 30_000, () => {});
      await a.claim('carol', 'node-a');
      const before = await raw.get(keys.user('carol'));
      expect(await b.claim('carol', 'node-b')).toEqual({ acquired: false, owner: 'node-a' });
      expect(await raw.get(keys.user('carol'))).toBe(before);
      expect(await b.locate('carol')).toBe('node-a');
    });

    it('of 8 presences claiming one free user at once, exactly one acquires it (20 rounds)', async () => {
      const nodes = Array.from({ length: 8 }, (_, i) => ({ id: `racer-${i}`, presence: presence() }));
      await Promise.all(nodes.map((n) => n.presence.join(n.id, 30_000, () => {})));
      for (let round = 0; round < 20; round++) {
        const userId = randomId('contested');
        const results = await Promise.all(nodes.map((n) => n.presence.claim(userId, n.id)));
        const winners = results.flatMap((r, i) => (r.acquired ? [nodes[i]!.id] : []));
        expect(winners).toHaveLength(1);
        for (const result of results) {
          if (!result.acquired) expect(result.owner).toBe(winners[0]);
        }
        expect((await raw.get(keys.user(userId)))?.endsWith(`:${winners[0]}`)).toBe(true);
      }
    });

    it('of 8 presences claiming a dead node’s user at once, exactly one takes it over (10 rounds)', async () => {
      const nodes = Array.from({ length: 8 }, (_, i) => ({ id: `heir-${i}`, presence: presence() }));
      await Promise.all(nodes.map((n) => n.presence.join(n.id, 30_000, () => {})));
      const dying = presence();
      for (let round = 0; round < 10; round++) {
        const deadNode = randomId('dead');
        const userId = randomId('orphan');
        await dying.join(deadNode, 30_000, () => {});
        await dying.claim(userId, deadNode);
        await raw.del(keys.lease(deadNode)); // the lease lapsed
        const results = await Promise.all(nodes.map((n) => n.presence.claim(userId, n.id)));
        const winners = results.filter((r) => r.acquired);
        expect(winners).toEqual([{ acquired: true, previousOwner: deadNode }]);
        const winner = nodes[results.findIndex((r) => r.acquired)]!.id;
        for (const result of results) if (!result.acquired) expect(result.owner).toBe(winner);
      }
    });

    it('after a lease expires: claim takes over with previousOwner, the old renew is false, its release deletes nothing', async () => {
      const old = presence();
      const heir = presence();
      await old.join('short', 300, () => {});
      await heir.join('heir', 30_000, () => {});
      await old.claim('dave', 'short');
      expect(await heir.claim('dave', 'heir')).toEqual({ acquired: false, owner: 'short' });

      await until(async () => (await raw.exists(keys.lease('short'))) === 0);
      expect(await heir.locate('dave')).toBeUndefined();
      expect(await heir.claim('dave', 'heir')).toEqual({ acquired: true, previousOwner: 'short' });
      expect(await old.renew('short', 300)).toBe(false);
      const held = await raw.get(keys.user('dave'));
      await old.release('short', ['dave']);
      expect(await raw.get(keys.user('dave'))).toBe(held);
      expect(await heir.locate('dave')).toBe('heir');
      // The expired node cannot claim until it joins again, and writes nothing meanwhile.
      await expect(old.claim('dave', 'short')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
      await expect(old.claim('fresh', 'short')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
      expect(await raw.exists(keys.user('fresh'))).toBe(0);
      expect(await raw.get(keys.user('dave'))).toBe(held);
    });

    it('renew extends a live lease on the server and is false for an unknown or left node', async () => {
      const p = presence();
      await p.join('renewing', 1000, () => {});
      expect(await p.renew('renewing', 60_000)).toBe(true);
      expect(await raw.pttl(keys.lease('renewing'))).toBeGreaterThan(1000);
      expect(await p.renew('never-joined', 60_000)).toBe(false);
      await p.leave('renewing');
      expect(await p.renew('renewing', 60_000)).toBe(false);
    });

    it('a re-join of the same nodeId is a new incarnation: the earlier one’s users are taken over from it', async () => {
      const p = presence();
      await p.join('game-7', 30_000, () => {});
      await p.claim('erin', 'game-7');
      const first = await raw.get(keys.lease('game-7'));
      await p.join('game-7', 30_000, () => {});
      expect(await raw.get(keys.lease('game-7'))).not.toBe(first);
      expect(await p.locate('erin')).toBeUndefined();
      expect(await p.claim('erin', 'game-7')).toEqual({ acquired: true, previousOwner: 'game-7' });
      expect(await p.claim('erin', 'game-7')).toEqual({ acquired: true });
    });

    it('a restarted process joining under the same nodeId takes its old users over; the old one’s renew is false', async () => {
      const before = presence();
      await before.join('game-8', 30_000, () => {});
      await before.claim('frank', 'game-8');
      const after = presence();
      await after.join('game-8', 30_000, () => {});
      expect(await after.claim('frank', 'game-8')).toEqual({ acquired: true, previousOwner: 'game-8' });
      expect(await before.renew('game-8', 30_000)).toBe(false);
      await before.release('game-8', ['frank']);
      expect(await after.locate('frank')).toBe('game-8');
    });

    it('release deletes only the records of the current incarnation among the ids, in a few script calls', async () => {
      const a = presence();
      const b = presence();
      await a.join('rel-a', 30_000, () => {});
      await b.join('rel-b', 30_000, () => {});
      const mine = Array.from({ length: 3000 }, (_, i) => `player-${i}`);
      await Promise.all(mine.map((userId) => a.claim(userId, 'rel-a')));
      await b.claim('theirs', 'rel-b');
      if ('nodes' in raw) {
        // The buckets spread the users over every master.
        const perMaster = await Promise.all(raw.nodes('master').map((n) => n.keys(`${prefix}user:*`)));
        expect(perMaster.map((k) => k.length).every((count) => count > 500)).toBe(true);
      }
      const evalsha = vi.spyOn(a.client, 'evalsha');
      await a.release('rel-a', [...mine, 'theirs', 'nobody', 'player-0']);
      // 500 users per script call; on a Cluster one call per bucket (a hash tag) at most, not one per slot.
      expect(evalsha.mock.calls.length).toBeLessThanOrEqual(a.isCluster ? 256 : 7);
      for (const userId of ['player-0', 'player-1234', 'player-2999']) {
        expect(await raw.exists(keys.user(userId))).toBe(0);
      }
      expect(await a.locate('player-17')).toBeUndefined();
      expect(await a.locate('theirs')).toBe('rel-b');
      await a.release('rel-a', []);
    });

    it('locate answers undefined for a free user and for a user of a node that left', async () => {
      const p = presence();
      await p.join('loc', 30_000, () => {});
      expect(await p.locate('ghost')).toBeUndefined();
      await p.claim('gina', 'loc');
      await p.leave('loc');
      expect(await raw.exists(keys.lease('loc'))).toBe(0);
      expect(await presence().locate('gina')).toBeUndefined();
      await p.leave('loc'); // idempotent
    });

    it('users of a node that left are taken over with previousOwner', async () => {
      const a = presence();
      const b = presence();
      await a.join('leaver', 30_000, () => {});
      await b.join('stayer', 30_000, () => {});
      await a.claim('hank', 'leaver');
      await a.leave('leaver');
      expect(await b.claim('hank', 'stayer')).toEqual({ acquired: true, previousOwner: 'leaver' });
    });

    it('leave deletes only its own incarnation’s lease, not the one of a later join elsewhere', async () => {
      const before = presence();
      const after = presence();
      await before.join('game-9', 30_000, () => {});
      await after.join('game-9', 30_000, () => {});
      const current = await raw.get(keys.lease('game-9'));
      await before.leave('game-9');
      expect(await raw.get(keys.lease('game-9'))).toBe(current);
      expect(await after.renew('game-9', 30_000)).toBe(true);
    });

    it('delivers a message to the addressed node only, as sent', async () => {
      const a = presence();
      const b = presence();
      const c = presence();
      const inA = inbox();
      const inB = inbox();
      const inC = inbox();
      await a.join('msg-a', 30_000, inA.onMessage);
      await b.join('msg-b', 30_000, inB.onMessage);
      await c.join('msg-c', 30_000, inC.onMessage);
      const release: PresenceMessage = { type: 'release', userId: 'ivy', from: 'msg-b' };
      await b.send('msg-a', release);
      await c.send('msg-b', { type: 'released', userId: 'ivy', from: 'msg-c' });
      await until(() => inA.messages.length === 1 && inB.messages.length === 1);
      // One more message to each, so anything misrouted above would have arrived before these.
      await a.send('msg-c', { type: 'released', userId: 'sync', from: 'msg-a' });
      await until(() => inC.messages.length === 1);
      expect(inA.messages).toEqual([release]);
      expect(inB.messages).toEqual([{ type: 'released', userId: 'ivy', from: 'msg-c' }]);
      expect(inC.messages).toEqual([{ type: 'released', userId: 'sync', from: 'msg-a' }]);
    });

    it('messages of one sender to one node arrive in the order sent (200 messages)', async () => {
      const sender = presence();
      const receiver = presence();
      const received = inbox();
      await sender.join('ord-a', 30_000, () => {});
      await receiver.join('ord-b', 30_000, received.onMessage);
      const ids = Array.from({ length: 200 }, (_, i) => `m${i}`);
      await Promise.all(
        ids.map((userId) => sender.send('ord-b', { type: 'release', userId, from: 'ord-a' })),
      );
      await until(() => received.messages.length === ids.length);
      expect(received.messages.map((m) => m.userId)).toEqual(ids);
    });

    it('two nodes joined through one presence each get their own messages; after leave a node gets none', async () => {
      const p = presence();
      const inOne = inbox();
      const inTwo = inbox();
      await p.join('one', 30_000, inOne.onMessage);
      await p.join('two', 30_000, inTwo.onMessage);
      await p.send('one', { type: 'release', userId: 'u1', from: 'two' });
      await p.send('two', { type: 'release', userId: 'u2', from: 'one' });
      await until(() => inOne.messages.length === 1 && inTwo.messages.length === 1);
      expect(inOne.messages[0]?.userId).toBe('u1');
      expect(inTwo.messages[0]?.userId).toBe('u2');

      await p.leave('one');
      await p.send('one', { type: 'release', userId: 'late', from: 'two' });
      await p.send('two', { type: 'release', userId: 'sync', from: 'one' });
      await until(() => inTwo.messages.length === 2);
      expect(inOne.messages).toHaveLength(1);
    });

    it('ignores malformed payloads, warning once per kind, and survives a listener that throws', async () => {
      const warnings: unknown[][] = [];
      const log = { warn: (...args: unknown[]) => warnings.push(args) };
      const p = presence({ log });
      const received: PresenceMessage[] = [];
      await p.join('picky', 30_000, (message) => {
        received.push(message);
        if (message.userId === 'explosive') throw new Error('listener bug');
      });
      const channel = keys.channel('picky');
      for (const payload of [
        'not json',
        'also { not json',
        '{"type":"steal"}',
        '[1,2]',
        '{"type":"release"}',
      ]) {
        await raw.publish(channel, payload);
      }
      await p.send('picky', { type: 'release', userId: 'explosive', from: 'x' });
      await p.send('picky', { type: 'release', userId: 'explosive', from: 'x' });
      await p.send('picky', { type: 'released', userId: 'fine', from: 'x' });
      await until(() => received.length === 3 && warnings.length === 3);
      // A Cluster relays messages published through different nodes in any order.
      expect(received.map((m) => m.userId).sort()).toEqual(['explosive', 'explosive', 'fine']);
      // Five bad payloads of two kinds and two throwing calls: one warning per kind.
      expect(warnings.map((args) => String(args[0])).sort()).toEqual([
        expect.stringContaining('not JSON'),
        expect.stringContaining('not a presence message'),
        expect.stringContaining('the onMessage listener threw'),
      ]);
      expect(warnings.find((args) => String(args[0]).includes('listener'))?.[1]).toBeInstanceOf(Error);
    });

    it('refuses invalid node ids, user ids, TTLs and messages with typed errors, sending nothing', async () => {
      const p = presence();
      await p.join('valid', 30_000, () => {});
      await expect(p.join('', 30_000, () => {})).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
      await expect(p.join('x'.repeat(129), 30_000, () => {})).rejects.toMatchObject({
        code: 'INVALID_OPTIONS',
      });
      await expect(p.join('bad\nid', 30_000, () => {})).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
      for (const ttl of [0, -1, 1.5, Number.NaN, '30s', 2 ** 31]) {
        await expect(p.join('valid', ttl as number, () => {})).rejects.toMatchObject({
          code: 'INVALID_OPTIONS',
        });
      }
      await expect(p.claim('', 'valid')).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
      await expect(p.claim('x'.repeat(513), 'valid')).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
      await expect(p.claim('ok', 'not-joined')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
      await expect(p.locate('')).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
      await expect(p.release('valid', [''])).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
      await expect(
        p.send('valid', { type: 'steal', userId: 'u', from: 'valid' } as unknown as PresenceMessage),
      ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
      await expect(
        p.send('valid', { type: 'release', userId: 5, from: 'valid' } as unknown as PresenceMessage),
      ).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
      await expect(
        p.send('valid', { type: 'release', userId: 'u', from: '' } as unknown as PresenceMessage),
      ).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
      expect(await raw.get(keys.lease('valid'))).toMatch(/^[0-9a-f]{32}$/);
    });

    it('a user record holding a foreign value is an ADAPTER_ERROR naming the user, and is left alone', async () => {
      const p = presence();
      await p.join('strict', 30_000, () => {});
      await raw.set(keys.user('weird'), 'something else');
      await expect(p.claim('weird', 'strict')).rejects.toMatchObject({
        code: 'ADAPTER_ERROR',
        message: expect.stringContaining('"weird"'),
      });
      await expect(p.locate('weird')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      expect(await raw.get(keys.user('weird'))).toBe('something else');
    });

    it('close() leaves an injected client open, closes its own message connection, and refuses later calls', async () => {
      const client = rawClient(url!);
      try {
        const p = new RedisPresence({ client, prefix });
        await p.join('injected', 30_000, () => {});
        expect(await subscribers(raw, keys.channel('injected'))).toBe(1);
        await p.claim('jill', 'injected');
        await p.close();
        await p.close(); // idempotent
        expect(await client.ping()).toBe('PONG');
        await expect(p.claim('jill', 'injected')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
        await expect(p.join('injected', 30_000, () => {})).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
        // Nobody listens on the node's channel any more: its message connection is closed.
        expect(await subscribers(raw, keys.channel('injected'))).toBe(0);
      } finally {
        await client.quit();
      }
    });

    it('close() of a presence opened from a url ends both of its connections', async () => {
      const p = presence();
      await p.join('owned', 30_000, () => {});
      expect(await subscribers(raw, keys.channel('owned'))).toBe(1);
      await p.close();
      // A Cluster client may stay at 'close' (no connection, no reconnection) instead of reaching 'end'.
      expect(['close', 'end']).toContain(p.client.status);
      expect(await subscribers(raw, keys.channel('owned'))).toBe(0);
    });
  });
}

presenceTests('a standalone server', standaloneUrl());
presenceTests('a 3-master Cluster', clusterUrl());
