import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type PersistenceAdapter,
  type SaveRecord,
  SessionManager,
  type SessionManagerOptions,
  type UserId,
} from '@cagey-sessions/core';
import { instrument } from '@cagey-sessions/opentelemetry';
import {
  FaultyAdapter,
  MemoryAdapter,
  MemoryPresence,
  MemoryStore,
  PresenceHub,
} from '@cagey-sessions/testing';
import {
  type Context,
  type ContextManager,
  context,
  ROOT_CONTEXT,
  SpanStatusCode,
  type TracerProvider,
} from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { attribute, type Telemetry, telemetry } from './telemetry.js';

interface Player {
  gold: number;
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function setup(): Telemetry {
  const sdk = telemetry();
  cleanup.push(() => sdk.shutdown());
  return sdk;
}

function managerOf(adapter: PersistenceAdapter, persistence: SessionManagerOptions['userData'] = {}) {
  const manager = new SessionManager<Player>({ adapter, userData: persistence });
  cleanup.push(() => manager.destroy(false).catch(() => {}));
  return manager;
}

function instrumented(manager: SessionManager<Player>, sdk: Telemetry, options = {}) {
  const handle = instrument(manager, {
    meterProvider: sdk.meterProvider,
    tracerProvider: sdk.tracerProvider,
    ...options,
  });
  cleanup.push(() => handle.uninstrument());
  return handle;
}

async function play(manager: SessionManager<Player>, userId: UserId, gold = 1) {
  const session = await manager.create();
  const player = await session.identify(userId, { defaults: { gold: 0 } });
  player.gold += gold;
  return session;
}

/** An adapter over a MemoryAdapter that calls itself `name`, as the database adapters name themselves. */
class NamedAdapter implements PersistenceAdapter {
  readonly inner = new MemoryAdapter();
  constructor(readonly name: string) {}
  load(userId: UserId) {
    return this.inner.load(userId);
  }
  save(records: readonly SaveRecord[]) {
    return this.inner.save(records);
  }
  delete(userId: UserId, expectedVersion?: number) {
    return this.inner.delete(userId, expectedVersion);
  }
  close() {
    return this.inner.close();
  }
}

/** The context manager the Node SDK registers, in short: the active context follows async calls. */
class AsyncContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    active: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(active, () => fn.apply(thisArg, args));
  }
  bind<T>(_context: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#storage.disable();
    return this;
  }
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

