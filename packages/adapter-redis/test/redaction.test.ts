import { inspect } from 'node:util';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RedisAdapter } from '../src/index.js';

// Driver errors that quote a password outside the places redaction knows by itself (URL credentials, AUTH
// arguments, password-named properties): only the adapter's own list of passwords can remove it. No server.
const secret = 'Sw0rdf1sh:/@ 42';
const encoded = encodeURIComponent(secret);

type UrlOptions = () => { url: string; clientOptions?: RedisOptions | ClusterOptions };

/** A driver error quoting the password in its message, in a property and in a nested object. */
function quotingError(): Error {
  return Object.assign(new Error(`ERR something went wrong near "${secret}"`), {
    detail: `while sending ${encoded}`,
    context: { previous: [{ text: `last input: ${secret}` }] },
  });
}

function expectClean(error: unknown): void {
  expect(error).toMatchObject({ adapter: 'redis' });
  const text = `${inspect(error, { depth: Infinity, showHidden: true })}\n${JSON.stringify(error)}`;
  expect(text).toContain('something went wrong');
  expect(text).not.toContain(secret);
  expect(text).not.toContain(encoded);
}

/** Every call of the adapter, with the client's methods failing with `quotingError()`. */
async function errorsOfEveryCall(adapter: RedisAdapter): Promise<unknown[]> {
  const client = adapter.client as Redis;
  vi.spyOn(client, 'get').mockRejectedValue(quotingError());
  vi.spyOn(client, 'evalsha').mockRejectedValue(quotingError());
  vi.spyOn(client, 'script').mockRejectedValue(quotingError());
  return Promise.all([
    adapter.setup().catch((error: unknown) => error),
    adapter.load('x').catch((error: unknown) => error),
    adapter.save([{ userId: 'x', userData: {} }]).catch((error: unknown) => error),
    adapter.delete('x').catch((error: unknown) => error),
  ]);
}

describe('the passwords the adapter knows are removed from every error it reports', () => {
  const adapters: RedisAdapter[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(adapters.splice(0).map((adapter) => adapter.close()));
  });

  /** An owned client that counts as connected, so calls reach the (mocked) driver. */
  function owned(options: ConstructorParameters<typeof RedisAdapter>[0]): RedisAdapter {
    const adapter = new RedisAdapter(options);
    adapters.push(adapter);
    vi.spyOn(adapter.client, 'status', 'get').mockReturnValue('ready');
    return adapter;
  }

  it.each<[string, UrlOptions]>([
    ['a redis:// url', () => ({ url: `redis://:${encoded}@127.0.0.1:1` })],
    ['a rediss:// url', () => ({ url: `rediss://user:${encoded}@127.0.0.1:1` })],
    ['clientOptions.password', () => ({ url: 'redis://127.0.0.1:1', clientOptions: { password: secret } })],
  ])('of %s', async (_, options) => {
    const adapter = owned({ ...options(), clientOptions: { lazyConnect: true, ...options().clientOptions } });
    for (const error of await errorsOfEveryCall(adapter)) expectClean(error);
  });

  it.each<[string, UrlOptions]>([
    ['a redis+cluster:// url', () => ({ url: `redis+cluster://user:${encoded}@127.0.0.1:1` })],
    [
      'clientOptions.redisOptions.password of a cluster url',
      () => ({ url: 'redis+cluster://127.0.0.1:1', clientOptions: { redisOptions: { password: secret } } }),
    ],
  ])('of %s', async (_, options) => {
    const adapter = owned({ ...options(), clientOptions: { lazyConnect: true, ...options().clientOptions } });
    vi.spyOn(adapter.client as Cluster, 'get').mockRejectedValue(quotingError());
    expectClean(await adapter.load('x').catch((error: unknown) => error));
  });

  it("of an injected client's options", async () => {
    const client = new Redis({ lazyConnect: true, password: secret });
    const adapter = new RedisAdapter({ client });
    adapters.push(adapter);
    for (const error of await errorsOfEveryCall(adapter)) expectClean(error);
    client.disconnect();
  });

  it("of an injected Cluster's startup nodes and redisOptions", async () => {
    for (const client of [
      // ioredis merges a startup node's own options (here a password) into its connection's.
      new Cluster([{ host: '127.0.0.1', port: 1, password: secret } as { host: string; port: number }], {
        lazyConnect: true,
      }),
      new Cluster([{ host: '127.0.0.1', port: 1 }], {
        lazyConnect: true,
        redisOptions: { password: secret },
      }),
    ]) {
      const adapter = new RedisAdapter({ client });
      adapters.push(adapter);
      vi.spyOn(client, 'get').mockRejectedValue(quotingError());
      expectClean(await adapter.load('x').catch((error: unknown) => error));
      client.disconnect();
    }
  });

  it('in the connection error a call reports when Redis refuses the connection', async () => {
    const adapter = new RedisAdapter({ url: `redis://:${encoded}@127.0.0.1:1`, connectTimeout: '5s' });
    adapters.push(adapter);
    const waiting = adapter.load('x').catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 20));
    adapter.client.emit('error', Object.assign(quotingError(), { name: 'ReplyError' }));
    const error = await waiting;
    expectClean(error);
    expect((error as Error).message).toContain('Redis refused the connection');
  });
});
