import {
  AdapterError,
  ConflictError,
  type PersistenceAdapter,
  type RestoreRecord,
  type SaveRecord,
  type SaveResult,
  type ScanOptions,
  type ScanPage,
  type StoredUser,
  type UserData,
  type UserId,
  userKey,
} from '@cagey-sessions/core';
import {
  ClientLifecycle,
  checkExpectedVersion,
  chunkByCountAndSize,
  describeUserId,
  type PreparedRecord,
  type PreparedRestoreRecord,
  passwordOfUrl,
  restoreBatch,
  saveBatch,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import { ConnectionGate, closeClient, isCluster, openClient, whenReady } from './connection.js';
import { encodeUserKey, keyPrefixOf } from './keys.js';
import {
  type CreateRedisAdapterOptions,
  passwordsOf,
  type RedisAdapterOptions,
  resolveOptions,
  URL_ENV_VAR,
} from './options.js';
import { KeyScanner } from './scan.js';
import {
  deleteScript,
  FOREIGN_VALUE,
  parseStoredValue,
  payloadOf,
  restoreScript,
  type Script,
  saveScript,
  scripts,
} from './scripts.js';

export const ADAPTER_NAME = 'redis';
/**
 * One script call writes up to this many users of one slot. Fewer, larger commands cost the client far less
 * than one command per user; the bounds keep each script short, since Redis serves nobody else while it runs.
 */
const KEYS_PER_SCRIPT = 100;
const BYTES_PER_SCRIPT = 512 * 1024;
/** Rounds of resending records whose command never ran (NOSCRIPT, or a Cluster slot that moved). */
const MAX_SEND_ROUNDS = 3;

/** A validated record of either batch kind. */
type Prepared = PreparedRecord | PreparedRestoreRecord;

/** How a batch kind is written: its script, and the per-record argument before the payload. */
interface BatchKind<P extends Prepared> {
  operation: 'save' | 'restore';
  script: Script;
  /** `save`: the expected version ('' for an unconditional write); `restore`: the version to store. */
  versionArgument(record: P): string;
}

const SAVE: BatchKind<PreparedRecord> = {
  operation: 'save',
  script: saveScript,
  versionArgument: (record) => (record.expectedVersion === undefined ? '' : String(record.expectedVersion)),
};

const RESTORE: BatchKind<PreparedRestoreRecord> = {
  operation: 'restore',
  script: restoreScript,
  versionArgument: (record) => String(record.version),
};

/**
 * Stores each user as one string key `<prefix><percent-encoded user key>` holding `<version>:<writeId>:<json>`
 * (`<version>:<json>` for a write without a write id), written by a Lua script that checks the version and
 * writes atomically on the server. A batch is sent as one pipeline per node (one pipeline on a standalone
 * server), users of one slot grouped into shared script calls.
 */
export class RedisAdapter implements PersistenceAdapter {
  readonly name = ADAPTER_NAME;
  /** Records per `save` call core's pipeline uses: the `batchSize` option. */
  readonly maxBatchSize: number;
  /** The key prefix as given (keys get a `:` after it when it does not end with one). */
  readonly prefix: string;
  /** Time to live of a written key in milliseconds, `undefined` when keys do not expire. */
  readonly ttlMs: number | undefined;
  /** The ioredis client the adapter talks through. */
  readonly client: Redis | Cluster;
  readonly isCluster: boolean;
  /** How long a call of an adapter-owned client waits for a connection; `undefined` for an injected client. */
  readonly connectTimeoutMs: number | undefined;
  /** The closed state, and the release of a client the adapter opened. */
  readonly #lifecycle: ClientLifecycle<Redis | Cluster>;
  /** Waits for an owned client's connection; `undefined` for an injected client, which keeps its own behaviour. */
  readonly #gate: ConnectionGate | undefined;
  /** Passwords the adapter knows, removed from every error it reports. */
  readonly #secrets: (string | undefined)[];
  /** What every key starts with: the prefix, ending with `:`. */
  readonly #keyPrefix: string;
  readonly #ttlArgument: string;
  /** Prepended by ioredis itself when the client was configured with `keyPrefix`; slots are computed with it. */
  readonly #clientKeyPrefix: string;
  #scriptsLoaded: Promise<void> | undefined;
  readonly #scanner: KeyScanner;

  constructor(options: RedisAdapterOptions) {
    const resolved = resolveOptions(ADAPTER_NAME, options);
    this.maxBatchSize = resolved.batchSize;
    this.prefix = resolved.prefix;
    this.#keyPrefix = keyPrefixOf(resolved.prefix);
    this.ttlMs = resolved.ttlMs;
    this.#ttlArgument = String(this.ttlMs ?? 0);
    this.connectTimeoutMs = resolved.connectTimeoutMs;
    // Known before the client exists, so that even a constructor error could not show them.
    this.#secrets = resolved.secrets;
    const { source } = resolved;
    if (source.kind === 'client') {
      this.client = source.client;
      this.#lifecycle = new ClientLifecycle(ADAPTER_NAME, { given: source.client });
    } else {
      const client = openClient(ADAPTER_NAME, source.url, resolved.clientOptions, this.connectTimeoutMs!);
      this.client = client;
      // Failures reach callers through rejected operations; the gate's error listener also keeps ioredis from
      // printing every reconnection attempt.
      this.#gate = new ConnectionGate(client, this.connectTimeoutMs!);
      this.#lifecycle = new ClientLifecycle(ADAPTER_NAME, { open: () => client, release: closeClient });
      // The client exists from here on (ioredis connects by itself): count it as opened, so that close()
      // closes it even when no call was ever made.
      void this.#lifecycle.client('open');
    }
    this.#secrets.push(...passwordsOf(this.client.options), ...startupNodePasswords(this.client));
    this.isCluster = isCluster(this.client);
    this.#clientKeyPrefix = this.client.options.keyPrefix ?? '';
    this.#scanner = new KeyScanner(this.client, this.#keyPrefix, this.#clientKeyPrefix);
  }

  /** The Redis key holding a user (without a `keyPrefix` the client itself may add). */
  keyFor(userId: UserId): string {
    return this.#keyPrefix + encodeUserKey(userKey(userId));
  }

  /** Loads the adapter's Lua scripts into the server (every master of a Cluster). Idempotent. */
  async setup(): Promise<void> {
    try {
      await this.#ready('setup');
      await this.#ensureScripts();
    } catch (error) {
      throw this.#wrap('setup', error);
    }
  }

  async load(userId: UserId): Promise<StoredUser | undefined> {
    this.#lifecycle.assertOpen('load');
    const key = this.keyFor(userId);
    let value: string | null;
    try {
      await this.#ready('load');
      value = await this.client.get(key);
    } catch (error) {
      throw this.#wrap('load', error);
    }
    if (value === null) return undefined;
    try {
      const stored = parseStoredValue(value);
      if (stored === undefined) return undefined;
      return { userData: JSON.parse(stored.json) as UserData, version: stored.version };
    } catch (error) {
      throw new AdapterError(
        this.name,
        `load failed: the key of user ${describeUserId(userId)} (${describeKey(key)}) holds a value this ` +
          'adapter did not write. Remove it or use another prefix.',
        { cause: error },
      );
    }
  }

  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    this.#lifecycle.assertOpen('save');
    return saveBatch(
      this.name,
      records,
      async (prepared) => {
        try {
          await this.#ready('save');
          return await this.#write(prepared, SAVE);
        } catch (error) {
          throw this.#explained('save', error);
        }
      },
      { secrets: this.#secrets },
    );
  }

  /**
   * Writes each record at exactly its version when its key holds nothing or an older version (live or
   * tombstone), atomically per key in a Lua script; otherwise its result is a conflict. One pipeline per node.
   */
  async restore(records: readonly RestoreRecord[]): Promise<SaveResult[]> {
    this.#lifecycle.assertOpen('restore');
    return restoreBatch(
      this.name,
      records,
      async (prepared) => {
        try {
          await this.#ready('restore');
          return await this.#write(prepared, RESTORE);
        } catch (error) {
          throw this.#explained('restore', error);
        }
      },
      { secrets: this.#secrets },
    );
  }

  /**
   * Lists live users with `SCAN MATCH <prefix>*` on each master in turn (address order), then reads their
   * values in one pipeline per node; tombstones are skipped. 1000 users per page unless `limit` says otherwise
   * (at most 10,000). `SCAN` may return a key more than once, so a user may be listed twice (at least once);
   * the cursor names the node, its `SCAN` cursor and the keys found but not yet listed.
   */
  async scan(options?: ScanOptions): Promise<ScanPage> {
    this.#lifecycle.assertOpen('scan');
    const request = this.#scanner.parse(options);
    try {
      await this.#ready('scan');
      return await this.#scanner.page(request);
    } catch (error) {
      throw this.#wrap('scan', error);
    }
  }

  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    this.#lifecycle.assertOpen('delete');
    const key = this.keyFor(userId);
    const expected = checkExpectedVersion(expectedVersion);
    let reply: unknown;
    try {
      await this.#ready('delete');
      await this.#ensureScripts();
      const run = () =>
        this.client.evalsha(
          deleteScript.sha,
          1,
          key,
          this.#ttlArgument,
          expected === undefined ? '' : String(expected),
        );
      try {
        reply = await run();
      } catch (error) {
        if (!isNoScript(error)) throw error;
        await this.#loadScripts();
        reply = await run();
      }
    } catch (error) {
      throw this.#wrap('delete', error, userId);
    }
    const answer = replyNumber(reply);
    if (answer === 1) return true;
    if (answer === 0) return false;
    if (answer !== undefined && answer < 0 && expected !== undefined) {
      throw new ConflictError(userId, expected, -answer);
    }
    throw new AdapterError(this.name, `delete failed: unexpected reply from the delete script.`);
  }

  /**
   * Closes the client when the adapter opened it; a client passed in stays open. Idempotent. A connected client
   * finishes what is in flight (QUIT); one that is not connected is dropped at once, and calls still waiting
   * for its connection fail with ADAPTER_CLOSED.
   */
  close(): Promise<void> {
    const closing = this.#lifecycle.close();
    this.#gate?.close();
    return closing;
  }

  /** See `whenReady`. */
  #ready(operation: string): Promise<void> {
    return whenReady(this.#lifecycle, this.#gate, operation);
  }

  /**
   * A driver error the adapter can say more about, as an `AdapterError` (without any password the adapter
   * knows): a value this adapter did not write, named by its user instead of the raw key; a connection lost
   * before the reply. Any other error is returned as it is.
   */
  #explained(operation: string, error: unknown, userId?: UserId): unknown {
    if (userId !== undefined && error instanceof Error && error.message.startsWith(FOREIGN_VALUE)) {
      return new AdapterError(
        this.name,
        `${operation} failed: the key of user ${describeUserId(userId)} holds a value this adapter did not ` +
          `write (${FOREIGN_VALUE}). Remove it or use another prefix.`,
        { cause: wrapDriverError(this.name, operation, error, this.#secrets).cause },
      );
    }
    if (error instanceof Error && error.name === 'MaxRetriesPerRequestError') {
      return new AdapterError(
        this.name,
        `${operation} failed: the connection to Redis was lost or could not be made before a reply arrived ` +
          '(a write may or may not have been applied); the client keeps reconnecting.',
        { cause: wrapDriverError(this.name, operation, error, this.#secrets).cause },
      );
    }
    return error;
  }

  /** A driver error as an `AdapterError` without any password the adapter knows. */
  #wrap(operation: string, error: unknown, userId?: UserId): Error {
    return wrapDriverError(this.name, operation, this.#explained(operation, error, userId), this.#secrets);
  }

  async #write<P extends Prepared>(prepared: P[], kind: BatchKind<P>): Promise<SaveResult[]> {
    await this.#ensureScripts();
    const keys = prepared.map((record) => this.#keyPrefix + encodeUserKey(record.key));
    const payloads = prepared.map((record) => payloadOf(record.json, record.writeId));
    const outcomes: Outcome[] = new Array(prepared.length);
    let pending = prepared.map((_, index) => index);
    const sent = pending;
    for (let round = 1; pending.length > 0; round++) {
      await this.#send(kind, pending, keys, payloads, prepared, outcomes);
      if (round === MAX_SEND_ROUNDS) break;
      const retry = pending.filter((index) => isRetriable(outcomes[index]));
      if (retry.length === 0) break;
      if (retry.some((index) => isNoScript(outcomes[index]))) await this.#loadScripts();
      if (retry.some((index) => isMoved(outcomes[index]))) await this.#refreshSlots();
      pending = retry;
    }
    // Only errors, none from the server: nothing reached Redis, so the whole batch failed.
    if (sent.every((index) => outcomes[index] instanceof Error && !isReplyError(outcomes[index]))) {
      throw outcomes[sent[0]!];
    }
    return prepared.map((record, index) => this.#result(kind.operation, record, outcomes[index]));
  }

  /** One record's result from its outcome. */
  #result(operation: string, record: Prepared, outcome: Outcome | undefined): SaveResult {
    if (outcome === undefined) {
      return {
        status: 'error',
        error: new AdapterError(
          this.name,
          `${operation} failed: no reply for the record of user ${describeUserId(record.userId)}.`,
        ),
      };
    }
    if (outcome instanceof Error) {
      return { status: 'error', error: this.#wrap(operation, outcome, record.userId) };
    }
    if (Array.isArray(outcome)) {
      return { status: 'conflict', currentVersion: -outcome[0], currentWriteId: outcome[1] };
    }
    if (outcome > 0) return { status: 'ok', version: outcome };
    return { status: 'conflict', currentVersion: outcome === 0 ? 0 : -outcome };
  }

  /** Sends the given records, one pipeline per node, and fills in their outcomes. */
  async #send<P extends Prepared>(
    kind: BatchKind<P>,
    indexes: number[],
    keys: string[],
    payloads: string[],
    prepared: P[],
    outcomes: Outcome[],
  ): Promise<void> {
    const pipelines = await this.#planPipelines(indexes, keys, prepared);
    await Promise.all(
      pipelines.map(async (chunks) => {
        const pipeline = this.client.pipeline();
        for (const chunk of chunks) {
          const args: string[] = new Array(chunk.length * 3 + 1);
          for (let i = 0; i < chunk.length; i++) args[i] = keys[chunk[i]!]!;
          args[chunk.length] = this.#ttlArgument;
          for (let i = 0; i < chunk.length; i++) {
            args[chunk.length + 1 + 2 * i] = kind.versionArgument(prepared[chunk[i]!]!);
            args[chunk.length + 2 + 2 * i] = payloads[chunk[i]!]!;
          }
          pipeline.evalsha(kind.script.sha, chunk.length, ...args);
        }
        let replies: [Error | null, unknown][] | null;
        try {
          replies = await pipeline.exec();
        } catch (error) {
          replies = null;
          for (const chunk of chunks) for (const index of chunk) outcomes[index] = toError(error);
        }
        if (replies === null) return;
        chunks.forEach((chunk, c) => {
          const [error, reply] = replies[c] ?? [new Error('the pipeline returned no reply'), undefined];
          for (let i = 0; i < chunk.length; i++) {
            const index = chunk[i]!;
            if (error) {
              outcomes[index] = error;
              continue;
            }
            outcomes[index] = toOutcome(Array.isArray(reply) ? reply[i] : undefined);
          }
        });
      }),
    );
  }

  /**
   * Splits records into script calls (chunks of one slot) grouped into pipelines (one per node). A standalone
   * server has no slots: everything goes into one pipeline.
   */
  async #planPipelines(indexes: number[], keys: string[], prepared: Prepared[]): Promise<number[][][]> {
    if (!this.isCluster) return [scriptCalls(indexes, prepared)];
    const cluster = this.client as Cluster;
    await waitForSlots(cluster);
    const bySlot = new Map<number, number[]>();
    for (const index of indexes) {
      const slot = calculateSlot(this.#clientKeyPrefix + keys[index]!);
      const group = bySlot.get(slot);
      if (group) group.push(index);
      else bySlot.set(slot, [index]);
    }
    // ioredis sends a pipeline to one node and refuses it unless every slot in it maps to the same node list.
    const byNode = new Map<string, number[][]>();
    for (const [slot, group] of bySlot) {
      const node = cluster.slots[slot]?.join(';') ?? '';
      const chunks = scriptCalls(group, prepared);
      const existing = byNode.get(node);
      if (existing) existing.push(...chunks);
      else byNode.set(node, chunks);
    }
    return [...byNode.values()];
  }

  #ensureScripts(): Promise<void> {
    this.#scriptsLoaded ??= this.#loadScripts().catch((error: unknown) => {
      this.#scriptsLoaded = undefined;
      throw error;
    });
    return this.#scriptsLoaded;
  }

  /**
   * SCRIPT LOAD into the server, or every master of a Cluster (a script is per node). A master that cannot be
   * reached does not stop the others: its records fail on their own, and NOSCRIPT reloads there later.
   */
  async #loadScripts(): Promise<void> {
    let nodes: (Redis | Cluster)[] = [this.client];
    if (this.isCluster) {
      const cluster = this.client as Cluster;
      await waitForSlots(cluster);
      nodes = cluster.nodes('master');
    }
    const loads = await Promise.allSettled(
      nodes.flatMap((node) => scripts.map((script: Script) => node.script('LOAD', script.lua))),
    );
    const failed = loads.find((load) => load.status === 'rejected');
    if (failed && loads.every((load) => load.status === 'rejected')) throw failed.reason;
  }

  async #refreshSlots(): Promise<void> {
    if (!this.isCluster) return;
    const cluster = this.client as Cluster;
    await new Promise<void>((resolve) => cluster.refreshSlotsCache(() => resolve()));
  }
}

