import { once } from 'node:events';
import { connect as tcpConnect } from 'node:net';
import { FaultyAdapter, MemoryAdapter } from '@cagey-sessions/testing';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientOptions } from 'ws';
import { authToken, hmacAuthenticator } from '../src/auth.js';
import { CLOSE_CODES, newPlayer, type OwnedItem, type Player, type ServerMessage } from '../src/game.js';
import { type GameServer, type GameServerOptions, startGameServer } from '../src/server.js';
import { type Request, TestClient } from './client.js';

const servers: GameServer[] = [];
const clients: TestClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(servers.splice(0).map((server) => server.shutdown()));
});

async function setup(options: Partial<GameServerOptions> = {}) {
  const memory = new MemoryAdapter();
  const adapter = new FaultyAdapter(memory);
  const server = await startGameServer({ adapter, interval: '1h', graceMs: 60_000, ...options });
  servers.push(server);
  const connect = async (clientOptions?: ClientOptions) => {
    const client = await TestClient.connect(server.url, clientOptions);
    clients.push(client);
    return client;
  };
  const stored = (userId: string) => memory.store.peek<Player>(userId)?.userData;
  /** Puts a player in the store before the test logs in as them. */
  const seed = async (userId: string, player: Player) => {
    const [result] = await memory.save([{ userId, userData: player, expectedVersion: 0 }]);
    expect(result?.status).toBe('ok');
  };
  return { server, adapter, memory, connect, stored, seed };
}

function expectType<T extends ServerMessage['t']>(
  message: ServerMessage,
  type: T,
): asserts message is Extract<ServerMessage, { t: T }> {
  expect(message.t, JSON.stringify(message)).toBe(type);
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A player with plenty of gold and `items` potions bought earlier. */
function richPlayer(gold: number, items = 0): Player {
  const inventory: OwnedItem[] = Array.from({ length: items }, (_, i) => ({
    id: i + 1,
    item: 'potion',
    key: `old-${i + 1}`,
  }));
  return { ...newPlayer(), gold, inventory, purchases: items };
}

/** Waits until `check` holds, polling; bounded. */
async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error('condition not reached in time');
    await delay(10);
  }
}

