import { createHash } from 'node:crypto';
import { checkIdentifier } from '@cagey-sessions/core/adapter-kit';
import { parseTableName, type TableName } from './sql.js';

/** The presence's two tables, named from one `table` option: `<table>_nodes` and `<table>_users`. */
export interface PresenceTables {
  /** The `table` option as given, e.g. `game.presence`. */
  name: string;
  nodes: TableName;
  users: TableName;
}

const NODES_SUFFIX = '_nodes';
const USERS_SUFFIX = '_users';
/** PostgreSQL truncates identifiers to 63 bytes; the longer suffix must still fit after the table part. */
const MAX_TABLE_PART = 63 - Math.max(NODES_SUFFIX.length, USERS_SUFFIX.length);

export function parsePresenceTables(name: string, value: unknown): PresenceTables {
  const parsed = parseTableName(name, value);
  checkIdentifier(name, 'table name', parsed.table, MAX_TABLE_PART);
  const named = (suffix: string): TableName => {
    const table = `${parsed.table}${suffix}`;
    const quoted = parsed.schema === undefined ? `"${table}"` : `"${parsed.schema}"."${table}"`;
    return { name: `${parsed.name}${suffix}`, schema: parsed.schema, table, quoted };
  };
  return { name: parsed.name, nodes: named(NODES_SUFFIX), users: named(USERS_SUFFIX) };
}

/**
 * The channel a node's messages travel on. NOTIFY channels are identifiers of at most 63 bytes, and PGlite's
 * `listen()` sends its channel unquoted (so it must be lower case), while a node id may be 128 characters, upper
 * case among them (core's `nodeId` rule): the channel is a hash of the tables and the node id, `cagey_` + 56 hex digits. A channel
 * per node (rather than one shared channel with a recipient field) means the server sends each message only to
 * the connection of the node it is for: with one channel, every node would receive, parse and drop every other
 * node's messages, N times the traffic for N nodes. The payload still names its recipient and incarnation, and a
 * receiver drops what is not addressed to it, so even a hash collision could never deliver to another node.
 */
export function channelOf(tables: PresenceTables, nodeId: string): string {
  const hash = createHash('sha256').update(`${tables.nodes.quoted}\u0000${nodeId}`).digest('hex');
  return `cagey_${hash.slice(0, 56)}`;
}

/**
 * Creates both tables when one is missing. One statement, so it runs the same on a pool, a client and PGlite;
 * nothing is locked and no DDL privilege is needed once they exist. Otherwise a transaction-scoped advisory lock
 * serialises concurrent runs, so the `CREATE TABLE IF NOT EXISTS` race (a unique violation on pg_type) cannot
 * surface: a waiter gets the lock after the creator committed and finds the tables.
 *
 * No foreign key from users to nodes: a user record outlives its node's lease on purpose (a node that left or
 * crashed still names the holder, so the next claim reports it as `previousOwner`).
 */
export function presenceSetupSql({ nodes, users }: PresenceTables): string {
  // Identifiers are validated ([A-Za-z0-9_]), so they are safe inside the quoted literals below.
  const createSchema =
    nodes.schema === undefined ? '' : `CREATE SCHEMA IF NOT EXISTS "${nodes.schema}";\n    `;
  return `DO $cagey_setup$
BEGIN
  IF to_regclass('${nodes.quoted}') IS NULL OR to_regclass('${users.quoted}') IS NULL THEN
    PERFORM pg_advisory_xact_lock(1667327845, hashtext('cagey-sessions:${nodes.quoted}'));
    ${createSchema}CREATE TABLE IF NOT EXISTS ${nodes.quoted} (
      node_id    text        PRIMARY KEY,
      token      text        NOT NULL,
      expires_at timestamptz NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ${users.quoted} (
      user_id text PRIMARY KEY,
      node_id text NOT NULL,
      token   text NOT NULL
    );
  END IF;
END
$cagey_setup$`;
}

/** A lease of `$3` milliseconds from the database's clock (never the client's). */
const LEASE_END = `clock_timestamp() + $3::double precision * interval '1 millisecond'`;

/** $1 node id, $2 new token, $3 ttl ms. A new incarnation replaces the node's earlier one. */
export function joinSql({ nodes }: PresenceTables): string {
  return `INSERT INTO ${nodes.quoted} AS n (node_id, token, expires_at) VALUES ($1, $2, ${LEASE_END})
ON CONFLICT (node_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at`;
}

/**
 * $1 node id, $2 token (NULL: the current incarnation), $3 ttl ms. Only a live lease is extended: one that ran
 * out stays expired even if nobody took its users yet. `clock_timestamp()` in the WHERE is read when the row is
 * checked, again after waiting for a claim that share-locks the row (see `claimSql`), so a renewal that queued
 * behind a takeover sees the expiry that takeover acted on.
 */
export function renewSql({ nodes }: PresenceTables): string {
  return `UPDATE ${nodes.quoted} SET expires_at = ${LEASE_END}
WHERE node_id = $1 AND token = coalesce($2, token) AND expires_at > clock_timestamp()
RETURNING 1 AS renewed`;
}

/** $1 node id, $2 token (NULL: the current incarnation). */
export function leaveSql({ nodes }: PresenceTables): string {
  return `DELETE FROM ${nodes.quoted} WHERE node_id = $1 AND token = coalesce($2, token)`;
}

