import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServerUnavailableError } from './availability.js';
import { locatePostgres, type PostgresBinaries } from './binaries.js';
import { makeServerDir, removeServerDir } from './dirs.js';
import { oneProcess, portTakenOnRestart, serverControls } from './lifecycle.js';
import { canConnect, LOOPBACK, onFreePort, PortInUseError } from './ports.js';
import { indent, ManagedProcess, type RunAs, run, waitUntilReady } from './process.js';
import type { RunningServer } from './types.js';

export interface PostgresServerOptions {
  /** Password of the `postgres` superuser; random by default. */
  readonly password?: string;
  /** Extra server settings (`-c name=value`), applied on every start; they override the test defaults. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Bound on initdb and on each wait for the server to accept connections. Default 30 s. */
  readonly timeoutMs?: number;
}

/** An ephemeral PostgreSQL: superuser `postgres` with a password (scram-sha-256), database `postgres`. */
export interface PostgresServer extends RunningServer {
  readonly user: 'postgres';
  readonly password: string;
  readonly database: 'postgres';
  /** The temporary directory: data directory `data/` and the unix socket. */
  readonly dir: string;
}

/**
 * Durability is pointless for a throwaway server and costs most of a test run's time.
 * max_connections leaves room for several pools (one per adapter under test) at once.
 */
const TEST_SETTINGS: Readonly<Record<string, string | number | boolean>> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  max_connections: 200,
};

const READY_LOG_LINE = 'database system is ready to accept connections';

/**
 * Starts PostgreSQL in a fresh temporary directory (initdb), listening on 127.0.0.1 only on a free port, with a
 * unix socket in that directory. When run as root, the directory belongs to the `postgres` system user and the
 * binaries run as that user (PostgreSQL refuses to run as root).
 *
 * `restart()` is a fast shutdown and a start on the same port with the same data; `stop()` shuts down and
 * removes the directory. Both are idempotent and safe to call concurrently. The server is killed if this process
 * exits without stopping it. `kill()` SIGKILLs the postmaster and all its children (the next `restart()` runs
 * crash recovery); with the default `synchronous_commit = off` the last acknowledged commits may be lost then, so
 * pass `settings: { synchronous_commit: 'on' }` when they must survive. `pause()` / `resume()` SIGSTOP / SIGCONT
 * the postmaster and all its children.
 */
export async function startPostgres(options: PostgresServerOptions = {}): Promise<PostgresServer> {
  const located = locatePostgres();
  if (!located.found) throw new ServerUnavailableError('postgres', located.missing);
  const binaries = located.found;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const password = options.password ?? randomBytes(18).toString('base64url');
  const runAs = process.getuid?.() === 0 ? postgresSystemUser() : undefined;
  const dir = makeServerDir('postgres', runAs);
  const dataDir = join(dir, 'data');
  try {
    await initdb(binaries, dir, dataDir, password, runAs, timeoutMs);
    const settings = { ...TEST_SETTINGS, ...options.settings };
    const launch = (port: number) =>
      launchPostgres({ binaries, dir, dataDir, port, settings, runAs, timeoutMs });
    const started = await onFreePort(launch);
    const port = started.port;
    let child = started.value;
    const url = `postgres://postgres:${encodeURIComponent(password)}@${LOOPBACK}:${port}/postgres`;
    return {
      url,
      host: LOOPBACK,
      port,
      user: 'postgres',
      password,
      database: 'postgres',
      dir,
      ...serverControls('postgres', dir, {
        ...oneProcess(() => child, timeoutMs),
        relaunch: async () => {
          child = await launch(port).catch(portTakenOnRestart('postgres', port));
        },
      }),
    };
  } catch (error) {
    removeServerDir(dir);
    throw error;
  }
}

