import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { type SessionManager, ValidationError } from '@cagey-sessions/core';
import { checkOptionKeys, invalidOptions } from '@cagey-sessions/core/adapter-kit';
import {
  type Attributes,
  type Context,
  context,
  diag,
  type MeterProvider,
  metrics,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import {
  CHANNELS,
  type ConflictMessage,
  count,
  type HandoffMessage,
  type RetryMessage,
  type ShutdownMessage,
  type Traced,
  type TracedBatch,
  type TracedFlush,
  type TracedPersist,
} from './messages.js';
import { type Instruments, instrumentsOf } from './meter.js';
import { ATTRIBUTES, dbSystemOf, EVENTS, errorTypeOf, SPANS } from './names.js';

/** The instrumentation scope: the meter's and the tracer's name and version. */
const SCOPE = '@cagey-sessions/opentelemetry';
const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
const NAME = 'opentelemetry';

export interface InstrumentOptions {
  /** Where the metrics go. Default: the global one (`metrics.getMeterProvider()`) at the time of the call. */
  meterProvider?: MeterProvider;
  /** Where the spans go. Default: the global one (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
  /** Spans for flushes, adapter batches and shutdown. Default `true`. */
  spans?: boolean;
  /** A span for every `session.persistNow()` too (needs `spans`). Default `false`: there can be many. */
  persistSpans?: boolean;
  /**
   * The observable instruments read from `manager.stats()` at every metric collection. Default `true`.
   * `stats()` counts dirty users by checking every user held (in `'snapshot'` dirty tracking, by comparing
   * their data), so with very many users and a short collection interval, `false` saves that work.
   */
  gauges?: boolean;
  /**
   * Added to every metric point and span, e.g. `{ 'cagey_sessions.manager': 'lobby' }` to tell apart
   * managers of one process. Managers instrumented with equal attributes on one meter provider are summed.
   */
  attributes?: Attributes;
}

/** What `instrument()` returns. */
export interface Instrumentation {
  /** Unsubscribes from every channel and stops the observable instruments. Calling it again does nothing. */
  uninstrument(): void;
}

/** The keys of `InstrumentOptions`. */
export const OPTION_KEYS = [
  'meterProvider',
  'tracerProvider',
  'spans',
  'persistSpans',
  'gauges',
  'attributes',
];

/** One traced call of core's (a flush, a batch, a `persistNow()`) from its start. */
interface Operation {
  started: number;
  span: Span | undefined;
  ended: boolean;
}

/**
 * Turns the diagnostics channels of `manager` into OpenTelemetry metrics and spans: flush, adapter batch and
 * `persistNow()` durations, records written by outcome, retries, conflicts, shutdown, and the manager's state
 * (sessions, dirty, queued, ... users) as observable instruments. Only this manager's events are counted.
 * Returns a handle whose `uninstrument()` undoes it.
 */
export function instrument(manager: SessionManager<any>, options: InstrumentOptions = {}): Instrumentation {
  checkOptions(options);
  if (typeof manager !== 'object' || manager === null || typeof manager.stats !== 'function') {
    throw new ValidationError(
      'INVALID_OPTIONS',
      `[${NAME}] instrument() needs a SessionManager, got ${manager === null ? 'null' : typeof manager}.`,
    );
  }
  const base: Attributes = { ...options.attributes };
  const spans = options.spans ?? true;
  const persistSpans = spans && (options.persistSpans ?? false);
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE, VERSION);
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE, VERSION);
  const instruments = instrumentsOf(meter);
  /** The operation of this manager that the code running now belongs to: the parent of the spans it starts. */
  const current = new AsyncLocalStorage<Operation | undefined>();
  const undo: (() => void)[] = [];

  if (options.gauges ?? true)
    undo.push(instruments.observe({ stats: () => manager.stats(), attributes: base }));

  const parent = (): Context => {
    const operation = current.getStore();
    const active = context.active();
    return operation?.span !== undefined && !operation.ended ? trace.setSpan(active, operation.span) : active;
  };
  const liveSpan = (): Span | undefined => {
    const operation = current.getStore();
    return operation !== undefined && !operation.ended ? operation.span : undefined;
  };

  undo.push(
    traceChannel<TracedFlush>(CHANNELS.flush, {
      manager,
      current: spans ? current : undefined,
      start: (message) =>
        spans
          ? tracer.startSpan(
              SPANS.flush,
              { kind: SpanKind.INTERNAL, attributes: { ...base, ...reasonOf(message) } },
              parent(),
            )
          : undefined,
      finish: (message, operation) => finishFlush(instruments, base, message, operation),
    }),
    traceChannel<TracedBatch>(CHANNELS.batch, {
      manager,
      current: spans ? current : undefined,
      start: (message) =>
        spans
          ? tracer.startSpan(
              SPANS.batch,
              {
                kind: SpanKind.INTERNAL,
                attributes: { ...base, ...adapterOf(message), [ATTRIBUTES.batchSize]: count(message.size) },
              },
              parent(),
            )
          : undefined,
      finish: (message, operation) => finishBatch(instruments, base, message, operation),
    }),
    traceChannel<TracedPersist>(CHANNELS.persist, {
      manager,
      current: persistSpans ? current : undefined,
      start: (message) =>
        persistSpans
          ? tracer.startSpan(
              SPANS.persist,
              { kind: SpanKind.INTERNAL, attributes: { ...base, ...userOf(message) } },
              parent(),
            )
          : undefined,
      finish: (message, operation) => {
        const error = message.error;
        const attributes =
          error === undefined ? base : { ...base, [ATTRIBUTES.errorType]: errorTypeOf(error) };
        instruments.persistDuration.record(elapsed(operation), attributes);
        endSpan(operation.span, error);
      },
    }),
    subscribe<RetryMessage>(CHANNELS.retry, manager, (message) => {
      instruments.retries.add(1, { ...base, [ATTRIBUTES.errorType]: errorTypeOf(message.error) });
      liveSpan()?.addEvent(EVENTS.retry, {
        ...userOf(message),
        [ATTRIBUTES.failures]: count(message.failures),
        [ATTRIBUTES.delay]: count(message.delayMs) / 1000,
        [ATTRIBUTES.errorType]: errorTypeOf(message.error),
      });
    }),
    subscribe<ConflictMessage>(CHANNELS.conflict, manager, (message) => {
      instruments.conflicts.add(1, base);
      liveSpan()?.addEvent(EVENTS.conflict, {
        ...userOf(message),
        [ATTRIBUTES.expectedVersion]: count(message.expectedVersion),
        [ATTRIBUTES.currentVersion]: count(message.currentVersion),
      });
    }),
    subscribe<HandoffMessage>(CHANNELS.handoff, manager, (message) => {
      const outcome = typeof message.outcome === 'string' ? message.outcome : 'unknown';
      instruments.handoffDuration.record(count(message.durationMs) / 1000, {
        ...base,
        [ATTRIBUTES.handoffOutcome]: outcome,
      });
    }),
    subscribe<ShutdownMessage>(CHANNELS.shutdown, manager, (message) =>
      recordShutdown(instruments, spans ? tracer : undefined, base, message),
    ),
  );

  let instrumented = true;
  return {
    uninstrument() {
      if (!instrumented) return;
      instrumented = false;
      for (const step of undo.splice(0)) step();
    },
  };
}

