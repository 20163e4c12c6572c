import { ConflictError, describeUserId, PersistenceError, toError, ValidationError } from './errors.js';
import type { PersistenceAdapter, SaveRecord, SaveResult, StoredUser, UserId } from './types.js';
import { checkExpectedVersion, userKey } from './user-data.js';

export interface MigratingAdapterOptions {
  /** The store players are moving away from: read for users not moved yet, written only by `delete`. */
  from: PersistenceAdapter;
  /** The store players are moving to: read first, and the only store `save` writes. Needs `restore`. */
  to: PersistenceAdapter;
}

/** Loads from `from` run at most this many at a time within one `save` batch. */
const LOAD_CONCURRENCY = 16;
/** An unconditional write that keeps meeting concurrent writers gives up (as a conflict) after this many tries. */
const UNCONDITIONAL_ATTEMPTS = 5;

/**
 * A `PersistenceAdapter` for moving players to another store while game servers keep running. Reads the new
 * store (`to`) and falls back to the old one (`from`) for users not moved yet; writes only to `to`; keeps each
 * user's versions growing across both: a user loaded from `from` at version n is first written to `to` at n + 1
 * through `to.restore` (conditional: a conflict when `to` already holds n + 1 or more), a user already in `to`
 * through `to.save` with its expected version. A backfill (`cagey-sessions migrate`) copying `from` to `to`
 * beside it never rolls a player back: its `restore` at n loses to any live write, which is always n + 1 or
 * newer. `delete` leaves a tombstone in both stores, so a backfill cannot bring the user back. The guarantees
 * and the remaining races are in the core README (Moving players to another store).
 */
export class MigratingAdapter implements PersistenceAdapter {
  readonly name: string;
  readonly maxBatchSize: number | undefined;
  readonly from: PersistenceAdapter;
  readonly to: PersistenceAdapter;

  constructor(options: MigratingAdapterOptions) {
    const { from, to } = checkOptions(options);
    this.from = from;
    this.to = to;
    this.name = `migrating(${from.name}->${to.name})`;
    this.maxBatchSize = to.maxBatchSize;
  }

  /** Runs `setup` of both stores (the new one needs its table; the old one is only read and tombstoned). */
  async setup(): Promise<void> {
    await this.to.setup?.();
    await this.from.setup?.();
  }

  /** The user from `to`, else from `from` (a user not moved yet); `undefined` when neither holds one. */
  async load(userId: UserId): Promise<StoredUser | undefined> {
    const moved = await this.to.load(userId);
    if (moved !== undefined) return moved;
    return this.from.load(userId);
  }

  /**
   * Writes to `to` only. A record whose user is in `to` is one `to.save` (the whole batch in one call); a user
   * only in `from` at the expected version is written with `to.restore` at that version + 1. Results follow
   * `save`'s contract: a conflict carries the version of whichever store holds the user.
   */
  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    const results: SaveResult[] = new Array(records.length);
    const versioned: number[] = [];
    const others: number[] = [];
    const seen = new Set<string>();
    records.forEach((record, index) => {
      let expected: number | undefined;
      try {
        expected = checkExpectedVersion(record.expectedVersion);
        const key = userKey(record.userId);
        // As every adapter does (see saveBatch): one record per user in a batch, the first one wins.
        if (seen.has(key)) {
          throw new ValidationError(
            'DUPLICATE_KEY',
            `[migrating] User ${describeUserId(record.userId)} appears more than once in one batch; only the first is written.`,
          );
        }
        seen.add(key);
      } catch (error) {
        results[index] = { status: 'error', error: toError(error) };
        return;
      }
      if (expected === undefined || expected === 0) others.push(index);
      else versioned.push(index);
    });

    // Users already moved: one call for all of them. A conflict at version 0 means `to` holds no live record:
    // the user may still be in `from` only.
    const notMoved: number[] = [];
    if (versioned.length > 0) {
      const saved = await this.to.save(versioned.map((index) => records[index]!));
      saved.forEach((result, i) => {
        const index = versioned[i]!;
        if (result.status === 'conflict' && result.currentVersion === 0) notMoved.push(index);
        else results[index] = result;
      });
    }

