export { MAX_NODE_ID_LENGTH } from '@cagey-sessions/core/adapter-kit';
export { ADAPTER_NAME, createPostgresAdapter, PostgresAdapter } from './adapter.js';
export {
  type CreatePostgresAdapterOptions,
  DEFAULT_BATCH_SIZE,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_TABLE,
  MAX_BATCH_SIZE,
  type PostgresAdapterBaseOptions,
  type PostgresAdapterOptions,
  type PostgresClient,
  type PostgresPoolOptions,
} from './options.js';
export { createPostgresPresence, PostgresPresence } from './presence.js';
export {
  type CreatePostgresPresenceOptions,
  DEFAULT_PRESENCE_TABLE,
  type PostgresPresenceBaseOptions,
  type PostgresPresenceOptions,
} from './presence-options.js';
