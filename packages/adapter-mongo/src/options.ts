import { type Duration, ValidationError } from '@cagey-sessions/core';
import {
  checkIdentifier,
  checkOptionKeys,
  clientOrUrl,
  invalidOptions,
  parseDuration,
  parsePositiveInteger,
  passwordOfUrl,
} from '@cagey-sessions/core/adapter-kit';
import type { Db, MongoClient, MongoClientOptions } from 'mongodb';

export const DEFAULT_COLLECTION = 'cagey_user_data';
export const DEFAULT_BATCH_SIZE = 1000;
/** How long an owned client waits for a server to select or connect to before an operation fails. */
export const DEFAULT_CONNECT_TIMEOUT = '5s';
/** Where `createMongoAdapter()` finds a URL when it is given no client, Db or URL. */
export const URL_ENV_VAR = 'MONGODB_URI';

interface CommonOptions {
  /** Collection holding one document per user. Letters, digits, underscores. Default `cagey_user_data`. */
  collection?: string;
  /** Records per `save` call: core's pipeline uses it as its batch size. Default 1000. */
  batchSize?: number;
  /**
   * Largest number of update operations in one `bulkWrite` (inserts are not counted); a save with more is sent
   * as several bulkWrites, one after the other. Default: no limit, one `bulkWrite` per save. FerretDB 1.x needs
   * 50 or less (see the README).
   */
  maxUpdatesPerBulkWrite?: number;
}

/** Options of `MongoAdapter`: an existing client (or a promise of one), a `Db`, or a connection URL. */
export type MongoAdapterOptions = CommonOptions &
  (
    | {
        /** A client you own: the adapter never closes it. */
        client: MongoClient | Promise<MongoClient>;
        /** Database name; default: the client's default database (the one in its URL, else `test`). */
        database?: string;
        db?: never;
        url?: never;
        clientOptions?: never;
        connectTimeout?: never;
      }
    | {
        /** A database handle you own: the adapter never closes its client. */
        db: Db;
        client?: never;
        url?: never;
        database?: never;
        clientOptions?: never;
        connectTimeout?: never;
      }
    | {
        /** `mongodb://` or `mongodb+srv://` URL; the adapter opens the client and closes it in `close()`. */
        url: string;
        /** Options for the `MongoClient` the adapter opens. */
        clientOptions?: MongoClientOptions;
        /**
         * How long an operation waits for an unreachable server before it fails (milliseconds or an `ms`
         * string such as `'5s'`); the client keeps reconnecting in the background. Sets the client's
         * `serverSelectionTimeoutMS` and `connectTimeoutMS` unless `clientOptions` or the URL set them.
         * Default `'5s'`.
         */
        connectTimeout?: Duration;
        /** Database name; default: the one in the URL, else `test`. */
        database?: string;
        client?: never;
        db?: never;
      }
  );

/** `createMongoAdapter`'s options: the constructor's, where without `client`, `db` and `url` MONGODB_URI is read. */
export type CreateMongoAdapterOptions = CommonOptions & {
  client?: MongoClient | Promise<MongoClient>;
  db?: Db;
  url?: string;
  database?: string;
  clientOptions?: MongoClientOptions;
  connectTimeout?: Duration;
};

/** Where the adapter's collection comes from. */
export type MongoSource =
  | { kind: 'client'; client: MongoClient | Promise<MongoClient>; database: string | undefined }
  | { kind: 'db'; db: Db }
  | {
      kind: 'url';
      url: string;
      /** `clientOptions` with `connectTimeout` filled in (see `withTimeouts`). */
      clientOptions: MongoClientOptions;
      database: string | undefined;
      /** The passwords of the URL and of `clientOptions.auth`, removed from every error the adapter raises. */
      secrets: string[];
    };

/** `MongoAdapterOptions`, checked, with every default applied. */
export interface ResolvedOptions {
  collection: string;
  batchSize: number;
  /** `Infinity` when unlimited. */
  maxUpdatesPerBulkWrite: number;
  source: MongoSource;
}

const KNOWN_KEYS = [
  'client',
  'db',
  'url',
  'database',
  'clientOptions',
  'connectTimeout',
  'collection',
  'batchSize',
  'maxUpdatesPerBulkWrite',
] as const;
/** Options of earlier versions, and what they are called now. */
const RENAMED = { maxBatchSize: 'batchSize' };
/** Options that only a client the adapter opens from `url` has. */
const URL_ONLY = ['clientOptions', 'connectTimeout'] as const;
const URL_RULES = { schemes: ['mongodb', 'mongodb+srv'], clientNoun: 'a MongoClient' } as const;

