/**
 * Bot players: each one logs in over a real WebSocket, plays random actions at a human-ish pace, drops its
 * connection now and then (coming back within the grace period, after it, or from a second connection), and
 * remembers the last state the server acknowledged, which is what the store must hold in the end.
 */
import { isDeepStrictEqual } from 'node:util';
import { WebSocket } from 'ws';
import {
  CLOSE_GOING_AWAY,
  type ClientMessage,
  ITEM_NAMES,
  ITEM_PRICES,
  type OwnedItem,
  type Player,
  type Random,
  type ServerMessage,
} from './game.js';

export interface BotOptions {
  url: string;
  userId: string;
  random: Random;
  /** The server's grace period: pauses are chosen to land within it, or clearly after it. */
  graceMs: number;
  /** Pause between two actions, uniformly in this range (ms). */
  thinkMs?: [number, number];
  /** Chance per action of dropping the connection. */
  disconnectChance?: number;
  /** Called for every purchase the server acknowledged as stored. */
  onPurchase?: (userId: string, purchase: OwnedItem) => void;
}

export interface BotCounters {
  actions: number;
  purchases: number;
  rejected: number;
  /** Reconnects that resumed the session within the grace period. */
  resumed: number;
  /** Logins after the session had ended: the data came back from the store. */
  reloaded: number;
  /** Logins from a second connection while the first was still open. */
  takeovers: number;
  /** The state the server sent at a login or resume differed from the last one it had acknowledged. */
  mismatches: number;
  errors: number;
}

function zeroCounters(): BotCounters {
  return {
    actions: 0,
    purchases: 0,
    rejected: 0,
    resumed: 0,
    reloaded: 0,
    takeovers: 0,
    mismatches: 0,
    errors: 0,
  };
}

/** How long a request may wait for its reply: a slow store (FerretDB) can keep purchases queued for many seconds. */
const REPLY_TIMEOUT_MS = 60_000;
const CONNECT_ATTEMPTS = 5;
/** Upper bound on actions per bot, whatever the duration. */
const MAX_ACTIONS = 1_000_000;

type Reply = Exclude<ServerMessage, { seq: null }>;

class ServerGone extends Error {
  override name = 'ServerGone';
}

interface Link {
  ws: WebSocket;
  pending: { seq: number; resolve(reply: Reply): void; reject(error: Error): void } | undefined;
  closed: Promise<void>;
}

export class Bot {
  readonly userId: string;
  readonly counters: BotCounters = zeroCounters();
  /** The last state the server acknowledged to this player; undefined until the first login. */
  state: Player | undefined;
  /** Purchases the server confirmed as stored. */
  readonly acknowledged: OwnedItem[] = [];
  /** Whether the first login found data from an earlier run. */
  returning = false;
  /** The server closed the connection for good (shutdown), or could not be reached. */
  serverGone = false;
  lastError: string | undefined;
  readonly #options: Required<Omit<BotOptions, 'onPurchase'>> & Pick<BotOptions, 'onPurchase'>;
  #link: Link | undefined;
  #token: string | undefined;
  #seq = 0;
  #stopped = false;

  constructor(options: BotOptions) {
    this.userId = options.userId;
    this.#options = { thinkMs: [100, 400], disconnectChance: 1 / 60, ...options };
  }

