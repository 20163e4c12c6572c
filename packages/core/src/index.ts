export {
  checkIdentifier,
  type PreparedRecord,
  redactCredentials,
  saveBatch,
  wrapDriverError,
} from './adapter-kit.js';
export {
  AdapterError,
  CageySessionsError,
  ConflictError,
  type ErrorCode,
  isCageySessionsError,
  PersistenceError,
  StateError,
  type UnsavedUser,
  ValidationError,
} from './errors.js';
export type { PersistenceAdapter, SaveRecord, SaveResult, StoredUser, UserData, UserId } from './types.js';
export { checkExpectedVersion, digest, serializeUserData, userKey } from './user-data.js';
