import { locatePostgres, locateRedis } from './binaries.js';

/** The servers this package knows how to find before starting them. */
export type ServerKind = 'postgres' | 'redis' | 'redis-cluster';

export interface ServerAvailability {
  readonly kind: ServerKind;
  readonly available: boolean;
  /** What is missing, empty when available. */
  readonly missing: readonly string[];
}

export const INSTALL_HINT = 'bash tools/test-servers/install-servers.sh';

/** Thrown by a start function when a server's binaries are not installed; `startForTests` turns it into a skip. */
export class ServerUnavailableError extends Error {
  readonly code = 'SERVER_UNAVAILABLE';
  readonly kind: string;
  readonly missing: readonly string[];
  /** The command that installs what is missing. */
  readonly install: string;

  constructor(kind: string, missing: readonly string[], install = INSTALL_HINT) {
    super(`cannot start ${kind}: ${missing.join(', ')} not found. Install with: ${install}`);
    this.name = 'ServerUnavailableError';
    this.kind = kind;
    this.missing = missing;
    this.install = install;
  }
}

/** Whether the binaries a server kind needs are installed (PATH and the usual distribution directories). */
export function serverAvailability(kind: ServerKind): ServerAvailability {
  const { missing } =
    kind === 'postgres' ? locatePostgres() : locateRedis({ needCli: kind === 'redis-cluster' });
  return { kind, available: missing.length === 0, missing };
}

function isServerKind(kind: string): kind is ServerKind {
  return kind === 'postgres' || kind === 'redis' || kind === 'redis-cluster';
}

export interface StartForTestsOptions {
  /** Where the skip warning goes; console.warn by default. */
  readonly warn?: (message: string) => void;
}

/**
 * For vitest globalSetup files: starts a server, or returns undefined with a loud warning when its binaries are
 * missing (checked up front for known kinds; any kind's `start` may also throw `ServerUnavailableError`).
 * With `CI=true` a missing server is an error instead: CI must never pass by skipping.
 * A server that is installed but fails to start always throws.
 */
export async function startForTests<T>(
  kind: string,
  start: () => Promise<T>,
  options: StartForTestsOptions = {},
): Promise<T | undefined> {
  let unavailable: ServerUnavailableError | undefined;
  if (isServerKind(kind)) {
    const { missing } = serverAvailability(kind);
    if (missing.length > 0) unavailable = new ServerUnavailableError(kind, missing);
  }
  if (!unavailable) {
    try {
      return await start();
    } catch (error) {
      if (!(error instanceof ServerUnavailableError)) throw error;
      unavailable = error;
    }
  }
  if (process.env.CI === 'true') throw unavailable;
  (options.warn ?? console.warn)(unavailableMessage(kind, unavailable.missing, unavailable.install));
  return undefined;
}

function unavailableMessage(kind: string, missing: readonly string[], install: string): string {
  const rule = '!'.repeat(100);
  return [
    '',
    rule,
    `!!! ${kind}: tests that need this server are SKIPPED.`,
    `!!! Not found: ${missing.join(', ')}.`,
    `!!! Install: ${install}`,
    '!!! With CI=true this is an error instead of a skip.',
    rule,
    '',
  ].join('\n');
}
