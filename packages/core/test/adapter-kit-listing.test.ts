/** The adapter kit's parts for the optional methods: restore (restoreBatch, decideRestore) and scan. */
import { describe, expect, it } from 'vitest';
import {
  decideRestore,
  encodeCursor,
  type PreparedRestoreRecord,
  parseScanOptions,
  restoreBatch,
} from '../src/adapter-kit/index.js';
import { AdapterError, type SaveResult, ValidationError } from '../src/index.js';

describe('decideRestore', () => {
  const missing = { version: 0, live: false };
  const live3 = { version: 3, live: true, writeId: 'w3' };
  const tombstone4 = { version: 4, live: false };
  it.each([
    ['into a missing user: exactly the given version', 5, missing, { write: true, version: 5 }],
    ['over an older live version', 5, live3, { write: true, version: 5 }],
    [
      'over the same live version: already there',
      3,
      live3,
      { write: false, currentVersion: 3, currentWriteId: 'w3' },
    ],
    ['over a newer live version', 2, live3, { write: false, currentVersion: 3, currentWriteId: 'w3' }],
    ['over an older tombstone', 5, tombstone4, { write: true, version: 5 }],
    [
      'over a tombstone of the same version: no live record, so currentVersion 0',
      4,
      tombstone4,
      { write: false, currentVersion: 0, currentWriteId: undefined },
    ],
    ['over a newer tombstone', 2, tombstone4, { write: false, currentVersion: 0, currentWriteId: undefined }],
  ] as const)('%s', (_name, version, stored, decision) => {
    expect(decideRestore(version, stored)).toEqual(decision);
  });
});

describe('restoreBatch', () => {
  it('sends only valid records, each with its version, and puts every result back in the caller’s order', async () => {
    const calls: PreparedRestoreRecord[][] = [];
    const results = await restoreBatch(
      'test',
      [
        { userId: 'a', userData: { gold: 1 }, version: 4, writeId: 'w-a' },
        { userId: 'b', userData: {}, version: 0 },
        { userId: 'c', userData: {}, version: -2 },
        { userId: 'd', userData: {}, version: 1.5 },
        { userId: 'e', userData: {}, version: '3' as never },
        { userId: 'f', userData: { big: 1n } as never, version: 1 },
        { userId: 7, userData: {}, version: 2, json: '{"pre":true}' },
        { userId: '7', userData: {}, version: 9 },
        { userId: 'g', userData: {}, version: 1, writeId: 'not valid!' },
      ],
      async (prepared) => {
        calls.push(prepared);
        return prepared.map((record): SaveResult => ({ status: 'ok', version: record.version }));
      },
    );
    expect(calls).toHaveLength(1);
    expect(calls[0]!.map((r) => [r.index, r.key, r.json, r.version, r.writeId])).toEqual([
      [0, 'a', '{"gold":1}', 4, 'w-a'],
      [6, '7', '{"pre":true}', 2, undefined],
    ]);
    expect(results.map((r) => (r.status === 'error' ? (r.error as ValidationError).code : r))).toEqual([
      { status: 'ok', version: 4 },
      'INVALID_VERSION',
      'INVALID_VERSION',
      'INVALID_VERSION',
      'INVALID_VERSION',
      'INVALID_USER_DATA',
      { status: 'ok', version: 2 },
      'DUPLICATE_KEY',
      'INVALID_OPTIONS',
    ]);
  });

  it('wraps a driver error as an AdapterError naming restore, and refuses a wrong number of results', async () => {
    const failing = restoreBatch('test', [{ userId: 'a', userData: {}, version: 1 }], () => {
      throw new Error('connection reset');
    });
    await expect(failing).rejects.toBeInstanceOf(AdapterError);
    await expect(failing).rejects.toThrow(/restore/);
    await expect(
      restoreBatch('test', [{ userId: 'a', userData: {}, version: 1 }], () => []),
    ).rejects.toMatchObject({ code: 'ADAPTER_CONTRACT' });
  });

  it('does not call write when no record is valid', async () => {
    let called = false;
    const results = await restoreBatch('test', [{ userId: '', userData: {}, version: 1 }], () => {
      called = true;
      return [];
    });
    expect(called).toBe(false);
    expect(results[0]).toMatchObject({ status: 'error' });
  });
});

describe('parseScanOptions', () => {
  const limits = {
    defaultLimit: 100,
    maxLimit: 500,
    readPosition: (p: unknown) => (typeof p === 'string' ? p : undefined),
  };

  it('gives the default limit and no position without options, and lowers a large limit to the maximum', () => {
    expect(parseScanOptions('test', undefined, limits)).toEqual({ position: undefined, limit: 100 });
    expect(parseScanOptions('test', {}, limits)).toEqual({ position: undefined, limit: 100 });
    expect(parseScanOptions('test', { limit: 7 }, limits)).toEqual({ position: undefined, limit: 7 });
    expect(parseScanOptions('test', { limit: 10_000 }, limits)).toEqual({ position: undefined, limit: 500 });
  });

  it('reads back the position of a cursor it encoded', () => {
    const cursor = encodeCursor('test', 'user-42');
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(parseScanOptions('test', { cursor, limit: 3 }, limits)).toEqual({ position: 'user-42', limit: 3 });
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10', 2 ** 53])(
    'refuses the limit %s with INVALID_OPTIONS',
    (limit) => {
      expect(() => parseScanOptions('test', { limit }, limits)).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTIONS', name: 'ValidationError' }),
      );
    },
  );

  it('refuses unknown options', () => {
    expect(() => parseScanOptions('test', { limt: 5 }, limits)).toThrow(/Did you mean limit/);
  });

  it.each([
    ['garbage', 'not a cursor!'],
    ['an empty string', ''],
    ['a number', 5],
    ['base64 of something else', Buffer.from('{"a":1}').toString('base64url')],
    ['another adapter’s cursor', encodeCursor('other', 'user-42')],
    ['a position the adapter cannot use', encodeCursor('test', 42)],
    ['a cut cursor', encodeCursor('test', 'user-42').slice(0, -3)],
  ])('refuses %s with INVALID_CURSOR', (_name, cursor) => {
    let error: unknown;
    try {
      parseScanOptions('test', { cursor }, limits);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'INVALID_CURSOR' });
    expect((error as Error).message).toMatch(/^\[test\] Invalid scan cursor/);
  });
});
