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

/**
 * Something a player bought. `id` is unique per player (the purchase's number); `key` is the client's
 * idempotency key for the purchase, so a retried `buy` never buys twice. Items bought before keys existed
 * have none.
 */
export interface OwnedItem {
  id: number;
  item: ItemName;
  key?: string;
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

export type Action = { t: 'mine' } | { t: 'fight' } | { t: 'buy'; item: ItemName; key: string };

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

/** The item bought with idempotency key `key`, if any. */
export function purchaseByKey(player: Player, key: string): OwnedItem | undefined {
  // Newest first: a retry is almost always of a recent purchase.
  for (let i = player.inventory.length - 1; i >= 0; i--) {
    const owned = player.inventory[i]!;
    if (owned.key === key) return owned;
  }
  return undefined;
}

/**
 * Applies one action to the player in place (the session's user data is mutated, never replaced). A `buy`
 * whose key was already used is not applied again: the caller looks the key up first (`purchaseByKey`).
 */
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
      const purchase: OwnedItem = { id: player.purchases, item: action.item, key: action.key };
      player.inventory.push(purchase);
      return { kind: 'purchased', purchase: { ...purchase } };
    }
  }
}

// ---- Deltas: replies say what changed, not the whole state. ----

/** The player's fields other than the inventory. */
export type Scalars = Omit<Player, 'inventory'>;

export function scalarsOf(player: Player): Scalars {
  return { gold: player.gold, xp: player.xp, level: player.level, purchases: player.purchases };
}

/** The scalar fields that differ from `before`; undefined when none does. */
export function changedScalars(before: Scalars, player: Player): Partial<Scalars> | undefined {
  const changes: Partial<Scalars> = {};
  let changed = false;
  for (const key of Object.keys(before) as (keyof Scalars)[]) {
    if (player[key] !== before[key]) {
      changes[key] = player[key];
      changed = true;
    }
  }
  return changed ? changes : undefined;
}

// ---- Wire protocol (JSON text frames). Every request carries a `seq` that its reply echoes. ----

export type ClientMessage =
  | { t: 'login'; seq: number; userId: string; token?: string; auth?: string }
  | { t: 'state'; seq: number }
  | (Action & { seq: number });

/**
 * A change to the player's state. `v` is the state's version in this session: every reply that changes the
 * state carries the next version and the change (`changes`: new values of scalar fields; `added`: items
 * appended to the inventory). A client holding version `v - 1` applies it; any other client asks for
 * `{ t: 'state' }`.
 */
export interface Delta {
  v: number;
  changes?: Partial<Scalars>;
  added?: OwnedItem[];
}

export type ErrorCode =
  | 'BAD_REQUEST'
  | 'NOT_LOGGED_IN'
  | 'ALREADY_LOGGED_IN'
  | 'AUTH_FAILED'
  | 'RATE_LIMITED'
  | 'KEY_REUSED'
  | 'NOT_STORED'
  | 'STORE_UNAVAILABLE'
  | 'SHUTTING_DOWN'
  | 'INTERNAL';

/** Limits the server announces in its welcome, so a client can pace itself. */
export interface AnnouncedLimits {
  maxFrameBytes: number;
  maxPending: number;
  rateLimit: { perSecond: number; burst: number } | null;
}

export type ServerMessage =
  /** `resumed`: the reconnect token matched a session still in its grace period; nothing was reloaded. */
  | {
      t: 'welcome';
      seq: number;
      token: string;
      resumed: boolean;
      returning: boolean;
      v: number;
      state: Player;
      limits: AnnouncedLimits;
    }
  | ({ t: 'ok'; seq: number } & Delta)
  /**
   * Sent only once the purchase is stored: the acknowledgement a player can rely on. `replayed`: the key was
   * already used, this is the same purchase confirmed again (no new change).
   */
  | ({ t: 'purchased'; seq: number; purchase: OwnedItem; replayed?: true } & Delta)
  | { t: 'rejected'; seq: number; v: number; reason: string }
  | { t: 'state'; seq: number; v: number; state: Player }
  /**
   * `v` (and a change) are present when the player is logged in. `NOT_STORED` carries the purchase it applied
   * (`purchase`, `added`): applied, not yet stored; the same `buy` with the same key confirms it.
   */
  | ({
      t: 'error';
      seq: number | null;
      code: ErrorCode;
      message: string;
      purchase?: OwnedItem;
      retryAfterMs?: number;
    } & Partial<Delta>);

