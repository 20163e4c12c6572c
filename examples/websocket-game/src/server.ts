/**
 * The game server: one session per player connection, keyed by a reconnect token, over any persistence
 * adapter. Everything about sessions and persistence below is the library's public API; nothing here knows
 * which database is behind `adapter`.
 *
 * How a request travels: a connection's frames wait in its queue (at most `maxPending`; then the server stops
 * reading the socket, so a fast client is slowed by TCP, not cut off) and are handled one at a time, in order.
 * A request is handled only while its connection is active: once the connection closes, is replaced by a
 * newer login or resume of the same player, or is cut off, the requests still queued are dropped without
 * being applied. Each handled request gets exactly one reply.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AdapterError,
  create,
  type Duration,
  type Logger,
  type PersistenceAdapter,
  PersistenceError,
  type PersistenceOptions,
  type Presence,
  type Session,
  type SessionManager,
  userKey,
} from '@cagey-sessions/core';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import {
  type Action,
  type AnnouncedLimits,
  applyAction,
  CLOSE_CODES,
  type ClientMessage,
  changedScalars,
  type Delta,
  type ErrorCode,
  isParseFailure,
  newPlayer,
  type OwnedItem,
  type Player,
  parseClientMessage,
  purchaseByKey,
  type Random,
  type Scalars,
  type ServerMessage,
  scalarsOf,
} from './game.js';
import { startTelemetry, type Telemetry, type TelemetryOptions } from './telemetry.js';

/** Limits that keep one client from costing the server more than its share. Every one is configurable. */
export interface Limits {
  /** Largest frame a client may send, in bytes. A larger one closes the connection with 1009. */
  maxFrameBytes: number;
  /**
   * Requests of one connection waiting to be handled. At the limit the server stops reading the socket until
   * one is answered: a client that pipelines more waits in TCP, it is neither refused nor cut off.
   */
  maxPending: number;
  /**
   * Reply bytes waiting to be sent to one client. Above it the server handles none of that connection's
   * requests until the client reads (down to half); memory per connection stays bounded.
   */
  maxBufferedBytes: number;
  /** How long replies may stay above `maxBufferedBytes` before the connection is closed with 4002. */
  slowReaderTimeoutMs: number;
  /**
   * The server pings every connection this often; one that has not answered the previous ping (nor sent
   * anything) is dropped without a close frame, which starts its player's grace period. 0 turns it off.
   */
  heartbeatMs: number;
  /** A connection with no successful login after this long is closed with 4001. */
  loginTimeoutMs: number;
  /**
   * Requests per second per player (per connection before the login), as a token bucket of `burst`. A request
   * over it is answered `RATE_LIMITED` and not applied; a client that sends more than `burst` requests in a
   * row that are refused is closed with 1008. `null` turns it off.
   */
  rateLimit: { perSecond: number; burst: number } | null;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxFrameBytes: 4096,
  maxPending: 32,
  maxBufferedBytes: 256 * 1024,
  slowReaderTimeoutMs: 10_000,
  heartbeatMs: 15_000,
  loginTimeoutMs: 10_000,
  rateLimit: Object.freeze({ perSecond: 20, burst: 40 }),
});

/** What a login presents to the `authenticate` hook. */
export interface LoginAttempt {
  userId: string;
  /** The login's `auth` field: whatever credential the game's clients carry (a signed token, a ticket...). */
  auth: string | undefined;
  remoteAddress: string | undefined;
}

/** Decides whether a login may play as `userId`. Throwing counts as a refusal (and is logged). */
export type Authenticate = (login: LoginAttempt) => boolean | Promise<boolean>;

export interface GameServerOptions {
  adapter: PersistenceAdapter;
  /** Address to listen on. Default `127.0.0.1`; `0.0.0.0` or `::` for every interface. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** How long a disconnected player's session waits for them to reconnect with their token. Default 10 s. */
  graceMs?: number;
  /** How often dirty sessions are flushed. Default `'10s'`. */
  interval?: Duration;
  /** How long shutdown keeps retrying unsaved data. Default `'15s'`. */
  shutdownTimeout?: Duration;
  /** How long one store call may take before it counts as failed (core's `callTimeout`). Default `'10s'`. */
  callTimeout?: Duration;
  /** Batch size and write concurrency for the store, when it needs other than core's defaults. */
  tuning?: Pick<PersistenceOptions, 'batchSize' | 'concurrency'>;
  /** Overrides of `DEFAULT_LIMITS`. */
  limits?: Partial<Limits>;
  /**
   * Checks every login (a resume too). Without it any client may log in as any player: fine for a demo on
   * loopback, never for a server others can reach.
   */
  authenticate?: Authenticate;
  /** The browser client served at `/`. Default: `client.html` next to this module. */
  clientPage?: string;
  /**
   * `/metrics` (Prometheus text format, from OpenTelemetry) and the live dashboard at `/dashboard`, on this
   * server's port; `false` serves neither. Default: on, the store named after the adapter.
   */
  telemetry?: TelemetryOptions | false;
  /**
   * Several servers on one store: a presence they share keeps one live session per player across them (a login
   * here takes the player over from the server holding it; see src/cluster.ts). Default: this server alone.
   */
  cluster?: ClusterOptions;
  log?: Logger;
  random?: Random;
}

