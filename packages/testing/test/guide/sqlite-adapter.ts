import { readFile, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import {
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
  checkIdentifier,
  checkOptionKeys,
  clientOrUrl,
  decideRestore,
  decideWrite,
  encodeCursor,
  invalidOptions,
  type PreparedRecord,
  type PreparedRestoreRecord,
  parsePositiveInteger,
  parseScanOptions,
  restoreBatch,
  type StoredVersion,
  saveBatch,
  userKey,
  type WriteDecision,
  wrapDriverError,
} from '@cagey-sessions/core/adapter-kit';
import initSqlJs, { type Database, type SqlJsStatic, type SqlValue } from 'sql.js';

const ADAPTER_NAME = 'sqlite';
const DEFAULT_TABLE = 'cagey_user_data';
/** sql.js is synchronous: a batch holds the event loop for its whole run, so batches stay small. */
const DEFAULT_BATCH_SIZE = 200;
/** Users in a `scan` page without a `limit`, and the most a page holds. */
const DEFAULT_SCAN_LIMIT = 500;
const MAX_SCAN_LIMIT = 5000;

export interface SqliteAdapterOptions {
  /** A sql.js `Database` you own. The adapter uses it and never closes it. */
  client?: Database;
  /**
   * `file:///path/to/players.sqlite`, instead of `client`: the adapter loads the file on first use (an empty
   * database when there is no file yet) and writes the database back to the file in `close()`.
   */
  url?: string;
  /** The table holding the users: letters, digits and underscores. Default `cagey_user_data`. */
  table?: string;
  /** The batch size core's pipeline uses with this adapter (its `maxBatchSize`). Larger batches still work. Default 200. */
  batchSize?: number;
}

/**
 * Stores each user as one row of a SQLite table (sql.js: SQLite compiled to WebAssembly, in memory):
 * `user_id` (the `userKey`), `data` (JSON text; NULL for a deleted user's tombstone), `version` and
 * `write_id`. A batch is one transaction.
 */
export class SqliteAdapter implements PersistenceAdapter {
  readonly name = ADAPTER_NAME;
  readonly maxBatchSize: number;
  /** The table, double-quoted for SQL. */
  readonly table: string;
  readonly #lifecycle: ClientLifecycle<Database>;

  constructor(options: SqliteAdapterOptions) {
    checkOptionKeys(ADAPTER_NAME, options, ['client', 'url', 'table', 'batchSize']);
    this.table = `"${checkIdentifier(ADAPTER_NAME, 'table name', options.table ?? DEFAULT_TABLE)}"`;
    this.maxBatchSize = parsePositiveInteger(
      ADAPTER_NAME,
      'batchSize',
      options.batchSize,
      DEFAULT_BATCH_SIZE,
    );
    const source = clientOrUrl(ADAPTER_NAME, options, { schemes: ['file'], clientNoun: 'a sql.js Database' });
    if (source.kind === 'client') {
      if (!isDatabase(source.client)) throw invalidOptions(ADAPTER_NAME, 'client must be a sql.js Database.');
      this.#lifecycle = new ClientLifecycle(ADAPTER_NAME, { given: source.client });
    } else {
      const path = localPath(source.url);
      this.#lifecycle = new ClientLifecycle(ADAPTER_NAME, {
        open: () => openFile(path),
        release: (db) => saveFile(db, path),
      });
    }
  }

  /** The database for `operation`: ADAPTER_CLOSED after `close()`, a failure to open wrapped. */
  async #database(operation: string): Promise<Database> {
    try {
      return await this.#lifecycle.client(operation);
    } catch (error) {
      throw wrapDriverError(ADAPTER_NAME, operation, error);
    }
  }

  /** Idempotent. Writes and frees a database opened from `url`; a `client` passed in stays open. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  /** Creates the table when it is missing. Idempotent: run again (by any adapter), it changes nothing. */
  async setup(): Promise<void> {
    const db = await this.#database('setup');
    try {
      db.run(`CREATE TABLE IF NOT EXISTS ${this.table} (
        user_id  TEXT    NOT NULL PRIMARY KEY,
        data     TEXT,
        version  INTEGER NOT NULL,
        write_id TEXT
      )`);
    } catch (error) {
      throw wrapDriverError(ADAPTER_NAME, 'setup', error);
    }
  }

  async load(userId: UserId): Promise<StoredUser | undefined> {
    const key = userKey(userId);
    const db = await this.#database('load');
    try {
      const row = firstRow(
        db,
        `SELECT data, version FROM ${this.table} WHERE user_id = ? AND data IS NOT NULL`,
        [key],
      );
      if (row === undefined) return undefined;
      return { userData: JSON.parse(row[0] as string) as UserData, version: row[1] as number };
    } catch (error) {
      throw wrapDriverError(ADAPTER_NAME, 'load', error);
    }
  }

  async save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    const db = await this.#database('save');
    return saveBatch(ADAPTER_NAME, records, async (prepared) =>
      this.#write(db, 'save', prepared, (record, stored) => decideWrite(record.expectedVersion, stored)),
    );
  }

  /**
   * One transaction for the batch: each record's stored state is read, `decide` applies the version rules
   * (`decideWrite` for `save`, `decideRestore` for `restore`), and the record is written or reported as a
   * conflict. `saveBatch` (or `restoreBatch`) has validated the records and refused a user's second record, so
   * every key here is distinct. A record whose values SQLite refuses gets its own error result; any other
   * error rolls the whole batch back and the kit wraps it: the batch rejects, nothing of it written.
   */
  #write<P extends PreparedRecord | PreparedRestoreRecord>(
    db: Database,
    operation: 'save' | 'restore',
    prepared: P[],
    decide: (record: P, stored: StoredVersion) => WriteDecision,
  ): SaveResult[] {
    return transaction(db, () =>
      prepared.map((record): SaveResult => {
        const decision = decide(record, this.#stored(db, record.key));
        if (!decision.write) {
          return {
            status: 'conflict',
            currentVersion: decision.currentVersion,
            currentWriteId: decision.currentWriteId,
          };
        }
        try {
          db.run(
            `INSERT INTO ${this.table} (user_id, data, version, write_id) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE
             SET data = excluded.data, version = excluded.version, write_id = excluded.write_id`,
            [record.key, record.json, decision.version, record.writeId ?? null],
          );
        } catch (error) {
          if (!refusesValue(error)) throw error;
          return { status: 'error', error: wrapDriverError(ADAPTER_NAME, operation, error) };
        }
        return { status: 'ok', version: decision.version };
      }),
    );
  }

  /** What the table holds for `key`, in the shape `decideWrite` and `decideRestore` take. A tombstone keeps its version. */
  #stored(db: Database, key: string): StoredVersion {
    const row = firstRow(
      db,
      `SELECT version, data IS NOT NULL, write_id FROM ${this.table} WHERE user_id = ?`,
      [key],
    );
    if (row === undefined) return { version: 0, live: false };
    return { version: row[0] as number, live: row[1] === 1, writeId: (row[2] as string | null) ?? undefined };
  }

  /**
   * Writes each record with exactly its `version` where the table holds nothing for the user or an older
   * version, live or tombstone (`decideRestore`); otherwise the result is a conflict. The same transaction
   * and the same per-record errors as `save`.
   */
  async restore(records: readonly RestoreRecord[]): Promise<SaveResult[]> {
    const db = await this.#database('restore');
    return restoreBatch(ADAPTER_NAME, records, async (prepared) =>
      this.#write(db, 'restore', prepared, (record, stored) => decideRestore(record.version, stored)),
    );
  }

  /**
   * Lists live users a page at a time in `user_id` order. Keyset paging (`user_id > ?`, the cursor holding the
   * last key listed) lists every user live for the whole listing exactly once, whatever is written meanwhile.
   */
  async scan(options?: ScanOptions): Promise<ScanPage> {
    const { position, limit } = parseScanOptions(ADAPTER_NAME, options, {
      defaultLimit: DEFAULT_SCAN_LIMIT,
      maxLimit: MAX_SCAN_LIMIT,
      readPosition: (key) => (typeof key === 'string' ? key : undefined),
    });
    const db = await this.#database('scan');
    let rows: SqlValue[][];
    try {
      // Every user key is a non-empty string, so `> ''` is the first page.
      rows =
        db.exec(
          `SELECT user_id, data, version FROM ${this.table}
           WHERE user_id > ? AND data IS NOT NULL ORDER BY user_id LIMIT ?`,
          [position ?? '', limit],
        )[0]?.values ?? [];
    } catch (error) {
      throw wrapDriverError(ADAPTER_NAME, 'scan', error);
    }
    const users = rows.map(
      ([userId, data, version]): ScannedUser => ({
        userId: userId as string,
        userData: JSON.parse(data as string) as UserData,
        version: version as number,
      }),
    );
    // A short page is the last one; after a full page the next one may be empty.
    const last = users.length === limit ? users.at(-1)?.userId : undefined;
    return { users, cursor: last === undefined ? undefined : encodeCursor(ADAPTER_NAME, last) };
  }

  async delete(userId: UserId, expectedVersion?: number): Promise<boolean> {
    const key = userKey(userId);
    const expected = checkExpectedVersion(expectedVersion);
    const db = await this.#database('delete');
    try {
      return transaction(db, () => {
        const stored = this.#stored(db, key);
        if (!stored.live) return false;
        if (expected !== undefined && stored.version !== expected) {
          throw new ConflictError(userId, expected, stored.version);
        }
        // The tombstone: no data, no write id, and the next version, so no later writer can reuse a version.
        db.run(`UPDATE ${this.table} SET data = NULL, write_id = NULL, version = ? WHERE user_id = ?`, [
          stored.version + 1,
          key,
        ]);
        return true;
      });
    } catch (error) {
      throw wrapDriverError(ADAPTER_NAME, 'delete', error); // a ConflictError passes through unchanged
    }
  }
}