/**
 * Applies a reply to a client's copy of the state. Returns false when the reply does not follow from the
 * copy (a version was skipped): the client then asks for `{ t: 'state' }`.
 */
export function applyReply(copy: { v: number; state: Player }, reply: ServerMessage): boolean {
  if (reply.t === 'welcome' || reply.t === 'state') {
    copy.v = reply.v;
    copy.state = structuredClone(reply.state);
    return true;
  }
  if (reply.t === 'rejected' || reply.v === undefined || reply.v === copy.v) return true;
  if (reply.v !== copy.v + 1) return false;
  if (reply.changes !== undefined) Object.assign(copy.state, reply.changes);
  if (reply.added !== undefined) copy.state.inventory.push(...reply.added.map((item) => ({ ...item })));
  copy.v = reply.v;
  return true;
}

/** WebSocket close codes the server uses. 1006 (no close frame) is what a client sees after a heartbeat timeout. */
export const CLOSE_CODES = {
  /** The server is shutting down. */
  GOING_AWAY: 1001,
  /** The client kept sending after its requests were refused for the rate limit. */
  POLICY: 1008,
  /** A frame larger than `maxFrameBytes`. */
  TOO_BIG: 1009,
  /** The same player logged in, or resumed, on another connection (or their data changed on another server). */
  REPLACED: 4000,
  /** No successful login within `loginTimeoutMs`. */
  LOGIN_TIMEOUT: 4001,
  /** Replies piled up unread beyond `maxBufferedBytes` for longer than `slowReaderTimeoutMs`. */
  TOO_SLOW: 4002,
  /**
   * With several servers: the player logged in on another server, which took the player over (this server
   * stored the player first). Reconnect anywhere: the player is there.
   */
  HANDED_OFF: 4003,
} as const;

export const CLOSE_REPLACED = CLOSE_CODES.REPLACED;
export const CLOSE_GOING_AWAY = CLOSE_CODES.GOING_AWAY;

const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_AUTH_LENGTH = 512;

/** A frame the server could not take: the message to send back, and the request's `seq` when it had a valid one. */
export interface ParseFailure {
  error: string;
  seq: number | null;
}

/** Parses and validates a client frame. */
export function parseClientMessage(text: string): ClientMessage | ParseFailure {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { error: 'not JSON', seq: null };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { error: 'expected an object', seq: null };
  }
  const m = value as Record<string, unknown>;
  if (typeof m.seq !== 'number' || !Number.isSafeInteger(m.seq)) {
    return { error: 'seq must be an integer', seq: null };
  }
  const seq = m.seq;
  const fail = (error: string): ParseFailure => ({ error, seq });
  switch (m.t) {
    case 'login': {
      if (typeof m.userId !== 'string' || !NAME.test(m.userId)) {
        return fail('userId must be 1-64 letters, digits or _.:-');
      }
      const login: ClientMessage = { t: 'login', seq, userId: m.userId };
      if (m.token !== undefined) {
        if (typeof m.token !== 'string') return fail('token must be a string');
        if (m.token.length === 0 || m.token.length > 64) return fail('token must be 1-64 characters');
        login.token = m.token;
      }
      if (m.auth !== undefined) {
        if (typeof m.auth !== 'string') return fail('auth must be a string');
        if (m.auth.length > MAX_AUTH_LENGTH)
          return fail(`auth must be at most ${MAX_AUTH_LENGTH} characters`);
        login.auth = m.auth;
      }
      return login;
    }
    case 'mine':
    case 'fight':
    case 'state':
      return { t: m.t, seq };
    case 'buy':
      if (typeof m.item !== 'string' || !Object.hasOwn(ITEM_PRICES, m.item)) {
        return fail(`item must be one of ${ITEM_NAMES.join(', ')}`);
      }
      if (typeof m.key !== 'string' || !NAME.test(m.key)) {
        return fail('key (the purchase idempotency key) must be 1-64 letters, digits or _.:-');
      }
      return { t: 'buy', seq, item: m.item as ItemName, key: m.key };
    default:
      return fail('unknown message type');
  }
}

export function isParseFailure(value: ClientMessage | ParseFailure): value is ParseFailure {
  return 'error' in value;
}
