/**
 * Group scan (optional method `scan`): listing every live user a page at a time, stable under concurrent
 * writes, as the migration tools rely on.
 */
import {
  type PersistenceAdapter,
  type SaveRecord,
  type ScannedUser,
  type ScanOptions,
  type StoredUser,
  type UserId,
  userKey,
} from '@cagey-sessions/core';
import { chunks, expect, expectCode, expectOk, fail, loadAll, preview, rejection } from './assertions.js';
import type { Check, CheckContext } from './context.js';

type Scannable = PersistenceAdapter & { scan: NonNullable<PersistenceAdapter['scan']> };

/** What a listing returned: every user of every page, in order, and the number of pages. */
interface Listing {
  users: ScannedUser[];
  pages: number;
}

function scannable(adapter: PersistenceAdapter): Scannable {
  if (typeof adapter.scan !== 'function') fail('the adapter has no scan()');
  return adapter as Scannable;
}

/**
 * Follows cursors from the first page to the end. Checks the shape of every page and that no page holds more
 * than `limit` users. `between(listedSoFar)` runs after each page that has a next one, to write meanwhile.
 */
async function listAll(
  adapter: Scannable,
  {
    limit,
    expected,
    between,
  }: { limit?: number; expected: number; between?: (listed: readonly ScannedUser[]) => Promise<void> },
): Promise<Listing> {
  const users: ScannedUser[] = [];
  // Generous: a page may hold fewer users than the limit, even none, but a listing must end.
  const maxPages = 20 * Math.ceil((expected + 1) / (limit ?? 1)) + 10_000;
  let cursor: string | undefined;
  let pages = 0;
  do {
    const options: ScanOptions = {};
    if (cursor !== undefined) options.cursor = cursor;
    if (limit !== undefined) options.limit = limit;
    const page = await adapter.scan(options);
    pages++;
    const what = `page ${pages} of scan(${preview(limit === undefined ? {} : { limit })})`;
    if (typeof page !== 'object' || page === null || !Array.isArray(page.users)) {
      fail(`${what} resolved with ${preview(page)}; expected { users: [...], cursor }.`);
    }
    if (limit !== undefined && page.users.length > limit) {
      fail(`${what} holds ${page.users.length} users, more than the limit of ${limit}.`);
    }
    for (const user of page.users) checkShape(user, what);
    users.push(...page.users);
    if (page.cursor !== undefined && (typeof page.cursor !== 'string' || page.cursor === '')) {
      fail(`${what} returned the cursor ${preview(page.cursor)}; expected a non-empty string or undefined.`);
    }
    cursor = page.cursor;
    if (pages >= maxPages && cursor !== undefined) {
      fail(`scan did not end after ${pages} pages for about ${expected} users: does the cursor advance?`);
    }
    if (cursor !== undefined && between) await between(users);
  } while (cursor !== undefined);
  return { users, pages };
}

function checkShape(user: ScannedUser, what: string): void {
  const ok =
    typeof user === 'object' &&
    user !== null &&
    typeof user.userId === 'string' &&
    typeof user.userData === 'object' &&
    user.userData !== null &&
    !Array.isArray(user.userData) &&
    Number.isSafeInteger(user.version) &&
    user.version >= 1;
  if (!ok) {
    fail(
      `${what} holds ${preview(user)}; expected { userId: string (the stored form), userData: object, version: positive integer }.`,
    );
  }
}

function atLeastOnce(t: CheckContext): boolean {
  return t.options.capabilities?.scanDelivery === 'atLeastOnce';
}

/** How many times each user id was listed. */
function countListed(users: readonly ScannedUser[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const user of users) counts.set(user.userId, (counts.get(user.userId) ?? 0) + 1);
  return counts;
}

function firstFew(items: readonly unknown[]): string {
  const shown = items.slice(0, 5).map((item) => preview(item));
  return `${shown.join(', ')}${items.length > 5 ? ` and ${items.length - 5} more` : ''}`;
}

/**
 * Asserts that a listing holds every user of `expected` (by stored key), each exactly once (at least once for
 * an adapter that declares `scanDelivery: 'atLeastOnce'`), with its expected data and version, and nobody else.
 */
