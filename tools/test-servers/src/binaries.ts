import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findExecutable } from './process.js';

/** Where distributions and Homebrew put server binaries that a minimal PATH may not include. */
const EXTRA_DIRS = ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/opt/homebrew/bin'];
const DEBIAN_POSTGRES_ROOT = '/usr/lib/postgresql';

export interface PostgresBinaries {
  readonly binDir: string;
  readonly initdb: string;
  readonly postgres: string;
  /** Optional: readiness is also detected from the server's log without it. */
  readonly pgIsready: string | undefined;
}

export interface RedisBinaries {
  readonly redisServer: string;
  /** Needed for a cluster (`--cluster create`), optional for a standalone server. */
  readonly redisCli: string | undefined;
}

export interface Located<T> {
  readonly found: T | undefined;
  /** What is missing, in words fit for a warning, e.g. `initdb and postgres (PostgreSQL server)`. */
  readonly missing: readonly string[];
}

/**
 * PostgreSQL's server binaries: the directory of `initdb` on PATH (symlinks resolved, so a link in
 * /usr/local/bin finds Debian's versioned directory), else the newest /usr/lib/postgresql/<major>/bin.
 * Debian's /usr/bin only has client wrappers, never `initdb` or `postgres`.
 */
export function locatePostgres(): Located<PostgresBinaries> {
  const candidates: string[] = [];
  const initdbOnPath = findExecutable('initdb', EXTRA_DIRS);
  if (initdbOnPath) {
    try {
      candidates.push(dirname(realpathSync(initdbOnPath)));
    } catch {
      candidates.push(dirname(initdbOnPath));
    }
  }
  candidates.push(...debianBinDirs());
  for (const binDir of candidates) {
    const initdb = join(binDir, 'initdb');
    const postgres = join(binDir, 'postgres');
    if (existsSync(initdb) && existsSync(postgres)) {
      const isready = join(binDir, 'pg_isready');
      return {
        found: { binDir, initdb, postgres, pgIsready: existsSync(isready) ? isready : undefined },
        missing: [],
      };
    }
  }
  return { found: undefined, missing: ['initdb and postgres (PostgreSQL server binaries)'] };
}

/** /usr/lib/postgresql/<major>/bin, newest major first. */
function debianBinDirs(): string[] {
  let majors: string[];
  try {
    majors = readdirSync(DEBIAN_POSTGRES_ROOT).filter((name) => /^\d+(\.\d+)?$/.test(name));
  } catch {
    return [];
  }
  return majors
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((major) => join(DEBIAN_POSTGRES_ROOT, major, 'bin'));
}

export function locateRedis(options: { needCli: boolean }): Located<RedisBinaries> {
  const redisServer = findExecutable('redis-server', EXTRA_DIRS) ?? undefined;
  const redisCli = findExecutable('redis-cli', EXTRA_DIRS) ?? undefined;
  const missing: string[] = [];
  if (!redisServer) missing.push('redis-server');
  if (options.needCli && !redisCli) missing.push('redis-cli');
  return { found: missing.length === 0 && redisServer ? { redisServer, redisCli } : undefined, missing };
}
