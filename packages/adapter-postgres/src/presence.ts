import { randomBytes } from 'node:crypto';
import {
  AdapterError,
  type CageySessionsError,
  type ClaimResult,
  type Presence,
  type PresenceMessage,
  StateError,
  ValidationError,
} from '@cagey-sessions/core';
import {
  ClientLifecycle,
  checkLeaseTtl,
  checkNodeId,
  deliverMessage,
  userKey,
  WarnOnce,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import { type OwnPool, openPool, passwordsOf } from './connection.js';
import type { PostgresClient } from './options.js';
import {
  givenClientLease,
  type Listener,
  ownClientLease,
  PGliteListener,
  PgListener,
  poolLease,
} from './presence-listener.js';
import { encodeMessage, parseEnvelope } from './presence-messages.js';
import {
  type CreatePostgresPresenceOptions,
  listenerKind,
  type PostgresPresenceOptions,
  type ResolvedPresenceOptions,
  resolvePresenceOptions,
} from './presence-options.js';
import {
  type ClaimRow,
  channelOf,
  claimSql,
  isUndefinedTable,
  joinSql,
  leaveSql,
  locateSql,
  presenceSetupSql,
  releaseSql,
  renewSql,
  sendSql,
} from './presence-sql.js';
import { isTransient } from './sql.js';

const NAME = 'postgres';
/**
 * How often a claim runs again when the user's record changed between its snapshot and its row lock (another
 * claim or a release committed in between; see `claimSql`). Each run sees the newer record, so this bounds
 * contention, not correctness.
 */
const RACE_RETRIES = 10;
/** How often a statement aborted as a deadlock victim or serialization failure is sent again. */
const TRANSIENT_RETRIES = 5;
/** User ids in one `release` statement: thousands at shutdown cost a few round trips. */
const RELEASE_CHUNK = 10_000;

/** This process's incarnation of a node: its token, and where its messages go. */
interface Incarnation {
  token: string;
  channel: string;
  onMessage: (message: PresenceMessage) => void;
}

/**
 * A `Presence` over PostgreSQL: leases in `<table>_nodes`, holders in `<table>_users`, messages by
 * LISTEN/NOTIFY on a connection the presence keeps for them. Lease expiry is read from the database's clock.
 * Works over a pg.Pool, a pg.Client, a connection string, or PGlite (single process: its NOTIFY reaches only
 * that process).
 */
export class PostgresPresence implements Presence {
  readonly name = NAME;
  /** The `table` option as given; the tables are `<table>_nodes` and `<table>_users`. */
  readonly table: string;

  readonly #options: ResolvedPresenceOptions;
  readonly #sql: Record<
    'setup' | 'join' | 'renew' | 'leave' | 'claim' | 'release' | 'locate' | 'send',
    string
  >;
  readonly #lifecycle: ClientLifecycle<PostgresClient> | ClientLifecycle<OwnPool>;
  readonly #incarnations = new Map<string, Incarnation>();
  readonly #warn: WarnOnce;
  #listener: Listener | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: PostgresPresenceOptions) {
    const resolved = resolvePresenceOptions(NAME, options);
    const { source, tables } = resolved;
    this.#options = resolved;
    this.table = tables.name;
    this.#warn = new WarnOnce(resolved.log);
    this.#sql = {
      setup: presenceSetupSql(tables),
      join: joinSql(tables),
      renew: renewSql(tables),
      leave: leaveSql(tables),
      claim: claimSql(tables),
      release: releaseSql(tables),
      locate: locateSql(tables),
      send: sendSql(tables),
    };
    this.#lifecycle =
      source.kind === 'client'
        ? new ClientLifecycle(NAME, { given: source.client })
        : new ClientLifecycle<OwnPool>(NAME, {
            open: () => openPool(NAME, source.url, resolved.clientOptions, resolved.connectTimeoutMs),
            release: (pool) => pool.end(),
          });
  }

  /** Creates both tables when one is missing. Idempotent; safe when several processes run it at once. */
  async setup(): Promise<void> {
    await this.#query('setup', this.#sql.setup);
  }

  async join(nodeId: string, ttlMs: number, onMessage: (message: PresenceMessage) => void): Promise<void> {
    checkNodeId(NAME, nodeId);
    checkLeaseTtl(NAME, ttlMs);
    if (typeof onMessage !== 'function') {
      throw new ValidationError('INVALID_OPTIONS', `[${NAME}] join: onMessage must be a function.`);
    }
    await this.#client('join');
    const incarnation: Incarnation = {
      token: randomBytes(16).toString('base64url'),
      channel: channelOf(this.#options.tables, nodeId),
      onMessage,
    };
    const previous = this.#incarnations.get(nodeId);
    // Listening before the lease is written: once other nodes can find this incarnation, it hears them.
    this.#incarnations.set(nodeId, incarnation);
    try {
      await this.#listenerFor().listen(incarnation.channel);
      await this.#query('join', this.#sql.join, [nodeId, incarnation.token, ttlMs]);
    } catch (error) {
      if (this.#incarnations.get(nodeId) === incarnation) {
        if (previous === undefined) {
          this.#incarnations.delete(nodeId);
          await this.#listener?.unlisten(incarnation.channel).catch(() => {});
        } else {
          this.#incarnations.set(nodeId, previous);
        }
      }
      throw this.#error('join', error);
    }
  }

  async renew(nodeId: string, ttlMs: number): Promise<boolean> {
    checkNodeId(NAME, nodeId);
    checkLeaseTtl(NAME, ttlMs);
    const rows = await this.#query('renew', this.#sql.renew, [nodeId, this.#tokenOf(nodeId), ttlMs]);
    return rows.length > 0;
  }

  async claim(userId: string, nodeId: string): Promise<ClaimResult> {
    const key = checkUserId(userId);
    checkNodeId(NAME, nodeId);
    for (let attempt = 0; ; attempt++) {
      const rows = await this.#query('claim', this.#sql.claim, [key, nodeId, this.#tokenOf(nodeId)]);
      const row = rows[0] as ClaimRow;
      if (row.joined === 0) {
        throw new StateError(
          'PRESENCE_UNAVAILABLE',
          `[${NAME}] Node ${JSON.stringify(nodeId)} cannot claim: it has not joined, or its lease expired (join again).`,
        );
      }
      const seen =
        row.seen_node_id === null ? undefined : { nodeId: row.seen_node_id, token: row.seen_token };
      if (row.node_id === nodeId && row.token === row.my_token) {
        const wasMine = seen?.nodeId === nodeId && seen.token === row.my_token;
        // A live holder that is not this node let go meanwhile (this claim inserted afresh): nothing to fence.
        const previousOwner = seen !== undefined && !wasMine && !row.seen_live ? seen.nodeId : undefined;
        return previousOwner === undefined ? { acquired: true } : { acquired: true, previousOwner };
      }
      if (seen !== undefined && row.node_id === seen.nodeId && row.token === seen.token && row.seen_live) {
        return { acquired: false, owner: seen.nodeId };
      }
      // The record changed after this statement's snapshot: decide again on the newer one.
      if (attempt >= RACE_RETRIES) {
        throw new AdapterError(
          NAME,
          `claim failed: the record of user ${JSON.stringify(key.slice(0, 64))} kept changing under ` +
            `${RACE_RETRIES + 1} attempts; try again.`,
        );
      }
    }
  }

  async release(nodeId: string, userIds: readonly string[]): Promise<void> {
    checkNodeId(NAME, nodeId);
    if (!Array.isArray(userIds)) {
      throw new ValidationError(
        'INVALID_USER_ID',
        `[${NAME}] release: userIds must be an array of user ids.`,
      );
    }
    const keys = userIds.map(checkUserId);
    const token = this.#tokenOf(nodeId);
    if (keys.length === 0) {
      await this.#client('release');
      return;
    }
    for (let i = 0; i < keys.length; i += RELEASE_CHUNK) {
      await this.#query('release', this.#sql.release, [keys.slice(i, i + RELEASE_CHUNK), nodeId, token]);
    }
  }

  async locate(userId: string): Promise<string | undefined> {
    const rows = await this.#query('locate', this.#sql.locate, [checkUserId(userId)]);
    return (rows[0] as { node_id: string } | undefined)?.node_id;
  }

  async send(nodeId: string, message: PresenceMessage): Promise<void> {
    checkNodeId(NAME, nodeId);
    const json = encodeMessage(NAME, message);
    await this.#query('send', this.#sql.send, [channelOf(this.#options.tables, nodeId), nodeId, json]);
  }

  async leave(nodeId: string): Promise<void> {
    checkNodeId(NAME, nodeId);
    const incarnation = this.#incarnations.get(nodeId);
    await this.#query('leave', this.#sql.leave, [nodeId, incarnation?.token ?? null]);
    if (incarnation !== undefined && this.#incarnations.get(nodeId) === incarnation) {
      this.#incarnations.delete(nodeId);
      try {
        await this.#listener?.unlisten(incarnation.channel);
      } catch (error) {
        // Delivery already stopped (the incarnation is gone); the channel is dropped with its connection.
        this.#warn.warn('unlisten', `[${NAME}] leave: UNLISTEN failed`, error);
      }
    }
  }

  /**
   * Idempotent. Stops message delivery, closes the connection the presence opened for messages and, when it was
   * given a `url`, its pool. A client that was passed in stays open (its LISTENs are undone). Leases and user
   * records stay: `leave` first, or they run out with their lease.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#incarnations.clear();
      const results = await Promise.allSettled([this.#listener?.close(), this.#lifecycle.close()]);
      const failed = results.find((result) => result.status === 'rejected');
      if (failed !== undefined) throw this.#error('close', failed.reason);
    })();
    return this.#closing;
  }

  /** The token of this process's incarnation of `nodeId`, or null: the SQL then acts for the current one. */
  #tokenOf(nodeId: string): string | null {
    return this.#incarnations.get(nodeId)?.token ?? null;
  }

  #listenerFor(): Listener {
    if (this.#listener !== undefined) return this.#listener;
    const { source, clientOptions, connectTimeoutMs } = this.#options;
    const deliver = (channel: string, payload: string) => this.#deliver(channel, payload);
    const onLost = (error: unknown) =>
      this.#warn.warn(
        'lost',
        `[${NAME}] the given pg.Client lost its connection: presence messages stop. Pass a pg.Pool or a url ` +
          'so that the presence reconnects.',
        error === undefined ? undefined : this.#error('listen', error),
      );
    if (source.kind === 'url') {
      const open = ownClientLease(source.url, clientOptions, connectTimeoutMs);
      this.#listener = new PgListener(open, deliver, { reconnects: true, onLost });
    } else {
      const kind = listenerKind(source.client);
      if (kind === 'pglite') this.#listener = new PGliteListener(source.client, deliver);
      else if (kind === 'pool') {
        this.#listener = new PgListener(poolLease(source.client), deliver, { reconnects: true, onLost });
      } else {
        this.#listener = new PgListener(givenClientLease(source.client), deliver, {
          reconnects: false,
          onLost,
        });
      }
    }
    return this.#listener;
  }

  /** A notification: handed to its node's listener when it is for this process's incarnation of that node. */
  #deliver(channel: string, payload: string): void {
    const envelope = parseEnvelope(payload);
    if ('problem' in envelope) {
      const what = envelope.problem === 'json' ? 'is not JSON' : 'is not a presence message';
      this.#warn.warn(envelope.problem, `[${NAME}] ignored a notification on ${channel} that ${what}.`);
      return;
    }
    const incarnation = this.#incarnations.get(envelope.to);
    // For an earlier incarnation, or a node this process does not run (a hash collision): not for us.
    if (
      incarnation === undefined ||
      incarnation.channel !== channel ||
      incarnation.token !== envelope.token
    ) {
      return;
    }
    deliverMessage(incarnation.onMessage, envelope.message, (error) =>
      this.#warn.warn(
        'listener',
        `[${NAME}] a presence message listener threw; the message is dropped.`,
        error,
      ),
    );
  }

  async #client(operation: string): Promise<PostgresClient> {
    try {
      return await this.#lifecycle.client(operation);
    } catch (error) {
      throw this.#error(operation, error);
    }
  }

  /** Runs one statement, again when the database aborted it as a deadlock victim or serialization failure. */
  async #query(operation: string, text: string, values?: unknown[]): Promise<readonly unknown[]> {
    const client = await this.#client(operation);
    for (let attempt = 0; ; attempt++) {
      try {
        return (await client.query(text, values)).rows;
      } catch (error) {
        if (isTransient(error) && attempt < TRANSIENT_RETRIES) continue;
        throw this.#error(operation, error);
      }
    }
  }

  /** A driver error, wrapped without any password the presence knows; a missing table says to run setup(). */
  #error(operation: string, error: unknown): CageySessionsError {
    const secrets = passwordsOf(this.#options.source, this.#options.clientOptions);
    const wrapped = wrapDriverError(NAME, operation, error, secrets);
    if (!isUndefinedTable(error)) return wrapped;
    return new AdapterError(
      NAME,
      `${wrapped.message.replace(/^\[[^\]]*\] /, '')}. Run presence.setup() once to create the presence's tables.`,
      { code: wrapped.code, cause: wrapped.cause },
    );
  }
}

/** A user id in its stored (string) form: INVALID_USER_ID otherwise. */
function checkUserId(userId: unknown): string {
  if (typeof userId !== 'string') {
    throw new ValidationError(
      'INVALID_USER_ID',
      `[${NAME}] Invalid user id ${String(userId).slice(0, 40)}: the presence takes user ids in their stored (string) form.`,
    );
  }
  return userKey(userId);
}

/**
 * A `PostgresPresence` from options; without `client` and `url` it reads the URL from the `DATABASE_URL`
 * environment variable.
 */
export function createPostgresPresence(options: CreatePostgresPresenceOptions = {}): PostgresPresence {
  const { source } = resolvePresenceOptions(NAME, options, { fromEnvironment: true });
  return new PostgresPresence(
    (source.kind === 'url' ? { ...options, url: source.url } : options) as PostgresPresenceOptions,
  );
}
