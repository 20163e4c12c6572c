/**
 * The game: what a player owns, what they can do, and the messages client and server exchange. Nothing here
 * knows about sockets or databases, so the rules read (and test) on their own.
 */

export const ITEM_PRICES = {
  potion: 5,
  arrows: 12,
  shield: 40,
  sword: 75,
} as const;

export type ItemName = keyof typeof ITEM_PRICES;

export const ITEM_NAMES = Object.keys(ITEM_PRICES) as ItemName[];

/** Something a player bought; `id` is unique per player (the purchase's number), so a purchase can be traced. */
export interface OwnedItem {
  id: number;
  item: ItemName;
}

/** A player's persisted data: what `session.userData` holds. JSON-compatible by construction. */
export interface Player {
  gold: number;
  xp: number;
  level: number;
  inventory: OwnedItem[];
  /** Number of purchases so far; the next purchase gets id `purchases + 1`. */
  purchases: number;
}

export function newPlayer(): Player {
  return { gold: 20, xp: 0, level: 1, inventory: [], purchases: 0 };
}

/** Random numbers, injectable so rules are testable. Returns a float in [0, 1). */
export type Random = () => number;

export type Action = { t: 'mine' } | { t: 'fight' } | { t: 'buy'; item: ItemName };

export type ActionOutcome =
  | { kind: 'changed' }
  | { kind: 'purchased'; purchase: OwnedItem }
  | { kind: 'rejected'; reason: string };

function between(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

export function levelFor(xp: number): number {
  return 1 + Math.floor(Math.sqrt(xp / 100));
}

/** Applies one action to the player in place (the session's user data is mutated, never replaced). */
export function applyAction(player: Player, action: Action, random: Random): ActionOutcome {
  switch (action.t) {
    case 'mine':
      player.gold += between(random, 1, 4) * player.level;
      return { kind: 'changed' };
    case 'fight': {
      player.xp += between(random, 5, 25);
      player.level = levelFor(player.xp);
      // Loot, now and then.
      if (random() < 0.25) player.gold += between(random, 1, 10);
      return { kind: 'changed' };
    }
    case 'buy': {
      const price = ITEM_PRICES[action.item];
      if (player.gold < price) {
        return { kind: 'rejected', reason: `${action.item} costs ${price} gold, you have ${player.gold}` };
      }
      player.gold -= price;
      player.purchases += 1;
      const purchase: OwnedItem = { id: player.purchases, item: action.item };
      player.inventory.push(purchase);
      return { kind: 'purchased', purchase: { ...purchase } };
    }
  }
}

// ---- Wire protocol (JSON text frames). Every request carries a `seq` the reply echoes. ----

export type ClientMessage =
  | { t: 'login'; seq: number; userId: string; token?: string }
  | (Action & { seq: number });

export type ServerMessage =
  /** `resumed`: the reconnect token matched a session still in its grace period; nothing was reloaded. */
  | { t: 'welcome'; seq: number; token: string; resumed: boolean; returning: boolean; state: Player }
  | { t: 'ok'; seq: number; state: Player }
  /** Sent only once the purchase is stored: the acknowledgement a player can rely on. */
  | { t: 'purchased'; seq: number; purchase: OwnedItem; state: Player }
  | { t: 'rejected'; seq: number; reason: string; state: Player }
  /** `state` is present when the player is logged in, so the client's view stays current. */
  | { t: 'error'; seq: number | null; code: string; message: string; state?: Player };

/** WebSocket close codes the server uses besides the standard ones. */
export const CLOSE_REPLACED = 4000;
export const CLOSE_GOING_AWAY = 1001;

const USER_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

/** Parses and validates a client frame; returns an error message for anything malformed. */
export function parseClientMessage(text: string): ClientMessage | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof value !== 'object' || value === null) return 'expected an object';
  const m = value as Record<string, unknown>;
  if (typeof m.seq !== 'number' || !Number.isSafeInteger(m.seq)) return 'seq must be an integer';
  switch (m.t) {
    case 'login':
      if (typeof m.userId !== 'string' || !USER_ID.test(m.userId)) {
        return 'userId must be 1-64 letters, digits or _.:-';
      }
      if (m.token !== undefined && (typeof m.token !== 'string' || m.token.length > 64)) {
        return 'token must be a string';
      }
      return m.token === undefined
        ? { t: 'login', seq: m.seq, userId: m.userId }
        : { t: 'login', seq: m.seq, userId: m.userId, token: m.token };
    case 'mine':
    case 'fight':
      return { t: m.t, seq: m.seq };
    case 'buy':
      if (typeof m.item !== 'string' || !Object.hasOwn(ITEM_PRICES, m.item)) {
        return `item must be one of ${ITEM_NAMES.join(', ')}`;
      }
      return { t: 'buy', seq: m.seq, item: m.item as ItemName };
    default:
      return 'unknown message type';
  }
}
