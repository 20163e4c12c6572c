/** Groups about batches: isolation of per-record failures, batch sizes, duplicates. */
import type { PersistenceAdapter, SaveRecord, UserId } from '@cagey-sessions/core';
import {
  chunks,
  expect,
  expectConflict,
  expectErrorResult,
  expectOk,
  expectStored,
  loadAll,
  preview,
  writeVersions,
} from './assertions.js';
import type { Check, CheckContext } from './context.js';

/** Saves `records` and checks the number of results; the records' order is the results' order. */
async function saveBatchOf(adapter: PersistenceAdapter, records: SaveRecord[]) {
  const results = await adapter.save(records);
  expect(Array.isArray(results) ? results.length : results, 'number of results').toBe(records.length);
  return results;
}

export const isolationChecks: Check[] = [
  {
    group: 'isolation',
    name: 'invalid userData in the middle of a batch fails alone: BigInt, cycle, function, NaN, undefined in array, Date',
    async run(t) {
      const adapter = await t.adapter();
      const cyclic: Record<string, unknown> = { name: 'loop' };
      cyclic.self = cyclic;
      const invalid: Record<string, object> = {
        bigint: { gold: 10n },
        cycle: cyclic,
        function: { onLevelUp() {} },
        nan: { ratio: Number.NaN },
        undefinedInArray: { list: [1, undefined] },
        date: { at: new Date(0) },
      };
      const records: SaveRecord[] = [{ userId: 'ok-0', userData: { n: 0 } }];
      for (const [kind, userData] of Object.entries(invalid)) {
        records.push(
          { userId: `bad-${kind}`, userData },
          { userId: `ok-${records.length}`, userData: { n: 1 } },
        );
      }
      const results = await saveBatchOf(adapter, records);
      for (const [i, record] of records.entries()) {
        const id = String(record.userId);
        if (id.startsWith('bad-')) expectErrorResult(results[i], `record ${i} (${id})`, 'INVALID_USER_DATA');
        else expectOk(results[i], 1, `record ${i} (${id})`);
      }
      for (const record of records) {
        const id = String(record.userId);
        if (id.startsWith('bad-')) await expectStored(t, adapter, id, undefined);
        else await expectStored(t, adapter, id, { userData: record.userData, version: 1 });
      }
    },
  },
  {
    group: 'isolation',
    name: 'an invalid userId in the middle of a batch fails alone with INVALID_USER_ID',
    async run(t) {
      const adapter = await t.adapter();
      const badIds: unknown[] = ['', 1.5, null, 'nul\u0000inside', Number.MAX_SAFE_INTEGER + 1];
      const records: SaveRecord[] = [{ userId: 'id-ok-0', userData: { n: 0 } }];
      for (const userId of badIds) {
        records.push({ userId: userId as UserId, userData: { bad: true } });
        records.push({ userId: `id-ok-${records.length}`, userData: { n: records.length } });
      }
      const results = await saveBatchOf(adapter, records);
      for (const [i, record] of records.entries()) {
        if (i % 2 === 1)
          expectErrorResult(results[i], `record ${i} (userId ${preview(record.userId)})`, 'INVALID_USER_ID');
        else {
          expectOk(results[i], 1, `record ${i} (${String(record.userId)})`);
          await expectStored(t, adapter, record.userId, { userData: record.userData, version: 1 });
        }
      }
    },
  },
  {
    group: 'isolation',
    name: 'an invalid expectedVersion in the middle of a batch fails alone with INVALID_VERSION and writes nothing',
    async run(t) {
      const adapter = await t.adapter();
      const badVersions: unknown[] = [-1, 1.5, '1', Number.NaN, null];
      const records: SaveRecord[] = [];
      const kept = new Map<string, object>();
      for (const [k, version] of badVersions.entries()) {
        const userId = `ev-bad-${k}`;
        kept.set(userId, await writeVersions(adapter, userId, 1));
        records.push({ userId: `ev-ok-${k}`, userData: { k } });
        records.push({ userId, userData: { overwritten: true }, expectedVersion: version as number });
      }
      records.push({ userId: 'ev-ok-last', userData: { last: true }, expectedVersion: 0 });
      const results = await saveBatchOf(adapter, records);
      for (const [i, record] of records.entries()) {
        const id = String(record.userId);
        if (id.startsWith('ev-bad-')) {
          expectErrorResult(
            results[i],
            `record ${i} (expectedVersion ${preview(record.expectedVersion)})`,
            'INVALID_VERSION',
          );
          await expectStored(t, adapter, id, { userData: kept.get(id)!, version: 1 });
        } else {
          expectOk(results[i], 1, `record ${i} (${id})`);
          await expectStored(t, adapter, id, { userData: record.userData, version: 1 });
        }
      }
    },
  },
  {
    group: 'isolation',
    name: 'conflicts in the middle of a batch do not stop their neighbours',
    async run(t) {
      const adapter = await t.adapter();
      const existing = await writeVersions(adapter, 'c-existing', 2);
      const taken = await writeVersions(adapter, 'c-taken', 1);
      await writeVersions(adapter, 'c-update', 1);
      const results = await saveBatchOf(adapter, [
        { userId: 'c-new', userData: { n: 0 }, expectedVersion: 0 },
        { userId: 'c-existing', userData: { stale: true }, expectedVersion: 1 },
        { userId: 'c-plain', userData: { n: 2 } },
        { userId: 'c-missing', userData: { n: 3 }, expectedVersion: 4 },
        { userId: 'c-update', userData: { n: 4 }, expectedVersion: 1 },
        { userId: 'c-taken', userData: { n: 5 }, expectedVersion: 0 },
        { userId: 'c-last', userData: { n: 6 } },
      ]);
      expectOk(results[0], 1, 'insert before the conflicts');
      expectConflict(results[1], 2, 'stale write');
      expectOk(results[2], 1, 'unconditional write between conflicts');
      expectConflict(results[3], 0, 'conditional write of a missing user');
      expectOk(results[4], 2, 'conditional write between conflicts');
      expectConflict(results[5], 1, 'insert over a live user');
      expectOk(results[6], 1, 'unconditional write after the conflicts');
      await expectStored(t, adapter, 'c-existing', { userData: existing, version: 2 });
      await expectStored(t, adapter, 'c-taken', { userData: taken, version: 1 });
      await expectStored(t, adapter, 'c-missing', undefined);
      await expectStored(t, adapter, 'c-update', { userData: { n: 4 }, version: 2 });
      await expectStored(t, adapter, 'c-last', { userData: { n: 6 }, version: 1 });
    },
  },
  {
    group: 'isolation',
    name: 'a value the store refuses (capabilities.rejectedUserData) fails alone; the user keeps its old data',
    requires: 'rejectedUserData',
    async run(t) {
      const adapter = await t.adapter();
      const rejected = t.options.capabilities!.rejectedUserData!;
      const old = await writeVersions(adapter, 'r-existing', 1);
      const results = await saveBatchOf(adapter, [
        { userId: 'r-before', userData: { n: 0 } },
        { userId: 'r-new', userData: rejected },
        { userId: 'r-middle', userData: { n: 2 } },
        { userId: 'r-existing', userData: rejected, expectedVersion: 1 },
        { userId: 'r-after', userData: { n: 4 } },
      ]);
      expectOk(results[0], 1, 'record before the refused value');
      expectErrorResult(results[1], 'refused value for a new user');
      expectOk(results[2], 1, 'record between refused values');
      expectErrorResult(results[3], 'refused value for an existing user');
      expectOk(results[4], 1, 'record after the refused value');
      await expectStored(t, adapter, 'r-new', undefined);
      await expectStored(t, adapter, 'r-existing', { userData: old, version: 1 });
      for (const id of ['r-before', 'r-middle', 'r-after']) {
        expect(await adapter.load(id), `${id} is stored`).toMatchObject({ version: 1 });
      }
    },
  },
  {
    group: 'isolation',
    name: 'results come back in input order',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'o-one', 1);
      await writeVersions(adapter, 'o-three', 3);
      await writeVersions(adapter, 'o-five', 5);
      const results = await saveBatchOf(adapter, [
        { userId: 'o-five', userData: { n: 0 } },
        { userId: 'o-new', userData: { n: 1 }, expectedVersion: 0 },
        { userId: 'o-one', userData: { n: 2 } },
        { userId: '', userData: { n: 3 } },
        { userId: 'o-three', userData: { n: 4 }, expectedVersion: 3 },
        { userId: 'o-none', userData: { n: 5 }, expectedVersion: 9 },
        { userId: 'o-five-b', userData: { n: 6 }, expectedVersion: 0 },
      ]);
      expectOk(results[0], 6, 'result 0');
      expectOk(results[1], 1, 'result 1');
      expectOk(results[2], 2, 'result 2');
      expectErrorResult(results[3], 'result 3', 'INVALID_USER_ID');
      expectOk(results[4], 4, 'result 4');
      expectConflict(results[5], 0, 'result 5');
      expectOk(results[6], 1, 'result 6');
    },
  },
];