describe('game server sessions', () => {
  it('a new player starts from the defaults; a reply carries what changed, not the whole state', async () => {
    const { connect } = await setup();
    const client = await connect();
    const welcome = await client.request({ t: 'login', userId: 'ann' });
    expectType(welcome, 'welcome');
    expect(welcome).toMatchObject({ resumed: false, returning: false, v: 0 });
    expect(welcome.state).toEqual({ gold: 20, xp: 0, level: 1, inventory: [], purchases: 0 });
    const mined = await client.request({ t: 'mine' });
    expectType(mined, 'ok');
    expect(mined).not.toHaveProperty('state');
    expect(mined.v).toBe(1);
    expect(mined.changes?.gold).toBeGreaterThan(20);
    expect(Object.keys(mined.changes ?? {})).toEqual(['gold']);
  });

  it('a reconnect with the token within the grace period resumes the same session without loading again', async () => {
    const { server, adapter, connect } = await setup();
    const first = await connect();
    const welcome = await first.request({ t: 'login', userId: 'bob' });
    expectType(welcome, 'welcome');
    await first.request({ t: 'mine' });
    await first.close();

    const second = await connect();
    const resumed = await second.request({ t: 'login', userId: 'bob', token: welcome.token });
    expectType(resumed, 'welcome');
    expect(resumed).toMatchObject({ resumed: true, token: welcome.token, v: 1 });
    expect(resumed.state).toEqual(first.view.state);
    expect(adapter.calls.load).toBe(1);
    expect(server.stats()).toMatchObject({ logins: 1, resumed: 1, sessions: 1 });
  });

  it('a token only resumes the session of its own player', async () => {
    const { connect } = await setup();
    const ann = await connect();
    const welcome = await ann.request({ t: 'login', userId: 'ann' });
    expectType(welcome, 'welcome');
    const mallory = await connect();
    const reply = await mallory.request({ t: 'login', userId: 'mallory', token: welcome.token });
    expectType(reply, 'welcome');
    expect(reply.resumed).toBe(false);
    expect(reply.token).not.toBe(welcome.token);
    expect(reply.state.gold).toBe(20);
  });

  it('after the grace period the session is stored and ends; the old token starts a new session from the store', async () => {
    const { server, connect, stored, adapter } = await setup({ graceMs: 150 });
    const first = await connect();
    const welcome = await first.request({ t: 'login', userId: 'cid' });
    expectType(welcome, 'welcome');
    await first.request({ t: 'fight' });
    await first.request({ t: 'mine' });
    const last = structuredClone(first.view.state);
    const ended = new Promise<void>((resolve) => server.manager.once('destroy', () => resolve()));
    await first.close();
    await ended;
    expect(stored('cid')).toEqual(last);
    expect(server.stats()).toMatchObject({ sessions: 0, expired: 1 });

    const second = await connect();
    const again = await second.request({ t: 'login', userId: 'cid', token: welcome.token });
    expectType(again, 'welcome');
    expect(again).toMatchObject({ resumed: false, returning: true });
    expect(again.state).toEqual(last);
    expect(adapter.calls.load).toBe(2);
  });

  it('a login from a second connection takes the player over: the session moves, the first is closed', async () => {
    const { server, connect, adapter } = await setup();
    const phone = await connect();
    const first = await phone.request({ t: 'login', userId: 'dee' });
    expectType(first, 'welcome');
    await phone.request({ t: 'mine' });

    const laptop = await connect();
    const welcome = await laptop.request({ t: 'login', userId: 'dee' });
    expectType(welcome, 'welcome');
    expect(welcome).toMatchObject({ resumed: false, token: first.token, v: 1 });
    expect(welcome.state).toEqual(phone.view.state);
    expect(await phone.closed).toBe(CLOSE_CODES.REPLACED);
    // Nothing was written or reloaded: one copy of the player, moved.
    expect(adapter.calls.load).toBe(1);
    expect(server.stats()).toMatchObject({ takeovers: 1, sessions: 1, written: 0 });
  });

  it('a player whose grace period ends while the store is down keeps the session until it is stored', async () => {
    const { server, connect, adapter, stored } = await setup({ graceMs: 50 });
    const first = await connect();
    await first.request({ t: 'login', userId: 'gil' });
    await first.request({ t: 'mine' });
    const told = structuredClone(first.view.state);
    adapter.failRate(1, { methods: ['save', 'load'] });
    await first.close();
    await delay(300);
    // Not let go: the data is nowhere else. A login (without the token) finds it, unsaved changes and all.
    expect(server.stats()).toMatchObject({ sessions: 1, expired: 0 });
    const second = await connect();
    const welcome = await second.request({ t: 'login', userId: 'gil' });
    expectType(welcome, 'welcome');
    expect(welcome.state).toEqual(told);
    adapter.failRate(0);
    const ended = new Promise<void>((resolve) => server.manager.once('destroy', () => resolve()));
    await second.close();
    await ended;
    expect(stored('gil')).toEqual(told);
    expect(server.stats().expired).toBe(1);
  });

  it('a purchase is acknowledged only once the store holds it', async () => {
    const { adapter, connect, stored } = await setup();
    const client = await connect();
    await client.request({ t: 'login', userId: 'eve' });
    const hang = adapter.hang({ methods: ['save'] });
    let reply: Promise<ServerMessage>;
    try {
      reply = client.request({ t: 'buy', item: 'potion', key: 'eve-1' });
      await adapter.nextCall('save');
      // The save is held; anything the server wrote before it (an early acknowledgement) arrives before this pong.
      await client.roundTrip();
      expect(client.received.filter((m) => m.t === 'purchased')).toEqual([]);
    } finally {
      hang.release();
    }
    const purchased = await reply;
    expectType(purchased, 'purchased');
    expect(purchased.purchase).toEqual({ id: 1, item: 'potion', key: 'eve-1' });
    expect(purchased.added).toEqual([{ id: 1, item: 'potion', key: 'eve-1' }]);
    expect(stored('eve')?.inventory).toEqual([{ id: 1, item: 'potion', key: 'eve-1' }]);
  });
});

