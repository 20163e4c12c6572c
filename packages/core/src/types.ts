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

  /**
   * Optional: lists stored users a page at a time, in the store's own order (keyset on the primary key, `SCAN`
   * per Redis node, `_id` ranges). Pass the returned `cursor` to get the next page; `cursor: undefined` means
   * the listing is complete. Stable under concurrent writes: every user live for the whole listing is returned
   * exactly once (Redis: at least once, see the adapter's README); users created or deleted during it may or may
   * not appear; tombstones never do. `limit` is a hint: a page may hold fewer users (even none) before the end.
   */
  scan?(options?: ScanOptions): Promise<ScanPage>;

  /**
   * Optional: writes users with the versions they have elsewhere (migration, restore from an export). Each
   * record is written, with exactly its `version`, only when the store holds nothing for the user or holds an
   * older version (live or tombstone); otherwise its result is a conflict carrying the stored version (equal
   * version: already there). One result per record, in order, like `save`.
   */
  restore?(records: readonly RestoreRecord[]): Promise<SaveResult[]>;

  /** Releases what the adapter itself opened. A client that was passed in stays open. */
  close(): Promise<void>;
}

export interface ScanOptions {
  /** Where to go on: the `cursor` of the previous page; absent for the first page. */
  cursor?: string | undefined;
  /** How many users a page should hold at most (a hint; adapters document their default). */
  limit?: number | undefined;
}

export interface ScanPage {
  /** Users of this page with their data and version; `userId` in the stored (string) form, see `userKey`. */
  users: ScannedUser[];
  /** Opaque; pass it to the next `scan`. `undefined`: the listing is complete. */
  cursor: string | undefined;
}

export interface ScannedUser extends StoredUser {
  userId: string;
}

/** One user in a `restore` batch. */
export interface RestoreRecord {
  userId: UserId;
  userData: object;
  /** The version to store, a positive integer (the version the user has in the store it comes from). */
  version: number;
  /** As in `SaveRecord`: serialised `userData`, validated. */
  json?: string | undefined;
  /** As in `SaveRecord`: names the write attempt; stored with the record. */
  writeId?: string | undefined;
}

/**
 * Which node (game-server process) holds which user, across processes, and a way to reach a node. Core drives
 * the protocol (claims, handoffs, renewals, kicks); a presence only keeps the records atomically in its engine
 * and carries messages. Any presence works with any store adapter.
 *
 * The model: a node holds one lease for all its users (`join`, `renew`). A user's record names the node
 * incarnation that holds it. A user held by a node whose lease expired is free: `claim` takes it over and says
 * from whom (`previousOwner`), so the new holder fences the store before using the data.
 */
export interface Presence {
  /** Short name used in errors and logs, e.g. `redis`. */
  readonly name: string;

  /**
   * Starts a new incarnation of `nodeId` with a lease of `ttlMs` and delivers messages sent to `nodeId` to
   * `onMessage` until `leave`. Users claimed by an earlier incarnation of the same `nodeId` count as held by a
   * dead node. Resolves once messages are being delivered.
   */
  join(nodeId: string, ttlMs: number, onMessage: (message: PresenceMessage) => void): Promise<void>;

  /**
   * Extends the lease of the current incarnation of `nodeId` to `ttlMs` from now. Resolves `false` when the lease
   * had already expired (or the node is unknown): its users may have been taken, and the node must `join` again.
   */
  renew(nodeId: string, ttlMs: number): Promise<boolean>;

  /**
   * Atomically makes `nodeId` (its current incarnation) hold `userId` when nobody holds it, it holds it already,
   * or the holder's lease expired (`previousOwner` names that holder; also an earlier incarnation of `nodeId`).
   * Otherwise resolves `{ acquired: false, owner }` and changes nothing.
   */
  claim(userId: string, nodeId: string): Promise<ClaimResult>;

  /** Lets go of the users among `userIds` that `nodeId` (its current incarnation) holds; others are untouched. */
  release(nodeId: string, userIds: readonly string[]): Promise<void>;

  /** The node holding `userId` under a live lease, or `undefined`. */
  locate(userId: string): Promise<string | undefined>;

  /**
   * Delivers `message` to `nodeId` if it is joined. Best effort: a message may be lost (core asks again and
   * relies on leases), never delivered to another node, never altered.
   */
  send(nodeId: string, message: PresenceMessage): Promise<void>;

  /** Ends the current incarnation of `nodeId`: its lease and message delivery. Idempotent. */
  leave(nodeId: string): Promise<void>;

  /** Releases what the presence itself opened. A client that was passed in stays open. */
  close(): Promise<void>;
}

export type ClaimResult =
  | { acquired: true; previousOwner?: string | undefined }
  | { acquired: false; owner: string };

/** What nodes tell each other. `userId` in the stored (string) form; `from` is the sender's node id. */
export type PresenceMessage =
  /** `from` wants `userId`: store its newest data, end its session, release it. */
  | { type: 'release'; userId: string; from: string }
  /** `from` released `userId` (or never held it). */
  | { type: 'released'; userId: string; from: string };