/** The core presence options of a server that runs beside others (see `GameServerOptions.cluster`). */
export interface ClusterOptions {
  presence: Presence;
  nodeId: string;
  leaseTtl?: Duration;
  handoffTimeout?: Duration;
}

/** Why a write reached the store, by what the server was doing when it was stored. */
export type WriteCause = 'purchase' | 'interval' | 'logout' | 'shutdown';

export interface ServerStats {
  /** Open connections, logged in or not. */
  connections: number;
  /** Connections with a logged-in player. */
  online: number;
  /** Live sessions, including players in their grace period. */
  sessions: number;
  /** Players whose data changed since it was last stored. */
  dirty: number;
  inFlight: number;
  /** Players whose data waits for a retry after a failed write. */
  retrying: number;
  /** Records written to the store so far. */
  written: number;
  /** How long the last interval flush took (ms). */
  lastFlushMs: number;
  /** Interval ticks skipped because a flush was still running: the store is not keeping up. */
  skippedTicks: number;
  /** `written` by cause: a purchase's `persistNow()`, the interval (and its retries), a session ending after
   * its grace period, shutdown. */
  writes: Record<WriteCause, number>;
  failed: number;
  conflicts: number;
  actions: number;
  purchases: number;
  /** Purchases confirmed again for a retried key (not bought again). */
  replayed: number;
  /** Logins that started a session (data loaded from the store, or defaults for a new player). */
  logins: number;
  /** Reconnects within the grace period that resumed their session. */
  resumed: number;
  /** Logins without the token that took a live session of the same player over from another connection. */
  takeovers: number;
  /** Sessions another server took over (`kicked`: the player logged in there), with a cluster. */
  handedOff: number;
  /**
   * Sessions ended because their player did not come back within the grace period (only once their data was
   * stored: while the store is down, the session waits).
   */
  expired: number;
  /** Requests answered with an error and not applied, by code. */
  refused: Partial<Record<ErrorCode, number>>;
  /** Requests dropped unapplied (and unanswered) because their connection had closed or been replaced. */
  cancelled: number;
  /** Connections the server closed, by reason. */
  closed: {
    flood: number;
    tooBig: number;
    loginTimeout: number;
    tooSlow: number;
    heartbeat: number;
    replaced: number;
    handedOff: number;
  };
  /** The most reply bytes ever waiting for one client. */
  peakBufferedBytes: number;
}

export interface ShutdownReport {
  /**
   * What each player's session held once the server stopped taking actions, by storage key: exactly what the
   * store must hold afterwards.
   */
  finalState: Record<string, Player>;
  /** Players whose data could not be stored before the shutdown deadline. */
  unsaved: { userId: string; error: string; maybeStored: boolean }[];
  /** Players whose data had changed since it was last stored when the server stopped taking actions. */
  dirtyAtShutdown: number;
  stats: ServerStats;
  /** From the signal to everything stored. */
  durationMs: number;
}

export interface GameServer {
  readonly host: string;
  readonly port: number;
  /** `ws://<host>:<port>` */
  readonly url: string;
  /** The session manager behind the server, for its events and stats. */
  readonly manager: SessionManager<Player>;
  readonly limits: Readonly<Limits>;
  stats(): ServerStats;
  /**
   * Graceful shutdown: stops accepting connections and actions (requests still queued are answered
   * `SHUTTING_DOWN`), lets requests being handled finish (so their replies go out), closes the connections,
   * then flushes every player through `manager.destroy(true)`. Idempotent. The adapter is left open: it
   * belongs to the caller.
   */
  shutdown(): Promise<ShutdownReport>;
}

