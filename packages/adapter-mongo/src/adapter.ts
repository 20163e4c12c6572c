import { randomBytes } from 'node:crypto';
import {
  AdapterError,
  ConflictError,
  type Duration,
  type PersistenceAdapter,
  type SaveRecord,
  type SaveResult,
  type StoredUser,
  type UserId,
  userKey,
  ValidationError,
} from '@cagey-sessions/core';
import {
  checkExpectedVersion,
  checkIdentifier,
  describeUserId,
  type PreparedRecord,
  passwordOfUrl,
  saveBatch,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import {
  type AnyBulkWriteOperation,
  type Collection,
  type Db,
  MongoBulkWriteError,
  MongoClient,
  type MongoClientOptions,
  MongoServerError,
} from 'mongodb';
import { toDocumentData, type UserDocument } from './documents.js';

const NAME = 'mongo';
const DEFAULT_COLLECTION = 'cagey_user_data';
const DEFAULT_MAX_BATCH_SIZE = 1000;
/** Rounds of a save before a record that keeps losing races gets an error result. */
const MAX_ROUNDS = 10;
const DUPLICATE_KEY = 11000;
const NAMESPACE_EXISTS = 48;
/** How long an owned client waits for a server to select or connect to before an operation fails. */
const DEFAULT_CONNECT_TIMEOUT = '5s';
/**
 * Marks the write ids the adapter makes up for records that carry none. `~` is outside the characters a caller's
 * write id may use, so the two never collide, and a made-up one is never reported as `currentWriteId`.
 */
const INTERNAL_WRITE_ID = '~';

interface CommonOptions {
  /** Collection holding one document per user. Letters, digits, underscores. Default `cagey_user_data`. */
  collection?: string;
  /** Largest batch core sends in one `save` (core uses it as its batch size). Default 1000. */
  maxBatchSize?: number;
  /**
   * Largest number of update operations in one `bulkWrite` (inserts are not counted); a save with more is sent
   * as several bulkWrites, one after the other. Default: no limit, one `bulkWrite` per save. FerretDB 1.x needs
   * 50 or less (see the README).
   */
  maxUpdatesPerBulkWrite?: number;
}

/** Options of `MongoAdapter`: an existing client (or a promise of one), a `Db`, or a connection URL. */
export type MongoAdapterOptions = CommonOptions &
  (
    | {
        /** A client you own: the adapter never closes it. */
        client: MongoClient | Promise<MongoClient>;
        /** Database name; default: the client's default database (the one in its URL, else `test`). */
        database?: string;
        db?: never;
        url?: never;
        clientOptions?: never;
        connectTimeout?: never;
      }
    | {
        /** A database handle you own: the adapter never closes its client. */
        db: Db;
        client?: never;
        url?: never;
        database?: never;
        clientOptions?: never;
        connectTimeout?: never;
      }
    | {
        /** `mongodb://` or `mongodb+srv://` URL; the adapter opens the client and closes it in `close()`. */
        url: string;
        /** Options for the `MongoClient` the adapter opens. */
        clientOptions?: MongoClientOptions;
        /**
         * How long an operation waits for an unreachable server before it fails (milliseconds or an `ms`
         * string such as `'5s'`); the client keeps reconnecting in the background. Sets the client's
         * `serverSelectionTimeoutMS` and `connectTimeoutMS` unless `clientOptions` or the URL set them.
         * Default `'5s'`.
         */
        connectTimeout?: Duration;
        /** Database name; default: the one in the URL, else `test`. */
        database?: string;
        client?: never;
        db?: never;
      }
  );

/** What a record's next write attempt does, decided from its expected version or the stored state. */
type Plan =
  | { kind: 'insert' }
  /** A live document at version `from`. */
  | { kind: 'update'; from: number }
  /** A tombstone at version `from`. */
  | { kind: 'revive'; from: number };

interface Pending {
  /** Position in the list `write` was given. */
  slot: number;
  userId: UserId;
  key: string;
  data: Record<string, unknown>;
  /** The caller's expectedVersion; undefined for an unconditional write. */
  expected: number | undefined;
  plan: Plan;
  /** Stored with every attempt of this record: the record's own write id, else one the adapter made up. */
  writeId: string;
  /** Send in a bulkWrite of its own: it was in a bulkWrite that a write error cut short (see `#send`). */
  alone: boolean;
}

/** The stored state of a user as far as a save needs it. */
type State =
  | { kind: 'missing' }
  | { kind: 'live'; version: number; writeId?: string }
  | { kind: 'tombstone'; version: number };

/**
 * Persistence over MongoDB: one document per user, `{ _id, data, version, updatedAt, writeId }`, written with
 * version-conditioned operations in one unordered `bulkWrite` per batch.
 */
export class MongoAdapter implements PersistenceAdapter {
  readonly name = NAME;
  readonly maxBatchSize: number;
  readonly collectionName: string;
  readonly #maxUpdates: number;
  readonly #owned: MongoClient | undefined;
  #collection: Promise<Collection<UserDocument>> | undefined;
  readonly #resolveCollection: () => Promise<Collection<UserDocument>>;
  /** The passwords this adapter knows (URL, `clientOptions.auth`), removed from every error it raises. */
  readonly #secrets: readonly string[];
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: MongoAdapterOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOptions('pass { client }, { db } or { url }.');
    }
    this.collectionName = checkIdentifier(NAME, 'collection', options.collection ?? DEFAULT_COLLECTION, 120);
    this.maxBatchSize = positiveInteger('maxBatchSize', options.maxBatchSize, DEFAULT_MAX_BATCH_SIZE);
    this.#maxUpdates = positiveInteger(
      'maxUpdatesPerBulkWrite',
      options.maxUpdatesPerBulkWrite,
      Number.POSITIVE_INFINITY,
    );
    const given = [options.client, options.db, options.url].filter((value) => value !== undefined).length;
    if (given !== 1) throw invalidOptions('pass exactly one of { client }, { db } or { url }.');
    const database = options.database === undefined ? undefined : checkDatabaseName(options.database);
    const name = this.collectionName;
    if (options.url !== undefined) {
      if (typeof options.url !== 'string' || !/^mongodb(\+srv)?:\/\//.test(options.url)) {
        throw invalidOptions('url must start with mongodb:// or mongodb+srv://.');
      }
      this.#secrets = secretsOf(options.url, options.clientOptions);
      const connectTimeout = durationMs('connectTimeout', options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT);
      let client: MongoClient;
      try {
        client = new MongoClient(
          options.url,
          withTimeouts(options.url, options.clientOptions, connectTimeout),
        );
      } catch (error) {
        // The driver's parse errors can quote the URL; the wrapper masks credentials in it.
        throw wrapDriverError(NAME, 'connect', error, this.#secrets);
      }
      this.#owned = client;
      this.#resolveCollection = async () => {
        // Connected here rather than by the driver on first use: a client whose first connection failed is
        // left with a closed topology by the driver's automatic connect, and every later call fails with
        // "Topology is closed". An explicit connect() after a failed one starts afresh (see `#open`).
        await client.connect();
        return client.db(database).collection<UserDocument>(name);
      };
    } else {
      this.#secrets = [];
      if (options.connectTimeout !== undefined) {
        throw invalidOptions(
          'connectTimeout applies to the client the adapter opens from { url }; set serverSelectionTimeoutMS ' +
            'and connectTimeoutMS on your own client instead.',
        );
      }
      this.#owned = undefined;
      if (options.db !== undefined) {
        const db = options.db;
        this.#resolveCollection = async () => db.collection<UserDocument>(name);
      } else {
        const client = options.client;
        this.#resolveCollection = async () => (await client).db(database).collection<UserDocument>(name);
      }
    }
  }

  /** Creates the collection (the `_id` index is all the adapter needs). Idempotent and safe to run concurrently. */
  async setup(): Promise<void> {
    const collection = await this.#open('setup');
    try {
      await collection.db.createCollection(this.collectionName);
    } catch (error) {
      if (error instanceof MongoServerError && error.code === NAMESPACE_EXISTS) return;
      // A concurrent setup may have created it between the server's check and its own create.
      if (await this.#collectionExists(collection)) return;
      throw this.#wrap('setup', error);
    }
  }

  async load(userId: UserId): Promise<StoredUser | undefined> {
    const key = userKey(userId);
    const collection = await this.#open('load');
    let document: UserDocument | null;
    try {
      document = await collection.findOne({ _id: key }, { projection: { data: 1, version: 1, deleted: 1 } });
    } catch (error) {
      throw this.#wrap('load', error);
    }
    if (document === null || document.deleted === true || document.data === undefined) return undefined;
    return { userData: document.data, version: document.version };
  }

  save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    if (this.#closed) return Promise.reject(closedError('save'));
    return saveBatch(NAME, records, async (prepared) => {
      try {
        return await this.#write(prepared);
      } catch (error) {
        throw this.#wrap('save', error);
      }
    });
  }

  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const key = userKey(userId);
    const expected = checkExpectedVersion(expectedVersion);
    const collection = await this.#open('delete');
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const filter =
          expected === undefined
            ? { _id: key, deleted: { $ne: true as const } }
            : { _id: key, version: expected, deleted: { $ne: true as const } };
        const result = await collection.updateOne(filter, {
          $set: { deleted: true, updatedAt: new Date() },
          $unset: { data: '', writeId: '' },
          $inc: { version: 1 },
        });
        if (result.matchedCount === 1) return true;
        if (expected === undefined) return false;
        const state = stateOf(await collection.findOne({ _id: key }, { projection: STATE_PROJECTION }));
        if (state.kind !== 'live') return false;
        if (state.version !== expected) throw new ConflictError(userId, expected, state.version);
        // The record was at the expected version after all: it changed between the two calls; go again.
      }
    } catch (error) {
      throw this.#wrap('delete', error);
    }
    throw new AdapterError(
      NAME,
      `delete of user ${describeUserId(userId)} kept racing concurrent writes; retry it.`,
    );
  }

  /** Closes the client when the adapter opened it from a URL; an injected client or Db stays open. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      if (this.#owned === undefined) return;
      try {
        await this.#owned.close();
      } catch (error) {
        throw this.#wrap('close', error);
      }
    })();
    return this.#closing;
  }

  /** A driver error as an `AdapterError`, with this adapter's passwords removed from it. */
  #wrap(operation: string, error: unknown): Error {
    return wrapDriverError(NAME, operation, error, this.#secrets);
  }

  async #open(operation: string): Promise<Collection<UserDocument>> {
    if (this.#closed) throw closedError(operation);
    this.#collection ??= this.#resolveCollection();
    try {
      return await this.#collection;
    } catch (error) {
      // A rejected client promise is retried on the next call rather than remembered forever.
      this.#collection = undefined;
      throw this.#wrap(operation, error);
    }
  }

  async #collectionExists(collection: Collection<UserDocument>): Promise<boolean> {
    try {
      const found = await collection.db
        .listCollections({ name: this.collectionName }, { nameOnly: true })
        .toArray();
      return found.length > 0;
    } catch {
      return false;
    }
  }

  /**
   * Writes validated records. Each round sends one operation per pending record (in one unordered bulkWrite,
   * or in chunks of `maxUpdatesPerBulkWrite` updates), then learns each record's outcome:
   * - the inserts and the updates all succeeded when the bulkWrite's inserted and matched counts say so (the
   *   common case: one round trip in all);
   * - otherwise one `find` reads the stored versions and `writeId`s, which tell apart "written by us",
   *   "conflict" and "not written yet" (a duplicate key, a server that stops a bulk at its first error, a
   *   connection lost in the middle of a bulkWrite: see `#send`).
   * Records that need another attempt (a tombstone to revive, an unconditional write that lost a race, a write
   * that never reached the server) go to the next round, under the same write id. Nothing is retried blindly:
   * a conditional write that finds another version is a conflict, and nothing is reported written that the
   * server did not confirm or the read did not find.
   */
  async #write(prepared: PreparedRecord[]): Promise<SaveResult[]> {
    const results: (SaveResult | undefined)[] = new Array(prepared.length);
    const batchId = randomBytes(6).toString('base64url');
    let pending: Pending[] = [];
    for (let slot = 0; slot < prepared.length; slot++) {
      const record = prepared[slot]!;
      let data: Record<string, unknown>;
      try {
        data = toDocumentData(record.json);
      } catch (error) {
        results[slot] = { status: 'error', error: error as Error };
        continue;
      }
      const expected = record.expectedVersion;
      const plan: Plan =
        expected === undefined || expected === 0 ? { kind: 'insert' } : { kind: 'update', from: expected };
      pending.push({
        slot,
        userId: record.userId,
        key: record.key,
        data,
        expected,
        plan,
        writeId: record.writeId ?? `${INTERNAL_WRITE_ID}${batchId}.${slot}`,
        alone: false,
      });
    }
    if (pending.length === 0) return results as SaveResult[];

    const collection = await this.#open('save');
    const unconditional = pending.filter((entry) => entry.expected === undefined);
    if (unconditional.length > 0) {
      // An unconditional write still reports the version it made, so it writes conditionally on what it read.
      const states = await readStates(
        collection,
        unconditional.map((entry) => entry.key),
      );
      for (const entry of unconditional) entry.plan = planFor(states.get(entry.key) ?? MISSING);
    }

    for (let round = 0; round < MAX_ROUNDS && pending.length > 0; round++) {
      const outcome = await this.#send(collection, pending, new Date(), round === 0);

      const toRead: Pending[] = [];
      for (let i = 0; i < pending.length; i++) {
        const entry = pending[i]!;
        const status = outcome[i]!;
        if (status.kind === 'ok') results[entry.slot] = { status: 'ok', version: newVersion(entry.plan) };
        else if (status.kind === 'error') results[entry.slot] = { status: 'error', error: status.error };
        else {
          entry.alone = status.kind === 'suspect';
          toRead.push(entry);
        }
      }
      if (toRead.length === 0) {
        pending = [];
        break;
      }

      let states: Map<string, State>;
      try {
        states = await readStates(
          collection,
          toRead.map((entry) => entry.key),
        );
      } catch (error) {
        // Some of these may have been written, but nothing proves it: they fail, each with its own result.
        const wrapped = this.#wrap('save (reading back writes whose outcome is unknown)', error);
        for (const entry of toRead) results[entry.slot] = { status: 'error', error: wrapped };
        pending = [];
        break;
      }
      const next: Pending[] = [];
      for (const entry of toRead) {
        const state = states.get(entry.key) ?? MISSING;
        const decided = decide(entry, state);
        if (decided === undefined) next.push(entry);
        else results[entry.slot] = decided;
      }
      pending = next;
    }
    for (const entry of pending) {
      results[entry.slot] = {
        status: 'error',
        error: new AdapterError(
          NAME,
          `save of user ${describeUserId(entry.userId)} lost ${MAX_ROUNDS} races with concurrent writers; retry it.`,
        ),
      };
    }
    return results as SaveResult[];
  }

  /**
   * Sends one operation per pending record and classifies each: ok, error, unknown (needs a read) or suspect
   * (unknown, and in a bulkWrite cut short by an update's write error). Throws only when the first bulkWrite of
   * the first round fails before anything is sent, so that a rejected save wrote nothing.
   *
   * An operation is ok only when the server confirmed it: the bulkWrite's inserted (matched) count equals the
   * number of inserts (updates) that have no write error of their own. The counts cover exactly the commands
   * the server answered, so a bulkWrite cut short by a lost connection or a server gone away (the driver then
   * throws a `MongoBulkWriteError` without write errors) leaves the operations of the unanswered command
   * unknown, to be read back. A write concern error makes every operation without an error of its own unknown:
   * the counts it comes with do not say the writes will stay.
   *
   * A write error's index is exact on MongoDB, which also carries on with the other operations of an unordered
   * bulkWrite. FerretDB 1.x stops an update command at its first failing statement and reports index 0, so an
   * update error only makes its bulkWrite's updates unknown; the ones still unwritten are then sent one per
   * bulkWrite, where an error can only be their own.
   */
  async #send(
    collection: Collection<UserDocument>,
    pending: Pending[],
    updatedAt: Date,
    mayThrow: boolean,
  ): Promise<Outcome[]> {
    const outcome: Outcome[] = new Array(pending.length);
    const chunks: number[][] = [];
    let open: number[] = [];
    let openUpdates = 0;
    for (let i = 0; i < pending.length; i++) {
      if (pending[i]!.alone) {
        chunks.push([i]);
        continue;
      }
      open.push(i);
      if (pending[i]!.plan.kind !== 'insert' && ++openUpdates === this.#maxUpdates) {
        chunks.push(open);
        open = [];
        openUpdates = 0;
      }
    }
    if (open.length > 0) chunks.push(open);

    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      const operations = chunk.map((i) => operationFor(pending[i]!, updatedAt));
      let inserted: number;
      let matched: number;
      let countsHold = true;
      const errors = new Map<number, Error>();
      try {
        const result = await collection.bulkWrite(operations, { ordered: false });
        inserted = result.insertedCount;
        matched = result.matchedCount;
      } catch (error) {
        if (!(error instanceof MongoBulkWriteError)) {
          // Thrown before any command was sent (no connection yet, an invalid operation): nothing was written.
          if (mayThrow && c === 0) throw error;
          // Earlier bulkWrites were written; this one's records fail on their own.
          const wrapped = this.#wrap('save', error);
          for (const i of chunk) outcome[i] = { kind: 'error', error: wrapped };
          continue;
        }
        inserted = countOf(error, 'insertedCount');
        matched = countOf(error, 'matchedCount');
        countsHold = !hasWriteConcernError(error);
        for (const writeError of writeErrorsOf(error)) errors.set(writeError.index, writeErrorOf(writeError));
      }
      let inserts = 0;
      let updates = 0;
      let updateFailed = false;
      for (let j = 0; j < chunk.length; j++) {
        const i = chunk[j]!;
        const error = errors.get(j);
        if (pending[i]!.plan.kind === 'insert') {
          // Inserts are checked one by one on every server, so an insert's error is its own.
          if (error === undefined) {
            inserts++;
            outcome[i] = { kind: 'ok' };
          } else if (isDuplicateKey(error)) outcome[i] = { kind: 'unknown' };
          else outcome[i] = { kind: 'error', error };
        } else if (error !== undefined && chunk.length === 1) {
          outcome[i] = { kind: 'error', error };
        } else if (error !== undefined) {
          updateFailed = true;
          outcome[i] = { kind: 'unknown' };
        } else {
          updates++;
          outcome[i] = { kind: 'ok' };
        }
      }
      if (!countsHold || inserted < inserts) {
        // Which inserts were written is not in a bulkWrite's result: all of them are read.
        for (const i of chunk) {
          if (pending[i]!.plan.kind === 'insert' && outcome[i]!.kind === 'ok')
            outcome[i] = { kind: 'unknown' };
        }
      }
      if (!countsHold || updateFailed || matched < updates) {
        // Which updates matched is not in a bulkWrite's result either.
        for (const i of chunk) {
          if (pending[i]!.plan.kind === 'insert') continue;
          if (updateFailed) outcome[i] = { kind: 'suspect' };
          else if (outcome[i]!.kind === 'ok') outcome[i] = { kind: 'unknown' };
        }
      }
    }
    return outcome;
  }
}

