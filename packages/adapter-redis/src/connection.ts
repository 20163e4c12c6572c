import { type ClientLifecycle, invalidOptions } from '@cagey-sessions/core/adapter-kit';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/** How long `close()` lets a connected client finish QUIT (replies still in flight arrive) before dropping it. */
const QUIT_TIMEOUT_MS = 2000;

/**
 * A call found no connection to Redis within `connectTimeout`. Its `cause` is the client's last connection
 * error, if any; the client keeps reconnecting.
 */
export class NotConnectedError extends Error {
  override name = 'NotConnectedError';
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Lets calls of an adapter-owned client wait for its connection, at most `timeoutMs`, instead of queueing
 * commands inside ioredis while Redis is unreachable (a Cluster client would keep them forever). A call that
 * gives up has sent nothing, so nothing of it can run later. One set of listeners serves every waiting call.
 */
export class ConnectionGate {
  readonly #client: Redis | Cluster;
  readonly #timeoutMs: number;
  readonly #waiters = new Set<Waiter>();
  #lastError: Error | undefined;
  #closed = false;

  constructor(client: Redis | Cluster, timeoutMs: number) {
    this.#client = client;
    this.#timeoutMs = timeoutMs;
    // The listener also keeps ioredis from printing every failed reconnection attempt.
    client.on('error', (error: Error) => {
      this.#lastError = error;
      // A server that refuses the credentials (or the database) will refuse them again: say so at once.
      if (isConfigurationError(error)) {
        this.#settle(
          new NotConnectedError(`Redis refused the connection: ${describe(error)}`, { cause: error }),
        );
      }
    });
    client.on('ready', () => {
      this.#lastError = undefined;
      this.#settle(undefined);
    });
    client.on('end', () => this.#settle(new Error('Connection is closed.')));
  }

  /** `undefined` when the client is ready (the common case costs no promise), else a wait for it. */
  ready(): Promise<void> | undefined {
    const status = this.#client.status;
    if (status === 'ready') return undefined;
    if (this.#closed || status === 'end') return Promise.reject(new Error('Connection is closed.'));
    if (status === 'wait') this.#client.connect().catch(noop);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(this.#timeoutError());
        }, this.#timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Fails every waiting call; later ones fail at once. */
  close(): void {
    this.#closed = true;
    this.#settle(new Error('Connection is closed.'));
  }

  #settle(error: Error | undefined): void {
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
    this.#waiters.clear();
  }

  #timeoutError(): NotConnectedError {
    const last = this.#lastError;
    return new NotConnectedError(
      `no connection to Redis within ${this.#timeoutMs} ms (connectTimeout; the client keeps reconnecting)` +
        (last === undefined ? '' : `; last error: ${describe(last)}`),
      last === undefined ? undefined : { cause: last },
    );
  }
}

/** An error's message, with the node's error a Cluster client reports behind its own. */
function describe(error: Error): string {
  const lastNode = (error as { lastNodeError?: unknown }).lastNodeError;
  return lastNode instanceof Error ? `${error.message} (${lastNode.message})` : error.message;
}

/**
 * An error reply to the connection handshake (wrong password, unknown user, no permission, a database that does
 * not exist): reconnecting will not help. Server states that pass (loading, busy, failover) are not.
 */
function isConfigurationError(error: Error): boolean {
  const reply = (error as { lastNodeError?: unknown }).lastNodeError ?? error;
  return (
    reply instanceof Error &&
    reply.name === 'ReplyError' &&
    !/^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b/.test(reply.message)
  );
}

/**
 * Closes a client the adapter opened. A connected client gets QUIT, so replies still in flight arrive (bounded
 * wait); a client that is not connected (reconnecting, connecting to a server that does not answer) is dropped
 * at once: its reconnection stops and its sockets are destroyed.
 */
/**
 * Throws ADAPTER_CLOSED after `close()`; waits (at most `connectTimeout`) until an owned client is connected,
 * at once when it is. A wait that `close()` cuts short fails with ADAPTER_CLOSED too.
 */
export async function whenReady(
  lifecycle: ClientLifecycle<Redis | Cluster>,
  gate: ConnectionGate | undefined,
  operation: string,
): Promise<void> {
  await lifecycle.client(operation);
  const waiting = gate?.ready();
  if (waiting === undefined) return;
  try {
    await waiting;
  } catch (error) {
    lifecycle.assertOpen(operation);
    throw error;
  }
}

