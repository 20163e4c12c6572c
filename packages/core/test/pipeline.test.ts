/**
 * The persistence pipeline: dirty tracking, single flight, batching, group commit, interval, retries,
 * conflicts, destroy and shutdown, driven through the public API with fault injection.
 */
import { FaultyAdapter, MemoryAdapter, MemoryStore } from '@cagey-sessions/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConflictError,
  type PersistenceAdapter,
  PersistenceError,
  type PersistenceOptions,
  type Session,
  SessionManager,
} from '../src/index.js';

type Player = { gold: number; items: string[]; nested?: { deep: { value: unknown } } };

const managers: SessionManager<Player>[] = [];
afterEach(async () => {
  await Promise.allSettled(managers.splice(0).map((m) => m.destroy(false)));
});

function setup(persistence: PersistenceOptions = {}, store = new MemoryStore()) {
  const memory = new MemoryAdapter({ store });
  const faulty = new FaultyAdapter(memory);
  const manager = new SessionManager<Player>({
    adapter: faulty,
    userData: { persistence: { retry: { initialDelay: 5, maxDelay: 20 }, ...persistence } },
  });
  managers.push(manager);
  return { manager, store, memory, faulty };
}

async function player(
  manager: SessionManager<Player>,
  userId: string | number,
  gold = 0,
): Promise<Session<Player>> {
  const session = await manager.create();
  await session.identify(userId, { defaults: { gold, items: [] } });
  return session;
}

function savedIds(faulty: FaultyAdapter): unknown[] {
  return faulty.saves.flatMap((save) => save.userIds);
}

describe('identify', () => {
  it('starts a new player from a copy of the defaults, fenced as an insert', async () => {
    const { manager, store } = setup();
    const defaults = { gold: 5, items: ['stick'] };
    const a = await manager.create();
    await a.identify('new-1', { defaults });
    a.userData!.items.push('sword');
    expect(defaults.items).toEqual(['stick']);
    expect(a.version).toBe(0);
    await a.persistNow();
    expect(store.peek('new-1')).toEqual({ userData: { gold: 5, items: ['stick', 'sword'] }, version: 1 });
    expect(a.version).toBe(1);
  });

  it('loads a stored player with its version and does not write it back unchanged', async () => {
    const { manager, store, faulty } = setup();
    await new MemoryAdapter({ store }).save([{ userId: 9, userData: { gold: 70, items: [] } }]);
    const session = await manager.create();
    const data = await session.identify(9, { defaults: { gold: 0, items: [] } });
    expect(data).toEqual({ gold: 70, items: [] });
    expect(session.version).toBe(1);
    await manager.persistAllUserData();
    expect(faulty.saves).toHaveLength(0);
  });

  it('without an adapter rejects with NO_ADAPTER', async () => {
    const manager = new SessionManager<Player>();
    managers.push(manager);
    const session = await manager.create();
    await expect(session.identify(1)).rejects.toMatchObject({ code: 'NO_ADAPTER' });
    expect(session.userId).toBeUndefined();
  });
});

describe('dirty tracking', () => {
  it('detects in-place mutation at any depth and writes nothing while data is unchanged', async () => {
    const { manager, store, faulty } = setup();
    const session = await player(manager, 'p');
    await manager.persistAllUserData();
    expect(faulty.saves).toHaveLength(1);
    await manager.persistAllUserData();
    await session.persistNow();
    expect(faulty.saves).toHaveLength(1);
    session.userData!.nested = { deep: { value: [1] } };
    await manager.persistAllUserData();
    (session.userData!.nested!.deep.value as number[]).push(2);
    expect(session.isDirty()).toBe(true);
    await manager.persistAllUserData();
    expect(faulty.saves).toHaveLength(3);
    expect(store.peek('p')?.userData).toEqual({ gold: 0, items: [], nested: { deep: { value: [1, 2] } } });
    expect(session.isDirty()).toBe(false);
  });

  it('a flush with 1% dirty sessions writes exactly the dirty ones', async () => {
    const { manager, faulty } = setup();
    const sessions = await Promise.all(Array.from({ length: 300 }, (_, i) => player(manager, i)));
    await manager.persistAllUserData();
    faulty.saves.length = 0;
    const dirty = [17, 150, 299];
    for (const i of dirty) sessions[i]!.userData!.gold += 1;
    expect(manager.stats().dirty).toBe(3);
    await manager.persistAllUserData();
    expect(savedIds(faulty).sort()).toEqual(dirty.sort());
    expect(manager.stats().dirty).toBe(0);
  });
});

