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
export { createRedisPresence, RedisPresence } from './presence.js';
export {
  type CreateRedisPresenceOptions,
  DEFAULT_PRESENCE_PREFIX,
  type RedisPresenceClientOptions,
  type RedisPresenceCommonOptions,
  type RedisPresenceOptions,
  type RedisPresenceUrlOptions,
} from './presence-options.js';
