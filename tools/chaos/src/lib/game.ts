import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { StoreKind } from './stores.js';

/** The game-server scripts: a single node (`game-server`) and a node of a presence cluster (`presence-node`). */
const SCRIPTS = {
  'game-server': fileURLToPath(new URL('../game-server.mjs', import.meta.url)),
  'presence-node': fileURLToPath(new URL('../presence-node.mjs', import.meta.url)),
};

/** `userData.persistence` options handed to the game server's manager. */
export interface PersistenceConfig {
  events?: string[];
  interval?: string | number;
  batchSize?: number;
  concurrency?: number;
  retry?: { initialDelay?: string | number; maxDelay?: string | number };
  shutdownTimeout?: string | number;
  callTimeout?: string | number;
}

/** A presence shared by the nodes of a cluster (`presence-node` only). */
export interface PresenceConfig {
  kind: 'redis' | 'postgres';
  url: string;
  /** Redis key prefix (without its trailing `:`) or PostgreSQL table name of this run's presence. */
  name: string;
  leaseTtl: number;
  handoffTimeout: number;
}

export interface GameConfig {
  /** Which script runs. Default `game-server`. */
  script?: keyof typeof SCRIPTS;
  presence?: PresenceConfig;
  /** Node name: prefixes the tokens this process writes into player data. Unique per process. */
  node: string;
  store: StoreKind;
  /** Store URL the game connects to (usually through a fault proxy). */
  url: string;
  /** Names the table / key prefix / collection. */
  namespace: string;
  persistence: PersistenceConfig;
  /** `reload`: a session that sees `conflict` reloads from the store. */
  onConflict?: 'reload' | 'none';
  /** Diagnostic: after each login, read the store too and report when identify() used another version. */
  checkLogins?: boolean;
  /** Log every login and logout (with the version), for post-mortems with CHAOS_LOG_DIR. */
  traceSessions?: boolean;
  /** The game server exits by itself after this long. */
  lifetimeMs?: number;
}

/** One JSON log line of the game server. */
export interface LogLine {
  t: number;
  level: string;
  node: string;
  msg: string;
  [field: string]: unknown;
}

export interface ChildErrorInfo {
  name?: string;
  code?: string;
  message?: string;
  unsaved?: { userId: string; maybeStored?: boolean; error?: string }[];
}

