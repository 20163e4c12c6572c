import { AdapterError } from '@cagey-sessions/core';
import { type ClientSource, passwordOfUrl } from '@cagey-sessions/core/adapter-kit';
import type { PostgresClient, PostgresPoolOptions } from './options.js';

/** The pg.Pool the adapter opens itself from `url`; `close()` ends it. */
export interface OwnPool extends PostgresClient {
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Opens a pg.Pool for `url` (pg is imported only now, so it is needed only by adapters given a URL). */
export async function openPool(
  adapterName: string,
  url: string,
  clientOptions: PostgresPoolOptions | undefined,
  connectTimeoutMs: number,
): Promise<OwnPool> {
  let Pool: typeof import('pg').Pool;
  try {
    ({ Pool } = (await import('pg')).default);
  } catch (error) {
    throw new AdapterError(adapterName, 'the `url` option needs the `pg` package: npm install pg', {
      cause: error,
    });
  }
  const pool = new Pool({
    max: 10,
    connectionTimeoutMillis: connectTimeoutMs,
    ...clientOptions,
    connectionString: withPassword(url, clientOptions?.password),
  });
  // An idle connection that the server drops (restart, failover) is reported here; without a listener the
  // process would crash. The pool discards that connection and opens a new one on the next query.
  pool.on('error', () => {});
  return pool;
}

/**
 * pg ignores a `password` option next to a connection string (the string's empty password overrides it), so a
 * string `clientOptions.password` goes into the URL when the URL has no password of its own. The URL's wins.
 */
export function withPassword(url: string, password: unknown): string {
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

/**
 * The passwords an adapter may have been given, for `wrapDriverError`: the one in `url`,
 * `clientOptions.password`, pg's PGPASSWORD, and for an injected pg.Pool or pg.Client its configured password
 * or connection string. Call it when an error is wrapped, since an injected pool's settings can change. A
 * password given as a function is not known here.
 */
export function passwordsOf(
  source: ClientSource<PostgresClient>,
  clientOptions: PostgresPoolOptions | undefined,
): (string | undefined)[] {
  const secrets = [stringOrUndefined(clientOptions?.password)];
  if (source.kind === 'url') secrets.push(passwordOfUrl(source.url));
  else secrets.push(...passwordsOfPgClient(source.client));
  if (source.kind === 'url' || isPgClient(source.client)) {
    secrets.push(stringOrUndefined(process.env.PGPASSWORD));
  }
  return secrets;
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
