/** Starts the game server (src/serve.ts) as a child process and talks to it over the IPC channel. */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Player } from './game.js';
import type { ShutdownReport } from './server.js';
import type { StoreKind } from './stores.js';

/** Messages the server sends its parent. */
export type ServerToParent =
  | { type: 'ready'; port: number; location: string; startupMs: number; openStoreMs: number }
  | { type: 'report'; report: ShutdownReport; maxRssBytes: number; contents?: Record<string, unknown> };

/** Messages the parent sends the server (with `--fault-control`). */
export type ParentToServer = { type: 'fault'; action: 'hang' | 'fail' | 'heal' };

export interface LaunchOptions {
  store: StoreKind;
  dataDir: string;
  namespace?: string;
  port?: number;
  graceMs?: number;
  intervalMs?: number;
  shutdownTimeoutMs?: number;
  callTimeoutMs?: number;
  /** Extra command-line options for serve.ts (limits, e.g. `--rate-limit=off`). */
  args?: string[];
  /** Lets `fault()` make the store hang and heal (for stores inside the server process). */
  faultControl?: boolean;
  /** Makes every login carry `auth` (GAME_AUTH_SECRET). */
  authSecret?: string;
  /** The server's stdout and stderr go to this file. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the server to listen. Default 60 s (PGlite initialises its files on first use). */
  startTimeoutMs?: number;
}

export interface ServerProcess {
  readonly port: number;
  readonly url: string;
  /** Where the data lives, as the server describes it (no credentials). */
  readonly location: string;
  readonly child: ChildProcess;
  /** From spawning the process to the server listening, as the parent saw it. */
  readonly startupMs: number;
  /** How long opening the store took inside the server. */
  readonly openStoreMs: number;
  /**
   * Sends a signal (default SIGTERM) and resolves with the exit and the shutdown report, if one came. Kills the
   * server if it has not exited after `timeoutMs`.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ServerExit>;
  /**
   * With `faultControl`: from now on every store call hangs (`'hang'`, like a network black hole) or fails at
   * once (`'fail'`, like a stopped database), or proceeds again (`'heal'`).
   */
  fault(action: ParentToServer['action']): void;
}

export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  report: ShutdownReport | undefined;
  /** The server process's peak resident memory, in bytes (from its report). */
  maxRssBytes: number | undefined;
  /** For the memory store only: what the store held after shutdown, read inside the server process. */
  contents: Record<string, Player> | undefined;
}

const packageDir = fileURLToPath(new URL('..', import.meta.url));

/** Node arguments that run a TypeScript entry point with workspace packages resolved to their sources. */
export function typescriptNodeArgs(): { args: string[]; env: NodeJS.ProcessEnv } {
  const require = createRequire(import.meta.url);
  const loader = pathToFileURL(require.resolve('tsx')).href;
  return {
    args: ['--import', loader],
    env: { TSX_TSCONFIG_PATH: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) },
  };
}

export async function launchServer(options: LaunchOptions): Promise<ServerProcess> {
  const spawned = performance.now();
  const ts = typescriptNodeArgs();
  const args = [
    ...ts.args,
    fileURLToPath(new URL('./serve.ts', import.meta.url)),
    `--store=${options.store}`,
    `--data-dir=${options.dataDir}`,
    `--namespace=${options.namespace ?? 'game'}`,
    `--port=${options.port ?? 0}`,
    `--grace=${options.graceMs ?? 10_000}ms`,
    `--interval=${options.intervalMs ?? 10_000}ms`,
    `--shutdown-timeout=${options.shutdownTimeoutMs ?? 15_000}ms`,
    `--call-timeout=${options.callTimeoutMs ?? 10_000}ms`,
    ...(options.faultControl === true ? ['--fault-control'] : []),
    ...(options.args ?? []),
  ];
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env), ...ts.env };
  delete env.GAME_AUTH_SECRET;
  if (options.authSecret !== undefined) env.GAME_AUTH_SECRET = options.authSecret;
  const log = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, {
      cwd: packageDir,
      env,
      stdio: ['ignore', log, log, 'ipc'],
      // Its own process group: a Ctrl-C in the terminal reaches the parent only, which then stops the server
      // with one SIGTERM. If the parent dies, the server sees the IPC channel close and shuts down by itself.
      detached: true,
    });
  } finally {
    closeSync(log);
  }

  let report: (ServerToParent & { type: 'report' }) | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const ready = new Promise<ServerToParent & { type: 'ready' }>((resolve, reject) => {
    child.on('message', (message: ServerToParent) => {
      if (message.type === 'ready') resolve(message);
      else if (message.type === 'report') report = message;
    });
    child.once('error', reject);
    void exited.then(({ code, signal }) =>
      reject(
        new Error(
          `The game server exited before it was ready (${signal ?? `code ${code}`}). ` +
            `Last lines of ${options.logFile}:\n${tail(options.logFile, 10)}`,
        ),
      ),
    );
  });
  const startTimeout = options.startTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const started = await Promise.race([
    ready,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(`The game server did not start within ${startTimeout} ms; see ${options.logFile}`),
          ),
        startTimeout,
      );
    }),
  ])
    .catch((error: unknown) => {
      child.kill('SIGKILL');
      throw error;
    })
    .finally(() => clearTimeout(timer));

  return {
    port: started.port,
    url: `ws://127.0.0.1:${started.port}`,
    location: started.location,
    child,
    startupMs: performance.now() - spawned,
    openStoreMs: started.openStoreMs,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let killTimer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([
        exited,
        new Promise<undefined>((resolve) => {
          killTimer = setTimeout(() => resolve(undefined), timeoutMs);
        }),
      ]).finally(() => clearTimeout(killTimer));
      if (exit === undefined) {
        child.kill('SIGKILL');
        throw new Error(`The game server did not exit within ${timeoutMs} ms; killed it.`);
      }
      return {
        ...exit,
        report: report?.report,
        maxRssBytes: report?.maxRssBytes,
        contents: report?.contents as Record<string, Player> | undefined,
      };
    },
    fault(action) {
      if (options.faultControl !== true) throw new Error('launchServer: fault() needs faultControl: true');
      child.send({ type: 'fault', action } satisfies ParentToServer);
    },
  };
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .slice(-lines)
      .map((line) => `  ${line}`)
      .join('\n');
  } catch {
    return '  (no log)';
  }
}
