export {
  checkIdentifier,
  MAX_WRITE_ID_LENGTH,
  type PreparedRecord,
  passwordOfUrl,
  redactCredentials,
  redactError,
  saveBatch,
  wrapDriverError,
} from './adapter-kit.js';
export {
  AdapterError,
  CageySessionsError,
  ConflictError,
  describeUserId,
  type ErrorCode,
  isCageySessionsError,
  PersistenceError,
  StateError,
  type UnsavedUser,
  ValidationError,
} from './errors.js';
export { create, SessionManager, type SessionManagerEvents, type SessionManagerStats } from './manager.js';
export type { Duration, Logger, PersistenceOptions, SessionManagerOptions } from './options.js';
export { type IdentifyOptions, Session, type SessionEvents, type SetUserOptions } from './session.js';
export type { PersistenceAdapter, SaveRecord, SaveResult, StoredUser, UserData, UserId } from './types.js';
export {
  checkExpectedVersion,
  checkUserData,
  digest,
  MAX_USER_ID_BYTES,
  serializeUserData,
  userKey,
} from './user-data.js';
