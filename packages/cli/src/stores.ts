import type { PersistenceAdapter } from '@cagey-sessions/core';
import { passwordOfUrl } from '@cagey-sessions/core/adapter-kit';
import { CliError, type Redactor } from './errors.js';

/** Where a store is and how its adapter names its records, as given on the command line. */
export interface StoreSpec {
  /** A store URL, or `env:NAME` to read it from the environment variable NAME (keeps passwords out of `ps`). */
  url: string;
  /** PostgreSQL and PGlite: the table (`schema.table` allowed). */
  table?: string | undefined;
  /** Redis: the key prefix. */
  prefix?: string | undefined;
  /** MongoDB: the collection. */
  collection?: string | undefined;
  /** MongoDB: the database (default: the one in the URL). */
  database?: string | undefined;
  /** The flag prefix the options came with (`from-`, `to-` or none), for messages. */
  flagPrefix: string;
}

export type StoreKind = 'postgres' | 'pglite' | 'redis' | 'mongo';

/** An adapter over a store the command opened, and how to close both. */
export interface OpenStore {
  adapter: PersistenceAdapter;
  kind: StoreKind;
  /** The URL with its credentials masked, for messages. */
  label: string;
  close(): Promise<void>;
}

const KIND_OF_SCHEME: Record<string, StoreKind> = {
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
  'pglite:': 'pglite',
  'redis:': 'redis',
  'rediss:': 'redis',
  'redis+cluster:': 'redis',
  'rediss+cluster:': 'redis',
  'mongodb:': 'mongo',
  'mongodb+srv:': 'mongo',
};

/** Which option applies to which kind of store. */
const OPTION_KINDS: Record<'table' | 'prefix' | 'collection' | 'database', StoreKind[]> = {
  table: ['postgres', 'pglite'],
  prefix: ['redis'],
  collection: ['mongo'],
  database: ['mongo'],
};

/** Resolves `env:NAME`; returns the URL and remembers its password so that no message can show it. */
export function resolveUrl(given: string, redactor: Redactor): string {
  let url = given;
  if (given.startsWith('env:')) {
    const name = given.slice(4);
    const value = process.env[name];
    if (value === undefined || value === '') {
      throw new CliError('USAGE', `The environment variable ${name} (named by ${given}) is not set.`);
    }
    url = value;
  }
  redactor.rememberSecret(passwordOfUrl(url));
  return url;
}

/** The kind of store a URL names; INVALID_URL (exit code 2) for anything else. */
export function kindOf(url: string, redactor: Redactor): StoreKind {
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase();
  const kind = scheme === undefined ? undefined : KIND_OF_SCHEME[scheme];
  if (kind === undefined) {
    throw new CliError(
      'INVALID_URL',
      `Unsupported store URL ${redactor.text(url)}: expected postgres://, postgresql://, pglite:<directory>, ` +
        'redis://, rediss://, redis+cluster://host:port,host:port, mongodb:// or mongodb+srv://.',
    );
  }
  return kind;
}

/**
 * The URL (`env:NAME` resolved) and kind of a store, without opening it: refuses an unsupported URL, and an
 * option that does not apply to the store's kind, so a misplaced `--to-table` is not silently ignored.
 */
export function checkStore(spec: StoreSpec, redactor: Redactor): { url: string; kind: StoreKind } {
  const url = resolveUrl(spec.url, redactor);
  const kind = kindOf(url, redactor);
  for (const option of ['table', 'prefix', 'collection', 'database'] as const) {
    if (spec[option] !== undefined && !OPTION_KINDS[option].includes(kind)) {
      throw new CliError(
        'USAGE',
        `--${spec.flagPrefix}${option} does not apply to a ${kind} store (${redactor.text(url)}); ` +
          `${kind} takes ${optionsOf(kind, spec.flagPrefix)}.`,
      );
    }
  }
  return { url, kind };
}

/** Opens the adapter for a store URL (checked by `checkStore`; the driver is loaded only for the kind used). */
export async function openStore(spec: StoreSpec, redactor: Redactor): Promise<OpenStore> {
  const { url, kind } = checkStore(spec, redactor);
  const label = redactor.text(url);
  try {
    return await openKind(kind, url, spec, label);
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError('USAGE', `Cannot open ${label}: ${redactor.text(messageOf(error))}`, { cause: error });
  }
}

async function openKind(kind: StoreKind, url: string, spec: StoreSpec, label: string): Promise<OpenStore> {
  switch (kind) {
    case 'postgres': {
      const { PostgresAdapter } = await import('@cagey-sessions/adapter-postgres');
      const adapter = new PostgresAdapter({ url, ...(spec.table ? { table: spec.table } : {}) });
      return { adapter, kind, label, close: () => adapter.close() };
    }
    case 'pglite': {
      const directory = url.slice('pglite:'.length).replace(/^\/\/(?=\/)/, '');
      if (directory === '')
        throw new CliError('INVALID_URL', 'pglite: needs a directory, e.g. pglite:./data.');
      const [{ PGlite }, { PostgresAdapter }] = await Promise.all([
        import('@electric-sql/pglite'),
        import('@cagey-sessions/adapter-postgres'),
      ]);
      const client = new PGlite(directory);
      await client.waitReady;
      const adapter = new PostgresAdapter({ client, ...(spec.table ? { table: spec.table } : {}) });
      return {
        adapter,
        kind,
        label,
        close: async () => {
          await adapter.close();
          await client.close();
        },
      };
    }
    case 'redis': {
      const { RedisAdapter } = await import('@cagey-sessions/adapter-redis');
      const adapter = new RedisAdapter({ url, ...(spec.prefix ? { prefix: spec.prefix } : {}) });
      return { adapter, kind, label, close: () => adapter.close() };
    }
    case 'mongo': {
      const { MongoAdapter } = await import('@cagey-sessions/adapter-mongo');
      const adapter = new MongoAdapter({
        url,
        ...(spec.collection ? { collection: spec.collection } : {}),
        ...(spec.database ? { database: spec.database } : {}),
      });
      return { adapter, kind, label, close: () => adapter.close() };
    }
  }
}

function optionsOf(kind: StoreKind, flagPrefix: string): string {
  const names = Object.entries(OPTION_KINDS)
    .filter(([, kinds]) => kinds.includes(kind))
    .map(([name]) => `--${flagPrefix}${name}`);
  return names.join(' and ');
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
