export {
  createPostgresAdapter,
  DEFAULT_BATCH_SIZE,
  DEFAULT_CONNECT_TIMEOUT_MS,
  MAX_BATCH_SIZE,
  PostgresAdapter,
  type PostgresAdapterBaseOptions,
  type PostgresAdapterOptions,
  type PostgresClient,
  type PostgresPoolOptions,
} from './adapter.js';
export { DEFAULT_TABLE } from './sql.js';
