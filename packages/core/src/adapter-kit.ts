/**
 * Helpers for adapter authors, so that every adapter validates, serialises, reports and wraps errors the same
 * way and only the store-specific translation is left to write.
 */
import {
  AdapterError,
  CageySessionsError,
  describeUserId,
  PersistenceError,
  toError,
  ValidationError,
} from './errors.js';
import type { SaveRecord, SaveResult, UserId } from './types.js';
import { checkExpectedVersion, serializeUserData, userKey } from './user-data.js';

/** A record that passed validation, ready for the store. */
export interface PreparedRecord {
  /** Position in the batch the caller passed to `save`. */
  index: number;
  userId: UserId;
  /** `userKey(userId)`: the string the store keys the user by. */
  key: string;
  /** The user data as JSON text: a snapshot, safe to send after an `await`. */
  json: string;
  expectedVersion: number | undefined;
  /** `SaveRecord.writeId`, checked: store it with the record and report the stored one in a conflict. */
  writeId: string | undefined;
}

/**
 * Runs one `save` batch: validates every record (a bad one gets its own error result and is not sent), hands
 * the valid ones to `write`, and merges the results back into the caller's order. A user who appears again in
 * the batch is refused after their first record (DUPLICATE_KEY), so `write` sees each key at most once and
 * no store has to decide which of two writes wins. `write` must resolve one result per record it was given, in
 * order; a driver error it throws is wrapped as an `AdapterError`, cleaned of `options.secrets` (the
 * adapter's passwords, see `wrapDriverError`).
 */
export async function saveBatch(
  adapterName: string,
  records: readonly SaveRecord[],
  write: (prepared: PreparedRecord[]) => Promise<SaveResult[]>,
  options: { secrets?: readonly (string | undefined)[] } = {},
): Promise<SaveResult[]> {
  const results: SaveResult[] = new Array(records.length);
  const prepared: PreparedRecord[] = [];
  const firstIndexOf = new Map<string, number>();
  for (let index = 0; index < records.length; index++) {
    const record = records[index]!;
    try {
      const key = userKey(record.userId);
      const firstIndex = firstIndexOf.get(key);
      if (firstIndex !== undefined) throw duplicateError(adapterName, record.userId, firstIndex, index);
      const json = record.json ?? serializeUserData(record.userData);
      const expectedVersion = checkExpectedVersion(record.expectedVersion);
      const writeId = checkWriteId(adapterName, record.writeId);
      firstIndexOf.set(key, index);
      prepared.push({ index, userId: record.userId, key, json, expectedVersion, writeId });
    } catch (error) {
      results[index] = { status: 'error', error: toError(error) };
    }
  }
  if (prepared.length > 0) {
    let written: SaveResult[];
    try {
      written = await write(prepared);
    } catch (error) {
      throw wrapDriverError(adapterName, 'save', error, options.secrets);
    }
    if (!Array.isArray(written) || written.length !== prepared.length) {
      throw new PersistenceError(
        'ADAPTER_CONTRACT',
        `Adapter "${adapterName}" returned ${Array.isArray(written) ? written.length : 'no'} results for ${prepared.length} records.`,
      );
    }
    for (let i = 0; i < prepared.length; i++) results[prepared[i]!.index] = written[i]!;
  }
  return results;
}

function duplicateError(
  adapterName: string,
  userId: UserId,
  firstIndex: number,
  index: number,
): ValidationError {
  return new ValidationError(
    'DUPLICATE_KEY',
    `[${adapterName}] User ${describeUserId(userId)} appears more than once in one batch (records ${firstIndex} ` +
      `and ${index}); only the first is written. Send at most one record per user in a batch.`,
  );
}

/** Longest write id a record may carry (see `SaveRecord.writeId`). */
export const MAX_WRITE_ID_LENGTH = 64;