type Outcome = { kind: 'ok' } | { kind: 'error'; error: Error } | { kind: 'unknown' } | { kind: 'suspect' };

const MISSING: State = { kind: 'missing' };
const STATE_PROJECTION = { version: 1, writeId: 1, deleted: 1 } as const;

/** Creates a `MongoAdapter`; without a client, Db or URL it connects to `MONGODB_URI`. */
export function createMongoAdapter(options?: Partial<MongoAdapterOptions>): MongoAdapter {
  const given = options ?? {};
  if (given.client === undefined && given.db === undefined && given.url === undefined) {
    const url = process.env.MONGODB_URI;
    if (!url) {
      throw invalidOptions(
        'pass { client }, { db } or { url }, or set the MONGODB_URI environment variable.',
      );
    }
    return new MongoAdapter({ ...given, url } as MongoAdapterOptions);
  }
  return new MongoAdapter(given as MongoAdapterOptions);
}

function operationFor(entry: Pending, updatedAt: Date): AnyBulkWriteOperation<UserDocument> {
  const { key, data, plan, writeId } = entry;
  switch (plan.kind) {
    case 'insert':
      return { insertOne: { document: { _id: key, data, version: 1, updatedAt, writeId } } };
    case 'update':
      return {
        updateOne: {
          filter: { _id: key, version: plan.from, deleted: { $ne: true } },
          // `data` is replaced whole as a value: its keys were checked, and a $set value is never an operator.
          update: { $set: { data, version: plan.from + 1, updatedAt, writeId } },
        },
      };
    case 'revive':
      return {
        updateOne: {
          filter: { _id: key, version: plan.from, deleted: true },
          update: { $set: { data, version: plan.from + 1, updatedAt, writeId }, $unset: { deleted: '' } },
        },
      };
  }
}

