import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { isGone, isStopped, processTree, signalPid, waitFor } from './signals.js';

/** How many lines of a server's output are kept for a startup-failure message. */
const KEPT_LINES = 40;

/** The user a server runs as when this process is root (PostgreSQL refuses to run as root). */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

export interface ManagedProcessOptions {
  /** Names the process in errors, e.g. `postgres (port 54321)`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly runAs?: RunAs | undefined;
  /** Signal for an orderly stop (PostgreSQL: SIGINT, fast shutdown; Redis: SIGTERM). */
  readonly stopSignal: NodeJS.Signals;
  /**
   * Signal the server gets when this process dies without stopping it (Linux parent-death signal via setpriv,
   * and the 'exit' handler). It must make the server exit quickly without waiting for clients.
   */
  readonly orphanSignal: NodeJS.Signals;
}

const live = new Set<ManagedProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

/**
 * Nothing started here may outlive this process. On a normal exit the 'exit' hook signals every live server and
 * removes its directory; when this process is killed outright, the kernel's parent-death signal (set through
 * setpriv where available) stops the servers, and `sweepStaleDirs` removes their directories on a later start.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      child.signal(child.orphanSignal);
      // A stopped process would keep the orphan signal pending forever.
      child.resume();
    }
    for (const dir of liveDirs) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
      } catch {
        // The server may still be writing while it dies; sweepStaleDirs removes what is left next time.
      }
    }
  });
}

/** Registers a temporary directory to be removed if this process exits without stopping its server. */
export function trackDir(dir: string): void {
  installExitHook();
  liveDirs.add(dir);
}

export function untrackDir(dir: string): void {
  liveDirs.delete(dir);
}

export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A long-running server process: output captured (last lines), tracked until it exits, killed on exit. */
export class ManagedProcess {
  readonly name: string;
  readonly orphanSignal: NodeJS.Signals;
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcess;
  private readonly stopSignal: NodeJS.Signals;
  private readonly lines: string[] = [];
  private partial = '';
  private exit: ProcessExit | undefined;
  private paused = false;
  private readonly lineListeners = new Set<(line: string) => void>();