function checkWriteId(adapterName: string, writeId: unknown): string | undefined {
  if (writeId === undefined) return undefined;
  if (typeof writeId === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(writeId)) return writeId;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid writeId ${JSON.stringify(String(writeId)).slice(0, 80)}: 1 to ${MAX_WRITE_ID_LENGTH} characters of A-Z a-z 0-9 . _ -.`,
  );
}

/**
 * Wraps a driver error as an `AdapterError` naming the adapter and the operation. Its `cause` is a copy of the
 * driver's error with every credential removed (see `redactError`): URL credentials, the `secrets` given (the
 * adapter's passwords), password-like properties and the arguments of AUTH/HELLO commands, at any depth.
 * Errors of this library pass through.
 */
export function wrapDriverError(
  adapterName: string,
  operation: string,
  error: unknown,
  secrets: readonly (string | undefined)[] = [],
): CageySessionsError {
  if (error instanceof CageySessionsError) return error;
  const known = usableSecrets(secrets);
  const message = error instanceof Error ? error.message : String(error);
  return new AdapterError(adapterName, `${operation} failed: ${redactText(message, known)}`, {
    cause: redactError(error, known),
  });
}

/** Masks `user:password@` in any URL inside `text`. */
export function redactCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@');
}

/** The password of a connection URL (percent-decoded), if it has one; for `wrapDriverError`'s `secrets`. */
export function passwordOfUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  // The user name ends at the first colon; the password runs to the last @ of the authority (an unencoded
  // `:` or `@` in a password is malformed, but drivers accept it, so it must be masked all the same).
  const match = /^[a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:([^/\s]*)@[^/@\s]*(?:[/?#]|$)/i.exec(url);
  if (match === null || match[1] === '') return undefined;
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    return match[1];
  }
}

/** Secrets this short would also match innocent text; they are still removed from password fields. */
const MIN_SECRET_LENGTH = 3;
const REDACTED = '***';
const SECRET_KEY = /pass(word|wd|phrase)?$|secret|token|credential|^auth$|^authorization$/i;
const AUTH_COMMANDS = new Set(['auth', 'hello', 'migrate']);
const MAX_REDACT_DEPTH = 8;

function usableSecrets(secrets: readonly (string | undefined)[]): string[] {
  const usable: string[] = [];
  for (const secret of secrets) {
    if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) continue;
    usable.push(secret, encodeURIComponent(secret));
  }
  return usable;
}

function redactText(text: string, secrets: readonly string[]): string {
  let redacted = redactCredentials(text);
  for (const secret of secrets) redacted = redacted.replaceAll(secret, REDACTED);
  return redacted;
}

/**
 * A copy of `value` (typically a driver's error, with its `cause` chain) that holds no credential: strings are
 * cleaned of URL credentials and of the given secrets, password-like properties and AUTH/HELLO command
 * arguments are replaced, binary buffers are summarised, functions dropped. Errors stay errors of the same
 * class with the same stack (cleaned). Cycles and depth are bounded. The original is not modified.
 */
export function redactError(value: unknown, secrets: readonly (string | undefined)[] = []): unknown {
  const known = usableSecrets(secrets);
  const copies = new Map<object, unknown>();
  const copy = (item: unknown, depth: number, key: string): unknown => {
    if (typeof item === 'string') return SECRET_KEY.test(key) ? REDACTED : redactText(item, known);
    if (typeof item === 'function' || typeof item === 'symbol') return undefined;
    if (typeof item !== 'object' || item === null) return item;
    if (SECRET_KEY.test(key)) return REDACTED;
    const seen = copies.get(item);
    if (seen !== undefined) return seen;
    if (depth >= MAX_REDACT_DEPTH) return '[omitted: nested too deep]';
    if (ArrayBuffer.isView(item)) return `[binary, ${item.byteLength} bytes]`;
    if (item instanceof Date) return new Date(item.getTime());
    if (Array.isArray(item)) {
      const array: unknown[] = [];
      copies.set(item, array);
      for (const element of item.slice(0, 100)) array.push(copy(element, depth + 1, ''));
      return array;
    }
    const target: Record<string, unknown> =
      item instanceof Error ? Object.create(Object.getPrototypeOf(item)) : {};
    copies.set(item, target);
    const isAuthCommand =
      typeof (item as { name?: unknown }).name === 'string' &&
      AUTH_COMMANDS.has((item as { name: string }).name.toLowerCase()) &&
      Array.isArray((item as { args?: unknown }).args);
    for (const name of Object.getOwnPropertyNames(item)) {
      let property: unknown;
      try {
        property = (item as Record<string, unknown>)[name];
      } catch {
        continue;
      }
      const cleaned = isAuthCommand && name === 'args' ? [REDACTED] : copy(property, depth + 1, name);
      if (cleaned === undefined && typeof property === 'function') continue;
      Object.defineProperty(target, name, {
        value: cleaned,
        writable: true,
        configurable: true,
        enumerable: Object.prototype.propertyIsEnumerable.call(item, name),
      });
    }
    return target;
  };
  return copy(value, 0, '');
}

/**
 * Validates an identifier a user configures (table, collection, key prefix part): letters, digits and
 * underscores, not starting with a digit, at most `maxLength` characters. Throws INVALID_OPTIONS otherwise.
 */
export function checkIdentifier(adapterName: string, what: string, value: unknown, maxLength = 63): string {
  if (typeof value === 'string' && value.length <= maxLength && /^[A-Za-z_][A-Za-z0-9_]*$/.test(value))
    return value;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid ${what} ${JSON.stringify(String(value)).slice(0, 80)}: use letters, digits and ` +
      `underscores (not starting with a digit), at most ${maxLength} characters.`,
  );
}
