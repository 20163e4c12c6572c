/**
 * Write ids (in the versions group): what lets core tell its own committed write, whose acknowledgement was
 * lost with a connection, from another writer's.
 */
import { SessionManager } from '@cagey-sessions/core';
import { FaultyAdapter } from '../faulty.js';
import { expect, expectOk, expectStored, preview, saveOne } from './assertions.js';
import type { Check } from './context.js';

export const writeIdChecks: Check[] = [
  {
    group: 'versions',
    name: 'a conflict reports the write id stored with the live record (currentWriteId)',
    async run(t) {
      const adapter = await t.adapter();
      expectOk(await saveOne(adapter, 'wid', { n: 1 }, 0, 'w1'), 1, 'insert with write id w1');
      let result = await saveOne(adapter, 'wid', { n: 0 }, 0, 'late');
      expect(result, `insert over version 1 (got ${preview(result)})`).toMatchObject({
        status: 'conflict',
        currentVersion: 1,
        currentWriteId: 'w1',
      });
      expectOk(await saveOne(adapter, 'wid', { n: 2 }, undefined, 'w2'), 2, 'unconditional write w2');
      expectOk(await saveOne(adapter, 'wid', { n: 3 }, 2, 'w3'), 3, 'conditional write w3 on version 2');
      result = await saveOne(adapter, 'wid', { n: 0 }, 2, 'stale');
      expect(result, `write on stale version 2 (got ${preview(result)})`).toMatchObject({
        status: 'conflict',
        currentVersion: 3,
        currentWriteId: 'w3',
      });
      await expectStored(t, adapter, 'wid', { userData: { n: 3 }, version: 3 });
    },
  },
  {
    group: 'versions',
    name: 'a record written without a write id reports none in a conflict, and a delete clears it',
    async run(t) {
      const adapter = await t.adapter();
      expectOk(await saveOne(adapter, 'plain', { n: 1 }, 0, 'w1'), 1, 'insert with write id w1');
      expectOk(await saveOne(adapter, 'plain', { n: 2 }, 1), 2, 'write without a write id');
      let result = await saveOne(adapter, 'plain', { n: 0 }, 1, 'stale');
      expect(result, `write on stale version 1 (got ${preview(result)})`).toMatchObject({
        status: 'conflict',
        currentVersion: 2,
      });
      expect((result as { currentWriteId?: unknown }).currentWriteId ?? undefined, 'currentWriteId').toBe(
        undefined,
      );
      expectOk(await saveOne(adapter, 'gone', { n: 1 }, 0, 'w9'), 1, 'insert with write id w9');
      await adapter.delete('gone');
      result = await saveOne(adapter, 'gone', { n: 0 }, 1, 'stale');
      expect(result, `write on the deleted version (got ${preview(result)})`).toMatchObject({
        status: 'conflict',
        currentVersion: 0,
      });
      expect((result as { currentWriteId?: unknown }).currentWriteId ?? undefined, 'currentWriteId').toBe(
        undefined,
      );
    },
  },
  {
    group: 'versions',
    name: 'through core: a write that committed but lost its acknowledgement is not taken for a conflict',
    async run(t) {
      const faulty = new FaultyAdapter(await t.adapter());
      const manager = new SessionManager<{ gold: number }>({ adapter: faulty });
      try {
        const conflicts: unknown[] = [];
        manager.on('conflict', (_session, error) => {
          conflicts.push(error);
        });
        const session = await manager.create();
        const player = await session.identify('lost-ack', { defaults: { gold: 0 } });
        player.gold = 10;
        faulty.failNext(1, { phase: 'after' }); // the store commits; the caller sees a failure
        const failure = await session.persistNow().then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(failure, 'persistNow while the acknowledgement is lost rejects').toBeInstanceOf(Error);
        player.gold = 11;
        await session.persistNow();
        expect(conflicts, 'conflict events').toEqual([]);
        await expectStored(t, faulty, 'lost-ack', { userData: { gold: 11 }, version: 2 });
        expect(session.version, 'the session is based on the stored version').toBe(2);
      } finally {
        await manager.destroy(false);
      }
    },
  },
];
