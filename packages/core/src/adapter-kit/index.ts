/**
 * `@cagey-sessions/core/adapter-kit`: what an adapter author needs so that a new adapter is its store's
 * translation and nothing else. Validation and batching of records (`saveBatch`), the version rules as one
 * decision (`decideWrite`), the client's lifecycle (`ClientLifecycle`), option parsing, chunking, and driver
 * errors wrapped without credentials; for the optional methods, `restoreBatch` with `decideRestore` (restore)
 * and `parseScanOptions` with `encodeCursor` (scan); for a `Presence`, its node id, lease and message checks.
 * Game code imports the package root instead.
 */

export { describeUserId } from '../errors.js';
export { nearestKey } from '../options.js';
export type {
  ClaimResult,
  PersistenceAdapter,
  Presence,
  PresenceMessage,
  RestoreRecord,
  SaveRecord,
  SaveResult,
  ScannedUser,
  ScanOptions,
  ScanPage,
  StoredUser,
} from '../types.js';
export {
  checkExpectedVersion,
  checkUserData,
  digest,
  MAX_USER_ID_BYTES,
  serializeUserData,
  userKey,
} from '../user-data.js';
export { MAX_WRITE_ID_LENGTH } from './batch.js';
export { chunkByCountAndSize } from './chunks.js';
export { ClientLifecycle } from './lifecycle.js';
export {
  type ClientSource,
  checkIdentifier,
  checkOptionKeys,
  clientOrUrl,
  invalidOptions,
  parseDuration,
  parsePositiveInteger,
} from './options.js';
export {
  checkLeaseTtl,
  checkNodeId,
  checkPresenceMessage,
  deliverMessage,
  type IncomingProblem,
  isNodeId,
  MAX_NODE_ID_LENGTH,
  parseIncoming,
  WarnOnce,
} from './presence.js';
export { passwordOfUrl, redactCredentials, redactError, wrapDriverError } from './redact.js';
export { checkRestoreVersion, type PreparedRestoreRecord, restoreBatch } from './restore-batch.js';
export { type PreparedRecord, saveBatch } from './save-batch.js';
export { encodeCursor, parseScanOptions, type ScanRequest } from './scan.js';
export { decideRestore, decideWrite, type StoredVersion, type WriteDecision } from './versions.js';
