import { removeServerDir } from './dirs.js';
import { PortInUseError } from './ports.js';
import type { ManagedProcess } from './process.js';
import type { RunningServer } from './types.js';

/** What a server does to its processes; `serverControls` sequences these calls. */
export interface ServerProcesses {
  /** Orderly stop (escalating to SIGKILL); a no-op for processes that already exited. */
  stop(): Promise<void>;
  /** Starts the processes again on the same ports. */
  relaunch(): Promise<void>;
  /** SIGKILL to every process of the server; resolves when they exited. */
  kill(): Promise<void>;
  /** SIGSTOP to every process of the server; resolves when they are stopped. */
  pause(): Promise<void>;
  /** SIGCONT to every process of the server. */
  resume(): Promise<void>;
}

/**
 * `restart()`, `stop()`, `kill()`, `pause()` and `resume()` of a running server, given what they do to its
 * processes. All run one at a time in call order, so a stop() during a restart() waits for it instead of racing
 * it; stop() happens once and removes the server's directory; any other call after stop() is an error.
 */
export function serverControls(
  name: string,
  dir: string,
  processes: ServerProcesses,
): Pick<RunningServer, 'restart' | 'stop' | 'kill' | 'pause' | 'resume'> {
  let tail: Promise<unknown> = Promise.resolve();
  const serial = <T>(operation: () => Promise<T>): Promise<T> => {
    const result = tail.then(operation);
    tail = result.catch(() => undefined);
    return result;
  };
  let stopping: Promise<void> | undefined;
  const unlessStopped = (call: string, operation: () => Promise<void>) => () =>
    serial(async () => {
      if (stopping) throw new Error(`${name} test server: ${call}() after stop()`);
      await operation();
    });
  return {
    restart: unlessStopped('restart', async () => {
      await processes.stop();
      await processes.relaunch();
    }),
    kill: unlessStopped('kill', () => processes.kill()),
    pause: unlessStopped('pause', () => processes.pause()),
    resume: unlessStopped('resume', () => processes.resume()),
    stop: () => {
      stopping ??= serial(async () => {
        try {
          await processes.stop();
        } finally {
          removeServerDir(dir);
        }
      });
      return stopping;
    },
  };
}

/** stop, kill, pause and resume of a server that is one process (and its children), `current()` at call time. */
export function oneProcess(
  current: () => ManagedProcess,
  timeoutMs: number,
): Omit<ServerProcesses, 'relaunch'> {
  return {
    stop: () => current().stop(timeoutMs),
    kill: () => current().kill(timeoutMs),
    pause: () => current().pause(timeoutMs),
    resume: async () => current().resume(),
  };
}

/** The same for a server made of several processes (a Redis Cluster's nodes), each signalled at once. */
export function allProcesses(
  current: () => Iterable<ManagedProcess>,
  timeoutMs: number,
): Omit<ServerProcesses, 'relaunch'> {
  const each = (operation: (child: ManagedProcess) => Promise<void> | void) => async () => {
    await Promise.all([...current()].map(operation));
  };
  return {
    stop: each((child) => child.stop(timeoutMs)),
    kill: each((child) => child.kill(timeoutMs)),
    pause: each((child) => child.pause(timeoutMs)),
    resume: each((child) => child.resume()),
  };
}

/** Turns a relaunch's PortInUseError into an error that says the port was lost while restarting. */
export function portTakenOnRestart(name: string, port: number) {
  return (error: unknown): never => {
    if (error instanceof PortInUseError) {
      throw new Error(`${name} test server: port ${port} was taken by another process while restarting`);
    }
    throw error;
  };
}