describe('metrics', () => {
  it('times handoffs between nodes (presence) by outcome', async () => {
    const sdk = setup();
    const store = new MemoryStore();
    const hub = new PresenceHub();
    const node = (nodeId: string) => {
      const manager = new SessionManager<Player>({
        adapter: new MemoryAdapter({ store }),
        presence: new MemoryPresence({ hub }),
        nodeId,
      });
      cleanup.push(() => manager.destroy(false).catch(() => {}));
      return manager;
    };
    const a = node('a');
    const b = node('b');
    instrumented(b, sdk);
    await play(a, 'ann');
    await play(a, 'bob');
    await play(b, 'ann');
    await play(b, 'bob');
    await play(b, 'cat'); // held by nobody: no handoff

    const metrics = await sdk.metrics();
    const released = metrics.histogram('cagey_sessions.handoff.duration', {
      'cagey_sessions.handoff.outcome': 'released',
    });
    expect(released.count).toBe(2);
    expect(released.sum).toBeGreaterThan(0);
    expect(released.sum).toBeLessThan(5); // seconds
    expect(metrics.metric('cagey_sessions.handoff.duration')!.descriptor.unit).toBe('s');
  });

  it("reports the manager's state from stats() at every collection", async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter());
    instrumented(manager, sdk);
    await play(manager, 'ann');
    await play(manager, 'bob');
    await manager.create(); // not identified

    let metrics = await sdk.metrics();
    expect(metrics.sum('cagey_sessions.active_sessions')).toBe(3);
    expect(metrics.sum('cagey_sessions.identified_sessions')).toBe(2);
    expect(metrics.sum('cagey_sessions.dirty_users')).toBe(2);
    for (const name of ['in_flight_users', 'queued_users', 'retrying_users', 'orphaned_users'])
      expect(metrics.sum(`cagey_sessions.${name}`), name).toBe(0);
    const descriptor = metrics.metric('cagey_sessions.active_sessions')!.descriptor;
    expect(descriptor.unit).toBe('{session}');
    expect(metrics.metric('cagey_sessions.dirty_users')!.descriptor.unit).toBe('{user}');

    await manager.persistAllUserData();
    metrics = await sdk.metrics();
    expect(metrics.sum('cagey_sessions.dirty_users')).toBe(0);
  });

  it('counts records written by outcome, and times flushes and adapter batches in seconds', async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter());
    instrumented(manager, sdk);
    for (const userId of ['ann', 'bob', 'cat']) await play(manager, userId);
    await manager.persistAllUserData();

    const metrics = await sdk.metrics();
    const memory = { 'cagey_sessions.adapter.name': 'memory' };
    expect(metrics.sum('cagey_sessions.writes', { ...memory, 'cagey_sessions.write.outcome': 'ok' })).toBe(3);
    expect(metrics.sum('cagey_sessions.writes', { 'cagey_sessions.write.outcome': 'conflict' })).toBe(0);
    expect(metrics.sum('cagey_sessions.writes', { 'cagey_sessions.write.outcome': 'error' })).toBe(0);
    expect(metrics.metric('cagey_sessions.writes')!.descriptor.unit).toBe('{write}');
    // The memory adapter is no database: no db.system.
    for (const attributes of metrics.series('cagey_sessions.writes')) {
      expect(attributes).not.toHaveProperty('db.system');
      expect(attributes).not.toHaveProperty('db.system.name');
    }

    const flushes = metrics.histogram('cagey_sessions.flush.duration', {
      'cagey_sessions.flush.reason': 'explicit',
    });
    expect(flushes.count).toBe(1);
    expect(flushes.sum).toBeGreaterThan(0);
    expect(flushes.sum).toBeLessThan(5); // seconds, not milliseconds
    expect(metrics.metric('cagey_sessions.flush.duration')!.descriptor.unit).toBe('s');
    const batches = metrics.histogram('cagey_sessions.batch.duration', memory);
    expect(batches.count).toBeGreaterThanOrEqual(1);
    expect(metrics.metric('cagey_sessions.batch.duration')!.descriptor.unit).toBe('s');
    const sizes = metrics.histogram('cagey_sessions.batch.size', memory);
    expect(sizes).toMatchObject({ count: batches.count, sum: 3 });
    expect(metrics.metric('cagey_sessions.batch.size')!.descriptor.unit).toBe('{record}');
    // No persistNow() was called.
    expect(metrics.histogram('cagey_sessions.persist.duration').count).toBe(0);
  });

  it('counts failed writes as errors and retries, and times persistNow() with its error type', async () => {
    const sdk = setup();
    const faulty = new FaultyAdapter(new MemoryAdapter());
    const manager = managerOf(faulty, { persistence: { retry: { initialDelay: '1h' } } });
    instrumented(manager, sdk);
    const session = await play(manager, 'ann');
    faulty.failNext(1);
    await expect(session.persistNow()).rejects.toMatchObject({ code: 'PERSIST_FAILED' });

    let metrics = await sdk.metrics();
    const adapter = { 'cagey_sessions.adapter.name': 'faulty(memory)' };
    expect(
      metrics.sum('cagey_sessions.writes', { ...adapter, 'cagey_sessions.write.outcome': 'error' }),
    ).toBe(1);
    expect(metrics.sum('cagey_sessions.writes', { 'cagey_sessions.write.outcome': 'ok' })).toBe(0);
    expect(metrics.sum('cagey_sessions.retries')).toBe(1);
    expect(metrics.series('cagey_sessions.retries')).toEqual([{ 'error.type': 'ADAPTER_ERROR' }]);
    expect(metrics.sum('cagey_sessions.retrying_users')).toBe(1);
    // PERSIST_FAILED wraps the store's error: error.type names the store's.
    expect(
      metrics.histogram('cagey_sessions.persist.duration', { 'error.type': 'ADAPTER_ERROR' }).count,
    ).toBe(1);

    await session.persistNow();
    metrics = await sdk.metrics();
    expect(metrics.sum('cagey_sessions.writes', { 'cagey_sessions.write.outcome': 'ok' })).toBe(1);
    expect(metrics.sum('cagey_sessions.retries')).toBe(1);
    expect(metrics.sum('cagey_sessions.retrying_users')).toBe(0);
    const persists = metrics.histogram('cagey_sessions.persist.duration');
    expect(persists.count).toBe(2);
    expect(metrics.series('cagey_sessions.persist.duration')).toContainEqual({});
  });

  it('counts conflicts: two managers over one store, the stale one refused', async () => {
    const sdk = setup();
    const store = new MemoryStore();
    const stale = managerOf(new MemoryAdapter({ store }));
    const fresh = managerOf(new MemoryAdapter({ store }));
    instrumented(stale, sdk);
    const onStale = await play(stale, 'ann');
    await onStale.persistNow();
    const onFresh = await play(fresh, 'ann', 5);
    await onFresh.persistNow();
    onStale.userData!.gold += 1;
    await expect(onStale.persistNow()).rejects.toMatchObject({ code: 'VERSION_CONFLICT' });

    const metrics = await sdk.metrics();
    expect(metrics.sum('cagey_sessions.conflicts')).toBe(1);
    expect(metrics.sum('cagey_sessions.writes', { 'cagey_sessions.write.outcome': 'conflict' })).toBe(1);
    // The fresh manager's write is not this instrumentation's.
    expect(metrics.sum('cagey_sessions.writes', { 'cagey_sessions.write.outcome': 'ok' })).toBe(1);
  });

  it('counts the users a shutdown could not save, by whether they may be stored', async () => {
    const sdk = setup();
    // A refused connection: the write certainly did not reach the store.
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const faulty = new FaultyAdapter(new MemoryAdapter()).failRate(1, { error: refused });
    const manager = managerOf(faulty, {
      persistence: { retry: { initialDelay: 5, maxDelay: 10 }, shutdownTimeout: 100 },
    });
    instrumented(manager, sdk);
    await play(manager, 'ann');
    await expect(manager.destroy(true)).rejects.toMatchObject({ code: 'SHUTDOWN_INCOMPLETE' });

    const metrics = await sdk.metrics();
    expect(
      metrics.sum('cagey_sessions.shutdown.unsaved_users', { 'cagey_sessions.maybe_stored': false }),
    ).toBe(1);
    expect(
      metrics.sum('cagey_sessions.shutdown.unsaved_users', { 'cagey_sessions.maybe_stored': true }),
    ).toBe(0);
    const shutdowns = metrics.histogram('cagey_sessions.shutdown.duration');
    expect(shutdowns.count).toBe(1);
    expect(shutdowns.sum).toBeGreaterThanOrEqual(0.05);
    expect(shutdowns.sum).toBeLessThan(5);
    expect(metrics.sum('cagey_sessions.retries', { 'error.type': 'ECONNREFUSED' })).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ['postgres', 'postgresql'],
    ['redis', 'redis'],
    ['mongo', 'mongodb'],
    ['memory', undefined],
    ['sqlite', undefined],
  ])('maps the %s adapter to db.system %s, also through a FaultyAdapter', async (name, system) => {
    const sdk = setup();
    const manager = managerOf(new FaultyAdapter(new NamedAdapter(name)));
    instrumented(manager, sdk);
    await play(manager, 'ann');
    await manager.persistAllUserData();

    const [attributes] = (await sdk.metrics()).series('cagey_sessions.batch.duration');
    expect(attributes?.['cagey_sessions.adapter.name']).toBe(`faulty(${name})`);
    expect(attributes?.['db.system']).toBe(system);
    expect(attributes?.['db.system.name']).toBe(system);
    const [span] = sdk.spans('cagey_sessions.batch');
    expect(attribute(span!, 'db.system')).toBe(system);
  });
});