async function initdb(
  binaries: PostgresBinaries,
  dir: string,
  dataDir: string,
  password: string,
  runAs: RunAs | undefined,
  timeoutMs: number,
): Promise<void> {
  // The password goes through a file so that it never appears in a process listing.
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (runAs) chownSync(pwfile, runAs.uid, runAs.gid);
  try {
    const result = await run(
      binaries.initdb,
      [
        `--pgdata=${dataDir}`,
        '--username=postgres',
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ],
      { cwd: dir, runAs, timeoutMs },
    );
    if (result.code !== 0) {
      throw new Error(
        `initdb (${binaries.initdb}) failed with exit code ${result.code}:\n${indent(result.stdout + result.stderr)}`,
      );
    }
  } finally {
    rmSync(pwfile, { force: true });
  }
}

interface LaunchOptions {
  readonly binaries: PostgresBinaries;
  readonly dir: string;
  readonly dataDir: string;
  readonly port: number;
  readonly settings: Readonly<Record<string, string | number | boolean>>;
  readonly runAs: RunAs | undefined;
  readonly timeoutMs: number;
}

/** Runs the postmaster itself (not pg_ctl, which daemonizes it), so its pid is tracked and signalled directly. */
async function launchPostgres(options: LaunchOptions): Promise<ManagedProcess> {
  const { binaries, dir, dataDir, port } = options;
  const settings = Object.entries({
    ...options.settings,
    listen_addresses: LOOPBACK,
    unix_socket_directories: dir,
  }).flatMap(([name, value]) => ['-c', `${name}=${String(value)}`]);
  const child = new ManagedProcess({
    name: `postgres (port ${port})`,
    command: binaries.postgres,
    args: ['-D', dataDir, '-p', String(port), ...settings],
    cwd: dir,
    runAs: options.runAs,
    // SIGINT is PostgreSQL's fast shutdown (disconnects clients); SIGQUIT its immediate shutdown.
    stopSignal: 'SIGINT',
    orphanSignal: 'SIGQUIT',
  });
  let logSaysReady = false;
  const unsubscribe = child.onLine((line) => {
    if (line.includes(READY_LOG_LINE)) logSaysReady = true;
  });
  try {
    await waitUntilReady(child, {
      what: `postgres on ${LOOPBACK}:${port}`,
      timeoutMs: options.timeoutMs,
      ready: async () => {
        if (!logSaysReady && !(await pgIsready(binaries, port))) return false;
        return canConnect(port);
      },
      portInUse: (output) => output.includes('Address already in use'),
      onPortInUse: () => new PortInUseError(port),
    });
  } finally {
    unsubscribe();
  }
  return child;
}

async function pgIsready(binaries: PostgresBinaries, port: number): Promise<boolean> {
  if (!binaries.pgIsready) return false;
  const result = await run(
    binaries.pgIsready,
    ['-h', LOOPBACK, '-p', String(port), '-d', 'postgres', '-U', 'postgres', '-t', '2'],
    { timeoutMs: 3_000 },
  );
  return result.code === 0;
}

/** uid and gid of the `postgres` system user, which the server runs as when this process is root. */
function postgresSystemUser(): RunAs {
  const entry = passwdEntry('postgres');
  if (!entry) {
    throw new Error(
      'PostgreSQL refuses to run as root and there is no `postgres` system user to run it as. ' +
        'Install PostgreSQL from the distribution (bash tools/test-servers/install-servers.sh creates the user) ' +
        'or run the tests as an ordinary user.',
    );
  }
  return entry;
}

function passwdEntry(user: string): RunAs | undefined {
  let line: string | undefined;
  try {
    line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((entry) => entry.startsWith(`${user}:`));
  } catch {
    // Fall back to NSS below.
  }
  if (!line) {
    try {
      line = execFileSync('getent', ['passwd', user], { encoding: 'utf8', timeout: 5_000 }).trim();
    } catch {
      return undefined;
    }
  }
  const [, , uid, gid] = line.split(':');
  const parsed = { uid: Number(uid), gid: Number(gid) };
  return Number.isInteger(parsed.uid) && Number.isInteger(parsed.gid) ? parsed : undefined;
}