function newVersion(plan: Plan): number {
  return plan.kind === 'insert' ? 1 : plan.from + 1;
}

function planFor(state: State): Plan {
  if (state.kind === 'missing') return { kind: 'insert' };
  return { kind: state.kind === 'live' ? 'update' : 'revive', from: state.version };
}

/**
 * The result of a record whose write did not plainly succeed, given the stored state read afterwards; undefined
 * when it needs another round (with `entry.plan` updated). A record found stored under its own write id was
 * written by this save (perhaps by an attempt whose answer was lost): its result is the stored version.
 */
function decide(entry: Pending, state: State): SaveResult | undefined {
  if (state.kind === 'live' && state.writeId === entry.writeId) {
    return { status: 'ok', version: state.version };
  }
  const expected = entry.expected;
  if (expected === undefined) {
    entry.plan = planFor(state);
    return undefined;
  }
  if (expected === 0) {
    if (state.kind === 'live') return conflict(state);
    entry.plan = planFor(state);
    return undefined;
  }
  if (state.kind !== 'live') return { status: 'conflict', currentVersion: 0, currentWriteId: undefined };
  // Still at the expected version: the update never ran (a server that stopped the bulk early, a command that
  // never reached it); send it again.
  if (state.version === expected) return undefined;
  // Another writer's version. (If ours was applied and then overwritten before this read, this is reported as
  // a conflict too: the stored data is someone else's either way.)
  return conflict(state);
}

