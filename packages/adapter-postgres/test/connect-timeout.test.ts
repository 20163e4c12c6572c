import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { newPool, randomTable, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: connect timeout');

/**
 * A TCP endpoint in front of the real server: as a black hole it accepts connections and never answers (a
 * firewall that drops packets after the handshake, a hung server); as a forwarder it passes bytes through.
 */
class Endpoint {
  mode: 'black hole' | 'forward';
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(mode: Endpoint['mode'], target: { host: string; port: number }) {
    this.mode = mode;
    this.#server = net.createServer((socket) => {
      this.#track(socket);
      if (this.mode === 'black hole') return;
      const upstream = net.connect(target);
      this.#track(upstream);
      socket.pipe(upstream).pipe(socket);
    });
  }

  static async listen(mode: Endpoint['mode'], target: string, port = 0): Promise<Endpoint> {
    const parsed = new URL(target);
    const endpoint = new Endpoint(mode, { host: parsed.hostname, port: Number(parsed.port) });
    endpoint.#server.listen(port, '127.0.0.1');
    await once(endpoint.#server, 'listening');
    return endpoint;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => this.#sockets.delete(socket));
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A port nobody listens on (bound once by us, then released). */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function withPort(target: string, port: number): string {
  const parsed = new URL(target);
  parsed.hostname = '127.0.0.1';
  parsed.port = String(port);
  return parsed.toString();
}

/** Settles `call` and reports how long it took. */
async function timed(call: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  let error: unknown;
  try {
    await call();
  } catch (caught) {
    error = caught;
  }
  return { ms: performance.now() - start, error };
}

describe.skipIf(url === null)('an adapter-owned pool to an unreachable server', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function table(): Promise<string> {
    const name = randomTable('ct');
    cleanup.push(async () => {
      const pool = newPool(url!);
      await pool.query(`DROP TABLE IF EXISTS "${name}"`);
      await pool.end();
    });
    return name;
  }

  function adapterFor(options: ConstructorParameters<typeof PostgresAdapter>[0]): PostgresAdapter {
    const adapter = new PostgresAdapter(options);
    cleanup.push(() => adapter.close());
    return adapter;
  }

  /** setup, load and save at once; each must fail with ADAPTER_ERROR within `withinMs`. */
  async function expectAllFail(adapter: PostgresAdapter, withinMs: number, atLeastMs = 0) {
    const outcomes = await Promise.all([
      timed(() => adapter.setup()),
      timed(() => adapter.load('u')),
      timed(() => adapter.save([{ userId: 'u', userData: { n: 1 } }])),
    ]);
    for (const { ms, error } of outcomes) {
      expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
      expect(ms).toBeLessThan(withinMs);
      expect(ms).toBeGreaterThanOrEqual(atLeastMs);
    }
    return outcomes.map(({ error }) => error as Error);
  }

  async function expectAllWork(adapter: PostgresAdapter) {
    await adapter.setup();
    expect(await adapter.save([{ userId: 'u', userData: { n: 2 } }])).toEqual([{ status: 'ok', version: 1 }]);
    expect(await adapter.load('u')).toEqual({ userData: { n: 2 }, version: 1 });
  }

  it('a port nobody listens on: setup, load and save fail at once; once the server is there, calls work', async () => {
    const port = await freePort();
    const adapter = adapterFor({ url: withPort(url!, port), table: await table() });
    const errors = await expectAllFail(adapter, 3000);
    for (const error of errors) expect(error.message).toMatch(/ECONNREFUSED/);

    const endpoint = await Endpoint.listen('forward', url!, port);
    cleanup.push(() => endpoint.close());
    await expectAllWork(adapter);
  });

  it('a black hole (accepts, never answers): calls fail after the default connectTimeout of 5 s; then the pool reconnects', async () => {
    const endpoint = await Endpoint.listen('black hole', url!);
    cleanup.push(() => endpoint.close());
    const adapter = adapterFor({ url: withPort(url!, endpoint.port), table: await table() });
    const errors = await expectAllFail(adapter, 8000, 4500);
    for (const error of errors) expect(error.message).toMatch(/timeout/i);

    endpoint.mode = 'forward';
    await expectAllWork(adapter);
  });

  it('connectTimeout takes an ms string; clientOptions.connectionTimeoutMillis wins over it', async () => {
    const endpoint = await Endpoint.listen('black hole', url!);
    cleanup.push(() => endpoint.close());
    const target = withPort(url!, endpoint.port);
    await expectAllFail(adapterFor({ url: target, table: await table(), connectTimeout: '1s' }), 3000, 900);
    await expectAllFail(adapterFor({ url: target, table: await table(), connectTimeout: 700 }), 2500, 600);
    await expectAllFail(
      adapterFor({
        url: target,
        table: await table(),
        connectTimeout: '1m',
        clientOptions: { connectionTimeoutMillis: 300 },
      }),
      2000,
    );
  });
});
