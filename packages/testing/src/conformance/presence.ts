import type { Presence, PresenceMessage } from '@cagey-sessions/core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

export interface PresenceConformanceOptions {
  /** Names the suite, e.g. `RedisPresence`. */
  name: string;
  /**
   * A new presence over the engine under test, as another process would open it. Presences created with the same
   * `namespace` must share records (same key prefix or table); different namespaces must not see each other.
   */
  createPresence(context: { namespace: string }): Presence | Promise<Presence>;
  /**
   * Lease length for the expiry checks, in ms. Default 1000. The engine's clock decides when a lease has
   * expired, so keep it well above its timer resolution and the test machine's pauses.
   */
  leaseTtlMs?: number;
  /** Called once after the suite with every namespace it used, to drop their tables or keys. */
  afterAll?(context: { namespaces: string[] }): void | Promise<void>;
}

/**
 * Registers the conformance suite for a `Presence` implementation: the contract core's presence protocol
 * relies on (claims, incarnations, leases, releases, messages). Run it against a real engine.
 */
export function runPresenceConformance(options: PresenceConformanceOptions): void {
  const ttl = options.leaseTtlMs ?? 1_000;
  const open: Presence[] = [];
  const namespaces: string[] = [];
  let counter = 0;

  /** `count` presences over one fresh namespace, each the presence of one node. */
  async function nodes(count: number): Promise<Presence[]> {
    const namespace = `pc_${process.pid}_${Date.now().toString(36)}_${counter++}`;
    namespaces.push(namespace);
    const created: Presence[] = [];
    for (let i = 0; i < count; i++) created.push(await options.createPresence({ namespace }));
    open.push(...created);
    return created;
  }

  const ignore = () => {};
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  describe(`${options.name}: presence conformance`, () => {
    afterEach(async () => {
      await Promise.allSettled(open.splice(0).map((presence) => presence.close()));
    });
    afterAll(async () => {
      await options.afterAll?.({ namespaces: [...namespaces] });
    });

    describe('claims', () => {
      it('a free user is acquired; the holder claims it again without a previous owner', async () => {
        const [a] = await nodes(1);
        await a!.join('a', 10_000, ignore);
        expect(await a!.claim('u1', 'a')).toEqual({ acquired: true });
        expect(await a!.claim('u1', 'a')).toEqual({ acquired: true });
        expect(await a!.locate('u1')).toBe('a');
      });

      it('a user held under a live lease is not acquired by another node, and nothing changes', async () => {
        const [a, b] = await nodes(2);
        await a!.join('a', 10_000, ignore);
        await b!.join('b', 10_000, ignore);
        await a!.claim('u1', 'a');
        expect(await b!.claim('u1', 'b')).toEqual({ acquired: false, owner: 'a' });
        expect(await b!.locate('u1')).toBe('a');
      });

      it('locate() of a user nobody holds is undefined; ids are opaque strings', async () => {
        const [a] = await nodes(1);
        await a!.join('a', 10_000, ignore);
        expect(await a!.locate('nobody')).toBeUndefined();
        for (const id of ['5', 'with space', 'ünïcødé ✓', 'a:b{c}', 'x'.repeat(512)]) {
          expect(await a!.claim(id, 'a')).toEqual({ acquired: true });
          expect(await a!.locate(id)).toBe('a');
        }
      });

      it('of many nodes claiming one user at once, exactly one acquires it', async () => {
        const presences = await nodes(8);
        await Promise.all(presences.map((p, i) => p.join(`n${i}`, 10_000, ignore)));
        for (let round = 0; round < 5; round++) {
          const userId = `race-${round}`;
          const results = await Promise.all(presences.map((p, i) => p.claim(userId, `n${i}`)));
          const winners = results.flatMap((r, i) => (r.acquired ? [`n${i}`] : []));
          expect(winners).toHaveLength(1);
          for (const r of results) if (!r.acquired) expect(r.owner).toBe(winners[0]);
        }
      });

      it('a claim by a node that has not joined, or whose lease expired, is refused (PRESENCE_UNAVAILABLE)', async () => {
        const [a] = await nodes(1);
        await expect(a!.claim('u1', 'ghost')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
        await a!.join('a', ttl, ignore);
        await sleep(ttl * 2);
        await expect(a!.claim('u1', 'a')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
        expect(await a!.locate('u1')).toBeUndefined();
      });
    });

    describe('releases', () => {
      it('only the holder releases a user; then another node acquires it without a previous owner', async () => {
        const [a, b] = await nodes(2);
        await a!.join('a', 10_000, ignore);
        await b!.join('b', 10_000, ignore);
        await a!.claim('u1', 'a');
        await b!.release('b', ['u1']);
        expect(await b!.locate('u1')).toBe('a');
        await a!.release('a', ['u1']);
        expect(await b!.locate('u1')).toBeUndefined();
        expect(await b!.claim('u1', 'b')).toEqual({ acquired: true });
      });

      it('releases a large batch, leaving users held by others alone', async () => {
        const [a, b] = await nodes(2);
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, ignore);
        const ids = Array.from({ length: 1_000 }, (_, i) => `bulk-${i}`);
        for (let i = 0; i < ids.length; i += 100) {
          await Promise.all(ids.slice(i, i + 100).map((id) => a!.claim(id, 'a')));
        }
        await b!.claim('other', 'b');
        await a!.release('a', [...ids, 'other']);
        const located = await Promise.all(ids.slice(0, 50).map((id) => b!.locate(id)));
        expect(located.every((node) => node === undefined)).toBe(true);
        expect(await a!.locate('other')).toBe('b');
      });
    });

    describe('leases', () => {
      it('a lease that was not renewed expires: the user is taken over with the previous owner named', async () => {
        const [a, b] = await nodes(2);
        // Joined with a long lease so that a slow claim still finds it live, then shortened by a renewal.
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, ignore);
        await a!.claim('u1', 'a');
        expect(await a!.renew('a', ttl)).toBe(true);
        await sleep(ttl * 2);
        expect(await b!.locate('u1')).toBeUndefined();
        expect(await b!.claim('u1', 'b')).toEqual({ acquired: true, previousOwner: 'a' });
        // The expired node learns it, and can no longer touch the new holder's record.
        expect(await a!.renew('a', ttl)).toBe(false);
        await a!.release('a', ['u1']);
        expect(await b!.locate('u1')).toBe('b');
      });

      it('renewals keep a lease alive well past its length', async () => {
        const [a, b] = await nodes(2);
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, ignore);
        await a!.claim('u1', 'a');
        expect(await a!.renew('a', ttl)).toBe(true);
        for (let i = 0; i < 6; i++) {
          await sleep(ttl / 3);
          expect(await a!.renew('a', ttl)).toBe(true);
        }
        expect(await b!.claim('u1', 'b')).toEqual({ acquired: false, owner: 'a' });
      });

      it('renew() of a node that never joined resolves false', async () => {
        const [a] = await nodes(1);
        expect(await a!.renew('ghost', ttl)).toBe(false);
      });

      it('joining again starts a new incarnation: users of the earlier one count as held by a dead node', async () => {
        const [a, b] = await nodes(2);
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, ignore);
        await a!.claim('u1', 'a');
        await a!.claim('u2', 'a');
        await a!.join('a', 30_000, ignore);
        expect(await a!.claim('u1', 'a')).toEqual({ acquired: true, previousOwner: 'a' });
        expect(await b!.claim('u2', 'b')).toEqual({ acquired: true, previousOwner: 'a' });
      });

      it('a restarted process under the same node id ends the old one: its renew, release and leave do nothing', async () => {
        const [old, restarted, other] = await nodes(3);
        await old!.join('a', 30_000, ignore);
        await old!.claim('u1', 'a');
        await restarted!.join('a', 30_000, ignore);
        await other!.join('b', 30_000, ignore);
        expect(await restarted!.claim('u2', 'a')).toEqual({ acquired: true });
        expect(await old!.renew('a', 30_000)).toBe(false);
        await old!.release('a', ['u2']);
        expect(await other!.locate('u2')).toBe('a');
        await old!.leave('a');
        expect(await restarted!.renew('a', 30_000)).toBe(true);
        expect(await restarted!.claim('u1', 'a')).toEqual({ acquired: true, previousOwner: 'a' });
      });

      it('after leave(), the node holds nothing: its users are free and renew() resolves false', async () => {
        const [a, b] = await nodes(2);
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, ignore);
        await a!.claim('u1', 'a');
        await a!.leave('a');
        await a!.leave('a'); // idempotent
        expect(await b!.locate('u1')).toBeUndefined();
        expect(await a!.renew('a', 30_000)).toBe(false);
        const taken = await b!.claim('u1', 'b');
        expect(taken.acquired).toBe(true);
      });
    });

    describe('messages', () => {
      it('a message reaches the addressed node only, unaltered', async () => {
        const [a, b, c] = await nodes(3);
        const received: Record<string, PresenceMessage[]> = { a: [], b: [], c: [] };
        await a!.join('a', 30_000, (m) => received.a!.push(m));
        await b!.join('b', 30_000, (m) => received.b!.push(m));
        await c!.join('c', 30_000, (m) => received.c!.push(m));
        const sent: PresenceMessage[] = [
          { type: 'release', userId: 'ü 1:{x}', from: 'a' },
          { type: 'released', userId: '2', from: 'a' },
        ];
        for (const message of sent) await a!.send('b', message);
        await expect.poll(() => received.b!.length, { timeout: 5_000 }).toBe(2);
        // Order is not promised (core never relies on it), content is.
        expect(received.b).toHaveLength(sent.length);
        expect(received.b).toEqual(expect.arrayContaining(sent));
        await sleep(100);
        expect(received.a).toEqual([]);
        expect(received.c).toEqual([]);
      });

      it('sending to a node that is not joined resolves; after leave() a node receives nothing', async () => {
        const [a, b] = await nodes(2);
        const received: PresenceMessage[] = [];
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, (m) => received.push(m));
        await a!.send('nobody', { type: 'released', userId: 'u', from: 'a' });
        await b!.leave('b');
        await a!.send('b', { type: 'released', userId: 'u', from: 'a' });
        await sleep(300);
        expect(received).toEqual([]);
      });

      it('a node that joins again keeps receiving its messages', async () => {
        const [a, b] = await nodes(2);
        const received: PresenceMessage[] = [];
        const toEarlier: PresenceMessage[] = [];
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, (m) => toEarlier.push(m));
        await b!.join('b', 30_000, (m) => received.push(m));
        await a!.send('b', { type: 'release', userId: 'u', from: 'a' });
        await expect.poll(() => received.length, { timeout: 5_000 }).toBe(1);
        expect(received[0]).toEqual({ type: 'release', userId: 'u', from: 'a' });
        await a!.send('b', { type: 'released', userId: 'u', from: 'a' });
        await expect.poll(() => received.length, { timeout: 5_000 }).toBe(2);
        expect(toEarlier).toEqual([]); // the earlier incarnation's listener hears nothing more
      });
    });

    describe('isolation', () => {
      it('presences over different namespaces do not see each other', async () => {
        const [a] = await nodes(1);
        const [b] = await nodes(1);
        await a!.join('a', 30_000, ignore);
        await b!.join('b', 30_000, ignore);
        await a!.claim('u1', 'a');
        expect(await b!.locate('u1')).toBeUndefined();
        expect(await b!.claim('u1', 'b')).toEqual({ acquired: true });
      });
    });
  });
}
