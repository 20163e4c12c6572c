import type { UserId } from './types.js';

/** Every error this library throws carries one of these stable codes. */
export type ErrorCode =
  | 'INVALID_OPTIONS'
  | 'INVALID_USER_ID'
  | 'INVALID_USER_DATA'
  | 'INVALID_VERSION'
  | 'INVALID_KEY'
  | 'INVALID_CURSOR'
  | 'DUPLICATE_KEY'
  | 'USER_IN_SESSION'
  | 'ALREADY_IDENTIFIED'
  | 'NOT_IDENTIFIED'
  | 'SESSION_DESTROYED'
  | 'MANAGER_DESTROYED'
  | 'NO_ADAPTER'
  | 'VERSION_CONFLICT'
  | 'PERSIST_FAILED'
  | 'ADAPTER_CONTRACT'
  | 'ADAPTER_TIMEOUT'
  | 'NO_WRITER'
  | 'SHUTDOWN_INCOMPLETE'
  | 'ADAPTER_ERROR'
  | 'ADAPTER_CLOSED'
  | 'HANDOFF_TIMEOUT'
  | 'PRESENCE_UNAVAILABLE';

export interface CageySessionsErrorOptions {
  cause?: unknown;
}

/** Base class of every error the library and its adapters throw. Branch on `code`, not on the message. */
export class CageySessionsError extends Error {
  override name = 'CageySessionsError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: CageySessionsErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** Input the library cannot accept: options, user ids, user data, versions, duplicate keys. Nothing was written. */
export class ValidationError extends CageySessionsError {
  override name = 'ValidationError';
  /** Where in the user data the offending value sits, e.g. `inventory[3].price` (INVALID_USER_DATA only). */
  readonly path: string | undefined;

  constructor(code: ErrorCode, message: string, options?: CageySessionsErrorOptions & { path?: string }) {
    super(code, message, options);
    this.path = options?.path;
  }
}

/** A call that the object's state does not allow: a destroyed session or manager, a user already in a session. */
export class StateError extends CageySessionsError {
  override name = 'StateError';
}

/**
 * The store holds a newer version of the user than the session was based on: another writer got there first.
 * The stored record is untouched; the session is not written again until the game reloads or drops it.
 */
export class ConflictError extends CageySessionsError {
  override name = 'ConflictError';
  readonly userId: UserId;
  readonly expectedVersion: number;
  /** The version the store holds; 0 when it holds no live record. */
  readonly currentVersion: number;

  constructor(userId: UserId, expectedVersion: number, currentVersion: number) {
    super(
      'VERSION_CONFLICT',
      `User ${describeUserId(userId)} was written elsewhere: expected stored version ${expectedVersion}, found ${currentVersion}. ` +
        'Reload the session (session.reload()) or destroy it without persisting.',
    );
    this.userId = userId;
    this.expectedVersion = expectedVersion;
    this.currentVersion = currentVersion;
  }
}

/** A user whose newest data is not known to be stored. */
export interface UnsavedUser {
  userId: UserId;
  /** Why: the last write's error, a `ConflictError`, or a deadline that passed with the write unfinished. */
  error: Error;
  /**
   * `true` when a write of this newest data may have reached the store after all: it was still in flight at
   * the deadline, or it failed in a way that can hide a commit (a timeout, a connection lost before the
   * acknowledgement). `false` when the data is certainly not stored.
   */
  maybeStored: boolean;
}

/** A write did not reach the store (PERSIST_FAILED), an adapter broke its contract, or shutdown gave up. */
export class PersistenceError extends CageySessionsError {
  override name = 'PersistenceError';
  /** For PERSIST_FAILED from persistAllUserData and SHUTDOWN_INCOMPLETE: exactly the users whose data was not saved. */
  readonly unsaved: UnsavedUser[];

  constructor(
    code: ErrorCode,
    message: string,
    options?: CageySessionsErrorOptions & { unsaved?: UnsavedUser[] },
  ) {
    super(code, message, options);
    this.unsaved = options?.unsaved ?? [];
  }
}

/** A storage driver failed; thrown by adapters, with the driver's error as `cause`. */
export class AdapterError extends CageySessionsError {
  override name = 'AdapterError';
  /** The adapter's name, e.g. `postgres`. */
  readonly adapter: string;

  constructor(adapter: string, message: string, options?: CageySessionsErrorOptions & { code?: ErrorCode }) {
    super(options?.code ?? 'ADAPTER_ERROR', `[${adapter}] ${message}`, options);
    this.adapter = adapter;
  }
}

export function isCageySessionsError(error: unknown): error is CageySessionsError {
  return error instanceof CageySessionsError;
}

/** A user id for a message or log line: JSON-quoted, long ids cut to their first 64 characters. */
export function describeUserId(userId: unknown): string {
  if (typeof userId === 'string') {
    return userId.length > 64 ? `${JSON.stringify(userId.slice(0, 64))}…` : JSON.stringify(userId);
  }
  return String(userId);
}

export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
