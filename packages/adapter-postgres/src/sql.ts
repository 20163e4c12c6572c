import { checkIdentifier } from '@cagey-sessions/core/adapter-kit';

/**
 * Separates the JSON texts of a batch inside one text parameter. JSON text never contains a raw control
 * character (they only appear escaped inside strings), so the separator cannot occur in valid user data, and
 * `string_to_array` splits a batch far faster than the server parses a `text[]` or a JSON array of documents.
 */
export const RECORD_SEPARATOR = '\u001e';

/** A validated table reference: each part checked with the kit's `checkIdentifier` and double-quoted. */
export interface TableName {
  /** As the user gave it: `'table'` or `'schema.table'`. */
  name: string;
  schema: string | undefined;
  table: string;
  /** `"schema"."table"` or `"table"`, safe to place in SQL text. */
  quoted: string;
}

export function parseTableName(adapterName: string, value: unknown): TableName {
  if (typeof value !== 'string') checkIdentifier(adapterName, 'table name', value);
  const name = value as string;
  const parts = name.split('.');
  if (parts.length > 2) checkIdentifier(adapterName, 'table name', value);
  const table = checkIdentifier(adapterName, 'table name', parts.at(-1));
  const schema = parts.length === 2 ? checkIdentifier(adapterName, 'schema name', parts[0]) : undefined;
  return { name, schema, table, quoted: schema === undefined ? `"${table}"` : `"${schema}"."${table}"` };
}

/**
 * The table definition; the README shows the same DDL for teams that migrate by hand. Every flush rewrites
 * rows, so pages keep free space (fillfactor 70): updates then stay on their page (HOT) and skip the index,
 * which measured about 10% faster flushes and a third of the table size after repeated flushes. `write_id`
 * comes last because 0.1 tables gain it by `ALTER TABLE … ADD COLUMN`, so both have the same column order.
 */
export function createTableSql(table: TableName): string {
  return `CREATE TABLE IF NOT EXISTS ${table.quoted} (
  user_id    text        PRIMARY KEY,
  data       jsonb,
  version    bigint      NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  write_id   text
) WITH (fillfactor = 70)`;
}

/** Adds the column 0.1 tables lack. `IF NOT EXISTS`: a no-op for a table that has it. */
export function addWriteIdSql(table: TableName): string {
  return `ALTER TABLE ${table.quoted} ADD COLUMN IF NOT EXISTS write_id text`;
}

/**
 * One statement, so it runs the same on a pool, a single client and PGlite. When the table exists with every
 * column nothing is locked and no DDL privilege is needed. Otherwise a transaction-scoped advisory lock
 * serialises concurrent runs, so the classic `CREATE TABLE IF NOT EXISTS` race (a unique violation on pg_type)
 * cannot surface: a waiter gets the lock after the creator committed and finds the table. A table created by
 * 0.1 (no `write_id`) gets the column the same way: checked in pg_attribute without a lock, added under the
 * lock with `ADD COLUMN IF NOT EXISTS`, which a waiter then finds done.
 */
export function setupSql(table: TableName): string {
  // Identifiers are validated ([A-Za-z0-9_]), so they are safe inside the quoted literals below.
  const createSchema =
    table.schema === undefined
      ? ''
      : `IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '${table.schema}') THEN
      CREATE SCHEMA IF NOT EXISTS "${table.schema}";
    END IF;
    `;
  return `DO $cagey_setup$
BEGIN
  IF to_regclass('${table.quoted}') IS NULL THEN
    PERFORM pg_advisory_xact_lock(1667327845, hashtext('cagey-sessions:${table.quoted}'));
    ${createSchema}${createTableSql(table)};
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_attribute
    WHERE attrelid = to_regclass('${table.quoted}') AND attname = 'write_id' AND NOT attisdropped
  ) THEN
    PERFORM pg_advisory_xact_lock(1667327845, hashtext('cagey-sessions:${table.quoted}'));
    ${addWriteIdSql(table)};
  END IF;
END
$cagey_setup$`;
}

export function loadSql(table: TableName): string {
  return `SELECT data::text AS data, version FROM ${table.quoted} WHERE user_id = $1 AND data IS NOT NULL`;
}

/**
 * A delete turns a live record into a tombstone (data NULL, no write id) holding the next version. `current` is read from
 * the statement's snapshot so a refused delete can report the stored version.
 */
export function deleteSql(table: TableName): string {
  return `WITH deleted AS (
  UPDATE ${table.quoted} AS t SET data = NULL, version = t.version + 1, updated_at = now(), write_id = NULL
  WHERE t.user_id = $1 AND t.data IS NOT NULL AND ($2::bigint IS NULL OR t.version = $2::bigint)
  RETURNING t.version
)
SELECT (SELECT version FROM deleted) AS deleted,
       (SELECT version FROM ${table.quoted} WHERE user_id = $1 AND data IS NOT NULL) AS current`;
}

/**
 * Writes a whole batch in one statement. Parameters: $1 text[] of user keys, $2 the JSON texts joined with
 * RECORD_SEPARATOR, $3 bigint[] of expected versions (NULL = unconditional), $4 text[] of write ids (NULL =
 * none). Keys must be distinct.
 *
 * Each record goes through exactly one of three writes, each storing the record's write id:
 * - unconditional: upsert, version = stored + 1 (a tombstone counts as stored);
 * - expected 0: insert, or revive a tombstone; a live row is a conflict;
 * - expected n: update only the live row at version n (an UPDATE, so a missing row is never inserted).
 * One row per input comes back, in input order: `written` is the new version, or NULL when the version
 * predicate refused the write; then `current` is the live version in the statement's snapshot (NULL: none)
 * and `current_write_id` the write id stored with it (both read from the same snapshot, so they match).
 */
