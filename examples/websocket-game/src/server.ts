/**
 * The game server: one session per player connection, keyed by a reconnect token, over any persistence
 * adapter. Everything about sessions and persistence below is the library's public API; nothing here knows
 * which database is behind `adapter`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  create,
  type Duration,
  type Logger,
  type PersistenceAdapter,
  PersistenceError,
  type PersistenceOptions,
  type Session,
  type SessionManager,
  userKey,
} from '@cagey-sessions/core';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import {
  type Action,
  applyAction,
  CLOSE_GOING_AWAY,
  CLOSE_REPLACED,
  type ClientMessage,
  newPlayer,
  type Player,
  parseClientMessage,
  type Random,
  type ServerMessage,
} from './game.js';

export interface GameServerOptions {
  adapter: PersistenceAdapter;
  /** Port on 127.0.0.1; 0 picks a free one. Default 0. */
  port?: number;
  /** How long a disconnected player's session waits for them to reconnect with their token. Default 10 s. */
  graceMs?: number;
  /** How often dirty sessions are flushed. Default `'10s'`. */
  interval?: Duration;
  /** How long shutdown keeps retrying unsaved data. Default `'15s'`. */
  shutdownTimeout?: Duration;
  /** Batch size and write concurrency for the store, when it needs other than core's defaults. */
  tuning?: Pick<PersistenceOptions, 'batchSize' | 'concurrency'>;
  log?: Logger;
  random?: Random;
}

export interface ServerStats {
  /** Connections with a logged-in player. */
  online: number;
  /** Live sessions, including players in their grace period. */
  sessions: number;
  /** Players whose data changed since it was last stored. */
  dirty: number;
  inFlight: number;
  /** Records written to the store so far. */
  written: number;
  failed: number;
  conflicts: number;
  actions: number;
  purchases: number;
  /** Logins that started a session (data loaded from the store, or defaults for a new player). */
  logins: number;
  /** Reconnects within the grace period that resumed their session. */
  resumed: number;
  /** Logins that replaced a live session of the same player (another connection). */
  takeovers: number;
  /** Sessions destroyed because their player did not come back within the grace period. */
  expired: number;
}

export interface ShutdownReport {
  /**
   * What each player's session held once the server stopped taking actions, by storage key: exactly what the
   * store must hold afterwards.
   */
  finalState: Record<string, Player>;
  /** Players whose data could not be stored before the shutdown deadline. */
  unsaved: { userId: string; error: string }[];
  /** Players whose data had changed since it was last stored when the server stopped taking actions. */
  dirtyAtShutdown: number;
  stats: ServerStats;
  /** From the signal to everything stored. */
  durationMs: number;
}

export interface GameServer {
  readonly port: number;
  /** `ws://127.0.0.1:<port>` */
  readonly url: string;
  /** The session manager behind the server, for its events and stats. */
  readonly manager: SessionManager<Player>;
  stats(): ServerStats;
  /**
   * Graceful shutdown: stops accepting connections and actions, lets requests being handled finish (so their
   * replies go out), closes the connections, then flushes every player through `manager.destroy(true)`.
   * Idempotent. The adapter is left open: it belongs to the caller.
   */
  shutdown(): Promise<ShutdownReport>;
}

/** Requests one connection may have waiting; a client sending faster than the server answers is cut off. */
const MAX_PENDING_PER_CONNECTION = 32;
/** How long shutdown waits for requests being handled before it closes the connections anyway. */
const DRAIN_REQUESTS_MS = 5000;

interface Connection {
  ws: WebSocket;
  session: Session<Player> | undefined;
  /** Requests of one connection are handled one after the other, in the order they arrived. */
  queue: Promise<void>;
  pending: number;
  closed: boolean;
}

/** Per-session value: the connection the player is playing on, absent while they are away. */
const CONNECTION = 'connection';

