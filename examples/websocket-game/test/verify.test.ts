import { describe, expect, it } from 'vitest';
import { newPlayer, type Player } from '../src/game.js';
import {
  compareWithStore,
  duplicatePurchases,
  missingPurchases,
  readAll,
  stateDigest,
} from '../src/verify.js';

const player = (gold: number): Player => ({ ...newPlayer(), gold });

describe('compareWithStore', () => {
  it('reports players missing from the store and players whose data differs, nothing else', async () => {
    const expected = new Map([
      ['a', player(1)],
      ['b', player(2)],
      ['c', player(3)],
    ]);
    const stored: Record<string, unknown> = { a: player(1), c: player(30) };
    const differences = await compareWithStore(expected, async (id) => stored[id]);
    expect(differences.map((d) => [d.userId, d.problem])).toEqual([
      ['b', 'missing from the store'],
      ['c', 'differs'],
    ]);
  });

  it('ignores key order, which PostgreSQL jsonb does not keep', async () => {
    const expected = new Map([
      ['a', { gold: 1, xp: 2, level: 1, inventory: [{ id: 1, item: 'potion' }], purchases: 1 } as Player],
    ]);
    const reordered = { purchases: 1, inventory: [{ item: 'potion', id: 1 }], level: 1, xp: 2, gold: 1 };
    expect(await compareWithStore(expected, async () => reordered)).toEqual([]);
  });
});

describe('missingPurchases', () => {
  it('lists acknowledged purchases the stored inventory lacks', () => {
    const stored = { ...newPlayer(), inventory: [{ id: 1, item: 'potion' }] };
    expect(
      missingPurchases(stored, [
        { id: 1, item: 'potion' },
        { id: 2, item: 'sword' },
      ]),
    ).toEqual([{ id: 2, item: 'sword' }]);
    expect(missingPurchases(undefined, [{ id: 1, item: 'potion' }])).toEqual([{ id: 1, item: 'potion' }]);
  });
});

describe('readAll', () => {
  it('reads each player once, however often it is asked for', async () => {
    const reads: string[] = [];
    const stored = await readAll(['a', 'b', 'a', 'c', 'b'], async (id) => {
      reads.push(id);
      return player(id.charCodeAt(0));
    });
    expect(reads.sort()).toEqual(['a', 'b', 'c']);
    expect([...stored.keys()].sort()).toEqual(['a', 'b', 'c']);
  });
});

describe('duplicatePurchases and stateDigest', () => {
  it('finds a purchase key stored twice', () => {
    const inventory = [
      { id: 1, item: 'potion', key: 'k1' },
      { id: 2, item: 'potion', key: 'k2' },
      { id: 3, item: 'potion', key: 'k1' },
      { id: 4, item: 'sword' },
    ];
    expect(duplicatePurchases({ ...newPlayer(), inventory })).toEqual(['k1']);
  });

  it('gives equal data the same digest whatever the key order, and other data another', () => {
    const a = { gold: 1, xp: 2, level: 1, inventory: [{ id: 1, item: 'potion', key: 'k' }], purchases: 1 };
    const reordered = {
      purchases: 1,
      inventory: [{ key: 'k', item: 'potion', id: 1 }],
      level: 1,
      xp: 2,
      gold: 1,
    };
    expect(stateDigest(reordered)).toBe(stateDigest(a));
    expect(stateDigest({ ...a, gold: 2 })).not.toBe(stateDigest(a));
  });
});