/**
 * Checks the options (INVALID_OPTIONS for anything unusable, an unknown or renamed key included) and applies
 * the defaults. Without `client`, `db` and `url`, the URL comes from the environment variable `envVar` if given.
 */
export function resolveOptions(adapterName: string, options: unknown, envVar?: string): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidOptions(adapterName, 'pass { client }, { db } or { url }.');
  }
  checkOptionKeys(adapterName, options, KNOWN_KEYS, RENAMED);
  const given = options as CreateMongoAdapterOptions;
  return {
    collection: checkIdentifier(adapterName, 'collection', given.collection ?? DEFAULT_COLLECTION, 120),
    batchSize: parsePositiveInteger(adapterName, 'batchSize', given.batchSize, DEFAULT_BATCH_SIZE),
    maxUpdatesPerBulkWrite: parsePositiveInteger(
      adapterName,
      'maxUpdatesPerBulkWrite',
      given.maxUpdatesPerBulkWrite,
      Number.POSITIVE_INFINITY,
    ),
    source: sourceOf(adapterName, given, envVar),
  };
}

function sourceOf(
  adapterName: string,
  options: CreateMongoAdapterOptions,
  envVar: string | undefined,
): MongoSource {
  const database =
    options.database === undefined ? undefined : checkDatabaseName(adapterName, options.database);
  if (options.db === undefined) {
    const given = clientOrUrl(adapterName, options, { ...URL_RULES, envVar });
    if (given.kind === 'client') {
      refuseUrlOnly(adapterName, options);
      return { kind: 'client', client: given.client, database };
    }
    const connectTimeout = parseDuration(
      adapterName,
      'connectTimeout',
      options.connectTimeout,
      DEFAULT_CONNECT_TIMEOUT,
    );
    return {
      kind: 'url',
      url: given.url,
      clientOptions: withTimeouts(given.url, options.clientOptions, connectTimeout),
      database,
      secrets: secretsOf(given.url, options.clientOptions),
    };
  }
  if (options.client !== undefined || options.url !== undefined) {
    throw invalidOptions(adapterName, 'pass exactly one of client, db or url.');
  }
  if (database !== undefined) throw invalidOptions(adapterName, 'database comes from the Db; leave it out.');
  refuseUrlOnly(adapterName, options);
  return { kind: 'db', db: options.db };
}

function refuseUrlOnly(adapterName: string, options: CreateMongoAdapterOptions): void {
  for (const option of URL_ONLY) {
    if (options[option] !== undefined) {
      throw invalidOptions(
        adapterName,
        `${option} applies to the client the adapter opens from { url }; with your own client, set ` +
          'serverSelectionTimeoutMS, connectTimeoutMS and the like on it instead.',
      );
    }
  }
}

/** The passwords of a URL and of `clientOptions.auth`, for `wrapDriverError`. */
function secretsOf(url: string, clientOptions: MongoClientOptions | undefined): string[] {
  const secrets: string[] = [];
  const fromUrl = passwordOfUrl(url);
  if (fromUrl !== undefined) secrets.push(fromUrl);
  const fromOptions = clientOptions?.auth?.password;
  if (typeof fromOptions === 'string' && fromOptions !== '') secrets.push(fromOptions);
  return secrets;
}

const TIMEOUT_OPTIONS = ['serverSelectionTimeoutMS', 'connectTimeoutMS'] as const;

/** `clientOptions` with `connectTimeout` filled in for each timeout neither they nor the URL set. */
function withTimeouts(
  url: string,
  clientOptions: MongoClientOptions | undefined,
  connectTimeout: number,
): MongoClientOptions {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1).toLowerCase() : '';
  const inUrl = new Set(query.split('&').map((pair) => pair.split('=')[0]));
  const options: MongoClientOptions = { ...clientOptions };
  for (const name of TIMEOUT_OPTIONS) {
    if (options[name] === undefined && !inUrl.has(name.toLowerCase())) options[name] = connectTimeout;
  }
  return options;
}

/** MongoDB's database-name rules: no `/\. "$*<>:|?` or NUL, at most 63 characters. */
function checkDatabaseName(adapterName: string, value: unknown): string {
  if (
    typeof value === 'string' &&
    /^[^/\\. "$*<>:|?]{1,63}$/.test(value) &&
    !value.includes(String.fromCharCode(0))
  ) {
    return value;
  }
  throw new ValidationError(
    'INVALID_OPTIONS',
    `[${adapterName}] Invalid database ${JSON.stringify(String(value)).slice(0, 80)}: 1 to 63 characters, none of /\\. "$*<>:|? or NUL.`,
  );
}
