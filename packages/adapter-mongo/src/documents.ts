import { ValidationError } from '@cagey-sessions/core';
import type { StoredVersion } from '@cagey-sessions/core/adapter-kit';
import { BSON, type Collection } from 'mongodb';

/** MongoDB's (and FerretDB's) limit on one stored document. */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;

/** Room for `_id`, `version`, `updatedAt`, `writeId` and the field names around `data`. */
const ENVELOPE_BYTES = 64 * 1024;

/** The stored form of one user: see the README's "Data model". */
export interface UserDocument {
  _id: string;
  /** The user data; absent on a tombstone. */
  data?: Record<string, unknown>;
  version: number;
  updatedAt: Date;
  /** Identifies the write that produced this version, so a batch can tell its own writes from others'. */
  writeId?: string;
  /** Present (true) only on a tombstone: the user was deleted; `version` keeps counting. */
  deleted?: true;
}

/** The fields of a document that tell its version state (see `storedVersionOf`). */
export const STORED_VERSION_PROJECTION = { version: 1, writeId: 1, deleted: 1 } as const;

/** A user without a document: never written. */
export const NEVER_WRITTEN: StoredVersion = { version: 0, live: false };

/** A document's version state, as `decideWrite` takes it: a tombstone is not live and has no write id. */
export function storedVersionOf(
  document: Pick<UserDocument, 'version' | 'writeId' | 'deleted'> | null,
): StoredVersion {
  if (document === null) return NEVER_WRITTEN;
  if (document.deleted === true) return { version: document.version, live: false };
  return { version: document.version, live: true, writeId: document.writeId };
}

/** The version states of the documents of `keys`, in one `find`; keys without a document are left out. */
export async function readStoredVersions(
  collection: Collection<UserDocument>,
  keys: string[],
): Promise<Map<string, StoredVersion>> {
  const documents = await collection
    .find(
      { _id: { $in: keys } },
      { projection: STORED_VERSION_PROJECTION, batchSize: Math.max(keys.length, 1) },
    )
    .toArray();
  const states = new Map<string, StoredVersion>();
  for (const document of documents) states.set(document._id, storedVersionOf(document));
  return states;
}

/**
 * Turns a record's JSON snapshot into the object stored as `data`, refusing what a MongoDB document cannot hold
 * as plain data: field names starting with `$` (operators), containing `.` (paths) or NUL (BSON keys are
 * C strings), at any depth, and documents over 16 MiB. Throws INVALID_USER_DATA naming the path.
 */
export function toDocumentData(json: string): Record<string, unknown> {
  const data = JSON.parse(json) as Record<string, unknown>;
  checkKeys(data, '');
  // Sizing costs a walk of the data; only data whose JSON text is already large can come near the limit.
  if (json.length > (MAX_DOCUMENT_BYTES - ENVELOPE_BYTES) / 4) {
    const bytes = BSON.calculateObjectSize({ data });
    if (bytes > MAX_DOCUMENT_BYTES - ENVELOPE_BYTES) {
      throw new ValidationError(
        'INVALID_USER_DATA',
        `Cannot store userData: it takes ${bytes} bytes as BSON, over MongoDB's 16 MiB document limit.`,
        { path: '' },
      );
    }
  }
  return data;
}

function checkKeys(value: unknown, path: string): void {
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkKeys(value[i], `${path}[${i}]`);
    return;
  }
  for (const key of Object.keys(value)) {
    const child = path === '' ? key : `${path}.${key}`;
    if (key.startsWith('$') || key.includes('.') || key.includes('\u0000')) {
      throw new ValidationError(
        'INVALID_USER_DATA',
        `Cannot store userData.${child}: MongoDB field names cannot start with "$" or contain "." or NUL ` +
          '(key ' +
          JSON.stringify(key) +
          '). Rename the key, or keep such names as values (e.g. an array of [name, value] pairs).',
        { path: child },
      );
    }
    checkKeys((value as Record<string, unknown>)[key], child);
  }
}
