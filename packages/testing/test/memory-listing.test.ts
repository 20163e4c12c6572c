import { describe, expect, it } from 'vitest';
import { MemoryAdapter, MemoryStore } from '../src/index.js';

async function listAll(adapter: MemoryAdapter, limit?: number) {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await adapter.scan({ cursor, limit });
    ids.push(...page.users.map((user) => user.userId));
    cursor = page.cursor;
    pages++;
  } while (cursor !== undefined);
  return { ids, pages };
}

describe('MemoryAdapter scan', () => {
  it('lists live users in key order, a page at a time, without tombstones', async () => {
    const adapter = new MemoryAdapter();
    await adapter.save(['c', 'a', 5, 'b', 'd'].map((userId) => ({ userId, userData: { id: userId } })));
    await adapter.delete('b');
    expect(await listAll(adapter, 2)).toEqual({ ids: ['5', 'a', 'c', 'd'], pages: 2 });
    const first = await adapter.scan();
    expect(first).toEqual({
      users: [
        { userId: '5', userData: { id: 5 }, version: 1 },
        { userId: 'a', userData: { id: 'a' }, version: 1 },
        { userId: 'c', userData: { id: 'c' }, version: 1 },
        { userId: 'd', userData: { id: 'd' }, version: 1 },
      ],
      cursor: undefined,
    });
  });

  it('goes on after the cursor’s key when users are added before it or it was deleted', async () => {
    const adapter = new MemoryAdapter();
    await adapter.save(['b', 'd', 'f'].map((userId) => ({ userId, userData: {} })));
    const page = await adapter.scan({ limit: 2 });
    expect(page.users.map((user) => user.userId)).toEqual(['b', 'd']);
    await adapter.delete('d');
    await adapter.save([
      { userId: 'a', userData: {} },
      { userId: 'e', userData: {} },
    ]);
    const rest = await adapter.scan({ cursor: page.cursor });
    expect(rest.users.map((user) => user.userId)).toEqual(['e', 'f']);
    expect(rest.cursor).toBeUndefined();
  });

  it('gives copies: changing a listed user changes nothing stored', async () => {
    const store = new MemoryStore();
    const adapter = new MemoryAdapter({ store });
    await adapter.save([{ userId: 'u', userData: { gold: 1 } }]);
    const { users } = await adapter.scan();
    (users[0]!.userData as { gold: number }).gold = 99;
    expect(store.peek('u')).toEqual({ userData: { gold: 1 }, version: 1 });
  });

  it('refuses a bad cursor with INVALID_CURSOR and fails with ADAPTER_CLOSED after close()', async () => {
    const adapter = new MemoryAdapter();
    await expect(adapter.scan({ cursor: 'nope' })).rejects.toMatchObject({ code: 'INVALID_CURSOR' });
    await expect(adapter.scan({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
    await adapter.close();
    await expect(adapter.scan()).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
    await expect(adapter.restore([])).rejects.toMatchObject({ code: 'ADAPTER_CLOSED' });
  });
});

describe('MemoryAdapter restore', () => {
  it('writes exactly the given version over nothing, an older version or an older tombstone', async () => {
    const store = new MemoryStore();
    const adapter = new MemoryAdapter({ store });
    await adapter.save([{ userId: 'old', userData: { v: 1 } }]);
    await adapter.save([{ userId: 'gone', userData: {} }]);
    await adapter.delete('gone'); // tombstone at version 2
    const results = await adapter.restore([
      { userId: 'new', userData: { v: 7 }, version: 7, writeId: 'r1' },
      { userId: 'old', userData: { v: 3 }, version: 3 },
      { userId: 'gone', userData: { v: 5 }, version: 5 },
    ]);
    expect(results).toEqual([
      { status: 'ok', version: 7 },
      { status: 'ok', version: 3 },
      { status: 'ok', version: 5 },
    ]);
    expect(store.peek('new')).toEqual({ userData: { v: 7 }, version: 7 });
    expect(store.size).toBe(3);
    expect(await adapter.save([{ userId: 'new', userData: { v: 8 }, expectedVersion: 7 }])).toEqual([
      { status: 'ok', version: 8 },
    ]);
  });

  it('leaves an equal or newer version, live or deleted, untouched and reports a conflict', async () => {
    const store = new MemoryStore();
    const adapter = new MemoryAdapter({ store });
    await adapter.restore([{ userId: 'live', userData: { keep: true }, version: 4, writeId: 'w4' }]);
    await adapter.restore([{ userId: 'dead', userData: {}, version: 4 }]);
    await adapter.delete('dead'); // tombstone at version 5
    const results = await adapter.restore([
      { userId: 'live', userData: {}, version: 4 },
      { userId: 'live', userData: {}, version: 2 },
      { userId: 'dead', userData: {}, version: 5 },
    ]);
    expect(results[0]).toEqual({ status: 'conflict', currentVersion: 4, currentWriteId: 'w4' });
    expect(results[1]).toMatchObject({ status: 'error', error: { code: 'DUPLICATE_KEY' } });
    expect(results[2]).toEqual({ status: 'conflict', currentVersion: 0, currentWriteId: undefined });
    expect(store.peek('live')).toEqual({ userData: { keep: true }, version: 4 });
    expect(store.peek('dead')).toBeUndefined();
    expect(store.versionOf('dead')).toBe(5);
  });
});
