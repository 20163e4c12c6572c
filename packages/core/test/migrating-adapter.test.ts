import { MemoryAdapter, MemoryStore } from '@cagey-sessions/testing';
import { describe, expect, it } from 'vitest';
import {
  ConflictError,
  create,
  MigratingAdapter,
  type PersistenceAdapter,
  ValidationError,
} from '../src/index.js';

function stores() {
  const old = new MemoryStore();
  const next = new MemoryStore();
  const from = new MemoryAdapter({ store: old });
  const to = new MemoryAdapter({ store: next });
  return { old, next, from, to, adapter: new MigratingAdapter({ from, to }) };
}

/** Puts a user in a store at exactly `version` (writes it version times). */
async function seed(adapter: MemoryAdapter, userId: string, userData: object, version: number) {
  for (let v = 0; v < version; v++) await adapter.save([{ userId, userData, expectedVersion: v }]);
}

describe('MigratingAdapter construction', () => {
  it('refuses a target without restore, with a typed error', () => {
    const to = new MemoryAdapter();
    const withoutRestore: PersistenceAdapter = {
      name: 'no-restore',
      load: (userId) => to.load(userId),
      save: (records) => to.save(records),
      delete: (userId) => to.delete(userId),
      close: () => to.close(),
    };
    const build = () =>
      new MigratingAdapter({ from: new MemoryAdapter(), to: withoutRestore as PersistenceAdapter });
    expect(build).toThrow(ValidationError);
    expect(build).toThrow(/restore/);
    try {
      build();
    } catch (error) {
      expect((error as ValidationError).code).toBe('INVALID_OPTIONS');
    }
  });

  it('refuses missing options and a store without load', () => {
    expect(() => new MigratingAdapter(undefined as never)).toThrow(ValidationError);
    expect(() => new MigratingAdapter({ from: {} as never, to: new MemoryAdapter() })).toThrow(/from must/);
  });
});

describe('MigratingAdapter reads and writes', () => {
  it('reads the new store first and falls back to the old one', async () => {
    const { from, to, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 3);
    await seed(from, 'b', { gold: 2 }, 1);
    await seed(to, 'b', { gold: 20 }, 2);
    expect(await adapter.load('a')).toEqual({ userData: { gold: 1 }, version: 3 });
    expect(await adapter.load('b')).toEqual({ userData: { gold: 20 }, version: 2 });
    expect(await adapter.load('c')).toBeUndefined();
  });

  it('writes a user loaded from the old store to the new one at the next version, leaving the old one', async () => {
    const { old, next, from, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 3);
    const [result] = await adapter.save([{ userId: 'a', userData: { gold: 5 }, expectedVersion: 3 }]);
    expect(result).toEqual({ status: 'ok', version: 4 });
    expect(next.peek('a')).toEqual({ userData: { gold: 5 }, version: 4 });
    expect(old.peek('a')).toEqual({ userData: { gold: 1 }, version: 3 });
    const [again] = await adapter.save([{ userId: 'a', userData: { gold: 6 }, expectedVersion: 4 }]);
    expect(again).toEqual({ status: 'ok', version: 5 });
  });

  it('reports a conflict with the version of whichever store holds the user', async () => {
    const { from, to, adapter } = stores();
    await seed(from, 'old-only', { gold: 1 }, 3);
    await seed(to, 'moved', { gold: 1 }, 7);
    const results = await adapter.save([
      { userId: 'old-only', userData: { gold: 2 }, expectedVersion: 2 },
      { userId: 'moved', userData: { gold: 2 }, expectedVersion: 6 },
      { userId: 'nobody', userData: { gold: 2 }, expectedVersion: 1 },
      { userId: 'old-only', userData: { gold: 2 }, expectedVersion: 0 },
    ]);
    expect(results.map((r) => r.status === 'conflict' && r.currentVersion)).toEqual([3, 7, 0, false]);
    expect(results[3]).toMatchObject({ status: 'error' });
  });

  it('refuses an insert of a user the old store holds', async () => {
    const { from, next, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 2);
    const [result] = await adapter.save([{ userId: 'a', userData: { gold: 0 }, expectedVersion: 0 }]);
    expect(result).toMatchObject({ status: 'conflict', currentVersion: 2 });
    expect(next.peek('a')).toBeUndefined();
    const [fresh] = await adapter.save([{ userId: 'new', userData: { gold: 0 }, expectedVersion: 0 }]);
    expect(fresh).toEqual({ status: 'ok', version: 1 });
  });

  it('writes an unconditional record on top of the newest version in either store', async () => {
    const { from, next, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 4);
    const [result] = await adapter.save([{ userId: 'a', userData: { gold: 9 } }]);
    expect(result).toEqual({ status: 'ok', version: 5 });
    expect(next.peek('a')?.version).toBe(5);
  });

  it('a backfill copy after a live write loses, and one before it is overwritten', async () => {
    const { from, to, next, adapter } = stores();
    await seed(from, 'late', { gold: 1 }, 2);
    await seed(from, 'early', { gold: 1 }, 2);
    // The backfill copies 'early' first, then the game writes.
    await to.restore!([{ userId: 'early', userData: { gold: 1 }, version: 2 }]);
    await adapter.save([
      { userId: 'early', userData: { gold: 3 }, expectedVersion: 2 },
      { userId: 'late', userData: { gold: 3 }, expectedVersion: 2 },
    ]);
    // The backfill copies 'late' after the game wrote it: refused, the newer data stays.
    const [copy] = await to.restore!([{ userId: 'late', userData: { gold: 1 }, version: 2 }]);
    expect(copy).toMatchObject({ status: 'conflict', currentVersion: 3 });
    expect(next.peek('early')).toEqual({ userData: { gold: 3 }, version: 3 });
    expect(next.peek('late')).toEqual({ userData: { gold: 3 }, version: 3 });
  });

  it('two writers moving the same user: one wins, the other gets a conflict', async () => {
    const { from, to } = stores();
    await seed(from, 'a', { gold: 1 }, 1);
    const one = new MigratingAdapter({ from, to });
    const two = new MigratingAdapter({ from, to });
    const [a, b] = await Promise.all([
      one.save([{ userId: 'a', userData: { by: 'one' }, expectedVersion: 1 }]),
      two.save([{ userId: 'a', userData: { by: 'two' }, expectedVersion: 1 }]),
    ]);
    const statuses = [a[0]!.status, b[0]!.status].sort();
    expect(statuses).toEqual(['conflict', 'ok']);
  });
});

