/**
 * The only module that knows about databases. The game server receives a `PersistenceAdapter` and nothing else,
 * so moving from the embedded PGlite to PostgreSQL, Redis or MongoDB is a command-line switch.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PersistenceAdapter, PersistenceOptions } from '@cagey-sessions/core';
import { redactCredentials } from '@cagey-sessions/core/adapter-kit';

export const STORE_KINDS = ['pglite', 'postgres', 'redis', 'mongo', 'memory'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

export function isStoreKind(value: string): value is StoreKind {
  return (STORE_KINDS as readonly string[]).includes(value);
}

export interface StoreConfig {
  /** Where PGlite keeps its files (`<dataDir>/pglite`). */
  dataDir: string;
  /** Names the table (`<namespace>_players`), key prefix (`<namespace>:player:`) or collection. Default `game`. */
  namespace?: string;
  /** `DATABASE_URL`, `REDIS_URL`, `MONGODB_URI` are read from here. */
  env?: NodeJS.ProcessEnv;
}

export interface OpenStore {
  kind: StoreKind;
  adapter: PersistenceAdapter;
  /** Where the data lives, fit to print: passwords are masked. */
  location: string;
  /** Batch size and concurrency this store needs from core's persistence pipeline, when not the defaults. */
  tuning?: Pick<PersistenceOptions, 'batchSize' | 'concurrency'>;
  /**
   * For the in-process memory store only: everything it holds, read straight from the store. Other stores are
   * read back by opening them again from another process.
   */
  contents?(): Record<string, unknown>;
  /** Closes the adapter and whatever this module opened for it. */
  close(): Promise<void>;
}

const NAMESPACE = /^[a-z][a-z0-9_]{0,39}$/;
/** PGlite's postgresql.conf additions (see `openStore`). */
export const PGLITE_SETTINGS = 'shared_buffers = 16MB';
/** Updates per bulk write, and per batch, that FerretDB 1.x handles without stalling. */
const FERRETDB_BATCH = 50;

