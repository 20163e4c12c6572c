import { describe, expect, it } from 'vitest';
import {
  applyAction,
  applyReply,
  ITEM_PRICES,
  levelFor,
  newPlayer,
  parseClientMessage,
  purchaseByKey,
} from '../src/game.js';

/** A fixed sequence of "random" numbers, repeated. */
function sequence(...values: number[]) {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('game rules', () => {
  it('mining adds gold scaled by level', () => {
    const player = { ...newPlayer(), level: 3 };
    applyAction(player, { t: 'mine' }, sequence(0.99));
    expect(player.gold).toBe(20 + 4 * 3);
  });

  it('fighting adds xp and recomputes the level', () => {
    const player = { ...newPlayer(), xp: 395 };
    applyAction(player, { t: 'fight' }, sequence(0, 0.9));
    expect(player.xp).toBe(400);
    expect(player.level).toBe(levelFor(400));
    expect(player.level).toBe(3);
  });

  it('a purchase spends gold and adds an item with the next purchase id', () => {
    const player = { ...newPlayer(), gold: 100 };
    const first = applyAction(player, { t: 'buy', item: 'shield', key: 'a' }, Math.random);
    const second = applyAction(player, { t: 'buy', item: 'potion', key: 'b' }, Math.random);
    expect(first).toEqual({ kind: 'purchased', purchase: { id: 1, item: 'shield', key: 'a' } });
    expect(second).toEqual({ kind: 'purchased', purchase: { id: 2, item: 'potion', key: 'b' } });
    expect(player.gold).toBe(100 - ITEM_PRICES.shield - ITEM_PRICES.potion);
    expect(player.inventory).toEqual([
      { id: 1, item: 'shield', key: 'a' },
      { id: 2, item: 'potion', key: 'b' },
    ]);
    expect(player.purchases).toBe(2);
    expect(purchaseByKey(player, 'b')).toEqual({ id: 2, item: 'potion', key: 'b' });
    expect(purchaseByKey(player, 'c')).toBeUndefined();
  });

  it('a purchase the player cannot afford changes nothing', () => {
    const player = { ...newPlayer(), gold: ITEM_PRICES.sword - 1 };
    const before = structuredClone(player);
    const outcome = applyAction(player, { t: 'buy', item: 'sword', key: 'k' }, Math.random);
    expect(outcome.kind).toBe('rejected');
    expect(player).toEqual(before);
  });

  it('the purchase returned is a copy: changing it does not touch the inventory', () => {
    const player = { ...newPlayer(), gold: 100 };
    const outcome = applyAction(player, { t: 'buy', item: 'potion', key: 'k' }, Math.random);
    if (outcome.kind !== 'purchased') throw new Error('expected a purchase');
    outcome.purchase.id = 99;
    expect(player.inventory[0]!.id).toBe(1);
  });
});

describe('parseClientMessage', () => {
  it('accepts the documented messages', () => {
    expect(parseClientMessage('{"t":"login","seq":1,"userId":"bot-1"}')).toEqual({
      t: 'login',
      seq: 1,
      userId: 'bot-1',
    });
    expect(parseClientMessage('{"t":"login","seq":2,"userId":"a","token":"x","auth":"s"}')).toEqual({
      t: 'login',
      seq: 2,
      userId: 'a',
      token: 'x',
      auth: 's',
    });
    expect(parseClientMessage('{"t":"buy","seq":3,"item":"sword","key":"k-1","extra":1}')).toEqual({
      t: 'buy',
      seq: 3,
      item: 'sword',
      key: 'k-1',
    });
    expect(parseClientMessage('{"t":"state","seq":4}')).toEqual({ t: 'state', seq: 4 });
  });

  it.each([
    ['not json', 'not JSON', null],
    ['[]', 'expected an object', null],
    ['{"t":"mine"}', 'seq must be an integer', null],
    ['{"t":"buy","seq":1,"item":"toString","key":"k"}', 'item must be one of', 1],
    ['{"t":"buy","seq":2,"item":"potion"}', 'key (the purchase idempotency key)', 2],
    ['{"t":"login","seq":3,"userId":""}', 'userId must be', 3],
    ['{"t":"login","seq":4,"userId":"a b"}', 'userId must be', 4],
    [`{"t":"login","seq":5,"userId":"a","token":"${'x'.repeat(65)}"}`, 'token must be 1-64 characters', 5],
    ['{"t":"login","seq":6,"userId":"a","token":7}', 'token must be a string', 6],
    ['{"t":"teleport","seq":7}', 'unknown message type', 7],
  ])('refuses %s, keeping a valid seq', (text, message, seq) => {
    const parsed = parseClientMessage(text);
    expect(parsed).toMatchObject({ seq });
    expect((parsed as { error: string }).error).toContain(message);
  });
});

describe('applyReply', () => {
  it('applies a delta that follows the copy, and refuses one that skips a version', () => {
    const copy = { v: 0, state: newPlayer() };
    expect(applyReply(copy, { t: 'ok', seq: 1, v: 1, changes: { gold: 30 } })).toBe(true);
    expect(
      applyReply(copy, {
        t: 'purchased',
        seq: 2,
        v: 2,
        purchase: { id: 1, item: 'potion', key: 'p' },
        changes: { gold: 25, purchases: 1 },
        added: [{ id: 1, item: 'potion', key: 'p' }],
      }),
    ).toBe(true);
    expect(copy).toEqual({
      v: 2,
      state: { ...newPlayer(), gold: 25, purchases: 1, inventory: [{ id: 1, item: 'potion', key: 'p' }] },
    });
    expect(applyReply(copy, { t: 'rejected', seq: 3, v: 2, reason: 'no' })).toBe(true);
    expect(applyReply(copy, { t: 'ok', seq: 4, v: 4, changes: { gold: 1 } })).toBe(false);
    expect(copy.state.gold).toBe(25);
  });
});
