import {
  AdapterError,
  type CageySessionsError,
  ConflictError,
  type PersistenceAdapter,
  type RestoreRecord,
  type SaveRecord,
  type SaveResult,
  type ScannedUser,
  type ScanOptions,
  type ScanPage,
  type StoredUser,
  type UserData,
  type UserId,
} from '@cagey-sessions/core';
import {
  ClientLifecycle,
  checkExpectedVersion,
  chunkByCountAndSize,
  decideRestore,
  encodeCursor,
  type PreparedRecord,
  type PreparedRestoreRecord,
  parseScanOptions,
  restoreBatch,
  saveBatch,
  userKey,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import { type OwnPool, openPool, passwordsOf } from './connection.js';
import {
  type CreatePostgresAdapterOptions,
  type PostgresAdapterOptions,
  type PostgresClient,
  type ResolvedOptions,
  resolveOptions,
  URL_ENV_VAR,
} from './options.js';
import {
  addWriteIdSql,
  deleteSql,
  isDataError,
  isMissingWriteId,
  isTransient,
  loadSql,
  RECORD_SEPARATOR,
  restoreSql,
  saveSql,
  scanSql,
  setupSql,
  type TableName,
} from './sql.js';
import { findUnstorable, unstorableError } from './unstorable.js';

export const ADAPTER_NAME = 'postgres';
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
/** Users in a `scan` page when the caller gives no `limit`. */
export const DEFAULT_SCAN_LIMIT = 1000;
/** The most users a `scan` page holds; a larger `limit` is lowered to this. */
export const MAX_SCAN_LIMIT = 10_000;

/** A validated record of either batch kind: what a statement needs of it. */
type Prepared = PreparedRecord | PreparedRestoreRecord;

/**
 * How one batch kind (`save`, `restore`) is written: its statement, its parameters for some of the records,
 * and what a returned row means for a record: its result, or `undefined` when the statement's snapshot cannot
 * explain a refusal (a concurrent writer committed in between) and the record must be written again.
 */
interface BatchStatement<P extends Prepared> {
  operation: 'save' | 'restore';
  sql: string;
  parameters(prepared: readonly P[], unit: readonly number[]): unknown[];
  result(row: Record<string, unknown>, record: P, lastAttempt: boolean): SaveResult | undefined;
}

/**
 * Stores user data in one PostgreSQL table (see the README for the DDL): one row per user, `data` jsonb (NULL
 * for a deleted user's tombstone), a `version` that only grows. A batch is one statement.
 */
export class PostgresAdapter implements PersistenceAdapter {
  readonly name = ADAPTER_NAME;
  /** The `batchSize` option: most records in one statement. */
  readonly maxBatchSize: number;
  /** The `table` option as given, e.g. `game.players` (default `cagey_user_data`). */
  readonly table: string;

  readonly #options: ResolvedOptions;
  readonly #sql: {
    load: string;
    save: string;
    restore: string;
    delete: string;
    setup: string;
    firstPage: string;
    nextPage: string;
  };
  readonly #saveStatement: BatchStatement<PreparedRecord>;
  readonly #restoreStatement: BatchStatement<PreparedRestoreRecord>;
  /** Over the given client, or the pool the adapter opens (and ends) itself. */
  readonly #lifecycle: ClientLifecycle<PostgresClient> | ClientLifecycle<OwnPool>;

  constructor(options: PostgresAdapterOptions) {
    const resolved = resolveOptions(ADAPTER_NAME, options);
    const { source, table } = resolved;
    this.#options = resolved;
    this.table = table.name;
    this.maxBatchSize = resolved.batchSize;
    this.#sql = {
      load: loadSql(table),
      save: saveSql(table),
      restore: restoreSql(table),
      delete: deleteSql(table),
      setup: setupSql(table),
      firstPage: scanSql(table, { after: false }),
      nextPage: scanSql(table, { after: true }),
    };
    this.#saveStatement = saveStatement(this.#sql.save);
    this.#restoreStatement = restoreStatement(this.#sql.restore);
    this.#lifecycle =
      source.kind === 'client'
        ? new ClientLifecycle(ADAPTER_NAME, { given: source.client })
        : new ClientLifecycle<OwnPool>(ADAPTER_NAME, {
            open: () => openPool(ADAPTER_NAME, source.url, resolved.clientOptions, resolved.connectTimeoutMs),
            release: async (pool) => {
              try {
                await pool.end();
              } catch (error) {
                throw this.#error('close', error);
              }
            },
          });
  }

  /** Creates the table when it is missing. Idempotent; safe when several processes run it at once. */
  async setup(): Promise<void> {
    const client = await this.#client('setup');
    await this.#query(client, 'setup', this.#sql.setup);
  }

  async load(userId: UserId): Promise<StoredUser | undefined> {
    const client = await this.#client('load');
    const rows = await this.#query(client, 'load', this.#sql.load, [userKey(userId)]);
    const row = rows[0] as { data: string; version: unknown } | undefined;
    if (row === undefined) return undefined;
    return { userData: JSON.parse(row.data) as UserData, version: Number(row.version) };
  }

  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    const client = await this.#client('save');
    // #write wraps driver errors itself: a failed later statement becomes its records' error results.
    return saveBatch(ADAPTER_NAME, records, (prepared) => this.#write(client, prepared, this.#saveStatement));
  }

  /**
   * Writes each record at exactly its version when the table holds no row for the user or a row (live or
   * tombstone) of a lower version; otherwise its result is a conflict. One statement per `batchSize` records.
   */
  async restore(records: readonly RestoreRecord[]): Promise<SaveResult[]> {
    const client = await this.#client('restore');
    return restoreBatch(ADAPTER_NAME, records, (prepared) =>
      this.#write(client, prepared, this.#restoreStatement),
    );
  }

  /**
   * Lists live users in primary-key order (the column's collation), `limit` per page (default 1000, at most
   * 10,000), one indexed statement per page. The cursor holds the last key listed, so every user live for the
   * whole listing is listed exactly once whatever is written meanwhile.
   */
  async scan(options?: ScanOptions): Promise<ScanPage> {
    const client = await this.#client('scan');
    const { position, limit } = parseScanOptions(ADAPTER_NAME, options, {
      defaultLimit: DEFAULT_SCAN_LIMIT,
      maxLimit: MAX_SCAN_LIMIT,
      readPosition: (key) => (typeof key === 'string' && key !== '' ? key : undefined),
    });
    const rows = (
      position === undefined
        ? await this.#query(client, 'scan', this.#sql.firstPage, [limit])
        : await this.#query(client, 'scan', this.#sql.nextPage, [position, limit])
    ) as readonly { user_id: string; data: string; version: unknown }[];
    const users = rows.map(
      (row): ScannedUser => ({
        userId: row.user_id,
        userData: JSON.parse(row.data) as UserData,
        version: Number(row.version),
      }),
    );
    // A short page is the last one; a full one may be followed by an empty page.
    const last = users.length === limit ? users.at(-1)?.userId : undefined;
    return { users, cursor: last === undefined ? undefined : encodeCursor(ADAPTER_NAME, last) };
  }

  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const client = await this.#client('delete');
    const key = userKey(userId);
    const expected = checkExpectedVersion(expectedVersion);
    for (let attempt = 0; ; attempt++) {
      const rows = await this.#query(client, 'delete', this.#sql.delete, [key, expected ?? null]);
      const row = rows[0] as { deleted: unknown; current: unknown };
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
    return this.#lifecycle.close();
  }

  /** The client for `operation` (ADAPTER_CLOSED after `close()`); a pool that cannot be opened is wrapped. */
  async #client(operation: string): Promise<PostgresClient> {
    try {
      return await this.#lifecycle.client(operation);
    } catch (error) {
      throw this.#error(operation, error);
    }
  }

  async #query(
    client: PostgresClient,
    operation: string,
    text: string,
    values?: unknown[],
  ): Promise<readonly unknown[]> {
    try {
      return (await client.query(text, values)).rows;
    } catch (error) {
      throw this.#error(operation, error);
    }
  }

  /**
   * Writes the validated records (at most one per user, see `saveBatch`): records the database would refuse
   * fail alone before anything is sent, and the rest go in statements of at most `maxBatchSize` records.
   * Rejects only when the first statement failed (so nothing was written); a later failure becomes the error
   * result of each record not yet written.
   */
  async #write<P extends Prepared>(
    client: PostgresClient,
    prepared: P[],
    statement: BatchStatement<P>,
  ): Promise<SaveResult[]> {
    const results: SaveResult[] = new Array(prepared.length);
    const sendable: number[] = [];
    for (let i = 0; i < prepared.length; i++) {
      const record = prepared[i]!;
      const reason = findUnstorable(record.json);
      if (reason === undefined) sendable.push(i);
      else results[i] = { status: 'error', error: unstorableError(ADAPTER_NAME, record.json, reason) };
    }
    // Every writer takes row locks in key order, so concurrent batches over the same users cannot deadlock.
    sendable.sort((a, b) => (prepared[a]!.key < prepared[b]!.key ? -1 : 1));
    const units = chunkByCountAndSize(sendable, (i) => prepared[i]!.json.length, {
      maxCount: this.maxBatchSize,
      maxSize: MAX_STATEMENT_CHARS,
    });
    for (let u = 0; u < units.length; u++) {
      try {
        await this.#writeUnit(client, prepared, statement, units[u]!, results, false);
      } catch (error) {
        // The connection or the schema is broken, so the remaining statements would fail the same way (each
        // after a connection timeout): they are not sent, and their records share this error.
        const wrapped = this.#error(statement.operation, error);
        if (u === 0) throw wrapped;
        for (const unit of units.slice(u))
          for (const i of unit) results[i] = { status: 'error', error: wrapped };
        break;
      }
    }
    return results;
  }

  /**
   * One statement for `unit` (indexes into `prepared`, distinct users). When the database refuses the data of
   * some record the statement is rolled back as a whole; the unit is then halved until the refused records are
   * alone, so only they fail. Once split (`split`), any error fails just the records of the failing part.
   */
  async #writeUnit<P extends Prepared>(
    client: PostgresClient,
    prepared: P[],
    statement: BatchStatement<P>,
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
        rows = (await client.query(statement.sql, statement.parameters(prepared, pending))).rows;
        if (rows.length !== pending.length) {
          throw new AdapterError(
            ADAPTER_NAME,
            `${statement.operation} returned ${rows.length} rows for ${pending.length} records.`,
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
          await this.#writeUnit(client, prepared, statement, pending.slice(0, half), results, true);
          await this.#writeUnit(client, prepared, statement, pending.slice(half), results, true);
          return;
        }
        if (!isolated && !isDataError(error)) throw error;
        const wrapped = this.#error(statement.operation, error);
        for (const i of pending) results[i] = { status: 'error', error: wrapped };
        return;
      }
      // Some records are now written: from here on a failure must not turn them into errors.
      isolated = true;
      const retry: number[] = [];
      for (let j = 0; j < pending.length; j++) {
        const i = pending[j]!;
        const result = statement.result(
          rows[j] as Record<string, unknown>,
          prepared[i]!,
          races >= RACE_RETRIES,
        );
        // A refusal the snapshot cannot explain means a concurrent writer committed in between: the record
        // is written again with a fresh snapshot, which either succeeds or reports the real stored version.
        if (result === undefined) retry.push(i);
        else results[i] = result;
      }
      races++;
      pending = retry;
    }
  }

  /**
   * Wraps a driver error with the kit's `wrapDriverError`, handing it every password the adapter can know, so
   * that neither the message nor the (copied) `cause` holds one, at any depth.
   */
  #error(operation: string, error: unknown): CageySessionsError {
    const secrets = passwordsOf(this.#options.source, this.#options.clientOptions);
    const wrapped = wrapDriverError(ADAPTER_NAME, operation, error, secrets);
    return isMissingWriteId(error) ? withMigrationHint(wrapped, this.#options.table) : wrapped;
  }
}

