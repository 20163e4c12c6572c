import { AdapterError, type Duration } from '@cagey-sessions/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { clusterUrl, Endpoint, randomPrefix, standaloneUrl, timed } from './helpers.js';

const standalone = standaloneUrl();
const cluster = clusterUrl();

/** The three calls a game makes, all at once; each settles with how long it took. */
function calls(adapter: RedisAdapter) {
  return Promise.all([
    timed(adapter.setup()),
    timed(adapter.load('player')),
    timed(adapter.save([{ userId: 'player', userData: { gold: 1 } }])),
  ]);
}

function expectAllFailedWithin(results: Awaited<ReturnType<typeof calls>>, maxMs: number): void {
  for (const result of results) {
    expect(result.rejected).toBe(true);
    expect(result.error).toBeInstanceOf(AdapterError);
    expect(result.error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'redis' });
    expect(result.ms).toBeLessThan(maxMs);
  }
}

/** Counts the client's connection attempts from now on. */
function countAttempts(adapter: RedisAdapter): { readonly count: number } {
  const counter = { count: 0 };
  adapter.client.on('connecting', () => counter.count++);
  adapter.client.on('reconnecting', () => counter.count++);
  return counter;
}

describe.skipIf(!standalone)('an adapter-owned client when Redis is unreachable', () => {
  const endpoints: Endpoint[] = [];
  const adapters: RedisAdapter[] = [];

  async function endpoint(mode: 'refuse' | 'blackhole'): Promise<Endpoint> {
    const opened = await Endpoint.open(mode);
    endpoints.push(opened);
    return opened;
  }

  function adapter(url: string, connectTimeout?: Duration): RedisAdapter {
    const created = new RedisAdapter({
      url,
      prefix: randomPrefix('down'),
      ...(connectTimeout === undefined ? {} : { connectTimeout }),
    });
    adapters.push(created);
    return created;
  }

  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close()));
    await Promise.all(endpoints.splice(0).map((e) => e.close()));
  });

  it('fails setup(), load() and save() within connectTimeout when nothing listens, and works once Redis is up', async () => {
    const down = await endpoint('refuse');
    const a = adapter(down.url, '1s');
    const results = await calls(a);
    expectAllFailedWithin(results, 2500);
    expect((results[1]!.error as Error).message).toMatch(/no connection to Redis within 1000 ms/);
    expect((results[1]!.error as Error).message).toContain('ECONNREFUSED');

    await down.forward(standalone!);
    await vi.waitFor(() => expect(a.client.status).toBe('ready'), { timeout: 10_000, interval: 20 });
    await a.setup();
    expect(await a.save([{ userId: 'player', userData: { gold: 2 } }])).toEqual([
      { status: 'ok', version: 1 },
    ]);
    expect(await a.load('player')).toEqual({ userData: { gold: 2 }, version: 1 });
  });

  it('fails within connectTimeout against a server that accepts and never answers, and recovers when it answers', async () => {
    const hole = await endpoint('blackhole');
    const a = adapter(hole.url, 800);
    const results = await calls(a);
    expectAllFailedWithin(results, 2000);
    expect(hole.accepted).toBeGreaterThan(0);

    // The stuck connection stays open on the other side: the client must drop it by itself and reconnect.
    await hole.forward(standalone!);
    await vi.waitFor(() => expect(a.client.status).toBe('ready'), { timeout: 10_000, interval: 20 });
    expect(await a.save([{ userId: 'player', userData: { gold: 3 } }])).toEqual([
      { status: 'ok', version: 1 },
    ]);
    expect(await a.load('player')).toEqual({ userData: { gold: 3 }, version: 1 });
  });

  it('keeps reconnecting in the background while calls fail', async () => {
    const down = await endpoint('refuse');
    const a = adapter(down.url, '300ms');
    const attempts = countAttempts(a);
    await calls(a);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(attempts.count).toBeGreaterThan(2);
    // Still failing fast, call after call.
    expectAllFailedWithin(await calls(a), 1500);
  });

  it('a call issued while the client reconnects waits for the connection instead of failing', async () => {
    const down = await endpoint('refuse');
    const a = adapter(down.url, '5s');
    await vi.waitFor(() => expect(a.client.status).toBe('reconnecting'), { timeout: 5000, interval: 10 });
    const load = timed(a.load('player'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await down.forward(standalone!);
    const result = await load;
    expect(result.rejected).toBe(false);
    expect(result.value).toBeUndefined();
  });

  it('fails within the default connectTimeout of 5 s against a black hole', async () => {
    const hole = await endpoint('blackhole');
    const a = adapter(hole.url);
    expect(a.connectTimeoutMs).toBe(5000);
    const results = await calls(a);
    expectAllFailedWithin(results, 6500);
    for (const result of results) expect(result.ms).toBeGreaterThan(4500);
  });

  describe('close()', () => {
    it.each([
      ['nothing listens (the client is waiting to reconnect)', 'refuse', 'reconnecting'],
      ['the server accepts and never answers (the handshake hangs)', 'blackhole', 'connect'],
    ] as const)('returns at once when %s, and the client stops reconnecting', async (_, mode, status) => {
      const down = await endpoint(mode);
      const a = adapter(down.url, '5s');
      await vi.waitFor(() => expect(a.client.status).toBe(status), { timeout: 5000, interval: 5 });
      const attempts = countAttempts(a);
      const accepted = down.accepted;
      const closed = await timed(a.close());
      expect(closed.rejected).toBe(false);
      expect(closed.ms).toBeLessThan(200);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(attempts.count).toBe(0);
      expect(down.accepted).toBe(accepted);
    });

    it('fails calls still waiting for the connection with ADAPTER_CLOSED at once', async () => {
      const down = await endpoint('refuse');
      const a = adapter(down.url, '10s');
      const waiting = timed(a.load('player'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      await a.close();
      const result = await waiting;
      expect(result.error).toMatchObject({ code: 'ADAPTER_CLOSED' });
      expect(result.ms).toBeLessThan(500);
    });

    it('still lets a connected client finish what is in flight', async () => {
      const a = adapter(standalone!);
      await a.setup();
      const saving = a.save(
        Array.from({ length: 200 }, (_, i) => ({ userId: `u${i}`, userData: { i }, expectedVersion: 0 })),
      );
      await new Promise((resolve) => setImmediate(resolve));
      await a.close();
      const results = await saving;
      expect(results.every((r) => r.status === 'ok')).toBe(true);
      expect(a.client.status).toBe('end');
    });
  });
});

describe.skipIf(!cluster)('an adapter-owned Cluster client when Redis is unreachable', () => {
  const endpoints: Endpoint[] = [];
  const adapters: RedisAdapter[] = [];

  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.close()));
    await Promise.all(endpoints.splice(0).map((e) => e.close()));
  });

  async function setupDown(mode: 'refuse' | 'blackhole', connectTimeout: Duration) {
    const down = await Endpoint.open(mode);
    endpoints.push(down);
    const a = new RedisAdapter({
      url: `redis+cluster://127.0.0.1:${down.port}`,
      prefix: randomPrefix('cdown'),
      connectTimeout,
    });
    adapters.push(a);
    return { down, a };
  }

  it('fails setup(), load() and save() within connectTimeout when no seed answers, and works once one does', async () => {
    const { down, a } = await setupDown('refuse', '1s');
    expectAllFailedWithin(await calls(a), 2500);
    // The seed leads the client to every master of the running Cluster.
    const seed = cluster!.slice('redis+cluster://'.length).split(',')[0]!;
    await down.forward(`redis://${seed}`);
    await vi.waitFor(() => expect(a.client.status).toBe('ready'), { timeout: 10_000, interval: 20 });
    await a.setup();
    const users = Array.from({ length: 30 }, (_, i) => `player${i}`);
    const saved = await a.save(users.map((userId) => ({ userId, userData: { gold: 1 } })));
    expect(saved.every((r) => r.status === 'ok')).toBe(true);
    expect(await a.load('player7')).toEqual({ userData: { gold: 1 }, version: 1 });
  });

  it('fails within connectTimeout when the seed accepts and never answers', async () => {
    const { a } = await setupDown('blackhole', '1s');
    expectAllFailedWithin(await calls(a), 2500);
  });

  it('close() returns at once while the Cluster client cannot connect', async () => {
    const { a } = await setupDown('refuse', '5s');
    await vi.waitFor(() => expect(['reconnecting', 'connecting']).toContain(a.client.status), {
      timeout: 5000,
      interval: 5,
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = await timed(a.close());
    expect(closed.ms).toBeLessThan(200);
    const attempts = countAttempts(a);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(attempts.count).toBe(0);
  });
});