function conflict(state: { version: number; writeId?: string | undefined }): SaveResult {
  return { status: 'conflict', currentVersion: state.version, currentWriteId: callerWriteId(state.writeId) };
}

/** A stored write id as the caller knows it: the ones the adapter made up are not reported. */
function callerWriteId(writeId: string | undefined): string | undefined {
  return typeof writeId === 'string' && !writeId.startsWith(INTERNAL_WRITE_ID) ? writeId : undefined;
}

async function readStates(collection: Collection<UserDocument>, keys: string[]): Promise<Map<string, State>> {
  const documents = await collection
    .find({ _id: { $in: keys } }, { projection: STATE_PROJECTION, batchSize: Math.max(keys.length, 1) })
    .toArray();
  const states = new Map<string, State>();
  for (const document of documents) states.set(document._id, stateOf(document));
  return states;
}

function stateOf(document: Pick<UserDocument, 'version' | 'writeId' | 'deleted'> | null): State {
  if (document === null) return MISSING;
  if (document.deleted === true) return { kind: 'tombstone', version: document.version };
  return { kind: 'live', version: document.version, writeId: document.writeId };
}

/** A count from the result a `MongoBulkWriteError` carries: what the commands the server answered did. */
function countOf(error: MongoBulkWriteError, count: 'insertedCount' | 'matchedCount'): number {
  const value = (error.result as Partial<Record<typeof count, unknown>> | undefined)?.[count];
  return typeof value === 'number' ? value : 0;
}

