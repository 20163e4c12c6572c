/**
 * Group restore (optional method `restore`): writing users with the versions they have elsewhere, never over
 * an equal or newer version, as migrations and imports rely on.
 */
import type { PersistenceAdapter, RestoreRecord, SaveResult, UserId } from '@cagey-sessions/core';
import { decideRestore, type StoredVersion } from '@cagey-sessions/core/adapter-kit';
import {
  chunks,
  expect,
  expectConflict,
  expectErrorResult,
  expectOk,
  expectStored,
  fail,
  loadAll,
  preview,
  saveOne,
  writeVersions,
} from './assertions.js';
import type { Check } from './context.js';

type Restorable = PersistenceAdapter & { restore: NonNullable<PersistenceAdapter['restore']> };

function restorable(adapter: PersistenceAdapter): Restorable {
  if (typeof adapter.restore !== 'function') fail('the adapter has no restore()');
  return adapter as Restorable;
}

/** Restores `records` in one call and checks the number of results. */
async function restoreBatchOf(adapter: Restorable, records: RestoreRecord[]): Promise<SaveResult[]> {
  const results = await adapter.restore(records);
  expect(Array.isArray(results) ? results.length : results, 'number of restore results').toBe(records.length);
  return results;
}

async function restoreOne(
  adapter: Restorable,
  userId: UserId,
  userData: object,
  version: number,
  writeId?: string,
): Promise<SaveResult> {
  const record: RestoreRecord = { userId, userData, version };
  if (writeId !== undefined) record.writeId = writeId;
  return (await restoreBatchOf(adapter, [record]))[0]!;
}

/** Writes a user until it holds `version`, then deletes it: a tombstone at `version + 1`. */
async function tombstoneAt(adapter: PersistenceAdapter, userId: UserId, version: number): Promise<void> {
  await writeVersions(adapter, userId, version - 1);
  expect(await adapter.delete(userId), `delete of ${preview(userId)}`).toBe(true);
}

/** Stored states the decision check builds through the adapter. */
const storedStates: { name: string; build(adapter: Restorable, userId: string): Promise<StoredVersion> }[] = [
  { name: 'missing', build: async () => ({ version: 0, live: false }) },
  {
    name: 'live at version 3 with a write id',
    async build(adapter, userId) {
      expectOk(await restoreOne(adapter, userId, { before: true }, 3, 'w3'), 3, 'restore at version 3');
      return { version: 3, live: true, writeId: 'w3' };
    },
  },
  {
    name: 'deleted at version 4',
    async build(adapter, userId) {
      await tombstoneAt(adapter, userId, 4);
      return { version: 4, live: false };
    },
  },
];

