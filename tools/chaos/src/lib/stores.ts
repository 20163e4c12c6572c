/**
 * The real servers (started once per run through tools/test-servers), their fault controls, and reading a
 * scenario's players back with the raw driver (pg, ioredis, mongodb): never through the library under test.
 */
import {
  type RedisServerOptions,
  type RunningServer,
  ServerUnavailableError,
  startFerretDB,
  startPostgres,
  startRedis,
} from '@cagey-sessions/test-servers';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';

export const STORE_KINDS = ['postgres', 'redis', 'mongo'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/** A test server with the fault controls of tools/test-servers: SIGKILL, SIGSTOP and SIGCONT. */
export type FaultableServer = RunningServer & {
  /** SIGKILL; `restart()` brings it back with its data. */
  kill?(): Promise<void>;
  /** SIGSTOP. */
  pause?(): Promise<void>;
  /** SIGCONT. */
  resume?(): Promise<void>;
};

export interface Store {
  kind: StoreKind;
  /** What it is, for the table: PostgreSQL, Redis, FerretDB. */
  label: string;
  server: FaultableServer;
  /** The server's URL (direct, no proxy); see `urlOf` for a scenario's. */
  url: string;
}

/** One stored player, as read by the raw driver. */
export interface StoredPlayer {
  counter: number;
  log: string[];
  version: number;
}

const LABELS: Record<StoreKind, string> = { postgres: 'PostgreSQL', redis: 'Redis', mongo: 'FerretDB' };

/**
 * Starts the server of `kind`. PostgreSQL commits synchronously (the test servers' default
 * `synchronous_commit=off` may lose acknowledged commits in a crash, which is the server's doing, not the
 * library's) and Redis keeps an append-only file (fsync always), so a `kill -9` loses nothing acknowledged.
 * Resolves `undefined` when the server is not installed.
 */
export async function startStore(kind: StoreKind): Promise<Store | undefined> {
  try {
    let server: FaultableServer;
    let url: string;
    if (kind === 'postgres') {
      server = await startPostgres({ settings: { synchronous_commit: 'on' } });
      url = server.url;
    } else if (kind === 'redis') {
      // `appendOnly` is the test servers' switch; the config lines do the same on a version without it.
      const options = {
        appendOnly: true,
        config: ['appendonly yes', 'appendfsync always'],
      } as RedisServerOptions;
      server = await startRedis(options);
      url = server.url;
    } else {
      server = await startFerretDB();
      url = server.url.replace(/\/$/, '');
    }
    return { kind, label: LABELS[kind], server, url };
  } catch (error) {
    if (error instanceof ServerUnavailableError) return undefined;
    throw error;
  }
}

/** The server's `kill()`, `pause()` or `resume()`; throws a clear error when tools/test-servers lacks it. */
export function control(store: Store, what: 'kill' | 'pause' | 'resume'): () => Promise<void> {
  const fn = store.server[what];
  if (typeof fn !== 'function') {
    throw new Error(
      `tools/test-servers: ${store.label} server has no ${what}() (SIGKILL/SIGSTOP/SIGCONT control is needed by this scenario)`,
    );
  }
  return () => fn.call(store.server);
}

/**
 * The URL of a scenario's data. FerretDB gets a database per scenario: a database that FerretDB 1.x has
 * stalled (see the store-pause scenario) then does not stall the scenarios after it.
 */
export function urlOf(store: Store, namespace: string): string {
  return store.kind === 'mongo' ? `${store.url}/chaos_${namespace}` : store.url;
}

/** Table / key prefix / collection of a scenario's namespace, as the game server names them. */
export function locationOf(kind: StoreKind, namespace: string): string {
  if (kind === 'redis') return `chaos:${namespace}:`;
  return `chaos_${namespace}`;
}

/** Reads every live player of `namespace` with the raw driver. Bounded: 10 s. */
export async function readPlayers(store: Store, namespace: string): Promise<Map<string, StoredPlayer>> {
  const read =
    store.kind === 'postgres'
      ? readPostgres(store.url, locationOf('postgres', namespace))
      : store.kind === 'redis'
        ? readRedis(store.url, locationOf('redis', namespace))
        : readMongo(urlOf(store, namespace), locationOf('mongo', namespace));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`reading ${store.label} took over 10 s`)), 10_000);
  });
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function player(data: unknown, version: unknown): StoredPlayer {
  const object = (typeof data === 'string' ? JSON.parse(data) : data) as { counter?: number; log?: string[] };
  return { counter: object?.counter ?? 0, log: object?.log ?? [], version: Number(version) };
}

async function readPostgres(url: string, table: string): Promise<Map<string, StoredPlayer>> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 5_000,
    query_timeout: 15_000,
  });
  await client.connect();
  try {
    const exists = await client.query('SELECT to_regclass($1) AS t', [table]);
    if (exists.rows[0]?.t === null) return new Map();
    const { rows } = await client.query<{ user_id: string; data: string; version: string }>(
      `SELECT user_id, data::text AS data, version FROM "${table}" WHERE data IS NOT NULL`,
    );
    return new Map(rows.map((row) => [row.user_id, player(row.data, row.version)]));
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * A Redis value is `<version>:<json>`, or `<version>:<writeId>:<json>` where the adapter stores write ids; a
 * tombstone has nothing after the version. JSON player data always starts with `{`.
 */
export function parseRedisValue(value: string): StoredPlayer | undefined {
  const colon = value.indexOf(':');
  if (colon < 0) throw new Error(`unexpected Redis value ${value.slice(0, 40)}`);
  const version = Number(value.slice(0, colon));
  let rest = value.slice(colon + 1);
  if (rest === '') return undefined;
  if (!rest.startsWith('{')) {
    const next = rest.indexOf(':');
    if (next < 0) return undefined;
    rest = rest.slice(next + 1);
    if (rest === '') return undefined;
  }
  return player(rest, version);
}

async function readRedis(url: string, prefix: string): Promise<Map<string, StoredPlayer>> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5_000 });
  await client.connect();
  try {
    const keys: string[] = [];
    let cursor = '0';
    for (let round = 0; round < 100_000; round++) {
      const [next, found] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      keys.push(...found);
      cursor = next;
      if (cursor === '0') break;
    }
    const players = new Map<string, StoredPlayer>();
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      const values = await client.mget(...chunk);
      chunk.forEach((key, index) => {
        const value = values[index];
        const parsed = value == null ? undefined : parseRedisValue(value);
        // The adapter percent-encodes the user key after the prefix.
        if (parsed !== undefined) players.set(decodeURIComponent(key.slice(prefix.length)), parsed);
      });
    }
    return players;
  } finally {
    client.disconnect();
  }
}

async function readMongo(url: string, collection: string): Promise<Map<string, StoredPlayer>> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 5_000, connectTimeoutMS: 5_000 });
  await client.connect();
  try {
    const documents = await client
      .db()
      .collection<{ _id: string; data?: unknown; version: number }>(collection)
      .find({ data: { $exists: true } }, { projection: { data: 1, version: 1 }, batchSize: 5000 })
      .toArray();
    return new Map(documents.map((doc) => [String(doc._id), player(doc.data, doc.version)]));
  } finally {
    await client.close().catch(() => {});
  }
}
