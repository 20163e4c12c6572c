/**
 * A user's identity: a non-empty string or a safe integer. `5` and `"5"` name the same stored record: stores
 * key users by the decimal string form (see `userKey`).
 */
export type UserId = string | number;

/** JSON-compatible player data. The root is always a plain object. */
export type UserData = Record<string, unknown>;

/** What `load` returns for a stored user. */
export interface StoredUser<TUserData extends object = UserData> {
  userData: TUserData;
  /** Positive integer, incremented by every successful write (and by delete, see `PersistenceAdapter.delete`). */
  version: number;
}

/** One write in a `save` batch. */
export interface SaveRecord {
  userId: UserId;
  userData: object;
  /**
   * - absent: write unconditionally (last writer wins); the new version is the stored version + 1.
   * - `0`: insert only if no live record exists.
   * - `n`: write only if the stored version is exactly `n`; otherwise the result is a conflict.
   */
  expectedVersion?: number | undefined;
  /**
   * `userData` already serialised and validated (`serializeUserData`). Core's pipeline sets it so a write is a
   * snapshot taken when the batch was formed; adapters use it instead of serialising `userData` again.
   */
  json?: string | undefined;
  /**
   * Names this write attempt; unique per attempt, at most 64 characters of `[A-Za-z0-9._-]`. The adapter stores
   * it with the record (replacing the previous one) and reports the stored one in a conflict
   * (`currentWriteId`). That is how core recognises its own write whose acknowledgement was lost (a connection
   * cut after the store committed): the retry meets a "conflict" whose stored write id is the lost write's, so
   * it is not a conflict at all. Core's pipeline always sets it; absent, the record stores no write id.
   */
  writeId?: string | undefined;
}

export type SaveResult =
  | { status: 'ok'; version: number }
  /** `currentVersion` is the stored version, 0 when no live record exists. The stored record was not touched. */
  | {
      status: 'conflict';
      currentVersion: number;
      /** The write id stored with the live record (see `SaveRecord.writeId`); undefined when it has none. */
      currentWriteId?: string | undefined;
    }
  /** This record alone failed (the store rejected its value); its neighbours in the batch are unaffected. */
  | { status: 'error'; error: Error };

/**
 * The storage contract every adapter honours. Adapters know no sessions, timers or retries: they translate one
 * batch into as few round trips as their store allows and report a result per record.
 */
export interface PersistenceAdapter {
  /** Short name used in errors and logs, e.g. `postgres`. */
  readonly name: string;
  /** The largest batch the adapter writes well in one round trip. Core's pipeline uses it as its batch size. */
  readonly maxBatchSize?: number;

  /** Creates tables, indexes or scripts the adapter needs. Idempotent; safe when several processes run it at once. */
  setup?(): Promise<void>;

  /** The stored user, or `undefined` when none (or only a tombstone) exists. */
  load(userId: UserId): Promise<StoredUser | undefined>;

  /**
   * Writes a batch; resolves with one result per record, in order. Rejects only when the whole batch failed
   * (for example the connection is down); then nothing in it may be assumed written.
   */
  save(records: readonly SaveRecord[]): Promise<SaveResult[]>;

  /**
   * Deletes the user. Idempotent: resolves `false` when there was nothing to delete. The delete leaves a
   * tombstone holding the next version, so versions of a user only ever grow and a writer holding a version
   * from before the delete can never succeed. With `expectedVersion`, rejects with a `ConflictError` when a
   * live record with a different version exists.
   */
  delete(userId: UserId, expectedVersion?: number): Promise<boolean>;

  /** Releases what the adapter itself opened. A client that was passed in stays open. */
  close(): Promise<void>;
}