describe('single flight per user', () => {
  it('coalesces requests made during a write into one follow-up of the newest data, in order', async () => {
    const { manager, store, faulty } = setup();
    const session = await player(manager, 'u');
    const hold = faulty.hang();
    session.userData!.gold = 1;
    const first = session.persistNow();
    await faulty.nextCall('save');
    session.userData!.gold = 2;
    const second = session.persistNow();
    session.userData!.gold = 3;
    const third = session.persistNow();
    await new Promise((resolve) => setImmediate(resolve));
    expect(faulty.inFlight).toBe(1);
    faulty.reset();
    hold.release();
    await Promise.all([first, second, third]);
    expect(savedIds(faulty)).toEqual(['u', 'u']);
    // the two writes never overlapped
    const [a, b] = faulty.saves;
    expect(a!.settledAt).toBeLessThanOrEqual(b!.startedAt);
    expect(store.peek('u')).toEqual({ userData: { gold: 3, items: [] }, version: 2 });
  });
});

describe('batching', () => {
  it('writes in batches of bounded size with bounded concurrency', async () => {
    const { manager, store, faulty } = setup({ batchSize: 10, concurrency: 2 });
    faulty.latency(5);
    await Promise.all(Array.from({ length: 95 }, (_, i) => player(manager, i)));
    await manager.persistAllUserData();
    const sizes = faulty.saves.map((save) => save.userIds.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(10);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(95);
    expect(store.size).toBe(95);
    let maxConcurrent = 0;
    for (const save of faulty.saves) {
      const overlapping = faulty.saves.filter(
        (o) => o.startedAt <= save.startedAt && (o.settledAt ?? Infinity) > save.startedAt,
      );
      maxConcurrent = Math.max(maxConcurrent, overlapping.length);
    }
    expect(maxConcurrent).toBeLessThanOrEqual(2);
    expect(maxConcurrent).toBe(2);
  });

  it('writes the least recently persisted sessions first', async () => {
    const { manager, faulty } = setup({ batchSize: 1, concurrency: 1 });
    const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map((id) => player(manager, id)));
    for (const session of [c!, a!, b!]) {
      await session.persistNow();
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    for (const session of [a!, b!, c!, d!]) session.userData!.gold += 1;
    faulty.saves.length = 0;
    await manager.persistAllUserData();
    expect(savedIds(faulty)).toEqual(['d', 'c', 'a', 'b']);
  });

  it('sends the first batch of a large flush before it has serialised the last session', async () => {
    const { manager, store, faulty } = setup({ batchSize: 100 });
    const sessions = await Promise.all(Array.from({ length: 3000 }, (_, i) => player(manager, i)));
    const last = sessions.at(-1)!;
    const firstSave = faulty.nextCall('save').then(() => {
      last.userData!.gold = 999; // seen by this flush only if the scan has not reached the last session yet
    });
    await manager.persistAllUserData();
    await firstSave;
    expect(store.peek(2999)?.userData.gold).toBe(999);
    expect(last.isDirty()).toBe(false);
    expect(faulty.saves.length).toBeGreaterThanOrEqual(30);
  });

  it('groups persistNow calls made together into one batch (group commit)', async () => {
    const { manager, faulty } = setup({ batchSize: 100 });
    const sessions = await Promise.all(Array.from({ length: 50 }, (_, i) => player(manager, i)));
    await Promise.all(sessions.map((session) => session.persistNow()));
    expect(faulty.saves).toHaveLength(1);
    expect(faulty.saves[0]!.userIds).toHaveLength(50);
  });
});

describe('interval', () => {
  it('flushes dirty sessions on the interval', async () => {
    const { manager, store } = setup({ interval: 20 });
    const session = await player(manager, 'i');
    session.userData!.gold = 42;
    await vi.waitFor(() => expect(store.peek('i')?.userData).toEqual({ gold: 42, items: [] }));
  });

  it('never overlaps itself: ticks during a long flush are skipped, not queued', async () => {
    const { manager, faulty, store } = setup({ interval: 10 });
    const session = await player(manager, 'slow');
    const hold = faulty.hang();
    await faulty.nextCall('save');
    await vi.waitFor(() => expect(manager.stats().skippedTicks).toBeGreaterThanOrEqual(3));
    expect(faulty.saves).toHaveLength(1);
    hold.release();
    faulty.reset();
    await vi.waitFor(() => expect(store.peek('slow')).toBeDefined());
    session.userData!.gold = 1;
    await vi.waitFor(() => expect(store.peek('slow')?.userData.gold).toBe(1));
    expect(faulty.saves.length).toBe(2);
  });
});

describe('failures and retries', () => {
  it('a failed write rejects persistNow, is reported, stays dirty and is retried with backoff', async () => {
    const { manager, store, faulty } = setup();
    const errors: Error[] = [];
    manager.on('persistError', (_session, error) => {
      errors.push(error);
    });
    const session = await player(manager, 'r');
    faulty.failNext(3);
    await expect(session.persistNow()).rejects.toBeInstanceOf(PersistenceError);
    expect(session.isDirty()).toBe(true);
    await vi.waitFor(() => expect(store.peek('r')).toBeDefined());
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({ code: 'PERSIST_FAILED' });
    expect(manager.stats()).toMatchObject({ written: 1, failed: 3, retrying: 0, dirty: 0 });
    const gaps = faulty.saves.slice(1).map((save, i) => save.startedAt - faulty.saves[i]!.settledAt!);
    expect(gaps.every((gap) => gap >= 2)).toBe(true);
  });

  it('one bad record fails alone; its neighbours in the batch are saved', async () => {
    const { manager, store, faulty } = setup();
    const sessions = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => player(manager, id)));
    (sessions[1]!.userData as unknown as Record<string, unknown>).bad = 10n;
    // JSON.stringify would silently write null for NaN: it must be refused instead
    sessions[4]!.userData!.nested = { deep: { value: [Number.NaN] } };
    faulty.rejectRecords((record) => record.userId === 'c');
    const failure = await manager.persistAllUserData().then(
      () => undefined,
      (error: PersistenceError) => error,
    );
    expect(failure).toBeInstanceOf(PersistenceError);
    expect(failure!.unsaved.map((u) => u.userId).sort()).toEqual(['b', 'c', 'e']);
    expect(failure!.unsaved.find((u) => u.userId === 'e')!.error).toMatchObject({
      code: 'INVALID_USER_DATA',
      path: 'nested.deep.value[0]',
    });
    expect(store.peek('e')).toBeUndefined();
    expect(failure!.unsaved.find((u) => u.userId === 'b')!.error).toMatchObject({
      code: 'INVALID_USER_DATA',
    });
    expect(store.peek('a')).toBeDefined();
    expect(store.peek('d')).toBeDefined();
    expect(store.peek('b')).toBeUndefined();
  });

  it('an adapter returning the wrong number of results fails the batch with ADAPTER_CONTRACT', async () => {
    const broken: PersistenceAdapter = {
      name: 'broken',
      load: async () => undefined,
      save: async (records) => records.slice(1).map(() => ({ status: 'ok' as const, version: 1 })),
      delete: async () => false,
      close: async () => {},
    };
    const manager = new SessionManager<Player>({ adapter: broken });
    managers.push(manager);
    const session = await player(manager, 'x');
    await expect(session.persistNow()).rejects.toMatchObject({ code: 'ADAPTER_CONTRACT' });
  });

  it('no rejection goes unhandled when automatic writes fail', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const { manager, faulty } = setup({ interval: 5 });
      faulty.failRate(1);
      const session = await player(manager, 'z');
      session.userData!.gold = 1;
      await vi.waitFor(() => expect(manager.stats().failed).toBeGreaterThanOrEqual(3));
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('conflicts', () => {
  it('a stale node does not overwrite newer data: conflict event, no blind retry, reload resumes', async () => {
    const store = new MemoryStore();
    const nodeA = setup({}, store);
    const nodeB = setup({}, store);
    const a = await player(nodeA.manager, 'hero');
    await a.persistNow();
    const b = await player(nodeB.manager, 'hero');
    b.userData!.gold = 500;
    await b.persistNow();

    const conflicts: ConflictError[] = [];
    nodeA.manager.on('conflict', (_session, error) => {
      conflicts.push(error);
    });
    a.userData!.gold = 1;
    const error = await a.persistNow().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ code: 'VERSION_CONFLICT', expectedVersion: 1, currentVersion: 2 });
    expect(conflicts).toHaveLength(1);
    expect(store.peek('hero')).toEqual({ userData: { gold: 500, items: [] }, version: 2 });

    nodeA.faulty.saves.length = 0;
    await expect(nodeA.manager.persistAllUserData()).rejects.toMatchObject({ unsaved: [{ userId: 'hero' }] });
    expect(nodeA.faulty.saves).toHaveLength(0);

    const fresh = await a.reload();
    expect(fresh).toEqual({ gold: 500, items: [] });
    fresh.gold += 1;
    await a.persistNow();
    expect(store.peek('hero')).toEqual({ userData: { gold: 501, items: [] }, version: 3 });
  });
});

