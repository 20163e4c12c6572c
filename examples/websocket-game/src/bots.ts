/**
 * Bot players. Each one logs in over a real WebSocket, plays random actions at a human-ish pace, drops its
 * connection now and then (coming back within the grace period, after it, or from a second connection), and
 * keeps its own copy of the player from the welcome and the deltas of the replies: the last state the server
 * acknowledged, which is what the store must hold in the end.
 *
 * Adversarial bots play the same game and, now and then, misbehave the way real clients do: drop the
 * connection with requests in flight, resume on a new connection mid-request, flood the server with a burst
 * of pipelined requests, stop reading for a while, log in twice at once. After each trick they check, from
 * what the server told them, that no request was applied without being answered (or, when their own
 * connection dropped, that the state is explained by the requests whose answer they lost), that no purchase
 * was made twice, and that every acknowledged purchase is still there.
 *
 * Every bot survives a server that goes away unexpectedly (a crash): it reconnects when the server is back and
 * measures how much of its unacknowledged play was lost.
 */
import { isDeepStrictEqual } from 'node:util';
import { WebSocket } from 'ws';
import { authToken } from './auth.js';
import {
  applyReply,
  CLOSE_CODES,
  type ClientMessage,
  ITEM_NAMES,
  ITEM_PRICES,
  type ItemName,
  levelFor,
  type OwnedItem,
  type Player,
  type Random,
  type ServerMessage,
} from './game.js';

export const BOT_KINDS = ['player', 'dropper', 'resumer', 'flooder', 'slowReader', 'doubleLogin'] as const;
export type BotKind = (typeof BOT_KINDS)[number];
export const ADVERSARIAL_KINDS = BOT_KINDS.filter((kind) => kind !== 'player');

export interface BotOptions {
  url: string;
  /**
   * Several servers sharing a presence: each connection goes to one of them at random (then `url` is unused).
   * A player who comes back elsewhere is taken over from the server that held it.
   */
  urls?: readonly string[];
  userId: string;
  random: Random;
  kind?: BotKind;
  /** The server's grace period: pauses are chosen to land within it, or clearly after it. */
  graceMs: number;
  /** Pause between two actions, uniformly in this range (ms). */
  thinkMs?: [number, number];
  /** Chance per action of dropping the connection (cleanly, nothing outstanding). */
  disconnectChance?: number;
  /** Chance per action of an adversarial bot's trick. */
  trickChance?: number;
  /** Sent as `auth` with every login (the token the game's `authenticate` hook checks). */
  auth?: string;
  /** Prefix of purchase keys, unique to the run. */
  keyPrefix?: string;
  /** How long to keep trying to reach a server that went away unexpectedly. Default 60 s. */
  reconnectForMs?: number;
  /** Called for every purchase the server acknowledged as stored. */
  onPurchase?: (userId: string, purchase: OwnedItem) => void;
  /**
   * Shared by a fleet: once one bot hears the server is shutting down, none waits for it to come back (a
   * server that went away without saying so, a crash, is waited for).
   */
  shared?: { serverGone: boolean };
}

export interface BotCounters {
  actions: number;
  purchases: number;
  /** Purchases confirmed again for a retried key (after NOT_STORED, or a reply lost with its connection). */
  replayed: number;
  rejected: number;
  /** Replies refusing a request, by code; none of them applied anything (NOT_STORED applied, unconfirmed). */
  rateLimited: number;
  notStored: number;
  storeUnavailable: number;
  /** Closes by the server, by code. */
  closedFlood: number;
  closedReplaced: number;
  closedSlow: number;
  /** Closed because the player logged in on another server, which took the player over (4003). */
  closedHandedOff: number;
  /** Connections lost without a close frame (a crash, a dropped socket). */
  connectionsLost: number;
  /** Reconnects that resumed the session within the grace period. */
  resumed: number;
  /** Logins after the session had ended: the data came back from the store. */
  reloaded: number;
  /** Logins from a second connection while the first was still open. */
  takeovers: number;
  /** Adversarial tricks played. */
  tricks: number;
  /** Logins after the server went away unexpectedly and came back. */
  crashReturns: number;
  /** Actions acknowledged before a crash that the store did not have after it (unacknowledged play). */
  lostActions: number;
  /** Players who lost some of it. */
  lostPlayers: number;
  /** Acknowledged purchases missing from the state the server later sent. */
  lostPurchases: number;
  /** A state the server sent that its earlier replies do not explain (lost or invented changes). */
  mismatches: number;
  errors: number;
}

function zeroCounters(): BotCounters {
  return {
    actions: 0,
    purchases: 0,
    replayed: 0,
    rejected: 0,
    rateLimited: 0,
    notStored: 0,
    storeUnavailable: 0,
    closedFlood: 0,
    closedReplaced: 0,
    closedSlow: 0,
    closedHandedOff: 0,
    connectionsLost: 0,
    resumed: 0,
    reloaded: 0,
    takeovers: 0,
    tricks: 0,
    crashReturns: 0,
    lostActions: 0,
    lostPlayers: 0,
    lostPurchases: 0,
    mismatches: 0,
    errors: 0,
  };
}

