import { describe, expect, it, vi } from 'vitest';
import { PostgresPresence } from '../src/index.js';
import { channelOf, parsePresenceTables } from '../src/presence-sql.js';
import { randomTable, serverUrl } from './helpers.js';
import {
  counting,
  expireLease,
  holderRow,
  inbox,
  message,
  presenceWorld,
  tokenOf,
} from './presence-helpers.js';

const url = serverUrl('adapter-postgres: presence');

describe.each([
  { kind: 'server' as const, skip: url === null },
  { kind: 'pglite' as const, skip: false },
])('PostgresPresence on $kind', ({ kind, skip }) => {
  const world = presenceWorld(kind, skip ? null : url);
  const { raw } = world;

  describe.skipIf(skip)('the contract', () => {
    it('a claim takes a free user under the claimer incarnation, again idempotently, and refuses another node', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      const b = await world.presence(table);
      await a.join('a', 30_000, () => {});
      await b.join('b', 30_000, () => {});
      expect(await a.claim('u1', 'a')).toEqual({ acquired: true });
      const record = await holderRow(raw, table, 'u1');
      expect(record).toEqual({ node_id: 'a', token: await tokenOf(raw, table, 'a') });
      expect(await a.claim('u1', 'a')).toEqual({ acquired: true });
      expect(await b.claim('u1', 'b')).toEqual({ acquired: false, owner: 'a' });
      expect(await holderRow(raw, table, 'u1')).toEqual(record);
      expect(await b.locate('u1')).toBe('a');
    });

    it('a lease that ran out: the user is taken over naming the previous owner; the old incarnation cannot renew nor release it', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      const b = await world.presence(table);
      await a.join('a', 30_000, () => {});
      await b.join('b', 30_000, () => {});
      await a.claim('u1', 'a');
      await expireLease(a, raw, table, 'a');
      expect(await b.locate('u1')).toBeUndefined();
      expect(await b.claim('u1', 'b')).toEqual({ acquired: true, previousOwner: 'a' });
      expect(await b.claim('u1', 'b')).toEqual({ acquired: true });
      expect(await a.renew('a', 30_000)).toBe(false);
      await a.release('a', ['u1']);
      expect(await holderRow(raw, table, 'u1')).toEqual({
        node_id: 'b',
        token: await tokenOf(raw, table, 'b'),
      });
      // The expired node cannot claim either until it joins again.
      await expect(a.claim('u2', 'a')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
      expect(await holderRow(raw, table, 'u2')).toBeUndefined();
    });

    it('a node that joins again, here or in another process, takes its earlier incarnation users over with itself as previous owner', async () => {
      const table = randomTable('p');
      const first = await world.presence(table);
      const restarted = await world.presence(table);
      await first.join('a', 30_000, () => {});
      await first.claim('u1', 'a');
      await first.claim('u2', 'a');
      await first.join('a', 30_000, () => {});
      expect(await first.claim('u1', 'a')).toEqual({ acquired: true, previousOwner: 'a' });
      // The same node id from another process (a restart): a new incarnation again.
      await restarted.join('a', 30_000, () => {});
      expect(await restarted.claim('u2', 'a')).toEqual({ acquired: true, previousOwner: 'a' });
      // The earlier process still runs: its release and leave touch only its own incarnation.
      await first.release('a', ['u1', 'u2']);
      await first.leave('a');
      expect(await holderRow(raw, table, 'u2')).toEqual({
        node_id: 'a',
        token: await tokenOf(raw, table, 'a'),
      });
      expect(await restarted.renew('a', 30_000)).toBe(true);
      expect(await restarted.locate('u2')).toBe('a');
    });

    it('a node that has not joined, or whose lease expired, cannot claim: PRESENCE_UNAVAILABLE and nothing written', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      await expect(a.claim('u1', 'ghost')).rejects.toMatchObject({
        name: 'StateError',
        code: 'PRESENCE_UNAVAILABLE',
      });
      await a.join('a', 30_000, () => {});
      await a.leave('a');
      await expect(a.claim('u1', 'a')).rejects.toMatchObject({ code: 'PRESENCE_UNAVAILABLE' });
      expect(await holderRow(raw, table, 'u1')).toBeUndefined();
    });

    it('release deletes, in one statement for thousands of ids, only the records of the current incarnation', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      const b = await world.presence(table);
      await a.join('a', 30_000, () => {});
      await b.join('b', 30_000, () => {});
      const ids = Array.from({ length: 5_000 }, (_, i) => `bulk-${i}`);
      await raw.query(
        `INSERT INTO "${table}_users" (user_id, node_id, token) SELECT unnest($1::text[]), 'a', $2`,
        [ids, await tokenOf(raw, table, 'a')],
      );
      await b.claim('other', 'b');
      // The same node in a process that did not join: its release acts for the current incarnation.
      const { client, statements } = counting(world.client());
      const releaser = new PostgresPresence({ client, table });
      await releaser.release('a', [...ids, 'other']);
      expect(statements).toHaveLength(1);
      await releaser.close();
      const { rows } = await raw.query(`SELECT user_id, node_id FROM "${table}_users"`);
      expect(rows).toEqual([{ user_id: 'other', node_id: 'b' }]);
      await a.release('a', []);
    });

    it('locate names the holder only while its lease is live', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      await a.join('a', 30_000, () => {});
      expect(await a.locate('u1')).toBeUndefined();
      await a.claim('u1', 'a');
      expect(await a.locate('u1')).toBe('a');
      await a.leave('a');
      expect(await a.locate('u1')).toBeUndefined();
      // The record stays, naming the holder, so that the next claim reports it for fencing.
      expect((await holderRow(raw, table, 'u1'))?.node_id).toBe('a');
    });

    it('renew extends a live lease from the database clock and resolves false for an unknown node', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      await a.join('a', 30_000, () => {});
      const before = await raw.query(`SELECT expires_at FROM "${table}_nodes" WHERE node_id = 'a'`);
      expect(await a.renew('a', 3_600_000)).toBe(true);
      const { rows } = await raw.query(
        `SELECT expires_at > $1 AS later, expires_at > clock_timestamp() + interval '50 minutes' AS hour
         FROM "${table}_nodes" WHERE node_id = 'a'`,
        [(before.rows[0] as { expires_at: unknown }).expires_at],
      );
      expect(rows).toEqual([{ later: true, hour: true }]);
      expect(await a.renew('nobody', 30_000)).toBe(false);
    });

    it('a message reaches the addressed node only, unaltered, with fields core may add', async () => {
      const table = randomTable('p');
      const [a, b, c] = [
        await world.presence(table),
        await world.presence(table),
        await world.presence(table),
      ];
      const [toA, toB, toC] = [inbox(), inbox(), inbox()];
      await a.join('a', 30_000, toA.onMessage);
      await b.join('b', 30_000, toB.onMessage);
      await c.join('c', 30_000, toC.onMessage);
      const sent = {
        type: 'released' as const,
        userId: 'ü \u0001 "q" {x}',
        from: 'a',
        extra: [1, { n: null }],
      };
      await a.send('b', sent);
      await expect.poll(() => toB.messages.length, { timeout: 10_000 }).toBe(1);
      expect(toB.messages).toEqual([sent]);
      // Notifications reach a connection in commit order: had the first message reached a or c, it would be
      // there before these.
      await b.send('a', message('marker-a'));
      await b.send('c', message('marker-c'));
      await expect.poll(() => toA.messages.length + toC.messages.length, { timeout: 10_000 }).toBe(2);
      expect(toA.messages).toEqual([message('marker-a')]);
      expect(toC.messages).toEqual([message('marker-c')]);
    });

    it('messages to an earlier incarnation still listening elsewhere, or to a node that left, are not delivered', async () => {
      const table = randomTable('p');
      const old = await world.presence(table);
      const restarted = await world.presence(table);
      const sender = await world.presence(table);
      const [oldInbox, newInbox] = [inbox(), inbox()];
      await old.join('a', 30_000, oldInbox.onMessage);
      await old.join('probe', 30_000, oldInbox.onMessage);
      await restarted.join('a', 30_000, newInbox.onMessage);
      await sender.send('a', message('for-the-new-one'));
      await sender.send('probe', message('probe'));
      await expect.poll(() => oldInbox.messages.length, { timeout: 10_000 }).toBe(1);
      expect(oldInbox.messages).toEqual([message('probe')]);
      await expect.poll(() => newInbox.messages, { timeout: 10_000 }).toEqual([message('for-the-new-one')]);
      // After leave(), nothing is sent (the node has no lease row) and nothing is delivered.
      await restarted.leave('a');
      await restarted.leave('a');
      await sender.send('a', message('after-leave'));
      await sender.send('probe', message('probe-2'));
      await expect.poll(() => oldInbox.messages.length, { timeout: 10_000 }).toBe(2);
      expect(newInbox.messages).toEqual([message('for-the-new-one')]);
      await sender.send('nobody', message('u'));
    });

    it('malformed notifications and a listener that throws are logged once per kind and never break delivery', async () => {
      const table = randomTable('p');
      const warn = vi.fn();
      const a = await world.presence(table);
      const logged =
        kind === 'pglite'
          ? new PostgresPresence({ client: world.client(), table, log: { warn } })
          : new PostgresPresence({ url: url!, table, log: { warn } });
      const received = inbox();
      let throwNext = true;
      await logged.join('b', 30_000, (m) => {
        if (throwNext) {
          throwNext = false;
          throw new Error('listener bug');
        }
        received.onMessage(m);
      });
      try {
        const channel = channelOf(parsePresenceTables('postgres', table), 'b');
        for (const payload of [
          'not json',
          'not json either',
          '{"to":"b"}',
          '{"to":"b","token":"x","message":{}}',
        ]) {
          await raw.query('SELECT pg_notify($1, $2)', [channel, payload]);
        }
        await a.send('b', message('thrown-away'));
        await a.send('b', message('kept'));
        await a.send('b', message('kept-too'));
        await expect.poll(() => received.messages.length, { timeout: 10_000 }).toBe(2);
        expect(received.messages).toEqual([message('kept'), message('kept-too')]);
        expect(warn.mock.calls.map((call) => String(call[0]))).toEqual([
          expect.stringContaining('is not JSON'),
          expect.stringContaining('is not a presence message'),
          expect.stringContaining('listener threw'),
        ]);
      } finally {
        await logged.close();
      }
    });

    it('refuses bad input with typed errors before anything is written or sent', async () => {
      const table = randomTable('p');
      const a = await world.presence(table);
      await a.join('a', 30_000, () => {});
      const invalid = { name: 'ValidationError', code: 'INVALID_OPTIONS' };
      await expect(a.join('', 1000, () => {})).rejects.toMatchObject(invalid);
      await expect(a.join('x'.repeat(129), 1000, () => {})).rejects.toMatchObject(invalid);
      await expect(a.join('bad\nid', 1000, () => {})).rejects.toMatchObject(invalid);
      await expect(a.join('b', 0, () => {})).rejects.toMatchObject(invalid);
      await expect(a.join('b', Number.NaN, () => {})).rejects.toMatchObject(invalid);
      await expect(a.join('b', 1000, 'nope' as never)).rejects.toMatchObject(invalid);
      await expect(a.renew('a', -1)).rejects.toMatchObject(invalid);
      const badUser = { name: 'ValidationError', code: 'INVALID_USER_ID' };
      await expect(a.claim('', 'a')).rejects.toMatchObject(badUser);
      await expect(a.claim('nul\u0000', 'a')).rejects.toMatchObject(badUser);
      await expect(a.claim(5 as never, 'a')).rejects.toMatchObject(badUser);
      await expect(a.release('a', 'u1' as never)).rejects.toMatchObject(badUser);
      await expect(a.locate('x'.repeat(513))).rejects.toMatchObject(badUser);
      await expect(a.send('a', { type: 'hello' } as never)).rejects.toMatchObject(invalid);
      await expect(a.send('a', { type: 'release', userId: 7, from: 'a' } as never)).rejects.toMatchObject(
        badUser,
      );
      await expect(a.send('a', { type: 'release', userId: 'u', from: '' })).rejects.toMatchObject(invalid);
      await expect(
        a.send('a', { type: 'release', userId: 'u', from: 'a', pad: 'x'.repeat(8000) } as never),
      ).rejects.toMatchObject(invalid);
      const { rows } = await raw.query(`SELECT count(*)::int AS n FROM "${table}_nodes"`);
      expect(rows).toEqual([{ n: 1 }]);
    });

    it('says to run setup() when its tables are missing', async () => {
      const presence =
        kind === 'pglite'
          ? new PostgresPresence({ client: world.client(), table: randomTable('missing') })
          : new PostgresPresence({ url: url!, table: randomTable('missing') });
      try {
        const error = await presence.join('a', 1000, () => {}).catch((e: unknown) => e);
        expect(error).toMatchObject({ name: 'AdapterError', code: 'ADAPTER_ERROR' });
        expect((error as Error).message).toMatch(/^\[postgres\] join failed: .*Run presence\.setup\(\) once/);
        // Nothing half-done: the failed join left no incarnation that a claim could use.
        await expect(presence.claim('u', 'a')).rejects.toMatchObject({ code: 'ADAPTER_ERROR' });
      } finally {
        await presence.close();
      }
    });

    it('close() leaves an injected client open, is idempotent, and later calls reject with ADAPTER_CLOSED', async () => {
      const table = randomTable('p');
      const presence = new PostgresPresence({ client: world.client(), table });
      await presence.setup();
      await presence.join('a', 30_000, () => {});
      await presence.close();
      await presence.close();
      expect((await raw.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      for (const call of [
        () => presence.join('a', 1000, () => {}),
        () => presence.claim('u', 'a'),
        () => presence.renew('a', 1000),
        () => presence.send('a', message('u')),
        () => presence.locate('u'),
        () => presence.release('a', ['u']),
        () => presence.leave('a'),
        () => presence.setup(),
      ]) {
        await expect(call()).rejects.toMatchObject({ name: 'AdapterError', code: 'ADAPTER_CLOSED' });
      }
    });
  });
});
