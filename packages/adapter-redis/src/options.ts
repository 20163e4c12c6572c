import type { Duration } from '@cagey-sessions/core';
import {
  type ClientSource,
  checkOptionKeys,
  clientOrUrl,
  invalidOptions,
  parseDuration,
  parsePositiveInteger,
  passwordOfUrl,
} from '@cagey-sessions/core/adapter-kit';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { isIoredisClient } from './connection.js';
import { checkPrefix, DEFAULT_PREFIX } from './keys.js';

/** Default of the `batchSize` option. */
export const DEFAULT_BATCH_SIZE = 1000;
/** Default of the `connectTimeout` option. */
export const DEFAULT_CONNECT_TIMEOUT = '5s';

/** Options every way of constructing the adapter shares. */
export interface RedisAdapterCommonOptions {
  /**
   * Prepended to every key. Printable ASCII without spaces, braces or glob characters; keys get a `:` after it
   * when it does not end with one. Two adapters with different prefixes never see each other's users.
   * Default `cagey:user:`.
   */
  prefix?: string;
  /**
   * Expire a user's key this long after its last write: a number of milliseconds, or a duration string for
   * `ms`, e.g. `'7d'`. Applied on every save and delete; off by default, so data stays until deleted.
   */
  ttl?: Duration;
  /** Records per `save` call: the batch size core's pipeline uses with this adapter. Default 1000. */
  batchSize?: number;
}

/** Construct over a client you own: the adapter never closes it. */
export interface RedisAdapterClientOptions extends RedisAdapterCommonOptions {
  /** An ioredis `Redis` or `Cluster` instance. */
  client: Redis | Cluster;
  url?: never;
  /** Only for a client the adapter opens: configure your own client in ioredis. */
  clientOptions?: never;
  /** Only for a client the adapter opens: configure your own client's timeouts in ioredis. */
  connectTimeout?: never;
}

/** Construct from a URL: the adapter opens the client and closes it in `close()`. */
export interface RedisAdapterUrlOptions extends RedisAdapterCommonOptions {
  /**
   * `redis://[user:password@]host:port[/db]`, `rediss://…` for TLS, or for a Redis Cluster
   * `redis+cluster://[user:password@]host1:port1,host2:port2` (`rediss+cluster://…` for TLS): the listed nodes
   * are seeds, the rest of the cluster is discovered.
   */
  url: string;
  client?: never;
  /** Passed to ioredis: `RedisOptions` for a `redis://` URL, `ClusterOptions` for a `redis+cluster://` URL. */
  clientOptions?: RedisOptions | ClusterOptions;
  /**
   * How long a call waits for a connection to Redis before it fails: a number of milliseconds, or a duration
   * string for `ms`, e.g. `'5s'`. Also bounds a TCP connect and the silence of a server while a reply is due;
   * the client keeps reconnecting in the background, so calls succeed again once Redis is back. Default `'5s'`.
   */
  connectTimeout?: Duration;
}

export type RedisAdapterOptions = RedisAdapterClientOptions | RedisAdapterUrlOptions;

/** What `createRedisAdapter` takes: the same options, `client` and `url` both optional (then `REDIS_URL`). */
export type CreateRedisAdapterOptions = RedisAdapterCommonOptions & {
  client?: Redis | Cluster;
  url?: string;
  clientOptions?: RedisOptions | ClusterOptions;
  connectTimeout?: Duration;
};

/** The options, checked and in the units the adapter works in. */
export interface ResolvedOptions {
  /** An injected client, or the URL of the client the adapter opens. */
  source: ClientSource<Redis | Cluster>;
  /** `clientOptions`, for a client the adapter opens. */
  clientOptions: RedisOptions | ClusterOptions | undefined;
  /** For a client the adapter opens; `undefined` for an injected client. */
  connectTimeoutMs: number | undefined;
  /** The prefix as given (or the default). */
  prefix: string;
  /** Milliseconds; `undefined` when keys do not expire. */
  ttlMs: number | undefined;
  batchSize: number;
  /** Passwords in the URL and `clientOptions`, removed from every error (the client's own are added later). */
  secrets: (string | undefined)[];
}

const OPTION_KEYS = ['client', 'url', 'clientOptions', 'connectTimeout', 'prefix', 'ttl', 'batchSize'];
const RENAMED_OPTIONS = { maxBatchSize: 'batchSize' };

/** Where `createRedisAdapter` finds a URL when given neither client nor url. */
export const URL_ENV_VAR = 'REDIS_URL';
const CLIENT_NOUN = 'an ioredis Redis or Cluster';

/**
 * Checks the options and brings them into the adapter's units; without client and url, the URL comes from the
 * environment variable `envVar` when given (the factory's fallback). Throws INVALID_OPTIONS.
 */
export function resolveOptions(adapterName: string, given: unknown, envVar?: string): ResolvedOptions {
  if (typeof given !== 'object' || given === null) {
    throw invalidOptions(adapterName, 'options are required: { client } or { url }.');
  }
  checkOptionKeys(adapterName, given, OPTION_KEYS, RENAMED_OPTIONS);
  const options = given as CreateRedisAdapterOptions;

  const source = clientOrUrl<Redis | Cluster>(adapterName, options, {
    schemes: ['redis', 'rediss', 'redis+cluster', 'rediss+cluster'],
    clientNoun: CLIENT_NOUN,
    ...(envVar === undefined ? {} : { envVar }),
  });
  const owned = source.kind === 'url';
  if (!owned && !isIoredisClient(source.client)) {
    throw invalidOptions(adapterName, `client must be ${CLIENT_NOUN} instance.`);
  }
  if (!owned && (options.connectTimeout !== undefined || options.clientOptions !== undefined)) {
    throw invalidOptions(
      adapterName,
      'connectTimeout and clientOptions apply to a client the adapter opens from a url; set ioredis options ' +
        '(connectTimeout, socketTimeout, maxRetriesPerRequest) on your own client instead.',
    );
  }
  return {
    source,
    clientOptions: options.clientOptions,
    connectTimeoutMs: owned
      ? parseDuration(adapterName, 'connectTimeout', options.connectTimeout, DEFAULT_CONNECT_TIMEOUT)
      : undefined,
    prefix: checkPrefix(adapterName, options.prefix ?? DEFAULT_PREFIX),
    // Redis keeps keys far longer than a Node.js timer runs, so a TTL may exceed parseDuration's default bound.
    ttlMs: parseDuration(adapterName, 'ttl', options.ttl, undefined, { max: Number.MAX_SAFE_INTEGER }),
    batchSize: parsePositiveInteger(adapterName, 'batchSize', options.batchSize, DEFAULT_BATCH_SIZE),
    secrets: owned ? [passwordOfUrl(source.url), ...passwordsOf(options.clientOptions)] : [],
  };
}

/** Passwords in ioredis options: the client's own, a Cluster's `redisOptions`, Sentinel's. */
export function passwordsOf(options: unknown): (string | undefined)[] {
  if (typeof options !== 'object' || options === null) return [];
  const { password, sentinelPassword, redisOptions } = options as {
    password?: unknown;
    sentinelPassword?: unknown;
    redisOptions?: { password?: unknown };
  };
  return [password, sentinelPassword, redisOptions?.password].filter(
    (value): value is string => typeof value === 'string',
  );
}