function checkOptions(options: InstrumentOptions): void {
  checkOptionKeys(NAME, options, OPTION_KEYS);
  for (const key of ['spans', 'persistSpans', 'gauges'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean')
      throw invalidOptions(NAME, `${key} must be a boolean, got ${typeof options[key]}.`);
  }
  for (const key of ['meterProvider', 'tracerProvider'] as const) {
    const provider = options[key];
    const method = key === 'meterProvider' ? 'getMeter' : 'getTracer';
    if (
      provider !== undefined &&
      typeof (provider as unknown as Record<string, unknown>)[method] !== 'function'
    )
      throw invalidOptions(
        NAME,
        `${key} must be an OpenTelemetry ${key.replace('P', ' p')} (no ${method}()).`,
      );
  }
  const { attributes } = options;
  if (attributes !== undefined && (typeof attributes !== 'object' || Array.isArray(attributes)))
    throw invalidOptions(NAME, 'attributes must be an object of attribute values.');
}

interface TraceHandlers<M> {
  manager: object;
  /** Where the operation is kept while its call runs (bound to the channel's start), when spans nest in it. */
  current: AsyncLocalStorage<Operation | undefined> | undefined;
  start(message: M): Span | undefined;
  finish(message: M, operation: Operation): void;
}

/**
 * Subscribes to a tracing channel, for the calls of one manager: an operation begins at `start` (or earlier,
 * when the store bound to `start` asks for it) and finishes once, when the promise settles (`asyncEnd`) or
 * when the call threw before returning one (`end` with an error). Returns the unsubscribe.
 */
function traceChannel<M extends Traced>(name: string, handlers: TraceHandlers<M>): () => void {
  const channel = diagnostics.tracingChannel<Operation | undefined, M>(name);
  const operations = new WeakMap<object, Operation>();
  const begin = (message: M): Operation | undefined => {
    if (message?.manager !== handlers.manager) return undefined;
    let operation = operations.get(message);
    if (operation === undefined) {
      operation = { started: performance.now(), span: undefined, ended: false };
      operations.set(message, operation);
      operation.span = handlers.start(message);
    }
    return operation;
  };
  const finish = (message: M): void => {
    const operation = operations.get(message);
    if (operation === undefined || operation.ended) return;
    operation.ended = true;
    operations.delete(message);
    handlers.finish(message, operation);
  };
  const subscribers = {
    start: guarded(name, (message: M) => void begin(message)),
    end: guarded(name, (message: M) => {
      if (message?.error !== undefined) finish(message);
    }),
    asyncStart: ignore,
    asyncEnd: guarded(name, finish),
    error: ignore,
  };
  const store = handlers.current;
  if (store !== undefined) {
    // Makes the operation current while its call runs, so that the spans it leads to nest under its span.
    channel.start.bindStore(store, (message) => {
      try {
        return begin(message);
      } catch (error) {
        diag.error(`${SCOPE}: ${name} start`, error);
        return undefined;
      }
    });
  }
  channel.subscribe(subscribers);
  return () => {
    channel.unsubscribe(subscribers);
    if (store !== undefined) channel.start.unbindStore(store);
  };
}

function ignore(): void {}

/** Subscribes to a plain channel, for the messages of one manager. Returns the unsubscribe. */
function subscribe<M extends { manager: object }>(
  name: string,
  manager: object,
  handle: (message: M) => void,
): () => void {
  const listener = guarded(name, (message: unknown) => {
    if ((message as M | undefined)?.manager === manager) handle(message as M);
  });
  diagnostics.subscribe(name, listener);
  return () => diagnostics.unsubscribe(name, listener);
}

/**
 * A subscriber that never throws: an exception in a diagnostics channel subscriber would be rethrown as an
 * uncaught exception, so a telemetry bug would crash the game server. It is reported through `diag` instead.
 */
function guarded<A>(name: string, handle: (argument: A) => void): (argument: A) => void {
  return (argument) => {
    try {
      handle(argument);
    } catch (error) {
      diag.error(`${SCOPE}: handling ${name}`, error);
    }
  };
}

function finishFlush(instruments: Instruments, base: Attributes, message: TracedFlush, operation: Operation) {
  const { error } = message;
  instruments.flushDuration.record(elapsed(operation), {
    ...base,
    ...reasonOf(message),
    ...(error === undefined ? {} : { [ATTRIBUTES.errorType]: errorTypeOf(error) }),
  });
  const { span } = operation;
  if (span === undefined) return;
  const unsaved = count(message.unsaved);
  span.setAttribute(ATTRIBUTES.flushUnsaved, unsaved);
  if (error === undefined && unsaved > 0)
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${unsaved} users not saved by this flush` });
  endSpan(span, error);
}

function finishBatch(instruments: Instruments, base: Attributes, message: TracedBatch, operation: Operation) {
  const { error } = message;
  const size = count(message.size);
  const attributes = { ...base, ...adapterOf(message) };
  instruments.batchDuration.record(
    elapsed(operation),
    error === undefined ? attributes : { ...attributes, [ATTRIBUTES.errorType]: errorTypeOf(error) },
  );
  instruments.batchSize.record(size, attributes);
  // A call that threw returned no outcomes: every record in it failed.
  const outcomes =
    message.outcomes ?? (error === undefined ? undefined : { ok: 0, conflict: 0, error: size });
  if (outcomes !== undefined) {
    for (const outcome of ['ok', 'conflict', 'error'] as const) {
      instruments.writes.add(count(outcomes[outcome]), { ...attributes, [ATTRIBUTES.outcome]: outcome });
    }
  }
  const { span } = operation;
  if (span === undefined) return;
  if (outcomes !== undefined) {
    span.setAttributes({
      [ATTRIBUTES.ok]: count(outcomes.ok),
      [ATTRIBUTES.conflict]: count(outcomes.conflict),
      [ATTRIBUTES.error]: count(outcomes.error),
    });
    if (error === undefined && count(outcomes.error) > 0)
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${outcomes.error} records not written` });
  }
  endSpan(span, error);
}

