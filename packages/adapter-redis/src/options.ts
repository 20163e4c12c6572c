import { ValidationError } from '@cagey-sessions/core';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import ms from 'ms';

/** Parses the `ttl` option to milliseconds; `undefined` keeps data forever. Throws INVALID_OPTIONS. */
export function parseTtl(adapterName: string, ttl: unknown): number | undefined {
  if (ttl === undefined) return undefined;
  let milliseconds = Number.NaN;
  if (typeof ttl === 'number') milliseconds = Math.round(ttl * 1000);
  else if (typeof ttl === 'string') {
    try {
      milliseconds = ms(ttl as ms.StringValue);
    } catch {
      // ms throws on an empty string; the error below explains the format.
    }
  }
  if (Number.isSafeInteger(milliseconds) && milliseconds > 0) return milliseconds;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid ttl ${JSON.stringify(ttl)?.slice(0, 40)}: use a duration string such as '7d' or ` +
      'a positive number of seconds, or leave ttl out to keep user data until it is deleted.',
  );
}

/** Default of the `connectTimeout` option. */
export const DEFAULT_CONNECT_TIMEOUT = '5s';
/** Node's timers take at most this many milliseconds. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Parses the `connectTimeout` option (milliseconds, or a duration string for `ms`). Throws INVALID_OPTIONS. */
export function parseConnectTimeout(adapterName: string, value: unknown): number {
  let milliseconds = Number.NaN;
  const given = value === undefined ? DEFAULT_CONNECT_TIMEOUT : value;
  if (typeof given === 'number') milliseconds = Math.round(given);
  else if (typeof given === 'string') {
    try {
      milliseconds = ms(given as ms.StringValue);
    } catch {
      // ms throws on an empty string; the error below explains the format.
    }
  }
  if (Number.isSafeInteger(milliseconds) && milliseconds > 0 && milliseconds <= MAX_TIMER_MS) {
    return milliseconds;
  }
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid connectTimeout ${JSON.stringify(value)?.slice(0, 40)}: use a duration string ` +
      `such as '5s' or a positive number of milliseconds (default '${DEFAULT_CONNECT_TIMEOUT}').`,
  );
}

/** Throws INVALID_OPTIONS unless `value` is a positive integer. */
export function parsePositiveInteger(
  adapterName: string,
  what: string,
  value: unknown,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid ${what} ${JSON.stringify(value)?.slice(0, 40)}: expected a positive integer.`,
  );
}

const CLUSTER_SCHEMES = new Set(['redis+cluster', 'rediss+cluster']);
const STANDALONE_SCHEMES = new Set(['redis', 'rediss']);

/**
 * ioredis settings of a client the adapter opens, so that an unreachable server makes calls fail within
 * `connectTimeoutMs` instead of waiting in ioredis' queues, while the client keeps reconnecting:
 * - `connectTimeout`: a TCP connection that is not established in time is dropped and retried;
 * - `socketTimeout`: a connection that stays silent while a reply is due (a server that accepts and never
 *   answers, even during the handshake; a peer gone without closing) is dropped and retried;
 * - `maxRetriesPerRequest: 0`: a command waiting for a connection, or unanswered when its connection dropped,
 *   fails at the next failed connection attempt instead of being sent again after up to 20 of them.
 * Settings the caller passes in `clientOptions` win.
 */
function connectionDefaults(connectTimeoutMs: number): RedisOptions {
  return { connectTimeout: connectTimeoutMs, socketTimeout: connectTimeoutMs, maxRetriesPerRequest: 0 };
}

/**
 * Opens a client for a URL. `redis://` and `rediss://` give a standalone `Redis` (ioredis parses the URL);
 * `redis+cluster://[user:password@]host1:port1,host2:port2` (or `rediss+cluster://` for TLS) gives a `Cluster`
 * seeded with those nodes. Error messages never repeat the URL: it may hold a password.
 */
export function openClient(
  adapterName: string,
  url: unknown,
  clientOptions: RedisOptions | ClusterOptions | undefined,
  connectTimeoutMs: number,
): Redis | Cluster {
  const scheme =
    typeof url === 'string' ? /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase() : undefined;
  if (typeof url !== 'string' || scheme === undefined) {
    throw invalidUrl(adapterName, 'expected a string such as redis://127.0.0.1:6379');
  }
  if (STANDALONE_SCHEMES.has(scheme)) {
    try {
      return new Redis(url, {
        ...connectionDefaults(connectTimeoutMs),
        ...(clientOptions as RedisOptions | undefined),
      });
    } catch {
      throw invalidUrl(adapterName, 'ioredis could not parse it');
    }
  }
  if (CLUSTER_SCHEMES.has(scheme)) {
    const { nodes, username, password } = parseClusterUrl(adapterName, url.slice(scheme.length + 3));
    const options = { ...(clientOptions as ClusterOptions | undefined) };
    options.redisOptions = {
      ...connectionDefaults(connectTimeoutMs),
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
      ...(scheme === 'rediss+cluster' ? { tls: {} } : {}),
      ...options.redisOptions,
    };
    return new Cluster(nodes, options);
  }
  throw invalidUrl(
    adapterName,
    `unsupported scheme "${scheme}": use redis://, rediss://, redis+cluster:// or rediss+cluster://`,
  );
}

function parseClusterUrl(
  adapterName: string,
  rest: string,
): { nodes: { host: string; port: number }[]; username?: string; password?: string } {
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  const path = end === -1 ? '' : rest.slice(end);
  if (path !== '' && !/^\/0?$/.test(path)) {
    throw invalidUrl(adapterName, 'a Redis Cluster has only database 0 and takes no query parameters');
  }
  const at = authority.lastIndexOf('@');
  const hosts = at === -1 ? authority : authority.slice(at + 1);
  let username: string | undefined;
  let password: string | undefined;
  if (at !== -1) {
    const credentials = authority.slice(0, at);
    const colon = credentials.indexOf(':');
    try {
      const user = decodeURIComponent(colon === -1 ? credentials : credentials.slice(0, colon));
      if (user !== '') username = user;
      if (colon !== -1) password = decodeURIComponent(credentials.slice(colon + 1));
    } catch {
      throw invalidUrl(adapterName, 'its credentials are not valid percent-encoding');
    }
  }
  const nodes = hosts.split(',').map((node) => {
    const match = /^(\[[0-9a-f:.]+\]|[^\s:[\]]+)(?::(\d{1,5}))?$/i.exec(node);
    const port = match?.[2] === undefined ? 6379 : Number(match[2]);
    if (!match || port < 1 || port > 65535) {
      throw invalidUrl(adapterName, 'expected comma-separated host:port pairs after redis+cluster://');
    }
    return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
  });
  return {
    nodes,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
  };
}

function invalidUrl(adapterName: string, reason: string): ValidationError {
  return new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid url (not shown, it may hold a password): ${reason}.`,
  );
}
