/** Groups about what is stored and under which key: load, roundTrip, ids. */
import type { UserId } from '@cagey-sessions/core';
import {
  expect,
  expectCode,
  expectOk,
  expectStored,
  jsonCopy,
  rejection,
  saveOne,
  writeVersions,
} from './assertions.js';
import type { Check, CheckContext } from './context.js';

/** Values `userKey` refuses: empty or NUL-containing strings, non-integers, unsafe integers, non-primitives. */
export const invalidUserIds: readonly unknown[] = [
  '',
  'nul\u0000inside',
  1.5,
  -0.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.MAX_SAFE_INTEGER + 1,
  null,
  undefined,
  true,
  {},
  [],
  ['5'],
  10n,
];

export const loadChecks: Check[] = [
  {
    group: 'load',
    name: 'a user that was never written loads as undefined',
    async run(t) {
      const adapter = await t.adapter();
      expect(await adapter.load('never-written'), 'load("never-written")').toBeUndefined();
      expect(await adapter.load(424242), 'load(424242)').toBeUndefined();
    },
  },
  {
    group: 'load',
    name: 'load rejects invalid userIds with ValidationError INVALID_USER_ID',
    async run(t) {
      const adapter = await t.adapter();
      for (const userId of invalidUserIds) {
        const what = `load(${describeId(userId)})`;
        expectCode(
          await rejection(() => adapter.load(userId as never), what),
          'INVALID_USER_ID',
          what,
          'ValidationError',
        );
      }
    },
  },
  {
    group: 'load',
    name: 'a second adapter over the same namespace (another process) loads what the first wrote',
    async run(t) {
      const first = await t.adapter();
      const second = await t.open();
      expectOk(await saveOne(first, 'shared', { gold: 7 }), 1, 'write through the first adapter');
      expect(await second.load('shared'), 'load through the second adapter').toEqual({
        userData: { gold: 7 },
        version: 1,
      });
    },
  },
  {
    group: 'load',
    name: 'namespaces are disjoint: a user written in one is missing in another',
    async run(t) {
      const adapter = await t.adapter();
      const elsewhere = await t.open({ namespace: t.freshNamespace() });
      expectOk(await saveOne(adapter, 'here', { gold: 1 }), 1, 'write in the first namespace');
      expect(await elsewhere.load('here'), 'load in the other namespace').toBeUndefined();
      expectOk(await saveOne(elsewhere, 'here', { gold: 2 }, 0), 1, 'insert in the other namespace');
      expect(await adapter.load('here'), 'the first namespace is unchanged').toEqual({
        userData: { gold: 1 },
        version: 1,
      });
    },
  },
];

/** 100 levels of alternating objects and arrays, counting the root object as level 1. */
export function deeplyNested(levels = 100): Record<string, unknown> {
  let value: unknown = 'bottom';
  for (let level = levels - 1; level >= 1; level--)
    value = level % 2 === 0 ? [level, value] : { level, next: value };
  return { level: 0, next: value };
}

function nestingDepth(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + Math.max(0, ...children.map(nestingDepth));
}

const awkwardStrings = {
  unicode: 'Grüße, Ελληνικά, 日本語, עברית, العربية, हिन्दी',
  emoji: '🎮👾🕹️ 👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽',
  astral: '𝄞 𝕬 𠜎 \u{1F600} \u{10FFFF}',
  combining: 'e\u0301 n\u0303 \u200d \ufeff',
  escapes: 'quote " backslash \\ slash / newline \n tab \t cr \r formfeed \f backspace \b',
  controls: '\u0001\u0008\u001f\u007f\u0085\u2028\u2029',
  markup: '<script>alert(1)</script> &amp; {{x}} $' + '{y}',
  sql: '\'; DROP TABLE users; -- " OR 1=1',
  dateLike: '2024-02-29T12:00:00.000Z',
  numberLike: ['007', '1e3', '-0', 'NaN', 'Infinity', '0x1F', ' 42 ', '9007199254740993'],
  keywordLike: ['true', 'false', 'null', 'undefined', '', ' '],
  objectIdLike: '507f1f77bcf86cd799439011',
};

const awkwardNumbers = {
  maxSafe: Number.MAX_SAFE_INTEGER,
  minSafe: -Number.MAX_SAFE_INTEGER,
  beyondSafe: 2 ** 53 + 2,
  maxValue: Number.MAX_VALUE,
  minValue: Number.MIN_VALUE,
  epsilon: Number.EPSILON,
  int32Edges: [2147483647, 2147483648, -2147483648, -2147483649, 4294967296],
  floats: [0.1, 0.30000000000000004, -1.5, 1e21, 1e-7, 123456789.12345679, 1 / 3],
  small: [0, 1, -1],
  booleans: [true, false],
  nothing: null,
  nulls: [null, null],
};

