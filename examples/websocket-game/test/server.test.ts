import { FaultyAdapter, MemoryAdapter } from '@cagey-sessions/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_GOING_AWAY, CLOSE_REPLACED, type Player, type ServerMessage } from '../src/game.js';
import { type GameServer, type GameServerOptions, startGameServer } from '../src/server.js';
import { TestClient } from './client.js';

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
  const connect = async () => {
    const client = await TestClient.connect(server.url);
    clients.push(client);
    return client;
  };
  const stored = (userId: string) => memory.store.peek<Player>(userId)?.userData;
  return { server, adapter, memory, connect, stored };
}

function expectType<T extends ServerMessage['t']>(
  message: ServerMessage,
  type: T,
): asserts message is Extract<ServerMessage, { t: T }> {
  expect(message.t, JSON.stringify(message)).toBe(type);
}

describe('game server sessions', () => {
  it('a new player starts from the defaults; actions change their data in the session', async () => {
    const { connect } = await setup();
    const client = await connect();
    const welcome = await client.request({ t: 'login', userId: 'ann' });
    expectType(welcome, 'welcome');
    expect(welcome).toMatchObject({ resumed: false, returning: false });
    expect(welcome.state).toEqual({ gold: 20, xp: 0, level: 1, inventory: [], purchases: 0 });
    const mined = await client.request({ t: 'mine' });
    expectType(mined, 'ok');
    expect(mined.state.gold).toBeGreaterThan(20);
  });

  it('a reconnect with the token within the grace period resumes the same session without loading again', async () => {
    const { server, adapter, connect } = await setup();
    const first = await connect();
    const welcome = await first.request({ t: 'login', userId: 'bob' });
    expectType(welcome, 'welcome');
    const mined = await first.request({ t: 'mine' });
    expectType(mined, 'ok');
    await first.close();

    const second = await connect();
    const resumed = await second.request({ t: 'login', userId: 'bob', token: welcome.token });
    expectType(resumed, 'welcome');
    expect(resumed).toMatchObject({ resumed: true, token: welcome.token });
    expect(resumed.state).toEqual(mined.state);
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
    const last = await first.request({ t: 'mine' });
    expectType(last, 'ok');
    const ended = new Promise<void>((resolve) => server.manager.once('destroy', () => resolve()));
    await first.close();
    await ended;
    expect(stored('cid')).toEqual(last.state);
    expect(server.stats()).toMatchObject({ sessions: 0, expired: 1 });

    const second = await connect();
    const again = await second.request({ t: 'login', userId: 'cid', token: welcome.token });
    expectType(again, 'welcome');
    expect(again).toMatchObject({ resumed: false, returning: true });
    expect(again.state).toEqual(last.state);
    expect(adapter.calls.load).toBe(2);
  });

  it('a login from a second connection takes the player over: the first is closed and the data carries over', async () => {
    const { server, connect } = await setup();
    const phone = await connect();
    await phone.request({ t: 'login', userId: 'dee' });
    const mined = await phone.request({ t: 'mine' });
    expectType(mined, 'ok');

    const laptop = await connect();
    const welcome = await laptop.request({ t: 'login', userId: 'dee' });
    expectType(welcome, 'welcome');
    expect(welcome.resumed).toBe(false);
    expect(welcome.state).toEqual(mined.state);
    expect(await phone.closed).toBe(CLOSE_REPLACED);
    expect(server.stats()).toMatchObject({ takeovers: 1, sessions: 1 });
  });

  it('a purchase is acknowledged only once the store holds it', async () => {
    const { adapter, connect, stored } = await setup();
    const client = await connect();
    await client.request({ t: 'login', userId: 'eve' });
    const hang = adapter.hang({ methods: ['save'] });
    let reply: Promise<ServerMessage>;
    try {
      reply = client.request({ t: 'buy', item: 'potion' });
      await adapter.nextCall('save');
      // The save is held; anything the server wrote before it (an early acknowledgement) arrives before this pong.
      await client.roundTrip();
      expect(client.received.filter((m) => m.t === 'purchased')).toEqual([]);
    } finally {
      hang.release();
    }
    const purchased = await reply;
    expectType(purchased, 'purchased');
    expect(purchased.purchase).toEqual({ id: 1, item: 'potion' });
    expect(stored('eve')?.inventory).toEqual([{ id: 1, item: 'potion' }]);
  });

  it('a purchase whose write fails is not acknowledged', async () => {
    const { adapter, connect } = await setup();
    const client = await connect();
    await client.request({ t: 'login', userId: 'fay' });
    adapter.failNext(1, { methods: ['save'] });
    const reply = await client.request({ t: 'buy', item: 'potion' });
    expectType(reply, 'error');
    expect(reply.code).toBe('NOT_STORED');
    expect(reply.state?.inventory).toEqual([{ id: 1, item: 'potion' }]);
  });

  it('malformed requests get an error and the connection stays usable', async () => {
    const { connect } = await setup();
    const client = await connect();
    client.ws.send('{"t":"teleport"');
    const error = await client.next((m) => m.t === 'error');
    expect(error).toMatchObject({ t: 'error', seq: null, code: 'BAD_REQUEST' });
    const early = await client.request({ t: 'mine' });
    expect(early).toMatchObject({ t: 'error', code: 'NOT_LOGGED_IN' });
    expect((await client.request({ t: 'login', userId: 'gus' })).t).toBe('welcome');
  });
});

describe('game server shutdown', () => {
  it('stores every player, connected or within the grace period, and reports what they held', async () => {
    const { server, connect, stored } = await setup();
    const online = await connect();
    await online.request({ t: 'login', userId: 'hal' });
    const onlineLast = await online.request({ t: 'mine' });
    const away = await connect();
    await away.request({ t: 'login', userId: 'ivy' });
    const awayLast = await away.request({ t: 'fight' });
    await away.close();
    expectType(onlineLast, 'ok');
    expectType(awayLast, 'ok');
    expect(stored('hal')).toBeUndefined();

    const report = await server.shutdown();
    expect(report.unsaved).toEqual([]);
    expect(report.dirtyAtShutdown).toBe(2);
    expect(report.finalState).toEqual({ hal: onlineLast.state, ivy: awayLast.state });
    expect(stored('hal')).toEqual(onlineLast.state);
    expect(stored('ivy')).toEqual(awayLast.state);
    expect(await online.closed).toBe(CLOSE_GOING_AWAY);
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
