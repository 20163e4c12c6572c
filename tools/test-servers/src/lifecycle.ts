import { removeServerDir } from './dirs.js';
import { PortInUseError } from './ports.js';
import type { RunningServer } from './types.js';

/**
 * `restart()` and `stop()` of a running server, given how to stop its processes and launch them again on the
 * same ports. Both run one at a time in call order, so a stop() during a restart() waits for it instead of
 * racing it; stop() happens once and removes the server's directory; restart() after stop() is an error.
 */
export function serverControls(
  name: string,
  dir: string,
  processes: { stop(): Promise<void>; relaunch(): Promise<void> },
): Pick<RunningServer, 'restart' | 'stop'> {
  let tail: Promise<unknown> = Promise.resolve();
  const serial = <T>(operation: () => Promise<T>): Promise<T> => {
    const result = tail.then(operation);
    tail = result.catch(() => undefined);
    return result;
  };
  let stopping: Promise<void> | undefined;
  return {
    restart: () =>
      serial(async () => {
        if (stopping) throw new Error(`${name} test server: restart() after stop()`);
        await processes.stop();
        await processes.relaunch();
      }),
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

/** Turns a relaunch's PortInUseError into an error that says the port was lost while restarting. */
export function portTakenOnRestart(name: string, port: number) {
  return (error: unknown): never => {
    if (error instanceof PortInUseError) {
      throw new Error(`${name} test server: port ${port} was taken by another process while restarting`);
    }
    throw error;
  };
}
