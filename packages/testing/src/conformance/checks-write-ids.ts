/**
 * Write ids (in the versions group): what lets core tell its own committed write, whose acknowledgement was
 * lost with a connection, from another writer's.
 */
import { type PersistenceAdapter, SessionManager } from '@cagey-sessions/core';
import { decideWrite, type StoredVersion } from '@cagey-sessions/core/adapter-kit';
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

/** Stored states the version-rules check builds, and how to build each through the adapter. */
const storedStates: {
  name: string;
  build(adapter: PersistenceAdapter, userId: string): Promise<StoredVersion>;
}[] = [
  { name: 'missing', build: async () => ({ version: 0, live: false }) },
  {
    name: 'live at version 1',
    async build(adapter, userId) {
      await saveOne(adapter, userId, { step: 1 });
      return { version: 1, live: true };
    },
  },
  {
    name: 'live at version 3 with a write id',
    async build(adapter, userId) {
      for (let step = 1; step <= 3; step++) await saveOne(adapter, userId, { step }, undefined, `w${step}`);
      return { version: 3, live: true, writeId: 'w3' };
    },
  },
  {
    name: 'deleted at version 4',
    async build(adapter, userId) {
      for (let step = 1; step <= 3; step++) await saveOne(adapter, userId, { step });
      await adapter.delete(userId);
      return { version: 4, live: false };
    },
  },
];

writeIdChecks.push({
  group: 'versions',
  name: "every stored state and expectedVersion gives core's decideWrite decision",
  async run(t) {
    const adapter = await t.adapter();
    const mismatches: string[] = [];
    let n = 0;
    for (const state of storedStates) {
      for (const expectedVersion of [undefined, 0, 1, 3, 4, 9]) {
        const userId = `rule-${n++}`;
        const stored = await state.build(adapter, userId);
        const decision = decideWrite(expectedVersion, stored);
        const result = await saveOne(adapter, userId, { written: true }, expectedVersion, 'probe');
        const got =
          result.status === 'ok'
            ? { write: true, version: result.version }
            : result.status === 'conflict'
              ? { write: false, currentVersion: result.currentVersion, currentWriteId: result.currentWriteId }
              : { error: preview(result) };
        if (JSON.stringify(got) !== JSON.stringify(decision)) {
          mismatches.push(
            `${state.name}, expectedVersion ${String(expectedVersion)}: expected ${JSON.stringify(decision)}, got ${JSON.stringify(got)}`,
          );
        }
      }
    }
    expect(mismatches, 'outcomes that differ from decideWrite').toEqual([]);
  },
});
