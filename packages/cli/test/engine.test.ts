import { MigratingAdapter } from '@cagey-sessions/core';
import { MemoryAdapter, MemoryStore } from '@cagey-sessions/testing';
import { describe, expect, it } from 'vitest';
import { copyUsers } from '../src/copy.js';
import { RunStats } from '../src/stats.js';
import { findExtra, firstDifference, verifyAgainst } from '../src/verify.js';
import { awkwardUser, pagesOf, retryOptions, runOptions } from './helpers.js';

async function seeded(count: number) {
  const from = new MemoryAdapter({ store: new MemoryStore() });
  for (let i = 0; i < count; i += 500) {
    const records = [];
    for (let k = i; k < Math.min(count, i + 500); k++)
      records.push({ ...awkwardUser(k), expectedVersion: 0 });
    await from.save(records);
  }
  return from;
}

describe('copyUsers', () => {
  it('copies every user with its version, and a second run writes nothing again', async () => {
    const from = await seeded(1000);
    await from.save([{ userId: '8', userData: { again: true } }]);
    const to = new MemoryAdapter({ store: new MemoryStore() });
    const first = runOptions(to);
    await copyUsers(pagesOf(from), first);
    expect(first.stats).toMatchObject({ done: 1000, copied: 1000, alreadyThere: 0, conflicts: 0, errors: 0 });
    expect(to.store.peek('8')).toEqual(from.store.peek('8'));
    expect(to.store.peek('8')?.version).toBe(2);

    const second = runOptions(to);
    await copyUsers(pagesOf(from), second);
    expect(second.stats).toMatchObject({ done: 1000, copied: 0, alreadyThere: 1000, conflicts: 0 });
  });

  it('keeps newer data in the target and reports it, unless --overwrite or --live', async () => {
    const from = await seeded(10);
    const to = new MemoryAdapter({ store: new MemoryStore() });
    await to.save([{ userId: '0', userData: { newer: 1 }, expectedVersion: 0 }]);
    await to.save([{ userId: '0', userData: { newer: 2 }, expectedVersion: 1 }]);
    const plain = runOptions(to);
    await copyUsers(pagesOf(from), plain);
    expect(plain.stats.conflicts).toBe(1);
    expect(plain.stats.problems[0]).toMatchObject({ userId: '0', kind: 'conflict' });
    expect(to.store.peek('0')).toEqual({ userData: { newer: 2 }, version: 2 });

    const live = runOptions(to, { live: true });
    await copyUsers(pagesOf(from), live);
    expect(live.stats).toMatchObject({ conflicts: 0, newerInTarget: 1, alreadyThere: 9 });

    const overwrite = runOptions(to, { overwrite: true });
    await copyUsers(pagesOf(from), overwrite);
    expect(overwrite.stats).toMatchObject({ conflicts: 0, overwritten: 1 });
    expect(to.store.peek('0')).toEqual({ userData: from.store.peek('0')!.userData, version: 3 });
  });

  it('a dry run counts what would be written and writes nothing', async () => {
    const from = await seeded(50);
    const to = new MemoryAdapter({ store: new MemoryStore() });
    const options = runOptions(to, { dryRun: true });
    await copyUsers(pagesOf(from), options);
    expect(options.stats).toMatchObject({ done: 50, copied: 50 });
    expect(to.store.size).toBe(0);
  });

  it('stops starting batches once aborted and lets the ones in flight finish', async () => {
    const from = await seeded(1000);
    const to = new MemoryAdapter({ store: new MemoryStore() });
    const controller = new AbortController();
    const options = runOptions(to, { signal: controller.signal, batchSize: 50, concurrency: 2 });
    const pages = pagesOf(from, 50);
    let pulled = 0;
    async function* abortingAfterThree() {
      for await (const page of pages) {
        if (++pulled === 3) controller.abort();
        yield page;
      }
    }
    await copyUsers(abortingAfterThree(), options);
    expect(options.stats.done).toBe(to.store.size);
    expect(to.store.size).toBeGreaterThan(0);
    expect(to.store.size).toBeLessThan(1000);
    const resumed = runOptions(to);
    await copyUsers(pagesOf(from), resumed);
    expect(resumed.stats.copied + resumed.stats.alreadyThere).toBe(1000);
    expect(resumed.stats.alreadyThere).toBe(options.stats.done);
  });
});

