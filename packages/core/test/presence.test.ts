/**
 * Presence: one live session per user across nodes (managers sharing a PresenceHub behave like processes),
 * handoffs that carry the newest data, leases, fencing of a node that stopped answering, and shutdown.
 */

import diagnostics from 'node:diagnostics_channel';
import {
  FaultyAdapter,
  MemoryAdapter,
  MemoryPresence,
  MemoryStore,
  PresenceHub,
} from '@cagey-sessions/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CHANNELS,
  ConflictError,
  type HandoffMessage,
  type KickInfo,
  PersistenceError,
  type Presence,
  type Session,
  SessionManager,
  type SessionManagerOptions,
  ValidationError,
} from '../src/index.js';

type Player = { gold: number };

const managers: SessionManager<Player>[] = [];
afterEach(async () => {
  await Promise.allSettled(managers.splice(0).map((m) => m.destroy(false)));
});

interface Cluster {
  store: MemoryStore;
  hub: PresenceHub;
  node(nodeId: string, options?: Partial<SessionManagerOptions>): Node;
}

interface Node {
  manager: SessionManager<Player>;
  presence: MemoryPresence;
  faulty: FaultyAdapter;
  login(userId: string): Promise<Session<Player>>;
}

function cluster(): Cluster {
  const store = new MemoryStore();
  const hub = new PresenceHub();
  return {
    store,
    hub,
    node(nodeId, options = {}) {
      const presence = new MemoryPresence({ hub });
      const faulty = new FaultyAdapter(new MemoryAdapter({ store }));
      const manager = new SessionManager<Player>({
        adapter: faulty,
        presence,
        nodeId,
        // Long enough that a busy machine's timer delays never make a lease lapse unless a test wants it to.
        leaseTtl: 2_000,
        handoffTimeout: 2_000,
        userData: { persistence: { retry: { initialDelay: 5, maxDelay: 20 } } },
        ...options,
      });
      managers.push(manager);
      const login = async (userId: string) => {
        const session = await manager.create();
        await session.identify(userId, { defaults: { gold: 0 } });
        return session;
      };
      return { manager, presence, faulty, login };
    },
  };
}

function kicks(session: Session<Player>): KickInfo[] {
  const seen: KickInfo[] = [];
  session.on('kicked', (info) => {
    seen.push(info);
  });
  return seen;
}

