import type { Duration, Logger } from '@cagey-sessions/core';
import {
  type ClientSource,
  checkOptionKeys,
  clientOrUrl,
  invalidOptions,
  parseDuration,
} from '@cagey-sessions/core/adapter-kit';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  type PostgresClient,
  type PostgresPoolOptions,
  URL_ENV_VAR,
} from './options.js';
import { type PresenceTables, parsePresenceTables } from './presence-sql.js';

/** Default of the presence's `table` option: tables `cagey_presence_nodes` and `cagey_presence_users`. */
export const DEFAULT_PRESENCE_TABLE = 'cagey_presence';

/** Options every way of constructing the presence shares. */
export interface PostgresPresenceBaseOptions {
  /**
   * Names the presence's two tables: `<table>_nodes` and `<table>_users` (`'presence'` or `'schema.presence'`;
   * each part letters, digits and underscores, the table part at most 57 characters). Default `cagey_presence`.
   */
  table?: string;
  /** Where the presence reports what it ignores (malformed payloads, a listener that threw): once per kind. */
  log?: Logger;
  /**
   * Only with `url`: how long a call waits for a connection before it fails (milliseconds or an `ms` string).
   * Default `'5s'`. Keep it well below the lease TTL core uses, so that a renewal fails before the lease runs out.
   */
  connectTimeout?: Duration;
}

export type PostgresPresenceOptions = PostgresPresenceBaseOptions &
  (
    | {
        /**
         * An existing `pg.Pool` (the presence checks one connection out of it for messages while a node is
         * joined), `pg.Client` (used for queries and messages alike) or PGlite instance. Stays open after
         * `close()`.
         */
        client: PostgresClient;
        url?: never;
        clientOptions?: never;
      }
    | {
        /** A connection string: the presence opens a `pg.Pool` and one `pg.Client` for messages, and closes both. */
        url: string;
        client?: never;
        /** Options for that pool and client (`max` applies to the pool only). */
        clientOptions?: PostgresPoolOptions;
      }
  );

/** `createPostgresPresence`'s options: the constructor's, where without `client` and `url` DATABASE_URL is read. */
export type CreatePostgresPresenceOptions = PostgresPresenceBaseOptions & {
  client?: PostgresClient;
  url?: string;
  clientOptions?: PostgresPoolOptions;
};

/** The presence's options, checked, with their defaults applied. */
export interface ResolvedPresenceOptions {
  source: ClientSource<PostgresClient>;
  tables: PresenceTables;
  log: Logger | undefined;
  connectTimeoutMs: number;
  clientOptions: PostgresPoolOptions | undefined;
}

const OPTION_KEYS = ['client', 'url', 'clientOptions', 'connectTimeout', 'table', 'log'];
const CLIENT_NOUN = 'a pg.Pool, pg.Client or PGlite';

/**
 * Checks the options (INVALID_OPTIONS for anything unusable) and applies the defaults. Without `client` and
 * `url`, the URL comes from DATABASE_URL when `fromEnvironment` (the factory's fallback).
 */
export function resolvePresenceOptions(
  name: string,
  given: unknown,
  { fromEnvironment = false }: { fromEnvironment?: boolean } = {},
): ResolvedPresenceOptions {
  if (typeof given !== 'object' || given === null) {
    throw invalidOptions(name, 'options are required: { client } or { url }.');
  }
  checkOptionKeys(name, given, OPTION_KEYS);
  const options = given as CreatePostgresPresenceOptions;
  const source = clientOrUrl(name, options, {
    schemes: ['postgres', 'postgresql'],
    clientNoun: CLIENT_NOUN,
    ...(fromEnvironment ? { envVar: URL_ENV_VAR } : {}),
  });
  if (source.kind === 'client') {
    if (listenerKind(source.client) === undefined) {
      throw invalidOptions(
        name,
        `client must be ${CLIENT_NOUN}: the presence needs query() and LISTEN for its messages.`,
      );
    }
    if (options.clientOptions !== undefined || options.connectTimeout !== undefined) {
      throw invalidOptions(
        name,
        'clientOptions and connectTimeout apply to the connections the presence opens from a url; set pg ' +
          'options (connectionTimeoutMillis, ssl) on your own pool instead.',
      );
    }
  }
  const { clientOptions, log } = options;
  if (clientOptions !== undefined && (typeof clientOptions !== 'object' || clientOptions === null)) {
    throw invalidOptions(name, 'clientOptions must be an object of pg.Pool options.');
  }
  if (clientOptions?.password !== undefined && typeof clientOptions.password !== 'string') {
    throw invalidOptions(
      name,
      'clientOptions.password must be a string (for a password function, pass your own pg.Pool as client).',
    );
  }
  if (log !== undefined && (typeof log !== 'object' || log === null)) {
    throw invalidOptions(
      name,
      'log must be an object with warn (and optionally debug, info, error) methods.',
    );
  }
  return {
    source,
    tables: parsePresenceTables(name, options.table ?? DEFAULT_PRESENCE_TABLE),
    log,
    connectTimeoutMs: parseDuration(
      name,
      'connectTimeout',
      options.connectTimeout,
      DEFAULT_CONNECT_TIMEOUT_MS,
    ),
    clientOptions,
  };
}

/**
 * How messages reach the presence over a given client: PGlite's `listen()`, a connection checked out of a
 * `pg.Pool`, or the `pg.Client` itself. `undefined`: none of these (no way to LISTEN).
 */
export function listenerKind(client: unknown): 'pglite' | 'pool' | 'client' | undefined {
  if (typeof client !== 'object' || client === null) return undefined;
  const candidate = client as Record<string, unknown>;
  if (typeof candidate.query !== 'function') return undefined;
  if (typeof candidate.listen === 'function') return 'pglite';
  if (typeof candidate.on !== 'function' || typeof candidate.connect !== 'function') return undefined;
  // pg.Client keeps its settings in `connectionParameters`; a pg.Pool has neither that nor `release`.
  if (typeof candidate.connectionParameters === 'object') return 'client';
  return 'totalCount' in candidate ? 'pool' : undefined;
}