describe('destroy and shutdown', () => {
  it('a failed final write is not forgotten: it is reported, kept and retried until stored', async () => {
    const { manager, store, faulty } = setup();
    const session = await player(manager, 'leaver');
    session.userData!.gold = 9;
    faulty.failNext(2);
    const reported: Error[] = [];
    session.on('persistError', (error) => {
      reported.push(error);
    });
    await session.destroy(true);
    expect(reported.length).toBeGreaterThanOrEqual(1);
    expect(manager.stats().sessions).toBe(0);
    await vi.waitFor(() => expect(store.peek('leaver')?.userData.gold).toBe(9));
    await vi.waitFor(() => expect(manager.stats().orphaned).toBe(0));
  });

  it('a returning player takes over unsaved data of their destroyed session instead of stale stored data', async () => {
    const { manager, store, faulty } = setup({ retry: { initialDelay: 60_000, maxDelay: 60_000 } });
    const first = await player(manager, 'back');
    await first.persistNow();
    first.userData!.gold = 77;
    faulty.failNext(1);
    await first.destroy(true);
    expect(store.peek('back')?.userData.gold).toBe(0);
    const second = await manager.create();
    const data = await second.identify('back'); // the store (version 1) has not moved past the held data
    expect(data.gold).toBe(77);
    await second.persistNow();
    expect(store.peek('back')).toEqual({ userData: { gold: 77, items: [] }, version: 2 });
  });

  it('shutdown retries until saved and reports exactly the users it could not save', async () => {
    const { manager, store, faulty } = setup({ shutdownTimeout: 300 });
    const sessions = await Promise.all(['ok1', 'bad', 'ok2', 'flaky'].map((id) => player(manager, id)));
    for (const session of sessions) session.userData!.gold = 3;
    faulty.rejectRecords((record) => record.userId === 'bad');
    faulty.failNext(2);
    const error = (await manager.destroy(true).catch((e: unknown) => e)) as PersistenceError;
    expect(error).toBeInstanceOf(PersistenceError);
    expect(error.code).toBe('SHUTDOWN_INCOMPLETE');
    expect(error.unsaved.map((u) => u.userId)).toEqual(['bad']);
    for (const id of ['ok1', 'ok2', 'flaky']) expect(store.peek(id)?.userData.gold).toBe(3);
  });

  it('shutdown gives up on a hanging store at the deadline and names every unsaved user', async () => {
    const { manager, faulty } = setup({ shutdownTimeout: 150 });
    const sessions = await Promise.all(['h1', 'h2'].map((id) => player(manager, id)));
    for (const session of sessions) session.userData!.gold = 1;
    faulty.hang();
    const started = performance.now();
    const error = (await manager.destroy(true).catch((e: unknown) => e)) as PersistenceError;
    expect(performance.now() - started).toBeLessThan(5000);
    expect(error.code).toBe('SHUTDOWN_INCOMPLETE');
    expect(error.unsaved.map((u) => u.userId).sort()).toEqual(['h1', 'h2']);
    faulty.releaseAll();
  });

  it('shutdown without changes resolves and writes nothing', async () => {
    const { manager, faulty } = setup({ events: ['shutdown'] });
    await player(manager, 'idle');
    await manager.persistAllUserData();
    faulty.saves.length = 0;
    await expect(manager.destroy()).resolves.toBeUndefined();
    expect(faulty.saves).toHaveLength(0);
  });
});

