import type { Duration } from '@cagey-sessions/core';
import {
  type ClientSource,
  checkOptionKeys,
  clientOrUrl,
  invalidOptions,
  parseDuration,
  parsePositiveInteger,
} from '@cagey-sessions/core/adapter-kit';
import { parseTableName, type TableName } from './sql.js';

/**
 * What the adapter needs from a client: `query(text, values)` resolving to `{ rows }`. A `pg.Pool`, a
 * `pg.Client` and an `@electric-sql/pglite` instance all fit unchanged.
 */
export interface PostgresClient {
  query(text: string, values?: unknown[]): Promise<{ rows: readonly unknown[] }>;
}

/** Settings for the pool the adapter opens itself from `url` (passed to `pg.Pool`). */
export interface PostgresPoolOptions {
  /** Most connections the pool opens. Default 10. */
  max?: number;
  /** Milliseconds to wait for a connection before a query fails. Overrides the adapter's `connectTimeout`. */
  connectionTimeoutMillis?: number;
  /**
   * The password, when `url` has none (the URL's password wins). pg itself ignores this option next to a
   * connection string, so the adapter writes it into the URL it hands to pg; a password function cannot be.
   */
  password?: string;
  /** Milliseconds an idle connection stays open. pg's default (10,000) when absent. */
  idleTimeoutMillis?: number;
  /** Any other `pg.Pool` option, e.g. `ssl` or `application_name`. */
  [option: string]: unknown;
}

/** Options common to both ways of constructing the adapter. */
export interface PostgresAdapterBaseOptions {
  /**
   * Table holding the user data: `'player_sessions'` or `'schema.table'`. Each part: letters, digits and
   * underscores, not starting with a digit, at most 63 characters. Exposed as given as `adapter.table`.
   * Default `cagey_user_data`.
   */
  table?: string;
  /** Most records written in one statement (`maxBatchSize`); larger `save` calls are split. Default 500. */
  batchSize?: number;
  /**
   * Only with `url`: how long a call waits for a connection of the adapter's pool (connecting, authenticating,
   * or waiting for a free one) before it fails, so an unreachable server fails calls quickly instead of hanging.
   * Milliseconds or an `ms` string such as `'5s'`. Default `'5s'`. `clientOptions.connectionTimeoutMillis`
   * wins when given.
   */
  connectTimeout?: Duration;
}

export type PostgresAdapterOptions = PostgresAdapterBaseOptions &
  (
    | {
        /** An existing `pg.Pool`, `pg.Client` or PGlite instance. It stays open after `close()`. */
        client: PostgresClient;
        url?: never;
        clientOptions?: never;
      }
    | {
        /** A connection string; the adapter opens a `pg.Pool` (pg must be installed) and closes it in `close()`. */
        url: string;
        client?: never;
        /** Options for that pool. */
        clientOptions?: PostgresPoolOptions;
      }
  );

/** `createPostgresAdapter`'s options: the constructor's, where without `client` and `url` DATABASE_URL is read. */
export type CreatePostgresAdapterOptions = PostgresAdapterBaseOptions & {
  client?: PostgresClient;
  url?: string;
  clientOptions?: PostgresPoolOptions;
};

export const DEFAULT_TABLE = 'cagey_user_data';
export const DEFAULT_BATCH_SIZE = 500;
/** Largest batch accepted by `batchSize`; beyond it statements get unwieldy for no gain. */
export const MAX_BATCH_SIZE = 50_000;
/** Default `connectTimeout`. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Where `createPostgresAdapter()` finds the URL when given neither `client` nor `url`. */
export const URL_ENV_VAR = 'DATABASE_URL';

const OPTION_KEYS = ['client', 'url', 'clientOptions', 'connectTimeout', 'table', 'batchSize'];
/** Options of earlier versions, refused with their new name. */
const RENAMED_OPTIONS = { pool: 'clientOptions' };
const CLIENT_NOUN = 'a pg.Pool, pg.Client or PGlite';

/** The options, checked, with their defaults applied. */
export interface ResolvedOptions {
  source: ClientSource<PostgresClient>;
  table: TableName;
  batchSize: number;
  connectTimeoutMs: number;
  clientOptions: PostgresPoolOptions | undefined;
}

/**
 * Checks the options (INVALID_OPTIONS for anything unusable, an unknown or renamed key included) and applies
 * the defaults. Without `client` and `url`, the URL comes from the environment variable `envVar` if given.
 */
export function resolveOptions(adapterName: string, options: unknown, envVar?: string): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidOptions(adapterName, 'options must be an object.');
  }
  checkOptionKeys(adapterName, options, OPTION_KEYS, RENAMED_OPTIONS);
  const given = options as CreatePostgresAdapterOptions;
  const source = clientOrUrl(adapterName, given, {
    schemes: ['postgres', 'postgresql'],
    envVar,
    clientNoun: CLIENT_NOUN,
  });
  if (source.kind === 'client') {
    if (typeof (source.client as Partial<PostgresClient>).query !== 'function') {
      throw invalidOptions(adapterName, `client must have a query(text, values) method (${CLIENT_NOUN}).`);
    }
    if (given.clientOptions !== undefined || given.connectTimeout !== undefined) {
      throw invalidOptions(
        adapterName,
        'clientOptions and connectTimeout apply to the pool the adapter opens from a url; set pg options ' +
          '(connectionTimeoutMillis, max, ssl) on your own pool instead.',
      );
    }
  }
  const { clientOptions } = given;
  if (clientOptions !== undefined && (typeof clientOptions !== 'object' || clientOptions === null)) {
    throw invalidOptions(adapterName, 'clientOptions must be an object of pg.Pool options.');
  }
  if (clientOptions?.password !== undefined && typeof clientOptions.password !== 'string') {
    throw invalidOptions(
      adapterName,
      'clientOptions.password must be a string: pg ignores any other password next to a connection string ' +
        '(for a password function, pass your own pg.Pool as client).',
    );
  }
  return {
    source,
    table: parseTableName(adapterName, given.table ?? DEFAULT_TABLE),
    batchSize: parsePositiveInteger(
      adapterName,
      'batchSize',
      given.batchSize,
      DEFAULT_BATCH_SIZE,
      MAX_BATCH_SIZE,
    ),
    connectTimeoutMs: parseDuration(
      adapterName,
      'connectTimeout',
      given.connectTimeout,
      DEFAULT_CONNECT_TIMEOUT_MS,
    ),
    clientOptions,
  };
}
