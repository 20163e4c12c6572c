/** Groups about versions and races: versions, delete, concurrency. */
import type { PersistenceAdapter, SaveResult, UserId } from '@cagey-sessions/core';
import {
  expect,
  expectCode,
  expectConflict,
  expectOk,
  expectStored,
  loadAll,
  rejection,
  saveOne,
  writeVersions,
} from './assertions.js';
import type { Check } from './context.js';

export const versionChecks: Check[] = [
  {
    group: 'versions',
    name: 'the first write creates version 1 and every write adds 1',
    async run(t) {
      const adapter = await t.adapter();
      for (let version = 1; version <= 4; version++) {
        expectOk(await saveOne(adapter, 'counter', { version }), version, `unconditional write ${version}`);
        await expectStored(t, adapter, 'counter', { userData: { version }, version });
      }
      expectOk(await saveOne(adapter, 'counter', { version: 5 }, 4), 5, 'conditional write on version 4');
      await expectStored(t, adapter, 'counter', { userData: { version: 5 }, version: 5 });
    },
  },
  {
    group: 'versions',
    name: 'expectedVersion 0 inserts a missing user at version 1',
    async run(t) {
      const adapter = await t.adapter();
      expectOk(await saveOne(adapter, 'fresh', { gold: 1 }, 0), 1, 'insert with expectedVersion 0');
      await expectStored(t, adapter, 'fresh', { userData: { gold: 1 }, version: 1 });
    },
  },
  {
    group: 'versions',
    name: 'expectedVersion 0 on a live user conflicts with its version and leaves it intact',
    async run(t) {
      const adapter = await t.adapter();
      const data = await writeVersions(adapter, 'taken', 3);
      expectConflict(await saveOne(adapter, 'taken', { overwritten: true }, 0), 3, 'insert over version 3');
      await expectStored(t, adapter, 'taken', { userData: data, version: 3 });
    },
  },
  {
    group: 'versions',
    name: 'expectedVersion n writes when the stored version is n, giving n + 1',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'cas', 2);
      expectOk(await saveOne(adapter, 'cas', { gold: 3 }, 2), 3, 'write on version 2');
      expectOk(await saveOne(adapter, 'cas', { gold: 4 }, 3), 4, 'write on version 3');
      await expectStored(t, adapter, 'cas', { userData: { gold: 4 }, version: 4 });
    },
  },
  {
    group: 'versions',
    name: 'a stale expectedVersion conflicts with the stored version and leaves the newest record intact',
    async run(t) {
      const adapter = await t.adapter();
      const newest = await writeVersions(adapter, 'stale', 3);
      for (const stale of [1, 2]) {
        expectConflict(
          await saveOne(adapter, 'stale', { stale }, stale),
          3,
          `write on stale version ${stale}`,
        );
      }
      await expectStored(t, adapter, 'stale', { userData: newest, version: 3 });
    },
  },
  {
    group: 'versions',
    name: 'an expectedVersion ahead of the store conflicts and leaves the record intact',
    async run(t) {
      const adapter = await t.adapter();
      const data = await writeVersions(adapter, 'ahead', 2);
      expectConflict(
        await saveOne(adapter, 'ahead', { future: true }, 3),
        2,
        'write on version 3 of a version-2 user',
      );
      expectConflict(await saveOne(adapter, 'ahead', { future: true }, 1000), 2, 'write on version 1000');
      await expectStored(t, adapter, 'ahead', { userData: data, version: 2 });
    },
  },
  {
    group: 'versions',
    name: 'expectedVersion n on a missing user conflicts with currentVersion 0 and creates nothing',
    async run(t) {
      const adapter = await t.adapter();
      expectConflict(
        await saveOne(adapter, 'ghost', { gold: 1 }, 1),
        0,
        'write on version 1 of a missing user',
      );
      expectConflict(
        await saveOne(adapter, 'ghost', { gold: 1 }, 7),
        0,
        'write on version 7 of a missing user',
      );
      await expectStored(t, adapter, 'ghost', undefined);
      expectOk(
        await saveOne(adapter, 'ghost', { gold: 2 }, 0),
        1,
        'the user can still be inserted at version 1',
      );
    },
  },
];