    await forEachLimited([...notMoved, ...others], LOAD_CONCURRENCY, async (index) => {
      results[index] = await this.#saveOne(records[index]!);
    });
    return results;
  }

  async #saveOne(record: SaveRecord): Promise<SaveResult> {
    try {
      if (record.expectedVersion === undefined) return await this.#saveUnconditional(record);
      if (record.expectedVersion === 0) return await this.#insert(record);
      return await this.#moveAndSave(record, record.expectedVersion);
    } catch (error) {
      // A record the store refused fails alone; anything else (a store unreachable) fails the batch, which core
      // retries with the same write ids, so a write that landed before its acknowledgement was lost is recognised.
      if (error instanceof ValidationError) return { status: 'error', error };
      throw error;
    }
  }

  /** A user `to` does not hold live, expected at `expected`: written at expected + 1 if `from` holds exactly that. */
  async #moveAndSave(record: SaveRecord, expected: number): Promise<SaveResult> {
    const old = await this.from.load(record.userId);
    if (old === undefined) return { status: 'conflict', currentVersion: 0 };
    if (old.version !== expected) return { status: 'conflict', currentVersion: old.version };
    return this.#restoreOne(record, expected + 1);
  }

  /** Insert only when neither store holds the user live. */
  async #insert(record: SaveRecord): Promise<SaveResult> {
    const old = await this.from.load(record.userId);
    if (old !== undefined) {
      const moved = await this.to.load(record.userId);
      return { status: 'conflict', currentVersion: moved?.version ?? old.version };
    }
    return this.#saveTo(record);
  }

  /** Last writer wins, but on top of the newest version in either store, so versions never go back. */
  async #saveUnconditional(record: SaveRecord): Promise<SaveResult> {
    let last: SaveResult = { status: 'conflict', currentVersion: 0 };
    for (let attempt = 0; attempt < UNCONDITIONAL_ATTEMPTS; attempt++) {
      const moved = await this.to.load(record.userId);
      if (moved !== undefined) {
        last = await this.#saveTo({ ...record, expectedVersion: moved.version });
      } else {
        const old = await this.from.load(record.userId);
        last =
          old === undefined
            ? await this.#saveTo({ ...record, expectedVersion: 0 })
            : await this.#restoreOne(record, old.version + 1);
      }
      if (last.status !== 'conflict') return last;
    }
    return last;
  }

  async #saveTo(record: SaveRecord): Promise<SaveResult> {
    const [result] = await this.to.save([record]);
    return result ?? contractError(this.to.name, 'save');
  }

  async #restoreOne(record: SaveRecord, version: number): Promise<SaveResult> {
    const [result] = await this.#restore([
      {
        userId: record.userId,
        userData: record.userData,
        version,
        json: record.json,
        writeId: record.writeId,
      },
    ]);
    return result ?? contractError(this.to.name, 'restore');
  }

  #restore(records: Parameters<NonNullable<PersistenceAdapter['restore']>>[0]): Promise<SaveResult[]> {
    // Checked in the constructor.
    return this.to.restore!(records);
  }

  /**
   * Deletes the user from both stores, leaving a tombstone in each. A user only in `from` at version n is first
   * put in `to` at n + 1 and deleted there (tombstone n + 2), so a backfill still holding n cannot restore it.
   * `to` is tombstoned before `from`: a delete that rejects part-way may have deleted the user in `to` only,
   * and loads then still find `from`'s copy until the delete is retried (it is idempotent).
   */
  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const expected = checkExpectedVersion(expectedVersion);
    for (let attempt = 0; attempt < UNCONDITIONAL_ATTEMPTS; attempt++) {
      const moved = await this.to.load(userId);
      if (moved !== undefined) {
        const deleted = await this.to.delete(userId, expected);
        await this.from.delete(userId);
        return deleted;
      }
      const old = await this.from.load(userId);
      if (old === undefined) return false;
      if (expected !== undefined && expected !== old.version) {
        throw new ConflictError(userId, expected, old.version);
      }
      const tombstoneBase = old.version + 1;
      const [restored] = await this.#restore([{ userId, userData: old.userData, version: tombstoneBase }]);
      if (restored?.status === 'error') throw restored.error;
      // A conflict: a live write moved the user meanwhile; the next round deletes it from `to`.
      if (restored?.status !== 'ok') continue;
      await this.to.delete(userId, tombstoneBase);
      await this.from.delete(userId);
      return true;
    }
    const current = (await this.load(userId))?.version ?? 0;
    throw new ConflictError(userId, expected ?? current, current);
  }

  /** Closes both adapters (each releases only what it opened itself). */
  async close(): Promise<void> {
    const outcomes = await Promise.allSettled([this.to.close(), this.from.close()]);
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  }
}

function checkOptions(options: unknown): MigratingAdapterOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalid('options are required: { from, to }.');
  }
  const { from, to } = options as Partial<MigratingAdapterOptions>;
  for (const [role, adapter] of [
    ['from', from],
    ['to', to],
  ] as const) {
    if (typeof adapter !== 'object' || adapter === null || typeof adapter.load !== 'function') {
      throw invalid(`${role} must be a PersistenceAdapter with a load() method.`);
    }
  }
  if (
    typeof to!.restore !== 'function' ||
    typeof to!.save !== 'function' ||
    typeof to!.delete !== 'function'
  ) {
    throw invalid(
      `to (${to!.name}) must implement save, delete and restore: restore writes a user moved from the old ` +
        'store with its version, so versions never go back. Use a version of the adapter that has restore().',
    );
  }
  if (typeof from!.delete !== 'function') {
    throw invalid(`from (${from!.name}) must implement delete, so a deleted user cannot come back from it.`);
  }
  if (from === to) throw invalid('from and to are the same adapter.');
  return { from: from!, to: to! };
}

function invalid(message: string): ValidationError {
  return new ValidationError('INVALID_OPTIONS', `[migrating] ${message}`);
}

function contractError(adapterName: string, method: string): never {
  throw new PersistenceError(
    'ADAPTER_CONTRACT',
    `Adapter "${adapterName}" returned no result from ${method}.`,
  );
}

async function forEachLimited<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