function batchSizeOf(t: CheckContext, adapter: PersistenceAdapter): number {
  const size = t.options.capabilities?.batchSize ?? adapter.maxBatchSize ?? 1000;
  if (!Number.isSafeInteger(size) || size < 1)
    throw new Error(`Invalid batch size ${size}: expected a positive integer.`);
  return size;
}

/**
 * A batch of `n` users where every third exists at version 1 and is written on that version, the others are
 * new (inserted with expectedVersion 0, or unconditionally).
 */
async function checkBatch(t: CheckContext, delta: number | 'one'): Promise<void> {
  const adapter = await t.adapter();
  const size = batchSizeOf(t, adapter);
  const n = delta === 'one' ? 1 : size + delta;
  if (n < 1) {
    t.note(`batch size ${size}: a batch of ${n} records is not meaningful, checked nothing`);
    return;
  }
  const ids = Array.from({ length: n }, (_, i) => `b-${i}`);
  const seeded = ids.filter((_, i) => i % 3 === 1);
  for (const part of chunks(seeded, size)) {
    const results = await adapter.save(part.map((userId) => ({ userId, userData: { seeded: true } })));
    const notOk = results.filter((r) => r.status !== 'ok' || r.version !== 1);
    expect(notOk, 'seeding every third user').toEqual([]);
  }
  const records: SaveRecord[] = ids.map((userId, i) => {
    const userData = { i, payload: `record-${i}` };
    if (i % 3 === 1) return { userId, userData, expectedVersion: 1 };
    return i % 3 === 0 ? { userId, userData, expectedVersion: 0 } : { userId, userData };
  });
  const expected = ids.map((_, i) => (i % 3 === 1 ? 2 : 1));
  const results = await saveBatchOf(adapter, records);
  const wrongResults = results
    .map((result, index) => ({ index, result }))
    .filter(({ result, index }) => result?.status !== 'ok' || result.version !== expected[index])
    .slice(0, 5)
    .map(({ index, result }) => ({ index, expected: expected[index], got: preview(result) }));
  expect(wrongResults, `batch of ${n}: first results that are not ok with the right version`).toEqual([]);
  const loaded = await loadAll(adapter, ids);
  const wrongStored = loaded
    .map((user, index) => ({ index, user }))
    .filter(
      ({ user, index }) =>
        user?.version !== expected[index] || (user?.userData as { i?: unknown } | undefined)?.i !== index,
    )
    .slice(0, 5)
    .map(({ index, user }) => ({ index, got: preview(user) }));
  expect(wrongStored, `batch of ${n}: first users stored wrongly (of ${n}, through load)`).toEqual([]);
  if (t.canInspect) {
    const sample = new Set([
      0,
      n - 1,
      Math.floor(n / 2),
      ...Array.from({ length: 8 }, (_, k) => Math.floor((k * n) / 8)),
    ]);
    for (const index of sample) {
      expect(await t.inspect(ids[index]!), `inspect ${ids[index]}`).toEqual({
        userData: records[index]!.userData,
        version: expected[index],
      });
    }
  }
}