describe('spans', () => {
  it('traces a flush, with its adapter batches as children', async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter());
    instrumented(manager, sdk);
    for (const userId of ['ann', 'bob']) await play(manager, userId);
    await manager.persistAllUserData();

    const [flush, ...moreFlushes] = sdk.spans('cagey_sessions.flush');
    expect(moreFlushes).toEqual([]);
    expect(flush!.attributes).toEqual({
      'cagey_sessions.flush.reason': 'explicit',
      'cagey_sessions.flush.unsaved_users': 0,
    });
    expect(flush!.status.code).toBe(SpanStatusCode.UNSET);
    expect(flush!.instrumentationScope.name).toBe('@cagey-sessions/opentelemetry');

    const batches = sdk.spans('cagey_sessions.batch');
    expect(batches.length).toBeGreaterThanOrEqual(1);
    for (const batch of batches) {
      expect(parentOf(batch)).toBe(flush!.spanContext().spanId);
      expect(batch.spanContext().traceId).toBe(flush!.spanContext().traceId);
      expect(batch.attributes['cagey_sessions.adapter.name']).toBe('memory');
    }
    expect(batches.reduce((n, batch) => n + Number(batch.attributes['cagey_sessions.batch.size']), 0)).toBe(
      2,
    );
    expect(batches.reduce((n, batch) => n + Number(batch.attributes['cagey_sessions.batch.ok']), 0)).toBe(2);
    // persistNow() spans are opt-in.
    expect(sdk.spans('cagey_sessions.persist')).toEqual([]);
  });

  it("makes a flush called inside the application's active span a child of it", async () => {
    const sdk = setup();
    context.setGlobalContextManager(new AsyncContextManager());
    cleanup.push(() => void context.disable());
    const manager = managerOf(new MemoryAdapter());
    instrumented(manager, sdk);
    await play(manager, 'ann');
    const game = sdk.tracerProvider.getTracer('game');
    await game.startActiveSpan('match end', async (span) => {
      await manager.persistAllUserData();
      span.end();
    });

    const [matchEnd] = sdk.spans('match end');
    const [flush] = sdk.spans('cagey_sessions.flush');
    const [batch] = sdk.spans('cagey_sessions.batch');
    expect(parentOf(flush!)).toBe(matchEnd!.spanContext().spanId);
    expect(parentOf(batch!)).toBe(flush!.spanContext().spanId);
    expect(new Set([matchEnd, flush, batch].map((span) => span!.spanContext().traceId)).size).toBe(1);
  });

  it('traces interval flushes as such', async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter(), { persistence: { interval: 10 } });
    instrumented(manager, sdk);
    await play(manager, 'ann');
    await vi.waitFor(() => expect(sdk.spans('cagey_sessions.batch')).toHaveLength(1));
    await vi.waitFor(() => {
      const flushes = sdk.spans('cagey_sessions.flush');
      expect(flushes.length).toBeGreaterThanOrEqual(1);
      expect(flushes[0]!.attributes['cagey_sessions.flush.reason']).toBe('interval');
    });
  });

  it('traces persistNow() when asked, a failed one with its error, retry event and failed batch', async () => {
    const sdk = setup();
    const faulty = new FaultyAdapter(new MemoryAdapter());
    const manager = managerOf(faulty, { persistence: { retry: { initialDelay: '1h' } } });
    instrumented(manager, sdk, { persistSpans: true });
    const session = await play(manager, 42);
    faulty.failNext(1);
    await expect(session.persistNow()).rejects.toMatchObject({ code: 'PERSIST_FAILED' });

    const [persist] = sdk.spans('cagey_sessions.persist');
    expect(persist!.attributes).toMatchObject({ 'user.id': '42', 'error.type': 'ADAPTER_ERROR' });
    expect(persist!.status.code).toBe(SpanStatusCode.ERROR);
    expect(persist!.events.map((event) => event.name)).toContain('exception');
    const retry = persist!.events.find((event) => event.name === 'cagey_sessions.retry');
    expect(retry?.attributes).toMatchObject({
      'user.id': '42',
      'cagey_sessions.retry.failures': 1,
      'error.type': 'ADAPTER_ERROR',
    });
    // In seconds: '1h' capped by the default maxDelay of 30 s, with jitter.
    expect(retry?.attributes?.['cagey_sessions.retry.delay']).toBeGreaterThan(1);
    expect(retry?.attributes?.['cagey_sessions.retry.delay']).toBeLessThanOrEqual(30);

    const [batch] = sdk.spans('cagey_sessions.batch');
    expect(parentOf(batch!)).toBe(persist!.spanContext().spanId);
    expect(batch!.attributes).toMatchObject({
      'cagey_sessions.batch.error': 1,
      'cagey_sessions.batch.ok': 0,
    });
    expect(batch!.status.code).toBe(SpanStatusCode.ERROR);

    await session.persistNow();
    const [, second] = sdk.spans('cagey_sessions.persist');
    expect(second!.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('adds a conflict event to the span the conflict happened in', async () => {
    const sdk = setup();
    const store = new MemoryStore();
    const stale = managerOf(new MemoryAdapter({ store }));
    const fresh = managerOf(new MemoryAdapter({ store }));
    instrumented(stale, sdk, { persistSpans: true });
    const onStale = await play(stale, 'ann');
    await onStale.persistNow();
    await (await play(fresh, 'ann', 5)).persistNow();
    onStale.userData!.gold += 1;
    await expect(onStale.persistNow()).rejects.toMatchObject({ code: 'VERSION_CONFLICT' });

    const persists = sdk.spans('cagey_sessions.persist');
    expect(persists).toHaveLength(2);
    const conflict = persists[1]!.events.find((event) => event.name === 'cagey_sessions.conflict');
    expect(conflict?.attributes).toEqual({
      'user.id': 'ann',
      'cagey_sessions.conflict.expected_version': 1,
      'cagey_sessions.conflict.current_version': 2,
    });
    expect(persists[1]!.attributes['error.type']).toBe('VERSION_CONFLICT');
  });

  it('traces a shutdown that left users unsaved as an error, from when it began', async () => {
    const sdk = setup();
    const faulty = new FaultyAdapter(new MemoryAdapter()).failRate(1);
    const manager = managerOf(faulty, {
      persistence: { retry: { initialDelay: 5, maxDelay: 10 }, shutdownTimeout: 100 },
    });
    instrumented(manager, sdk);
    await play(manager, 'ann');
    const before = Date.now();
    await expect(manager.destroy(true)).rejects.toMatchObject({ code: 'SHUTDOWN_INCOMPLETE' });

    const [shutdown] = sdk.spans('cagey_sessions.shutdown');
    // The failed writes may have reached the store (an adapter error can hide a commit).
    expect(shutdown!.attributes).toEqual({
      'cagey_sessions.shutdown.unsaved_users': 1,
      'cagey_sessions.shutdown.maybe_stored_users': 1,
    });
    expect(shutdown!.status.code).toBe(SpanStatusCode.ERROR);
    const [seconds, nanos] = shutdown!.startTime;
    expect(seconds * 1000 + nanos / 1e6).toBeGreaterThanOrEqual(before - 50);
    const [durationSeconds, durationNanos] = shutdown!.duration;
    expect(durationSeconds + durationNanos / 1e9).toBeGreaterThanOrEqual(0.05);
  });

  it('makes no spans with spans: false, and still records the metrics', async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter());
    instrumented(manager, sdk, { spans: false, persistSpans: true });
    const session = await play(manager, 'ann');
    await session.persistNow();
    await manager.persistAllUserData();
    await manager.destroy(true);

    expect(sdk.spans()).toEqual([]);
    const metrics = await sdk.metrics();
    expect(metrics.sum('cagey_sessions.writes')).toBe(1);
    expect(metrics.histogram('cagey_sessions.persist.duration').count).toBe(1);
  });
});