describe('protocol errors', () => {
  it('BAD_REQUEST echoes the seq whenever the request had a valid one; the connection stays usable', async () => {
    const { connect } = await setup();
    const client = await connect();
    client.ws.send('{"t":"teleport"');
    expect(await client.next((m) => m.t === 'error')).toMatchObject({ seq: null, code: 'BAD_REQUEST' });
    client.ws.send('{"t":"teleport","seq":5}');
    expect(await client.next((m) => m.seq === 5)).toMatchObject({
      t: 'error',
      code: 'BAD_REQUEST',
      message: 'unknown message type',
    });
    client.ws.send(JSON.stringify({ t: 'login', seq: 6, userId: 'gus', token: 'x'.repeat(65) }));
    expect(await client.next((m) => m.seq === 6)).toMatchObject({
      t: 'error',
      code: 'BAD_REQUEST',
      message: 'token must be 1-64 characters',
    });
    client.ws.send(JSON.stringify({ t: 'buy', seq: 7, item: 'potion' }));
    expect(await client.next((m) => m.seq === 7)).toMatchObject({ code: 'BAD_REQUEST' });
    expect(await client.request({ t: 'mine' })).toMatchObject({ t: 'error', code: 'NOT_LOGGED_IN' });
    expect((await client.request({ t: 'login', userId: 'gus' })).t).toBe('welcome');
  });
});

describe('a closed connection never acts after a resume', () => {
  async function queuedBehindAHeldPurchase(options: { dropFirst: boolean }) {
    const { adapter, connect, stored, server } = await setup();
    const a = await connect();
    const welcome = await a.request({ t: 'login', userId: 'ivy' });
    expectType(welcome, 'welcome');
    for (let i = 0; i < 10; i++) await a.request({ t: 'mine' });
    // The purchase's write is held, so the 20 fights pipelined behind it are still queued when the player
    // comes back on another connection.
    const hang = adapter.hang({ methods: ['save'] });
    const fights: Request[] = Array.from({ length: 20 }, () => ({ t: 'fight' }));
    a.pipeline([{ t: 'buy', item: 'potion', key: 'ivy-1' }, ...fights]);
    await adapter.nextCall('save');
    if (options.dropFirst) {
      a.ws.terminate();
      await until(() => server.stats().online === 0);
    }
    const b = await connect();
    const resumed = await b.request({ t: 'login', userId: 'ivy', token: welcome.token });
    expectType(resumed, 'welcome');
    expect(resumed.resumed).toBe(true);
    hang.release();
    if (!options.dropFirst) expect(await a.closed).toBe(CLOSE_CODES.REPLACED);
    // Whatever the old connection had queued must not land after the welcome: the state is still the welcome's.
    await delay(100);
    const now = await b.request({ t: 'state' });
    expectType(now, 'state');
    expect(now.state).toEqual(resumed.state);
    expect(now.v).toBe(resumed.v);
    expect(server.stats().cancelled).toBe(20);
    // The purchase was applied before the welcome (it is in its state); retrying its key confirms it.
    expect(resumed.state.inventory.filter((item) => item.key === 'ivy-1')).toHaveLength(1);
    const retried = await b.request({ t: 'buy', item: 'potion', key: 'ivy-1' });
    expectType(retried, 'purchased');
    expect(retried.replayed).toBe(true);
    expect(stored('ivy')?.inventory.filter((item) => item.key === 'ivy-1')).toHaveLength(1);
    expect(stored('ivy')?.gold).toBe(resumed.state.gold);
  }

  it('after the old connection closed, its queued requests are dropped before the resume is welcomed', async () => {
    await queuedBehindAHeldPurchase({ dropFirst: true });
  });

  it('while the old connection is still open (half-open), the resume replaces it and drops its queue', async () => {
    await queuedBehindAHeldPurchase({ dropFirst: false });
  });
});