/** How long a request may wait for its reply: a slow store (FerretDB) can keep purchases queued for many seconds. */
const REPLY_TIMEOUT_MS = 60_000;
/** Upper bound on steps per bot, whatever the duration. */
const MAX_STEPS = 1_000_000;
/** How long the history of acknowledged states reaches back, for measuring a crash's loss. */
const HISTORY_MS = 120_000;
const HISTORY_MAX = 4000;

type Reply = ServerMessage;
type Request = ClientMessage extends infer M ? (M extends unknown ? Omit<M, 'seq'> : never) : never;

class ServerGone extends Error {
  override name = 'ServerGone';
}

/** The connection closed before the reply came: the request's fate is unknown. */
class LinkLost extends Error {
  override name = 'LinkLost';
  constructor(readonly code: number) {
    super(`connection closed (${code}) before the reply`);
  }
}

interface Pending {
  request: Request;
  resolve(reply: Reply): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

interface Link {
  ws: WebSocket;
  pending: Map<number, Pending>;
  /** Resolves with the close code. */
  closed: Promise<number>;
  closeCode: number | undefined;
  /** This bot closed it on purpose. */
  closedByUs: boolean;
  /** When the close was seen (`performance.now()`). */
  closedAt: number | undefined;
}

/** One acknowledged state, compactly: the inventory only grows, so its length identifies it. */
interface HistoryEntry {
  at: number;
  gold: number;
  xp: number;
  level: number;
  purchases: number;
  inventory: number;
  /** Requests sent after this state whose replies were lost with their connection: some may have been applied. */
  unknownAfter?: Request[];
}

export class Bot {
  readonly userId: string;
  readonly kind: BotKind;
  readonly counters: BotCounters = zeroCounters();
  /** Whether the first login found data from an earlier run, and what it found. */
  returning = false;
  firstState: Player | undefined;
  /** Purchases the server confirmed as stored. */
  readonly acknowledged: OwnedItem[] = [];
  /** When the oldest action this player lost (acknowledged, then gone from the store after a crash) was told. */
  lostSince: number | undefined;
  /** The last loss, described. */
  lastLoss: string | undefined;
  /** The server said it is shutting down (to this bot or, through `shared`, to any bot of the fleet). */
  get serverGone(): boolean {
    return this.#shared.serverGone;
  }
  set serverGone(gone: boolean) {
    this.#shared.serverGone ||= gone;
  }
  readonly #shared: { serverGone: boolean };
  lastError: string | undefined;
  readonly #options: Required<Omit<BotOptions, 'onPurchase' | 'auth' | 'shared' | 'urls'>> &
    Pick<BotOptions, 'onPurchase' | 'auth' | 'urls'>;
  #view: { v: number; state: Player } | undefined;
  #link: Link | undefined;
  #token: string | undefined;
  #seq = 0;
  #stopped = false;
  #purchaseCount = 0;
  /** Keys of this player's purchases: from earlier runs (first login) and sent in this one. */
  readonly #knownKeys = new Set<string>();
  readonly #acknowledgedKeys = new Set<string>();
  /** Purchases sent and not confirmed (NOT_STORED, or the reply was lost): retried with the same key. */
  readonly #unconfirmed = new Map<string, ItemName>();
  /** A reply did not follow from the copy: ask for the full state. */
  #outOfSync = false;
  /** Requests whose reply was lost with the connection (their fate is unknown). */
  #unknown: Request[] = [];
  /**
   * Requests of unknown fate that a later state did not show. After a crash they can still land: the killed
   * server's writes in flight reach the store after the restart (version fencing then refuses the newer
   * server's stale write, and the player is loaded again). Kept for a minute.
   */
  #uncertain: { at: number; request: Request }[] = [];
  #history: HistoryEntry[] = [];

  constructor(options: BotOptions) {
    this.userId = options.userId;
    this.kind = options.kind ?? 'player';
    this.#shared = options.shared ?? { serverGone: false };
    this.#options = {
      kind: 'player',
      thinkMs: [100, 400],
      disconnectChance: 1 / 60,
      trickChance: 1 / 10,
      keyPrefix: 'k',
      reconnectForMs: 60_000,
      ...options,
    };
  }

  /** The last state the server acknowledged to this player; undefined until the first login. */
  get state(): Player | undefined {
    return this.#view?.state;
  }

  get online(): boolean {
    return (
      this.#link !== undefined && this.#link.ws.readyState === WebSocket.OPEN && this.#view !== undefined
    );
  }

  /** Ends the run after the current step; the connection stays open. */
  stop(): void {
    this.#stopped = true;
  }

