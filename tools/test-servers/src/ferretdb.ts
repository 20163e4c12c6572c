import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ServerUnavailableError } from './availability.js';
import { makeServerDir, removeServerDir } from './dirs.js';
import { oneProcess, portTakenOnRestart, serverControls } from './lifecycle.js';
import { LOOPBACK, onFreePort, PortInUseError } from './ports.js';
import { findExecutable, ManagedProcess, waitUntilReady } from './process.js';
import type { RunningServer } from './types.js';

/** The FerretDB release `build-ferretdb.sh` builds by default. */
export const FERRETDB_VERSION = 'v1.24.2';

export const FERRETDB_BUILD_HINT = 'bash tools/test-servers/build-ferretdb.sh';

export interface FerretDBServerOptions {
  /** Path of the `ferretdb` binary; default `ferretdbBinary()`. */
  readonly binary?: string;
  /** FerretDB's `--log-level`; default `warn` (the server's output is kept for startup-failure messages). */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Bound on each wait for the server to answer `ping`. Default 30 s. */
  readonly timeoutMs?: number;
}

export interface FerretDBServer extends RunningServer {
  /** The temporary directory holding the SQLite databases (one file per MongoDB database). */
  readonly dir: string;
  readonly binary: string;
}

/**
 * Where a FerretDB binary is, or undefined: `FERRETDB_BIN` when set, else the cache `build-ferretdb.sh` writes
 * (`${CAGEY_CACHE_DIR:-~/.cache/cagey-sessions}/ferretdb-<version>/ferretdb`), else `ferretdb` on PATH.
 */
export function ferretdbBinary(): string | undefined {
  const fromEnv = process.env.FERRETDB_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const cacheDir = process.env.CAGEY_CACHE_DIR || join(homedir(), '.cache', 'cagey-sessions');
  const cached = join(cacheDir, `ferretdb-${FERRETDB_VERSION}`, 'ferretdb');
  if (existsSync(cached)) return cached;
  return findExecutable('ferretdb') ?? undefined;
}

/**
 * Starts FerretDB 1.x, a MongoDB wire-protocol server, with its embedded SQLite backend in a fresh temporary
 * directory, on 127.0.0.1 on a free port, without authentication, telemetry or the debug HTTP listener. The URL
 * is `mongodb://127.0.0.1:<port>/`. Resolves once the server answers `ping`.
 *
 * `restart()` stops the server and starts it again on the same port with the same data (SQLite files survive,
 * also after `kill()`). `stop()` stops it and removes the directory. Both are idempotent; the server is killed if this process exits
 * without stopping it. Throws `ServerUnavailableError` when no binary is found (build one with
 * `bash tools/test-servers/build-ferretdb.sh`).
 */
export async function startFerretDB(options: FerretDBServerOptions = {}): Promise<FerretDBServer> {
  const binary = options.binary ?? ferretdbBinary();
  if (binary === undefined || !existsSync(binary)) {
    throw new ServerUnavailableError('ferretdb', [binary ?? 'ferretdb'], FERRETDB_BUILD_HINT);
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const logLevel = options.logLevel ?? 'warn';
  const dir = makeServerDir('ferretdb');
  try {
    const launch = (port: number) => launchFerretDB(binary, dir, port, logLevel, timeoutMs);
    const started = await onFreePort(launch);
    const port = started.port;
    let child = started.value;
    return {
      url: `mongodb://${LOOPBACK}:${port}/`,
      host: LOOPBACK,
      port,
      dir,
      binary,
      ...serverControls('ferretdb', dir, {
        ...oneProcess(() => child, timeoutMs),
        relaunch: async () => {
          child = await launch(port).catch(portTakenOnRestart('ferretdb', port));
        },
      }),
    };
  } catch (error) {
    removeServerDir(dir);
    throw error;
  }
}

async function launchFerretDB(
  binary: string,
  dir: string,
  port: number,
  logLevel: string,
  timeoutMs: number,
): Promise<ManagedProcess> {
  const child = new ManagedProcess({
    name: `ferretdb (port ${port})`,
    command: binary,
    args: [
      '--handler=sqlite',
      `--sqlite-url=file:${dir}/`,
      `--listen-addr=${LOOPBACK}:${port}`,
      // The debug listener (metrics, pprof) would otherwise take the fixed port 8088.
      '--debug-addr=-',
      '--telemetry=disable',
      `--state-dir=${dir}`,
      `--log-level=${logLevel}`,
      '--log-format=text',
    ],
    cwd: dir,
    stopSignal: 'SIGTERM',
    orphanSignal: 'SIGKILL',
  });
  await waitUntilReady(child, {
    what: `ferretdb on ${LOOPBACK}:${port}`,
    timeoutMs,
    ready: () => pingOk(port),
    portInUse: (output) => output.includes('address already in use'),
    onPortInUse: () => new PortInUseError(port),
  });
  return child;
}

/**
 * Sends `{ ping: 1, $db: 'admin' }` as an OP_MSG and resolves whether the reply says `ok: 1.0`. Hand-encoded so
 * this package needs no MongoDB driver; bounded to 1 s.
 */
export function pingOk(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    let buffer = Buffer.alloc(0);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
    socket.once('connect', () => socket.write(pingMessage()));
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length < 4) return;
      const length = buffer.readInt32LE(0);
      if (length < 16 || length > 16 * 1024 * 1024) return done(false);
      if (buffer.length < length) return;
      done(buffer.readInt32LE(12) === OP_MSG && buffer.subarray(0, length).includes(OK_ONE));
    });
  });
}

const OP_MSG = 2013;
/** BSON element `ok: 1.0` (type 0x01 double, name "ok", little-endian 1.0). */
const OK_ONE = Buffer.from([0x01, 0x6f, 0x6b, 0x00, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);

function pingMessage(): Buffer {
  const db = Buffer.from('admin\0');
  const body = Buffer.concat([
    Buffer.from([0x10]),
    Buffer.from('ping\0'),
    int32(1),
    Buffer.from([0x02]),
    Buffer.from('$db\0'),
    int32(db.length),
    db,
    Buffer.from([0x00]),
  ]);
  const document = Buffer.concat([int32(body.length + 4), body]);
  const payload = Buffer.concat([int32(0), Buffer.from([0x00]), document]);
  const header = Buffer.concat([int32(16 + payload.length), int32(1), int32(0), int32(OP_MSG)]);
  return Buffer.concat([header, payload]);
}

function int32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeInt32LE(value, 0);
  return buffer;
}
