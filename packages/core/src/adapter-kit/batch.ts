import { describeUserId, PersistenceError, toError, ValidationError } from '../errors.js';
import type { SaveResult, UserId } from '../types.js';
import { userKey } from '../user-data.js';
import { wrapDriverError } from './redact.js';

/** What every validated record of a batch carries, whatever the operation. */
export interface PreparedBase {
  /** Position in the batch the caller passed in. */
  index: number;
  userId: UserId;
  /** `userKey(userId)`: the string the store keys the user by. */
  key: string;
}

/**
 * The batch mechanics `saveBatch` and `restoreBatch` share: `prepare` validates each record (a bad one gets
 * its own error result and is not sent), a user who appears again after their first record is refused
 * (DUPLICATE_KEY), the valid records go to `write` in one call, and its results are merged back into the
 * caller's order. A driver error `write` throws is wrapped as an `AdapterError` named after `operation`.
 */
export async function runBatch<Input extends { userId: UserId }, Prepared extends PreparedBase>(
  adapterName: string,
  operation: string,
  records: readonly Input[],
  prepare: (record: Input, base: PreparedBase) => Prepared,
  write: (prepared: Prepared[]) => Promise<SaveResult[]> | SaveResult[],
  secrets: readonly (string | undefined)[] | undefined,
): Promise<SaveResult[]> {
  const results: SaveResult[] = new Array(records.length);
  const prepared: Prepared[] = [];
  const firstIndexOf = new Map<string, number>();
  for (let index = 0; index < records.length; index++) {
    const record = records[index]!;
    try {
      const key = userKey(record.userId);
      const firstIndex = firstIndexOf.get(key);
      if (firstIndex !== undefined) throw duplicateError(adapterName, record.userId, firstIndex, index);
      prepared.push(prepare(record, { index, userId: record.userId, key }));
      firstIndexOf.set(key, index);
    } catch (error) {
      results[index] = { status: 'error', error: toError(error) };
    }
  }
  if (prepared.length > 0) {
    let written: SaveResult[];
    try {
      written = await write(prepared);
    } catch (error) {
      throw wrapDriverError(adapterName, operation, error, secrets);
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

export function checkWriteId(adapterName: string, writeId: unknown): string | undefined {
  if (writeId === undefined) return undefined;
  if (typeof writeId === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(writeId)) return writeId;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid writeId ${JSON.stringify(String(writeId)).slice(0, 80)}: 1 to ${MAX_WRITE_ID_LENGTH} characters of A-Z a-z 0-9 . _ -.`,
  );
}
