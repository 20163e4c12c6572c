import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { PersistenceError } from './errors.js';

/**
 * Resolves with `promise`'s value, or with `undefined` once `ms` have passed. The timer is unref'd: a deadline
 * alone never keeps the process alive (whoever awaits the work holds it, see `KeepAlive`).
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Calls an adapter method and bounds the wait: a store that hangs (a stopped process, a network black hole)
 * rejects the call with ADAPTER_TIMEOUT after `timeoutMs`. A synchronous throw or a non-promise return is
 * turned into a settled promise, so nothing an adapter does escapes as an uncaught exception. A call that
 * settles after its timeout is ignored; `onAbandon` is handed it, so the caller can still account for it.
 */
export function callAdapter<T>(
  adapterName: string,
  operation: string,
  timeoutMs: number,
  call: () => Promise<T> | T,
  onAbandon?: (pending: Promise<unknown>) => void,
): Promise<T> {
  let pending: Promise<T>;
  try {
    pending = Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error);
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // The late outcome of the abandoned call must not surface as an unhandled rejection.
      pending.catch(() => {});
      onAbandon?.(pending);
      reject(
        new PersistenceError(
          'ADAPTER_TIMEOUT',
          `Adapter "${adapterName}" did not answer ${operation}() within ${timeoutMs} ms (callTimeout); ` +
            'the store may be unreachable or stalled.',
        ),
      );
    }, timeoutMs);
    timer.unref();
  });
  return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Keeps the process alive while somebody awaits persistence work (a shutdown drain, a `persistNow`). Node
 * exits when nothing is scheduled, and the pipeline's own timers are unref'd so that an idle manager never
 * holds a process open; a held `KeepAlive` adds one ref'd timer until every holder has released it.
 */
export class KeepAlive {
  #holders = 0;
  #timer: NodeJS.Timeout | undefined;

  /** Holds the process open until the returned function is called (once). */
  hold(): () => void {
    if (this.#holders++ === 0) this.#timer = setInterval(() => {}, 1 << 30);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#holders === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  /** Holds the process open until `promise` settles; returns `promise`. */
  during<T>(promise: Promise<T>): Promise<T> {
    const release = this.hold();
    promise.then(release, release);
    return promise;
  }
}

/**
 * Splits a long loop into stretches of at most `SLICE_MS` of work: a game server's tick is 16-50 ms, and a
 * flush or a shutdown over thousands of users must not hold the event loop for longer than a slice.
 */
export class Pacer {
  static readonly SLICE_MS = 3;
  #since = performance.now();

  /** Whether the current slice is used up (cheap: call it per item, and `yield()` only when it says so). */
  due(): boolean {
    return performance.now() - this.#since >= Pacer.SLICE_MS;
  }

  /** Lets the event loop turn, then starts a new slice. */
  async yield(): Promise<void> {
    await nextMacrotask();
    this.#since = performance.now();
  }

  /** `yield()` when `due()`: for loops that await anyway. */
  async yieldIfDue(): Promise<void> {
    if (this.due()) await this.yield();
  }
}