describe('stats', () => {
  it('reports lastFlushMs as null until the first flush has finished, so the field is never missing', async () => {
    const { manager } = setup();
    await player(manager, 'a');
    expect(manager.stats().lastFlushMs).toBeNull();
    expect(JSON.parse(JSON.stringify(manager.stats()))).toHaveProperty('lastFlushMs', null);
    await manager.persistAllUserData();
    expect(manager.stats().lastFlushMs).toEqual(expect.any(Number));
  });

  it('counts sessions, identified users, dirty data, writes, failures and conflicts', async () => {
    const { manager, faulty } = setup();
    await manager.create();
    const a = await player(manager, 'a');
    await player(manager, 'b');
    expect(manager.stats()).toMatchObject({
      sessions: 3,
      identified: 2,
      dirty: 2,
      written: 0,
      failed: 0,
      conflicts: 0,
    });
    faulty.failNext(1);
    await expect(a.persistNow()).rejects.toThrow();
    await manager.persistAllUserData();
    const stats = manager.stats();
    expect(stats).toMatchObject({ dirty: 0, written: 2, failed: 1, inFlight: 0, queued: 0 });
    expect(stats.lastFlushMs).toBeGreaterThanOrEqual(0);
  });
});

describe('faults that must not lose data', () => {
  it('a write that committed but lost its acknowledgement is recognised by its write id, not taken for a conflict', async () => {
    const { manager, store, faulty } = setup();
    const conflicts: unknown[] = [];
    manager.on('conflict', (_session, error) => {
      conflicts.push(error);
    });
    const session = await player(manager, 'acked');
    await session.persistNow();
    session.userData!.gold = 10;
    faulty.failNext(1, { phase: 'after' }); // the store commits gold 10 at version 2; the caller sees an error
    await expect(session.persistNow()).rejects.toMatchObject({
      unsaved: [{ userId: 'acked', maybeStored: true }],
    });
    expect(store.peek('acked')).toEqual({ userData: { gold: 10, items: [] }, version: 2 });
    session.userData!.gold = 11; // the retry is based on version 1 and meets version 2: its own write
    await session.persistNow();
    expect(conflicts).toEqual([]);
    expect(store.peek('acked')).toEqual({ userData: { gold: 11, items: [] }, version: 3 });
    expect(session.version).toBe(3);
    session.userData!.gold = 12;
    await session.persistNow();
    expect(store.peek('acked')?.version).toBe(4);
  });

  it('a retry of unchanged data after a lost acknowledgement resolves without writing again', async () => {
    const { manager, store, faulty } = setup();
    const session = await player(manager, 'same');
    session.userData!.gold = 3;
    faulty.failNext(1, { phase: 'after' });
    await expect(session.persistNow()).rejects.toBeInstanceOf(PersistenceError);
    await session.persistNow();
    expect(store.peek('same')).toEqual({ userData: { gold: 3, items: [] }, version: 1 });
    expect(session.version).toBe(1);
    expect(session.isDirty()).toBe(false);
  });

  it("another node's write is still a conflict after a lost acknowledgement", async () => {
    const store = new MemoryStore();
    const nodeA = setup({}, store);
    const nodeB = setup({}, store);
    const a = await player(nodeA.manager, 'contested');
    await a.persistNow();
    a.userData!.gold = 1;
    nodeA.faulty.failNext(1, { phase: 'after' });
    await expect(a.persistNow()).rejects.toBeInstanceOf(PersistenceError);
    const b = await player(nodeB.manager, 'contested');
    b.userData!.gold = 99;
    await b.persistNow();
    a.userData!.gold = 2;
    await expect(a.persistNow()).rejects.toBeInstanceOf(ConflictError);
    expect(store.peek('contested')?.userData.gold).toBe(99);
  });

  it('shutdown reports users whose data met a conflict instead of dropping them silently', async () => {
    const store = new MemoryStore();
    const nodeA = setup({ shutdownTimeout: 5_000 }, store);
    const nodeB = setup({}, store);
    const a = await player(nodeA.manager, 'stale');
    await a.persistNow();
    const b = await player(nodeB.manager, 'stale');
    b.userData!.gold = 50;
    await b.persistNow();
    a.userData!.gold = 1;
    await a.destroy(true); // its final write meets the conflict; the data is kept to be reported
    expect(nodeA.manager.stats().orphaned).toBe(1);
    const started = performance.now();
    const error = (await nodeA.manager.destroy(true).catch((e: unknown) => e)) as PersistenceError;
    expect(performance.now() - started).toBeLessThan(2_000); // a conflict cannot be retried away
    expect(error).toMatchObject({
      code: 'SHUTDOWN_INCOMPLETE',
      unsaved: [{ userId: 'stale', maybeStored: false }],
    });
    expect(error.unsaved[0]!.error).toBeInstanceOf(ConflictError);
  });

  it('a returning player whose unsaved data met a conflict gets the stored data, not the stale copy', async () => {
    const store = new MemoryStore();
    const nodeA = setup({}, store);
    const nodeB = setup({}, store);
    const a = await player(nodeA.manager, 'back2');
    await a.persistNow();
    const b = await player(nodeB.manager, 'back2');
    b.userData!.gold = 50;
    await b.persistNow();
    a.userData!.gold = 1;
    await a.destroy(true);
    const again = await nodeA.manager.create();
    expect(await again.identify('back2')).toEqual({ gold: 50, items: [] });
    again.userData!.gold = 51;
    await again.persistNow();
    expect(store.peek('back2')?.userData.gold).toBe(51);
  });

  it.each([
    ['undefined', () => undefined],
    ['an unknown status', () => ({ status: 'done', version: 1 })],
    ['an error result without an error', () => ({ status: 'error' })],
    ['an ok result without a version', () => ({ status: 'ok' })],
  ])(
    'a result of %s for a record is ADAPTER_CONTRACT: not counted written, the user stays unsaved',
    async (_name, make) => {
      const memory = new MemoryAdapter();
      const adapter: PersistenceAdapter = {
        name: 'odd',
        load: (id) => memory.load(id),
        save: async (records) => records.map(make) as never,
        delete: async () => false,
        close: async () => {},
      };
      const manager = new SessionManager<Player>({
        adapter,
        userData: { persistence: { shutdownTimeout: 5_000 } },
      });
      managers.push(manager);
      const persisted = vi.fn();
      manager.on('persisted', persisted);
      const session = await player(manager, 'odd');
      await expect(session.persistNow()).rejects.toMatchObject({ code: 'ADAPTER_CONTRACT' });
      expect(session.isDirty()).toBe(true);
      expect(persisted).not.toHaveBeenCalled();
      expect(manager.stats().written).toBe(0);
      const started = performance.now();
      await expect(manager.destroy(true)).rejects.toMatchObject({ unsaved: [{ userId: 'odd' }] });
      expect(performance.now() - started).toBeLessThan(2_000); // a contract violation is reported at once
    },
  );

  it('an adapter whose save throws synchronously or returns a plain array causes no uncaught exception', async () => {
    const uncaught: unknown[] = [];
    const onError = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onError);
    process.on('unhandledRejection', onError);
    try {
      let mode: 'throw' | 'plain' = 'throw';
      const adapter: PersistenceAdapter = {
        name: 'sync',
        load: async () => undefined,
        save: ((records: readonly unknown[]) => {
          if (mode === 'throw') throw new TypeError('cannot read properties of undefined');
          return records.map(() => ({ status: 'ok', version: 1 }));
        }) as never,
        delete: async () => false,
        close: async () => {},
      };
      const manager = new SessionManager<Player>({ adapter, userData: { persistence: { interval: 5 } } });
      managers.push(manager);
      const session = await player(manager, 's');
      await expect(session.persistNow()).rejects.toMatchObject({ code: 'PERSIST_FAILED' });
      await new Promise((resolve) => setTimeout(resolve, 30)); // interval flushes and retries run too
      mode = 'plain';
      await session.persistNow();
      expect(session.isDirty()).toBe(false);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onError);
      process.off('unhandledRejection', onError);
    }
  });

  it('a store that hangs makes persistNow reject with ADAPTER_TIMEOUT after callTimeout; the write is retried and lands', async () => {
    const { manager, store, faulty } = setup({ callTimeout: 100 });
    const session = await player(manager, 'slow');
    session.userData!.gold = 4;
    const hang = faulty.hang();
    const started = performance.now();
    const error = await session.persistNow().catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(error).toMatchObject({
      code: 'ADAPTER_TIMEOUT',
      unsaved: [{ userId: 'slow', maybeStored: true }],
    });
    expect(manager.stats().failed).toBeGreaterThanOrEqual(1);
    hang.release();
    await vi.waitFor(() => expect(store.peek('slow')?.userData.gold).toBe(4));
    await vi.waitFor(() => expect(session.isDirty()).toBe(false));
  });

  it('a call given up on keeps its place among the concurrent calls for one more callTimeout: a stalled store is not flooded', async () => {
    const { manager, store, faulty } = setup({ callTimeout: 150, concurrency: 1 });
    const [a, b] = await Promise.all([player(manager, 'flood-a'), player(manager, 'flood-b')]);
    a.userData!.gold = 1;
    const hang = faulty.hang();
    await expect(a.persistNow()).rejects.toMatchObject({ code: 'ADAPTER_TIMEOUT' });
    b.userData!.gold = 2;
    const bWritten = b.persistNow().catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 75));
    expect(hang.pending).toBe(1); // b waits: a's call still holds the only place
    await vi.waitFor(() => expect(hang.pending).toBe(2), { timeout: 2_000 }); // ...for one callTimeout at most
    hang.release();
    await bWritten;
    await vi.waitFor(() => expect(store.peek('flood-b')?.userData.gold).toBe(2));
  });

  it('identify() also gives up on a hanging store after callTimeout', async () => {
    const { manager, faulty } = setup({ callTimeout: 100 });
    faulty.hang({ methods: ['load'] });
    const session = await manager.create();
    await expect(session.identify('nobody')).rejects.toMatchObject({ code: 'ADAPTER_TIMEOUT' });
    faulty.releaseAll();
  });

  it('shutdown tells users certainly not stored from those whose write may have landed', async () => {
    const adapter: PersistenceAdapter = {
      name: 'split',
      load: async () => undefined,
      // One user's writes are refused before they leave; the other's hang (they may land later).
      save: (records) =>
        records[0]!.userId === 'refused'
          ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
          : new Promise(() => {}),
      delete: async () => false,
      close: async () => {},
    };
    const manager = new SessionManager<Player>({
      adapter,
      userData: {
        persistence: { shutdownTimeout: 200, batchSize: 1, retry: { initialDelay: 5, maxDelay: 20 } },
      },
    });
    managers.push(manager);
    const [refused, hanging] = await Promise.all([player(manager, 'refused'), player(manager, 'hanging')]);
    refused.userData!.gold = 1;
    hanging.userData!.gold = 1;
    const error = (await manager.destroy(true).catch((e: unknown) => e)) as PersistenceError;
    const byUser = Object.fromEntries(error.unsaved.map((u) => [u.userId, u.maybeStored]));
    expect(byUser).toEqual({ refused: false, hanging: true });
    expect(error.message).toContain('for 1 of them a write may have reached the store');
  });

  it('errors retrying cannot fix end the shutdown wait at once: invalid data, a closed adapter', async () => {
    const { manager, memory } = setup({ shutdownTimeout: 10_000 });
    const [dated, other] = await Promise.all([player(manager, 'dated'), player(manager, 'other')]);
    (dated.userData as unknown as Record<string, unknown>).since = new Date();
    other.userData!.gold = 2;
    await memory.close();
    const started = performance.now();
    const error = (await manager.destroy(true).catch((e: unknown) => e)) as PersistenceError;
    expect(performance.now() - started).toBeLessThan(2_000);
    const codes = Object.fromEntries(
      error.unsaved.map((u) => [
        u.userId,
        (u.error as PersistenceError).code === 'PERSIST_FAILED'
          ? (u.error.cause as PersistenceError).code
          : (u.error as PersistenceError).code,
      ]),
    );
    expect(codes).toEqual({ dated: 'INVALID_USER_DATA', other: 'ADAPTER_CLOSED' });
  });

  it('identify() of the same user again on one session keeps the unsaved changes and the same object', async () => {
    const { manager, store } = setup();
    const session = await manager.create();
    const first = await session.identify('twice', { defaults: { gold: 0, items: [] } });
    first.gold = 99;
    const second = await session.identify('twice', { defaults: { gold: 0, items: [] } });
    expect(second).toBe(first);
    expect(second.gold).toBe(99);
    const racer = await manager.create();
    const [x, y] = await Promise.all([racer.identify('r2'), racer.identify('r2')]);
    expect(x).toBe(y);
    await session.persistNow();
    expect(store.peek('twice')?.userData.gold).toBe(99);
  });

  it("a returning player whose held data another node has overtaken gets the store's newer data", async () => {
    const store = new MemoryStore();
    const nodeA = setup({ retry: { initialDelay: 60_000, maxDelay: 60_000 } }, store);
    const nodeB = setup({}, store);
    const first = await player(nodeA.manager, 'hopper2');
    await first.persistNow();
    first.userData!.gold = 5;
    nodeA.faulty.failNext(1); // A's final write fails: A holds gold 5 at version 1
    await first.destroy(true);
    const onB = await player(nodeB.manager, 'hopper2'); // the player moved to B, which writes version 2
    onB.userData!.gold = 50;
    await onB.persistNow();
    await onB.destroy(true);
    const back = await nodeA.manager.create();
    expect(await back.identify('hopper2')).toEqual({ gold: 50, items: [] });
    expect(back.version).toBe(2);
    expect(nodeA.manager.stats().orphaned).toBe(0);
  });

  it('a reconnect does not wait for the final write of the destroyed session: it takes over its data at once', async () => {
    const { manager, store, faulty } = setup();
    const first = await player(manager, 'hopper');
    await first.persistNow();
    first.userData!.gold = 5;
    const hang = faulty.hang();
    const leaving = first.destroy(true);
    await vi.waitFor(() => expect(hang.pending).toBe(1));
    const second = await manager.create();
    const data = await second.identify('hopper');
    expect(data.gold).toBe(5);
    data.gold = 6;
    hang.release();
    await leaving;
    await second.persistNow();
    expect(store.peek('hopper')).toEqual({ userData: { gold: 6, items: [] }, version: 3 });
  });
});

