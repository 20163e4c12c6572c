import {
  AdapterError,
  type CageySessionsError,
  ConflictError,
  type PersistenceAdapter,
  type SaveRecord,
  type SaveResult,
  type StoredUser,
  type UserData,
  type UserId,
  userKey,
  ValidationError,
} from '@cagey-sessions/core';
import {
  checkExpectedVersion,
  type PreparedRecord,
  passwordOfUrl,
  saveBatch,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import {
  ADAPTER_NAME,
  addWriteIdSql,
  DEFAULT_TABLE,
  deleteSql,
  isDataError,
  isTransient,
  loadSql,
  parseTableName,
  RECORD_SEPARATOR,
  saveSql,
  setupSql,
  type TableName,
} from './sql.js';
import { findUnstorable, unstorableError } from './unstorable.js';

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
   * underscores, not starting with a digit, at most 63 characters. Default `cagey_user_data`.
   */
  table?: string;
  /** Most records written in one statement (`maxBatchSize`); larger `save` calls are split. Default 500. */
  batchSize?: number;
  /**
   * Only with `url`: how long a call waits for a connection of the adapter's pool (connecting, authenticating,
   * or waiting for a free one) before it fails, so an unreachable server fails calls quickly instead of hanging.
   * Milliseconds or an `ms` string such as `'5s'`. Default `'5s'`. `pool.connectionTimeoutMillis` wins when given.
   */
  connectTimeout?: number | string;
}

export type PostgresAdapterOptions = PostgresAdapterBaseOptions &
  (
    | {
        /** An existing `pg.Pool`, `pg.Client` or PGlite instance. It stays open after `close()`. */
        client: PostgresClient;
        url?: never;
        pool?: never;
      }
    | {
        /** A connection string; the adapter opens a `pg.Pool` (pg must be installed) and closes it in `close()`. */
        url: string;
        client?: never;
        /** Options for that pool. */
        pool?: PostgresPoolOptions;
      }
  );

export const DEFAULT_BATCH_SIZE = 500;
/** Default `connectTimeout`. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Largest batch accepted by `batchSize`; beyond it statements get unwieldy for no gain. */
export const MAX_BATCH_SIZE = 50_000;
/** A statement carries at most this much JSON text; larger batches are split (a lone bigger record goes alone). */
const MAX_STATEMENT_CHARS = 64 * 1024 * 1024;
/**
 * How often a record is written again when the statement's snapshot contradicts the version predicate (a
 * concurrent writer committed between the snapshot and the row lock); each retry uses a fresh snapshot.
 */
const RACE_RETRIES = 5;
/**
 * How often a statement the database aborted as a deadlock victim or a serialization failure (when the
 * session runs at REPEATABLE READ or SERIALIZABLE) is sent again. Both roll back the whole statement.
 */
const TRANSIENT_RETRIES = 5;

interface PoolLike extends PostgresClient {
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/**
 * Stores user data in one PostgreSQL table (see the README for the DDL): one row per user, `data` jsonb (NULL
 * for a deleted user's tombstone), a `version` that only grows. A batch is one statement.
 */
export class PostgresAdapter implements PersistenceAdapter {
  readonly name = ADAPTER_NAME;
  readonly maxBatchSize: number;
  /** The table in SQL form, e.g. `"game"."players"`. */
  readonly table: string;

