/** What core publishes on node:diagnostics_channel for instrumentation. */
import diagnostics from 'node:diagnostics_channel';
import { FaultyAdapter, MemoryAdapter, MemoryStore } from '@cagey-sessions/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { CHANNELS, SessionManager } from '../src/index.js';

const unsubscribe: (() => void)[] = [];
afterEach(() => {
  for (const off of unsubscribe.splice(0)) off();
});

/** Collects every message of a plain channel, or the start and asyncEnd messages of a tracing channel. */
function collect(name: string, kind: 'plain' | 'tracing'): unknown[] {
  const seen: unknown[] = [];
  if (kind === 'plain') {
    const listener = (message: unknown) => seen.push(message);
    diagnostics.subscribe(name, listener);
    unsubscribe.push(() => diagnostics.unsubscribe(name, listener));
  } else {
    const handlers = {
      start: (message: unknown) => seen.push({ ...(message as object), phase: 'start' }),
      asyncEnd: (message: unknown) => seen.push({ ...(message as object), phase: 'end' }),
    };
    const channel = diagnostics.tracingChannel(name);
    channel.subscribe(handlers as never);
    unsubscribe.push(() => channel.unsubscribe(handlers as never));
  }
  return seen;
}

describe('diagnostics channels', () => {
  it('trace flushes, adapter batches and persistNow, naming the manager, with sizes and outcomes', async () => {
    const flushes = collect(CHANNELS.flush, 'tracing');
    const batches = collect(CHANNELS.batch, 'tracing');
    const persists = collect(CHANNELS.persist, 'tracing');
    const manager = new SessionManager({ adapter: new MemoryAdapter() });
    const other = new SessionManager({ adapter: new MemoryAdapter() });
    const session = await manager.create();
    await session.identify('c1', { defaults: { gold: 0 } });
    await session.persistNow();
    await manager.persistAllUserData();
    expect(persists).toEqual([
      { manager, userId: 'c1', phase: 'start' },
      expect.objectContaining({ manager, userId: 'c1', phase: 'end' }),
    ]);
    expect(batches).toEqual([
      { manager, adapter: 'memory', size: 1, phase: 'start' },
      expect.objectContaining({
        manager,
        adapter: 'memory',
        size: 1,
        outcomes: { ok: 1, conflict: 0, error: 0 },
      }),
    ]);
    expect(flushes).toEqual([
      { manager, reason: 'explicit', phase: 'start' },
      expect.objectContaining({ manager, reason: 'explicit', unsaved: 0, phase: 'end' }),
    ]);
    expect(flushes.some((message) => (message as { manager: unknown }).manager === other)).toBe(false);
    await Promise.all([manager.destroy(false), other.destroy(false)]);
  });

  it('publish retries, conflicts and the shutdown result', async () => {
    const retries = collect(CHANNELS.retry, 'plain');
    const conflicts = collect(CHANNELS.conflict, 'plain');
    const shutdowns = collect(CHANNELS.shutdown, 'plain');
    const store = new MemoryStore();
    const faulty = new FaultyAdapter(new MemoryAdapter({ store }));
    const a = new SessionManager({
      adapter: faulty,
      userData: { persistence: { retry: { initialDelay: 5, maxDelay: 10 }, shutdownTimeout: 200 } },
    });
    const b = new SessionManager({ adapter: new MemoryAdapter({ store }) });
    const onA = await a.create();
    await onA.identify('c2', { defaults: { gold: 0 } });
    faulty.failNext(1);
    await expect(onA.persistNow()).rejects.toMatchObject({ code: 'PERSIST_FAILED' });
    expect(retries).toEqual([
      expect.objectContaining({ manager: a, userId: 'c2', failures: 1, delayMs: expect.any(Number) }),
    ]);
    await expect(onA.persistNow()).resolves.toBeUndefined();
    const onB = await b.create();
    (await onB.identify('c2')).gold = 5;
    await onB.persistNow();
    (onA.userData as { gold: number }).gold = 1;
    await expect(onA.persistNow()).rejects.toMatchObject({ code: 'VERSION_CONFLICT' });
    expect(conflicts).toEqual([{ manager: a, userId: 'c2', expectedVersion: 1, currentVersion: 2 }]);
    await expect(a.destroy(true)).rejects.toMatchObject({ code: 'SHUTDOWN_INCOMPLETE' });
    expect(shutdowns).toEqual([
      expect.objectContaining({ manager: a, unsaved: 1, maybeStored: 0, durationMs: expect.any(Number) }),
    ]);
    await b.destroy(false);
  });
});