/** $1 text[] of user ids, $2 node id, $3 token (NULL: the node's current incarnation). */
export function releaseSql({ nodes, users }: PresenceTables): string {
  return `DELETE FROM ${users.quoted}
WHERE user_id = ANY ($1::text[]) AND node_id = $2
  AND token = coalesce($3, (SELECT token FROM ${nodes.quoted} WHERE node_id = $2))`;
}

/** $1 user id. The holder only while its incarnation's lease is live. */
export function locateSql({ nodes, users }: PresenceTables): string {
  return `SELECT u.node_id FROM ${users.quoted} AS u
JOIN ${nodes.quoted} AS n ON n.node_id = u.node_id AND n.token = u.token
WHERE u.user_id = $1 AND n.expires_at > clock_timestamp()`;
}

/**
 * $1 channel, $2 node id, $3 the message's JSON. Notifies only when the node has joined, and names the incarnation
 * in the payload, so that an earlier incarnation still listening (a process that has not noticed it was
 * replaced) drops the message. The message travels as JSON text, unaltered.
 */
export function sendSql({ nodes }: PresenceTables): string {
  return `SELECT pg_notify($1, json_build_object('to', n.node_id, 'token', n.token, 'message', $3::json)::text)
FROM ${nodes.quoted} AS n WHERE n.node_id = $2`;
}

/**
 * Claims a user in one statement. $1 user id, $2 node id, $3 the claimer's token (NULL: its current incarnation).
 *
 * - `me`: the claimer's live lease (none: the result has `joined = 0` and nothing is written).
 * - `seen`: the holder in this statement's snapshot; `holder`: that holder's lease if it is live.
 * - The INSERT takes a missing row; on a conflict its DO UPDATE runs on the newest committed row, locked, and
 *   moves it to the claimer only when the row is the claimer's already, or is still exactly `seen` and `seen`'s
 *   lease is not live. Otherwise it writes the row back unchanged, so that RETURNING reports the newest holder
 *   either way.
 *
 * Why this is race-free under READ COMMITTED (the default; other levels make PostgreSQL abort a racing statement
 * with a serialization failure, which the caller retries):
 * - Two claims of one user: the row (or, for a missing row, the unique index's speculative insertion) admits one
 *   writer at a time; the second runs its DO UPDATE on the first one's committed row. A row that changed since
 *   the second's snapshot no longer equals `seen`, so the second writes nothing and reports the change; the
 *   caller then runs the statement again on a fresh snapshot. A decision is therefore only ever taken on the row
 *   it was checked against: exactly one claimer wins.
 * - A lease that expires or is renewed meanwhile: `holder` reads the lease `FOR SHARE`, which waits for a
 *   renewal (or a join) in progress to commit and re-checks the row as committed; a renewal arriving later waits
 *   for this statement and then finds the lease expired (`renewSql`). So a takeover and a renewal of the same
 *   lease never both succeed. `me` is locked the same way, so the claimer's own lease cannot be replaced (a
 *   re-join elsewhere) between the check and the write.
 * - Expiry is compared with one `clock_timestamp()` read at the statement's start: waiting for locks only makes a
 *   holder look younger, never older, so a wait can make a claim more cautious, never steal a live lease.
 * Locks are taken on users rows and shared locks on nodes rows; the statements that write nodes rows (join,
 * renew, leave) touch one row and wait for nothing else, so no cycle, hence no deadlock, can form.
 */
export function claimSql({ nodes, users }: PresenceTables): string {
  const take = `(u.node_id = excluded.node_id AND u.token = excluded.token) OR (
      (u.node_id, u.token) = (SELECT node_id, token FROM seen) AND NOT EXISTS (SELECT 1 FROM holder))`;
  return `WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now),
me AS MATERIALIZED (
  SELECT n.node_id, n.token FROM ${nodes.quoted} AS n
  WHERE n.node_id = $2 AND n.token = coalesce($3, n.token) AND n.expires_at > (SELECT now FROM clock)
  FOR SHARE
),
seen AS MATERIALIZED (
  SELECT s.node_id, s.token FROM ${users.quoted} AS s WHERE s.user_id = $1
),
holder AS MATERIALIZED (
  SELECT n.node_id FROM ${nodes.quoted} AS n JOIN seen ON n.node_id = seen.node_id AND n.token = seen.token
  WHERE n.expires_at > (SELECT now FROM clock)
  FOR SHARE OF n
),
claimed AS (
  INSERT INTO ${users.quoted} AS u (user_id, node_id, token)
  SELECT $1, me.node_id, me.token FROM me
  ON CONFLICT (user_id) DO UPDATE
    SET node_id = CASE WHEN ${take} THEN excluded.node_id ELSE u.node_id END,
        token = CASE WHEN ${take} THEN excluded.token ELSE u.token END
  RETURNING u.node_id, u.token
)
SELECT (SELECT count(*) FROM me)::int AS joined,
       (SELECT token FROM me) AS my_token,
       c.node_id AS node_id, c.token AS token,
       seen.node_id AS seen_node_id, seen.token AS seen_token,
       EXISTS (SELECT 1 FROM holder) AS seen_live
FROM (SELECT 1) AS one
LEFT JOIN claimed AS c ON true
LEFT JOIN seen ON true`;
}

/** A claim's row, as `claimSql` returns it. */
export interface ClaimRow {
  joined: number;
  my_token: string | null;
  node_id: string | null;
  token: string | null;
  seen_node_id: string | null;
  seen_token: string | null;
  seen_live: boolean;
}

/** The table is missing (undefined_table, 42P01): `setup()` was not run. */
export function isUndefinedTable(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '42P01';
}