export const deleteChecks: Check[] = [
  {
    group: 'delete',
    name: 'delete is idempotent: true, then false; the user then loads as undefined',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'doomed', 1);
      expect(await adapter.delete('doomed'), 'first delete').toBe(true);
      await expectStored(t, adapter, 'doomed', undefined, 'after delete');
      expect(await adapter.delete('doomed'), 'second delete').toBe(false);
      expect(await adapter.delete('doomed', 2), 'delete with expectedVersion when nothing is live').toBe(
        false,
      );
    },
  },
  {
    group: 'delete',
    name: 'deleting a user that never existed resolves false and creates nothing',
    async run(t) {
      const adapter = await t.adapter();
      expect(await adapter.delete('nobody'), 'delete of a missing user').toBe(false);
      expect(await adapter.delete('nobody', 3), 'delete with expectedVersion of a missing user').toBe(false);
      expectOk(await saveOne(adapter, 'nobody', { gold: 1 }, 0), 1, 'insert afterwards starts at version 1');
    },
  },
  {
    group: 'delete',
    name: 'versions are not reused: an insert after delete continues after the tombstone (v3, delete, insert → v5)',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'phoenix', 3);
      expect(await adapter.delete('phoenix'), 'delete').toBe(true);
      expectOk(await saveOne(adapter, 'phoenix', { reborn: true }, 0), 5, 'insert with expectedVersion 0');
      await expectStored(t, adapter, 'phoenix', { userData: { reborn: true }, version: 5 });
    },
  },
  {
    group: 'delete',
    name: 'an unconditional write after delete continues the version sequence',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'again', 2);
      expect(await adapter.delete('again'), 'delete').toBe(true);
      expectOk(
        await saveOne(adapter, 'again', { back: true }),
        4,
        'unconditional write after delete of version 2',
      );
      await expectStored(t, adapter, 'again', { userData: { back: true }, version: 4 });
    },
  },
  {
    group: 'delete',
    name: 'a writer holding a pre-delete version conflicts, before and after a re-insert',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'zombie', 3);
      expect(await adapter.delete('zombie'), 'delete').toBe(true);
      expectConflict(await saveOne(adapter, 'zombie', { stale: true }, 3), 0, 'stale write on the tombstone');
      expectConflict(
        await saveOne(adapter, 'zombie', { stale: true }, 4),
        0,
        'write on the tombstone version',
      );
      await expectStored(t, adapter, 'zombie', undefined, 'the tombstone after stale writes');
      expectOk(await saveOne(adapter, 'zombie', { fresh: true }, 0), 5, 're-insert');
      expectConflict(
        await saveOne(adapter, 'zombie', { stale: true }, 3),
        5,
        'stale write after the re-insert',
      );
      await expectStored(t, adapter, 'zombie', { userData: { fresh: true }, version: 5 });
    },
  },
  {
    group: 'delete',
    name: 'delete with a wrong expectedVersion rejects with ConflictError and keeps the record',
    async run(t) {
      const adapter = await t.adapter();
      const data = await writeVersions(adapter, 'guarded', 2);
      for (const wrong of [1, 3, 0]) {
        const what = `delete("guarded", ${wrong}) of version 2`;
        const error = await rejection(() => adapter.delete('guarded', wrong), what);
        expectCode(error, 'VERSION_CONFLICT', what, 'ConflictError');
        expect(error, `${what}: conflict details`).toMatchObject({
          expectedVersion: wrong,
          currentVersion: 2,
        });
      }
      await expectStored(t, adapter, 'guarded', { userData: data, version: 2 });
    },
  },
  {
    group: 'delete',
    name: 'delete with the right expectedVersion deletes',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'exact', 2);
      expect(await adapter.delete('exact', 2), 'delete("exact", 2)').toBe(true);
      await expectStored(t, adapter, 'exact', undefined, 'after delete');
      expectConflict(
        await saveOne(adapter, 'exact', { late: true }, 2),
        0,
        'a write on version 2 after delete',
      );
    },
  },
  {
    group: 'delete',
    name: 'delete rejects invalid userIds (INVALID_USER_ID) and expectedVersions (INVALID_VERSION)',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'valid', 1);
      for (const userId of ['', 1.5, null]) {
        const what = `delete(${JSON.stringify(userId)})`;
        expectCode(await rejection(() => adapter.delete(userId as never), what), 'INVALID_USER_ID', what);
      }
      for (const version of [-1, 1.5, '1', Number.NaN]) {
        const what = `delete("valid", ${JSON.stringify(version)})`;
        expectCode(
          await rejection(() => adapter.delete('valid', version as never), what),
          'INVALID_VERSION',
          what,
        );
      }
      await expectStored(t, adapter, 'valid', { userData: { step: 1, userId: 'valid' }, version: 1 });
    },
  },
];

