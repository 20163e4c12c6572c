import {
  ConflictError,
  type PersistenceAdapter,
  type RestoreRecord,
  type SaveRecord,
  type SaveResult,
  type ScannedUser,
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
  checkOptionKeys,
  decideRestore,
  decideWrite,
  encodeCursor,
  invalidOptions,
  type PreparedRecord,
  type PreparedRestoreRecord,
  parsePositiveInteger,
  parseScanOptions,
  restoreBatch,
  saveBatch,
  type WriteDecision,
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
  /** Every key (tombstones' too) in code-unit order, for `scan`; rebuilt after a new key was added. */
  #sortedKeys: string[] | undefined;

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
    this.#sortedKeys = undefined;
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

  /** @internal Applies validated restore records (at most one per user, see `restoreBatch`) in order. */
  restore(prepared: readonly PreparedRestoreRecord[]): SaveResult[] {
    return prepared.map((record) => {
      const entry = this.#entries.get(record.key);
      const decision = decideRestore(record.version, {
        version: entry?.version ?? 0,
        live: entry?.json !== undefined,
        writeId: entry?.writeId,
      });
      return this.#apply(record, entry, decision);
    });
  }

  /**
   * @internal Up to `limit` live users whose keys come after `after` (all users when undefined), in key order,
   * and the key the next page starts after; `undefined` once the last key was passed.
   */
  list(after: string | undefined, limit: number): { users: ScannedUser[]; next: string | undefined } {
    this.#sortedKeys ??= [...this.#entries.keys()].sort();
    const keys = this.#sortedKeys;
    const users: ScannedUser[] = [];
    let index = after === undefined ? 0 : firstIndexAfter(keys, after);
    for (; index < keys.length && users.length < limit; index++) {
      const key = keys[index]!;
      const entry = this.#entries.get(key);
      if (entry?.json === undefined) continue;
      users.push({ userId: key, userData: JSON.parse(entry.json) as UserData, version: entry.version });
    }
    return { users, next: index < keys.length ? keys[index - 1] : undefined };
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
    const decision = decideWrite(record.expectedVersion, {
      version: entry?.version ?? 0,
      live: entry?.json !== undefined,
      writeId: entry?.writeId,
    });
    return this.#apply(record, entry, decision);
  }

  #apply(
    record: { key: string; json: string; writeId: string | undefined },
    entry: Entry | undefined,
    decision: WriteDecision,
  ): SaveResult {
    if (!decision.write) {
      return {
        status: 'conflict',
        currentVersion: decision.currentVersion,
        currentWriteId: decision.currentWriteId,
      };
    }
    if (entry?.json === undefined) this.#live += 1;
    if (entry === undefined) this.#sortedKeys = undefined;
    this.#entries.set(record.key, { json: record.json, version: decision.version, writeId: record.writeId });
    return { status: 'ok', version: decision.version };
  }
}

/** The index of the first of the sorted `keys` that comes after `key` (binary search). */
function firstIndexAfter(keys: readonly string[], key: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (keys[middle]! <= key) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Users in a `scan` page when the caller gives no `limit`. */
const MEMORY_SCAN_LIMIT = 1000;
/** The most users a `scan` page holds; a larger `limit` is lowered to this. */
const MEMORY_SCAN_MAX_LIMIT = 10_000;

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

  /**
   * Lists live users in the code-unit order of their keys (keyset paging: the cursor holds the last key), 1000
   * per page unless `limit` says otherwise (at most 10 000). Every user live for the whole listing is returned
   * exactly once, whatever is written or deleted meanwhile.
   */
  async scan(options?: ScanOptions): Promise<ScanPage> {
    const store = await this.#lifecycle.client('scan');
    const { position, limit } = parseScanOptions(this.name, options, {
      defaultLimit: MEMORY_SCAN_LIMIT,
      maxLimit: MEMORY_SCAN_MAX_LIMIT,
      readPosition: (key) => (typeof key === 'string' && key !== '' ? key : undefined),
    });
    const { users, next } = store.list(position, limit);
    return { users, cursor: next === undefined ? undefined : encodeCursor(this.name, next) };
  }

  async restore(records: readonly RestoreRecord[]): Promise<SaveResult[]> {
    const store = await this.#lifecycle.client('restore');
    return restoreBatch(this.name, records, (prepared) => store.restore(prepared));
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
