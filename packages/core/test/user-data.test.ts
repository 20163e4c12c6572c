import { describe, expect, it } from 'vitest';
import { checkExpectedVersion, serializeUserData } from '../src/adapter-kit/index.js';
import { MAX_USER_ID_BYTES, userKey, ValidationError } from '../src/index.js';

function rejection(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('userKey', () => {
  it('maps an integer and its decimal string to the same key', () => {
    expect(userKey(5)).toBe('5');
    expect(userKey('5')).toBe('5');
    expect(userKey(-42)).toBe('-42');
    expect(userKey(Number.MAX_SAFE_INTEGER)).toBe('9007199254740991');
  });

  it.each([
    ['an empty string', ''],
    ['a string with NUL', 'a\u0000b'],
    ['a float', 1.5],
    ['an unsafe integer', 2 ** 53],
    ['NaN', Number.NaN],
    ['null', null],
    ['undefined', undefined],
    ['an object', { id: 1 }],
    ['a bigint', 5n],
  ])('rejects %s with INVALID_USER_ID', (_, value) => {
    expect(rejection(() => userKey(value)).code).toBe('INVALID_USER_ID');
  });

  it(`accepts ids up to ${MAX_USER_ID_BYTES} UTF-8 bytes and refuses longer ones with a short message`, () => {
    expect(userKey('a'.repeat(MAX_USER_ID_BYTES))).toHaveLength(MAX_USER_ID_BYTES);
    expect(userKey('é'.repeat(MAX_USER_ID_BYTES / 2))).toHaveLength(MAX_USER_ID_BYTES / 2); // 2 bytes each
    for (const id of [
      'a'.repeat(MAX_USER_ID_BYTES + 1),
      'é'.repeat(MAX_USER_ID_BYTES / 2 + 1),
      'x'.repeat(1_000_000),
    ]) {
      const error = rejection(() => userKey(id));
      expect(error.code).toBe('INVALID_USER_ID');
      expect(error.message.length).toBeLessThan(300);
    }
  });
});

describe('checkExpectedVersion', () => {
  it('accepts nothing, zero and positive safe integers', () => {
    expect(checkExpectedVersion(undefined)).toBeUndefined();
    expect(checkExpectedVersion(0)).toBe(0);
    expect(checkExpectedVersion(7)).toBe(7);
  });

  it.each([[-1], [1.5], ['1'], [Number.POSITIVE_INFINITY]])('rejects %s with INVALID_VERSION', (value) => {
    expect(rejection(() => checkExpectedVersion(value)).code).toBe('INVALID_VERSION');
  });
});

describe('serializeUserData', () => {
  it('serialises JSON-compatible data exactly as JSON.stringify does', () => {
    const data = {
      name: 'Zoë 🐉',
      nested: { list: [1, [2, [3]], {}], empty: {} },
      'key.with.dots': true,
      $dollar: null,
      'with space': -0.5,
      max: Number.MAX_SAFE_INTEGER,
      skipped: undefined,
    };
    expect(serializeUserData(data)).toBe(JSON.stringify(data));
  });

  it('accepts objects without a prototype', () => {
    const data = Object.assign(Object.create(null), { a: 1 });
    expect(serializeUserData(data)).toBe('{"a":1}');
  });

  const holey = [1, 2, 3];
  delete holey[1];
  const cycle: Record<string, unknown> = { a: {} };
  (cycle.a as Record<string, unknown>).back = cycle;

  it.each([
    ['a BigInt', { gold: 5n }, 'gold'],
    ['a deep BigInt', { a: { b: [{ c: 1n }] } }, 'a.b[0].c'],
    ['a function', { f: () => 1 }, 'f'],
    ['a symbol value', { s: Symbol('x') }, 's'],
    ['a symbol key', { [Symbol('k')]: 1 }, ''],
    ['NaN', { n: Number.NaN }, 'n'],
    ['Infinity', { list: [1, Number.POSITIVE_INFINITY] }, 'list[1]'],
    ['-Infinity', { n: Number.NEGATIVE_INFINITY }, 'n'],
    ['undefined in an array', { list: [1, undefined] }, 'list[1]'],
    ['a hole in an array', { list: holey }, 'list[1]'],
    ['a cycle', cycle, 'a.back'],
    ['a Date', { at: new Date(0) }, 'at'],
    ['a Map', { m: new Map() }, 'm'],
    ['a class instance', { c: new (class Thing {})() }, 'c'],
    ['an array root', [1, 2], ''],
    ['a string root', 'text', ''],
    ['a null root', null, ''],
  ])('rejects %s with INVALID_USER_DATA and its path', (_, value, path) => {
    const error = rejection(() => serializeUserData(value));
    expect(error.code).toBe('INVALID_USER_DATA');
    expect(error.path).toBe(path);
  });

  /** `{ n: { n: … leaf } }`, `depth` levels deep. */
  function nested(depth: number, leaf: unknown): Record<string, unknown> {
    let data: Record<string, unknown> = { leaf };
    for (let i = 0; i < depth; i++) data = { n: data };
    return data;
  }

  it('accepts data nested deeper than the quick check goes', () => {
    const data = nested(200, 'deep');
    expect(serializeUserData(data)).toBe(JSON.stringify(data));
  });

  it('finds a bad value and a cycle nested deeper than the quick check goes', () => {
    expect(rejection(() => serializeUserData(nested(100, 1n))).path).toBe(`${'n.'.repeat(100)}leaf`);
    const deep = nested(100, null);
    let bottom = deep;
    while (bottom.n) bottom = bottom.n as Record<string, unknown>;
    bottom.leaf = deep;
    const error = rejection(() => serializeUserData(deep));
    expect([error.code, error.path]).toEqual(['INVALID_USER_DATA', `${'n.'.repeat(100)}leaf`]);
  });

  it('allows the same object twice when it is not a cycle', () => {
    const shared = { x: 1 };
    expect(serializeUserData({ a: shared, b: [shared, shared] })).toBe('{"a":{"x":1},"b":[{"x":1},{"x":1}]}');
  });
});
