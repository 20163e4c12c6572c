/** What a store holds for one user, as far as a versioned write needs it. */
export interface StoredVersion {
  /** The stored version, a tombstone's included; 0 when the user was never written. */
  version: number;
  /** Whether a live record exists (false for missing users and tombstones). */
  live: boolean;
  /** The write id stored with the live record, if any. */
  writeId?: string | undefined;
}

/** The decision for one record: write it at `version`, or report a conflict. */
export type WriteDecision =
  | { write: true; version: number }
  | { write: false; currentVersion: number; currentWriteId: string | undefined };

/**
 * The version rules of the contract as one pure decision, for every adapter to follow (and to be tested
 * against):
 * - `expectedVersion` absent: write unconditionally; the new version is the stored one + 1 (a tombstone's
 *   version counts, so versions of a user only ever grow);
 * - `0`: write only when no live record exists (a missing user or a tombstone);
 * - `n`: write only when the live record is at exactly `n`.
 * A conflict reports the live record's version (0 when none) and write id.
 */
export function decideWrite(expectedVersion: number | undefined, stored: StoredVersion): WriteDecision {
  const current = stored.live ? stored.version : 0;
  const allowed = expectedVersion === undefined || expectedVersion === current;
  if (allowed) return { write: true, version: stored.version + 1 };
  return { write: false, currentVersion: current, currentWriteId: stored.live ? stored.writeId : undefined };
}

/**
 * The rule of `restore` as one pure decision: write the record at exactly `version` when the store holds an
 * older version of the user (live or a tombstone) or nothing; otherwise report a conflict, which, as for
 * `save`, carries the live record's version and write id (0 and none when only a tombstone is left). A
 * conflict with `currentVersion` equal to `version` means the record is already there.
 */
export function decideRestore(version: number, stored: StoredVersion): WriteDecision {
  if (stored.version < version) return { write: true, version };
  return {
    write: false,
    currentVersion: stored.live ? stored.version : 0,
    currentWriteId: stored.live ? stored.writeId : undefined,
  };
}