/** The first row `sql` returns, or `undefined`. */
function firstRow(db: Database, sql: string, params: SqlValue[]): SqlValue[] | undefined {
  return db.exec(sql, params)[0]?.values[0];
}

/**
 * Runs `work` between BEGIN IMMEDIATE and COMMIT, and rolls back when it throws. sql.js is synchronous, so no
 * other call on this database (from this adapter or any other) can run inside the transaction.
 */
function transaction<T>(db: Database, work: () => T): T {
  db.run('BEGIN IMMEDIATE');
  try {
    const result = work();
    db.run('COMMIT');
    return result;
  } catch (error) {
    try {
      db.run('ROLLBACK');
    } catch {
      // SQLite already rolled back (some errors end the transaction themselves)
    }
    throw error;
  }
}

/** SQLite's primary result codes of a statement whose values it refused. */
const SQLITE_TOOBIG = 18;
const SQLITE_CONSTRAINT = 19;
const SQLITE_MISMATCH = 20;

/**
 * Whether SQLite refused this statement's values: a CHECK, NOT NULL or trigger constraint (RAISE(ABORT)), a
 * value too big, a type mismatch. SQLite then undoes that statement alone and the transaction goes on, so the
 * record fails alone. Any other error (a missing table, a closed database) fails the whole batch.
 */