function recordShutdown(
  instruments: Instruments,
  tracer: Tracer | undefined,
  base: Attributes,
  message: ShutdownMessage,
): void {
  const durationMs = count(message.durationMs);
  const unsaved = count(message.unsaved);
  const maybeStored = Math.min(count(message.maybeStored), unsaved);
  instruments.shutdownDuration.record(durationMs / 1000, base);
  instruments.shutdownUnsaved.add(unsaved - maybeStored, { ...base, [ATTRIBUTES.maybeStored]: false });
  instruments.shutdownUnsaved.add(maybeStored, { ...base, [ATTRIBUTES.maybeStored]: true });
  if (tracer === undefined) return;
  // Published when the shutdown has finished: the span starts back when it began.
  const span = tracer.startSpan(SPANS.shutdown, {
    kind: SpanKind.INTERNAL,
    startTime: Date.now() - durationMs,
    attributes: {
      ...base,
      [ATTRIBUTES.shutdownUnsaved]: unsaved,
      [ATTRIBUTES.shutdownMaybeStored]: maybeStored,
    },
  });
  if (unsaved > 0) span.setStatus({ code: SpanStatusCode.ERROR, message: `${unsaved} users not saved` });
  span.end();
}

function endSpan(span: Span | undefined, error: unknown): void {
  if (span === undefined) return;
  if (error !== undefined) {
    span.setAttribute(ATTRIBUTES.errorType, errorTypeOf(error));
    if (error instanceof Error) span.recordException(error);
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  }
  span.end();
}

function elapsed(operation: Operation): number {
  return (performance.now() - operation.started) / 1000;
}

function reasonOf(message: TracedFlush): Attributes {
  const { reason } = message;
  return reason === 'explicit' || reason === 'interval' ? { [ATTRIBUTES.reason]: reason } : {};
}

function adapterOf(message: TracedBatch): Attributes {
  const adapter = typeof message.adapter === 'string' ? message.adapter : 'unknown';
  const system = dbSystemOf(adapter);
  return system === undefined
    ? { [ATTRIBUTES.adapter]: adapter }
    : { [ATTRIBUTES.adapter]: adapter, [ATTRIBUTES.dbSystem]: system, [ATTRIBUTES.dbSystemName]: system };
}

function userOf(message: { userId: unknown }): Attributes {
  const { userId } = message;
  return typeof userId === 'string' || typeof userId === 'number'
    ? { [ATTRIBUTES.userId]: String(userId) }
    : {};
}
