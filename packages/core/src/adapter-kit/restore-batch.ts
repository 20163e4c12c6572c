import { ValidationError } from '../errors.js';
import type { RestoreRecord, SaveResult } from '../types.js';
import { serializeUserData } from '../user-data.js';
import { checkWriteId, type PreparedBase, runBatch } from './batch.js';

/** A `restore` record that passed validation, ready for the store. */
export interface PreparedRestoreRecord extends PreparedBase {
  /** The user data as JSON text. */
  json: string;
  /** The version to store: a positive safe integer. */
  version: number;
  /** `RestoreRecord.writeId`, checked: store it with the record. */
  writeId: string | undefined;
}

/**
 * `saveBatch`'s twin for `restore`: validates every record (userId, data, a positive integer `version`,
 * writeId; a bad one gets its own error result and is not sent, a user's second record is refused with
 * DUPLICATE_KEY), hands the valid ones to `write` in one call and merges the results back into the caller's
 * order. `write` decides each record with `decideRestore` and resolves one result per record, in order; a
 * driver error it throws is wrapped as an `AdapterError` cleaned of `options.secrets`.
 */
export function restoreBatch(
  adapterName: string,
  records: readonly RestoreRecord[],
  write: (prepared: PreparedRestoreRecord[]) => Promise<SaveResult[]> | SaveResult[],
  options: { secrets?: readonly (string | undefined)[] } = {},
): Promise<SaveResult[]> {
  return runBatch(
    adapterName,
    'restore',
    records,
    (record, base): PreparedRestoreRecord => ({
      ...base,
      json: record.json ?? serializeUserData(record.userData),
      version: checkRestoreVersion(record.version),
      writeId: checkWriteId(adapterName, record.writeId),
    }),
    write,
    options.secrets,
  );
}

/** Throws INVALID_VERSION unless `version` is a positive safe integer. */
export function checkRestoreVersion(version: unknown): number {
  if (typeof version === 'number' && Number.isSafeInteger(version) && version >= 1) return version;
  const shown = typeof version === 'string' ? JSON.stringify(version.slice(0, 40)) : String(version);
  throw new ValidationError(
    'INVALID_VERSION',
    `Invalid version ${shown} in a restore record: expected a positive safe integer (the version the user has in the store it comes from).`,
  );
}