function refusesValue(error: unknown): boolean {
  const code = (error as { errcode?: unknown } | null)?.errcode;
  return (
    typeof code === 'number' && [SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH].includes(code & 0xff)
  );
}

function isDatabase(value: unknown): value is Database {
  const candidate = value as Partial<Database> | null;
  return typeof candidate?.exec === 'function' && typeof candidate.run === 'function';
}

/** The file a `file://` URL names. The message does not repeat the URL, like every URL message of the kit. */
function localPath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch {
    throw invalidOptions(
      ADAPTER_NAME,
      'url must name a local file: file:///absolute/path/to/players.sqlite.',
    );
  }
}

/** sql.js compiles its WebAssembly module once per process; every adapter shares it. */
let sqlJs: Promise<SqlJsStatic> | undefined;

async function openFile(path: string): Promise<Database> {
  sqlJs ??= initSqlJs().catch((error: unknown) => {
    sqlJs = undefined; // the next call tries again
    throw error;
  });
  const SQL = await sqlJs;
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return new SQL.Database(bytes);
}

/** Writes the database to `path` (a temporary file renamed over it, so a crash leaves the old file whole). */
async function saveFile(db: Database, path: string): Promise<void> {
  try {
    await writeFile(`${path}.tmp`, db.export());
    await rename(`${path}.tmp`, path);
  } catch (error) {
    throw wrapDriverError(ADAPTER_NAME, 'close', error);
  } finally {
    db.close();
  }
}
