/**
 * Helpers for adapter authors, so that every adapter validates, serialises, reports and wraps errors the same
 * way and only the store-specific translation is left to write.
 */
import { AdapterError, CageySessionsError, PersistenceError, toError, ValidationError } from './errors.js';
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
}

/**
 * Runs one `save` batch: validates every record (a bad one gets its own error result and is not sent), hands
 * the valid ones to `write`, and merges the results back into the caller's order. A user who appears again in
 * the batch is refused after their first record (DUPLICATE_KEY), so `write` sees each key at most once and
 * no store has to decide which of two writes wins. `write` must resolve one result per record it was given, in
 * order; a driver error it throws is wrapped as an `AdapterError`.
 */
export async function saveBatch(
  adapterName: string,
  records: readonly SaveRecord[],
  write: (prepared: PreparedRecord[]) => Promise<SaveResult[]>,
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
      firstIndexOf.set(key, index);
      prepared.push({ index, userId: record.userId, key, json, expectedVersion });
    } catch (error) {
      results[index] = { status: 'error', error: toError(error) };
    }
  }
  if (prepared.length > 0) {
    let written: SaveResult[];
    try {
      written = await write(prepared);
    } catch (error) {
      throw wrapDriverError(adapterName, 'save', error);
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
    `[${adapterName}] User ${JSON.stringify(userId)} appears more than once in one batch (records ${firstIndex} ` +
      `and ${index}); only the first is written. Send at most one record per user in a batch.`,
  );
}

/**
 * Wraps a driver error as an `AdapterError` naming the adapter and the operation, with the original as
 * `cause`. Credentials in URLs inside the driver's message are masked. Errors of this library pass through.
 */
export function wrapDriverError(adapterName: string, operation: string, error: unknown): CageySessionsError {
  if (error instanceof CageySessionsError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new AdapterError(adapterName, `${operation} failed: ${redactCredentials(message)}`, {
    cause: error,
  });
}

/** Masks `user:password@` in any URL inside `text`. */
export function redactCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@');
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
