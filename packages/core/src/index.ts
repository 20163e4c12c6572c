export {
  type BatchMessage,
  CHANNELS,
  type ConflictMessage,
  type FlushMessage,
  type HandoffMessage,
  type PersistMessage,
  type RetryMessage,
  type ShutdownMessage,
} from './channels.js';
export type { DirtyTracking } from './dirty-tracker.js';
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
export { create, SessionManager, type SessionManagerEvents, type SessionManagerStats } from './manager.js';
export { MigratingAdapter, type MigratingAdapterOptions } from './migrating-adapter.js';
export type {
  Duration,
  DurationString,
  DurationUnit,
  Logger,
  PersistenceOptions,
  SessionManagerOptions,
} from './options.js';
export type { KickInfo } from './presence.js';
export {
  type IdentifiedUserData,
  type IdentifyOptions,
  Session,
  type SessionEvents,
  type SetUserOptions,
} from './session.js';
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
  UserData,
  UserId,
} from './types.js';
export { checkUserData, MAX_USER_ID_BYTES, userKey } from './user-data.js';