  constructor(options: ManagedProcessOptions) {
    installExitHook();
    this.name = options.name;
    this.stopSignal = options.stopSignal;
    this.orphanSignal = options.orphanSignal;
    const setpriv = parentDeathWrapper();
    const [command, args] = setpriv
      ? [setpriv, ['--pdeathsig', options.orphanSignal, '--', options.command, ...options.args]]
      : [options.command, [...options.args]];
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {}),
    });
    this.exited = new Promise<ProcessExit>((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
      this.child.once('error', (error) => {
        this.record(`spawn failed: ${error.message}`);
        this.exit = { code: null, signal: null };
        live.delete(this);
        resolve(this.exit);
      });
    });
    if (this.child.pid !== undefined) live.add(this);
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.collect(chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.collect(chunk));
    // A forgotten stop() must not keep a benchmark or a test run alive; the exit hook still kills the server.
    this.child.unref();
    for (const stream of [this.child.stdout, this.child.stderr]) {
      (stream as unknown as { unref?: () => void } | null)?.unref?.();
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined && this.child.pid !== undefined;
  }

  get exitStatus(): ProcessExit | undefined {
    return this.exit;
  }

  /** The last lines the process wrote to stdout and stderr. */
  output(): string {
    const tail = this.partial ? [...this.lines, this.partial] : this.lines;
    return tail.join('\n');
  }

  /** Calls `listener` for every complete output line from now on; returns an unsubscribe function. */
  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /** Orderly stop; escalates to SIGKILL when the process has not exited within `timeoutMs`. */
  async stop(timeoutMs: number): Promise<void> {
    if (!this.running) return;
    // A paused server could not act on the stop signal.
    this.resume();
    this.signal(this.stopSignal);
    if (await settlesWithin(this.exited, timeoutMs)) return;
    this.signal('SIGKILL');
    if (!(await settlesWithin(this.exited, 5_000))) {
      throw new Error(`${this.name} (pid ${this.pid}) did not exit after SIGKILL`);
    }
  }

  /** This process and its descendants (PostgreSQL: the postmaster, its backends and auxiliary processes). */
  processTree(): number[] {
    return this.running && this.pid !== undefined ? processTree(this.pid) : [];
  }

  /**
   * SIGSTOP to this process, then (once it is stopped and so can fork no more) to every descendant, pass after
   * pass until no new one appears. Resolves when all of them are stopped.
   */
  async pause(timeoutMs: number): Promise<void> {
    const pid = this.pid;
    if (!this.running || pid === undefined) return;
    this.paused = true;
    signalPid(pid, 'SIGSTOP');
    if (!(await waitFor(() => isStopped(pid), timeoutMs))) {
      throw new Error(`${this.name} (pid ${pid}) did not stop after SIGSTOP within ${timeoutMs} ms`);
    }
    const stopped = new Set([pid]);
    for (let pass = 0; pass < 20; pass++) {
      const fresh = processTree(pid).filter((other) => !stopped.has(other));
      if (fresh.length === 0) break;
      for (const other of fresh) {
        signalPid(other, 'SIGSTOP');
        stopped.add(other);
      }
    }
    if (!(await waitFor(() => [...stopped].every(isStopped), timeoutMs))) {
      throw new Error(`${this.name}: some of its processes did not stop within ${timeoutMs} ms`);
    }
  }

  /** SIGCONT to this process and every descendant, when paused. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const pid of this.processTree()) signalPid(pid, 'SIGCONT');
  }

  /**
   * SIGKILL to this process and every descendant at once, no shutdown of any kind. The tree is paused first so
   * that no process is forked or reparented while it is being killed. Resolves when every one has exited.
   */
  async kill(timeoutMs: number): Promise<void> {
    if (!this.running) return;
    await this.pause(timeoutMs);
    const pids = this.processTree();
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    this.paused = false;
    const exited = await settlesWithin(this.exited, timeoutMs);
    if (!exited || !(await waitFor(() => pids.every(isGone), timeoutMs))) {
      throw new Error(`${this.name}: processes still running ${timeoutMs} ms after SIGKILL`);
    }
  }

  private collect(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.record(line);
  }

  private record(line: string): void {
    this.lines.push(line);
    if (this.lines.length > KEPT_LINES) this.lines.shift();
    for (const listener of this.lineListeners) listener(line);
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise; the timer never outlives the wait. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let setprivPath: string | null | undefined;

/**
 * util-linux `setpriv --pdeathsig` (Linux) makes the kernel signal the server when this process dies, even by
 * SIGKILL, where no exit handler runs. It execs the server, so the pid tracked here is the server's own.
 */
function parentDeathWrapper(): string | null {
  if (setprivPath === undefined) {
    setprivPath = process.platform === 'linux' ? findExecutable('setpriv', ['/usr/bin', '/bin']) : null;
  }
  return setprivPath;
}

/** Finds an executable on PATH, then in `extraDirs` (CI's PATH may lack /usr/sbin and the like). */
export function findExecutable(name: string, extraDirs: readonly string[] = []): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a short-lived command to completion (bounded by `timeoutMs`), never throwing on a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; runAs?: RunAs | undefined; timeoutMs: number },
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      {
        cwd: options.cwd,
        env: { ...process.env, LC_ALL: 'C' },
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 4 * 1024 * 1024,
        ...(options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {}),
      },
      (error, stdout, stderr) => {
        const failure = error as (NodeJS.ErrnoException & { killed?: boolean }) | null;
        let code: number | null = 0;
        let extra = '';
        if (failure) {
          code = typeof failure.code === 'number' ? failure.code : null;
          if (failure.killed) extra = `\n(killed after ${options.timeoutMs} ms)`;
          else if (typeof failure.code === 'string') extra = `\n${failure.message}`;
        }
        resolve({ code, stdout: String(stdout), stderr: String(stderr) + extra });
      },
    );
  });
}

/** Indents captured output for an error message. */
export function indent(text: string): string {
  const trimmed = text.trim();
  return trimmed ? trimmed.replace(/^/gm, '    ') : '    (no output)';
}

export interface ReadyOptions {
  /** e.g. `postgres on 127.0.0.1:54321`, for messages. */
  readonly what: string;
  readonly timeoutMs: number;
  /** One readiness probe; must itself be bounded in time. */
  readonly ready: () => Promise<boolean>;
  /** Recognises a startup failure caused by the port being taken, to retry on another port. */
  readonly portInUse?: (output: string) => boolean;
  readonly onPortInUse?: () => Error;
}

/**
 * Polls `ready` until it holds, the process exits (error with its last output lines) or the time runs out
 * (the process is killed; error with its output). Waits between probes end early when the process exits.
 */
export async function waitUntilReady(child: ManagedProcess, options: ReadyOptions): Promise<void> {
  const started = Date.now();
  const intervalMs = 50;
  const maxProbes = Math.ceil(options.timeoutMs / intervalMs) + 1;
  for (let probe = 0; probe < maxProbes && Date.now() - started < options.timeoutMs; probe++) {
    if (!child.running) {
      await child.exited;
      const output = child.output();
      if (options.portInUse?.(output) && options.onPortInUse) throw options.onPortInUse();
      const status = child.exitStatus;
      throw new Error(
        `${options.what} exited during startup (code ${status?.code ?? 'none'}, signal ${status?.signal ?? 'none'}). ` +
          `Last output:\n${indent(output)}`,
      );
    }
    if (await options.ready()) return;
    await settlesWithin(child.exited, intervalMs);
  }
  await child.stop(5_000).catch(() => undefined);
  throw new Error(
    `${options.what} did not become ready within ${options.timeoutMs} ms. Last output:\n${indent(child.output())}`,
  );
}
