import { describe, expect, it } from 'vitest';
import { applyAction, ITEM_PRICES, levelFor, newPlayer, parseClientMessage } from '../src/game.js';

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
    const first = applyAction(player, { t: 'buy', item: 'shield' }, Math.random);
    const second = applyAction(player, { t: 'buy', item: 'potion' }, Math.random);
    expect(first).toEqual({ kind: 'purchased', purchase: { id: 1, item: 'shield' } });
    expect(second).toEqual({ kind: 'purchased', purchase: { id: 2, item: 'potion' } });
    expect(player.gold).toBe(100 - ITEM_PRICES.shield - ITEM_PRICES.potion);
    expect(player.inventory).toEqual([
      { id: 1, item: 'shield' },
      { id: 2, item: 'potion' },
    ]);
    expect(player.purchases).toBe(2);
  });

  it('a purchase the player cannot afford changes nothing', () => {
    const player = { ...newPlayer(), gold: ITEM_PRICES.sword - 1 };
    const before = structuredClone(player);
    const outcome = applyAction(player, { t: 'buy', item: 'sword' }, Math.random);
    expect(outcome.kind).toBe('rejected');
    expect(player).toEqual(before);
  });

  it('the purchase returned is a copy: changing it does not touch the inventory', () => {
    const player = { ...newPlayer(), gold: 100 };
    const outcome = applyAction(player, { t: 'buy', item: 'potion' }, Math.random);
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
    expect(parseClientMessage('{"t":"login","seq":2,"userId":"a","token":"x"}')).toEqual({
      t: 'login',
      seq: 2,
      userId: 'a',
      token: 'x',
    });
    expect(parseClientMessage('{"t":"buy","seq":3,"item":"sword","extra":1}')).toEqual({
      t: 'buy',
      seq: 3,
      item: 'sword',
    });
  });

  it.each([
    ['not json', 'not JSON'],
    ['[]', 'seq must be an integer'],
    ['{"t":"mine"}', 'seq must be an integer'],
    ['{"t":"buy","seq":1,"item":"toString"}', 'item must be one of'],
    ['{"t":"login","seq":1,"userId":""}', 'userId must be'],
    ['{"t":"login","seq":1,"userId":"a b"}', 'userId must be'],
    ['{"t":"teleport","seq":1}', 'unknown message type'],
  ])('refuses %s', (text, message) => {
    const parsed = parseClientMessage(text);
    expect(typeof parsed).toBe('string');
    expect(parsed).toContain(message);
  });
});