/** How long shutdown waits for requests being handled before it closes the connections anyway. */
const DRAIN_REQUESTS_MS = 5000;
/** How often a connection waiting for its client to read checks whether it has. */
const DRAIN_POLL_MS = 20;

/** A token bucket: `perSecond` tokens a second, at most `burst`. */
class Bucket {
  #tokens: number;
  #last: number;
  constructor(
    readonly perSecond: number,
    readonly burst: number,
  ) {
    this.#tokens = burst;
    this.#last = performance.now();
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.perSecond);
    this.#last = now;
  }

  /** Takes a token: 0 when there was one, else how many ms until there is. */
  take(now = performance.now()): number {
    this.#refill(now);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) / this.perSecond) * 1000);
  }

  /** Full again: as good as a new bucket, so it can be forgotten. */
  full(now = performance.now()): boolean {
    this.#refill(now);
    return this.#tokens >= this.burst;
  }
}

interface Connection {
  readonly ws: WebSocket;
  readonly remoteAddress: string | undefined;
  session: Session<Player> | undefined;
  /** Frames received and not yet handled, in arrival order. */
  readonly queue: RawData[];
  /** A request of this connection is being handled. */
  running: boolean;
  /**
   * False once the connection closed, was replaced by another connection of the same player, or is being
   * cut off: what is queued is dropped unapplied and nothing new is accepted.
   */
  active: boolean;
  closed: boolean;
  /** Reading is paused because the queue is full. */
  paused: boolean;
  /** Answered the last ping, or sent something, since the previous heartbeat. */
  alive: boolean;
  loggingIn: boolean;
  loginTimer: NodeJS.Timeout | undefined;
  /** Rate limit before the login; after it the player's bucket is used. */
  readonly bucket: Bucket | undefined;
  /** Requests refused for the rate limit since the last one accepted. */
  refusedInARow: number;
  /** Close to send once the request being handled has been answered. */
  closeAfterReply: { code: number; reason: string } | undefined;
  /** Called when the queue is empty and nothing is being handled. */
  idleWaiters: (() => void)[];
}

/** Per-session values: the connection the player plays on (absent while away), the state version, etc. */
const CONNECTION = 'connection';
const VERSION = 'stateVersion';
const PERSISTING = 'purchasesPersisting';
const ENDING = 'endingBecause';

const DEFAULT_CLIENT_PAGE = new URL('./client.html', import.meta.url);
const DASHBOARD_PAGE = new URL('./dashboard.html', import.meta.url);