/** Runs two conditional writes of the same user from two adapters at once; exactly one must win. */
async function race(
  a: PersistenceAdapter,
  b: PersistenceAdapter,
  userId: UserId,
  expectedVersion: number,
): Promise<{ winner: 'a' | 'b'; results: SaveResult[] }> {
  const [ra, rb] = await Promise.all([
    saveOne(a, userId, { by: 'a' }, expectedVersion),
    saveOne(b, userId, { by: 'b' }, expectedVersion),
  ]);
  const results = [ra, rb];
  const statuses = results.map((r) => r.status).sort();
  expect(
    statuses,
    `statuses of two writes of ${JSON.stringify(userId)} on version ${expectedVersion}`,
  ).toEqual(['conflict', 'ok']);
  const winner = ra.status === 'ok' ? 'a' : 'b';
  const [won, lost] = winner === 'a' ? [ra, rb] : [rb, ra];
  expectOk(won, expectedVersion + 1, 'the winning write');
  expectConflict(lost, expectedVersion + 1, 'the losing write');
  return { winner, results };
}

export const concurrencyChecks: Check[] = [
  {
    group: 'concurrency',
    name: 'two processes writing one user with the same expectedVersion: exactly one wins, its data is stored',
    async run(t) {
      const a = await t.adapter();
      const b = await t.open();
      for (let round = 0; round < 5; round++) {
        const userId = `contended-${round}`;
        await writeVersions(a, userId, 1);
        const { winner } = await race(a, b, userId, 1);
        await expectStored(
          t,
          a,
          userId,
          { userData: { by: winner }, version: 2 },
          `${userId} after the race`,
        );
      }
    },
  },
  {
    group: 'concurrency',
    name: 'two processes inserting one new user with expectedVersion 0: exactly one wins',
    async run(t) {
      const a = await t.adapter();
      const b = await t.open();
      for (let round = 0; round < 5; round++) {
        const userId = `newcomer-${round}`;
        const { winner } = await race(a, b, userId, 0);
        await expectStored(
          t,
          b,
          userId,
          { userData: { by: winner }, version: 1 },
          `${userId} after the race`,
        );
      }
    },
  },
  {
    group: 'concurrency',
    name: '20 concurrent unconditional writes all succeed with versions 1..20; the last one is stored',
    async run(t) {
      const adapters = [await t.adapter(), await t.open()];
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, writer) => saveOne(adapters[writer % 2]!, 'hot', { writer })),
      );
      const versions = results.map((r, writer) => {
        expect(r.status, `write ${writer}`).toBe('ok');
        return (r as { version: number }).version;
      });
      expect(
        [...versions].sort((x, y) => x - y),
        'the versions handed out',
      ).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      const last = versions.indexOf(20);
      await expectStored(t, adapters[0]!, 'hot', { userData: { writer: last }, version: 20 });
    },
  },
  {
    group: 'concurrency',
    name: 'concurrent batches over the same 100 users in opposite orders all succeed (no deadlock, no lost write)',
    async run(t) {
      const a = await t.adapter();
      const b = await t.open();
      const ids = Array.from({ length: 100 }, (_, i) => `overlap-${i}`);
      const reversed = [...ids].reverse();
      for (let round = 0; round < 3; round++) {
        const [ra, rb] = await Promise.all([
          a.save(ids.map((userId) => ({ userId, userData: { round, by: 'a' } }))),
          b.save(reversed.map((userId) => ({ userId, userData: { round, by: 'b' } }))),
        ]);
        const notOk = [...ra, ...rb].filter((r) => r.status !== 'ok');
        expect(notOk, `round ${round}: results that are not ok`).toEqual([]);
      }
      const loaded = await loadAll(a, ids);
      const wrong = loaded
        .map((user, i) => ({ userId: ids[i], version: user?.version }))
        .filter((user) => user.version !== 6);
      expect(wrong, 'users whose version is not 6 after 3 rounds of 2 writes').toEqual([]);
    },
  },
];