  /** Plays until `deadline` (a `performance.now()` time) or `stop()`; resolves with no request outstanding. */
  async run(deadline: number): Promise<void> {
    const active = () => !this.#stopped && !this.serverGone && performance.now() < deadline;
    try {
      await this.#loginWithRetry(undefined, deadline);
      for (let step = 0; step < MAX_STEPS && active(); step++) {
        const [min, max] = this.#options.thinkMs;
        await pause(Math.min(this.#between(min, max), deadline - performance.now()));
        if (!active()) break;
        try {
          await this.#step(deadline);
        } catch (error) {
          if (!(error instanceof LinkLost)) throw error;
          // Handled on the next step: reconnect and check what the server kept.
        }
      }
      // Leave nothing half-done: come back after a lost connection, and get the full state if out of sync,
      // so that the last state this bot holds is one the server acknowledged.
      if (!this.serverGone && !this.#stopped) await this.#settle(deadline);
    } catch (error) {
      if (!(error instanceof ServerGone)) this.#error(error instanceof Error ? error.message : String(error));
    }
  }

  /** Closes the connection (used after the server stopped, or when the run is abandoned). */
  async close(): Promise<void> {
    const link = this.#link;
    this.#link = undefined;
    if (link !== undefined) await closeLink(link);
  }

  async #step(deadline: number): Promise<void> {
    if (this.#linkLost()) return this.#recover(deadline);
    if (this.#outOfSync) return this.#refresh();
    if (this.#unconfirmed.size > 0 && this.#options.random() < 0.5) return this.#retryPurchase();
    const roll = this.#options.random();
    // An adversarial bot's first move is a trick, so that every kind shows up in every run, however short.
    const trickChance =
      this.kind === 'player' ? 0 : this.counters.tricks === 0 ? 1 : this.#options.trickChance;
    if (roll < trickChance) return this.#trick(deadline);
    if (roll < trickChance + this.#options.disconnectChance) return this.#dropAndReturn(deadline);
    return this.#act();
  }

  async #settle(deadline: number): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        if (this.#linkLost()) await this.#recover(deadline + this.#options.reconnectForMs);
        else if (this.#outOfSync) await this.#refresh();
        else return;
      } catch (error) {
        if (!(error instanceof LinkLost)) throw error;
      }
    }
  }

  #linkLost(): boolean {
    const link = this.#link;
    return link === undefined || link.ws.readyState !== WebSocket.OPEN;
  }

  // ---- Playing ----

  #nextKey(): string {
    return `${this.#options.keyPrefix}-${this.userId}-${++this.#purchaseCount}`;
  }

  #chooseAction(): Request {
    const random = this.#options.random;
    const gold = this.#view?.state.gold ?? 0;
    const affordable = ITEM_NAMES.filter((item) => ITEM_PRICES[item] <= gold);
    const roll = random();
    if (affordable.length > 0 && roll < 0.25) {
      return { t: 'buy', item: affordable[Math.floor(random() * affordable.length)]!, key: this.#nextKey() };
    }
    // Now and then, something the player cannot afford: the server must refuse it and change nothing.
    if (roll < 0.3) return { t: 'buy', item: 'sword', key: this.#nextKey() };
    return { t: random() < 0.6 ? 'mine' : 'fight' };
  }

  async #act(request: Request = this.#chooseAction()): Promise<void> {
    if (request.t === 'buy') this.#knownKeys.add(request.key);
    let reply: Reply;
    try {
      reply = await this.#request(request);
    } catch (error) {
      if (error instanceof LinkLost) this.#lost([request]);
      throw error;
    }
    this.#count(request, reply);
  }

  async #retryPurchase(): Promise<void> {
    const [key, item] = this.#unconfirmed.entries().next().value as [string, ItemName];
    await this.#act({ t: 'buy', item, key });
  }

  /** Counts a reply and follows up on what it means for this player. */
  #count(request: Request, reply: Reply): void {
    if (request.t !== 'login' && request.t !== 'state') this.counters.actions++;
    switch (reply.t) {
      case 'purchased':
        this.#unconfirmed.delete(reply.purchase.key ?? '');
        if (reply.replayed) this.counters.replayed++;
        if (!this.#acknowledgedKeys.has(reply.purchase.key ?? '')) {
          this.counters.purchases++;
          this.#acknowledgedKeys.add(reply.purchase.key ?? '');
          this.acknowledged.push({ ...reply.purchase });
          this.#options.onPurchase?.(this.userId, reply.purchase);
        }
        break;
      case 'rejected':
        this.counters.rejected++;
        if (request.t === 'buy') this.#unconfirmed.delete(request.key);
        break;
      case 'error':
        switch (reply.code) {
          case 'NOT_STORED':
            // Applied, not stored yet: the same key confirms it later, without buying twice.
            this.counters.notStored++;
            if (request.t === 'buy') this.#unconfirmed.set(request.key, request.item);
            break;
          case 'RATE_LIMITED':
            this.counters.rateLimited++;
            if (request.t === 'buy') this.#unconfirmed.set(request.key, request.item);
            break;
          case 'SHUTTING_DOWN':
            // The server is going away: not a failure of this player, just the end of the game.
            this.serverGone = true;
            break;
          default:
            this.#error(`${reply.code}: ${reply.message}`);
        }
        break;
    }
  }

