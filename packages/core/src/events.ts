import { EventEmitter } from 'eventemitter3';

const ORIGINAL = Symbol('originalListener');

type Listener = ((...args: any[]) => unknown) & { [ORIGINAL]?: Listener };

/**
 * An EventEmitter whose events can be awaited: `emitAsync` calls every listener (in registration order, all
 * started before any is awaited), waits for all of them to settle, and rejects with the first error. Listeners
 * may be sync or async. `once` listeners are removed before they run, as with `emit`.
 */
export class AsyncEventEmitter<Events extends EventEmitter.ValidEventTypes> extends EventEmitter<Events> {
  // eventemitter3 hides `once` bookkeeping from `listeners()`, so a `once` listener is registered as a
  // self-removing wrapper that `emitAsync` can call like any other.
  override once<E extends EventEmitter.EventNames<Events>>(
    event: E,
    fn: EventEmitter.EventListener<Events, E>,
    context?: any,
  ): this {
    const original = fn as Listener;
    const wrapper: Listener = (...args: unknown[]) => {
      super.removeListener(event, wrapper as any);
      return original.apply(context ?? this, args);
    };
    wrapper[ORIGINAL] = original;
    return super.on(event, wrapper as any, context);
  }

  override removeListener<E extends EventEmitter.EventNames<Events>>(
    event: E,
    fn?: EventEmitter.EventListener<Events, E>,
    context?: any,
    once?: boolean,
  ): this {
    if (fn !== undefined) {
      const stored = (this.listeners(event) as Listener[]).find((l) => l === fn || l[ORIGINAL] === fn);
      if (stored !== undefined) fn = stored as EventEmitter.EventListener<Events, E>;
    }
    return super.removeListener(event, fn, context, once);
  }

  override off<E extends EventEmitter.EventNames<Events>>(
    event: E,
    fn?: EventEmitter.EventListener<Events, E>,
    context?: any,
    once?: boolean,
  ): this {
    return this.removeListener(event, fn, context, once);
  }

  /**
   * Resolves once every listener of `event` has settled; rejects with the first listener error. Returns
   * `undefined` without allocating a promise when there are no listeners, which keeps hot paths cheap.
   */
  emitAsync(event: EventEmitter.EventNames<Events>, ...args: unknown[]): Promise<void> | undefined {
    const listeners = this.listeners(event) as Listener[];
    if (listeners.length === 0) return undefined;
    const settled: Promise<unknown>[] = [];
    for (const listener of listeners) {
      try {
        settled.push(Promise.resolve(listener.apply(this, args)));
      } catch (error) {
        settled.push(Promise.reject(error));
      }
    }
    return Promise.allSettled(settled).then((results) => {
      for (const result of results) if (result.status === 'rejected') throw result.reason;
    });
  }
}
