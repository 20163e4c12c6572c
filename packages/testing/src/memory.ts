import {
  ConflictError,
  type PersistenceAdapter,
  type SaveRecord,
  type SaveResult,
  type StoredUser,
  type UserData,
  type UserId,
  userKey,
} from '@cagey-sessions/core';
import {
  ClientLifecycle,
  checkExpectedVersion,
  checkOptionKeys,
  decideWrite,
  invalidOptions,
  type PreparedRecord,
  parsePositiveInteger,
  saveBatch,
} from '@cagey-sessions/core/adapter-kit';

/** A stored user: JSON text for a live record, `undefined` for a tombstone left by delete. */
interface Entry {
  json: string | undefined;
  version: number;
  /** The write id of the write that stored `json`; undefined for a tombstone or a write without one. */
  writeId: string | undefined;
}

/**
 * The records behind one or more `MemoryAdapter`s. Several adapters over one store behave like several
 * processes over one database: they see each other's writes and race on versions.
 */
export class MemoryStore {
  readonly #entries = new Map<string, Entry>();
  #live = 0;

  /** Number of live users (tombstones excluded). */
  get size(): number {
    return this.#live;
  }

  /**
   * What the store holds for a user, read without any adapter: a fresh copy of the data and its version, or
   * `undefined` when the user is missing or deleted.
   */
  peek<TUserData extends object = UserData>(userId: UserId): StoredUser<TUserData> | undefined {
    const entry = this.#entries.get(userKey(userId));
    if (entry?.json === undefined) return undefined;
    return { userData: JSON.parse(entry.json) as TUserData, version: entry.version };
  }

  /** The user's version including a tombstone's (a deleted user keeps counting), 0 if never written. */
  versionOf(userId: UserId): number {
    return this.#entries.get(userKey(userId))?.version ?? 0;
  }

  /** Storage keys of the live users, in insertion order. */
  keys(): string[] {
    const keys: string[] = [];
    for (const [key, entry] of this.#entries) if (entry.json !== undefined) keys.push(key);
    return keys;
  }

  /** Forgets every record and tombstone. */
  clear(): void {
    this.#entries.clear();
    this.#live = 0;
  }

  /** @internal */
  read(key: string): StoredUser | undefined {
    const entry = this.#entries.get(key);
    if (entry?.json === undefined) return undefined;
    return { userData: JSON.parse(entry.json) as UserData, version: entry.version };
  }

  /** @internal Applies validated records (at most one per user, see `saveBatch`) in order. */
  write(prepared: readonly PreparedRecord[]): SaveResult[] {
    return prepared.map((record) => this.#writeOne(record, this.#entries.get(record.key)));
  }

  /** @internal */
  remove(key: string, userId: UserId, expectedVersion: number | undefined): boolean {
    const entry = this.#entries.get(key);
    if (entry?.json === undefined) return false;
    if (expectedVersion !== undefined && entry.version !== expectedVersion) {
      throw new ConflictError(userId, expectedVersion, entry.version);
    }
    entry.json = undefined;
    entry.version += 1;
    entry.writeId = undefined;
    this.#live -= 1;
    return true;
  }

  #writeOne(record: PreparedRecord, entry: Entry | undefined): SaveResult {
    const live = entry?.json !== undefined;
    const decision = decideWrite(record.expectedVersion, {
      version: entry?.version ?? 0,
      live,
      writeId: entry?.writeId,
    });
    if (!decision.write) {
      return {
        status: 'conflict',
        currentVersion: decision.currentVersion,
        currentWriteId: decision.currentWriteId,
      };
    }
    if (!live) this.#live += 1;
    this.#entries.set(record.key, { json: record.json, version: decision.version, writeId: record.writeId });
    return { status: 'ok', version: decision.version };
  }
}

export interface MemoryAdapterOptions {
  /** The records to work on; pass one store to several adapters to simulate several processes. Default: a new store. */
  store?: MemoryStore;
  /** Batch size core's pipeline uses with this adapter (its `maxBatchSize`). Default 1000. Larger batches are still accepted. */
  batchSize?: number;
}

/**
 * A complete in-process adapter with the same semantics as the database adapters (versions, tombstones,
 * conflicts, per-record errors). Data is stored as JSON text, so neither the caller's object nor a loaded copy
 * can change what is stored. For unit tests, examples and single-process development.
 */
export class MemoryAdapter implements PersistenceAdapter {
  readonly name = 'memory';
  readonly maxBatchSize: number;
  readonly store: MemoryStore;
  readonly #lifecycle: ClientLifecycle<MemoryStore>;

  constructor(options: MemoryAdapterOptions = {}) {
    checkOptionKeys(this.name, options, ['store', 'batchSize'], { maxBatchSize: 'batchSize' });
    const { store = new MemoryStore(), batchSize } = options;
    if (!(store instanceof MemoryStore)) throw invalidOptions(this.name, 'store must be a MemoryStore.');
    this.store = store;
    this.maxBatchSize = parsePositiveInteger(this.name, 'batchSize', batchSize, 1000);
    // The store is shared like a client the caller owns: closing this adapter leaves it to the others.
    this.#lifecycle = new ClientLifecycle(this.name, { given: store });
  }

  async load(userId: UserId): Promise<StoredUser | undefined> {
    const store = await this.#lifecycle.client('load');
    return store.read(userKey(userId));
  }

  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    const store = await this.#lifecycle.client('save');
    return saveBatch(this.name, records, (prepared) => store.write(prepared));
  }

  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const store = await this.#lifecycle.client('delete');
    return store.remove(userKey(userId), userId, checkExpectedVersion(expectedVersion));
  }

  /** Stops this adapter; the store and other adapters over it are unaffected. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}