  async #refresh(): Promise<void> {
    const reply = await this.#request({ t: 'state' });
    if (reply.t !== 'state') throw new Error(`state refused: ${JSON.stringify(reply)}`);
    this.#outOfSync = false;
  }

  async #dropAndReturn(deadline: number): Promise<void> {
    const random = this.#options.random;
    const grace = this.#options.graceMs;
    const roll = random();
    if (roll < 0.1) {
      // A second device: log in again without the token while the first connection is still open.
      const old = this.#link;
      this.#link = undefined;
      await this.#loginWithRetry(undefined, deadline, { expectSame: true });
      this.counters.takeovers++;
      if (old !== undefined) await closeLink(old, 5000);
      return;
    }
    const afterGrace = roll < 0.35;
    const away = afterGrace
      ? grace + this.#between(300, 800)
      : this.#between(20, Math.max(40, Math.min(500, grace / 3)));
    await this.close();
    if (performance.now() + away >= deadline) {
      // Gone for the rest of the run: the server keeps the session for the grace period, or until shutdown.
      this.#stopped = true;
      return;
    }
    await pause(away);
    if (this.#stopped) return;
    await this.#loginWithRetry(this.#token, deadline, { expectSame: true });
  }

  // ---- Tricks of adversarial bots ----

  async #trick(deadline: number): Promise<void> {
    this.counters.tricks++;
    switch (this.kind) {
      case 'dropper':
        return this.#dropMidRequest(deadline);
      case 'resumer':
        return this.#resumeMidRequest(deadline);
      case 'flooder':
        return this.#flood(deadline);
      case 'slowReader':
        return this.#readSlowly(deadline);
      case 'doubleLogin':
        return this.#loginTwice(deadline);
      case 'player':
        return;
    }
  }

  /** A few requests pipelined, then the socket destroyed with their replies outstanding. */
  async #dropMidRequest(deadline: number): Promise<void> {
    const link = this.#currentLink();
    const requests = Array.from({ length: this.#between(2, 5) }, () => this.#chooseAction());
    for (const request of requests) if (request.t === 'buy') this.#knownKeys.add(request.key);
    for (const request of requests) this.#send(link, request).catch(() => {});
    link.closedByUs = true;
    link.ws.terminate();
    await link.closed;
    this.#lost(requests);
    // Back within the grace period (the session resumes) or after it (loaded from the store).
    const away =
      this.#options.random() < 0.7 ? this.#between(0, 100) : this.#options.graceMs + this.#between(200, 500);
    if (performance.now() + away >= deadline) return this.#recover(deadline + this.#options.reconnectForMs);
    await pause(away);
    await this.#recover(deadline);
  }

  /**
   * A purchase and some fights sent on one connection; before their replies, the player resumes on a second
   * connection. The first is replaced: none of its requests may be applied after the second is welcomed.
   */
  async #resumeMidRequest(deadline: number): Promise<void> {
    const old = this.#currentLink();
    const requests: Request[] = [{ t: 'buy', item: 'potion', key: this.#nextKey() }];
    for (let i = this.#between(1, 6); i > 0; i--) requests.push({ t: 'fight' });
    this.#knownKeys.add((requests[0] as { key: string }).key);
    for (const request of requests) this.#send(old, request).catch(() => {});
    this.#link = undefined;
    this.#lost(requests);
    await this.#loginWithRetry(this.#token, deadline, { allowUnknown: true });
    // Nothing of the old connection may land after the welcome: the state is still the welcome's.
    const welcomed = structuredClone(this.#view!);
    const now = await this.#request({ t: 'state' });
    if (now.t === 'state' && (now.v !== welcomed.v || !isDeepStrictEqual(now.state, welcomed.state))) {
      this.counters.mismatches++;
      this.lastError = `a request of a replaced connection was applied after the resume was welcomed`;
    }
    this.#outOfSync = false;
    await closeLink(old, 5000);
  }

  /**
   * A burst of pipelined requests in one write, far over the rate limit. Every request must be answered or
   * not applied: with all replies read (or the server's close after its last reply), the copy kept from the
   * replies must equal what the server holds.
   */
  async #flood(deadline: number): Promise<void> {
    const link = this.#currentLink();
    const requests: Request[] = [];
    for (let i = this.#between(60, 120); i > 0; i--) {
      requests.push(
        this.#options.random() < 0.3 ? { t: 'buy', item: 'potion', key: this.#nextKey() } : { t: 'mine' },
      );
    }
    for (const request of requests) if (request.t === 'buy') this.#knownKeys.add(request.key);
    const socket = (link.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    socket.cork();
    const replies = this.#sendAll(link, requests);
    socket.uncork();
    const unanswered = await replies;
    if (unanswered.length > 0 && link.closeCode !== CLOSE_CODES.POLICY) {
      // Not the server's cut-off (a crash, say): what had no answer may have been applied.
      this.#lost(unanswered);
      return;
    }
    // Back off, as a client told RATE_LIMITED should.
    // (Not past the end of the run: the copy is exact either way, the check below is only a check.)
    await pause(Math.min(this.#between(1000, 2000), Math.max(200, deadline - performance.now())));
    if (link.ws.readyState === WebSocket.OPEN) {
      await this.#checkedRefresh();
      return;
    }
    // Cut off (1008) after its last reply: nothing unanswered was applied, so the resumed state equals the copy.
    this.#unknown = [];
    this.#link = undefined;
    await this.#loginWithRetry(this.#token, deadline, { expectSame: true });
  }

  /** Sends every request (pipelined) and counts the replies; resolves with those left unanswered, in order. */
  async #sendAll(link: Link, requests: readonly Request[]): Promise<Request[]> {
    const answered = await Promise.all(
      requests.map((request) =>
        this.#send(link, request).then(
          (reply) => {
            this.#count(request, reply);
            return true;
          },
          (error: unknown) => {
            if (!(error instanceof LinkLost)) throw error;
            return false;
          },
        ),
      ),
    );
    return requests.filter((_, i) => !answered[i]);
  }

  /** Stops reading for a while with requests outstanding, then reads everything: all replies, in order. */
  async #readSlowly(deadline: number): Promise<void> {
    const link = this.#currentLink();
    link.ws.pause();
    const requests: Request[] = [];
    for (let i = this.#between(5, 15); i > 0; i--)
      requests.push(i % 3 === 0 ? { t: 'state' } : { t: 'mine' });
    const replies = this.#sendAll(link, requests);
    await pause(Math.min(this.#between(500, 1500), Math.max(100, deadline - performance.now())));
    link.ws.resume();
    const unanswered = await replies;
    if (unanswered.length > 0) this.#lost(unanswered);
    else if (link.ws.readyState === WebSocket.OPEN) await this.#checkedRefresh();
  }

  /** Two connections log in at the same moment; the later login wins and the other is closed (4000). */
  async #loginTwice(deadline: number): Promise<void> {
    const old = this.#link;
    this.#link = undefined;
    const [a, b] = await Promise.all([this.#connect(deadline), this.#connect(deadline)]);
    const login: Request = { t: 'login', userId: this.userId, ...this.#auth() };
    const [ra, rb] = await Promise.all([
      this.#send(a, login).catch((error: unknown) => error as Error),
      this.#send(b, login).catch((error: unknown) => error as Error),
    ]);
    this.counters.takeovers++;
    if (old !== undefined) await closeLink(old, 5000);
    // Whichever is still open after the other was replaced is the player's connection.
    await withTimeout(Promise.race([a.closed, b.closed]), 5000).catch(() => {});
    const winner = a.ws.readyState === WebSocket.OPEN ? a : b;
    const loser = winner === a ? b : a;
    await closeLink(loser, 5000);
    const welcome = winner === a ? ra : rb;
    this.#link = winner;
    if (welcome instanceof Error || welcome.t !== 'welcome') {
      await closeLink(winner, 5000);
      this.#link = undefined;
      await this.#loginWithRetry(undefined, deadline, { expectSame: true });
      return;
    }
    this.#welcomed(welcome, { expectSame: true });
  }

  /** Asks for the full state and checks it equals the copy kept from the replies. */
  async #checkedRefresh(): Promise<void> {
    const before = structuredClone(this.#view!);
    const reply = await this.#request({ t: 'state' });
    if (reply.t !== 'state') return;
    if (!this.#outOfSync && (reply.v !== before.v || !isDeepStrictEqual(reply.state, before.state))) {
      this.counters.mismatches++;
      this.lastError = `state differs from the replies: had v${before.v} ${JSON.stringify(before.state)}, got v${reply.v} ${JSON.stringify(reply.state)}`;
    }
    this.#outOfSync = false;
  }

  // ---- Connections and logins ----

  #currentLink(): Link {
    const link = this.#link;
    if (link === undefined || link.ws.readyState !== WebSocket.OPEN)
      throw new LinkLost(link?.closeCode ?? 1006);
    return link;
  }

  #auth(): { auth?: string } {
    return this.#options.auth === undefined ? {} : { auth: this.#options.auth };
  }

  /** Remembers requests whose replies were lost with the connection; the next login checks against them. */
  #lost(requests: Request[]): void {
    this.#unknown.push(...requests);
    const last = this.#history.at(-1);
    if (last !== undefined) {
      last.unknownAfter ??= [];
      last.unknownAfter.push(...requests);
    }
    for (const request of requests) if (request.t === 'buy') this.#unconfirmed.set(request.key, request.item);
  }

  /** After a connection was lost: reconnect (waiting for a server that went away to come back) and log in. */
  async #recover(deadline: number): Promise<void> {
    const link = this.#link;
    this.#link = undefined;
    // Closed because the player went to another server (4003) is a handoff, not a server gone unexpectedly.
    const unexpected = link !== undefined && !link.closedByUs && link.closeCode !== CLOSE_CODES.HANDED_OFF;
    if (link !== undefined) await closeLink(link, 2000);
    await this.#loginWithRetry(
      this.#token,
      Math.max(deadline, performance.now() + this.#options.reconnectForMs),
      { allowUnknown: true, unexpected },
    );
  }

  /** Logs in, retrying while the server is unreachable or its store is (STORE_UNAVAILABLE), until `deadline`. */
  async #loginWithRetry(token: string | undefined, deadline: number, check: LoginCheck = {}): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        this.#link ??= await this.#connect(deadline);
        const reply = await this.#request(
          token === undefined
            ? { t: 'login', userId: this.userId, ...this.#auth() }
            : { t: 'login', userId: this.userId, token, ...this.#auth() },
        );
        if (reply.t === 'welcome') {
          this.#welcomed(reply, { ...check, withToken: token !== undefined });
          return;
        }
        if (reply.t === 'error' && reply.code === 'SHUTTING_DOWN') {
          this.serverGone = true;
          throw new ServerGone('the server is shutting down');
        }
        if (reply.t === 'error' && reply.code === 'STORE_UNAVAILABLE') this.counters.storeUnavailable++;
        else if (reply.t === 'error' && reply.code === 'RATE_LIMITED') this.counters.rateLimited++;
        else throw new Error(`login refused: ${JSON.stringify(reply)}`);
      } catch (error) {
        if (!(error instanceof LinkLost) && !(error instanceof Unreachable)) throw error;
        if (this.serverGone) throw new ServerGone('server gone');
        const link = this.#link;
        this.#link = undefined;
        if (link !== undefined) await closeLink(link, 1000);
      }
      // Past the end of the run too: a player who has to come back (after a crash, or while the store is
      // unavailable) does, so that the run ends with every player's state known. Bounded all the same.
      if (performance.now() > deadline + this.#options.reconnectForMs)
        throw new Error(`could not log in again within the run (${attempt} attempts)`);
      await pause(Math.min(1000, 100 * attempt));
    }
  }

  /** Takes the welcome's state as the copy, after checking it against what this bot was told before. */
  #welcomed(welcome: Extract<Reply, { t: 'welcome' }>, check: LoginCheck): void {
    const loaded = welcome.state;
    const previous = this.#view;
    const unknown = this.#unknown;
    this.#unknown = [];
    const keys = loaded.inventory.map((item) => item.key).filter((key): key is string => key !== undefined);
    if (previous === undefined) {
      this.returning = welcome.returning;
      this.firstState = structuredClone(loaded);
      for (const key of keys) this.#knownKeys.add(key);
    } else {
      if (welcome.resumed) this.counters.resumed++;
      else if (check.withToken === true) this.counters.reloaded++;
      this.#checkInvariants(loaded, keys);
      if (!isDeepStrictEqual(loaded, previous.state)) {
        const now = performance.now();
        this.#uncertain = this.#uncertain.filter((entry) => entry.at > now - 60_000);
        const uncertain = welcome.resumed ? [] : this.#uncertain.map((entry) => entry.request);
        const explained =
          (check.allowUnknown === true &&
            unknown.length > 0 &&
            explainedBy(previous.state, unknown, loaded)) ||
          (uncertain.length > 0 && explainedBy(previous.state, [...uncertain, ...unknown], loaded));
        if (!explained) {
          // Not resumed: the data came from the store. Older than what this player was told means the server
          // lost unacknowledged play (a crash); the demo fails any such loss in a run without one.
          if (!welcome.resumed) {
            this.#measureLoss(loaded, previous.state);
            if (this.lastLoss !== undefined && !this.lastLoss.includes(' at '))
              this.lastLoss += ` at ${new Date().toISOString()} (login with${check.withToken ? '' : 'out'} a token, ${check.unexpected ? 'after a lost connection' : 'after leaving'})`;
          } else {
            this.counters.mismatches++;
            this.lastError = `login state differs: had ${JSON.stringify(previous.state)}, got ${JSON.stringify(loaded)}`;
          }
        }
      }
      if (check.unexpected === true && !welcome.resumed) this.counters.crashReturns++;
    }
    this.#token = welcome.token;
    this.#view = { v: welcome.v, state: structuredClone(loaded) };
    this.#outOfSync = false;
    this.#remember();
    // Requests whose fate was unknown: purchases that are now in the state get confirmed by their key; the
    // others are not retried, but may still show up later (see #uncertain).
    for (const request of unknown) {
      if (request.t === 'buy' && keys.includes(request.key)) continue;
      if (request.t === 'buy') this.#unconfirmed.delete(request.key);
      this.#uncertain.push({ at: performance.now(), request });
    }
  }

  #checkInvariants(loaded: Player, keys: string[]): void {
    const present = new Set(keys);
    const missing = this.acknowledged.filter((purchase) => !present.has(purchase.key ?? ''));
    if (missing.length > 0) {
      this.counters.lostPurchases += missing.length;
      this.lastError = `acknowledged purchases missing after a login: ${missing.map((p) => p.key).join(', ')}`;
    }
    if (present.size !== keys.length) {
      this.counters.mismatches++;
      this.lastError = `a purchase key appears twice: ${JSON.stringify(loaded.inventory)}`;
    }
    const strangers = keys.filter((key) => !this.#knownKeys.has(key));
    if (strangers.length > 0) {
      this.counters.mismatches++;
      this.lastError = `purchases this player never made: ${strangers.join(', ')}`;
    }
  }

  /**
   * The server went away and came back with older data: find the acknowledged state it holds in this bot's
   * history. Everything after it was unacknowledged play, lost; its age says how far back the loss reaches.
   */
  #measureLoss(loaded: Player, last: Player): void {
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const entry = this.#history[i]!;
      const exact =
        entry.gold === loaded.gold &&
        entry.xp === loaded.xp &&
        entry.level === loaded.level &&
        entry.purchases === loaded.purchases &&
        entry.inventory === loaded.inventory.length &&
        isDeepStrictEqual(loaded.inventory, last.inventory.slice(0, entry.inventory));
      // Or this state with some of the requests whose replies were lost after it (the store may hold a state
      // this player was never told: stored by the interval while those requests were being applied).
      const base: Player = {
        gold: entry.gold,
        xp: entry.xp,
        level: entry.level,
        purchases: entry.purchases,
        inventory: last.inventory.slice(0, entry.inventory),
      };
      if (exact || (entry.unknownAfter !== undefined && explainedBy(base, entry.unknownAfter, loaded))) {
        const lost = this.#history.length - 1 - i;
        if (lost > 0) {
          this.counters.lostActions += lost;
          this.counters.lostPlayers++;
          this.lastLoss = `${lost} actions: told ${JSON.stringify(last)}, the store had ${JSON.stringify(loaded)}`;
          this.lostSince = Math.min(this.lostSince ?? Number.POSITIVE_INFINITY, this.#history[i + 1]!.at);
        }
        return;
      }
    }
    this.counters.mismatches++;
    this.lastError = `after the server came back: ${JSON.stringify(loaded)} is no state this player was told (last ${JSON.stringify(last)})`;
  }

  #remember(): void {
    const state = this.#view?.state;
    if (state === undefined) return;
    const now = performance.now();
    this.#history.push({
      at: now,
      gold: state.gold,
      xp: state.xp,
      level: state.level,
      purchases: state.purchases,
      inventory: state.inventory.length,
    });
    if (this.#history.length > HISTORY_MAX || this.#history[0]!.at < now - HISTORY_MS) {
      this.#history = this.#history.filter(
        (entry, i, all) => entry.at >= now - HISTORY_MS && i >= all.length - HISTORY_MAX,
      );
    }
  }

  async #connect(deadline: number): Promise<Link> {
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#openLink();
      } catch (error) {
        lastError = error;
      }
      if (this.serverGone) throw new ServerGone('server gone');
      if (performance.now() > deadline) break;
      await pause(Math.min(500, 50 * attempt));
    }
    throw new Unreachable(
      `cannot connect: ${lastError instanceof Error ? lastError.message : String(lastError)}`,
    );
  }

  #openLink(): Promise<Link> {
    return new Promise<Link>((resolve, reject) => {
      const urls = this.#options.urls;
      const url =
        urls === undefined || urls.length === 0
          ? this.#options.url
          : urls[Math.floor(this.#options.random() * urls.length)]!;
      const ws = new WebSocket(url);
      const link: Link = {
        ws,
        pending: new Map(),
        closed: new Promise<number>((done) => ws.once('close', (code) => done(code))),
        closeCode: undefined,
        closedByUs: false,
        closedAt: undefined,
      };
      let opened = false;
      ws.on('message', (data) => {
        const reply = JSON.parse(data.toString()) as Reply;
        // Only the player's current connection updates the copy; a replaced one's late replies do not count.
        if (link === this.#link && this.#view !== undefined && reply.t !== 'welcome') {
          const before = this.#view.v;
          if (!applyReply(this.#view, reply)) this.#outOfSync = true;
          else if (this.#view.v !== before || reply.t === 'state') this.#remember();
        }
        if (reply.seq === null) return;
        const pending = link.pending.get(reply.seq);
        if (pending === undefined) return;
        link.pending.delete(reply.seq);
        clearTimeout(pending.timer);
        pending.resolve(reply);
      });
      ws.once('open', () => {
        opened = true;
        resolve(link);
      });
      ws.on('error', (error) => {
        if (!opened) reject(error);
      });
      ws.once('close', (code) => {
        link.closeCode = code;
        link.closedAt = performance.now();
        if (code === CLOSE_CODES.GOING_AWAY) this.serverGone = true;
        if (!link.closedByUs) {
          if (code === CLOSE_CODES.POLICY) this.counters.closedFlood++;
          else if (code === CLOSE_CODES.REPLACED) this.counters.closedReplaced++;
          else if (code === CLOSE_CODES.TOO_SLOW) this.counters.closedSlow++;
          else if (code === CLOSE_CODES.HANDED_OFF) this.counters.closedHandedOff++;
          else if (code === 1006 && opened) this.counters.connectionsLost++;
        }
        for (const [seq, pending] of link.pending) {
          link.pending.delete(seq);
          clearTimeout(pending.timer);
          pending.reject(
            code === CLOSE_CODES.GOING_AWAY ? new ServerGone('server shut down') : new LinkLost(code),
          );
        }
      });
    });
  }

  /** Sends a request on the current connection and waits for its reply. */
  #request(request: Request): Promise<Reply> {
    const link = this.#link;
    if (link === undefined || link.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(
        this.serverGone ? new ServerGone('server gone') : new LinkLost(link?.closeCode ?? 1006),
      );
    }
    return this.#send(link, request);
  }

  #send(link: Link, request: Request): Promise<Reply> {
    if (link.ws.readyState !== WebSocket.OPEN) return Promise.reject(new LinkLost(link.closeCode ?? 1006));
    const seq = ++this.#seq;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending.delete(seq);
        reject(new Error(`no reply to ${request.t} within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      link.pending.set(seq, { request, resolve, reject, timer });
      link.ws.send(JSON.stringify({ ...request, seq }));
    });
  }

  #error(message: string): void {
    this.counters.errors++;
    this.lastError = message;
  }

  #between(min: number, max: number): number {
    return min + Math.floor(this.#options.random() * (max - min + 1));
  }
}

/** What a login expects of the state it gets back. */
interface LoginCheck {
  /** Nothing was outstanding: the state must equal the copy. */
  expectSame?: boolean;
  /** Requests whose replies were lost may have been applied (`explainedBy`). */
  allowUnknown?: boolean;
  /** The connection was lost without this bot closing it (maybe a crash: older data is measured as loss). */
  unexpected?: boolean;
  withToken?: boolean;
}

class Unreachable extends Error {
  override name = 'Unreachable';
}

async function closeLink(link: Link, timeoutMs = 2000): Promise<void> {
  link.closedByUs = true;
  if (link.ws.readyState === WebSocket.CLOSED) return;
  if (link.ws.isPaused) link.ws.resume();
  link.ws.close();
  await withTimeout(link.closed, timeoutMs).catch(() => link.ws.terminate());
}

/**
 * Whether `loaded` can be `base` with some of `requests` applied, in order (the server applies a
 * connection's requests in order; a refused one changes nothing, and those after a dropped connection are not
 * applied). Purchases are checked exactly (ids, keys, order); mining and fighting are random, so their effect
 * is checked as a range.
 */
export function explainedBy(base: Player, requests: readonly Request[], loaded: Player): boolean {
  if (!isDeepStrictEqual(loaded.inventory.slice(0, base.inventory.length), base.inventory)) return false;
  const added = loaded.inventory.slice(base.inventory.length);
  if (loaded.purchases !== base.purchases + added.length) return false;
  let fights = 0;
  let mines = 0;
  let next = 0;
  let spent = 0;
  for (const request of requests) {
    if (request.t === 'mine') mines++;
    else if (request.t === 'fight') fights++;
    else if (request.t === 'buy') {
      const item = added[next];
      // Bought (the next new item is this purchase), or not applied.
      if (item !== undefined && item.key === request.key && item.item === request.item) {
        if (item.id !== base.purchases + next + 1) return false;
        next++;
        spent += ITEM_PRICES[request.item];
      }
    }
  }
  if (next !== added.length) return false;
  const xpGain = loaded.xp - base.xp;
  if (xpGain < 0 || xpGain > 25 * fights) return false;
  if (loaded.level !== levelFor(loaded.xp)) return false;
  const goldGain = loaded.gold - base.gold + spent;
  return goldGain >= 0 && goldGain <= mines * 4 * loaded.level + fights * 10;
}

function pause(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A small seeded generator (mulberry32), so a run's choices can be replayed with the same seed. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface BotFleetOptions {
  url: string;
  /** Several servers: each connection goes to one of them at random (see `BotOptions.urls`). */
  urls?: readonly string[];
  players: number;
  /** How many of the players are adversarial (the last ones), their kinds in turn. Default 0. */
  adversarial?: number;
  durationMs: number;
  graceMs: number;
  seed: number;
  /** User id prefix; players are `<prefix>0001`, `<prefix>0002`, ... so a later run finds the same players. */
  prefix?: string;
  thinkMs?: [number, number];
  disconnectChance?: number;
  trickChance?: number;
  /** The secret behind the server's `authenticate` hook (see src/auth.ts); each bot sends its token. */
  authSecret?: string;
  reconnectForMs?: number;
  /** Logins are spread over this long so the server is not hit by every handshake at once. Default 1 s. */
  rampMs?: number;
  onPurchase?: (userId: string, purchase: OwnedItem) => void;
}

export interface BotFleet {
  readonly bots: readonly Bot[];
  /** Resolves when every bot has finished its run (the deadline passed, it was stopped, or the server left). */
  readonly done: Promise<void>;
  online(): number;
  totals(filter?: (bot: Bot) => boolean): BotCounters;
  stop(): void;
  close(): Promise<void>;
}

export function startBots(options: BotFleetOptions): BotFleet {
  const random = seededRandom(options.seed);
  const width = Math.max(4, String(options.players).length);
  const adversarial = Math.min(options.adversarial ?? 0, options.players);
  const keyPrefix = `r${(options.seed >>> 0).toString(36)}${Date.now().toString(36).slice(-4)}`;
  const bots: Bot[] = [];
  const shared = { serverGone: false };
  for (let i = 1; i <= options.players; i++) {
    const userId = `${options.prefix ?? 'bot-'}${String(i).padStart(width, '0')}`;
    const index = i - (options.players - adversarial) - 1;
    const kind: BotKind = index >= 0 ? ADVERSARIAL_KINDS[index % ADVERSARIAL_KINDS.length]! : 'player';
    bots.push(
      new Bot({
        url: options.url,
        ...(options.urls === undefined ? {} : { urls: options.urls }),
        userId,
        kind,
        random: seededRandom(Math.floor(random() * 2 ** 32)),
        graceMs: options.graceMs,
        keyPrefix,
        shared,
        ...(options.authSecret === undefined ? {} : { auth: authToken(options.authSecret, userId) }),
        ...(options.thinkMs === undefined ? {} : { thinkMs: options.thinkMs }),
        ...(options.disconnectChance === undefined ? {} : { disconnectChance: options.disconnectChance }),
        ...(options.trickChance === undefined ? {} : { trickChance: options.trickChance }),
        ...(options.reconnectForMs === undefined ? {} : { reconnectForMs: options.reconnectForMs }),
        ...(options.onPurchase === undefined ? {} : { onPurchase: options.onPurchase }),
      }),
    );
  }
  const deadline = performance.now() + options.durationMs;
  const ramp = options.rampMs ?? Math.min(1000, options.durationMs / 4);
  const done = Promise.all(
    bots.map(async (bot, i) => {
      await pause((ramp * i) / bots.length);
      await bot.run(deadline);
    }),
  ).then(() => {});
  return {
    bots,
    done,
    online: () => bots.reduce((n, bot) => n + (bot.online ? 1 : 0), 0),
    totals: (filter = () => true) => {
      const totals = zeroCounters();
      for (const bot of bots) {
        if (!filter(bot)) continue;
        for (const key of Object.keys(totals) as (keyof BotCounters)[]) {
          totals[key] += bot.counters[key];
        }
      }
      return totals;
    },
    stop: () => {
      for (const bot of bots) bot.stop();
    },
    close: async () => {
      await Promise.all(bots.map((bot) => bot.close()));
    },
  };
}