/** Opens the store `kind` and creates its table or index when the adapter needs one. */
export async function openStore(kind: StoreKind, config: StoreConfig): Promise<OpenStore> {
  const env = config.env ?? process.env;
  const namespace = config.namespace ?? 'game';
  if (!NAMESPACE.test(namespace)) {
    throw new Error(
      `Invalid namespace ${JSON.stringify(namespace)}: use a-z, 0-9 and _, starting with a letter.`,
    );
  }
  switch (kind) {
    case 'memory': {
      const { MemoryAdapter } = await import('@cagey-sessions/testing');
      const adapter = new MemoryAdapter();
      return {
        kind,
        adapter,
        location: 'process memory (gone when the server exits)',
        contents: () =>
          Object.fromEntries(adapter.store.keys().map((key) => [key, adapter.store.peek(key)?.userData])),
        close: () => adapter.close(),
      };
    }
    case 'pglite': {
      const [{ PGlite }, { PostgresAdapter }] = await Promise.all([
        import('@electric-sql/pglite'),
        import('@cagey-sessions/adapter-postgres'),
      ]);
      const directory = resolve(config.dataDir, 'pglite');
      mkdirSync(directory, { recursive: true });
      // PostgreSQL's default 128 MB of shared buffers is most of PGlite's memory, for a few megabytes of
      // players: 16 MB keeps the working set, and the operating system caches the files anyway.
      const db = await PGlite.create(directory, { postgresqlconf: PGLITE_SETTINGS });
      try {
        const adapter = new PostgresAdapter({ client: db, table: `${namespace}_players` });
        await adapter.setup();
        return {
          kind,
          adapter,
          location: `PGlite in ${directory}, table ${adapter.table}`,
          close: async () => {
            await adapter.close();
            await db.close();
          },
        };
      } catch (error) {
        await db.close();
        throw error;
      }
    }
    case 'postgres': {
      const url = urlFor(kind, env);
      const { PostgresAdapter } = await import('@cagey-sessions/adapter-postgres');
      const adapter = new PostgresAdapter({ url, table: `${namespace}_players`, clientOptions: { max: 4 } });
      return withSetup(adapter, {
        kind,
        adapter,
        location: `PostgreSQL at ${describeUrl(url)}, table ${adapter.table}`,
        close: () => adapter.close(),
      });
    }
    case 'redis': {
      const url = urlFor(kind, env);
      const { RedisAdapter } = await import('@cagey-sessions/adapter-redis');
      const adapter = new RedisAdapter({ url, prefix: `${namespace}:player:` });
      return withSetup(adapter, {
        kind,
        adapter,
        location: `Redis at ${describeUrl(url)}, keys ${adapter.prefix}*`,
        close: () => adapter.close(),
      });
    }
    case 'mongo': {
      const url = urlFor(kind, env);
      const [{ MongoClient }, { MongoAdapter }] = await Promise.all([
        import('mongodb'),
        import('@cagey-sessions/adapter-mongo'),
      ]);
      const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
      try {
        await client.connect();
        const database = /^mongodb(?:\+srv)?:\/\/[^/]+\/([^?]+)/.exec(url)?.[1] ?? 'game';
        const buildInfo = await client.db(database).admin().command({ buildInfo: 1 });
        const ferretdb = typeof buildInfo.ferretdbVersion === 'string';
        const adapter = new MongoAdapter({
          client,
          database,
          collection: `${namespace}_players`,
          ...(ferretdb ? { maxUpdatesPerBulkWrite: FERRETDB_BATCH } : {}),
        });
        return withSetup(adapter, {
          kind,
          adapter,
          // FerretDB 1.x holds one of its 100 SQLite connections per update statement until the command ends,
          // and stalls for good when the statements in flight reach 100 (core's default concurrency of 4
          // batches of 50 does that): one batch at a time keeps it under. MongoDB needs no tuning.
          ...(ferretdb ? { tuning: { batchSize: FERRETDB_BATCH, concurrency: 1 } } : {}),
          location: `${ferretdb ? 'FerretDB' : 'MongoDB'} at ${describeUrl(url)}, collection ${database}.${namespace}_players`,
          close: async () => {
            await adapter.close();
            await client.close();
          },
        });
      } catch (error) {
        await client.close().catch(() => {});
        throw error;
      }
    }
  }
}

async function withSetup(adapter: PersistenceAdapter, store: OpenStore): Promise<OpenStore> {
  try {
    await adapter.setup?.();
  } catch (error) {
    await adapter.close().catch(() => {});
    throw error;
  }
  return store;
}

/** The environment variable each server store reads its URL from, with an example value. */
export const STORE_URL_VARIABLES = {
  postgres: ['DATABASE_URL', 'postgres://user:password@127.0.0.1:5432/game'],
  redis: ['REDIS_URL', 'redis://127.0.0.1:6379'],
  mongo: ['MONGODB_URI', 'mongodb://127.0.0.1:27017/game'],
} as const satisfies Partial<Record<StoreKind, readonly [string, string]>>;

/** Throws, naming the variable to set, when `kind` needs a URL the environment does not give. */
export function checkStoreEnv(kind: StoreKind, env: NodeJS.ProcessEnv = process.env): void {
  if (kind === 'postgres' || kind === 'redis' || kind === 'mongo') urlFor(kind, env);
}

function urlFor(kind: keyof typeof STORE_URL_VARIABLES, env: NodeJS.ProcessEnv): string {
  const [name, example] = STORE_URL_VARIABLES[kind];
  const value = env[name];
  if (value === undefined || value === '') {
    throw new Error(`Set ${name} to use the ${kind} store, e.g. ${name}=${example}`);
  }
  return value;
}

/** Host, port and database of a connection URL, without user or password. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
  } catch {
    return redactCredentials(url);
  }
}

/** The default data directory: `.demo-data` next to this package's package.json. */
export function defaultDataDir(): string {
  return fileURLToPath(new URL('../.demo-data', import.meta.url));
}