describe('explicit dirty tracking', () => {
  /** Player data that counts how often it is serialised (JSON.stringify reads its keys). */
  function counted(gold: number): { data: Player; reads: () => number } {
    let reads = 0;
    const data = new Proxy({ gold, items: [] } as Player, {
      ownKeys(target) {
        reads++;
        return Reflect.ownKeys(target);
      },
    });
    return { data, reads: () => reads };
  }

  it('an interval flush serialises only marked users; unmarked changes wait, markDirty() writes them', async () => {
    const { manager, store } = setup({ dirtyTracking: 'explicit', interval: 20 });
    const players: { session: Session<Player>; reads: () => number }[] = [];
    for (let i = 0; i < 50; i++) {
      const session = await manager.create();
      const { data, reads } = counted(0);
      await session.setUser(`e${i}`, data, { version: 0 });
      players.push({ session, reads });
    }
    await manager.persistAllUserData(); // new users count as changed: all 50 are written
    expect(store.size).toBe(50);
    const before = players.map((p) => p.reads());
    players[3]!.session.userData!.gold = 30; // changed, not marked
    players[7]!.session.userData!.gold = 70;
    players[7]!.session.markDirty();
    expect(players[3]!.session.isDirty()).toBe(false); // explicit: what is not marked is not dirty
    expect(players[7]!.session.isDirty()).toBe(true);
    await vi.waitFor(() => expect(store.peek('e7')?.userData.gold).toBe(70));
    await new Promise((resolve) => setTimeout(resolve, 60)); // more interval flushes
    expect(store.peek('e3')?.userData.gold).toBe(0);
    players.forEach((p, i) => {
      if (i !== 7) expect(p.reads() - before[i]!, `serialisations of e${i}`).toBe(0);
    });
    await players[3]!.session.persistNow(); // persistNow marks by itself
    expect(store.peek('e3')?.userData.gold).toBe(30);
  });

  it('in snapshot mode (the default) the same flush serialises every user and finds unmarked changes', async () => {
    const { manager, store } = setup({ interval: 20 });
    const reads: (() => number)[] = [];
    for (let i = 0; i < 5; i++) {
      const session = await manager.create();
      const player = counted(0);
      await session.setUser(`s${i}`, player.data, { version: 0 });
      reads.push(player.reads);
      if (i === 3) player.data.gold = 30;
    }
    await vi.waitFor(() => expect(store.peek('s3')?.userData.gold).toBe(30));
    const before = reads.map((r) => r());
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(reads.every((r, i) => r() > before[i]!)).toBe(true);
  });

  it('shutdown stores marked users and the unsaved data of destroyed sessions', async () => {
    const { manager, store, faulty } = setup({
      dirtyTracking: 'explicit',
      events: ['disconnect', 'shutdown'],
    });
    const [a, b] = await Promise.all([player(manager, 'xa'), player(manager, 'xb')]);
    await manager.persistAllUserData();
    a.userData!.gold = 1;
    a.markDirty();
    b.userData!.gold = 2;
    faulty.failNext(1);
    await b.destroy(); // its final write fails; the data is held
    await manager.destroy();
    expect(store.peek('xa')?.userData.gold).toBe(1);
    expect(store.peek('xb')?.userData.gold).toBe(2);
  });

  it('refuses an unknown dirtyTracking mode', () => {
    expect(
      () => new SessionManager({ userData: { persistence: { dirtyTracking: 'auto' as never } } }),
    ).toThrow(expect.objectContaining({ code: 'INVALID_OPTIONS' }));
  });
});
