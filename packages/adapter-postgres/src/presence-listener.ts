import { AdapterError } from '@cagey-sessions/core';
import { withPassword } from './connection.js';
import type { PostgresClient, PostgresPoolOptions } from './options.js';

/** Receives every notification on the channels listened to: the channel and its payload. */
export type NotificationHandler = (channel: string, payload: string) => void;

/** The presence's source of notifications: LISTEN on a connection it keeps, or PGlite's `listen()`. */
export interface Listener {
  /** Resolves once notifications on `channel` are delivered. */
  listen(channel: string): Promise<void>;
  /** Stops delivery on `channel`. */
  unlisten(channel: string): Promise<void>;
  /** Stops delivery, and closes the connection when the listener opened it. */
  close(): Promise<void>;
}

/** The part of a pg.Client the listener uses. */
interface PgConnection {
  query(text: string): Promise<unknown>;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', listener: (error?: Error) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
}

/** A connection to LISTEN on, and how to let go of it (`broken`: it failed and must not be reused). */
export interface Lease {
  connection: PgConnection;
  release(broken: boolean): Promise<void>;
}

/** Longest pause between two attempts to get a dropped connection back. */
const MAX_BACKOFF_MS = 5_000;

/**
 * LISTEN on one connection that the listener keeps while at least one channel is listened to. A pg.Pool
 * cannot LISTEN through `pool.query()` (each query may run on another connection, and the pool recycles idle
 * ones), so the connection comes from `open`: one checked out of a pool and kept, or a pg.Client of its own.
 * When that connection drops (a server restart, a network cut), the listener opens another with exponential
 * backoff (0.1 s doubling to 5 s, jittered) and LISTENs again to every channel; notifications sent while it was
 * away are lost, which the presence contract allows (core asks again). A given pg.Client cannot be reopened
 * (`reconnects: false`): then `onLost` reports it once and notifications stop.
 *
 * Calls run one after another (`#serial`), so LISTEN, UNLISTEN and a reconnection never interleave.
 */
export class PgListener implements Listener {
  readonly #open: () => Promise<Lease>;
  readonly #onNotification: NotificationHandler;
  readonly #reconnects: boolean;
  readonly #onLost: (error: unknown) => void;
  readonly #channels = new Set<string>();
  #lease: Lease | undefined;
  #detach: (() => void) | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #retry: NodeJS.Timeout | undefined;
  #attempt = 0;
  #closed = false;

  constructor(
    open: () => Promise<Lease>,
    onNotification: NotificationHandler,
    { reconnects, onLost }: { reconnects: boolean; onLost: (error: unknown) => void },
  ) {
    this.#open = open;
    this.#onNotification = onNotification;
    this.#reconnects = reconnects;
    this.#onLost = onLost;
  }

  listen(channel: string): Promise<void> {
    return this.#serial(async () => {
      this.#assertOpen();
      // A connection opened now (the first, or one replacing a dropped connection before the scheduled
      // reconnection got to it) listens to every channel, not only the new one.
      const channels = this.#lease === undefined ? [...this.#channels, channel] : [channel];
      const lease = await this.#connected();
      await lease.connection.query(channels.map((name) => `LISTEN "${name}"`).join('; '));
      this.#channels.add(channel);
      this.#attempt = 0;
    });
  }

  unlisten(channel: string): Promise<void> {
    return this.#serial(async () => {
      if (!this.#channels.delete(channel) || this.#lease === undefined) return;
      if (this.#channels.size > 0 || !this.#reconnects) {
        await this.#lease.connection.query(`UNLISTEN "${channel}"`);
      }
      // With no channel left the connection goes back (a pool's connection is not held for nothing).
      if (this.#channels.size === 0) await this.#drop(false);
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    return this.#serial(async () => {
      try {
        await this.#drop(false);
      } finally {
        this.#channels.clear();
      }
    });
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new AdapterError('postgres', 'join failed: the presence is closed.', { code: 'ADAPTER_CLOSED' });
    }
  }

  /** The connection, opened when there is none. */
  async #connected(): Promise<Lease> {
    if (this.#lease !== undefined) return this.#lease;
    const lease = await this.#open();
    const { connection } = lease;
    const onNotification = (message: { channel: string; payload?: string }) =>
      this.#onNotification(message.channel, message.payload ?? '');
    const onGone = (error?: Error) => this.#gone(lease, error);
    connection.on('notification', onNotification);
    connection.on('error', onGone);
    connection.on('end', onGone);
    this.#lease = lease;
    this.#detach = () => {
      // A connection the listener opened keeps the no-op error listener its lease gave it, so a late error
      // cannot crash the process; the caller's own client is left as it was found.
      connection.removeListener('notification', onNotification);
      connection.removeListener('end', onGone);
      connection.removeListener('error', onGone);
    };
    return lease;
  }

  /** Lets go of the connection (ending it, or destroying a pool's, when the listener opened it). */
  async #drop(broken: boolean): Promise<void> {
    const lease = this.#lease;
    if (lease === undefined) return;
    this.#lease = undefined;
    this.#detach?.();
    this.#detach = undefined;
    if (!broken && !this.#reconnects) {
      // The caller's own pg.Client: it stays open, without this presence's channels.
      for (const channel of this.#channels) await lease.connection.query(`UNLISTEN "${channel}"`);
    }
    await lease.release(broken);
  }

  /** The connection failed or ended without being asked to. */
  #gone(lease: Lease, error: Error | undefined): void {
    if (this.#lease !== lease) return;
    this.#serial(async () => {
      if (this.#lease !== lease) return;
      await this.#drop(true).catch(() => {});
      if (this.#closed || this.#channels.size === 0) return;
      if (!this.#reconnects) {
        this.#onLost(error);
        this.#channels.clear();
        return;
      }
      this.#scheduleReconnect();
    }).catch(() => {});
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retry !== undefined) return;
    const backoff = Math.min(MAX_BACKOFF_MS, 100 * 2 ** this.#attempt);
    this.#attempt++;
    const delay = backoff / 2 + Math.random() * (backoff / 2);
    // unref: a reconnection never keeps the process alive on its own.
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#serial(() => this.#reconnect()).catch(() => {});
    }, delay).unref();
  }

  async #reconnect(): Promise<void> {
    if (this.#closed || this.#channels.size === 0 || this.#lease !== undefined) return;
    try {
      const lease = await this.#connected();
      await lease.connection.query([...this.#channels].map((channel) => `LISTEN "${channel}"`).join('; '));
      this.#attempt = 0;
    } catch {
      await this.#drop(true).catch(() => {});
      this.#scheduleReconnect();
    }
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => {});
    return run;
  }
}