function saveStatement(sql: string): BatchStatement<PreparedRecord> {
  return {
    operation: 'save',
    sql,
    parameters: saveParameters,
    result(row, record, lastAttempt) {
      if (row.written !== null) return { status: 'ok', version: Number(row.written) };
      const current = row.current === null ? 0 : Number(row.current);
      const explained = record.expectedVersion !== undefined && current !== record.expectedVersion;
      if (!explained && !lastAttempt) return undefined;
      return conflict(current, row.current_write_id);
    },
  };
}

function restoreStatement(sql: string): BatchStatement<PreparedRestoreRecord> {
  return {
    operation: 'restore',
    sql,
    parameters: (prepared, unit) => {
      const [keys, json, , writeIds] = saveParameters(prepared, unit);
      return [keys, json, unit.map((i) => prepared[i]!.version), writeIds];
    },
    result(row, record, lastAttempt) {
      if (row.written !== null) return { status: 'ok', version: Number(row.written) };
      const stored = {
        version: row.stored === null ? 0 : Number(row.stored),
        live: row.live === true,
        writeId: typeof row.current_write_id === 'string' ? row.current_write_id : undefined,
      };
      const decision = decideRestore(record.version, stored);
      // The snapshot shows an older row, yet the newest committed one was not older: written meanwhile.
      if (decision.write && !lastAttempt) return undefined;
      return decision.write
        ? conflict(stored.live ? stored.version : 0, stored.writeId)
        : conflict(decision.currentVersion, decision.currentWriteId);
    },
  };
}