const awkwardKeys: Record<string, unknown> = {
  'key.with.dots': 1,
  'a.b': { 'c.d': 'e' },
  $dollar: 'x',
  $set: { $inc: { gold: 1 } },
  $: 1,
  'key with spaces': 1,
  ' leading': 2,
  'trailing ': 3,
  '': 'empty key',
  ключ: 'cyrillic key',
  '🔑': 'emoji key',
  'quote"key': 1,
  "apos'key": 1,
  'back\\slash': 1,
  'new\nline': 1,
  '123': 'integer-like key',
  '-1': 'negative integer-like key',
  constructor: 'not a function',
  toString: 'shadowed',
  hasOwnProperty: 1,
  _id: 'not an id',
};

const awkwardStructures = {
  emptyObject: {},
  emptyArray: [],
  emptyString: '',
  nestedArrays: [[], [[]], [[[1, [2, [3]]]]], [{}, [{}]]],
  mixedArray: [1, 'two', null, true, { three: 3 }, [4], -0.5],
  objectsInArrays: Array.from({ length: 50 }, (_, i) => ({
    i,
    name: `item-${i}`,
    tags: i % 2 ? [] : ['even'],
  })),
  sparseLooking: { '0': 'a', '2': 'c' },
};

/** Saves, loads (and inspects) one value; the store must give back exactly its JSON form. */
async function roundTrip(t: CheckContext, userId: UserId, userData: object): Promise<void> {
  const adapter = await t.adapter();
  expectOk(await saveOne(adapter, userId, userData), 1, `save of ${JSON.stringify(userId)}`);
  await expectStored(t, adapter, userId, { userData: jsonCopy(userData), version: 1 });
}

export const roundTripChecks: Check[] = [
  {
    group: 'roundTrip',
    name: 'strings: unicode, emoji, astral plane, combining marks, escapes, control characters',
    run: (t) => roundTrip(t, 'strings', awkwardStrings),
  },
  {
    group: 'roundTrip',
    name: 'numbers: ±MAX_SAFE_INTEGER, int32 edges, MAX_VALUE, MIN_VALUE, floats; booleans and null',
    run: (t) => roundTrip(t, 'numbers', awkwardNumbers),
  },
  {
    group: 'roundTrip',
    name: 'keys: dots, $-prefixed, spaces, empty string, unicode, quotes, integer-like, _id, constructor',
    run: (t) => roundTrip(t, 'keys', awkwardKeys),
  },
  {
    group: 'roundTrip',
    name: 'a "__proto__" key is stored as data and pollutes no prototype',
    async run(t) {
      const userData = JSON.parse('{"__proto__":{"polluted":true},"ok":1}') as object;
      await roundTrip(t, 'proto', userData);
      const loaded = (await (await t.adapter()).load('proto'))!;
      expect(Object.keys(loaded.userData).sort(), 'own keys of the loaded data').toEqual(['__proto__', 'ok']);
      expect(Object.getPrototypeOf(loaded.userData), 'prototype of the loaded data').toBe(Object.prototype);
      expect(({} as Record<string, unknown>).polluted, 'Object.prototype stays clean').toBeUndefined();
    },
  },
  {
    group: 'roundTrip',
    name: 'structures: empty objects and arrays, nested and mixed arrays',
    run: (t) => roundTrip(t, 'structures', awkwardStructures),
  },
  {
    group: 'roundTrip',
    name: 'deep nesting: 100 levels',
    async run(t) {
      const userData = deeplyNested(100);
      expect(nestingDepth(userData), 'depth of the fixture').toBe(100);
      await roundTrip(t, 'deep', userData);
    },
  },
  {
    group: 'roundTrip',
    name: 'large values: a 1 MiB string and a 10,000-element array',
    async run(t) {
      const block = 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ÄÖÜß€ ';
      const big = block.repeat(Math.ceil(1_048_576 / block.length)).slice(0, 1_048_576);
      await roundTrip(t, 'big-string', { big });
      await roundTrip(t, 'big-array', { list: Array.from({ length: 10_000 }, (_, i) => i * 3) });
    },
  },
  {
    group: 'roundTrip',
    name: 'JSON semantics: undefined properties are dropped and -0 loads as a zero',
    async run(t) {
      const adapter = await t.adapter();
      expectOk(await saveOne(adapter, 'json', { kept: 1, dropped: undefined, zero: -0 }), 1, 'save');
      const loaded = (await adapter.load('json'))?.userData as Record<string, unknown> | undefined;
      expect(loaded && Object.keys(loaded).sort(), 'keys of the loaded data').toEqual(['kept', 'zero']);
      expect(loaded?.zero === 0, `-0 loads as a zero (got ${String(loaded?.zero)})`).toBe(true);
    },
  },
  {
    group: 'roundTrip',
    name: "a record's precomputed json is what gets stored",
    async run(t) {
      const adapter = await t.adapter();
      const results = await adapter.save([{ userId: 'snap', userData: { gold: 1 }, json: '{"gold":2}' }]);
      expectOk(results[0], 1, 'save with json');
      await expectStored(t, adapter, 'snap', { userData: { gold: 2 }, version: 1 });
    },
  },
  {
    group: 'roundTrip',
    name: 'loaded data is a copy, and so is saved data: mutating either changes nothing stored',
    async run(t) {
      const adapter = await t.adapter();
      const input = { gold: 1, items: ['a'], nested: { x: 1 } };
      expectOk(await saveOne(adapter, 'copy', input), 1, 'save');
      input.gold = 999;
      input.items.push('mutated-input');
      input.nested.x = 999;
      const first = (await adapter.load('copy'))!;
      const data = first.userData as typeof input;
      data.gold = 555;
      data.items.push('mutated-load');
      data.nested.x = 555;
      await expectStored(t, adapter, 'copy', {
        userData: { gold: 1, items: ['a'], nested: { x: 1 } },
        version: 1,
      });
    },
  },
];