describe('MigratingAdapter delete', () => {
  it('tombstones a user held only by the old store in both, so a backfill cannot bring it back', async () => {
    const { from, to, old, next, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 3);
    expect(await adapter.delete('a')).toBe(true);
    expect(await adapter.load('a')).toBeUndefined();
    expect(old.peek('a')).toBeUndefined();
    expect(next.peek('a')).toBeUndefined();
    // A backfill that listed the user at version 3 before the delete:
    const [copy] = await to.restore!([{ userId: 'a', userData: { gold: 1 }, version: 3 }]);
    expect(copy?.status).toBe('conflict');
    expect(next.peek('a')).toBeUndefined();
    // A writer holding version 3 cannot write it back either.
    const [stale] = await adapter.save([{ userId: 'a', userData: { gold: 2 }, expectedVersion: 3 }]);
    expect(stale?.status).toBe('conflict');
    // A new player under the same id starts above every earlier version.
    const [fresh] = await adapter.save([{ userId: 'a', userData: { gold: 0 }, expectedVersion: 0 }]);
    expect(fresh).toMatchObject({ status: 'ok' });
    expect((fresh as { version: number }).version).toBeGreaterThan(3);
    expect(await from.load('a')).toBeUndefined();
  });

  it('deletes a moved user from both stores and honours expectedVersion', async () => {
    const { from, to, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 1);
    await adapter.save([{ userId: 'a', userData: { gold: 2 }, expectedVersion: 1 }]);
    await expect(adapter.delete('a', 1)).rejects.toBeInstanceOf(ConflictError);
    expect(await adapter.delete('a', 2)).toBe(true);
    expect(await to.load('a')).toBeUndefined();
    expect(await from.load('a')).toBeUndefined();
    expect(await adapter.delete('a')).toBe(false);
  });

  it('refuses a delete of an old-store user at another version', async () => {
    const { from, adapter } = stores();
    await seed(from, 'a', { gold: 1 }, 2);
    await expect(adapter.delete('a', 1)).rejects.toMatchObject({
      code: 'VERSION_CONFLICT',
      currentVersion: 2,
    });
    expect(await adapter.load('a')).toMatchObject({ version: 2 });
  });
});

describe('MigratingAdapter under a SessionManager', () => {
  it('a session loads a player from the old store and persists it to the new one', async () => {
    const { from, next, old, adapter } = stores();
    await seed(from, 'p1', { gold: 10 }, 2);
    const manager = create<{ gold: number }>({ adapter });
    const session = await manager.create();
    await session.start();
    const player = await session.identify('p1', { defaults: { gold: 0 } });
    expect(player.gold).toBe(10);
    player.gold += 5;
    await session.persistNow();
    player.gold += 1;
    await session.persistNow();
    await manager.destroy();
    expect(next.peek('p1')).toEqual({ userData: { gold: 16 }, version: 4 });
    expect(old.peek('p1')).toEqual({ userData: { gold: 10 }, version: 2 });
  });
});