export const batchChecks: Check[] = [
  {
    group: 'batches',
    name: 'an empty batch resolves to no results',
    async run(t) {
      const adapter = await t.adapter();
      expect(await adapter.save([]), 'save([])').toEqual([]);
    },
  },
  { group: 'batches', name: 'a batch of 1 record', run: (t) => checkBatch(t, 'one') },
  { group: 'batches', name: 'a batch of batchSize - 1 records', run: (t) => checkBatch(t, -1) },
  { group: 'batches', name: 'a batch of batchSize records', run: (t) => checkBatch(t, 0) },
  { group: 'batches', name: 'a batch of batchSize + 1 records', run: (t) => checkBatch(t, 1) },
  {
    group: 'batches',
    name: 'the same user twice in one batch: the first record is written, later ones fail with DUPLICATE_KEY',
    async run(t) {
      const adapter = await t.adapter();
      const results = await saveBatchOf(adapter, [
        { userId: 'dup', userData: { n: 1 } },
        { userId: 'other', userData: { n: 2 } },
        { userId: 'dup', userData: { n: 3 } },
        { userId: 5, userData: { n: 4 }, expectedVersion: 0 },
        { userId: '5', userData: { n: 5 }, expectedVersion: 1 },
        { userId: 'dup', userData: { n: 6 }, expectedVersion: 1 },
      ]);
      expectOk(results[0], 1, 'first record of "dup"');
      expectOk(results[1], 1, 'record between duplicates');
      expectErrorResult(results[2], 'second record of "dup"', 'DUPLICATE_KEY');
      expectOk(results[3], 1, 'first record of 5');
      expectErrorResult(results[4], 'record of "5" after 5', 'DUPLICATE_KEY');
      expectErrorResult(results[5], 'third record of "dup"', 'DUPLICATE_KEY');
      await expectStored(t, adapter, 'dup', { userData: { n: 1 }, version: 1 });
      await expectStored(t, adapter, '5', { userData: { n: 4 }, version: 1 });
    },
  },
];