describe('idempotent purchases', () => {
  it('a retried buy with the same key is confirmed again, never bought twice', async () => {
    const { connect, stored, seed } = await setup();
    await seed('kim', richPlayer(1000));
    const client = await connect();
    await client.request({ t: 'login', userId: 'kim' });
    const first = await client.request({ t: 'buy', item: 'sword', key: 'k1' });
    expectType(first, 'purchased');
    expect(first.replayed).toBeUndefined();
    const again = await client.request({ t: 'buy', item: 'sword', key: 'k1' });
    expectType(again, 'purchased');
    expect(again).toMatchObject({ replayed: true, purchase: first.purchase, v: first.v });
    expect(again.added).toBeUndefined();
    const other = await client.request({ t: 'buy', item: 'potion', key: 'k1' });
    expect(other).toMatchObject({ t: 'error', code: 'KEY_REUSED' });
    expect(stored('kim')).toMatchObject({ gold: 1000 - 75, purchases: 1 });
    expect(client.view.state).toEqual(stored('kim'));
  });

  it('the key is remembered in the stored data: a retry after the session ended does not buy again', async () => {
    const { connect, stored, seed, server } = await setup({ graceMs: 50 });
    await seed('lou', richPlayer(1000));
    const first = await connect();
    await first.request({ t: 'login', userId: 'lou' });
    await first.request({ t: 'buy', item: 'shield', key: 'lou-7' });
    const ended = new Promise<void>((resolve) => server.manager.once('destroy', () => resolve()));
    await first.close();
    await ended;
    const second = await connect();
    await second.request({ t: 'login', userId: 'lou' });
    const retried = await second.request({ t: 'buy', item: 'shield', key: 'lou-7' });
    expect(retried).toMatchObject({ t: 'purchased', replayed: true });
    expect(stored('lou')).toMatchObject({ gold: 1000 - 40, purchases: 1 });
  });

  it('NOT_STORED says the purchase is applied and queued; the same key then confirms it without buying twice', async () => {
    const { adapter, connect, stored } = await setup();
    const client = await connect();
    await client.request({ t: 'login', userId: 'fay' });
    adapter.failNext(1, { methods: ['save'] });
    const reply = await client.request({ t: 'buy', item: 'potion', key: 'fay-1' });
    expectType(reply, 'error');
    expect(reply.code).toBe('NOT_STORED');
    expect(reply.message).toContain('same key');
    expect(reply.message).not.toContain('try again later');
    expect(reply.purchase).toEqual({ id: 1, item: 'potion', key: 'fay-1' });
    expect(client.view.state.inventory).toEqual([{ id: 1, item: 'potion', key: 'fay-1' }]);
    const retried = await client.request({ t: 'buy', item: 'potion', key: 'fay-1' });
    expectType(retried, 'purchased');
    expect(retried.replayed).toBe(true);
    expect(stored('fay')).toMatchObject({ gold: 15, purchases: 1, inventory: [{ id: 1, key: 'fay-1' }] });
  });
});