function expectListing(
  t: CheckContext,
  listing: Listing,
  expected: ReadonlyMap<string, StoredUser<object>>,
  what: string,
): void {
  const counts = countListed(listing.users);
  const missing = [...expected.keys()].filter((key) => !counts.has(key));
  const unknown = [...counts.keys()].filter((key) => !expected.has(key));
  const repeated = [...counts].filter(([, count]) => count > 1).map(([key, count]) => `${key} (${count}x)`);
  const wrong: string[] = [];
  for (const user of listing.users) {
    const want = expected.get(user.userId);
    if (want === undefined) continue;
    if (JSON.stringify(sorted(want)) !== JSON.stringify(sorted(user))) {
      wrong.push(`${preview(user)} instead of ${preview(want)}`);
    }
  }
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`${missing.length} users missing: ${firstFew(missing)}`);
  if (unknown.length > 0)
    problems.push(`${unknown.length} users listed that are not stored: ${firstFew(unknown)}`);
  if (repeated.length > 0 && !atLeastOnce(t)) {
    problems.push(`${repeated.length} users listed more than once: ${firstFew(repeated)}`);
  }
  if (wrong.length > 0) problems.push(`${wrong.length} users with other data or version: ${firstFew(wrong)}`);
  expect(problems, `${what} (${listing.users.length} users in ${listing.pages} pages)`).toEqual([]);
}

/** A comparable form of a stored user: data with sorted keys (stores may reorder keys) and the version. */
function sorted(user: StoredUser<object>): unknown {
  return { userData: sortKeys(user.userData), version: user.version };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
  return out;
}

/** Writes `records` in batches of the adapter's size; every result must be ok at `version`. */
async function saveAll(
  t: CheckContext,
  adapter: PersistenceAdapter,
  records: readonly SaveRecord[],
  version: number,
): Promise<void> {
  const size = t.options.capabilities?.batchSize ?? adapter.maxBatchSize ?? 1000;
  for (const batch of chunks(records, size)) {
    const results = await adapter.save(batch);
    expect(results.length, 'number of results').toBe(batch.length);
    for (const [i, result] of results.entries()) {
      expectOk(result, version, `write of ${preview(batch[i]!.userId)} at version ${version}`);
    }
  }
}

/** Ids that stress key encodings and pattern matching, next to plain ones. */
const unusualIds: UserId[] = [
  'with space',
  'colon:inside',
  'glob*?[x]',
  'ünïcödé',
  '😀',
  'a/b\\c',
  'quote\'"',
  0,
];