export async function closeClient(client: Redis | Cluster): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    dropClient(client);
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, QUIT_TIMEOUT_MS);
  });
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  try {
    await Promise.race([client.quit().then(noop, noop), timeout]);
    // The status may have changed while QUIT was in flight.
    if ((client.status as string) !== 'end') dropClient(client);
    await Promise.race([ended, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stops reconnecting and destroys every socket of the client now, without waiting for the server. */
function dropClient(client: Redis | Cluster): void {
  const connections = isCluster(client) ? client.nodes('all') : [client];
  client.disconnect();
  for (const connection of connections) {
    if (connection !== client) connection.disconnect();
    const stream = (connection as { stream?: { destroyed?: boolean; destroy(): void } }).stream;
    if (stream && !stream.destroyed) stream.destroy();
  }
}

export function isCluster(client: Redis | Cluster): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true;
}

export function isIoredisClient(value: unknown): value is Redis | Cluster {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Redis).pipeline === 'function' &&
    typeof (value as Redis).evalsha === 'function' &&
    typeof (value as Redis).options === 'object'
  );
}

/**
 * ioredis settings of a client the adapter opens, so that an unreachable server makes calls fail within
 * `connectTimeoutMs` instead of waiting in ioredis' queues, while the client keeps reconnecting:
 * - `connectTimeout`: a TCP connection that is not established in time is dropped and retried;
 * - `socketTimeout`: a connection that stays silent while a reply is due (a server that accepts and never
 *   answers, even during the handshake; a peer gone without closing) is dropped and retried;
 * - `maxRetriesPerRequest: 0`: a command waiting for a connection, or unanswered when its connection dropped,
 *   fails at the next failed connection attempt instead of being sent again after up to 20 of them.
 * Settings the caller passes in `clientOptions` win.
 */
function connectionDefaults(connectTimeoutMs: number): RedisOptions {
  return { connectTimeout: connectTimeoutMs, socketTimeout: connectTimeoutMs, maxRetriesPerRequest: 0 };
}

/**
 * Opens a client for a URL whose scheme `clientOrUrl` checked. `redis://` and `rediss://` give a standalone
 * `Redis` (ioredis parses the URL); `redis+cluster://[user:password@]host1:port1,host2:port2` (or
 * `rediss+cluster://` for TLS) gives a `Cluster` seeded with those nodes. Error messages never repeat the URL:
 * it may hold a password.
 */
export function openClient(
  adapterName: string,
  url: string,
  clientOptions: RedisOptions | ClusterOptions | undefined,
  connectTimeoutMs: number,
): Redis | Cluster {
  const scheme = url.slice(0, url.indexOf('://')).toLowerCase();
  if (scheme === 'redis' || scheme === 'rediss') {
    try {
      return new Redis(url, {
        ...connectionDefaults(connectTimeoutMs),
        ...(clientOptions as RedisOptions | undefined),
      });
    } catch {
      throw invalidUrl(adapterName, 'ioredis could not parse it');
    }
  }
  const { nodes, username, password } = parseClusterUrl(adapterName, url.slice(scheme.length + 3));
  const options = { ...(clientOptions as ClusterOptions | undefined) };
  options.redisOptions = {
    ...connectionDefaults(connectTimeoutMs),
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(scheme === 'rediss+cluster' ? { tls: {} } : {}),
    ...options.redisOptions,
  };
  return new Cluster(nodes, options);
}

function parseClusterUrl(
  adapterName: string,
  rest: string,
): { nodes: { host: string; port: number }[]; username?: string; password?: string } {
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  const path = end === -1 ? '' : rest.slice(end);
  if (path !== '' && !/^\/0?$/.test(path)) {
    throw invalidUrl(adapterName, 'a Redis Cluster has only database 0 and takes no query parameters');
  }
  const at = authority.lastIndexOf('@');
  const hosts = at === -1 ? authority : authority.slice(at + 1);
  let username: string | undefined;
  let password: string | undefined;
  if (at !== -1) {
    const credentials = authority.slice(0, at);
    const colon = credentials.indexOf(':');
    try {
      const user = decodeURIComponent(colon === -1 ? credentials : credentials.slice(0, colon));
      if (user !== '') username = user;
      if (colon !== -1) password = decodeURIComponent(credentials.slice(colon + 1));
    } catch {
      throw invalidUrl(adapterName, 'its credentials are not valid percent-encoding');
    }
  }
  const nodes = hosts.split(',').map((node) => {
    const match = /^(\[[0-9a-f:.]+\]|[^\s:[\]]+)(?::(\d{1,5}))?$/i.exec(node);
    const port = match?.[2] === undefined ? 6379 : Number(match[2]);
    if (!match || port < 1 || port > 65535) {
      throw invalidUrl(adapterName, 'expected comma-separated host:port pairs after redis+cluster://');
    }
    return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
  });
  return {
    nodes,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
  };
}

function invalidUrl(adapterName: string, reason: string) {
  return invalidOptions(adapterName, `url (not shown, it may hold a password): ${reason}.`);
}

function noop(): void {}