function conflict(currentVersion: number, writeId: unknown): SaveResult {
  return typeof writeId === 'string'
    ? { status: 'conflict', currentVersion, currentWriteId: writeId }
    : { status: 'conflict', currentVersion };
}

function saveParameters(prepared: readonly Prepared[], unit: readonly number[]): unknown[] {
  const keys: string[] = new Array(unit.length);
  const json: string[] = new Array(unit.length);
  const expected: (number | null)[] = new Array(unit.length);
  const writeIds: (string | null)[] = new Array(unit.length);
  for (let j = 0; j < unit.length; j++) {
    const record = prepared[unit[j]!]!;
    keys[j] = record.key;
    json[j] = record.json;
    expected[j] = 'expectedVersion' in record ? (record.expectedVersion ?? null) : null;
    writeIds[j] = record.writeId ?? null;
  }
  return [keys, json.join(RECORD_SEPARATOR), expected, writeIds];
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
 * A `PostgresAdapter` from options; without `client` and `url` it reads the URL from the `DATABASE_URL`
 * environment variable.
 */
export function createPostgresAdapter(options: CreatePostgresAdapterOptions = {}): PostgresAdapter {
  const { source } = resolveOptions(ADAPTER_NAME, options, URL_ENV_VAR);
  return new PostgresAdapter(
    (source.kind === 'url' ? { ...options, url: source.url } : options) as PostgresAdapterOptions,
  );
}