/** A small seeded generator: integers in [0, n). */
function mulberry32(seed: number): (n: number) => number {
  let a = seed;
  return (n) => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('handoff between nodes', () => {
  it('kicks the holder, stores its newest data, and only then lets the new node have it', async () => {
    const { store, node } = cluster();
    const a = node('a');
    const b = node('b');
    const onA = await a.login('u1');
    onA.userData!.gold = 5; // not persisted yet
    const seen = kicks(onA);
    const order: string[] = [];
    onA.on('kicked', () => {
      order.push(`kicked (stored gold ${store.peek<Player>('u1')?.userData.gold ?? 'none'})`);
    });
    onA.on('destroy', () => {
      order.push('a destroyed');
    });
    const onB = await b.manager.create();
    const data = await onB.identify('u1', { defaults: { gold: 0 } });
    order.push('b identified');
    expect(data).toEqual({ gold: 5 });
    expect(onB.version).toBe(1);
    expect(store.peek('u1')).toEqual({ userData: { gold: 5 }, version: 1 });
    expect(seen).toEqual([{ reason: 'login-elsewhere', nodeId: 'b' }]);
    expect(order).toEqual(['kicked (stored gold none)', 'a destroyed', 'b identified']);
    expect(onA.isDestroyed).toBe(true);
    expect(a.manager.findByUserId('u1')).toBeUndefined();
    // B writes on top of A's data, fenced by the version it loaded.
    onB.userData!.gold = 7;
    await onB.persistNow();
    expect(store.peek('u1')).toEqual({ userData: { gold: 7 }, version: 2 });
  });

  it('publishes each handoff on cagey-sessions:handoff, with who held the user and how it ended', async () => {
    const { hub, node } = cluster();
    const a = node('a');
    const b = node('b');
    const messages: HandoffMessage[] = [];
    const listener = (message: unknown) => {
      if ((message as HandoffMessage).manager === b.manager) messages.push(message as HandoffMessage);
    };
    diagnostics.subscribe(CHANNELS.handoff, listener);
    try {
      await a.login('u1');
      await b.login('u1');
      await a.login('u2');
      a.presence.cut();
      hub.expire('a');
      await b.login('u2');
      await b.login('fresh'); // nobody held it: no handoff
    } finally {
      diagnostics.unsubscribe(CHANNELS.handoff, listener);
    }
    expect(messages.map(({ userId, from, outcome }) => ({ userId, from, outcome }))).toEqual([
      { userId: 'u1', from: 'a', outcome: 'released' },
      { userId: 'u2', from: 'a', outcome: 'expired' },
    ]);
    for (const message of messages) expect(message.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('emits kicked on the manager too, and persists even when the listener destroys without persisting', async () => {
    const { store, node } = cluster();
    const a = node('a');
    const b = node('b');
    const onA = await a.login('u1');
    onA.userData!.gold = 9;
    const onManager: [Session<Player>, KickInfo][] = [];
    a.manager.on('kicked', async (session, info) => {
      onManager.push([session, info]);
      await session.destroy(false); // the game's disconnect handler, configured not to persist
    });
    await b.login('u1');
    expect(onManager).toEqual([[onA, { reason: 'login-elsewhere', nodeId: 'b' }]]);
    expect(store.peek('u1')?.userData).toEqual({ gold: 9 });
  });

  it('a second login on the same node ends the first session and takes its data over', async () => {
    const { node } = cluster();
    const a = node('a');
    const first = await a.login('u1');
    first.userData!.gold = 3;
    const seen = kicks(first);
    const second = await a.login('u1');
    expect(seen).toEqual([{ reason: 'login-elsewhere', nodeId: 'a' }]);
    expect(first.isDestroyed).toBe(true);
    expect(second.userData).toEqual({ gold: 3 });
    expect(a.manager.findByUserId('u1')).toBe(second);
  });

  it('waits while the holder cannot store the data, then times out with HANDOFF_TIMEOUT; nothing is lost', async () => {
    const { store, node } = cluster();
    const a = node('a');
    const b = node('b', { handoffTimeout: 400 });
    const onA = await a.login('u1');
    onA.userData!.gold = 11;
    a.faulty.failRate(1);
    const onB = await b.manager.create();
    const error = await onB.identify('u1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PersistenceError);
    expect((error as PersistenceError).code).toBe('HANDOFF_TIMEOUT');
    expect(store.peek('u1')).toBeUndefined();
    expect(await b.manager.locate('u1')).toBe('a');
    // The store comes back: A's retries store the data, it lets go, and the login succeeds with A's data.
    a.faulty.reset();
    const again = await b.manager.create();
    expect(await again.identify('u1')).toEqual({ gold: 11 });
  });

  it('a login on the holder while its handoff waits for the store gives up after handoffTimeout', async () => {
    const { node } = cluster();
    const a = node('a', { handoffTimeout: 300 });
    const b = node('b', { handoffTimeout: 300 });
    const onA = await a.login('u1');
    onA.userData!.gold = 1;
    a.faulty.failRate(1);
    const onB = await b.manager.create();
    const fromB = onB.identify('u1').catch((e: unknown) => e);
    await expect.poll(() => onA.isDestroyed).toBe(true); // kicked; its data cannot be stored
    const again = await a.manager.create();
    const error = await again.identify('u1').catch((e: unknown) => e);
    expect((error as PersistenceError).code).toBe('HANDOFF_TIMEOUT');
    expect(((await fromB) as PersistenceError).code).toBe('HANDOFF_TIMEOUT');
  });

  it('a login elsewhere during identify() kicks only after identify() resolved and its caller went on', async () => {
    const { node } = cluster();
    const a = node('a');
    const b = node('b');
    const onA = await a.manager.create();
    const order: string[] = [];
    let attached = false;
    let fromB: Promise<Session<Player>> | undefined;
    onA.on('kicked', () => {
      order.push(`kicked (connection attached: ${attached})`);
    });
    onA.on('identified', async () => {
      fromB = b.login('u1'); // another node's login arrives while this one is still under way
      await sleep(50);
      order.push('identified listeners done');
    });
    await onA.identify('u1', { defaults: { gold: 0 } });
    attached = true; // what a game does right after identify(): attach the player's connection
    await fromB;
    expect(order).toEqual(['identified listeners done', 'kicked (connection attached: true)']);
  });

  it('two logins at once elsewhere: the later one asks the new holder at once, and both resolve in turn', async () => {
    const { node } = cluster();
    const a = node('a');
    // Shorter than the pause before asking the same holder again: only an immediate ask of the new holder works.
    const b = node('b', { handoffTimeout: 800 });
    const c = node('c', { handoffTimeout: 800 });
    const onA = await a.login('u1');
    onA.userData!.gold = 3;
    const [onB, onC] = await Promise.all([b.login('u1'), c.login('u1')]);
    expect(onA.isDestroyed).toBe(true);
    const live = [onB, onC].filter((session) => !session.isDestroyed);
    expect(live).toHaveLength(1);
    expect(live[0]!.userData).toEqual({ gold: 3 });
  });

  it('one live session per user while players hop between three nodes at random', async () => {
    const { store, node } = cluster();
    const nodes = [node('a'), node('b'), node('c')];
    const live = new Map<string, number>();
    let overlaps = 0;
    for (const { manager } of nodes) {
      manager.on('identified', (_session, userId) => {
        const n = (live.get(String(userId)) ?? 0) + 1;
        live.set(String(userId), n);
        if (n > 1) overlaps++;
      });
      manager.on('beforeDestroy', (session) => {
        if (session.userId !== undefined)
          live.set(String(session.userId), live.get(String(session.userId))! - 1);
      });
    }
    const acknowledged = new Map<string, number>();
    let hops = 0;
    let handoffs = 0;
    for (const { manager } of nodes) manager.on('kicked', () => void handoffs++);
    const random = mulberry32(7);
    const players = Array.from({ length: 12 }, (_, i) => `p${i}`);
    await Promise.all(
      players.map(async (userId) => {
        for (let hop = 0; hop < 8; hop++) {
          const at = nodes[random(3)]!;
          hops++;
          const session = await at.login(userId);
          if (session.isDestroyed) continue; // kicked by a concurrent login of the same player
          session.userData!.gold++;
          try {
            await session.persistNow();
            acknowledged.set(userId, session.userData!.gold);
          } catch {
            // kicked while persisting: the data went with the handoff
          }
          if (random(2) === 0) await session.destroy(true);
        }
      }),
    );
    expect(overlaps).toBe(0);
    expect(hops).toBe(96);
    expect(handoffs).toBeGreaterThan(10); // the run did hand live sessions over
    for (const { manager } of nodes) await manager.destroy(true);
    for (const userId of players) {
      expect(store.peek<Player>(userId)!.userData.gold).toBeGreaterThanOrEqual(acknowledged.get(userId)!);
    }
  });
});

describe('leases', () => {
  it('takes a user over from a node that stopped answering once its lease expires, and fences it off', async () => {
    const { store, hub, node } = cluster();
    const a = node('a');
    const b = node('b');
    const onA = await a.login('u1');
    onA.userData!.gold = 1;
    await onA.persistNow();
    // A is cut off from the presence (but not from the store) and its lease runs out.
    a.presence.cut();
    hub.expire('a');
    const onB = await b.login('u1');
    expect(onB.userData).toEqual({ gold: 1 });
    expect(onB.version).toBe(2); // the fencing write
    // A's late write, based on the version it had, is refused, never stored.
    onA.userData!.gold = 1_000;
    const error = await onA.persistNow().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(store.peek('u1')).toEqual({ userData: { gold: 1 }, version: 2 });
  });

  it('a process restarted under the same node id fences off the old one like any other node', async () => {
    const { store, node } = cluster();
    const old = node('a');
    const onOld = await old.login('u1');
    onOld.userData!.gold = 1;
    await onOld.persistNow();
    old.presence.cut(); // the old process hangs; a new one starts with the same node id
    const restarted = node('a');
    const onNew = await restarted.login('u1');
    expect(onNew.version).toBe(2); // fenced
    onOld.userData!.gold = 1_000;
    await expect(onOld.persistNow()).rejects.toBeInstanceOf(ConflictError);
    expect(store.peek('u1')).toEqual({ userData: { gold: 1 }, version: 2 });
  });

  it('a node that cannot renew its lease kicks its players before the lease ends', async () => {
    const { hub, node } = cluster();
    const a = node('a', { leaseTtl: 200 });
    const onA = await a.login('u1');
    const seen = kicks(onA);
    a.presence.cut();
    const kicked = new Promise((resolve) => onA.once('kicked', resolve));
    await kicked;
    expect(seen).toEqual([{ reason: 'lease-lost', nodeId: undefined }]);
    // Kicked while the presence still counted the lease as live: nobody could have taken the user yet.
    expect(hub.holderOf('u1')).toBe('a');
    // Back online, the node joins again and can hold users again.
    a.presence.restore();
    const again = await a.login('u1');
    expect(again.isDestroyed).toBe(false);
    expect(hub.holderOf('u1')).toBe('a');
  });

  it('a claim answered after the lease lapsed is made again under the new lease, so a later login still kicks', async () => {
    const { hub, node } = cluster();
    const inner = new MemoryPresence({ hub });
    let joins = 0;
    let slowClaim = false;
    let renewFails = false;
    // A presence whose claim is done at once but answered only after the node's lease has lapsed (renewals
    // fail meanwhile) and the node has joined again: a reply delayed in a busy network or process.
    const slow: Presence = {
      name: 'slow',
      join: (...args) => {
        joins++;
        return inner.join(...args);
      },
      renew: (...args) => (renewFails ? Promise.reject(new Error('renew lost')) : inner.renew(...args)),
      claim: async (...args) => {
        const result = await inner.claim(...args);
        if (slowClaim) {
          slowClaim = false;
          renewFails = true;
          const joined = joins;
          await expect.poll(() => joins, { timeout: 5_000 }).toBeGreaterThan(joined);
          renewFails = false;
        }
        return result;
      },
      release: (...args) => inner.release(...args),
      locate: (...args) => inner.locate(...args),
      send: (...args) => inner.send(...args),
      leave: (...args) => inner.leave(...args),
      close: () => inner.close(),
    };
    const a = node('a', { presence: slow, leaseTtl: 300 });
    const b = node('b');
    await a.login('warm-up'); // joined
    slowClaim = true;
    const onA = await a.login('u1');
    expect(onA.isDestroyed).toBe(false);
    expect(hub.holderOf('u1')).toBe('a');
    const onB = await b.login('u1');
    expect(onA.isDestroyed).toBe(true); // asked and kicked, not overtaken behind its back
    expect(onB.isDestroyed).toBe(false);
  });

  it('renews its lease: a user held longer than leaseTtl is not taken without a handoff', async () => {
    const { node } = cluster();
    const a = node('a', { leaseTtl: 500 });
    const b = node('b');
    const onA = await a.login('u1');
    const seen = kicks(onA);
    await sleep(1_500);
    expect(seen).toEqual([]);
    await b.login('u1');
    expect(seen).toEqual([{ reason: 'login-elsewhere', nodeId: 'b' }]);
  });
});

describe('ownership', () => {
  it('locate() names the holder; logout, destroy and shutdown release the user', async () => {
    const { hub, node } = cluster();
    const a = node('a');
    const b = node('b');
    const onA = await a.login('u1');
    await a.login('u2');
    expect(await b.manager.locate('u1')).toBe('a');
    expect(await a.manager.locate('u1')).toBe('a');
    expect(await a.manager.locate('nobody')).toBeUndefined();
    onA.userData!.gold = 2;
    await onA.destroy(true);
    await expect.poll(() => hub.holderOf('u1')).toBeUndefined();
    expect(hub.holderOf('u2')).toBe('a');
    await a.manager.destroy(true);
    expect(hub.records().size).toBe(0);
  });

  it("keeps a destroyed session's user while its data is unsaved, and releases it once stored", async () => {
    const { hub, node } = cluster();
    const a = node('a');
    const onA = await a.login('u1');
    onA.userData!.gold = 4;
    a.faulty.failNext(2);
    await onA.destroy(true);
    expect(hub.holderOf('u1')).toBe('a');
    await expect.poll(() => hub.holderOf('u1')).toBeUndefined();
  });

  it('without a presence, locate() resolves undefined and nodeId is undefined', async () => {
    const manager = new SessionManager<Player>({ adapter: new MemoryAdapter() });
    managers.push(manager);
    expect(manager.nodeId).toBeUndefined();
    expect(await manager.locate('u1')).toBeUndefined();
  });
});

describe('options', () => {
  it('refuses presence options without a presence, bad node ids and a presence without its methods', () => {
    expect(() => new SessionManager({ nodeId: 'a' })).toThrow(ValidationError);
    expect(() => new SessionManager({ presence: new MemoryPresence(), nodeId: 'has space' })).toThrow(
      /nodeId/,
    );
    expect(() => new SessionManager({ presence: new MemoryPresence(), leaseTtl: 50 })).toThrow(/leaseTtl/);
    expect(() => new SessionManager({ presence: {} as never })).toThrow(/Presence needs the methods/);
    expect(() => new SessionManager({ presence: new MemoryPresence(), leaseTTL: '5s' } as never)).toThrow(
      /Did you mean leaseTtl/,
    );
  });

  it('passes the presence whole milliseconds of lease', async () => {
    const hub = new PresenceHub();
    const presence = new MemoryPresence({ hub });
    const ttls: number[] = [];
    const join = presence.join.bind(presence);
    presence.join = (nodeId, ttlMs, onMessage) => {
      ttls.push(ttlMs);
      return join(nodeId, ttlMs, onMessage);
    };
    const manager = new SessionManager<Player>({ presence, leaseTtl: 1_500.25 });
    managers.push(manager);
    await expect.poll(() => ttls).toEqual([1_501]);
  });

  it('gives a random node id when none is given, and logs it', () => {
    const lines: unknown[][] = [];
    const manager = new SessionManager<Player>({
      presence: new MemoryPresence(),
      log: { info: (...args: unknown[]) => lines.push(args) },
    });
    managers.push(manager);
    expect(manager.nodeId).toMatch(/^node-[0-9a-f]{12}$/);
    expect(lines).toContainEqual([expect.objectContaining({ nodeId: manager.nodeId }), expect.any(String)]);
  });

  it('a presence that cannot be reached makes identify() reject with PRESENCE_UNAVAILABLE', async () => {
    const presence = new MemoryPresence();
    presence.cut();
    const manager = new SessionManager<Player>({
      adapter: new MemoryAdapter(),
      presence,
      handoffTimeout: 300,
    });
    managers.push(manager);
    const session = await manager.create();
    const error = await session.identify('u1').catch((e: unknown) => e);
    expect((error as PersistenceError).code).toBe('PRESENCE_UNAVAILABLE');
    // The join never succeeded: its error says why (here the cut; a refused password in production).
    expect((error as PersistenceError).cause).toMatchObject({ message: expect.stringContaining('cut off') });
    expect(manager.findByUserId('u1')).toBeUndefined();
  });
});