export const restoreChecks: Check[] = [
  {
    group: 'restore',
    method: 'restore',
    name: 'restore into an empty store keeps each exact version; load returns it and save with that expectedVersion succeeds',
    async run(t) {
      const adapter = restorable(await t.adapter());
      const records: RestoreRecord[] = [
        { userId: 'r-one', userData: { gold: 1 }, version: 1 },
        { userId: 'r-many', userData: { gold: 2, items: ['sword'] }, version: 57 },
        { userId: 42, userData: { numeric: true }, version: 9 },
        { userId: 'r-big', userData: { big: true }, version: Number.MAX_SAFE_INTEGER - 1 },
      ];
      const results = await restoreBatchOf(adapter, records);
      for (const [i, record] of records.entries()) {
        expectOk(results[i], record.version, `restore of ${preview(record.userId)} at ${record.version}`);
        await expectStored(t, adapter, record.userId, { userData: record.userData, version: record.version });
      }
      expect(await adapter.restore([]), 'restore([])').toEqual([]);
      expectOk(await saveOne(adapter, 'r-many', { gold: 3 }, 57), 58, 'save on the restored version 57');
      expectConflict(
        await saveOne(adapter, 42, { stale: true }, 8),
        9,
        'save on a version below the restored 9',
      );
      expectOk(await saveOne(adapter, 42, { gold: 4 }), 10, 'unconditional save after restore');
      await expectStored(t, adapter, 'r-many', { userData: { gold: 3 }, version: 58 });
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'an equal or newer live version is a conflict carrying the stored version, and the record is untouched',
    async run(t) {
      const adapter = restorable(await t.adapter());
      const kept = await writeVersions(adapter, 'newer', 5);
      await writeVersions(adapter, 'equal', 3);
      const equalData = (await adapter.load('equal'))!.userData;
      const results = await restoreBatchOf(adapter, [
        { userId: 'newer', userData: { old: true }, version: 4 },
        { userId: 'equal', userData: { other: true }, version: 3 },
        { userId: 'fresh', userData: { fresh: true }, version: 2 },
      ]);
      expectConflict(results[0], 5, 'restore at 4 over version 5');
      expectConflict(results[1], 3, 'restore at 3 over version 3 (already there)');
      expectOk(results[2], 2, 'restore of a new user next to the conflicts');
      await expectStored(t, adapter, 'newer', { userData: kept, version: 5 });
      await expectStored(t, adapter, 'equal', { userData: equalData, version: 3 });
      await expectStored(t, adapter, 'fresh', { userData: { fresh: true }, version: 2 });
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'an older live version, or a tombstone of a lower version, is overwritten with exactly the restored version',
    async run(t) {
      const adapter = restorable(await t.adapter());
      await writeVersions(adapter, 'older', 2);
      await tombstoneAt(adapter, 'deleted', 3); // tombstone at version 3
      const results = await restoreBatchOf(adapter, [
        { userId: 'older', userData: { restored: 'older' }, version: 7 },
        { userId: 'deleted', userData: { restored: 'deleted' }, version: 4 },
      ]);
      expectOk(results[0], 7, 'restore at 7 over version 2');
      expectOk(results[1], 4, 'restore at 4 over a tombstone at 3');
      await expectStored(t, adapter, 'older', { userData: { restored: 'older' }, version: 7 });
      await expectStored(t, adapter, 'deleted', { userData: { restored: 'deleted' }, version: 4 });
      expectOk(await saveOne(adapter, 'deleted', { after: true }, 4), 5, 'save on the restored version');
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'a tombstone of an equal or higher version is a conflict with currentVersion 0, and the user stays deleted',
    async run(t) {
      const adapter = restorable(await t.adapter());
      await tombstoneAt(adapter, 'dead-equal', 4);
      await tombstoneAt(adapter, 'dead-higher', 6);
      const results = await restoreBatchOf(adapter, [
        { userId: 'dead-equal', userData: { resurrected: true }, version: 4 },
        { userId: 'dead-higher', userData: { resurrected: true }, version: 5 },
      ]);
      expectConflict(results[0], 0, 'restore at 4 over a tombstone at 4');
      expectConflict(results[1], 0, 'restore at 5 over a tombstone at 6');
      await expectStored(t, adapter, 'dead-equal', undefined);
      await expectStored(t, adapter, 'dead-higher', undefined);
      // The tombstone still fences: an insert gets the version after it.
      expectOk(await saveOne(adapter, 'dead-higher', { new: true }, 0), 7, 'insert after the tombstone at 6');
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'every stored state and restored version gives core’s decideRestore decision',
    async run(t) {
      const adapter = restorable(await t.adapter());
      const mismatches: string[] = [];
      let n = 0;
      for (const state of storedStates) {
        for (const version of [1, 3, 4, 5, 9]) {
          const userId = `rule-${n++}`;
          const stored = await state.build(adapter, userId);
          const before = await adapter.load(userId);
          const decision = decideRestore(version, stored);
          const result = await restoreOne(adapter, userId, { restored: version }, version, 'probe');
          const got =
            result.status === 'ok'
              ? { write: true, version: result.version }
              : result.status === 'conflict'
                ? {
                    write: false,
                    currentVersion: result.currentVersion,
                    currentWriteId: result.currentWriteId,
                  }
                : { error: preview(result) };
          if (JSON.stringify(got) !== JSON.stringify(decision)) {
            mismatches.push(
              `${state.name}, version ${version}: expected ${JSON.stringify(decision)}, got ${JSON.stringify(got)}`,
            );
          }
          const after = await adapter.load(userId);
          const want = decision.write ? { userData: { restored: version }, version } : before;
          if (JSON.stringify(after) !== JSON.stringify(want)) {
            mismatches.push(
              `${state.name}, version ${version}: stored ${preview(after)}, expected ${preview(want)}`,
            );
          }
        }
      }
      expect(mismatches, 'outcomes that differ from decideRestore').toEqual([]);
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'one bad record (invalid data or userId, version 0, negative, not an integer, a second record of a user) fails alone',
    async run(t) {
      const adapter = restorable(await t.adapter());
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const bad: [string, RestoreRecord][] = [
        ['INVALID_USER_DATA', { userId: 'bad-data', userData: { n: 10n } as never, version: 1 }],
        ['INVALID_USER_DATA', { userId: 'bad-cycle', userData: cyclic, version: 1 }],
        ['INVALID_USER_ID', { userId: '', userData: {}, version: 1 }],
        ['INVALID_VERSION', { userId: 'bad-v0', userData: {}, version: 0 }],
        ['INVALID_VERSION', { userId: 'bad-negative', userData: {}, version: -3 }],
        ['INVALID_VERSION', { userId: 'bad-fraction', userData: {}, version: 2.5 }],
        ['INVALID_VERSION', { userId: 'bad-string', userData: {}, version: '2' as never }],
        ['INVALID_VERSION', { userId: 'bad-unsafe', userData: {}, version: 2 ** 53 }],
        ['DUPLICATE_KEY', { userId: 'good-0', userData: { second: true }, version: 9 }],
      ];
      const records: RestoreRecord[] = [{ userId: 'good-0', userData: { n: 0 }, version: 3 }];
      for (const [, record] of bad) {
        records.push(record, {
          userId: `good-${records.length + 1}`,
          userData: { n: records.length },
          version: 2,
        });
      }
      const results = await restoreBatchOf(adapter, records);
      let b = 0;
      for (const [i, record] of records.entries()) {
        if (i % 2 === 1) {
          const [code] = bad[b++]!;
          expectErrorResult(results[i], `record ${i} (${preview(record.userId)})`, code);
        } else {
          expectOk(results[i], record.version, `record ${i} (${preview(record.userId)})`);
          await expectStored(t, adapter, record.userId, {
            userData: record.userData,
            version: record.version,
          });
        }
      }
      for (const [code, record] of bad) {
        if (code !== 'INVALID_USER_ID' && code !== 'DUPLICATE_KEY')
          await expectStored(t, adapter, record.userId, undefined);
      }
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'a value the store refuses fails only its own record',
    requires: 'rejectedUserData',
    async run(t) {
      const adapter = restorable(await t.adapter());
      const refused = t.options.capabilities!.rejectedUserData!;
      const results = await restoreBatchOf(adapter, [
        { userId: 'before', userData: { n: 1 }, version: 2 },
        { userId: 'refused', userData: refused, version: 2 },
        { userId: 'after', userData: { n: 3 }, version: 2 },
      ]);
      expectOk(results[0], 2, 'the record before');
      expectErrorResult(results[1], 'the refused record');
      expectOk(results[2], 2, 'the record after');
      await expectStored(t, adapter, 'refused', undefined);
      await expectStored(t, adapter, 'after', { userData: { n: 3 }, version: 2 });
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'a batch of 3,000 records mixing new, older and newer users gets one result per record, in order',
    async run(t) {
      const adapter = restorable(await t.adapter());
      const size = 3000;
      // A third exist at version 5: restoring 3 is refused, restoring 8 overwrites; the rest are new.
      const existing = Array.from({ length: size / 3 }, (_, k) => ({
        userId: `mix-${k * 3}`,
        userData: {},
        version: 5,
      }));
      for (const batch of chunks(existing, 1000)) {
        for (const result of await restoreBatchOf(adapter, batch)) expectOk(result, 5, 'setup restore at 5');
      }
      const records: RestoreRecord[] = Array.from({ length: size }, (_, i) => ({
        userId: i % 5 === 4 ? 100_000 + i : `mix-${i}`,
        userData: { i },
        version: i % 3 === 0 && i % 2 === 0 ? 3 : 8,
      }));
      const results = await restoreBatchOf(adapter, records);
      const wrong: string[] = [];
      for (const [i, record] of records.entries()) {
        const exists = typeof record.userId === 'string' && i % 3 === 0;
        const want =
          exists && record.version === 3
            ? { status: 'conflict', currentVersion: 5 }
            : { status: 'ok', version: record.version };
        const got = results[i]!;
        const gotShort =
          got.status === 'conflict' ? { status: 'conflict', currentVersion: got.currentVersion } : got;
        if (JSON.stringify(gotShort) !== JSON.stringify(want))
          wrong.push(`record ${i}: ${preview(got)} instead of ${preview(want)}`);
      }
      expect(wrong.slice(0, 5), `${wrong.length} results differ`).toEqual([]);
      const sample = records.filter((_, i) => i % 97 === 0);
      const loaded = await loadAll(
        adapter,
        sample.map((r) => r.userId),
      );
      for (const [k, record] of sample.entries()) {
        const i = records.indexOf(record);
        const refused = typeof record.userId === 'string' && i % 3 === 0 && record.version === 3;
        const want = refused
          ? { userData: {}, version: 5 }
          : { userData: record.userData, version: record.version };
        expect(loaded[k], `stored record of ${preview(record.userId)}`).toEqual(want);
      }
    },
  },
  {
    group: 'restore',
    method: 'restore',
    name: 'the write id is stored with the record: a later conflict reports it as currentWriteId',
    async run(t) {
      const adapter = restorable(await t.adapter());
      expectOk(
        await restoreOne(adapter, 'wid', { n: 1 }, 4, 'import-1'),
        4,
        'restore with write id import-1',
      );
      let result = await saveOne(adapter, 'wid', { n: 0 }, 0, 'late');
      expect(result, `insert over the restored record (got ${preview(result)})`).toMatchObject({
        status: 'conflict',
        currentVersion: 4,
        currentWriteId: 'import-1',
      });
      result = await restoreOne(adapter, 'wid', { n: 1 }, 4, 'import-2');
      expect(result, `the same restore again (got ${preview(result)})`).toMatchObject({
        status: 'conflict',
        currentVersion: 4,
        currentWriteId: 'import-1',
      });
      expectOk(await restoreOne(adapter, 'plain', { n: 1 }, 2), 2, 'restore without a write id');
      result = await saveOne(adapter, 'plain', { n: 0 }, 1);
      expect((result as { currentWriteId?: unknown }).currentWriteId ?? undefined, 'currentWriteId').toBe(
        undefined,
      );
    },
  },
];

/** In the concurrency group: a store whose conditional writes are not atomic cannot pass it (see its README). */
export const restoreConcurrencyChecks: Check[] = [
  {
    group: 'concurrency',
    method: 'restore',
    name: 'two processes restoring one user at versions 1 to 20 at once leave version 20 stored',
    async run(t) {
      const a = restorable(await t.adapter());
      const b = restorable(await t.open());
      const versions = Array.from({ length: 20 }, (_, i) => i + 1);
      const results = await Promise.all(
        versions.map((version) => restoreOne(version % 2 === 0 ? a : b, 'raced', { version }, version)),
      );
      for (const [i, result] of results.entries()) {
        if (result.status === 'error') fail(`restore at version ${i + 1} failed: ${preview(result)}`);
      }
      expectOk(results[19], 20, 'restore at the highest version (nothing newer can be stored before it)');
      await expectStored(t, a, 'raced', { userData: { version: 20 }, version: 20 });
    },
  },
];
