/** What MemoryAdapter and MemoryStore add beyond the conformance suite: the store's raw reader, sharing, options. */
import { ValidationError } from '@cagey-sessions/core';
import { describe, expect, it } from 'vitest';
import { MemoryAdapter, MemoryStore } from '../src/index.js';

describe('MemoryStore', () => {
  it('peek reads a fresh copy without an adapter; missing and deleted users are undefined', async () => {
    const store = new MemoryStore();
    const adapter = new MemoryAdapter({ store });
    expect(store.peek('p')).toBeUndefined();
    await adapter.save([{ userId: 'p', userData: { items: ['a'] } }]);
    const peeked = store.peek<{ items: string[] }>('p')!;
    expect(peeked).toEqual({ userData: { items: ['a'] }, version: 1 });
    peeked.userData.items.push('mutated');
    expect(store.peek('p')!.userData).toEqual({ items: ['a'] });
    await adapter.delete('p');
    expect(store.peek('p')).toBeUndefined();
  });

  it('size counts live users only; versionOf keeps counting through tombstones; keys lists live keys', async () => {
    const store = new MemoryStore();
    const adapter = new MemoryAdapter({ store });
    await adapter.save([1, 2, 3].map((userId) => ({ userId, userData: {} })));
    expect(store.size).toBe(3);
    await adapter.delete(2);
    expect(store.size).toBe(2);
    expect(store.keys()).toEqual(['1', '3']);
    expect(store.versionOf(2)).toBe(2);
    expect(store.versionOf('never')).toBe(0);
    await adapter.save([{ userId: '2', userData: {} }]);
    expect(store.size).toBe(3);
    expect(store.versionOf(2)).toBe(3);
    store.clear();
    expect(store.size).toBe(0);
    expect(store.versionOf(2)).toBe(0);
  });

  it('is shared by adapters like a database by processes; closing one adapter leaves the others working', async () => {
    const store = new MemoryStore();
    const a = new MemoryAdapter({ store });
    const b = new MemoryAdapter({ store });
    await a.save([{ userId: 'u', userData: { by: 'a' } }]);
    expect(await b.save([{ userId: 'u', userData: { by: 'b' }, expectedVersion: 0 }])).toEqual([
      { status: 'conflict', currentVersion: 1 },
    ]);
    await a.close();
    await expect(a.load('u')).rejects.toMatchObject({ code: 'ADAPTER_CLOSED', adapter: 'memory' });
    expect(await b.load('u')).toEqual({ userData: { by: 'a' }, version: 1 });
  });
});

describe('MemoryAdapter options', () => {
  it('defaults to a private store and a batch size of 1000', async () => {
    const a = new MemoryAdapter();
    const b = new MemoryAdapter();
    expect(a.name).toBe('memory');
    expect(a.maxBatchSize).toBe(1000);
    expect(a.store).not.toBe(b.store);
    await a.save([{ userId: 1, userData: {} }]);
    expect(await b.load(1)).toBeUndefined();
  });

  it('accepts batches larger than its batch size: it is a hint for the pipeline, not a limit', async () => {
    const adapter = new MemoryAdapter({ batchSize: 2 });
    expect(adapter.maxBatchSize).toBe(2);
    const results = await adapter.save([1, 2, 3].map((userId) => ({ userId, userData: {} })));
    expect(results).toEqual([1, 2, 3].map(() => ({ status: 'ok', version: 1 })));
  });

  it('rejects invalid options with INVALID_OPTIONS', () => {
    for (const batchSize of [0, -1, 1.5, Number.NaN, '10']) {
      expect(() => new MemoryAdapter({ batchSize: batchSize as number })).toThrow(ValidationError);
    }
    expect(() => new MemoryAdapter({ maxBatchSize: 5 } as never)).toThrow(
      '"maxBatchSize" was renamed to batchSize',
    );
    expect(() => new MemoryAdapter({ store: new Map() as unknown as MemoryStore })).toThrow(/MemoryStore/);
  });

  it('uses the precomputed json of a record instead of serialising userData again', async () => {
    const adapter = new MemoryAdapter();
    await adapter.save([{ userId: 's', userData: { gold: 1 }, json: '{"gold":2}' }]);
    expect(adapter.store.peek('s')!.userData).toEqual({ gold: 2 });
  });

  it('refuses the same user twice in one batch for every record after the first', async () => {
    const adapter = new MemoryAdapter();
    const results = await adapter.save([
      { userId: 7, userData: { n: 1 } },
      { userId: '7', userData: { n: 2 } },
    ]);
    expect(results[0]).toEqual({ status: 'ok', version: 1 });
    expect(results[1]).toMatchObject({ status: 'error', error: { code: 'DUPLICATE_KEY' } });
    expect((results[1] as { error: Error }).error.message).toMatch(/records 0 and 1/);
    expect(adapter.store.peek(7)).toEqual({ userData: { n: 1 }, version: 1 });
  });

  it('refuses a duplicate after a conflicting first record, and the conflict creates nothing', async () => {
    const adapter = new MemoryAdapter();
    const results = await adapter.save([
      { userId: 'ghost', userData: { n: 1 }, expectedVersion: 3 },
      { userId: 'ghost', userData: { n: 2 }, expectedVersion: 0 },
    ]);
    expect(results[0]).toEqual({ status: 'conflict', currentVersion: 0 });
    expect(results[1]).toMatchObject({ status: 'error', error: { code: 'DUPLICATE_KEY' } });
    expect(adapter.store.size).toBe(0);
    expect(adapter.store.versionOf('ghost')).toBe(0);
    expect(await adapter.save([{ userId: 'ghost', userData: { n: 3 }, expectedVersion: 0 }])).toEqual([
      { status: 'ok', version: 1 },
    ]);
  });
});
