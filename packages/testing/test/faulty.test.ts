import { AdapterError, type SaveRecord, type SaveResult, type UserId } from '@cagey-sessions/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FaultyAdapter, MemoryAdapter, MemoryStore } from '../src/index.js';

/** A MemoryAdapter that logs the calls that reached it. */
class RecordingAdapter extends MemoryAdapter {
  readonly log: string[] = [];

  override load(userId: UserId) {
    this.log.push(`load ${userId}`);
    return super.load(userId);
  }

  override save(records: readonly SaveRecord[]): Promise<SaveResult[]> {
    this.log.push(`save ${records.map((r) => r.userId).join(',')}`);
    return super.save(records);
  }

  override delete(userId: UserId, expectedVersion?: number) {
    this.log.push(`delete ${userId}`);
    return super.delete(userId, expectedVersion);
  }
}

function setup(seed?: number) {
  const store = new MemoryStore();
  const inner = new RecordingAdapter({ store, batchSize: 250 });
  const faulty = new FaultyAdapter(inner, seed === undefined ? {} : { seed });
  return { store, inner, faulty };
}

const record = (userId: UserId, gold = 1): SaveRecord => ({ userId, userData: { gold } });

/** Settles a promise into a value or its error, for asserting on failures without unhandled rejections. */
const settle = <T>(promise: Promise<T>) =>
  promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );

afterEach(() => {
  vi.useRealTimers();
});

