import type { SaveRecord, SaveResult } from '../types.js';
import { checkExpectedVersion, serializeUserData } from '../user-data.js';
import { checkWriteId, type PreparedBase, runBatch } from './batch.js';

/** A record that passed validation, ready for the store. */
export interface PreparedRecord extends PreparedBase {
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
export function saveBatch(
  adapterName: string,
  records: readonly SaveRecord[],
  write: (prepared: PreparedRecord[]) => Promise<SaveResult[]> | SaveResult[],
  options: { secrets?: readonly (string | undefined)[] } = {},
): Promise<SaveResult[]> {
  return runBatch(
    adapterName,
    'save',
    records,
    (record, base): PreparedRecord => ({
      ...base,
      json: record.json ?? serializeUserData(record.userData),
      expectedVersion: checkExpectedVersion(record.expectedVersion),
      writeId: checkWriteId(adapterName, record.writeId),
    }),
    write,
    options.secrets,
  );
}