export async function startGameServer(options: GameServerOptions): Promise<GameServer> {
  const log = options.log ?? {};
  const random = options.random ?? Math.random;
  const graceMs = options.graceMs ?? 10_000;
  const manager: SessionManager<Player> = create<Player>(
    { adapter: options.adapter, log },
    {
      userData: {
        persistence: {
          interval: options.interval ?? '10s',
          events: ['disconnect', 'shutdown'],
          shutdownTimeout: options.shutdownTimeout ?? '15s',
          ...options.tuning,
        },
      },
    },
  );
  manager.on('persistError', (session, error) => {
    log.warn?.({ userId: session.userId, err: error }, 'could not store player data; retrying');
  });
  manager.on('conflict', (session) => {
    // Another server wrote this player: this copy is stale. Dropping it keeps the newer data in the store.
    log.warn?.({ userId: session.userId }, 'player data changed elsewhere; disconnecting the stale session');
    detach(session, CLOSE_REPLACED, 'your data changed on another server');
    void session.destroy(false).catch(() => {});
  });

  const counters = { actions: 0, purchases: 0, logins: 0, resumed: 0, takeovers: 0, expired: 0 };
  const connections = new Set<Connection>();
  const graceTimers = new Map<Session<Player>, NodeJS.Timeout>();
  /** Logins and expiries of one player run one at a time, so two connections never race for the same player. */
  const userLocks = new Map<string, Promise<unknown>>();
  let closing = false;
  let shutdownPromise: Promise<ShutdownReport> | undefined;

  function exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = userLocks.get(key) ?? Promise.resolve();
    const run = previous.then(task, task);
    const settled = run.catch(() => {});
    userLocks.set(key, settled);
    void settled.then(() => {
      if (userLocks.get(key) === settled) userLocks.delete(key);
    });
    return run;
  }

  function send(conn: Connection, message: ServerMessage): void {
    if (conn.ws.readyState === WebSocket.OPEN) conn.ws.send(JSON.stringify(message));
  }

  function attach(session: Session<Player>, conn: Connection): void {
    clearTimeout(graceTimers.get(session));
    graceTimers.delete(session);
    const previous = session.get<Connection>(CONNECTION);
    if (previous !== undefined && previous !== conn) {
      previous.session = undefined;
      previous.ws.close(CLOSE_REPLACED, 'resumed on another connection');
    }
    session.set(CONNECTION, conn);
    conn.session = session;
    if (conn.closed) disconnected(session);
  }

  function detach(session: Session<Player>, code: number, reason: string): void {
    clearTimeout(graceTimers.get(session));
    graceTimers.delete(session);
    const conn = session.get<Connection>(CONNECTION);
    if (conn === undefined || session.isDestroyed) return;
    session.set(CONNECTION, undefined);
    conn.session = undefined;
    conn.ws.close(code, reason);
  }

  /** The player's connection is gone: keep the session for `graceMs`, then persist it and let it go. */
  function disconnected(session: Session<Player>): void {
    if (session.isDestroyed) return;
    session.set(CONNECTION, undefined);
    if (closing) return;
    clearTimeout(graceTimers.get(session));
    const timer = setTimeout(() => {
      graceTimers.delete(session);
      const userId = session.userId;
      if (userId === undefined) return;
      void exclusive(userKey(userId), async () => {
        if (session.isDestroyed || session.get(CONNECTION) !== undefined || closing) return;
        counters.expired++;
        // Persists because the persistence events include 'disconnect'; a failed write stays queued for retry.
        await session.destroy();
      }).catch((error) => log.error?.({ userId, err: error }, 'could not end an expired session'));
    }, graceMs);
    graceTimers.set(session, timer);
  }

  async function login(conn: Connection, msg: Extract<ClientMessage, { t: 'login' }>): Promise<void> {
    if (conn.session !== undefined) {
      send(conn, { t: 'error', seq: msg.seq, code: 'ALREADY_LOGGED_IN', message: 'already logged in' });
      return;
    }
    const key = userKey(msg.userId);
    const refuse = () =>
      send(conn, { t: 'error', seq: msg.seq, code: 'SHUTTING_DOWN', message: 'the server is shutting down' });
    await exclusive(key, async () => {
      if (closing) return refuse();
      if (conn.closed) return;
      if (msg.token !== undefined) {
        const session = manager.findByKey(msg.token);
        if (session !== undefined && !session.isDestroyed && session.userId === msg.userId) {
          counters.resumed++;
          attach(session, conn);
          send(conn, {
            t: 'welcome',
            seq: msg.seq,
            token: msg.token,
            resumed: true,
            returning: true,
            state: session.userData!,
          });
          return;
        }
      }
      const existing = manager.findByUserId(msg.userId);
      if (existing !== undefined) {
        // The newest login wins; the old session's data is stored (or kept queued) and carried over below.
        counters.takeovers++;
        detach(existing, CLOSE_REPLACED, 'logged in on another connection');
        await existing.destroy();
        if (closing) return refuse();
      }
      const token = randomUUID();
      const session = await manager.create(token);
      let player: Player;
      try {
        await session.start();
        player = await session.identify(msg.userId, { defaults: newPlayer() });
      } catch (error) {
        await session.destroy(false).catch(() => {});
        throw error;
      }
      counters.logins++;
      attach(session, conn);
      const returning = (session.version ?? 0) > 0;
      send(conn, { t: 'welcome', seq: msg.seq, token, resumed: false, returning, state: player });
    });
  }

  async function act(conn: Connection, msg: Action & { seq: number }): Promise<void> {
    const session = conn.session;
    if (session === undefined || session.isDestroyed || session.userData === undefined) {
      send(conn, { t: 'error', seq: msg.seq, code: 'NOT_LOGGED_IN', message: 'log in first' });
      return;
    }
    const player = session.userData;
    const outcome = applyAction(player, msg, random);
    counters.actions++;
    if (outcome.kind === 'rejected') {
      send(conn, { t: 'rejected', seq: msg.seq, reason: outcome.reason, state: player });
    } else if (outcome.kind === 'changed') {
      send(conn, { t: 'ok', seq: msg.seq, state: player });
    } else {
      // Spending is acknowledged only once it is stored: a crash after this reply cannot take the item back.
      try {
        await session.persistNow();
      } catch (error) {
        log.warn?.({ userId: session.userId, err: error }, 'purchase not stored yet; it stays queued');
        send(conn, {
          t: 'error',
          seq: msg.seq,
          code: 'NOT_STORED',
          message: 'purchase not confirmed yet, try again later',
          state: player,
        });
        return;
      }
      counters.purchases++;
      send(conn, { t: 'purchased', seq: msg.seq, purchase: outcome.purchase, state: player });
    }
  }

  async function handle(conn: Connection, data: RawData): Promise<void> {
    const msg = parseClientMessage(data.toString());
    if (typeof msg === 'string') {
      send(conn, { t: 'error', seq: null, code: 'BAD_REQUEST', message: msg });
      return;
    }
    if (closing) {
      send(conn, { t: 'error', seq: msg.seq, code: 'SHUTTING_DOWN', message: 'the server is shutting down' });
      return;
    }
    try {
      if (msg.t === 'login') await login(conn, msg);
      else await act(conn, msg);
    } catch (error) {
      log.error?.({ err: error }, 'request failed');
      send(conn, { t: 'error', seq: msg.seq, code: 'INTERNAL', message: 'request failed' });
    }
  }

  function stats(): ServerStats {
    const m = manager.stats();
    let online = 0;
    for (const conn of connections) if (conn.session !== undefined && !conn.closed) online++;
    return {
      online,
      sessions: m.sessions,
      dirty: m.dirty,
      inFlight: m.inFlight,
      written: m.written,
      failed: m.failed,
      conflicts: m.conflicts,
      ...counters,
    };
  }

  const http = createServer((request: IncomingMessage, response: ServerResponse) => {
    if (request.method === 'GET' && request.url === '/stats') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(stats()));
      return;
    }
    response.writeHead(404, { 'content-type': 'text/plain' });
    response.end('Connect a WebSocket to this address to play; GET /stats for numbers.\n');
  });
  const wss = new WebSocketServer({ server: http, maxPayload: 4096 });

  wss.on('connection', (ws) => {
    const conn: Connection = { ws, session: undefined, queue: Promise.resolve(), pending: 0, closed: false };
    connections.add(conn);
    ws.on('message', (data) => {
      if (++conn.pending > MAX_PENDING_PER_CONNECTION) {
        ws.close(1008, 'too many requests in flight');
        return;
      }
      conn.queue = conn.queue.then(() => handle(conn, data)).finally(() => conn.pending--);
    });
    ws.on('close', () => {
      conn.closed = true;
      connections.delete(conn);
      const session = conn.session;
      if (session !== undefined && session.get(CONNECTION) === conn) disconnected(session);
    });
    ws.on('error', (error) => log.debug?.({ err: error }, 'connection error'));
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, '127.0.0.1', () => {
      http.off('error', reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;

  async function shutdown(): Promise<ShutdownReport> {
    const started = performance.now();
    closing = true;
    http.close();
    const requests = Promise.allSettled([...connections].map((conn) => conn.queue));
    await Promise.race([requests, delay(DRAIN_REQUESTS_MS)]);
    for (const timer of graceTimers.values()) clearTimeout(timer);
    graceTimers.clear();
    // No action runs from here on, so this is the data every player must find in the store.
    const finalState: Record<string, Player> = {};
    for (const session of manager.sessions()) {
      if (session.userId !== undefined && session.userData !== undefined) {
        finalState[userKey(session.userId)] = structuredClone(session.userData);
      }
    }
    const dirtyAtShutdown = manager.stats().dirty;
    for (const conn of connections) conn.ws.close(CLOSE_GOING_AWAY, 'server shutting down');
    let unsaved: ShutdownReport['unsaved'] = [];
    try {
      await manager.destroy(true);
    } catch (error) {
      if (!(error instanceof PersistenceError) || error.code !== 'SHUTDOWN_INCOMPLETE') throw error;
      unsaved = error.unsaved.map((u) => ({ userId: String(u.userId), error: u.error.message }));
    }
    // Clients that do not answer the close handshake are cut off; the data is already stored.
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    return { finalState, unsaved, dirtyAtShutdown, stats: stats(), durationMs: performance.now() - started };
  }

  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    manager,
    stats,
    shutdown: () => {
      shutdownPromise ??= shutdown();
      return shutdownPromise;
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