describe('pass-through', () => {
  it('is named after the inner adapter, forwards maxBatchSize, and has setup exactly when the inner one has', async () => {
    const { faulty } = setup();
    expect(faulty.name).toBe('faulty(memory)');
    expect(faulty.maxBatchSize).toBe(250);
    expect(faulty.setup).toBeUndefined();
    const calls: string[] = [];
    const withSetup = new FaultyAdapter({
      name: 'custom',
      setup: async () => {
        calls.push('setup');
      },
      load: async () => undefined,
      save: async () => [],
      delete: async () => false,
      close: async () => {},
    });
    expect(withSetup.maxBatchSize).toBeUndefined();
    await withSetup.setup!();
    expect(calls).toEqual(['setup']);
    expect(withSetup.calls.setup).toBe(1);
  });

  it('forwards every method and its results', async () => {
    const { faulty, store } = setup();
    expect(await faulty.save([record('a', 1), record('b', 2)])).toEqual([
      { status: 'ok', version: 1 },
      { status: 'ok', version: 1 },
    ]);
    expect(await faulty.load('a')).toEqual({ userData: { gold: 1 }, version: 1 });
    await expect(faulty.delete('a', 5)).rejects.toMatchObject({ code: 'VERSION_CONFLICT' });
    expect(await faulty.delete('a', 1)).toBe(true);
    expect(store.peek('a')).toBeUndefined();
    expect(await faulty.restore!([{ userId: 'c', userData: { gold: 3 }, version: 4 }])).toEqual([
      { status: 'ok', version: 4 },
    ]);
    expect(await faulty.scan!({ limit: 5 })).toEqual({
      users: [
        { userId: 'b', userData: { gold: 2 }, version: 1 },
        { userId: 'c', userData: { gold: 3 }, version: 4 },
      ],
      cursor: undefined,
    });
    await faulty.close();
    await expect(faulty.load('b')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
    expect(faulty.calls).toEqual({ load: 2, save: 1, delete: 2, setup: 0, close: 1, scan: 1, restore: 1 });
  });

  it('has scan and restore exactly when the inner adapter has them, and can fail them', async () => {
    const bare = new FaultyAdapter({
      name: 'bare',
      load: async () => undefined,
      save: async () => [],
      delete: async () => false,
      close: async () => {},
    });
    expect(bare.scan).toBeUndefined();
    expect(bare.restore).toBeUndefined();
    const { faulty } = setup();
    faulty.failNext(1, { methods: ['scan'] });
    await expect(faulty.scan!()).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
    expect(await faulty.scan!()).toEqual({ users: [], cursor: undefined });
  });
});

describe('failNext', () => {
  it('fails the next n saves before they reach the store, then lets saves through; loads are untouched', async () => {
    const { faulty, inner, store } = setup();
    faulty.failNext(2);
    for (let i = 0; i < 2; i++) {
      const error = await faulty.save([record('x')]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AdapterError);
      expect(error).toMatchObject({ code: 'ADAPTER_ERROR', message: '[faulty(memory)] injected fault' });
    }
    expect(await faulty.load('x')).toBeUndefined();
    expect(inner.log).toEqual(['load x']);
    expect(await faulty.save([record('x')])).toEqual([{ status: 'ok', version: 1 }]);
    expect(store.peek('x')?.version).toBe(1);
  });

  it('targets the given methods with the given error; budgets add up, oldest first', async () => {
    const { faulty } = setup();
    const custom = new Error('disk on fire');
    faulty.failNext(1, { methods: ['load', 'delete'], error: custom }).failNext(1, { methods: ['load'] });
    await expect(faulty.save([record('a')])).resolves.toHaveLength(1);
    await expect(faulty.load('a')).rejects.toBe(custom);
    await expect(faulty.load('a')).rejects.toMatchObject({ message: '[faulty(memory)] injected fault' });
    await expect(faulty.delete('a')).resolves.toBe(true);
  });

  it("phase 'after' lets the write happen and still rejects, like a lost acknowledgement", async () => {
    const { faulty, store } = setup();
    faulty.failNext(1, { phase: 'after' });
    await expect(faulty.save([record('ack', 7)])).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
    expect(store.peek('ack')).toEqual({ userData: { gold: 7 }, version: 1 });
  });

  it('can fail setup and close', async () => {
    const inner = new MemoryAdapter();
    let setups = 0;
    const faulty = new FaultyAdapter(
      Object.assign(inner, {
        setup: async () => {
          setups++;
        },
      }),
    );
    faulty.failNext(1, { methods: ['setup', 'close'] }).failNext(1, { methods: ['close'] });
    await expect(faulty.setup!()).rejects.toThrow('injected fault');
    expect(setups).toBe(0);
    await expect(faulty.close()).rejects.toThrow('injected fault');
    await expect(faulty.load('still-open')).resolves.toBeUndefined();
    await faulty.close();
    await expect(faulty.load('closed')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
  });

  it('rejects nonsense', () => {
    const { faulty } = setup();
    expect(() => faulty.failNext(-1)).toThrow(TypeError);
    expect(() => faulty.failNext(1.5)).toThrow(TypeError);
    expect(() => faulty.failNext(1, { methods: ['upsert' as never] })).toThrow(/Unknown adapter method/);
    expect(() => faulty.failNext(1, { phase: 'during' as never })).toThrow(/phase/);
  });
});

describe('failRate', () => {
  async function pattern(faulty: FaultyAdapter, calls: number): Promise<string> {
    let out = '';
    for (let i = 0; i < calls; i++)
      out += Object.hasOwn(await settle(faulty.save([record(`u${i}`)])), 'error') ? 'x' : '.';
    return out;
  }

  it('fails about that fraction of calls, in a pattern fixed by the seed', async () => {
    const a = setup(7).faulty.failRate(0.3);
    const b = setup(7).faulty.failRate(0.3);
    const c = setup(8).faulty.failRate(0.3);
    const [pa, pb, pc] = [await pattern(a, 300), await pattern(b, 300), await pattern(c, 300)];
    expect(pa).toBe(pb);
    expect(pa).not.toBe(pc);
    const failures = pa.split('').filter((ch) => ch === 'x').length;
    expect(failures).toBeGreaterThan(50);
    expect(failures).toBeLessThan(130);
  });

  it('1 fails every matching call, 0 none; other methods pass; a new rate replaces the old', async () => {
    const { faulty } = setup();
    faulty.failRate(1);
    expect(await pattern(faulty, 20)).toBe('x'.repeat(20));
    await expect(faulty.load('u0')).resolves.toBeUndefined();
    faulty.failRate(1, { methods: ['load'] });
    await expect(faulty.load('u0')).rejects.toThrow('injected fault');
    expect(await pattern(faulty, 5)).toBe('.....');
    faulty.failRate(0);
    await expect(faulty.load('u0')).resolves.toMatchObject({ version: 1 });
    expect(() => faulty.failRate(1.5)).toThrow(TypeError);
    expect(() => faulty.failRate(Number.NaN)).toThrow(TypeError);
  });
});

describe('latency', () => {
  it('delays matching calls by a fixed time before they reach the inner adapter', async () => {
    vi.useFakeTimers();
    const { faulty, inner } = setup();
    faulty.latency(30);
    let done = false;
    const saving = faulty.save([record('slow')]).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(29);
    expect(done).toBe(false);
    expect(inner.log).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await saving;
    expect(inner.log).toEqual(['save slow']);
    // loads are not targeted by default
    await expect(faulty.load('slow')).resolves.toMatchObject({ version: 1 });
  });

  it('draws each delay from [min, max] for the targeted methods; 0 removes it', async () => {
    vi.useFakeTimers();
    const { faulty } = setup();
    faulty.latency({ min: 10, max: 20 }, { methods: ['load'] });
    for (let i = 0; i < 10; i++) {
      let done = false;
      const loading = faulty.load('x').then(() => {
        done = true;
      });
      await vi.advanceTimersByTimeAsync(9);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(11);
      await loading;
      expect(done).toBe(true);
    }
    faulty.latency(0);
    await expect(faulty.load('x')).resolves.toBeUndefined();
    expect(() => faulty.latency(-1)).toThrow(TypeError);
    expect(() => faulty.latency({ min: 5, max: 1 })).toThrow(TypeError);
  });
});

describe('hang', () => {
  it('holds matching calls until release, then lets them through in arrival order', async () => {
    const { faulty, inner, store } = setup();
    const hold = faulty.hang();
    const started = faulty.nextCall('save');
    const first = faulty.save([record('a')]);
    expect(await started).toEqual({ method: 'save', args: [[record('a')]] });
    const second = faulty.save([record('b')]);
    await expect(faulty.load('a')).resolves.toBeUndefined();
    expect(hold.pending).toBe(2);
    expect(faulty.inFlight).toBe(2);
    expect(inner.log).toEqual(['load a']);
    expect(store.size).toBe(0);
    hold.release();
    expect(hold.pending).toBe(0);
    await Promise.all([first, second]);
    expect(inner.log).toEqual(['load a', 'save a', 'save b']);
    expect(faulty.inFlight).toBe(0);
    await expect(faulty.save([record('c')])).resolves.toEqual([{ status: 'ok', version: 1 }]);
  });

  it('targets the given methods; releaseAll and reset release every hang', async () => {
    const { faulty } = setup();
    const loads = faulty.hang({ methods: ['load'] });
    faulty.hang({ methods: ['delete'] });
    const load = faulty.load('a');
    const del = faulty.delete('a');
    await expect(faulty.save([record('a')])).resolves.toHaveLength(1);
    expect(loads.pending).toBe(1);
    faulty.releaseAll();
    // The held load reaches the store only now, after the save.
    expect(await load).toEqual({ userData: { gold: 1 }, version: 1 });
    expect(await del).toBe(true);
    faulty.hang();
    const held = faulty.save([record('b')]);
    expect(faulty.inFlight).toBe(1);
    faulty.reset();
    await expect(held).resolves.toEqual([{ status: 'ok', version: 1 }]);
  });
});

describe('rejectRecords', () => {
  it('gives matching records error results and sends only their neighbours to the inner adapter', async () => {
    const { faulty, inner, store } = setup();
    faulty.rejectRecords((r) => r.userId === 'bad');
    const results = await faulty.save([record('a'), record('bad'), record('c')]);
    expect(results[0]).toEqual({ status: 'ok', version: 1 });
    expect(results[1]).toMatchObject({ status: 'error', error: { code: 'ADAPTER_ERROR' } });
    expect((results[1] as { error: Error }).error).toBeInstanceOf(AdapterError);
    expect(results[2]).toEqual({ status: 'ok', version: 1 });
    expect(inner.log).toEqual(['save a,c']);
    expect(store.peek('bad')).toBeUndefined();
  });

  it('uses the given error, adds rules up, and skips the inner adapter when every record is rejected', async () => {
    const { faulty, inner } = setup();
    const refused = new Error('value refused');
    faulty.rejectRecords((r) => r.userId === 1, refused).rejectRecords((r) => r.userId === 2);
    const results = await faulty.save([record(1), record(2)]);
    expect(results).toEqual([
      { status: 'error', error: refused },
      { status: 'error', error: expect.any(AdapterError) },
    ]);
    expect(inner.log).toEqual([]);
    faulty.reset();
    expect(await faulty.save([record(1)])).toEqual([{ status: 'ok', version: 1 }]);
  });
});

describe('observation', () => {
  it('records one entry per save with user ids, start and settle times and any error', async () => {
    const { faulty } = setup();
    await faulty.save([record('a'), record(2)]);
    faulty.failNext(1);
    await faulty.save([record('b')]).catch(() => {});
    expect(faulty.saves.map((s) => s.userIds)).toEqual([['a', 2], ['b']]);
    const [ok, failed] = faulty.saves;
    expect(ok!.settledAt).toBeGreaterThanOrEqual(ok!.startedAt);
    expect(failed!.startedAt).toBeGreaterThanOrEqual(ok!.settledAt!);
    expect(ok!.error).toBeUndefined();
    expect(failed!.error).toMatchObject({ code: 'ADAPTER_ERROR' });
    faulty.saves.length = 0;
    await faulty.save([record('c')]);
    expect(faulty.saves.map((s) => s.userIds)).toEqual([['c']]);
    expect(faulty.calls.save).toBe(3);
  });

  it('nextCall resolves when the next matching call starts, with its arguments', async () => {
    const { faulty } = setup();
    const anyCall = faulty.nextCall();
    const nextDelete = faulty.nextCall('delete');
    await faulty.load(1);
    expect(await anyCall).toEqual({ method: 'load', args: [1] });
    let deleted = false;
    void nextDelete.then(() => {
      deleted = true;
    });
    await faulty.save([record(1)]);
    await Promise.resolve();
    expect(deleted).toBe(false);
    await faulty.delete(1, 1);
    expect(await nextDelete).toEqual({ method: 'delete', args: [1, 1] });
  });

  it('reset clears faults but keeps observations', async () => {
    const { faulty } = setup();
    faulty
      .failNext(5)
      .failRate(1)
      .rejectRecords(() => true);
    await faulty.save([record('a')]).catch(() => {});
    vi.useFakeTimers();
    faulty.latency(60_000, { methods: ['save', 'load'] });
    faulty.reset();
    // With fake timers a remaining latency would never elapse: resolving proves it is gone.
    expect(await faulty.save([record('a')])).toEqual([{ status: 'ok', version: 1 }]);
    expect(await faulty.load('a')).toMatchObject({ version: 1 });
    expect(faulty.saves).toHaveLength(2);
    expect(faulty.calls.save).toBe(2);
  });
});
