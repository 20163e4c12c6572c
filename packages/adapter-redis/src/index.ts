export { createRedisAdapter, RedisAdapter } from './adapter.js';
export { DEFAULT_PREFIX, encodeUserKey } from './keys.js';
export {
  type CreateRedisAdapterOptions,
  DEFAULT_BATCH_SIZE,
  DEFAULT_CONNECT_TIMEOUT,
  type RedisAdapterClientOptions,
  type RedisAdapterCommonOptions,
  type RedisAdapterOptions,
  type RedisAdapterUrlOptions,
} from './options.js';