describe('verify', () => {
  it('finds no difference after a copy, and lists a planted one of each kind', async () => {
    const from = await seeded(300);
    const to = new MemoryAdapter({ store: new MemoryStore() });
    await copyUsers(pagesOf(from), runOptions(to));
    const verify = (stats: RunStats) => ({
      other: to,
      batchSize: 64,
      concurrency: 2,
      live: false,
      signal: new AbortController().signal,
      retry: retryOptions(),
      stats,
    });
    const clean = new RunStats();
    await verifyAgainst(pagesOf(from), verify(clean));
    await findExtra(pagesOf(to), { ...verify(clean), other: from });
    expect(clean.problemCount).toBe(0);
    expect(clean.done).toBe(300);

    const changed = to.store.peek<Record<string, unknown>>('user:2:x')!;
    await to.save([
      { userId: 'user:2:x', userData: { ...changed.userData, gold: -1 }, expectedVersion: changed.version },
    ]);
    await to.delete('0');
    await to.save([{ userId: 'only-in-target', userData: {}, expectedVersion: 0 }]);
    const dirty = new RunStats();
    await verifyAgainst(pagesOf(from), verify(dirty));
    await findExtra(pagesOf(to), { ...verify(dirty), other: from });
    const byUser = Object.fromEntries(dirty.problems.map((p) => [p.userId, p]));
    expect(byUser['user:2:x']).toMatchObject({ kind: 'data', message: 'data differs at gold' });
    expect(byUser['0']).toMatchObject({ kind: 'missing' });
    expect(byUser['only-in-target']).toMatchObject({ kind: 'extra' });
    expect(dirty.differences).toBe(3);
  });

  it('compares JSON regardless of key order and names the first differing path', () => {
    expect(firstDifference({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }, '')).toBeUndefined();
    expect(firstDifference({ a: { b: [1, 2] } }, { a: { b: [1, 3] } }, '')).toBe('a.b[1]');
    expect(firstDifference({ a: 1 }, { a: 1, b: 2 }, '')).toBe('b');
    expect(firstDifference({ a: [] }, { a: {} }, '')).toBe('a');
  });
});

describe('a backfill beside live writers through MigratingAdapter', () => {
  it('loses no acknowledged write and rolls nobody back', async () => {
    const users = 400;
    const fromAdapter = await seeded(users);
    const to = new MemoryAdapter({ store: new MemoryStore() });
    const from = new MemoryAdapter({ store: fromAdapter.store });
    const ids = Array.from({ length: users }, (_, i) => awkwardUser(i).userId);
    /** The last acknowledged write of each user. */
    const acknowledged = new Map<string, { version: number; userData: object }>();
    let stop = false;
    const writer = async (seed: number) => {
      const adapter = new MigratingAdapter({ from, to });
      let n = 0;
      while (!stop) {
        const userId = ids[(seed * 7919 + n++ * 31) % users]!;
        const loaded = await adapter.load(userId);
        if (!loaded) continue;
        const userData = { ...loaded.userData, writer: seed, n };
        const [result] = await adapter.save([{ userId, userData, expectedVersion: loaded.version }]);
        if (result?.status === 'ok') acknowledged.set(userId, { version: result.version, userData });
      }
    };
    const writers = [1, 2, 3, 4].map(writer);
    const options = runOptions(to, { live: true, batchSize: 20, concurrency: 3 });
    await copyUsers(pagesOf(from, 20), options);
    stop = true;
    await Promise.all(writers);

    expect(acknowledged.size).toBeGreaterThan(20);
    expect(options.stats.newerInTarget).toBeGreaterThan(0);
    for (const userId of ids) {
      const stored = to.store.peek(userId);
      const last = acknowledged.get(userId);
      if (last) expect(stored).toEqual({ version: last.version, userData: last.userData });
      else expect(stored).toEqual(from.store.peek(userId));
    }
  });
});