/** The part of PGlite the listener uses. */
interface PGliteLike {
  listen(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>;
}

/** PGlite delivers NOTIFY within its own process: `listen()` is all it takes, and nothing can drop. */
export class PGliteListener implements Listener {
  readonly #db: PGliteLike;
  readonly #onNotification: NotificationHandler;
  readonly #stops = new Map<string, () => Promise<void>>();

  constructor(db: PostgresClient, onNotification: NotificationHandler) {
    this.#db = db as unknown as PGliteLike;
    this.#onNotification = onNotification;
  }

  async listen(channel: string): Promise<void> {
    if (this.#stops.has(channel)) return;
    // Channels are lower-case `cagey_<hex>`: PGlite sends LISTEN with the name unquoted.
    const stop = await this.#db.listen(channel, (payload) => this.#onNotification(channel, payload));
    this.#stops.set(channel, stop);
  }

  async unlisten(channel: string): Promise<void> {
    const stop = this.#stops.get(channel);
    this.#stops.delete(channel);
    await stop?.();
  }

  async close(): Promise<void> {
    const stops = [...this.#stops.values()];
    this.#stops.clear();
    // A database the caller closed first has nothing left to stop.
    await Promise.allSettled(stops.map((stop) => stop()));
  }
}

/** The part of a pg.Pool the listener uses. */
interface PgPoolLike {
  connect(): Promise<PgConnection & { release(destroy?: boolean): void }>;
}

/** A connection checked out of the caller's pool and kept; destroyed when let go (it holds LISTENs). */
export function poolLease(pool: PostgresClient): () => Promise<Lease> {
  return async () => {
    const client = await (pool as unknown as PgPoolLike).connect();
    // Until the listener attaches its own, an error of this connection must not crash the process.
    client.on('error', () => {});
    return {
      connection: client,
      release: async () => {
        client.release(true);
      },
    };
  };
}

/** The caller's own pg.Client: used as it is, never ended. */
export function givenClientLease(client: PostgresClient): () => Promise<Lease> {
  return async () => ({ connection: client as unknown as PgConnection, release: async () => {} });
}

/** A pg.Client of the presence's own for `url`, ended when let go. */
export function ownClientLease(
  url: string,
  clientOptions: PostgresPoolOptions | undefined,
  connectTimeoutMs: number,
): () => Promise<Lease> {
  return async () => {
    let Client: typeof import('pg').Client;
    try {
      ({ Client } = (await import('pg')).default);
    } catch (error) {
      throw new AdapterError('postgres', 'the `url` option needs the `pg` package: npm install pg', {
        cause: error,
      });
    }
    const { max: _max, idleTimeoutMillis: _idle, ...settings } = clientOptions ?? {};
    const client = new Client({
      connectionTimeoutMillis: connectTimeoutMs,
      keepAlive: true,
      ...settings,
      connectionString: withPassword(url, clientOptions?.password),
    });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    return {
      connection: client,
      release: async () => {
        await client.end().catch(() => {});
      },
    };
  };
}