/** The per-operation errors of every command the server answered (also when a later one failed as a whole). */
function writeErrorsOf(error: MongoBulkWriteError): { code: number; errmsg?: string; index: number }[] {
  const fromResult = error.result?.getWriteErrors?.();
  if (Array.isArray(fromResult) && fromResult.length > 0) return fromResult;
  const own = error.writeErrors as unknown;
  if (Array.isArray(own)) return own;
  return own === undefined || own === null ? [] : [own as { code: number; errmsg?: string; index: number }];
}

function hasWriteConcernError(error: MongoBulkWriteError): boolean {
  return (
    error.err !== undefined ||
    error.writeConcernError !== undefined ||
    error.result?.getWriteConcernError?.() !== undefined
  );
}

function writeErrorOf(writeError: { code: number; errmsg?: string; index: number }): Error {
  // Servers may quote the whole rejected value (FerretDB does): keep the message readable in a log line.
  let message = writeError.errmsg ?? 'write error';
  if (message.length > 300) message = `${message.slice(0, 300)}…`;
  return new AdapterError(NAME, `the server rejected this record (code ${writeError.code}): ${message}`, {
    cause: writeError,
  });
}

function isDuplicateKey(error: Error): boolean {
  return (error.cause as { code?: unknown } | undefined)?.code === DUPLICATE_KEY;
}

