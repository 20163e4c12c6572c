export {
  createRedisAdapter,
  RedisAdapter,
  type RedisAdapterClientOptions,
  type RedisAdapterCommonOptions,
  type RedisAdapterOptions,
  type RedisAdapterUrlOptions,
} from './adapter.js';
export { DEFAULT_PREFIX, encodeUserKey } from './keys.js';
