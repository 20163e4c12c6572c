import {
  AdapterError,
  ConflictError,
  type PersistenceAdapter,
  type RestoreRecord,
  type SaveRecord,
  type SaveResult,
  type ScannedUser,
  type ScanOptions,
  type ScanPage,
  type StoredUser,
  type UserId,
  userKey,
} from '@cagey-sessions/core';
import {
  ClientLifecycle,
  checkExpectedVersion,
  describeUserId,
  encodeCursor,
  parseScanOptions,
  restoreBatch,
  saveBatch,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import { type Collection, MongoClient, MongoServerError } from 'mongodb';
import { MAX_ROUNDS, type WriteContext, writeRecords } from './bulk-write.js';
import { STORED_VERSION_PROJECTION, storedVersionOf, type UserDocument } from './documents.js';
import {
  type CreateMongoAdapterOptions,
  type MongoAdapterOptions,
  resolveOptions,
  URL_ENV_VAR,
} from './options.js';

export const ADAPTER_NAME = 'mongo';
const NAMESPACE_EXISTS = 48;
/** Users in a `scan` page when the caller gives no `limit`. */
export const DEFAULT_SCAN_LIMIT = 1000;
/** The most users a `scan` page holds; a larger `limit` is lowered to this. */
export const MAX_SCAN_LIMIT = 10_000;

/** What the adapter opens its database from: a `MongoClient`, or the `Db` the caller passed. */
type Databases = Pick<MongoClient, 'db'>;

/**
 * Persistence over MongoDB: one document per user, `{ _id, data, version, updatedAt, writeId }`, written with
 * version-conditioned operations in one unordered `bulkWrite` per batch.
 */
export class MongoAdapter implements PersistenceAdapter {
  readonly name = ADAPTER_NAME;
  /** Records per `save` call (the `batchSize` option): core's pipeline uses it as its batch size. */
  readonly maxBatchSize: number;
  /** The collection's name, as given. */
  readonly collection: string;
  readonly #database: string | undefined;
  readonly #maxUpdatesPerBulkWrite: number;
  readonly #lifecycle: ClientLifecycle<Databases>;
  /** The passwords this adapter knows (URL, `clientOptions.auth`), removed from every error it raises. */
  readonly #secrets: readonly string[];

  constructor(options: MongoAdapterOptions) {
    const { collection, batchSize, maxUpdatesPerBulkWrite, source } = resolveOptions(ADAPTER_NAME, options);
    this.collection = collection;
    this.maxBatchSize = batchSize;
    this.#maxUpdatesPerBulkWrite = maxUpdatesPerBulkWrite;
    this.#secrets = source.kind === 'url' ? source.secrets : [];
    this.#database = source.kind === 'db' ? undefined : source.database;
    if (source.kind === 'url') {
      let client: MongoClient;
      try {
        client = new MongoClient(source.url, source.clientOptions);
      } catch (error) {
        // The driver's parse errors can quote the URL; the wrapper masks credentials in it.
        throw this.#wrap('connect', error);
      }
      this.#lifecycle = new ClientLifecycle<Databases>(ADAPTER_NAME, {
        // Connected here rather than by the driver on first use: a client whose first connection failed is
        // left with a closed topology by the driver's automatic connect, and every later call fails with
        // "Topology is closed". An explicit connect() after a failed one starts afresh.
        open: async () => await client.connect(),
        release: async () => await client.close(),
      });
    } else if (source.kind === 'client') {
      this.#lifecycle = new ClientLifecycle<Databases>(ADAPTER_NAME, { given: source.client });
    } else {
      const { db } = source;
      this.#lifecycle = new ClientLifecycle<Databases>(ADAPTER_NAME, { given: { db: () => db } });
    }
  }

  /** @deprecated Renamed to `collection`. */
  get collectionName(): string {
    return this.collection;
  }

  /** Creates the collection (the `_id` index is all the adapter needs). Idempotent and safe to run concurrently. */
  async setup(): Promise<void> {
    const collection = await this.#open('setup');
    try {
      await collection.db.createCollection(this.collection);
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

  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    this.#lifecycle.assertOpen('save');
    return await saveBatch(
      ADAPTER_NAME,
      records,
      (prepared) => writeRecords(prepared, this.#writeContext('save')),
      { secrets: this.#secrets },
    );
  }

  /**
   * Writes each record at exactly its version where the collection holds no document for the user or one
   * (live or tombstone) of a lower version; otherwise its result is a conflict. One `find` reads the stored
   * versions of the batch (a conflict needs no write), then one unordered bulkWrite writes the rest, each
   * operation conditioned on the version read: an insert where no document was (a duplicate key is a race,
   * settled by reading again), an update of exactly that version otherwise.
   */
  async restore(records: readonly RestoreRecord[]): Promise<SaveResult[]> {
    this.#lifecycle.assertOpen('restore');
    return await restoreBatch(
      ADAPTER_NAME,
      records,
      (prepared) => writeRecords(prepared, this.#writeContext('restore')),
      { secrets: this.#secrets },
    );
  }

  /**
   * Lists live users in `_id` order (the server's binary string order), `limit` per page (default 1000, at most
   * 10,000): one `find({ _id: { $gt: <cursor> } })` sorted on `_id` with a limit per page, a range on the `_id`
   * index. The cursor holds the last `_id` listed, so every user live for the whole listing is listed exactly
   * once whatever is written meanwhile.
   */
  async scan(options?: ScanOptions): Promise<ScanPage> {
    const { position, limit } = parseScanOptions(ADAPTER_NAME, options, {
      defaultLimit: DEFAULT_SCAN_LIMIT,
      maxLimit: MAX_SCAN_LIMIT,
      readPosition: (key) => (typeof key === 'string' && key !== '' ? key : undefined),
    });
    const collection = await this.#open('scan');
    // Tombstones are filtered while the `_id` index is walked, so pages hold live users only.
    const live = { deleted: { $ne: true as const } };
    let documents: UserDocument[];
    try {
      documents = await collection
        .find(position === undefined ? live : { _id: { $gt: position }, ...live }, {
          projection: { data: 1, version: 1, deleted: 1 },
          sort: { _id: 1 },
          limit,
          batchSize: limit,
        })
        .toArray();
    } catch (error) {
      throw this.#wrap('scan', error);
    }
    const users: ScannedUser[] = [];
    for (const document of documents) {
      if (document.data === undefined) continue;
      users.push({ userId: document._id, userData: document.data, version: document.version });
    }
    // A short page is the last one; a full one may be followed by an empty page.
    const last = documents.length === limit ? documents.at(-1)?._id : undefined;
    return { users, cursor: last === undefined ? undefined : encodeCursor(ADAPTER_NAME, last) };
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
        const stored = storedVersionOf(
          await collection.findOne({ _id: key }, { projection: STORED_VERSION_PROJECTION }),
        );
        if (!stored.live) return false;
        if (stored.version !== expected) throw new ConflictError(userId, expected, stored.version);
        // The record was at the expected version after all: it changed between the two calls; go again.
      }
    } catch (error) {
      throw this.#wrap('delete', error);
    }
    throw new AdapterError(
      ADAPTER_NAME,
      `delete of user ${describeUserId(userId)} kept racing concurrent writes; retry it.`,
    );
  }

  /** Closes the client when the adapter opened it from a URL; an injected client or Db stays open. */
  async close(): Promise<void> {
    try {
      await this.#lifecycle.close();
    } catch (error) {
      throw this.#wrap('close', error);
    }
  }

  #writeContext(operation: 'save' | 'restore'): WriteContext {
    return {
      adapterName: ADAPTER_NAME,
      maxUpdatesPerBulkWrite: this.#maxUpdatesPerBulkWrite,
      open: () => this.#open(operation),
      wrap: (op, error) => this.#wrap(op, error),
    };
  }

  /** A driver error as an `AdapterError`, with this adapter's passwords removed from it. */
  #wrap(operation: string, error: unknown): Error {
    return wrapDriverError(ADAPTER_NAME, operation, error, this.#secrets);
  }

  /** The collection for `operation`, opening the adapter's own client on first use. */
  async #open(operation: string): Promise<Collection<UserDocument>> {
    let databases: Databases;
    try {
      databases = await this.#lifecycle.client(operation);
    } catch (error) {
      throw this.#wrap(operation, error);
    }
    return databases.db(this.#database).collection<UserDocument>(this.collection);
  }

  async #collectionExists(collection: Collection<UserDocument>): Promise<boolean> {
    try {
      const found = await collection.db
        .listCollections({ name: this.collection }, { nameOnly: true })
        .toArray();
      return found.length > 0;
    } catch {
      return false;
    }
  }
}

/** Creates a `MongoAdapter`; without `client`, `db` and `url` it connects to the URL in `MONGODB_URI`. */
export function createMongoAdapter(options: CreateMongoAdapterOptions = {}): MongoAdapter {
  const { source } = resolveOptions(ADAPTER_NAME, options, URL_ENV_VAR);
  return new MongoAdapter(
    (source.kind === 'url' ? { ...options, url: source.url } : options) as MongoAdapterOptions,
  );
}
