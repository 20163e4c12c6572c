import { randomBytes } from 'node:crypto';
import {
  AdapterError,
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
  checkPresenceMessage,
  deliverMessage,
  describeUserId,
  parseIncoming,
  WarnOnce,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import { startupNodePasswords } from './adapter.js';
import { ConnectionGate, closeClient, isCluster, openClient, whenReady } from './connection.js';
import { passwordsOf, URL_ENV_VAR } from './options.js';
import { encodeHolder, type Holder, PresenceKeys, parseHolder } from './presence-keys.js';
import {
  type CreateRedisPresenceOptions,
  type RedisPresenceOptions,
  resolvePresenceOptions,
} from './presence-options.js';
import {
  CLAIM_FREE,
  CLAIM_HELD,
  CLAIM_TAKEN,
  claimScript,
  leaveScript,
  releaseScript,
  renewScript,
  runScript,
} from './presence-scripts.js';
import { MessageSubscriber } from './presence-subscriber.js';

export const PRESENCE_NAME = 'redis';
/**
 * A claim retries when the record changed between its steps; each retry means another claimer won a race, and
 * the next round finds that winner alive. More rounds than this only happen when winners keep dying at once.
 */
const MAX_CLAIM_ROUNDS = 8;
/** Users per release script call: Redis serves nobody else while a script runs. */
const USERS_PER_RELEASE_SCRIPT = 500;

/** One incarnation of a node joined through this presence. */
interface Incarnation {
  /** The incarnation's user record value, `<token>:<nodeId>`. */
  record: string;
  token: string;
  onMessage: (message: PresenceMessage) => void;
}

/**
 * A `Presence` over Redis (standalone or Cluster): which game-server node holds which user, and messages
 * between nodes.
 *
 * - A node's lease is the key `<prefix>node:<nodeId>` holding its incarnation's random token, with a TTL (`PX`):
 *   expiry is Redis' clock, not the game server's. `renew` extends it only while it still holds the token.
 * - A user's record is `<prefix>user:<userId>` holding `<token>:<nodeId>`, without a TTL: a user is free when
 *   no record exists or the lease of the record's incarnation is gone.
 * - Messages go through PUBLISH on `<prefix>messages:<nodeId>`, received on a connection of the presence's own.
 */
export class RedisPresence implements Presence {
  readonly name = PRESENCE_NAME;
  /** The key prefix as given. */
  readonly prefix: string;
  /** The ioredis client commands go through. */
  readonly client: Redis | Cluster;
  readonly isCluster: boolean;
  /** How long a call of a presence-owned client waits for a connection; `undefined` for an injected client. */
  readonly connectTimeoutMs: number | undefined;
  readonly #lifecycle: ClientLifecycle<Redis | Cluster>;
  readonly #gate: ConnectionGate | undefined;
  readonly #secrets: (string | undefined)[];
  readonly #keys: PresenceKeys;
  readonly #warnings: WarnOnce;
  readonly #clientKeyPrefix: string;
  readonly #nodes = new Map<string, Incarnation>();
  #subscriber: MessageSubscriber | undefined;

  constructor(options: RedisPresenceOptions) {
    const resolved = resolvePresenceOptions(PRESENCE_NAME, options);
    this.prefix = resolved.prefix;
    this.#keys = new PresenceKeys(resolved.prefix);
    this.#warnings = new WarnOnce(resolved.log);
    this.connectTimeoutMs = resolved.connectTimeoutMs;
    this.#secrets = resolved.secrets;
    const { source } = resolved;
    if (source.kind === 'client') {
      this.client = source.client;
      this.#lifecycle = new ClientLifecycle(PRESENCE_NAME, { given: source.client });
    } else {
      // Without an offline queue, a call made while the connection is down fails at once instead of waiting in
      // ioredis: a Cluster whose nodes all went away after the gate saw it ready would otherwise hold the call
      // until the cluster is back, however long that takes. The gate already waits for a connection.
      const clientOptions = { enableOfflineQueue: false, ...resolved.clientOptions };
      const client = openClient(PRESENCE_NAME, source.url, clientOptions, this.connectTimeoutMs!);
      this.client = client;
      this.#gate = new ConnectionGate(client, this.connectTimeoutMs!);
      this.#lifecycle = new ClientLifecycle(PRESENCE_NAME, { open: () => client, release: closeClient });
      void this.#lifecycle.client('open');
    }
    this.#secrets.push(...passwordsOf(this.client.options), ...startupNodePasswords(this.client));
    this.isCluster = isCluster(this.client);
    this.#clientKeyPrefix = this.client.options.keyPrefix ?? '';
  }

  async join(nodeId: string, ttlMs: number, onMessage: (message: PresenceMessage) => void): Promise<void> {
    this.#lifecycle.assertOpen('join');
    checkNodeId(this.name, nodeId);
    const ttl = this.#checkTtl(ttlMs);
    if (typeof onMessage !== 'function') {
      throw new ValidationError('INVALID_OPTIONS', `[${this.name}] join: onMessage must be a function.`);
    }
    const token = randomBytes(16).toString('hex');
    const incarnation: Incarnation = { token, record: encodeHolder({ token, nodeId }), onMessage };
    const rejoining = this.#nodes.has(nodeId);
    const channel = this.#keys.channel(nodeId);
    try {
      await this.#ready('join');
      // Listening first: once the lease exists, other nodes may send to this one.
      await this.#subscriberFor().subscribe(channel, (payload) => this.#deliver(nodeId, payload));
      // A new token replaces the old one: every user of an earlier incarnation now counts as held by a dead node.
      await this.client.set(this.#keys.lease(nodeId), token, 'PX', ttl);
    } catch (error) {
      if (!rejoining) await this.#subscriber?.unsubscribe(channel).catch(() => {});
      throw this.#wrap('join', error);
    }
    this.#nodes.set(nodeId, incarnation);
  }

  async renew(nodeId: string, ttlMs: number): Promise<boolean> {
    this.#lifecycle.assertOpen('renew');
    checkNodeId(this.name, nodeId);
    const ttl = this.#checkTtl(ttlMs);
    const incarnation = this.#nodes.get(nodeId);
    if (incarnation === undefined) return false;
    try {
      await this.#ready('renew');
      const reply = await runScript(
        this.client,
        renewScript,
        [this.#keys.lease(nodeId)],
        [incarnation.token, String(ttl)],
      );
      return Number(reply) === 1;
    } catch (error) {
      throw this.#wrap('renew', error);
    }
  }

  /**
   * Each step is atomic on one key, since in a Cluster a user's key and its holder's lease key live in different
   * slots: (1) a script on the user key takes the user if it is free or answers who holds it; (2) a GET of that
   * holder's lease key; (3) when the lease does not hold the holder's token, a script on the user key replaces
   * the record only if it still holds exactly the record read in (1) (compare and set).
   *
   * Race-free because "this incarnation is dead" can never become false again: tokens are 128 random bits, issued
   * once per `join`; `renew` extends a lease key only while it holds its token; `join` writes a new token. So a
   * lease key that no longer holds a token (expired, deleted by `leave`, or overwritten by a re-join) never holds
   * it again, and the dead verdict of step (2) is still true at step (3). Step (3) fails when anyone changed the
   * record in between (another claimer won, or the holder released it); the claim then starts again and finds
   * the new state. Concurrent claimers of a free or dead user all go through one compare-and-set on one key:
   * exactly one of them wins, the others see the winner's live lease.
   *
   * Before that, the claimer's own lease is checked (one GET): a node whose lease expired is refused with
   * PRESENCE_UNAVAILABLE and writes nothing, since a record naming a dead incarnation would be free at once.
   */
  async claim(userId: string, nodeId: string): Promise<ClaimResult> {
    this.#lifecycle.assertOpen('claim');
    const key = this.#keys.user(userId);
    const incarnation = this.#joined('claim', nodeId);
    try {
      await this.#ready('claim');
      if (!(await this.#isLive({ nodeId, token: incarnation.token })))
        throw this.#unavailable('claim', nodeId);
      let deadRecord = '';
      for (let round = 0; round < MAX_CLAIM_ROUNDS; round++) {
        const reply = await runScript(this.client, claimScript, [key], [incarnation.record, deadRecord]);
        if (typeof reply !== 'string') {
          const status = Number(reply);
          if (status === CLAIM_FREE || status === CLAIM_HELD) return { acquired: true };
          if (status === CLAIM_TAKEN)
            return { acquired: true, previousOwner: parseHolder(deadRecord)!.nodeId };
          throw new Error(`unexpected reply from the claim script: ${String(reply).slice(0, 40)}`);
        }
        const holder = this.#holderIn(reply, userId);
        if (await this.#isLive(holder)) return { acquired: false, owner: holder.nodeId };
        deadRecord = reply;
      }
    } catch (error) {
      throw this.#wrap('claim', error);
    }
    throw new AdapterError(
      this.name,
      `claim failed: the record of user ${describeUserId(userId)} changed ${MAX_CLAIM_ROUNDS} times while it ` +
        'was being claimed; try again.',
    );
  }

  async release(nodeId: string, userIds: readonly string[]): Promise<void> {
    this.#lifecycle.assertOpen('release');
    checkNodeId(this.name, nodeId);
    if (!Array.isArray(userIds)) {
      throw new ValidationError('INVALID_USER_ID', `[${this.name}] release: userIds must be an array.`);
    }
    const keys = [...new Set(userIds.map((userId) => this.#keys.user(userId)))];
    const incarnation = this.#nodes.get(nodeId);
    // Without a current incarnation, this presence holds nothing for the node.
    if (incarnation === undefined || keys.length === 0) return;
    try {
      await this.#ready('release');
      await Promise.all(
        this.#bySlot(keys).map((group) => runScript(this.client, releaseScript, group, [incarnation.record])),
      );
    } catch (error) {
      throw this.#wrap('release', error);
    }
  }

  async locate(userId: string): Promise<string | undefined> {
    this.#lifecycle.assertOpen('locate');
    const key = this.#keys.user(userId);
    try {
      await this.#ready('locate');
      const value = await this.client.get(key);
      if (value === null) return undefined;
      const holder = this.#holderIn(value, userId);
      return (await this.#isLive(holder)) ? holder.nodeId : undefined;
    } catch (error) {
      throw this.#wrap('locate', error);
    }
  }

  async send(nodeId: string, message: PresenceMessage): Promise<void> {
    this.#lifecycle.assertOpen('send');
    checkNodeId(this.name, nodeId);
    checkPresenceMessage(this.name, message);
    let payload: string;
    try {
      payload = JSON.stringify(message);
    } catch (error) {
      throw new ValidationError(
        'INVALID_OPTIONS',
        `[${this.name}] Invalid presence message: not serialisable as JSON.`,
        { cause: error },
      );
    }
    try {
      await this.#ready('send');
      await this.#publish(this.#keys.channel(nodeId), payload);
    } catch (error) {
      throw this.#wrap('send', error);
    }
  }

  /**
   * Stops delivery at once, then deletes the lease (only if it still holds this incarnation's token) and
   * unsubscribes. When Redis cannot be reached this rejects, and the lease lapses at the end of its TTL.
   */
  async leave(nodeId: string): Promise<void> {
    this.#lifecycle.assertOpen('leave');
    checkNodeId(this.name, nodeId);
    const incarnation = this.#nodes.get(nodeId);
    if (incarnation === undefined) return;
    this.#nodes.delete(nodeId);
    try {
      await this.#ready('leave');
      await Promise.all([
        this.#subscriber?.unsubscribe(this.#keys.channel(nodeId)),
        runScript(this.client, leaveScript, [this.#keys.lease(nodeId)], [incarnation.token]),
      ]);
    } catch (error) {
      throw this.#wrap('leave', error);
    }
  }

  /**
   * Closes the message connection (always the presence's own) and the client when the presence opened it; a
   * client passed in stays open. Delivery stops at once. Leases are left to `leave` (or lapse at their TTL);
   * user records stay. Idempotent; calls afterwards fail with ADAPTER_CLOSED.
   */
  close(): Promise<void> {
    this.#nodes.clear();
    const subscriber = this.#subscriber?.close();
    const closing = this.#lifecycle.close();
    this.#gate?.close();
    return Promise.all([subscriber, closing]).then(() => {});
  }

  /**
   * PUBLISH. A Cluster client sends a command without keys to any node, and two messages published through two
   * nodes may arrive in either order; publishing through the master of the channel's slot keeps the messages
   * of one sender to one node in order (any node relays them cluster-wide).
   */
  async #publish(channel: string, payload: string): Promise<void> {
    const client = this.client;
    if (isCluster(client)) {
      const owner = client.slots[calculateSlot(channel)]?.[0];
      const node = client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
      if (node !== undefined) {
        await node.publish(channel, payload);
        return;
      }
    }
    await client.publish(channel, payload);
  }

  #subscriberFor(): MessageSubscriber {
    // A connection of the same kind and settings as the client: its duplicate (a caller's client stays theirs).
    if (this.#subscriber === undefined) {
      // close() may have run since the caller's last check: a connection opened now would never be closed.
      this.#lifecycle.assertOpen('join');
      const client = this.client;
      const connection = isCluster(client) ? client.duplicate() : client.duplicate();
      this.#subscriber = new MessageSubscriber(connection, this.connectTimeoutMs);
    }
    return this.#subscriber;
  }

  #deliver(nodeId: string, payload: string): void {
    const incarnation = this.#nodes.get(nodeId);
    if (incarnation === undefined) return;
    const message = parseIncoming(payload);
    if ('problem' in message) {
      this.#warnings.warn(
        message.problem,
        `[${this.name}] presence: ignored a message to node ${JSON.stringify(nodeId)} that is ` +
          (message.problem === 'json' ? 'not JSON' : 'not a presence message') +
          ' (reported once per kind).',
      );
      return;
    }
    deliverMessage(incarnation.onMessage, message, (error) => this.#listenerFailed(error));
  }

  #listenerFailed(error: unknown): void {
    this.#warnings.warn(
      'listener',
      `[${this.name}] presence: the onMessage listener threw; the message is dropped (reported once).`,
      error,
    );
  }

  #joined(operation: string, nodeId: string): Incarnation {
    checkNodeId(this.name, nodeId);
    const incarnation = this.#nodes.get(nodeId);
    if (incarnation !== undefined) return incarnation;
    throw this.#unavailable(operation, nodeId);
  }

  /** A call of a node that has not joined through this presence, or whose lease expired: it must join (again). */
  #unavailable(operation: string, nodeId: string): StateError {
    return new StateError(
      'PRESENCE_UNAVAILABLE',
      `[${this.name}] ${operation} failed: node ${JSON.stringify(nodeId)} has not joined through this presence, ` +
        'or its lease expired. Join again.',
    );
  }

  /** A lease TTL (core passes its `leaseTtl`), in whole milliseconds as PX takes them. Throws INVALID_OPTIONS. */
  #checkTtl(ttlMs: unknown): number {
    const ttl = checkLeaseTtl(this.name, ttlMs);
    if (Number.isInteger(ttl)) return ttl;
    throw new ValidationError(
      'INVALID_OPTIONS',
      `[${this.name}] Invalid lease ttl ${ttl}: expected whole milliseconds (Redis' PX takes an integer).`,
    );
  }

  /** The holder in a user record; a value the presence did not write is an error naming the user. */
  #holderIn(value: string, userId: string): Holder {
    const holder = parseHolder(value);
    if (holder !== undefined) return holder;
    throw new AdapterError(
      this.name,
      `the presence record of user ${describeUserId(userId)} holds a value this presence did not write. ` +
        'Remove it or use another prefix.',
    );
  }

  /** Whether the lease of the holder's incarnation is live (Redis drops an expired key: GET misses it). */
  async #isLive(holder: Holder): Promise<boolean> {
    return (await this.client.get(this.#keys.lease(holder.nodeId))) === holder.token;
  }

  /** Keys grouped for script calls: on a Cluster by slot (a script's keys must share one), in bounded chunks. */
  #bySlot(keys: string[]): string[][] {
    const groups = new Map<number, string[]>();
    for (const key of keys) {
      const slot = this.isCluster ? calculateSlot(this.#clientKeyPrefix + key) : 0;
      const group = groups.get(slot);
      if (group === undefined) groups.set(slot, [key]);
      else group.push(key);
    }
    const chunks: string[][] = [];
    for (const group of groups.values()) {
      for (let i = 0; i < group.length; i += USERS_PER_RELEASE_SCRIPT) {
        chunks.push(group.slice(i, i + USERS_PER_RELEASE_SCRIPT));
      }
    }
    return chunks;
  }

  /** See `whenReady`. */
  #ready(operation: string): Promise<void> {
    return whenReady(this.#lifecycle, this.#gate, operation);
  }

  #wrap(operation: string, error: unknown): Error {
    if (error instanceof Error && /enableOfflineQueue options is false/.test(error.message)) {
      return new AdapterError(
        this.name,
        `${operation} failed: no connection to Redis (the client is reconnecting); nothing was sent.`,
        { cause: wrapDriverError(this.name, operation, error, this.#secrets).cause },
      );
    }
    if (error instanceof Error && error.name === 'MaxRetriesPerRequestError') {
      return new AdapterError(
        this.name,
        `${operation} failed: the connection to Redis was lost or could not be made before a reply arrived; ` +
          'the client keeps reconnecting.',
        { cause: wrapDriverError(this.name, operation, error, this.#secrets).cause },
      );
    }
    return wrapDriverError(this.name, operation, error, this.#secrets);
  }
}

/**
 * Creates a `RedisPresence`. Without `client` or `url`, connects to `process.env.REDIS_URL` (a `redis://` or
 * `redis+cluster://` URL).
 */
export function createRedisPresence(options: CreateRedisPresenceOptions = {}): RedisPresence {
  const { source } = resolvePresenceOptions(PRESENCE_NAME, options, URL_ENV_VAR);
  return new RedisPresence(
    (source.kind === 'url' ? { ...options, url: source.url } : options) as RedisPresenceOptions,
  );
}