export async function startGameServer(options: GameServerOptions): Promise<GameServer> {
  const log = options.log ?? {};
  const random = options.random ?? Math.random;
  const graceMs = options.graceMs ?? 10_000;
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  checkLimits(limits);
  const announced: AnnouncedLimits = {
    maxFrameBytes: limits.maxFrameBytes,
    maxPending: limits.maxPending,
    rateLimit: limits.rateLimit === null ? null : { ...limits.rateLimit },
  };
  const host = options.host ?? '127.0.0.1';
  const clientPage = options.clientPage ?? readFileSync(DEFAULT_CLIENT_PAGE, 'utf8');
  const manager: SessionManager<Player> = create<Player>(
    { adapter: options.adapter, log },
    {
      userData: {
        persistence: {
          interval: options.interval ?? '10s',
          events: ['disconnect', 'shutdown'],
          shutdownTimeout: options.shutdownTimeout ?? '15s',
          ...(options.callTimeout === undefined ? {} : { callTimeout: options.callTimeout }),
          ...options.tuning,
        },
      },
      ...options.cluster,
    },
  );

  const telemetry: Telemetry | undefined =
    options.telemetry === false
      ? undefined
      : startTelemetry(
          manager,
          { connections: () => connections.size, online: () => stats().online },
          { store: options.telemetry?.store ?? options.adapter.name },
        );
  const dashboardPage = telemetry === undefined ? undefined : readFileSync(DASHBOARD_PAGE, 'utf8');

  const counters = {
    actions: 0,
    purchases: 0,
    replayed: 0,
    logins: 0,
    resumed: 0,
    takeovers: 0,
    handedOff: 0,
    expired: 0,
    cancelled: 0,
    peakBufferedBytes: 0,
  };
  const writes: Record<WriteCause, number> = {
    purchase: 0,
    interval: 0,
    logout: 0,
    shutdown: 0,
  };
  const refused: Partial<Record<ErrorCode, number>> = {};
  const closed = {
    flood: 0,
    tooBig: 0,
    loginTimeout: 0,
    tooSlow: 0,
    heartbeat: 0,
    replaced: 0,
    handedOff: 0,
  };
  const connections = new Set<Connection>();
  const graceTimers = new Map<Session<Player>, NodeJS.Timeout>();
  /** Rate-limit buckets by player, shared by the player's connections; forgotten once full again. */
  const buckets = new Map<string, Bucket>();
  /** Logins and expiries of one player run one at a time, so two connections never race for the same player. */
  const userLocks = new Map<string, Promise<unknown>>();
  let closing = false;
  let shutdownPromise: Promise<ShutdownReport> | undefined;

  manager.on('persistError', (session, error) => {
    log.warn?.({ userId: session.userId, err: error }, 'could not store player data; retrying');
  });
  manager.on('persisted', (session) => {
    writes[writeCause(session)]++;
  });
  manager.on('conflict', (session) => {
    // Another server wrote this player: this copy is stale. Dropping it keeps the newer data in the store.
    log.warn?.({ userId: session.userId }, 'player data changed elsewhere; disconnecting the stale session');
    detach(session, CLOSE_CODES.REPLACED, 'your data changed on another server');
    void session.destroy(false).catch(() => {});
  });

  manager.on('kicked', (session, info) => {
    // The player logged in on another server (or this one lost its lease): close the connection so the client
    // reconnects; core stores the player before the other server loads it.
    counters.handedOff++;
    session.set(ENDING, 'logout');
    const to = info.nodeId === undefined ? 'another server' : `server ${info.nodeId}`;
    detach(
      session,
      CLOSE_CODES.HANDED_OFF,
      info.reason === 'lease-lost' ? 'this server lost its lease' : `you logged in on ${to}`,
    );
  });

  function writeCause(session: Session<Player>): WriteCause {
    if (closing) return 'shutdown';
    const ending = session.get<WriteCause>(ENDING);
    if (ending !== undefined) return ending;
    return (session.get<number>(PERSISTING) ?? 0) > 0 ? 'purchase' : 'interval';
  }

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
    if (conn.ws.readyState !== WebSocket.OPEN) return;
    conn.ws.send(JSON.stringify(message));
    const buffered = conn.ws.bufferedAmount;
    if (buffered > counters.peakBufferedBytes) counters.peakBufferedBytes = buffered;
  }

  function refuse(
    conn: Connection,
    seq: number | null,
    code: ErrorCode,
    message: string,
    extra: { retryAfterMs?: number } = {},
  ): void {
    refused[code] = (refused[code] ?? 0) + 1;
    const session = conn.session;
    const v = session === undefined || session.isDestroyed ? undefined : versionOf(session);
    send(conn, { t: 'error', seq, code, message, ...extra, ...(v === undefined ? {} : { v }) });
  }

  function versionOf(session: Session<Player>): number {
    return session.get<number>(VERSION) ?? 0;
  }

  /** The reply part for a change just applied: the next state version and what changed. */
  function nextDelta(session: Session<Player>, before: Scalars, inventoryLength: number): Delta {
    const player = session.userData!;
    const v = versionOf(session) + 1;
    session.set(VERSION, v);
    const delta: Delta = { v };
    const changes = changedScalars(before, player);
    if (changes !== undefined) delta.changes = changes;
    if (player.inventory.length > inventoryLength) {
      delta.added = player.inventory.slice(inventoryLength).map((item) => ({ ...item }));
    }
    return delta;
  }

  /** Stops taking requests from `conn`: queued ones are dropped unapplied. */
  function deactivate(conn: Connection): void {
    if (!conn.active) return;
    conn.active = false;
    counters.cancelled += conn.queue.length;
    conn.queue.length = 0;
    clearTimeout(conn.loginTimer);
    // Read again, so the close handshake (or the client's going away) is seen; frames are now dropped.
    if (conn.paused) {
      conn.paused = false;
      conn.ws.resume();
    }
  }

  /**
   * Closes `conn` on the server's initiative: nothing queued is applied, and the request being handled (if
   * any) is answered before the close frame goes out.
   */
  function cutOff(conn: Connection, code: number, reason: string): void {
    if (!conn.active) return;
    deactivate(conn);
    if (conn.running) conn.closeAfterReply = { code, reason };
    else closeNow(conn, code, reason);
  }

  function closeNow(conn: Connection, code: number, reason: string): void {
    conn.ws.close(code, reason);
    // A client that does not read will not answer the close handshake either.
    if (code === CLOSE_CODES.TOO_SLOW) setTimeout(() => conn.ws.terminate(), 1000).unref();
  }

  function attach(
    session: Session<Player>,
    conn: Connection,
    reason = 'resumed on another connection',
  ): void {
    clearTimeout(graceTimers.get(session));
    graceTimers.delete(session);
    const previous = session.get<Connection>(CONNECTION);
    if (previous !== undefined && previous !== conn) {
      // Resumed elsewhere: the old connection's queued requests must not run after this login is welcomed.
      previous.session = undefined;
      deactivate(previous);
      closed.replaced++;
      previous.ws.close(CLOSE_CODES.REPLACED, reason);
    }
    session.set(CONNECTION, conn);
    conn.session = session;
    clearTimeout(conn.loginTimer);
    if (conn.closed) disconnected(session);
  }

  function detach(session: Session<Player>, code: number, reason: string): void {
    clearTimeout(graceTimers.get(session));
    graceTimers.delete(session);
    const conn = session.get<Connection>(CONNECTION);
    if (conn === undefined || session.isDestroyed) return;
    session.set(CONNECTION, undefined);
    conn.session = undefined;
    deactivate(conn);
    if (code === CLOSE_CODES.HANDED_OFF) closed.handedOff++;
    else closed.replaced++;
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
        session.set(ENDING, 'logout');
        try {
          // The session is let go only once its data is stored: while the store is down the player stays
          // here, so a login finds this session (with its unsaved changes) instead of older data in the store.
          await session.persistNow();
        } catch (error) {
          session.set(ENDING, undefined);
          if (!session.isDestroyed && session.get(CONNECTION) === undefined) disconnected(session);
          log.warn?.(
            { userId, err: error },
            'could not store a player whose grace period ended; keeping the session',
          );
          return;
        }
        if (session.get(CONNECTION) !== undefined || closing) {
          session.set(ENDING, undefined);
          return;
        }
        counters.expired++;
        // Nothing left to write; with 'disconnect' among the persistence events, a change since is written here.
        await session.destroy();
      }).catch((error) => log.error?.({ userId, err: error }, 'could not end an expired session'));
    }, graceMs);
    graceTimers.set(session, timer);
  }

  async function authenticate(
    conn: Connection,
    msg: Extract<ClientMessage, { t: 'login' }>,
  ): Promise<boolean> {
    if (options.authenticate === undefined) return true;
    try {
      return (
        (await options.authenticate({
          userId: msg.userId,
          auth: msg.auth,
          remoteAddress: conn.remoteAddress,
        })) === true
      );
    } catch (error) {
      log.warn?.({ userId: msg.userId, err: error }, 'authenticate hook failed; refusing the login');
      return false;
    }
  }

  async function login(conn: Connection, msg: Extract<ClientMessage, { t: 'login' }>): Promise<void> {
    if (conn.session !== undefined) {
      refuse(conn, msg.seq, 'ALREADY_LOGGED_IN', 'already logged in');
      return;
    }
    if (!(await authenticate(conn, msg))) {
      refuse(conn, msg.seq, 'AUTH_FAILED', 'authentication failed');
      return;
    }
    const key = userKey(msg.userId);
    await exclusive(key, async () => {
      if (closing) return refuse(conn, msg.seq, 'SHUTTING_DOWN', 'the server is shutting down');
      if (!conn.active) return;
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
            v: versionOf(session),
            state: session.userData!,
            limits: announced,
          });
          return;
        }
      }
      const existing = manager.findByUserId(msg.userId);
      if (existing !== undefined && !existing.isDestroyed && existing.userData !== undefined) {
        // The newest login wins: the player's session moves to this connection, unsaved changes and all. Nothing
        // is written or reloaded, so there are never two copies of the player to tell apart.
        counters.takeovers++;
        attach(existing, conn, 'logged in on another connection');
        send(conn, {
          t: 'welcome',
          seq: msg.seq,
          token: existing.key!,
          resumed: false,
          returning: (existing.version ?? 0) > 0,
          v: versionOf(existing),
          state: existing.userData,
          limits: announced,
        });
        return;
      }
      const token = randomUUID();
      const session = await manager.create(token);
      let player: Player;
      try {
        await session.start();
        player = await session.identify(msg.userId, { defaults: newPlayer() });
      } catch (error) {
        await session.destroy(false).catch(() => {});
        if (error instanceof PersistenceError || error instanceof AdapterError) {
          log.warn?.({ userId: msg.userId, err: error }, 'could not load a player');
          return refuse(conn, msg.seq, 'STORE_UNAVAILABLE', 'your player could not be loaded; try again');
        }
        throw error;
      }
      counters.logins++;
      attach(session, conn);
      const returning = (session.version ?? 0) > 0;
      send(conn, {
        t: 'welcome',
        seq: msg.seq,
        token,
        resumed: false,
        returning,
        v: 0,
        state: player,
        limits: announced,
      });
    });
  }

  async function act(conn: Connection, msg: (Action | { t: 'state' }) & { seq: number }): Promise<void> {
    const session = conn.session;
    if (session === undefined || session.isDestroyed || session.userData === undefined) {
      refuse(conn, msg.seq, 'NOT_LOGGED_IN', 'log in first');
      return;
    }
    const player = session.userData;
    if (msg.t === 'state') {
      send(conn, { t: 'state', seq: msg.seq, v: versionOf(session), state: player });
      return;
    }
    if (msg.t === 'buy') {
      const earlier = purchaseByKey(player, msg.key);
      if (earlier !== undefined) {
        if (earlier.item !== msg.item) {
          refuse(conn, msg.seq, 'KEY_REUSED', `key ${msg.key} was used for a ${earlier.item}`);
          return;
        }
        // A retry: confirm the purchase made with this key (stored by now, or stored now), never buy again.
        counters.replayed++;
        await confirmPurchase(conn, session, msg.seq, { ...earlier }, undefined);
        return;
      }
    }
    const before = scalarsOf(player);
    const inventoryLength = player.inventory.length;
    const outcome = applyAction(player, msg, random);
    counters.actions++;
    if (outcome.kind === 'rejected') {
      send(conn, { t: 'rejected', seq: msg.seq, v: versionOf(session), reason: outcome.reason });
      return;
    }
    const delta = nextDelta(session, before, inventoryLength);
    if (outcome.kind === 'changed') send(conn, { t: 'ok', seq: msg.seq, ...delta });
    else await confirmPurchase(conn, session, msg.seq, outcome.purchase, delta);
  }

  /** Spending is acknowledged only once it is stored: a crash after this reply cannot take the item back. */
  async function confirmPurchase(
    conn: Connection,
    session: Session<Player>,
    seq: number,
    purchase: OwnedItem,
    delta: Delta | undefined,
  ): Promise<void> {
    const change = delta ?? { v: versionOf(session) };
    session.set(PERSISTING, (session.get<number>(PERSISTING) ?? 0) + 1);
    try {
      await session.persistNow();
    } catch (error) {
      log.warn?.({ userId: session.userId, err: error }, 'purchase not stored yet; it stays queued');
      refused.NOT_STORED = (refused.NOT_STORED ?? 0) + 1;
      send(conn, {
        t: 'error',
        seq,
        code: 'NOT_STORED',
        message:
          'the purchase is applied but not stored yet; send the same buy (same key) again to confirm it: ' +
          'it will not be bought twice',
        purchase,
        ...change,
      });
      return;
    } finally {
      if (!session.isDestroyed) session.set(PERSISTING, (session.get<number>(PERSISTING) ?? 1) - 1);
    }
    counters.purchases++;
    send(conn, {
      t: 'purchased',
      seq,
      purchase,
      ...change,
      ...(delta === undefined ? { replayed: true as const } : {}),
    });
  }

  function bucketFor(conn: Connection): Bucket | undefined {
    const rate = limits.rateLimit;
    const userId = conn.session?.userId;
    if (rate === null || userId === undefined) return conn.bucket;
    const key = userKey(userId);
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      bucket = new Bucket(rate.perSecond, rate.burst);
      buckets.set(key, bucket);
    }
    return bucket;
  }

  async function handle(conn: Connection, data: RawData): Promise<void> {
    const parsed = parseClientMessage(data.toString());
    const seq = parsed.seq;
    const bucket = bucketFor(conn);
    if (bucket !== undefined) {
      const waitMs = bucket.take();
      if (waitMs > 0) {
        refuse(conn, seq, 'RATE_LIMITED', `too many requests; wait ${waitMs} ms`, { retryAfterMs: waitMs });
        if (++conn.refusedInARow > bucket.burst) {
          closed.flood++;
          cutOff(conn, CLOSE_CODES.POLICY, 'rate limit exceeded');
        }
        return;
      }
      conn.refusedInARow = 0;
    }
    if (isParseFailure(parsed)) {
      refuse(conn, seq, 'BAD_REQUEST', parsed.error);
      return;
    }
    if (closing) {
      refuse(conn, seq, 'SHUTTING_DOWN', 'the server is shutting down');
      return;
    }
    try {
      if (parsed.t === 'login') {
        conn.loggingIn = true;
        try {
          await login(conn, parsed);
        } finally {
          conn.loggingIn = false;
        }
      } else {
        await act(conn, parsed);
      }
    } catch (error) {
      log.error?.({ err: error }, 'request failed');
      refuse(conn, seq, 'INTERNAL', 'request failed');
    }
  }

  /** Handles `conn`'s queued requests one at a time while it is active. */
  async function pump(conn: Connection): Promise<void> {
    conn.running = true;
    try {
      while (conn.active && conn.queue.length > 0) {
        if (conn.ws.bufferedAmount > limits.maxBufferedBytes) {
          if (!(await waitForReader(conn))) {
            closed.tooSlow++;
            cutOff(conn, CLOSE_CODES.TOO_SLOW, 'replies are not being read');
          }
          continue;
        }
        const data = conn.queue.shift()!;
        if (conn.paused && conn.queue.length < limits.maxPending) {
          conn.paused = false;
          conn.ws.resume();
        }
        conn.alive = true;
        await handle(conn, data);
      }
    } finally {
      conn.running = false;
      const close = conn.closeAfterReply;
      conn.closeAfterReply = undefined;
      if (close !== undefined) closeNow(conn, close.code, close.reason);
      for (const wake of conn.idleWaiters.splice(0)) wake();
    }
  }

  /** Waits until the client has read its replies down to half the limit; false after `slowReaderTimeoutMs`. */
  async function waitForReader(conn: Connection): Promise<boolean> {
    const deadline = performance.now() + limits.slowReaderTimeoutMs;
    while (conn.active && conn.ws.bufferedAmount > limits.maxBufferedBytes / 2) {
      if (performance.now() >= deadline) return false;
      await delay(DRAIN_POLL_MS);
    }
    return true;
  }

  function whenIdle(conn: Connection): Promise<void> {
    if (!conn.running && conn.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => conn.idleWaiters.push(resolve));
  }

  function stats(): ServerStats {
    const m = manager.stats();
    let online = 0;
    for (const conn of connections) if (conn.session !== undefined && !conn.closed) online++;
    return {
      connections: connections.size,
      online,
      sessions: m.sessions,
      dirty: m.dirty,
      inFlight: m.inFlight,
      retrying: m.retrying,
      written: m.written,
      lastFlushMs: m.lastFlushMs ?? 0,
      skippedTicks: m.skippedTicks,
      writes: { ...writes },
      failed: m.failed,
      conflicts: m.conflicts,
      ...counters,
      refused: { ...refused },
      closed: { ...closed },
    };
  }

  const http = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method === 'GET' && path === '/stats') {
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      // With the process's memory, for the demo's measurements.
      const memory = {
        rssBytes: process.memoryUsage.rss(),
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
      };
      response.end(JSON.stringify({ ...stats(), process: memory }));
      return;
    }
    // Neither carries a player's data or id, only counts, so neither asks for a login token (a scraper sends
    // none); a server whose port is public would serve them on an internal interface instead (see the README).
    if (request.method === 'GET' && path === '/metrics' && telemetry !== undefined) {
      telemetry.serveMetrics(request, response);
      return;
    }
    if (request.method === 'GET' && path === '/dashboard' && dashboardPage !== undefined) {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(dashboardPage);
      return;
    }
    if (request.method === 'GET' && (path === '/' || path === '/index.html')) {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(clientPage);
      return;
    }
    response.writeHead(404, { 'content-type': 'text/plain' });
    response.end(
      'Open / in a browser to play, connect a WebSocket here, GET /stats or /metrics for numbers, or open /dashboard.\n',
    );
  });
  const wss = new WebSocketServer({ server: http, maxPayload: limits.maxFrameBytes });

  wss.on('connection', (ws, request) => {
    const rate = limits.rateLimit;
    const conn: Connection = {
      ws,
      remoteAddress: request.socket.remoteAddress,
      session: undefined,
      queue: [],
      running: false,
      active: true,
      closed: false,
      paused: false,
      alive: true,
      loggingIn: false,
      loginTimer: undefined,
      bucket: rate === null ? undefined : new Bucket(rate.perSecond, rate.burst),
      refusedInARow: 0,
      closeAfterReply: undefined,
      idleWaiters: [],
    };
    connections.add(conn);
    const loginDeadline = () => {
      if (conn.session !== undefined || !conn.active) return;
      // A login waiting for the store is bounded by the store's call timeout: let it finish.
      if (conn.loggingIn) conn.loginTimer = setTimeout(loginDeadline, limits.loginTimeoutMs);
      else {
        closed.loginTimeout++;
        cutOff(conn, CLOSE_CODES.LOGIN_TIMEOUT, 'no login in time');
      }
    };
    conn.loginTimer = setTimeout(loginDeadline, limits.loginTimeoutMs);
    ws.on('message', (data) => {
      if (!conn.active) {
        counters.cancelled++;
        return;
      }
      conn.alive = true;
      conn.queue.push(data);
      if (conn.queue.length >= limits.maxPending && !conn.paused) {
        conn.paused = true;
        ws.pause();
      }
      if (!conn.running) void pump(conn);
    });
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('close', () => {
      conn.closed = true;
      deactivate(conn);
      connections.delete(conn);
      for (const wake of conn.idleWaiters.splice(0)) wake();
      const session = conn.session;
      if (session !== undefined && session.get(CONNECTION) === conn) disconnected(session);
    });
    ws.on('error', (error) => {
      if ((error as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') closed.tooBig++;
      log.debug?.({ err: error }, 'connection error');
    });
  });

  const heartbeat =
    limits.heartbeatMs > 0
      ? setInterval(() => {
          for (const conn of connections) {
            // A connection whose reading the server paused is judged by the slow-reader timeout instead.
            if (conn.paused) continue;
            if (!conn.alive) {
              closed.heartbeat++;
              conn.ws.terminate();
              continue;
            }
            conn.alive = false;
            conn.ws.ping();
          }
          for (const [key, bucket] of buckets) if (bucket.full()) buckets.delete(key);
        }, limits.heartbeatMs).unref()
      : undefined;

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, host, () => {
      http.off('error', reject);
      resolve();
    });
  }).catch(async (error: unknown) => {
    // No server, so nobody will ever call shutdown(): the instrumentation must not stay subscribed.
    await telemetry?.close();
    throw error;
  });
  const port = (http.address() as AddressInfo).port;

  async function shutdown(): Promise<ShutdownReport> {
    const started = performance.now();
    closing = true;
    clearInterval(heartbeat);
    http.close();
    const requests = Promise.allSettled([...connections].map((conn) => whenIdle(conn)));
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
    for (const conn of connections) {
      deactivate(conn);
      conn.ws.close(CLOSE_CODES.GOING_AWAY, 'server shutting down');
    }
    let unsaved: ShutdownReport['unsaved'] = [];
    try {
      await manager.destroy(true);
    } catch (error) {
      if (!(error instanceof PersistenceError) || error.code !== 'SHUTDOWN_INCOMPLETE') throw error;
      unsaved = error.unsaved.map((u) => ({
        userId: String(u.userId),
        error: u.error.message,
        maybeStored: u.maybeStored === true,
      }));
    }
    // After the manager, so that its shutdown is recorded.
    await telemetry?.close();
    // Clients that do not answer the close handshake are cut off; the data is already stored.
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    return { finalState, unsaved, dirtyAtShutdown, stats: stats(), durationMs: performance.now() - started };
  }

  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port,
    url: `ws://${urlHost}:${port}`,
    manager,
    limits,
    stats,
    shutdown: () => {
      shutdownPromise ??= shutdown();
      return shutdownPromise;
    },
  };
}

function checkLimits(limits: Limits): void {
  const positive = (name: string, value: number) => {
    if (!Number.isFinite(value) || value <= 0)
      throw new RangeError(`limits.${name} must be a positive number`);
  };
  positive('maxFrameBytes', limits.maxFrameBytes);
  positive('maxPending', limits.maxPending);
  positive('maxBufferedBytes', limits.maxBufferedBytes);
  positive('slowReaderTimeoutMs', limits.slowReaderTimeoutMs);
  positive('loginTimeoutMs', limits.loginTimeoutMs);
  if (!Number.isFinite(limits.heartbeatMs) || limits.heartbeatMs < 0) {
    throw new RangeError('limits.heartbeatMs must be 0 (off) or a positive number');
  }
  if (limits.rateLimit !== null) {
    positive('rateLimit.perSecond', limits.rateLimit.perSecond);
    positive('rateLimit.burst', limits.rateLimit.burst);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