/** The passwords of a URL and of `clientOptions.auth`, for `wrapDriverError`. */
function secretsOf(url: string, clientOptions: MongoClientOptions | undefined): string[] {
  const secrets: string[] = [];
  const fromUrl = passwordOfUrl(url);
  if (fromUrl !== undefined) secrets.push(fromUrl);
  const fromOptions = clientOptions?.auth?.password;
  if (typeof fromOptions === 'string' && fromOptions !== '') secrets.push(fromOptions);
  return secrets;
}

const TIMEOUT_OPTIONS = ['serverSelectionTimeoutMS', 'connectTimeoutMS'] as const;

/** `clientOptions` with `connectTimeout` filled in for each timeout neither they nor the URL set. */
function withTimeouts(
  url: string,
  clientOptions: MongoClientOptions | undefined,
  connectTimeout: number,
): MongoClientOptions {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1).toLowerCase() : '';
  const inUrl = new Set(query.split('&').map((pair) => pair.split('=')[0]));
  const options: MongoClientOptions = { ...clientOptions };
  for (const name of TIMEOUT_OPTIONS) {
    if (options[name] === undefined && !inUrl.has(name.toLowerCase())) options[name] = connectTimeout;
  }
  return options;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  msec: 1,
  msecs: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
};

/** A positive duration in whole milliseconds, from a number of milliseconds or an `ms` string (`'5s'`). */
function durationMs(what: string, value: unknown): number {
  let milliseconds = Number.NaN;
  if (typeof value === 'number') milliseconds = value;
  else if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(value);
    const unit = DURATION_UNITS[(match?.[2] || 'ms').toLowerCase()];
    if (match !== null && unit !== undefined) milliseconds = Number(match[1]) * unit;
  }
  if (Number.isFinite(milliseconds) && milliseconds >= 1 && milliseconds <= 2 ** 31 - 1) {
    return Math.round(milliseconds);
  }
  const shown = typeof value === 'string' ? JSON.stringify(value).slice(0, 40) : String(value);
  throw invalidOptions(
    `${what} must be a duration such as 5000 or '5s' (1 ms to about 24 days), got ${shown}.`,
  );
}

function closedError(operation: string): AdapterError {
  return new AdapterError(NAME, `${operation}: the adapter is closed`, { code: 'ADAPTER_CLOSED' });
}

function invalidOptions(message: string): ValidationError {
  return new ValidationError('INVALID_OPTIONS', `[${NAME}] ${message}`);
}

function positiveInteger(what: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw invalidOptions(`${what} must be a positive integer, got ${String(value)}.`);
}

/** MongoDB's database-name rules: no `/\. "$*<>:|?` or NUL, at most 63 characters. */
function checkDatabaseName(value: unknown): string {
  if (
    typeof value === 'string' &&
    /^[^/\\. "$*<>:|?]{1,63}$/.test(value) &&
    !value.includes(String.fromCharCode(0))
  ) {
    return value;
  }
  throw invalidOptions(
    `Invalid database ${JSON.stringify(String(value)).slice(0, 80)}: 1 to 63 characters, none of /\\. "$*<>:|? or NUL.`,
  );
}