describe('one instrumentation per manager', () => {
  it('counts only the events of its own manager', async () => {
    const [sdkA, sdkB] = [setup(), setup()];
    const a = managerOf(new MemoryAdapter());
    const b = managerOf(new MemoryAdapter());
    instrumented(a, sdkA);
    instrumented(b, sdkB);
    await play(a, 'ann');
    await play(a, 'bob');
    await play(b, 'cat');
    await Promise.all([a.persistAllUserData(), b.persistAllUserData()]);

    const [metricsA, metricsB] = await Promise.all([sdkA.metrics(), sdkB.metrics()]);
    expect(metricsA.sum('cagey_sessions.writes')).toBe(2);
    expect(metricsB.sum('cagey_sessions.writes')).toBe(1);
    expect(metricsA.sum('cagey_sessions.active_sessions')).toBe(2);
    expect(metricsB.sum('cagey_sessions.active_sessions')).toBe(1);
    expect(metricsA.histogram('cagey_sessions.flush.duration').count).toBe(1);
    expect(metricsB.histogram('cagey_sessions.flush.duration').count).toBe(1);
    expect(sdkA.spans('cagey_sessions.flush')).toHaveLength(1);
    expect(sdkB.spans('cagey_sessions.flush')).toHaveLength(1);
  });

  it('keeps managers apart on one meter provider by their attributes, and sums those that share them', async () => {
    const sdk = setup();
    const [lobby, arena, arena2] = [0, 1, 2].map(() => managerOf(new MemoryAdapter()));
    instrumented(lobby!, sdk, { attributes: { 'cagey_sessions.manager': 'lobby' } });
    instrumented(arena!, sdk, { attributes: { 'cagey_sessions.manager': 'arena' } });
    instrumented(arena2!, sdk, { attributes: { 'cagey_sessions.manager': 'arena' } });
    await play(lobby!, 'ann');
    await play(arena!, 'bob');
    await play(arena!, 'cat');
    await play(arena2!, 'dan');
    await lobby!.persistAllUserData();

    const metrics = await sdk.metrics();
    const isLobby = { 'cagey_sessions.manager': 'lobby' };
    const isArena = { 'cagey_sessions.manager': 'arena' };
    expect(metrics.sum('cagey_sessions.active_sessions', isLobby)).toBe(1);
    expect(metrics.sum('cagey_sessions.active_sessions', isArena)).toBe(3);
    expect(metrics.series('cagey_sessions.active_sessions')).toHaveLength(2);
    expect(metrics.sum('cagey_sessions.writes', isLobby)).toBe(1);
    expect(metrics.sum('cagey_sessions.writes', isArena)).toBe(0);
    expect(sdk.spans('cagey_sessions.flush')[0]!.attributes).toMatchObject(isLobby);
  });

  it('stops everything on uninstrument(), and a second call does nothing', async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter());
    const stats = vi.spyOn(manager, 'stats');
    const handle = instrument(manager, {
      meterProvider: sdk.meterProvider,
      tracerProvider: sdk.tracerProvider,
    });
    await play(manager, 'ann');
    await manager.persistAllUserData();
    await sdk.metrics();
    expect(stats).toHaveBeenCalledTimes(1);

    handle.uninstrument();
    handle.uninstrument();
    stats.mockClear();
    await play(manager, 'bob');
    await manager.persistAllUserData();
    const metrics = await sdk.metrics();
    expect(stats).not.toHaveBeenCalled();
    expect(metrics.sum('cagey_sessions.writes')).toBe(1);
    expect(metrics.histogram('cagey_sessions.flush.duration').count).toBe(1);
    expect(sdk.spans('cagey_sessions.flush')).toHaveLength(1);
  });
});

