import { describe, expect, it } from 'vitest';
import { findUnstorable, unstorableError } from '../src/unstorable.js';

const json = (value: unknown) => JSON.stringify(value);

describe('findUnstorable', () => {
  it('accepts ordinary data without scanning escapes', () => {
    expect(findUnstorable(json({ name: 'Zoë 😀', tabs: '\t\n', quote: '"\\' }))).toBeUndefined();
  });

  it('refuses a NUL character in a string or in a key', () => {
    expect(findUnstorable(json({ a: 'x\u0000y' }))).toMatch(/NUL character/);
    expect(findUnstorable(json({ 'k\u0000': 1 }))).toMatch(/NUL character/);
  });

  it('accepts the six characters \\u0000 written literally (an escaped backslash)', () => {
    expect(findUnstorable(json({ a: '\\u0000' }))).toBeUndefined();
    expect(findUnstorable(json({ a: '\\\\u0000' }))).toBeUndefined();
  });

  it('refuses a NUL that follows an escaped backslash', () => {
    expect(findUnstorable(json({ a: '\\\u0000' }))).toMatch(/NUL character/);
  });

  it('refuses lone surrogates and accepts escaped surrogate pairs', () => {
    expect(findUnstorable(json({ a: '\ud800' }))).toMatch(/lone UTF-16 surrogate/);
    expect(findUnstorable(json({ a: 'x\udc00' }))).toMatch(/lone UTF-16 surrogate/);
    expect(findUnstorable(json({ a: '\ud800x' }))).toMatch(/lone UTF-16 surrogate/);
    expect(findUnstorable('{"a":"\\ud83d\\ude00"}')).toBeUndefined();
    expect(findUnstorable('{"a":"\\ud83d\\u0041"}')).toMatch(/lone UTF-16 surrogate/);
  });

  it('refuses a raw record separator, which valid JSON cannot contain', () => {
    expect(findUnstorable('{"a":"\u001e"}')).toMatch(/control character/);
  });
});

describe('unstorableError', () => {
  it('names the path of the offending value with code INVALID_USER_DATA', () => {
    const text = json({ inventory: [{ name: 'ok' }, { name: 'bad\u0000' }] });
    const error = unstorableError('postgres', text, findUnstorable(text)!);
    expect(error.code).toBe('INVALID_USER_DATA');
    expect(error.path).toBe('inventory[1].name');
    expect(error.message).toContain('userData.inventory[1].name');
  });
});
