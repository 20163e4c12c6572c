import { randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { Cluster, Redis } from 'ioredis';
import { inject } from 'vitest';

/** The standalone server's URL, or null after a loud warning when redis-server is not installed. */
export function standaloneUrl(): string | null {
  const url = inject('redisUrl');
  if (!url) warnMissing('standalone Redis');
  return url;
}

/** The Cluster's `redis+cluster://` URL, or null after a loud warning when it could not be started. */
export function clusterUrl(): string | null {
  const url = inject('redisClusterUrl');
  if (!url) warnMissing('Redis Cluster');
  return url;
}

function warnMissing(what: string): void {
  console.warn(
    `\n!!! ${what} tests of @cagey-sessions/adapter-redis are SKIPPED: redis-server / redis-cli are not ` +
      'installed.\n!!! Install them with `bash tools/test-servers/install-servers.sh` (CI fails instead of skipping).\n',
  );
}

/** A fresh key prefix per test, so runs and tests never see each other's keys. */
export function randomPrefix(label = 't'): string {
  return `${label}_${randomBytes(5).toString('hex')}:`;
}

/** A raw client for reading what Redis really holds, independent of the adapter under test. */
export function rawClient(url: string): Redis | Cluster {
  if (url.startsWith('redis+cluster://')) {
    const nodes = url
      .slice('redis+cluster://'.length)
      .split(',')
      .map((node) => {
        const [host, port] = node.split(':');
        return { host: host!, port: Number(port) };
      });
    return new Cluster(nodes);
  }
  return new Redis(url);
}

/** The key layout, written out independently of the adapter's code: prefix + encodeURIComponent(user key). */
export function rawKey(prefix: string, userId: string | number): string {
  return prefix + encodeURIComponent(String(userId));
}

/**
 * Reads `<version>:<writeId>:<json>` or `<version>:<json>` (the layout, written out independently of the
 * adapter's code); undefined for a missing key or a tombstone.
 */
export async function readRaw(
  client: Redis | Cluster,
  key: string,
): Promise<{ userData: unknown; version: number } | undefined> {
  const value = await client.get(key);
  if (value === null) return undefined;
  const parsed = parseRaw(value);
  if (!parsed)
    throw new Error(`${key} does not hold a <version>:[<writeId>:]<json> value: ${value.slice(0, 40)}`);
  if (parsed.json === '') return undefined;
  return { userData: JSON.parse(parsed.json), version: parsed.version };
}

/** The write id stored with a user's record; undefined when the record has none (or is missing, or a tombstone). */
export async function rawWriteId(client: Redis | Cluster, key: string): Promise<string | undefined> {
  const value = await client.get(key);
  return value === null ? undefined : parseRaw(value)?.writeId;
}

function parseRaw(value: string): { version: number; writeId?: string; json: string } | undefined {
  const match = /^(\d+):(?:([A-Za-z0-9._-]{1,64}):(?=\{))?([\s\S]*)$/.exec(value);
  if (!match) return undefined;
  return {
    version: Number(match[1]),
    ...(match[2] === undefined ? {} : { writeId: match[2] }),
    json: match[3]!,
  };
}

/** The raw version stored at a key, tombstones included; undefined when the key does not exist. */
export async function rawVersion(client: Redis | Cluster, key: string): Promise<number | undefined> {
  const value = await client.get(key);
  return value === null ? undefined : Number(value.slice(0, value.indexOf(':')));
}

/**
 * A TCP endpoint on 127.0.0.1 whose behaviour a test switches: `refuse` (nothing listens: connections are
 * refused), `blackhole` (connections are accepted and never answered; they stay open) or `forward` (new
 * connections are piped to `target`). The port stays the same throughout.
 */
export class Endpoint {
  port = 0;
  /** Connections accepted so far, in any mode. */
  accepted = 0;
  #mode: 'refuse' | 'blackhole' | 'forward' = 'refuse';
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  #target: { host: string; port: number } | undefined;

  static async open(mode: 'refuse' | 'blackhole'): Promise<Endpoint> {
    const endpoint = new Endpoint();
    // Take a free port, then release it when the endpoint starts by refusing.
    await endpoint.#listen();
    if (mode === 'refuse') await endpoint.#unlisten();
    endpoint.#mode = mode;
    return endpoint;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async refuse(): Promise<void> {
    this.#mode = 'refuse';
    await this.#unlisten();
  }

  async blackhole(): Promise<void> {
    this.#mode = 'blackhole';
    await this.#listen();
  }

  /** New connections go to `target` (`redis://host:port`); connections already black-holed stay so. */
  async forward(target: string): Promise<void> {
    const { hostname, port } = new URL(target);
    this.#target = { host: hostname, port: Number(port) };
    this.#mode = 'forward';
    await this.#listen();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await this.#unlisten();
  }

  async #listen(): Promise<void> {
    if (this.#server) return;
    const server = createServer((socket) => {
      this.accepted++;
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
      if (this.#mode !== 'forward' || !this.#target) return;
      const upstream = connect(this.#target);
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  async #unlisten(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    // The port stops accepting at once; the server's close callback would wait for open connections.
    server.close();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Milliseconds `promise` takes to settle, and how it settled. */
export async function timed<T>(
  promise: Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown; rejected: boolean }> {
  const start = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - start, value, rejected: false };
  } catch (error) {
    return { ms: performance.now() - start, error, rejected: true };
  }
}