  get online(): boolean {
    return (
      this.#link !== undefined && this.#link.ws.readyState === WebSocket.OPEN && this.#token !== undefined
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
      await this.#login(this.#token);
      for (let i = 0; i < MAX_ACTIONS && active(); i++) {
        const [min, max] = this.#options.thinkMs;
        await pause(Math.min(this.#between(min, max), deadline - performance.now()));
        if (!active()) break;
        if (this.#options.random() < this.#options.disconnectChance) await this.#dropAndReturn(deadline);
        else await this.#act();
      }
    } catch (error) {
      if (!(error instanceof ServerGone)) {
        this.counters.errors++;
        this.lastError = error instanceof Error ? error.message : String(error);
      }
    }
  }

  /** Closes the connection (used after the server stopped, or when the run is abandoned). */
  async close(): Promise<void> {
    const link = this.#link;
    this.#link = undefined;
    if (link === undefined) return;
    link.ws.close();
    await withTimeout(link.closed, 2000).catch(() => link.ws.terminate());
  }

  async #act(): Promise<void> {
    const random = this.#options.random;
    const gold = this.state?.gold ?? 0;
    const affordable = ITEM_NAMES.filter((item) => ITEM_PRICES[item] <= gold);
    let message: ClientMessage;
    const roll = random();
    if (affordable.length > 0 && roll < 0.25) {
      message = { t: 'buy', seq: 0, item: affordable[Math.floor(random() * affordable.length)]! };
    } else if (roll < 0.3) {
      // Now and then, something the player cannot afford: the server must refuse it and change nothing.
      message = { t: 'buy', seq: 0, item: 'sword' };
    } else {
      message = { t: random() < 0.6 ? 'mine' : 'fight', seq: 0 };
    }
    const reply = await this.#request(message);
    this.counters.actions++;
    if ('state' in reply && reply.state !== undefined) this.state = reply.state;
    switch (reply.t) {
      case 'purchased':
        this.counters.purchases++;
        this.acknowledged.push(reply.purchase);
        this.#options.onPurchase?.(this.userId, reply.purchase);
        break;
      case 'rejected':
        this.counters.rejected++;
        break;
      case 'error':
        // The server is going away: not a failure of this player, just the end of the game.
        if (reply.code === 'SHUTTING_DOWN') this.serverGone = true;
        else this.#error(`${reply.code}: ${reply.message}`);
        break;
    }
  }

  async #dropAndReturn(deadline: number): Promise<void> {
    const random = this.#options.random;
    const grace = this.#options.graceMs;
    const roll = random();
    if (roll < 0.1) {
      // A second device: log in again without the token while the first connection is still open.
      const old = this.#link;
      this.#link = undefined;
      await this.#login(undefined);
      this.counters.takeovers++;
      if (old !== undefined) await withTimeout(old.closed, 5000).catch(() => old.ws.terminate());
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
    await this.#login(this.#token);
  }

  async #login(token: string | undefined): Promise<void> {
    this.#link = await this.#connect();
    const message: ClientMessage =
      token === undefined
        ? { t: 'login', seq: 0, userId: this.userId }
        : { t: 'login', seq: 0, userId: this.userId, token };
    const reply = await this.#request(message);
    if (reply.t === 'error' && reply.code === 'SHUTTING_DOWN') {
      this.serverGone = true;
      throw new ServerGone('the server is shutting down');
    }
    if (reply.t !== 'welcome') throw new Error(`login refused: ${JSON.stringify(reply)}`);
    if (this.state === undefined) this.returning = reply.returning;
    else {
      if (reply.resumed) this.counters.resumed++;
      else if (token !== undefined) this.counters.reloaded++;
      // Resumed or reloaded from the store, the player must find exactly what the server last confirmed.
      if (!isDeepStrictEqual(reply.state, this.state)) {
        this.counters.mismatches++;
        this.lastError = `login state differs: had ${JSON.stringify(this.state)}, got ${JSON.stringify(reply.state)}`;
      }
    }
    this.#token = reply.token;
    this.state = reply.state;
  }

  async #connect(): Promise<Link> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= CONNECT_ATTEMPTS; attempt++) {
      try {
        return await openLink(this.#options.url, (code) => {
          if (code === CLOSE_GOING_AWAY) this.serverGone = true;
        });
      } catch (error) {
        lastError = error;
        if ((error as { code?: string }).code === 'ECONNREFUSED') break;
        await pause(100 * attempt);
      }
    }
    // Unreachable while it should be up: an error of the run, unlike a server that said it was going away.
    const message = `cannot connect: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
    if (this.serverGone) throw new ServerGone(message);
    throw new Error(message);
  }

  #request(message: ClientMessage): Promise<Reply> {
    const link = this.#link;
    if (link === undefined || link.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(this.serverGone ? new ServerGone('server gone') : new Error('not connected'));
    }
    const seq = ++this.#seq;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending = undefined;
        reject(new Error(`no reply to ${message.t} within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      link.pending = {
        seq,
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      link.ws.send(JSON.stringify({ ...message, seq }));
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

function openLink(url: string, onServerClose: (code: number) => void): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    const ws = new WebSocket(url);
    let link: Link | undefined;
    const closed = new Promise<void>((done) => ws.once('close', () => done()));
    ws.on('message', (data) => {
      const reply = JSON.parse(data.toString()) as ServerMessage;
      const pending = link?.pending;
      if (pending !== undefined && reply.seq === pending.seq) {
        link!.pending = undefined;
        pending.resolve(reply as Reply);
      }
    });
    ws.once('open', () => {
      link = { ws, pending: undefined, closed };
      resolve(link);
    });
    ws.once('error', (error) => {
      if (link === undefined) reject(error);
    });
    ws.on('error', () => {});
    ws.once('close', (code) => {
      onServerClose(code);
      const pending = link?.pending;
      if (pending !== undefined) {
        link!.pending = undefined;
        pending.reject(
          code === CLOSE_GOING_AWAY
            ? new ServerGone('server shut down')
            : new Error(`connection closed (${code})`),
        );
      }
    });
  });
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
  players: number;
  durationMs: number;
  graceMs: number;
  seed: number;
  /** User id prefix; players are `<prefix>0001`, `<prefix>0002`, ... so a later run finds the same players. */
  prefix?: string;
  thinkMs?: [number, number];
  disconnectChance?: number;
  /** Logins are spread over this long so the server is not hit by every handshake at once. Default 1 s. */
  rampMs?: number;
  onPurchase?: (userId: string, purchase: OwnedItem) => void;
}

export interface BotFleet {
  readonly bots: readonly Bot[];
  /** Resolves when every bot has finished its run (the deadline passed, it was stopped, or the server left). */
  readonly done: Promise<void>;
  online(): number;
  totals(): BotCounters;
  stop(): void;
  close(): Promise<void>;
}

export function startBots(options: BotFleetOptions): BotFleet {
  const random = seededRandom(options.seed);
  const width = Math.max(4, String(options.players).length);
  const bots: Bot[] = [];
  for (let i = 1; i <= options.players; i++) {
    bots.push(
      new Bot({
        url: options.url,
        userId: `${options.prefix ?? 'bot-'}${String(i).padStart(width, '0')}`,
        random: seededRandom(Math.floor(random() * 2 ** 32)),
        graceMs: options.graceMs,
        ...(options.thinkMs === undefined ? {} : { thinkMs: options.thinkMs }),
        ...(options.disconnectChance === undefined ? {} : { disconnectChance: options.disconnectChance }),
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
    totals: () => {
      const totals = zeroCounters();
      for (const bot of bots) {
        for (const key of Object.keys(totals) as (keyof BotCounters)[]) totals[key] += bot.counters[key];
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
