import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canConnect, isPortFree, type RedisServer, startRedis } from '../src/index.js';
import { isGone, processState } from '../src/signals.js';
import { serverInstalled, settledWithin } from './helpers.js';

/**
 * A client that fails fast instead of retrying forever, so a broken server fails the test, not its timeout.
 * No ready check: without a password it would fail on INFO and close, hiding the NOAUTH reply under test.
 */
function client(url: string): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    lazyConnect: true,
    enableReadyCheck: false,
  });
  // Commands reject with their own errors; the connection-level event would only repeat them.
  redis.on('error', () => undefined);
  return redis;
}

async function withClient<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = client(url);
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

describe.skipIf(!serverInstalled('redis'))('startRedis', () => {
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('serves on loopback at the URL it returns, persistence off', async () => {
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(server.password).toBeUndefined();
    await withClient(server.url, async (redis) => {
      await redis.set('greeting', 'hello');
      expect(await redis.get('greeting')).toBe('hello');
      expect(await redis.config('GET', 'save')).toEqual(['save', '']);
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      expect(await redis.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
      expect(await redis.config('GET', 'dir')).toEqual(['dir', server.dir]);
    });
  });

  it('restart() comes back on the same port and serves commands', async () => {
    const port = server.port;
    await server.restart();
    expect(server.port).toBe(port);
    await withClient(server.url, async (redis) => {
      await redis.set('after-restart', '1');
      expect(await redis.get('after-restart')).toBe('1');
    });
  });

  it('an ioredis client that was connected reconnects after restart()', async () => {
    const redis = new Redis(server.url, {
      maxRetriesPerRequest: 5,
      retryStrategy: (times) => Math.min(times * 50, 500),
    });
    try {
      await redis.set('before', '1');
      await server.restart();
      await redis.set('after', '2');
      expect(await redis.get('after')).toBe('2');
    } finally {
      redis.disconnect();
    }
  });
});

describe.skipIf(!serverInstalled('redis'))('startRedis with a password', () => {
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis({ password: 'se cret"pw:/@' });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('requires the password, and the URL carries it', async () => {
    const url = new URL(server.url);
    expect(decodeURIComponent(url.password)).toBe('se cret"pw:/@');
    await withClient(server.url, async (redis) => {
      await redis.set('k', 'v');
      expect(await redis.get('k')).toBe('v');
    });
    const anonymous = `redis://127.0.0.1:${server.port}`;
    await expect(withClient(anonymous, (redis) => redis.get('k'))).rejects.toThrow(/NOAUTH/);
  });

  it('keeps requiring the password after restart()', async () => {
    await server.restart();
    await withClient(server.url, async (redis) => expect(await redis.ping()).toBe('PONG'));
    await expect(withClient(`redis://127.0.0.1:${server.port}`, (redis) => redis.ping())).rejects.toThrow(
      /NOAUTH/,
    );
  });
});

describe.skipIf(!serverInstalled('redis'))('startRedis: stop()', () => {
  it('frees the port, removes the directory, is idempotent, and refuses restart() afterwards', async () => {
    const server = await startRedis();
    expect(await canConnect(server.port)).toBe(true);
    expect(existsSync(server.dir)).toBe(true);

    await Promise.all([server.stop(), server.stop()]);
    await server.stop();

    expect(await canConnect(server.port)).toBe(false);
    expect(await isPortFree(server.port)).toBe(true);
    expect(existsSync(server.dir)).toBe(false);
    await expect(server.restart()).rejects.toThrow(/after stop/);
  });

  it('reports a startup failure with the server output instead of hanging', async () => {
    await expect(startRedis({ config: ['maxmemory lots'] })).rejects.toThrow(
      /exited during startup[\s\S]*maxmemory/,
    );
  });
});

describe.skipIf(!serverInstalled('redis'))('startRedis: kill(), pause(), resume() and appendOnly', () => {
  const servers: RedisServer[] = [];
  const clients: Redis[] = [];

  async function start(options: { appendOnly?: boolean } = {}): Promise<RedisServer> {
    const server = await startRedis(options);
    servers.push(server);
    return server;
  }

  /** A connected client that fails its commands fast instead of retrying. */
  async function connected(url: string): Promise<Redis> {
    const redis = client(url);
    clients.push(redis);
    await redis.connect();
    return redis;
  }

  afterEach(async () => {
    for (const redis of clients.splice(0)) redis.disconnect();
    await Promise.all(servers.splice(0).map((server) => server.stop()));
  });

  it('appendOnly: true writes every command to the append-only file before replying', async () => {
    const server = await start({ appendOnly: true });
    expect(server.appendOnly).toBe(true);
    const redis = await connected(server.url);
    expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await redis.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
    expect(await redis.config('GET', 'dir')).toEqual(['dir', server.dir]);
  });

  it('appendOnly: a key written just before kill() is there after restart()', async () => {
    const server = await start({ appendOnly: true });
    const redis = await connected(server.url);
    const pid = Number((await redis.info('server')).match(/process_id:(\d+)/)?.[1]);
    await redis.set('survivor', 'still here');
    await server.kill();
    expect(isGone(pid)).toBe(true);
    expect(await canConnect(server.port)).toBe(false);
    await expect(redis.get('survivor')).rejects.toThrow();

    await server.restart();
    const after = await connected(server.url);
    expect(await after.get('survivor')).toBe('still here');
  });

  it('without appendOnly the data is gone after kill() and restart()', async () => {
    const server = await start();
    expect(server.appendOnly).toBe(false);
    await (await connected(server.url)).set('lost', 'soon');
    await server.kill();
    await server.restart();
    expect(await (await connected(server.url)).get('lost')).toBeNull();
  });

  it.skipIf(process.platform !== 'linux')(
    'pause() stops the server: a command hangs until resume(), then completes',
    async () => {
      const server = await start();
      const redis = await connected(server.url);
      const pid = Number((await redis.info('server')).match(/process_id:(\d+)/)?.[1]);
      await server.pause();
      try {
        expect(processState(pid)).toBe('T');
        const pending = redis.set('paused', 'later');
        expect(await settledWithin(pending, 500)).toBe('pending');
        await server.resume();
        expect(await settledWithin(pending, 5_000)).toEqual({ value: 'OK' });
      } finally {
        await server.resume();
      }
      expect(processState(pid)).not.toBe('T');
      expect(await redis.get('paused')).toBe('later');
    },
  );

  it('kill() of a paused server works; stop() of a paused server is prompt', async () => {
    const server = await start();
    await server.pause();
    await server.kill();
    expect(await canConnect(server.port)).toBe(false);
    await server.restart();
    expect(await (await connected(server.url)).ping()).toBe('PONG');
    await server.pause();
    const started = Date.now();
    await server.stop();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(existsSync(server.dir)).toBe(false);
  });
});