  readonly #table: TableName;
  readonly #sql: { load: string; save: string; delete: string; setup: string };
  readonly #client: PostgresClient | undefined;
  readonly #url: string | undefined;
  readonly #poolOptions: PostgresPoolOptions | undefined;
  readonly #connectTimeoutMs: number;
  /** Set when the adapter opened the pool itself (from `url`); only then does `close()` end it. */
  #ownPool: Promise<PoolLike> | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: PostgresAdapterOptions) {
    if (typeof options !== 'object' || options === null) throw invalidOptions('options must be an object.');
    const { client, url } = options;
    if ((client === undefined) === (url === undefined)) {
      throw invalidOptions('pass exactly one of `client` (a pg.Pool, pg.Client or PGlite) or `url`.');
    }
    if (client !== undefined && typeof (client as Partial<PostgresClient>).query !== 'function') {
      throw invalidOptions(
        '`client` must have a query(text, values) method (a pg.Pool, pg.Client or PGlite).',
      );
    }
    if (url !== undefined && (typeof url !== 'string' || url.length === 0)) {
      throw invalidOptions('`url` must be a non-empty connection string.');
    }
    const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
      throw invalidOptions(`\`batchSize\` must be an integer from 1 to ${MAX_BATCH_SIZE}.`);
    }
    this.#connectTimeoutMs = parseDuration(
      'connectTimeout',
      options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
    );
    if (options.pool !== undefined && (typeof options.pool !== 'object' || options.pool === null)) {
      throw invalidOptions('`pool` must be an object of pg.Pool options.');
    }
    const poolPassword = options.pool?.password;
    if (poolPassword !== undefined && typeof poolPassword !== 'string') {
      throw invalidOptions(
        '`pool.password` must be a string: pg ignores any other password next to a connection string ' +
          '(for a password function, pass your own pg.Pool as `client`).',
      );
    }
    this.#table = parseTableName(options.table ?? DEFAULT_TABLE);
    this.table = this.#table.quoted;
    this.maxBatchSize = batchSize;
    this.#client = client;
    this.#url = url;
    this.#poolOptions = options.pool;
    this.#sql = {
      load: loadSql(this.#table),
      save: saveSql(this.#table),
      delete: deleteSql(this.#table),
      setup: setupSql(this.#table),
    };
  }

  /** Creates the table when it is missing. Idempotent; safe when several processes run it at once. */
  async setup(): Promise<void> {
    const client = await this.#use('setup');
    try {
      await client.query(this.#sql.setup);
    } catch (error) {
      throw this.#error('setup', error);
    }
  }

  async load(userId: UserId): Promise<StoredUser | undefined> {
    const client = await this.#use('load');
    const key = userKey(userId);
    let rows: readonly unknown[];
    try {
      ({ rows } = await client.query(this.#sql.load, [key]));
    } catch (error) {
      throw this.#error('load', error);
    }
    const row = rows[0] as { data: string; version: unknown } | undefined;
    if (row === undefined) return undefined;
    return { userData: JSON.parse(row.data) as UserData, version: Number(row.version) };
  }

  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    const client = await this.#use('save');
    return saveBatch(this.name, records, (prepared) => this.#write(client, prepared));
  }

  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const client = await this.#use('delete');
    const key = userKey(userId);
    const expected = checkExpectedVersion(expectedVersion);
    for (let attempt = 0; ; attempt++) {
      let row: { deleted: unknown; current: unknown };
      try {
        row = (await client.query(this.#sql.delete, [key, expected ?? null])).rows[0] as typeof row;
      } catch (error) {
        throw this.#error('delete', error);
      }
      if (row.deleted !== null) return true;
      if (row.current === null) return false;
      const current = Number(row.current);
      if (expected !== undefined && current !== expected) throw new ConflictError(userId, expected, current);
      // The snapshot saw a deletable row but the row lock found it changed: decide again on fresh data.
      if (attempt >= RACE_RETRIES) throw new ConflictError(userId, expected ?? current, current);
    }
  }

  /** Idempotent. Ends the pool only when the adapter opened it from `url`; an injected client stays open. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const pool = this.#ownPool;
      if (pool === undefined) return;
      let opened: PoolLike;
      try {
        opened = await pool;
      } catch {
        return;
      }
      try {
        await opened.end();
      } catch (error) {
        throw this.#error('close', error);
      }
    })();
    return this.#closed;
  }

  async #use(operation: string): Promise<PostgresClient> {
    if (this.#closed !== undefined) {
      throw new AdapterError(this.name, `${operation} failed: the adapter is closed.`, {
        code: 'ADAPTER_CLOSED',
      });
    }
    if (this.#client !== undefined) return this.#client;
    this.#ownPool ??= this.#openPool();
    try {
      return await this.#ownPool;
    } catch (error) {
      throw this.#error(operation, error);
    }
  }

  async #openPool(): Promise<PoolLike> {
    let Pool: typeof import('pg').Pool;
    try {
      ({ Pool } = (await import('pg')).default);
    } catch (error) {
      throw new AdapterError(this.name, 'the `url` option needs the `pg` package: npm install pg', {
        cause: error,
      });
    }
    const pool = new Pool({
      max: 10,
      connectionTimeoutMillis: this.#connectTimeoutMs,
      ...this.#poolOptions,
      connectionString: withPassword(this.#url!, this.#poolOptions?.password),
    });
    // An idle connection that the server drops (restart, failover) is reported here; without a listener the
    // process would crash. The pool discards that connection and opens a new one on the next query.
    pool.on('error', () => {});
    return pool;
  }

  /**
   * Writes the validated records (at most one per user, see `saveBatch`): records the database would refuse
   * fail alone before anything is sent, and the rest go in statements of at most `maxBatchSize` records. Rejects only when the first statement failed
   * (so nothing was written); a later failure becomes the error result of each record not yet written.
   */
  async #write(client: PostgresClient, prepared: PreparedRecord[]): Promise<SaveResult[]> {
    const results: SaveResult[] = new Array(prepared.length);
    const sendable: number[] = [];
    for (let i = 0; i < prepared.length; i++) {
      const record = prepared[i]!;
      const reason = findUnstorable(record.json);
      if (reason === undefined) sendable.push(i);
      else results[i] = { status: 'error', error: unstorableError(record.json, reason) };
    }
    // Every writer takes row locks in key order, so concurrent batches over the same users cannot deadlock.
    sendable.sort((a, b) => (prepared[a]!.key < prepared[b]!.key ? -1 : 1));
    const units = this.#chunks(prepared, sendable);
    for (let u = 0; u < units.length; u++) {
      try {
        await this.#writeUnit(client, prepared, units[u]!, results, false);
      } catch (error) {
        // The connection or the schema is broken, so the remaining statements would fail the same way (each
        // after a connection timeout): they are not sent, and their records share this error.
        const wrapped = this.#error('save', error);
        if (u === 0) throw wrapped;
        for (const unit of units.slice(u))
          for (const i of unit) results[i] = { status: 'error', error: wrapped };
        break;
      }
    }
    return results;
  }

  #chunks(prepared: PreparedRecord[], indexes: number[]): number[][] {
    const chunks: number[][] = [];
    let chunk: number[] = [];
    let chars = 0;
    for (const i of indexes) {
      const length = prepared[i]!.json.length;
      if (chunk.length > 0 && (chunk.length >= this.maxBatchSize || chars + length > MAX_STATEMENT_CHARS)) {
        chunks.push(chunk);
        chunk = [];
        chars = 0;
      }
      chunk.push(i);
      chars += length;
    }
    if (chunk.length > 0) chunks.push(chunk);
    return chunks;
  }

  /**
   * One statement for `unit` (indexes into `prepared`, distinct users). When the database refuses the data of
   * some record the statement is rolled back as a whole; the unit is then halved until the refused records are
   * alone, so only they fail. Once split (`split`), any error fails just the records of the failing part.
   */
  async #writeUnit(
    client: PostgresClient,
    prepared: PreparedRecord[],
    unit: number[],
    results: SaveResult[],
    split: boolean,
  ): Promise<void> {
    let pending = unit;
    let isolated = split;
    let races = 0;
    let transient = 0;
    while (pending.length > 0) {
      let rows: readonly unknown[];
      try {
        rows = (await client.query(this.#sql.save, saveParameters(prepared, pending))).rows;
        if (rows.length !== pending.length) {
          throw new AdapterError(
            this.name,
            `save returned ${rows.length} rows for ${pending.length} records.`,
          );
        }
      } catch (error) {
        // The database rolled the whole statement back, so sending it again is safe.
        if (isTransient(error) && transient < TRANSIENT_RETRIES) {
          transient++;
          continue;
        }
        if (isDataError(error) && pending.length > 1) {
          const half = Math.ceil(pending.length / 2);
          await this.#writeUnit(client, prepared, pending.slice(0, half), results, true);
          await this.#writeUnit(client, prepared, pending.slice(half), results, true);
          return;
        }
        if (!isolated && !isDataError(error)) throw error;
        const wrapped = this.#error('save', error);
        for (const i of pending) results[i] = { status: 'error', error: wrapped };
        return;
      }
      // Some records are now written: from here on a failure must not turn them into errors.
      isolated = true;
      const retry: number[] = [];
      for (let j = 0; j < pending.length; j++) {
        const i = pending[j]!;
        const row = rows[j] as { written: unknown; current: unknown; current_write_id: unknown };
        if (row.written !== null) {
          results[i] = { status: 'ok', version: Number(row.written) };
          continue;
        }
        const expected = prepared[i]!.expectedVersion;
        const current = row.current === null ? 0 : Number(row.current);
        // A refusal the snapshot cannot explain means a concurrent writer committed in between: the record
        // is written again with a fresh snapshot, which either succeeds or reports the real stored version.
        const explained = expected !== undefined && current !== expected;
        if (explained || races >= RACE_RETRIES) {
          results[i] =
            typeof row.current_write_id === 'string'
              ? { status: 'conflict', currentVersion: current, currentWriteId: row.current_write_id }
              : { status: 'conflict', currentVersion: current };
        } else {
          retry.push(i);
        }
      }
      races++;
      pending = retry;
    }
  }

  /**
   * Wraps a driver error with core's `wrapDriverError`, handing it every password the adapter can know, so that
   * neither the message nor the (copied) `cause` holds one, at any depth.
   */
  #error(operation: string, error: unknown): CageySessionsError {
    const wrapped = wrapDriverError(this.name, operation, error, this.#secrets());
    return isMissingWriteId(error) ? withMigrationHint(wrapped, this.#table) : wrapped;
  }

  /**
   * The passwords this adapter may have been given: the one in `url`, `pool.password`, pg's PGPASSWORD, and for
   * an injected pg.Pool or pg.Client its configured password or connection string. Read when an error is
   * wrapped, since an injected pool's settings can change. A password given as a function is not known here.
   */
  #secrets(): (string | undefined)[] {
    const secrets = [passwordOfUrl(this.#url), stringOrUndefined(this.#poolOptions?.password)];
    if (this.#client !== undefined) secrets.push(...passwordsOfPgClient(this.#client));
    if (this.#client === undefined || isPgClient(this.#client)) {
      secrets.push(stringOrUndefined(process.env.PGPASSWORD));
    }
    return secrets;
  }
}

function saveParameters(prepared: PreparedRecord[], unit: number[]): unknown[] {
  const keys: string[] = new Array(unit.length);
  const json: string[] = new Array(unit.length);
  const expected: (number | null)[] = new Array(unit.length);
  const writeIds: (string | null)[] = new Array(unit.length);
  for (let j = 0; j < unit.length; j++) {
    const record = prepared[unit[j]!]!;
    keys[j] = record.key;
    json[j] = record.json;
    expected[j] = record.expectedVersion ?? null;
    writeIds[j] = record.writeId ?? null;
  }
  return [keys, json.join(RECORD_SEPARATOR), expected, writeIds];
}

/**
 * pg ignores a `password` option next to a connection string (the string's empty password overrides it), so a
 * string `pool.password` goes into the URL when the URL has no password of its own. The URL's password wins.
 */
function withPassword(url: string, password: unknown): string {
  if (typeof password !== 'string' || password === '') return url;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url);
  if (scheme === null) return url;
  const start = scheme[0].length;
  let end = url.slice(start).search(/[/?#]/);
  end = end === -1 ? url.length : start + end;
  const authority = url.slice(start, end);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  if (colon !== -1 && colon < userinfo.length - 1) return url;
  const user = colon === -1 ? userinfo : userinfo.slice(0, colon);
  const host = authority.slice(at + 1);
  return `${url.slice(0, start)}${user}:${encodeURIComponent(password)}@${host}${url.slice(end)}`;
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * A pg.Pool keeps its settings in `options` (the password non-enumerable), a pg.Client (or a pool's client) in
 * `connectionParameters` and `password`. PGlite has neither of these shapes, so it is left alone.
 */
function isPgClient(client: PostgresClient): boolean {
  const candidate = client as { options?: unknown; connectionParameters?: unknown };
  return (
    (typeof candidate.options === 'object' && candidate.options !== null) ||
    (typeof candidate.connectionParameters === 'object' && candidate.connectionParameters !== null)
  );
}

function passwordsOfPgClient(client: PostgresClient): (string | undefined)[] {
  if (!isPgClient(client)) return [];
  const found: (string | undefined)[] = [];
  const read = (source: unknown, key: string): unknown => {
    try {
      return typeof source === 'object' && source !== null
        ? (source as Record<string, unknown>)[key]
        : undefined;
    } catch {
      return undefined;
    }
  };
  const pg = client as { options?: unknown; connectionParameters?: unknown };
  for (const settings of [pg.options, pg.connectionParameters, client]) {
    found.push(stringOrUndefined(read(settings, 'password')));
    const connectionString = read(settings, 'connectionString');
    if (typeof connectionString === 'string') found.push(passwordOfUrl(connectionString));
  }
  return found;
}

/** The table predates write ids (0.1) and `setup()` was not run: undefined_column naming `write_id`. */
function isMissingWriteId(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '42703' && typeof message === 'string' && message.includes('write_id');
}

function withMigrationHint(wrapped: CageySessionsError, table: TableName): CageySessionsError {
  return new AdapterError(
    ADAPTER_NAME,
    `${wrapped.message.replace(/^\[[^\]]*\] /, '')}. The table was created by version 0.1: run ` +
      `adapter.setup() once, or ${addWriteIdSql(table)} (see "Migrating from 0.1" in the README).`,
    { code: wrapped.code, cause: wrapped.cause },
  );
}

/**
 * A duration option: milliseconds, or an `ms`-style string (`'500ms'`, `'5s'`, `'1.5m'`, `'2 minutes'`).
 * Must be positive and at most 2^31 - 1 ms (what Node.js timers accept).
 */
function parseDuration(name: string, value: unknown): number {
  let parsed = Number.NaN;
  if (typeof value === 'number') parsed = value;
  else if (typeof value === 'string') {
    const match =
      /^(\d+(?:\.\d+)?|\.\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)?$/i.exec(
        value.trim(),
      );
    if (match !== null) parsed = Number(match[1]) * UNIT_MS[(match[2] ?? 'ms').toLowerCase()]!;
  }
  if (Number.isFinite(parsed) && parsed >= 1 && parsed <= 2 ** 31 - 1) return Math.round(parsed);
  const shown = typeof value === 'string' ? JSON.stringify(value).slice(0, 40) : String(value);
  throw invalidOptions(
    `\`${name}\` must be a positive duration: milliseconds or a string such as '5s' (got ${shown}).`,
  );
}

const UNIT_MS: Record<string, number> = {
  ms: 1,
  msec: 1,
  msecs: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1_000,
  sec: 1_000,
  secs: 1_000,
  second: 1_000,
  seconds: 1_000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
};

function invalidOptions(message: string): ValidationError {
  return new ValidationError('INVALID_OPTIONS', `[${ADAPTER_NAME}] Invalid options: ${message}`);
}

/**
 * A `PostgresAdapter` from options, falling back to the `DATABASE_URL` environment variable when neither
 * `client` nor `url` is given.
 */
export function createPostgresAdapter(
  options: PostgresAdapterBaseOptions & {
    client?: PostgresClient;
    url?: string;
    pool?: PostgresPoolOptions;
  } = {},
): PostgresAdapter {
  if (options.client !== undefined || options.url !== undefined) {
    return new PostgresAdapter(options as PostgresAdapterOptions);
  }
  const url = process.env.DATABASE_URL;
  if (url === undefined || url === '') {
    throw invalidOptions('pass `client` or `url`, or set the DATABASE_URL environment variable.');
  }
  return new PostgresAdapter({ ...options, client: undefined, url });
}