describe('options', () => {
  it('gauges: false never calls stats()', async () => {
    const sdk = setup();
    const manager = managerOf(new MemoryAdapter());
    const stats = vi.spyOn(manager, 'stats');
    instrumented(manager, sdk, { gauges: false });
    await play(manager, 'ann');
    await manager.persistAllUserData();
    const metrics = await sdk.metrics();
    expect(stats).not.toHaveBeenCalled();
    expect(metrics.names.filter((name) => name.endsWith('_sessions') || name.endsWith('_users'))).toEqual([]);
    expect(metrics.sum('cagey_sessions.writes')).toBe(1);
  });

  it('uses the global providers by default', async () => {
    const manager = managerOf(new MemoryAdapter());
    const handle = instrument(manager);
    await play(manager, 'ann');
    await expect(manager.persistAllUserData()).resolves.toBeUndefined();
    handle.uninstrument();
  });

  it('refuses unknown options, naming the nearest, and values of the wrong type', () => {
    const manager = managerOf(new MemoryAdapter());
    expect(() => instrument(manager, { span: false } as never)).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: expect.stringMatching(/Did you mean spans\?/),
      }),
    );
    expect(() => instrument(manager, { spans: 'yes' } as never)).toThrow(/spans must be a boolean/);
    expect(() => instrument(manager, { meterProvider: {} } as never)).toThrow(/meterProvider/);
    expect(() => instrument(manager, { attributes: [] } as never)).toThrow(/attributes/);
    expect(() => instrument({} as never)).toThrow(expect.objectContaining({ code: 'INVALID_OPTIONS' }));
  });
});