export function saveSql(table: TableName): string {
  const t = table.quoted;
  const live = `FROM ${t} AS s WHERE s.user_id = i.user_id AND s.data IS NOT NULL`;
  return `WITH input AS (
  SELECT * FROM ROWS FROM (
    unnest($1::text[]),
    unnest(string_to_array($2::text, chr(30))),
    unnest($3::bigint[]),
    unnest($4::text[])
  ) WITH ORDINALITY AS i(user_id, data, expected, write_id, ord)
),
unconditional AS (
  INSERT INTO ${t} AS t (user_id, data, version, updated_at, write_id)
  SELECT user_id, data::jsonb, 1, now(), write_id FROM input WHERE expected IS NULL
  ON CONFLICT (user_id) DO UPDATE
    SET data = excluded.data, version = t.version + 1, updated_at = excluded.updated_at,
        write_id = excluded.write_id
  RETURNING t.user_id, t.version
),
created AS (
  INSERT INTO ${t} AS t (user_id, data, version, updated_at, write_id)
  SELECT user_id, data::jsonb, 1, now(), write_id FROM input WHERE expected = 0
  ON CONFLICT (user_id) DO UPDATE
    SET data = excluded.data, version = t.version + 1, updated_at = excluded.updated_at,
        write_id = excluded.write_id
    WHERE t.data IS NULL
  RETURNING t.user_id, t.version
),
updated AS (
  UPDATE ${t} AS t
    SET data = i.data::jsonb, version = t.version + 1, updated_at = now(), write_id = i.write_id
  FROM input AS i
  WHERE i.expected > 0 AND t.user_id = i.user_id AND t.version = i.expected AND t.data IS NOT NULL
  RETURNING t.user_id, t.version
),
written AS (
  SELECT * FROM unconditional UNION ALL SELECT * FROM created UNION ALL SELECT * FROM updated
)
SELECT w.version AS written,
       CASE WHEN w.version IS NULL THEN (SELECT s.version ${live}) END AS current,
       CASE WHEN w.version IS NULL THEN (SELECT s.write_id ${live}) END AS current_write_id
FROM input AS i LEFT JOIN written AS w ON w.user_id = i.user_id
ORDER BY i.ord`;
}

/**
 * Restores a whole batch in one statement. Parameters: $1 text[] of user keys, $2 the JSON texts joined with
 * RECORD_SEPARATOR, $3 bigint[] of versions, $4 text[] of write ids (NULL = none). Keys must be distinct.
 *
 * Each record is inserted at exactly its version, or replaces a stored row (live or tombstone) of a lower
 * version; ON CONFLICT compares with the newest committed row, so a newer version is never overwritten. One
 * row per input comes back, in input order: `written` is the version written, or NULL when the stored row was
 * as new or newer; then `stored` (the row's version in the statement's snapshot, NULL: no row), `live` and
 * `current_write_id` describe that row, read from the same snapshot.
 */
export function restoreSql(table: TableName): string {
  const t = table.quoted;
  const row = `FROM ${t} AS s WHERE s.user_id = i.user_id`;
  return `WITH input AS (
  SELECT * FROM ROWS FROM (
    unnest($1::text[]),
    unnest(string_to_array($2::text, chr(30))),
    unnest($3::bigint[]),
    unnest($4::text[])
  ) WITH ORDINALITY AS i(user_id, data, version, write_id, ord)
),
written AS (
  INSERT INTO ${t} AS t (user_id, data, version, updated_at, write_id)
  SELECT user_id, data::jsonb, version, now(), write_id FROM input
  ON CONFLICT (user_id) DO UPDATE
    SET data = excluded.data, version = excluded.version, updated_at = excluded.updated_at,
        write_id = excluded.write_id
    WHERE t.version < excluded.version
  RETURNING t.user_id, t.version
)
SELECT w.version AS written,
       CASE WHEN w.version IS NULL THEN (SELECT s.version ${row}) END AS stored,
       CASE WHEN w.version IS NULL THEN (SELECT s.data IS NOT NULL ${row}) END AS live,
       CASE WHEN w.version IS NULL THEN (SELECT s.write_id ${row}) END AS current_write_id
FROM input AS i LEFT JOIN written AS w ON w.user_id = i.user_id
ORDER BY i.ord`;
}

/**
 * One page of live users in primary-key order: keyset paging, so a page costs one index range scan however
 * far the listing has come, and a user live for the whole listing is met exactly once whatever is written
 * meanwhile. `after` reads the page that follows the key in $1; $2 is the page size. Tombstones are skipped.
 */
export function scanSql(table: TableName, { after }: { after: boolean }): string {
  const from = after ? 'WHERE user_id > $1 AND data IS NOT NULL' : 'WHERE data IS NOT NULL';
  const limit = after ? '$2' : '$1';
  return `SELECT user_id, data::text AS data, version FROM ${table.quoted} ${from} ORDER BY user_id LIMIT ${limit}`;
}

/**
 * SQLSTATE classes that mean "this data was refused", as opposed to a broken connection or a wrong schema:
 * 22 data exception (e.g. 22P05 `\u0000` in jsonb), 23 integrity constraint (e.g. a CHECK a team added),
 * 54 program limit exceeded (e.g. a value too large). Only these make a batch split to find the culprits.
 */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}

/** Deadlock victim (40P01) or serialization failure (40001): the statement was rolled back and may be re-sent. */
export function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** The table predates write ids (0.1) and `setup()` was not run: undefined_column (42703) naming `write_id`. */
export function isMissingWriteId(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '42703' && typeof message === 'string' && message.includes('write_id');
}
