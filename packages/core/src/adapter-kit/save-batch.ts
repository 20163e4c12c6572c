import { describeUserId, PersistenceError, toError, ValidationError } from '../errors.js';
import type { SaveRecord, SaveResult, UserId } from '../types.js';
import { checkExpectedVersion, serializeUserData, userKey } from '../user-data.js';
import { wrapDriverError } from './redact.js';

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
  write: (prepared: PreparedRecord[]) => Promise<SaveResult[]> | SaveResult[],
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
