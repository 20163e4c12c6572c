/**
 * The API of the original cagey-sessions README, call by call, and the two bugs of the original
 * implementation that must not come back.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MemoryAdapter } from '@cagey-sessions/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  create,
  type Duration,
  type PersistenceError,
  type Session,
  SessionManager,
  StateError,
  ValidationError,
} from '../src/index.js';

const run = promisify(execFile);
const managers: SessionManager[] = [];
function manager(...args: Parameters<typeof create>): SessionManager {
  const m = create(...args);
  managers.push(m);
  return m;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.allSettled(managers.splice(0).map((m) => m.destroy(false)));
});

describe('create(apis, options)', () => {
  it('returns a SessionManager and logs through apis.log', async () => {
    const lines: unknown[][] = [];
    const log = { warn: (...args: unknown[]) => lines.push(args) };
    const m = manager({ log });
    expect(m).toBeInstanceOf(SessionManager);
    const session = await m.create();
    await session.setUser(1, { gold: 1 });
    session.userData!.gold = 2;
    m.on('persistUserData', () => Promise.reject(new Error('disk full')));
    await expect(session.persistNow()).rejects.toThrow('disk full');
    expect(lines.length).toBe(1);
    expect(String(lines[0]![1])).toContain('could not save user data');
  });

  it('is silent without a logger', async () => {
    const m = manager();
    const session = await m.create();
    await session.setUser(1, { gold: 1 });
    m.on('persistUserData', () => Promise.reject(new Error('disk full')));
    await expect(session.persistNow()).rejects.toThrow('disk full');
  });

  it('refuses to count a write when there is neither an adapter nor a persistUserData listener (NO_WRITER)', async () => {
    const m = manager();
    const persisted = vi.fn();
    m.on('persisted', persisted);
    const session = await m.create();
    await session.setUser(1, { gold: 1 });
    const error = await session.persistNow().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NO_WRITER', unsaved: [{ userId: 1, maybeStored: false }] });
    expect(persisted).not.toHaveBeenCalled();
    expect(m.stats().written).toBe(0);
    const shutdown = await m.destroy(true).catch((e: unknown) => e);
    expect(shutdown).toMatchObject({ code: 'SHUTDOWN_INCOMPLETE', unsaved: [{ userId: 1 }] });
    expect((shutdown as PersistenceError).unsaved[0]!.error).toMatchObject({ code: 'NO_WRITER' });
  });

  it('refuses unknown option keys and names the nearest valid one', () => {
    expect(() => create({ adaptor: new MemoryAdapter() } as never)).toThrow(/Did you mean adapter\?/);
    expect(() => create({}, { userData: { persistence: { intervall: '30s' } as never } })).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: expect.stringMatching(/intervall.*Did you mean interval\?/),
      }),
    );
    expect(() => create({}, { userdata: {} } as never)).toThrow(/Did you mean userData\?/);
    expect(() => create({}, { userData: { persistence: { retry: { maxDelays: 1 } as never } } })).toThrow(
      /Did you mean maxDelay\?/,
    );
  });

  it('refuses an adapter that lacks a method of the contract', () => {
    expect(() => create({ adapter: {} as never })).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: expect.stringContaining('missing load, save, delete, close'),
      }),
    );
    const { close: _close, ...withoutClose } = new MemoryAdapter();
    expect(
      () =>
        new SessionManager({
          adapter: {
            ...withoutClose,
            name: 'x',
            load: async () => undefined,
            save: async () => [],
            delete: async () => false,
          } as never,
        }),
    ).toThrow(/missing close/);
  });

  it('rejects an invalid interval at construction with INVALID_OPTIONS', () => {
    // 'soon' and '' do not type-check: the type refuses them before the option check does.
    for (const interval of ['soon', '', '-5s', 0, Number.NaN] as Duration[]) {
      expect(() => create({}, { userData: { persistence: { interval } } })).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTIONS' }),
      );
    }
    expect(() => create({}, { userData: { persistence: { events: 'disconnect' as never } } })).toThrow(
      ValidationError,
    );
  });

  it('accepts ms strings such as 30s for the interval', () => {
    expect(() => manager({}, { userData: { persistence: { interval: '30s' } } })).not.toThrow();
  });
});

describe('SessionManager', () => {
  it('create(key) emits created and findByKey finds the live session only', async () => {
    const m = manager();
    const created: Session[] = [];
    m.on('created', (session) => {
      created.push(session);
    });
    const session = await m.create('socket-1');
    expect(created).toEqual([session]);
    expect(session.key).toBe('socket-1');
    expect(m.findByKey('socket-1')).toBe(session);
    expect(m.findByKey('socket-2')).toBeUndefined();
    await session.destroy(false);
    expect(m.findByKey('socket-1')).toBeUndefined();
  });

  it('awaits async created listeners and rejects create when one fails, leaving no session behind', async () => {
    const m = manager();
    let finished = false;
    m.on('created', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      finished = true;
    });
    await m.create('a');
    expect(finished).toBe(true);

    m.on('created', () => {
      throw new Error('listener failed');
    });
    await expect(m.create('b')).rejects.toThrow('listener failed');
    expect(m.findByKey('b')).toBeUndefined();
    expect(m.stats().sessions).toBe(1);
  });

  it('rejects a duplicate live key with DUPLICATE_KEY and accepts it again once the first is destroyed', async () => {
    const m = manager();
    const first = await m.create('k');
    await expect(m.create('k')).rejects.toMatchObject({ code: 'DUPLICATE_KEY' });
    await first.destroy(false);
    await expect(m.create('k')).resolves.toBeDefined();
  });

  it('rejects a key that is not a non-empty string with INVALID_KEY', async () => {
    const m = manager();
    await expect(m.create('')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(m.create(5 as never)).rejects.toMatchObject({ code: 'INVALID_KEY' });
  });

  it('willPersistUserDataOn answers from the configured events', () => {
    const m = manager({}, { userData: { persistence: { events: ['disconnect', 'shutdown'] } } });
    expect(m.willPersistUserDataOn('disconnect')).toBe(true);
    expect(m.willPersistUserDataOn('shutdown')).toBe(true);
    expect(m.willPersistUserDataOn('levelUp')).toBe(false);
    expect(manager().willPersistUserDataOn('disconnect')).toBe(false);
  });

  it('persistAllUserData emits persistUserData for every changed session and terminates', async () => {
    const m = manager();
    const persisted: unknown[] = [];
    m.on('persistUserData', async (session) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      persisted.push(structuredClone(session.userData));
    });
    const sessions = await Promise.all([1, 2, 3].map(() => m.create()));
    await Promise.all(sessions.map((s, i) => s.setUser(i + 1, { level: i })));
    // The original re-inserted each persisted session into the set it iterated and never finished.
    await expect(withTimeout(m.persistAllUserData(), 2000)).resolves.toBeUndefined();
    expect(persisted).toHaveLength(3);
    expect(persisted).toEqual(expect.arrayContaining([{ level: 0 }, { level: 1 }, { level: 2 }]));
    expect(m.stats().sessions).toBe(3);
  });

  it('destroy(persist) stops the interval timer and destroys every session', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const m = create({}, { userData: { persistence: { interval: '1s' } } });
    let ticks = 0;
    m.on('persistUserData', () => {
      ticks++;
    });
    const session = await m.create();
    await session.setUser('u', { n: 0 });
    session.userData!.n = 1;
    vi.advanceTimersByTime(1000);
    await vi.waitFor(() => expect(ticks).toBe(1));
    const destroyed: Session[] = [];
    m.on('destroy', (s) => {
      destroyed.push(s);
    });
    await m.destroy(false);
    expect(destroyed).toEqual([session]);
    // The original cleared a misspelled field, so its interval kept firing after destroy.
    expect(vi.getTimerCount()).toBe(0);
    session.userData!.n = 2;
    vi.advanceTimersByTime(5000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ticks).toBe(1);
  });

  it('destroy(true) persists every session before resolving', async () => {
    const m = create();
    const written: unknown[] = [];
    m.on('persistUserData', (s) => {
      written.push(s.userId);
    });
    for (const id of [1, 2]) await (await m.create()).setUser(id, { id });
    await m.destroy(true);
    expect(written.sort()).toEqual([1, 2]);
    await expect(m.create()).rejects.toMatchObject({ code: 'MANAGER_DESTROYED' });
  });

  it('the interval timer does not keep the process alive', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/idle-manager.ts', import.meta.url));
    const { stdout } = await run(process.execPath, ['--import', 'tsx', fixture], { timeout: 15_000 });
    expect(stdout).toContain('exited');
  });
});

describe('Session', () => {
  it('set/get store per-session values', async () => {
    const session = await manager().create();
    const client = { send: () => {} };
    session.set('client', client);
    expect(session.get('client')).toBe(client);
    expect(session.get('missing')).toBeUndefined();
  });

  it('start emits started on the manager (with the session) and on the session', async () => {
    const m = manager();
    const calls: string[] = [];
    m.on('started', async (session) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      calls.push(`manager:${session.key}`);
    });
    const session = await m.create('s');
    session.on('started', (...args: unknown[]) => {
      calls.push(`session:${args.length}`);
    });
    await session.start();
    expect(calls.sort()).toEqual(['manager:s', 'session:0']);
  });

  it('setUser sets userId and userData and emits identified on both', async () => {
    const m = manager();
    const seen: unknown[] = [];
    m.on('identified', (session, userId, userData) => {
      seen.push(['manager', session.key, userId, userData]);
    });
    const session = await m.create('s');
    session.on('identified', (userId, userData) => {
      seen.push(['session', userId, userData]);
    });
    const data = { gold: 10 };
    await session.setUser(7, data);
    expect(session.userId).toBe(7);
    expect(session.userData).toBe(data);
    expect(seen).toEqual([
      ['manager', 's', 7, data],
      ['session', 7, data],
    ]);
  });

  it('a listener error rejects the emitting call', async () => {
    const m = manager();
    const session = await m.create();
    session.on('started', () => {
      throw new Error('nope');
    });
    await expect(session.start()).rejects.toThrow('nope');
  });

  it('persistNow emits persistUserData on manager and session and awaits the write', async () => {
    const m = manager();
    const order: string[] = [];
    m.on('persistUserData', async (session) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      order.push(`manager:${session.userId}`);
    });
    const session = await m.create();
    session.on('persistUserData', () => {
      order.push('session');
    });
    await session.setUser('p', { gold: 1 });
    await session.persistNow();
    expect(order.sort()).toEqual(['manager:p', 'session']);
  });

  it('persistNow rejects when the persistUserData listener fails', async () => {
    const m = manager();
    m.on('persistUserData', () => {
      throw new Error('database down');
    });
    const session = await m.create();
    await session.setUser('p', { gold: 1 });
    await expect(session.persistNow()).rejects.toMatchObject({ code: 'PERSIST_FAILED' });
  });

  it('destroy(persist) emits beforeDestroy, persists, then emits destroy', async () => {
    const m = manager();
    const order: string[] = [];
    m.on('beforeDestroy', () => {
      order.push('manager:beforeDestroy');
    });
    m.on('persistUserData', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      order.push('persist');
    });
    m.on('destroy', () => {
      order.push('manager:destroy');
    });
    const session = await m.create();
    session.on('beforeDestroy', () => {
      order.push('session:beforeDestroy');
    });
    session.on('destroy', () => {
      order.push('session:destroy');
    });
    await session.setUser(1, { x: 1 });
    await session.destroy(true);
    expect(order.slice(0, 2).sort()).toEqual(['manager:beforeDestroy', 'session:beforeDestroy']);
    expect(order[2]).toBe('persist');
    expect(order.slice(3).sort()).toEqual(['manager:destroy', 'session:destroy']);
  });

  it('destroy(false) does not persist', async () => {
    const m = manager();
    let persisted = 0;
    m.on('persistUserData', () => {
      persisted++;
    });
    const session = await m.create();
    await session.setUser(1, { x: 1 });
    await session.destroy(false);
    expect(persisted).toBe(0);
  });

  it('destroy() without an argument persists when the events include disconnect', async () => {
    for (const [events, expected] of [
      [['disconnect'], 1],
      [[], 0],
    ] as const) {
      const m = manager({}, { userData: { persistence: { events: [...events] } } });
      let persisted = 0;
      m.on('persistUserData', () => {
        persisted++;
      });
      const session = await m.create();
      await session.setUser(1, { x: 1 });
      await session.destroy();
      expect(persisted).toBe(expected);
    }
  });

  it('calls on a destroyed session reject with SESSION_DESTROYED', async () => {
    const session = await manager().create();
    await session.setUser(1, { a: 1 });
    await session.destroy(false);
    expect(session.isDestroyed).toBe(true);
    await expect(session.start()).rejects.toBeInstanceOf(StateError);
    await expect(session.setUser(2, {})).rejects.toMatchObject({ code: 'SESSION_DESTROYED' });
    await expect(session.persistNow()).rejects.toMatchObject({ code: 'SESSION_DESTROYED' });
    expect(() => session.set('a', 1)).toThrow(expect.objectContaining({ code: 'SESSION_DESTROYED' }));
    // destroying again is harmless and returns the same outcome
    await expect(session.destroy(true)).resolves.toBeUndefined();
  });

  it('setUser rejects a bad userId or userData and binds nothing', async () => {
    const session = await manager().create();
    await expect(session.setUser('', {})).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
    await expect(session.setUser(1.5, {})).rejects.toMatchObject({ code: 'INVALID_USER_ID' });
    await expect(session.setUser(1, { n: 1n } as never)).rejects.toMatchObject({ code: 'INVALID_USER_DATA' });
    await expect(session.setUser(1, [] as never)).rejects.toMatchObject({ code: 'INVALID_USER_DATA' });
    expect(session.userId).toBeUndefined();
  });

  it('the same user cannot be in two live sessions of one manager', async () => {
    const m = manager();
    const a = await m.create();
    const b = await m.create();
    await a.setUser(5, {});
    await expect(b.setUser('5', {})).rejects.toMatchObject({ code: 'USER_IN_SESSION' });
    expect(m.findByUserId('5')).toBe(a);
    await a.destroy(false);
    await expect(b.setUser('5', {})).resolves.toBeUndefined();
  });

  it('a session belongs to one user', async () => {
    const session = await manager().create();
    await session.setUser(1, {});
    await expect(session.setUser(2, {})).rejects.toMatchObject({ code: 'ALREADY_IDENTIFIED' });
  });
});

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