/** Ids that are easy to mangle in keys, paths and queries; each must name its own record. */
export const exoticUserIds: readonly UserId[] = [
  'ユーザー',
  '😀',
  'a b',
  ' lead',
  'trail ',
  'a:b:c',
  'a:',
  ':',
  'user/1',
  'x\\y',
  "o'neil",
  'quote"d',
  '%_*?[]{}()',
  'tab\tid',
  'new\nline',
  '.',
  '$where',
  'x'.repeat(200),
];

export const idChecks: Check[] = [
  {
    group: 'ids',
    name: 'an integer id and its decimal string name the same record (5 and "5", 0 and "0", -7 and "-7")',
    async run(t) {
      const adapter = await t.adapter();
      for (const [asNumber, asString] of [
        [5, '5'],
        [0, '0'],
        [-7, '-7'],
      ] as const) {
        expectOk(await saveOne(adapter, asNumber, { via: 'number' }), 1, `save ${asNumber}`);
        expect(await adapter.load(asString), `load ${JSON.stringify(asString)}`).toEqual({
          userData: { via: 'number' },
          version: 1,
        });
        expectOk(
          await saveOne(adapter, asString, { via: 'string' }, 1),
          2,
          `save ${JSON.stringify(asString)}`,
        );
        expect(await adapter.load(asNumber), `load ${asNumber}`).toEqual({
          userData: { via: 'string' },
          version: 2,
        });
        if (t.canInspect) {
          expect(await t.inspect(asString), `inspect ${JSON.stringify(asString)}`).toEqual({
            userData: { via: 'string' },
            version: 2,
          });
        }
        expect(await adapter.delete(asNumber), `delete ${asNumber}`).toBe(true);
        expect(await adapter.load(asString), `load ${JSON.stringify(asString)} after delete`).toBeUndefined();
        expect(await adapter.delete(asString), `delete ${JSON.stringify(asString)} again`).toBe(false);
      }
    },
  },
  {
    group: 'ids',
    name: 'other numeric-looking strings are different users ("05", "5.0", "1e3" vs 5 and 1000)',
    async run(t) {
      const adapter = await t.adapter();
      const ids: UserId[] = [5, '05', '5.0', ' 5', 1000, '1e3', '1000.0'];
      const results = await adapter.save(ids.map((userId) => ({ userId, userData: { id: String(userId) } })));
      for (const [i, id] of ids.entries()) expectOk(results[i], 1, `save ${JSON.stringify(id)}`);
      for (const id of ids) {
        expect(await adapter.load(id), `load ${JSON.stringify(id)}`).toEqual({
          userData: { id: String(id) },
          version: 1,
        });
      }
    },
  },
  {
    group: 'ids',
    name: 'ids with unicode, spaces, colons, slashes, quotes, wildcards and 200 characters are distinct records',
    async run(t) {
      const adapter = await t.adapter();
      const results = await adapter.save(
        exoticUserIds.map((userId) => ({ userId, userData: { id: userId } })),
      );
      for (const [i, id] of exoticUserIds.entries()) expectOk(results[i], 1, `save ${JSON.stringify(id)}`);
      for (const id of exoticUserIds) {
        await expectStored(t, adapter, id, { userData: { id }, version: 1 });
      }
      expect(await adapter.delete('a:'), 'delete "a:"').toBe(true);
      expect(await adapter.load('a:b:c'), 'deleting "a:" leaves "a:b:c"').toEqual({
        userData: { id: 'a:b:c' },
        version: 1,
      });
      expect(await adapter.load(':'), 'deleting "a:" leaves ":"').toEqual({
        userData: { id: ':' },
        version: 1,
      });
    },
  },
  {
    group: 'ids',
    name: 'a user with an id like the namespace or a wildcard does not see other users',
    async run(t) {
      const adapter = await t.adapter();
      await writeVersions(adapter, 'someone', 1);
      for (const id of [t.namespace, '*', '%', '.*', '?']) {
        expect(await adapter.load(id), `load ${JSON.stringify(id)}`).toBeUndefined();
      }
    },
  },
];

function describeId(userId: unknown): string {
  if (typeof userId === 'bigint') return `${userId}n`;
  if (userId === undefined) return 'undefined';
  if (typeof userId === 'number') return Object.is(userId, -0) ? '-0' : String(userId);
  return JSON.stringify(userId);
}