describe('robustness', () => {
  it('a tracer that throws never fails the manager, and the metrics are still recorded', async () => {
    const sdk = setup();
    const throwing = {
      getTracer: () => ({
        startSpan() {
          throw new Error('tracer broke');
        },
      }),
    } as unknown as TracerProvider;
    const manager = managerOf(new MemoryAdapter());
    instrumented(manager, sdk, { tracerProvider: throwing, persistSpans: true });
    const session = await play(manager, 'ann');
    await session.persistNow();
    await play(manager, 'bob');
    await expect(manager.persistAllUserData()).resolves.toBeUndefined();
    await expect(manager.destroy(true)).resolves.toBeUndefined();
  });

  it('a stats() that throws leaves the other metrics of the collection alone', async () => {
    const sdk = setup();
    const broken = managerOf(new MemoryAdapter());
    const working = managerOf(new MemoryAdapter());
    vi.spyOn(broken, 'stats').mockImplementation(() => {
      throw new Error('stats broke');
    });
    instrumented(broken, sdk, { attributes: { 'cagey_sessions.manager': 'broken' } });
    instrumented(working, sdk, { attributes: { 'cagey_sessions.manager': 'working' } });
    await play(working, 'ann');
    const metrics = await sdk.metrics();
    expect(metrics.series('cagey_sessions.active_sessions')).toEqual([
      { 'cagey_sessions.manager': 'working' },
    ]);
  });
});
