import type { Duration, Logger } from '@cagey-sessions/core';
import {
  type ClientSource,
  checkOptionKeys,
  clientOrUrl,
  invalidOptions,
  parseDuration,
  passwordOfUrl,
} from '@cagey-sessions/core/adapter-kit';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { isIoredisClient } from './connection.js';
import { checkPrefix } from './keys.js';
import { DEFAULT_CONNECT_TIMEOUT, passwordsOf, type URL_ENV_VAR } from './options.js';

/** Default of the presence's `prefix` option. */
export const DEFAULT_PRESENCE_PREFIX = 'cagey:presence:';

/** Options every way of constructing the presence shares. */
export interface RedisPresenceCommonOptions {
  /**
   * Prepended to every key and channel of the presence. The same rules as the adapter's `prefix`; presence keys
   * always hold a `:` after their kind (`node:`, `user:`), so they never collide with an adapter's user keys,
   * even under the same prefix. Default `cagey:presence:`.
   */
  prefix?: string;
  /** Where the presence reports messages it ignores (malformed payloads, a listener that threw): once per kind. */
  log?: Logger;
}

/**
 * Construct over a client you own: the presence never closes it. It opens one connection of its own for
 * messages (`client.duplicate()`), which `close()` closes.
 */
export interface RedisPresenceClientOptions extends RedisPresenceCommonOptions {
  /** An ioredis `Redis` or `Cluster` instance. */
  client: Redis | Cluster;
  url?: never;
  /** Only for a client the presence opens: configure your own client in ioredis. */
  clientOptions?: never;
  /** Only for a client the presence opens: configure your own client's timeouts in ioredis. */
  connectTimeout?: never;
}

/** Construct from a URL: the presence opens its clients and closes them in `close()`. */
export interface RedisPresenceUrlOptions extends RedisPresenceCommonOptions {
  /** As the adapter's `url`: `redis://…`, `rediss://…`, `redis+cluster://host1:port1,host2:port2`, … */
  url: string;
  client?: never;
  /** Passed to ioredis: `RedisOptions` for a `redis://` URL, `ClusterOptions` for a `redis+cluster://` URL. */
  clientOptions?: RedisOptions | ClusterOptions;
  /**
   * How long a call waits for a connection to Redis before it fails: milliseconds, or an `ms` string. Default
   * `'5s'`. Keep it well below the lease TTL core uses, so a renewal fails before the lease runs out.
   */
  connectTimeout?: Duration;
}

export type RedisPresenceOptions = RedisPresenceClientOptions | RedisPresenceUrlOptions;

/** What `createRedisPresence` takes: the same options, `client` and `url` both optional (then `REDIS_URL`). */
export type CreateRedisPresenceOptions = RedisPresenceCommonOptions & {
  client?: Redis | Cluster;
  url?: string;
  clientOptions?: RedisOptions | ClusterOptions;
  connectTimeout?: Duration;
};

/** The presence's options, checked. */
export interface ResolvedPresenceOptions {
  source: ClientSource<Redis | Cluster>;
  clientOptions: RedisOptions | ClusterOptions | undefined;
  /** For clients the presence opens; `undefined` for an injected client. */
  connectTimeoutMs: number | undefined;
  prefix: string;
  log: Logger | undefined;
  /** Passwords in the URL and `clientOptions`, removed from every error. */
  secrets: (string | undefined)[];
}

const OPTION_KEYS = ['client', 'url', 'clientOptions', 'connectTimeout', 'prefix', 'log'];
const CLIENT_NOUN = 'an ioredis Redis or Cluster';

/**
 * Checks the presence's options; without client and url, the URL comes from `envVar` when given (the factory's
 * fallback). Throws INVALID_OPTIONS.
 */
export function resolvePresenceOptions(
  name: string,
  given: unknown,
  envVar?: typeof URL_ENV_VAR,
): ResolvedPresenceOptions {
  if (typeof given !== 'object' || given === null) {
    throw invalidOptions(name, 'options are required: { client } or { url }.');
  }
  checkOptionKeys(name, given, OPTION_KEYS);
  const options = given as CreateRedisPresenceOptions;
  const source = clientOrUrl<Redis | Cluster>(name, options, {
    schemes: ['redis', 'rediss', 'redis+cluster', 'rediss+cluster'],
    clientNoun: CLIENT_NOUN,
    ...(envVar === undefined ? {} : { envVar }),
  });
  const owned = source.kind === 'url';
  if (!owned && !isIoredisClient(source.client)) {
    throw invalidOptions(name, `client must be ${CLIENT_NOUN} instance.`);
  }
  if (!owned && (options.connectTimeout !== undefined || options.clientOptions !== undefined)) {
    throw invalidOptions(
      name,
      'connectTimeout and clientOptions apply to clients the presence opens from a url; set ioredis options ' +
        '(connectTimeout, socketTimeout, maxRetriesPerRequest) on your own client instead.',
    );
  }
  if (options.log !== undefined && (typeof options.log !== 'object' || options.log === null)) {
    throw invalidOptions(
      name,
      'log must be an object with warn (and optionally debug, info, error) methods.',
    );
  }
  return {
    source,
    clientOptions: options.clientOptions,
    connectTimeoutMs: owned
      ? parseDuration(name, 'connectTimeout', options.connectTimeout, DEFAULT_CONNECT_TIMEOUT)
      : undefined,
    prefix: checkPrefix(name, options.prefix ?? DEFAULT_PRESENCE_PREFIX),
    log: options.log,
    secrets: owned ? [passwordOfUrl(source.url), ...passwordsOf(options.clientOptions)] : [],
  };
}