/**
 * Creates a `RedisAdapter`. Without `client` or `url`, connects to `process.env.REDIS_URL` (a `redis://` or
 * `redis+cluster://` URL).
 */
export function createRedisAdapter(options: CreateRedisAdapterOptions = {}): RedisAdapter {
  const { source } = resolveOptions(ADAPTER_NAME, options, URL_ENV_VAR);
  return new RedisAdapter(
    (source.kind === 'url' ? { ...options, url: source.url } : options) as RedisAdapterOptions,
  );
}

/**
 * A record's outcome: new version (> 0), minus the current version on conflict (<= 0), the pair [minus the
 * current version, its write id] on conflict with a record that has one, or its error.
 */
type Outcome = number | [number, string] | Error;

/** One key's entry in the save script's reply, as an outcome. */
function toOutcome(value: unknown): Outcome {
  if (value instanceof Error) return value;
  const version = replyNumber(value);
  if (version !== undefined) return version;
  if (Array.isArray(value) && value.length === 2 && typeof value[1] === 'string') {
    const current = replyNumber(value[0]);
    if (current !== undefined) return [current, value[1]];
  }
  return new Error('unexpected reply from the save script');
}

/**
 * A number in a script reply: the scripts answer versions as decimal strings (exact in every client), and a
 * client may answer small integers as numbers or, with `stringNumbers`, as strings.
 */
function replyNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
  if (typeof value === 'string' && /^-?\d{1,16}$/.test(value)) return Number(value);
  return undefined;
}

/** A key for a message: quoted, and cut when long (a user id may take up to 512 bytes, more once encoded). */
function describeKey(key: string): string {
  return key.length > 100 ? `${JSON.stringify(key.slice(0, 100))}…` : JSON.stringify(key);
}

/** Passwords given with a Cluster's startup nodes (objects with a password, or URLs). */
export function startupNodePasswords(client: Redis | Cluster): (string | undefined)[] {
  const nodes = (client as { startupNodes?: unknown }).startupNodes;
  if (!Array.isArray(nodes)) return [];
  return nodes.flatMap((node: unknown) =>
    typeof node === 'string' ? [passwordOfUrl(node)] : passwordsOf(node),
  );
}

/** Records (by index) of one slot or server, split into script calls of bounded size. */
function scriptCalls(indexes: number[], prepared: Prepared[]): number[][] {
  return chunkByCountAndSize(indexes, (index) => prepared[index]!.json.length, {
    maxCount: KEYS_PER_SCRIPT,
    maxSize: BYTES_PER_SCRIPT,
  });
}

/** Waits until a Cluster client knows its slot map (an empty pipeline waits for readiness the same way). */
async function waitForSlots(cluster: Cluster): Promise<void> {
  if (cluster.slots.length > 0) return;
  if (cluster.status === 'end') throw new Error('Connection is closed.');
  await cluster.pipeline().exec();
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

function isReplyError(error: Error): boolean {
  return error.name === 'ReplyError';
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

function isMoved(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('MOVED');
}

/** The command never ran, so sending it again cannot write twice. */
function isRetriable(outcome: Outcome | undefined): boolean {
  return (
    outcome instanceof Error &&
    (isNoScript(outcome) || isMoved(outcome) || outcome.message.startsWith('TRYAGAIN'))
  );
}