/** A deterministic pseudo-random sequence (mulberry32), so a failing run can be repeated. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let x = Math.imul(state ^ (state >>> 15), 1 | state);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export const scanChecks: Check[] = [
  {
    group: 'scan',
    method: 'scan',
    name: 'an empty store, and one holding only deleted users, lists nobody and the listing ends',
    async run(t) {
      const adapter = scannable(await t.adapter());
      expectListing(t, await listAll(adapter, { expected: 0 }), new Map(), 'listing an empty store');
      await saveAll(
        t,
        adapter,
        ['gone-1', 'gone-2', 3].map((userId) => ({ userId, userData: { n: 1 } })),
        1,
      );
      for (const userId of ['gone-1', 'gone-2', 3]) await adapter.delete(userId);
      expectListing(
        t,
        await listAll(adapter, { expected: 0 }),
        new Map(),
        'listing after every user was deleted',
      );
      expectListing(t, await listAll(adapter, { expected: 0, limit: 1 }), new Map(), 'the same with limit 1');
    },
  },
  {
    group: 'scan',
    method: 'scan',
    name: '10,000 users (or capabilities.scanUsers): paging with the default limit and with limit 250 lists each exactly once (at least once where the adapter declares so), with the data and version load gives',
    async run(t) {
      const adapter = scannable(await t.adapter());
      const total = t.options.capabilities?.scanUsers ?? 10_000;
      if (total < 10_000) t.note(`capabilities.scanUsers: listed ${total} users instead of 10,000`);
      const ids: UserId[] = [...unusualIds];
      for (let i = 1; ids.length < total; i++) ids.push(i % 10 === 3 ? i : `player-${i}`);
      const records = ids.map((userId, i) => ({ userId, userData: { i, name: `player ${i}` } }));
      await saveAll(t, adapter, records, 1);
      // Every 100th user a second time, so versions differ.
      const again = records
        .filter((_, i) => i % 100 === 0)
        .map((r) => ({ ...r, userData: { ...r.userData, again: true } }));
      await saveAll(t, adapter, again, 2);
      const expected = new Map<string, StoredUser<object>>();
      for (const record of records)
        expected.set(userKey(record.userId), { userData: record.userData, version: 1 });
      for (const record of again)
        expected.set(userKey(record.userId), { userData: record.userData, version: 2 });

      const byDefault = await listAll(adapter, { expected: expected.size });
      expectListing(t, byDefault, expected, 'listing with the default limit');
      expectListing(
        t,
        await listAll(adapter, { expected: expected.size, limit: 250 }),
        expected,
        'listing with limit 250',
      );

      const loaded = await loadAll(adapter, ids);
      const differs = ids.filter((userId, i) => {
        const got = loaded[i];
        const want = expected.get(userKey(userId))!;
        return got === undefined || JSON.stringify(sorted(got)) !== JSON.stringify(sorted(want));
      });
      expect(
        differs.map((id) => preview(id)),
        'users whose load differs from what scan listed',
      ).toEqual([]);
    },
  },
  {
    group: 'scan',
    method: 'scan',
    name: 'small pages (limits 1, 2 and 7 over 30 users) list each user once and never hold more than the limit',
    async run(t) {
      const adapter = scannable(await t.adapter());
      const records = Array.from({ length: 30 }, (_, i) => ({
        userId: i % 4 === 0 ? i + 100 : `small-${i}`,
        userData: { i },
      }));
      await saveAll(t, adapter, records, 1);
      const expected = new Map(records.map((r) => [userKey(r.userId), { userData: r.userData, version: 1 }]));
      for (const limit of [1, 2, 7]) {
        expectListing(
          t,
          await listAll(adapter, { expected: 30, limit }),
          expected,
          `listing with limit ${limit}`,
        );
      }
    },
  },
  {
    group: 'scan',
    method: 'scan',
    name: 'writes and deletes between pages: every user live throughout is listed once, a user deleted before being reached and a tombstone never',
    async run(t) {
      const adapter = scannable(await t.adapter());
      const writer = await t.open(); // another process writing while the listing runs
      const records = Array.from({ length: 400 }, (_, i) => ({ userId: `live-${i}`, userData: { i } }));
      await saveAll(t, adapter, records, 1);
      const tombstones = Array.from({ length: 20 }, (_, i) => `dead-${i}`);
      await saveAll(
        t,
        adapter,
        tombstones.map((userId) => ({ userId, userData: { dead: true } })),
        1,
      );
      for (const userId of tombstones) await adapter.delete(userId);

      /** The states each user may be listed in; a user deleted during the listing may be listed in none. */
      const allowed = new Map<string, object[]>(
        records.map((r) => [r.userId, [{ userData: r.userData, version: 1 }]]),
      );
      const deletedUnlisted = new Set<string>();
      const created = new Set<string>();
      const next = random(7);
      let round = 0;
      const between = async (listed: readonly ScannedUser[]) => {
        round++;
        const seen = new Set(listed.map((user) => user.userId));
        const unseen = [...allowed.keys()].filter((key) => !seen.has(key) && !deletedUnlisted.has(key));
        const pick = () => unseen.splice(Math.floor(next() * unseen.length), 1)[0];
        for (let k = 0; k < 2; k++) {
          const userId = pick();
          if (userId === undefined) break;
          expect(await writer.delete(userId), `delete of ${userId} during the listing`).toBe(true);
          deletedUnlisted.add(userId);
        }
        const seenLive = [...seen].filter((key) => allowed.has(key) && !deletedUnlisted.has(key));
        const updated = [pick(), pick(), seenLive[Math.floor(next() * seenLive.length)]];
        for (const userId of updated) {
          if (userId === undefined || allowed.get(userId)!.length > 1) continue;
          const userData = { updatedInRound: round };
          expectOk(
            (await writer.save([{ userId, userData }]))[0],
            2,
            `update of ${userId} during the listing`,
          );
          allowed.get(userId)!.push({ userData, version: 2 });
        }
        for (let k = 0; k < 2; k++) {
          const userId = `new-${round}-${k}`;
          expectOk((await writer.save([{ userId, userData: { round } }]))[0], 1, `insert of ${userId}`);
          created.add(userId);
        }
      };
      const listing = await listAll(adapter, { expected: 500, limit: 25, between });
      expect(round, 'writes between pages happened (the listing had several pages)').toBeGreaterThan(3);

      const counts = countListed(listing.users);
      const problems: string[] = [];
      for (const user of listing.users) {
        const { userId } = user;
        const state = JSON.stringify(sorted(user));
        if (deletedUnlisted.has(userId)) problems.push(`${userId} was listed after it was deleted`);
        else if (tombstones.includes(userId))
          problems.push(`${userId} is a tombstone (deleted before the listing)`);
        else if (created.has(userId)) {
          if (
            state !==
            JSON.stringify(sorted({ userData: { round: Number(userId.split('-')[1]) }, version: 1 }))
          ) {
            problems.push(`${userId} (created during the listing) listed as ${preview(user)}`);
          }
        } else if (!allowed.has(userId)) problems.push(`${userId} was never written`);
        else if (
          !allowed.get(userId)!.some((s) => JSON.stringify(sorted(s as StoredUser<object>)) === state)
        ) {
          problems.push(`${userId} listed as ${preview(user)}, a state it never had`);
        }
      }
      for (const [userId, count] of counts) {
        if (count > 1 && !atLeastOnce(t)) problems.push(`${userId} listed ${count} times`);
      }
      for (const userId of allowed.keys()) {
        if (!deletedUnlisted.has(userId) && !counts.has(userId))
          problems.push(`${userId} (live throughout) is missing`);
      }
      expect(problems, `listing while another process writes (${round} rounds of writes)`).toEqual([]);
    },
  },
  {
    group: 'scan',
    method: 'scan',
    name: "another namespace's users are not listed, even one whose name extends this one's",
    async run(t) {
      const adapter = scannable(await t.adapter());
      const extending = await t.open({ namespace: t.namespaceExtending('_x') });
      const other = await t.open({ namespace: t.freshNamespace() });
      const ids = ['shared-1', 'shared-2', 7];
      const expectedFor = new Map<PersistenceAdapter, Map<string, StoredUser<object>>>();
      for (const [name, a] of [
        ['own', adapter],
        ['extending', extending],
        ['other', other],
      ] as const) {
        const records = [...ids, `only-${name}`].map((userId) => ({ userId, userData: { namespace: name } }));
        await saveAll(t, a, records, 1);
        expectedFor.set(
          a,
          new Map(records.map((r) => [userKey(r.userId), { userData: r.userData, version: 1 }])),
        );
      }
      expectListing(
        t,
        await listAll(adapter, { expected: 4 }),
        expectedFor.get(adapter)!,
        'listing this namespace',
      );
      expectListing(
        t,
        await listAll(scannable(extending), { expected: 4 }),
        expectedFor.get(extending)!,
        'listing the namespace whose name extends it',
      );
    },
  },
  {
    group: 'scan',
    method: 'scan',
    name: 'a cursor the adapter did not return is refused with ValidationError INVALID_CURSOR',
    async run(t) {
      const adapter = scannable(await t.adapter());
      await saveAll(t, adapter, [{ userId: 'someone', userData: {} }], 1);
      for (const cursor of ['', 'not a cursor', '%%%', 42, {}]) {
        const what = `scan({ cursor: ${preview(cursor)} })`;
        const error = await rejection(() => adapter.scan({ cursor: cursor as string }), what);
        expectCode(error, 'INVALID_CURSOR', what, 'ValidationError');
      }
    },
  },
  {
    group: 'scan',
    method: 'scan',
    name: 'a limit that is not a positive integer is refused with ValidationError INVALID_OPTIONS',
    async run(t) {
      const adapter = scannable(await t.adapter());
      for (const limit of [0, -1, 2.5, Number.NaN, Number.POSITIVE_INFINITY, '10']) {
        const what = `scan({ limit: ${preview(limit)} })`;
        const error = await rejection(() => adapter.scan({ limit: limit as number }), what);
        expectCode(error, 'INVALID_OPTIONS', what, 'ValidationError');
      }
    },
  },
];