/** A command the game server answered with an error. */
export class GameCommandError extends Error {
  readonly code: string | undefined;
  readonly info: ChildErrorInfo;
  constructor(cmd: string, info: ChildErrorInfo) {
    super(`${cmd}: ${info.name ?? 'Error'} ${info.code ?? ''} ${info.message ?? ''}`.trim());
    this.code = info.code;
    this.info = info;
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when it exited. */
  at: number;
}

export interface GameStats {
  sessions: number;
  identified: number;
  dirty: number;
  inFlight: number;
  queued: number;
  retrying: number;
  orphaned: number;
  written: number;
  failed: number;
  conflicts: number;
  reloads: number;
  reloadFailures: number;
  maxReloadMs: number;
  persistErrors: number;
  reloadsOnLogin: number;
  maxStallMs: number;
  maxBusyStallMs: number;
  loadAtMaxStall?: number;
  loggedIn: number;
}

/** Every game server started in this run, so that none outlives it. */
const live = new Set<GameProcess>();

/** Kills (SIGKILL) every game server still running. */
export function killAllGames(): void {
  for (const game of live) game.kill9();
}

process.on('exit', killAllGames);

/** A game-server child process driven over IPC. */
export class GameProcess {
  readonly name: string;
  readonly logs: LogLine[] = [];
  /** Lines on stdout that are not JSON, and stderr, kept for failure messages (the last 200). */
  readonly otherOutput: string[] = [];
  readonly exited: Promise<Exit>;
  #exit: Exit | undefined;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #nextId = 1;

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.#child = child;
    live.add(this);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal, at: performance.now() };
        live.delete(this);
        for (const { reject } of this.#pending.values()) {
          reject(new Error(`${name} exited (${describeExit(this.#exit)}) before answering`));
        }
        this.#pending.clear();
        resolve(this.#exit);
      });
    });
    lines(child.stdout!, (line) => {
      if (line.startsWith('{')) {
        try {
          this.logs.push(JSON.parse(line) as LogLine);
          return;
        } catch {
          // kept as text below
        }
      }
      this.#keep(line);
    });
    lines(child.stderr!, (line) => this.#keep(`stderr: ${line}`));
    child.on(
      'message',
      (message: { id?: number; ok?: boolean; result?: unknown; error?: ChildErrorInfo }) => {
        if (message.id === undefined) return;
        const waiter = this.#pending.get(message.id);
        if (waiter === undefined) return;
        this.#pending.delete(message.id);
        if (message.ok) waiter.resolve(message.result);
        else waiter.reject(new GameCommandError('command', message.error ?? {}));
      },
    );
  }

  /** Starts a game server and waits until it is ready (bounded by `timeoutMs`). */
  static async start(config: GameConfig, timeoutMs = 20_000): Promise<GameProcess> {
    const child = fork(SCRIPTS[config.script ?? 'game-server'], [], {
      env: { ...process.env, CHAOS_GAME_CONFIG: JSON.stringify(config) },
      execArgv: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const game = new GameProcess(config.node, child);
    const ready = new Promise<void>((resolve) => {
      const onMessage = (message: { event?: string }) => {
        if (message?.event === 'ready') {
          child.off('message', onMessage);
          resolve();
        }
      };
      child.on('message', onMessage);
    });
    const outcome = await Promise.race([
      ready.then(() => 'ready' as const),
      game.exited.then(() => 'exited' as const),
      sleep(timeoutMs).then(() => 'timeout' as const),
    ]);
    if (outcome !== 'ready') {
      game.kill9();
      throw new Error(
        `game server ${config.node} did not start (${outcome === 'timeout' ? `not ready within ${timeoutMs} ms` : 'exited'}):\n${game.tail()}`,
      );
    }
    return game;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get exit(): Exit | undefined {
    return this.#exit;
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** Sends a command; rejects with `GameCommandError` on an error reply, or when no reply comes in `timeoutMs`. */
  request<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    if (this.#exit !== undefined || !this.#child.connected) {
      return Promise.reject(new Error(`${this.name} is not running`));
    }
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          if (error instanceof GameCommandError) reject(new GameCommandError(cmd, error.info));
          else reject(error);
        },
      });
      this.#child.send({ id, cmd, ...args }, (error) => {
        if (error && this.#pending.delete(id)) {
          clearTimeout(timer);
          reject(error);
        }
      });
    });
  }

  stats(): Promise<GameStats> {
    return this.request<GameStats>('stats', {}, 10_000);
  }

  /** SIGTERM: the README's graceful shutdown. Returns performance.now() at the signal. */
  terminate(): number {
    this.#child.kill('SIGTERM');
    return performance.now();
  }

  /** SIGKILL, no questions asked. */
  kill9(): number {
    if (this.#exit === undefined) this.#child.kill('SIGKILL');
    return performance.now();
  }

  /** Waits for the exit up to `timeoutMs`; then SIGKILLs it and resolves with `timedOut`. */
  async waitExit(timeoutMs: number): Promise<Exit & { timedOut: boolean }> {
    const outcome = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)]);
    if (outcome !== undefined) return { ...outcome, timedOut: false };
    this.kill9();
    return { ...(await this.exited), timedOut: true };
  }

  /** Log lines at `level` whose message includes `text`. */
  find(level: string, text: string): LogLine[] {
    return this.logs.filter((line) => line.level === level && line.msg.includes(text));
  }

  /** The last lines of output, for failure messages. */
  tail(count = 15): string {
    const text = [
      ...this.logs.slice(-count).map((line) => JSON.stringify(line).slice(0, 400)),
      ...this.otherOutput.slice(-count),
    ];
    return text.map((line) => `    ${line}`).join('\n');
  }

  #keep(line: string): void {
    this.otherOutput.push(line);
    if (this.otherOutput.length > 200) this.otherOutput.shift();
  }
}

export function describeExit(exit: {
  code: number | null;
  signal: string | null;
  timedOut?: boolean;
}): string {
  if (exit.timedOut) return 'hung (SIGKILL)';
  return exit.signal ?? String(exit.code);
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffer += chunk;
    let end = buffer.indexOf('\n');
    while (end >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (line.length > 0) onLine(line);
      end = buffer.indexOf('\n');
    }
  });
  stream.on('end', () => {
    if (buffer.length > 0) onLine(buffer);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
