import { type RedisServer, startRedis } from '@cagey-sessions/test-servers';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type FaultProxy, matchesText, startFaultProxy } from '../src/index.js';
import { serverInstalled, settledWithin } from './helpers.js';

describe.skipIf(!serverInstalled('redis'))('fault proxy in front of a real redis-server', () => {
  let server: RedisServer;
  let proxy: FaultProxy;
  let direct: Redis;
  const clients: Redis[] = [];

  function proxied(options: RedisOptions = {}): Redis {
    const client = new Redis(proxy.urlFor(server.url), { connectTimeout: 2_000, ...options });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    server = await startRedis();
    direct = new Redis(server.url, { maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    direct?.disconnect();
    await server?.stop();
  });

  beforeEach(async () => {
    proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.disconnect();
    await proxy.close();
  });

  it('a SET cut after its reply is applied, though a client that does not retry gets an error', async () => {
    const client = proxied({ retryStrategy: () => null, maxRetriesPerRequest: 0 });
    expect(await client.ping()).toBe('PONG');
    const cut = proxy.cutAfterReply({ request: matchesText('cut:set') });
    const outcome = await settledWithin(client.set('cut:set', 'unacknowledged'), 5_000);
    expect(outcome).toMatchObject({ error: expect.objectContaining({ message: 'Connection is closed.' }) });
    expect(await settledWithin(cut, 1_000)).toEqual({ value: undefined });
    expect(await direct.get('cut:set')).toBe('unacknowledged');
  });

  it('an EVAL cut after its reply is applied; the client gets an error, reconnects and reads the value', async () => {
    const client = proxied({ maxRetriesPerRequest: 0, retryStrategy: () => 20 });
    expect(await client.ping()).toBe('PONG');
    const script = "return redis.call('INCRBY', KEYS[1], ARGV[1]) -- cut:eval";
    const cut = proxy.cutAfterReply({ request: matchesText('cut:eval') });
    const outcome = await settledWithin(client.eval(script, 1, 'cut:eval', 5), 5_000);
    expect(outcome).toMatchObject({ error: expect.any(Error) });
    expect(await settledWithin(cut, 1_000)).toEqual({ value: undefined });
    expect(await direct.get('cut:eval')).toBe('5');
    expect(await settledWithin(client.get('cut:eval'), 5_000)).toEqual({ value: '5' });
  });

  it('with ioredis defaults the unacknowledged INCR is sent again after reconnecting, so it runs twice', async () => {
    const client = proxied();
    expect(await client.ping()).toBe('PONG');
    const cut = proxy.cutAfterReply({ request: matchesText('cut:incr') });
    expect(await settledWithin(client.incr('cut:incr'), 5_000)).toEqual({ value: 2 });
    expect(await settledWithin(cut, 1_000)).toEqual({ value: undefined });
    expect(await direct.get('cut:incr')).toBe('2');
  });

  it('with latency a command takes at least two delays; a black hole holds it until heal()', async () => {
    const client = proxied();
    expect(await client.ping()).toBe('PONG');
    proxy.setLatency(100);
    const started = performance.now();
    expect(await client.ping()).toBe('PONG');
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    proxy.setLatency(0);
    proxy.blackhole();
    const held = client.set('cut:held', 'later');
    expect(await settledWithin(held, 500)).toBe('pending');
    expect(await direct.get('cut:held')).toBeNull();
    proxy.heal();
    expect(await settledWithin(held, 5_000)).toEqual({ value: 'OK' });
  });
});