describe('limits', () => {
  it('a flood is refused and cut off, and every request is either answered or not applied', async () => {
    const { connect, stored, seed, server } = await setup({
      limits: { rateLimit: { perSecond: 1, burst: 10 } },
    });
    await seed('max', richPlayer(100_000));
    const client = await connect();
    await client.request({ t: 'login', userId: 'max' });
    const buys: Request[] = Array.from({ length: 100 }, (_, i) => ({
      t: 'buy',
      item: 'potion',
      key: `f${i}`,
    }));
    const seqs = client.pipeline(buys);
    expect(await client.closed).toBe(CLOSE_CODES.POLICY);
    await server.shutdown();
    const purchased = new Set(client.received.filter((m) => m.t === 'purchased').map((m) => m.seq));
    const storedKeys = new Set(stored('max')?.inventory.map((item) => item.key));
    const answered = new Set(client.received.map((m) => m.seq));
    for (const [i, seq] of seqs.entries()) {
      // Applied (stored) exactly when acknowledged; anything unanswered was not applied.
      expect(storedKeys.has(`f${i}`), `buy #${i}`).toBe(purchased.has(seq));
      if (!answered.has(seq)) expect(storedKeys.has(`f${i}`)).toBe(false);
    }
    expect(purchased.size).toBeGreaterThanOrEqual(9);
    expect(client.received.filter((m) => m.t === 'error' && m.code === 'RATE_LIMITED').length).toBe(11);
    expect(server.stats().closed.flood).toBe(1);
    expect(server.stats().cancelled).toBeGreaterThan(0);
  });

  it('a client pipelining more than maxPending requests is slowed down by TCP, not cut off', async () => {
    const { connect, server } = await setup({ limits: { rateLimit: null, maxPending: 8 } });
    const client = await connect();
    await client.request({ t: 'login', userId: 'ned' });
    const seqs = client.pipeline(Array.from({ length: 300 }, () => ({ t: 'mine' }) as Request));
    await client.next((m) => m.seq === seqs.at(-1));
    expect(client.received.filter((m) => m.t === 'ok')).toHaveLength(300);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    expect(client.inSync).toBe(true);
    expect(server.stats().closed.flood).toBe(0);
  });

  it('with the default limits, 33 pipelined requests are all answered', async () => {
    const { connect } = await setup();
    const client = await connect();
    await client.request({ t: 'login', userId: 'ola' });
    const seqs = client.pipeline(Array.from({ length: 33 }, () => ({ t: 'mine' }) as Request));
    await client.next((m) => m.seq === seqs.at(-1));
    expect(client.received.filter((m) => m.t === 'ok')).toHaveLength(33);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });

  it('the per-player rate limit refuses actions beyond it; a client that waits as told is never cut off', async () => {
    const { connect, server } = await setup({ limits: { rateLimit: { perSecond: 50, burst: 20 } } });
    const client = await connect();
    await client.request({ t: 'login', userId: 'pia' });
    let accepted = 0;
    let limited = 0;
    const started = performance.now();
    for (let i = 0; i < 2000 && performance.now() - started < 1000; i++) {
      const reply = await client.request({ t: 'mine' });
      if (reply.t === 'ok') accepted++;
      else {
        expect(reply).toMatchObject({ t: 'error', code: 'RATE_LIMITED' });
        limited++;
        await delay((reply as { retryAfterMs: number }).retryAfterMs);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    expect(accepted).toBeLessThanOrEqual(20 + Math.ceil(50 * seconds) + 1);
    expect(limited).toBeGreaterThan(0);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    expect(server.stats().actions).toBe(accepted);
    expect(server.stats().refused.RATE_LIMITED).toBe(limited);
  });

  it('a frame larger than maxFrameBytes closes the connection with 1009', async () => {
    const { connect, server } = await setup({ limits: { maxFrameBytes: 1024 } });
    const client = await connect();
    client.ws.send(JSON.stringify({ t: 'login', seq: 1, userId: 'x', pad: 'y'.repeat(2000) }));
    expect(await client.closed).toBe(CLOSE_CODES.TOO_BIG);
    await until(() => server.stats().closed.tooBig === 1);
  });

  it('connections that never log in are closed with 4001 after loginTimeoutMs', async () => {
    const { connect, server } = await setup({ limits: { loginTimeoutMs: 200 } });
    const idle = await Promise.all(Array.from({ length: 50 }, () => connect()));
    const player = await connect();
    await player.request({ t: 'login', userId: 'quinn' });
    const codes = await Promise.all(idle.map((client) => client.closed));
    expect(new Set(codes)).toEqual(new Set([CLOSE_CODES.LOGIN_TIMEOUT]));
    await until(() => server.stats().connections === 1);
    expect(server.stats()).toMatchObject({ connections: 1, online: 1 });
    expect(server.stats().closed.loginTimeout).toBe(50);
    expect(player.ws.readyState).toBe(player.ws.OPEN);
  });

  it('a connection that stops answering pings is dropped, and its player is stored after the grace period', async () => {
    const { connect, server, stored } = await setup({ limits: { heartbeatMs: 100 }, graceMs: 100 });
    const healthy = await connect();
    await healthy.request({ t: 'login', userId: 'ray' });
    // A peer that has gone away without closing (a half-open socket) answers no ping.
    const silent = await connect({ autoPong: false });
    await silent.request({ t: 'login', userId: 'sue' });
    await silent.request({ t: 'mine' });
    const ended = new Promise<void>((resolve) => server.manager.once('destroy', () => resolve()));
    expect(await silent.closed).toBe(1006);
    await ended;
    expect(stored('sue')).toEqual(silent.view.state);
    expect(server.stats()).toMatchObject({ expired: 1, online: 1 });
    expect(server.stats().closed.heartbeat).toBe(1);
    expect(healthy.ws.readyState).toBe(healthy.ws.OPEN);
  });

  it('a client that does not read its replies costs at most maxBufferedBytes, then is closed with 4002', async () => {
    const maxBufferedBytes = 64 * 1024;
    const { connect, seed, server } = await setup({
      limits: { rateLimit: null, maxBufferedBytes, slowReaderTimeoutMs: 500 },
    });
    // 600 items: each full-state reply is about 25 KB, so 3,000 unread replies would be 75 MB.
    await seed('tom', richPlayer(0, 600));
    const client = await connect();
    await client.request({ t: 'login', userId: 'tom' });
    const full = await client.request({ t: 'state' });
    const replyBytes = JSON.stringify(full).length;
    expect(replyBytes).toBeGreaterThan(20_000);
    client.ws.pause();
    client.pipeline(Array.from({ length: 3000 }, () => ({ t: 'state' }) as Request));
    await until(() => server.stats().closed.tooSlow === 1, 10_000);
    expect(server.stats().peakBufferedBytes).toBeLessThanOrEqual(maxBufferedBytes + replyBytes);
    client.ws.resume();
    await client.closed;
    expect(client.received.length).toBeLessThan(1000);
  });

  it('a slow reader that catches up within slowReaderTimeoutMs gets every reply, in order', async () => {
    const { connect, seed, server } = await setup({
      limits: { rateLimit: null, maxBufferedBytes: 64 * 1024, slowReaderTimeoutMs: 5000 },
    });
    await seed('uma', richPlayer(0, 600));
    const client = await connect();
    await client.request({ t: 'login', userId: 'uma' });
    client.ws.pause();
    const seqs = client.pipeline(Array.from({ length: 400 }, () => ({ t: 'state' }) as Request));
    await delay(300);
    client.ws.resume();
    await client.next((m) => m.seq === seqs.at(-1));
    expect(client.received.slice(1).map((m) => m.seq)).toEqual(seqs);
    expect(server.stats().closed.tooSlow).toBe(0);
  });

  it('limits are checked when the server starts', async () => {
    await expect(
      startGameServer({ adapter: new MemoryAdapter(), limits: { maxPending: 0 } }),
    ).rejects.toThrow('limits.maxPending');
  });
});

describe('replies carry deltas', () => {
  it('a reply does not grow with the inventory, and the deltas rebuild exactly the server state', async () => {
    const { connect, seed } = await setup({ limits: { rateLimit: null } });
    await seed('val', richPlayer(5000, 600));
    const client = await connect();
    const welcome = await client.request({ t: 'login', userId: 'val' });
    expect(JSON.stringify(welcome).length).toBeGreaterThan(20_000);
    const sizes: number[] = [];
    for (let i = 0; i < 60; i++) {
      const request: Request =
        i % 3 === 0
          ? { t: 'mine' }
          : i % 3 === 1
            ? { t: 'fight' }
            : { t: 'buy', item: 'arrows', key: `v${i}` };
      sizes.push(JSON.stringify(await client.request(request)).length);
    }
    expect(Math.max(...sizes)).toBeLessThan(250);
    // A mine or fight reply is the new version and the changed numbers.
    expect(Math.max(...sizes.filter((_, i) => i % 3 !== 2))).toBeLessThan(100);
    expect(client.inSync).toBe(true);
    const full = await client.request({ t: 'state' });
    expectType(full, 'state');
    expect(client.view).toEqual({ v: full.v, state: full.state });
    expect(full.v).toBe(60);
  });
});

describe('reply size does not grow with the inventory', () => {
  it("an action of a player with 600 items is answered with a delta as small as a new player's", async () => {
    const { connect, seed } = await setup({ limits: { rateLimit: null } });
    await seed('big', richPlayer(0, 600));
    const replyBytes = async (userId: string) => {
      const client = await connect();
      await client.request({ t: 'login', userId });
      const reply = await client.request({ t: 'mine' });
      return JSON.stringify(reply).length;
    };
    const small = await replyBytes('small');
    const big = await replyBytes('big');
    // Full-state replies grew with every item (19 KB at 600 items); a delta names only what changed.
    expect(big, `new player ${small} B, 600 items ${big} B`).toBeLessThan(small * 2);
    expect(big).toBeLessThan(1024);
  });
});

describe('authentication and address', () => {
  it('the authenticate hook decides every login, resumes included', async () => {
    const secret = 'a-secret-of-sixteen-chars';
    const { connect } = await setup({ authenticate: hmacAuthenticator(secret) });
    const client = await connect();
    expect(await client.request({ t: 'login', userId: 'wes' })).toMatchObject({ code: 'AUTH_FAILED' });
    expect(
      await client.request({ t: 'login', userId: 'wes', auth: authToken(secret, 'mallory') }),
    ).toMatchObject({
      code: 'AUTH_FAILED',
    });
    const welcome = await client.request({ t: 'login', userId: 'wes', auth: authToken(secret, 'wes') });
    expectType(welcome, 'welcome');
    await client.close();
    const thief = await connect();
    expect(await thief.request({ t: 'login', userId: 'wes', token: welcome.token })).toMatchObject({
      code: 'AUTH_FAILED',
    });
  });

  it('a throwing hook refuses the login', async () => {
    const { connect, server } = await setup({
      authenticate: () => {
        throw new Error('account service down');
      },
    });
    const client = await connect();
    expect(await client.request({ t: 'login', userId: 'xi' })).toMatchObject({ code: 'AUTH_FAILED' });
    expect(server.stats().refused.AUTH_FAILED).toBe(1);
  });

  it('listens on the configured host only', async () => {
    const { server } = await setup({ host: '127.0.0.2' });
    expect(server.url).toBe(`ws://127.0.0.2:${server.port}`);
    const client = await TestClient.connect(server.url);
    clients.push(client);
    expect((await client.request({ t: 'login', userId: 'yan' })).t).toBe('welcome');
    const other = tcpConnect({ host: '127.0.0.1', port: server.port });
    const [error] = (await once(other, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNREFUSED');
  });

  it('serves the browser client at /', async () => {
    const { server } = await setup();
    const response = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(await response.text()).toContain('<!doctype html>');
  });
});

describe('store writes by cause', () => {
  it('counts each write under the purchase, interval, logout or shutdown that caused it; a takeover writes nothing', async () => {
    const { connect, server } = await setup({ interval: 100, graceMs: 50 });
    const a = await connect();
    await a.request({ t: 'login', userId: 'zed' });
    await a.request({ t: 'buy', item: 'potion', key: 'z1' });
    expect(server.stats().writes.purchase).toBe(1);
    await a.request({ t: 'mine' });
    await until(() => server.stats().writes.interval >= 1);
    await a.request({ t: 'mine' });
    const written = server.stats().written;
    const b = await connect();
    await b.request({ t: 'login', userId: 'zed' });
    expect(server.stats()).toMatchObject({ takeovers: 1, written });
    await b.request({ t: 'mine' });
    await b.close();
    await until(() => server.stats().writes.logout === 1);
    const c = await connect();
    await c.request({ t: 'login', userId: 'amy' });
    await c.request({ t: 'mine' });
    const report = await server.shutdown();
    const { writes } = report.stats;
    expect(writes.shutdown).toBeGreaterThanOrEqual(1);
    expect(Object.values(writes).reduce((a, b) => a + b, 0)).toBe(report.stats.written);
  });
});

describe('game server shutdown', () => {
  it('stores every player, connected or within the grace period, and reports what they held', async () => {
    const { server, connect, stored } = await setup();
    const online = await connect();
    await online.request({ t: 'login', userId: 'hal' });
    await online.request({ t: 'mine' });
    const away = await connect();
    await away.request({ t: 'login', userId: 'ivy' });
    await away.request({ t: 'fight' });
    await away.close();
    expect(stored('hal')).toBeUndefined();

    const report = await server.shutdown();
    expect(report.unsaved).toEqual([]);
    expect(report.dirtyAtShutdown).toBe(2);
    expect(report.finalState).toEqual({ hal: online.view.state, ivy: away.view.state });
    expect(stored('hal')).toEqual(online.view.state);
    expect(stored('ivy')).toEqual(away.view.state);
    expect(await online.closed).toBe(CLOSE_CODES.GOING_AWAY);
  });

  it('names the players it could not store before the deadline', async () => {
    const { server, adapter, connect } = await setup({ shutdownTimeout: '300ms' });
    const client = await connect();
    await client.request({ t: 'login', userId: 'jon' });
    await client.request({ t: 'mine' });
    adapter.failRate(1, { methods: ['save'] });
    const report = await server.shutdown();
    expect(report.unsaved.map((u) => u.userId)).toEqual(['jon']);
  });
});
