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
    const handlers = this.#handlers(event);
    if (handlers.length === 0) return undefined;
    const settled: Promise<unknown>[] = [];
    for (const { fn, context } of handlers) {
      try {
        settled.push(Promise.resolve(fn.apply(context, args)));
      } catch (error) {
        settled.push(Promise.reject(error));
      }
    }
    return Promise.allSettled(settled).then((results) => {
      for (const result of results) if (result.status === 'rejected') throw result.reason;
    });
  }

  /**
   * The registered listeners with the context each was added with (`on(event, fn, context)`; the emitter when
   * none was given), copied so that listeners removing themselves do not disturb the call. eventemitter3 keeps
   * them as one `{ fn, context }` record or an array of them; `listeners()` would drop the contexts.
   */
  #handlers(event: EventEmitter.EventNames<Events>): { fn: Listener; context: unknown }[] {
    const key = EventEmitter.prefixed ? `${EventEmitter.prefixed}${String(event)}` : event;
    const stored = (this as unknown as { _events: Record<PropertyKey, Handler | Handler[] | undefined> })
      ._events[key as PropertyKey];
    if (stored === undefined) return [];
    return Array.isArray(stored) ? [...stored] : [stored];
  }
}

interface Handler {
  fn: Listener;
  context: unknown;
}
