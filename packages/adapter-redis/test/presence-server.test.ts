import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import type { PresenceMessage } from '@cagey-sessions/core';
import { type RunningServer, startRedis, startRedisCluster } from '@cagey-sessions/test-servers';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisPresence } from '../src/index.js';
import { clusterUrl, randomPrefix, standaloneUrl } from './helpers.js';

/** Sends `message` every 50 ms until `received` has it: a message published while a subscriber is away is lost. */
async function sendUntilReceived(
  sender: RedisPresence,
  nodeId: string,
  message: PresenceMessage,
  received: PresenceMessage[],
): Promise<void> {
  while (!received.some((m) => m.userId === message.userId)) {
    await sender.send(nodeId, message).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Calls `call` until it settles without an error (Redis is reconnecting meanwhile). */
async function once<T>(call: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

// A server of this file's own: password-protected, killed and restarted in the middle of a test.
describe.skipIf(!standaloneUrl())('RedisPresence against a server it can lose', () => {
  const password = `pw-${randomBytes(12).toString('hex')}`;
  let server: RunningServer;

  beforeAll(async () => {
    server = await startRedis({ password });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('while the server is down claims and renewals fail; after a restart messages arrive again and nodes re-join', async () => {
    const prefix = randomPrefix('srv');
    const owned = new RedisPresence({ url: server.url, prefix, connectTimeout: 500 });
    const injectedClient = new Redis(server.url);
    // The caller's client, the caller's listener: the presence adds none to it.
    injectedClient.on('error', () => {});
    const injected = new RedisPresence({ client: injectedClient, prefix });
    const toOwned: PresenceMessage[] = [];
    const toInjected: PresenceMessage[] = [];
    try {
      await owned.join('srv-a', 60_000, (m) => toOwned.push(m));
      await injected.join('srv-b', 60_000, (m) => toInjected.push(m));
      await owned.claim('before', 'srv-a');
      await sendUntilReceived(injected, 'srv-a', { type: 'release', userId: 'm0', from: 'srv-b' }, toOwned);

      await server.kill();
      await expect(owned.claim('during', 'srv-a')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      await expect(owned.renew('srv-a', 60_000)).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      await server.restart();

      // Without persistence the restarted server lost every lease: both incarnations are over.
      expect(await once(() => owned.renew('srv-a', 60_000))).toBe(false);
      expect(await once(() => injected.renew('srv-b', 60_000))).toBe(false);
      // Each message connection subscribed again by itself.
      await sendUntilReceived(injected, 'srv-a', { type: 'release', userId: 'm1', from: 'srv-b' }, toOwned);
      await sendUntilReceived(owned, 'srv-b', { type: 'released', userId: 'm2', from: 'srv-a' }, toInjected);
      expect(toOwned.map((m) => m.userId)).toEqual(expect.arrayContaining(['m0', 'm1']));

      await owned.join('srv-a', 60_000, (m) => toOwned.push(m));
      expect(await owned.claim('after', 'srv-a')).toEqual({ acquired: true });
      expect(await injected.locate('after')).toBe('srv-a');
    } finally {
      await owned.close();
      await injected.close();
      await injectedClient.quit();
    }
  });

  it('a wrong password appears nowhere in a presence error', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const presence = new RedisPresence({
      url: `redis://:${wrong}@127.0.0.1:${server.port}`,
      prefix: randomPrefix('pw'),
      connectTimeout: 1000,
    });
    try {
      const error = await presence.join('node', 60_000, () => {}).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'redis' });
      const text = `${inspect(error, { depth: Infinity, showHidden: true })}\n${JSON.stringify(error)}`;
      expect(text).not.toContain(wrong);
    } finally {
      await presence.close();
    }
  });
});

// A Cluster of this file's own, killed and restarted as a whole.
describe.skipIf(!clusterUrl())('RedisPresence against a Cluster it can lose', () => {
  let cluster: RunningServer & { nodes: readonly { host: string; port: number }[] };
  let url: string;

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    url = `redis+cluster://${cluster.nodes.map((node) => `${node.host}:${node.port}`).join(',')}`;
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('after every node was killed and restarted, messages arrive again and nodes re-join', async () => {
    const prefix = randomPrefix('csrv');
    const a = new RedisPresence({ url, prefix, connectTimeout: 500 });
    const b = new RedisPresence({ url, prefix, connectTimeout: 500 });
    const toA: PresenceMessage[] = [];
    const toB: PresenceMessage[] = [];
    try {
      await a.join('c-a', 60_000, (m) => toA.push(m));
      await b.join('c-b', 60_000, (m) => toB.push(m));
      await sendUntilReceived(b, 'c-a', { type: 'release', userId: 'm0', from: 'c-b' }, toA);

      await cluster.kill();
      await expect(a.claim('during', 'c-a')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      await cluster.restart();

      expect(await once(() => a.renew('c-a', 60_000))).toBe(false);
      // The message connection (a Cluster's subscriber node) was lost and is chosen and subscribed again.
      await sendUntilReceived(b, 'c-a', { type: 'release', userId: 'm1', from: 'c-b' }, toA);
      await sendUntilReceived(a, 'c-b', { type: 'released', userId: 'm2', from: 'c-a' }, toB);
      await once(() => a.join('c-a', 60_000, (m) => toA.push(m)));
      expect(await once(() => a.claim('after', 'c-a'))).toEqual({ acquired: true });
      expect(await once(() => b.locate('after'))).toBe('c-a');
    } finally {
      await a.close();
      await b.close();
    }
  });
});
