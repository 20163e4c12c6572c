import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  checkIdentifier,
  type PreparedRecord,
  passwordOfUrl,
  redactCredentials,
  redactError,
  saveBatch,
  wrapDriverError,
} from '../src/adapter-kit/index.js';
import { AdapterError, CageySessionsError, type SaveResult } from '../src/index.js';

/** A `write` that records what it was given and answers ok with version 1 for each record. */
function recordingWrite() {
  const calls: PreparedRecord[][] = [];
  const write = async (prepared: PreparedRecord[]): Promise<SaveResult[]> => {
    calls.push(prepared);
    return prepared.map(() => ({ status: 'ok', version: 1 }));
  };
  return { calls, write };
}

describe('saveBatch', () => {
  it('sends only valid records and puts every result back in the caller’s order', async () => {
    const { calls, write } = recordingWrite();
    const results = await saveBatch(
      'test',
      [
        { userId: 'a', userData: { gold: 1 } },
        { userId: '', userData: {} },
        { userId: 'b', userData: { gold: 2n } as never },
        { userId: 'c', userData: {}, expectedVersion: -1 },
        { userId: 7, userData: { ok: true }, expectedVersion: 3 },
      ],
      write,
    );
    expect(calls).toHaveLength(1);
    expect(calls[0]!.map((r) => [r.index, r.key, r.json, r.expectedVersion])).toEqual([
      [0, 'a', '{"gold":1}', undefined],
      [4, '7', '{"ok":true}', 3],
    ]);
    expect(
      results.map((r) => (r.status === 'error' ? (r.error as CageySessionsError).code : r.status)),
    ).toEqual(['ok', 'INVALID_USER_ID', 'INVALID_USER_DATA', 'INVALID_VERSION', 'ok']);
  });

  it('refuses a user’s second record in one batch (5 and "5" are one user) and never sends it', async () => {
    const { calls, write } = recordingWrite();
    const results = await saveBatch(
      'test',
      [
        { userId: 5, userData: { n: 1 } },
        { userId: 'x', userData: { n: 2 } },
        { userId: '5', userData: { n: 3 } },
      ],
      write,
    );
    expect(calls[0]!.map((r) => r.index)).toEqual([0, 1]);
    const duplicate = results[2]!;
    expect(duplicate.status).toBe('error');
    const error = (duplicate as { error: Error }).error as CageySessionsError;
    expect(error.code).toBe('DUPLICATE_KEY');
    expect(error.message).toContain('records 0 and 2');
  });

  it('does not treat a record refused as invalid as the user’s first', async () => {
    const { calls, write } = recordingWrite();
    await saveBatch(
      'test',
      [
        { userId: 'u', userData: { bad: Number.NaN } },
        { userId: 'u', userData: { good: 1 } },
      ],
      write,
    );
    expect(calls[0]!.map((r) => r.index)).toEqual([1]);
  });

  it('does not call write when no record is valid', async () => {
    const { calls, write } = recordingWrite();
    const results = await saveBatch('test', [{ userId: null as never, userData: {} }], write);
    expect(calls).toHaveLength(0);
    expect(results[0]!.status).toBe('error');
  });

  it('rejects with ADAPTER_CONTRACT when write returns the wrong number of results', async () => {
    const error = await saveBatch('test', [{ userId: 'a', userData: {} }], async () => []).catch((e) => e);
    expect(error).toBeInstanceOf(CageySessionsError);
    expect(error.code).toBe('ADAPTER_CONTRACT');
  });

  it('wraps a driver error as ADAPTER_ERROR with its cause and without URL credentials', async () => {
    const driverError = new Error('connect to postgres://admin:s3cret@127.0.0.1:5432/db refused');
    const error = await saveBatch('test', [{ userId: 'a', userData: {} }], async () => {
      throw driverError;
    }).catch((e) => e);
    expect(error).toBeInstanceOf(AdapterError);
    expect(error.code).toBe('ADAPTER_ERROR');
    expect(error.cause).toBeInstanceOf(Error);
    expect(error.cause).not.toBe(driverError);
    expect(error.cause.message).toBe('connect to postgres://***@127.0.0.1:5432/db refused');
    expect(driverError.message).toContain('s3cret'); // the driver's own object is left alone
    expect(error.message).not.toContain('s3cret');
    expect(error.message).toContain('postgres://***@127.0.0.1');
  });
});

describe('redactCredentials', () => {
  it('masks user and password in every URL of a text', () => {
    expect(redactCredentials('a redis://:pw@h:1 and mongodb+srv://u:p@x/y')).toBe(
      'a redis://***@h:1 and mongodb+srv://***@x/y',
    );
  });
});

describe('redactError', () => {
  it('leaves no credential at any depth of util.inspect, for URL, secret, property and AUTH-command forms', () => {
    const secret = 'hunter2-p@ss';
    // The shapes drivers really produce: ioredis keeps the failed command, pg and mongodb keep options.
    const command = { name: 'auth', args: ['default', secret] };
    const inner = Object.assign(new Error(`WRONGPASS invalid username-password pair`), { command });
    const outer = Object.assign(
      new Error(`connect to redis://default:${encodeURIComponent(secret)}@127.0.0.1:6379 failed`),
      {
        code: 'ECONNREFUSED',
        options: { host: '127.0.0.1', password: secret, auth: { username: 'u', password: secret } },
        note: `the password was ${secret}`,
        buffer: Buffer.from(secret),
        errors: [inner],
      },
    );
    (outer as { cause?: unknown }).cause = inner;
    const wrapped = wrapDriverError('redis', 'save', outer, [secret]);
    const shown = inspect(wrapped, { depth: Number.POSITIVE_INFINITY, showHidden: true });
    expect(shown).not.toContain(secret);
    expect(shown).not.toContain(encodeURIComponent(secret));
    expect(shown).toContain('ECONNREFUSED'); // what helps diagnose stays
    expect(shown).toContain('WRONGPASS');
    expect(JSON.stringify(wrapped.cause)).not.toContain(secret);
    // The driver's own objects are not modified.
    expect(command.args[1]).toBe(secret);
  });

  it('saveBatch cleans a failed write of the secrets it is given', async () => {
    const error = await saveBatch(
      'test',
      [{ userId: 'a', userData: {} }],
      async () => {
        throw new Error('AUTH failed for password sesame-42');
      },
      { secrets: ['sesame-42'] },
    ).catch((e: unknown) => e);
    expect(inspect(error, { depth: Number.POSITIVE_INFINITY })).not.toContain('sesame-42');
  });

  it('keeps the error class and copes with cycles', () => {
    class DriverError extends Error {}
    const error = new DriverError('boom') as DriverError & { self?: unknown };
    error.self = error;
    const copy = redactError(error) as DriverError & { self?: unknown };
    expect(copy).toBeInstanceOf(DriverError);
    expect(copy.self).toBe(copy);
    expect(copy.message).toBe('boom');
  });

  it('finds the password of a connection URL, percent-decoded', () => {
    expect(passwordOfUrl('postgres://u:p%40ss@h/db')).toBe('p@ss');
    expect(passwordOfUrl('redis://:only@h:1')).toBe('only');
    expect(passwordOfUrl('redis://h:1')).toBeUndefined();
    expect(passwordOfUrl('redis://u:p:w@h:1/0')).toBe('p:w'); // an unencoded colon in the password
    expect(passwordOfUrl('mongodb://u:p@ss@h1,h2/db')).toBe('p@ss');
    expect(passwordOfUrl(undefined)).toBeUndefined();
  });
});

describe('checkIdentifier', () => {
  it.each(['users', '_t1', 'A_b_9'])('accepts %s', (name) => {
    expect(checkIdentifier('test', 'table', name)).toBe(name);
  });

  it.each(['users; DROP TABLE x', '1users', 'a-b', '', 'x'.repeat(64), 42])('refuses %s', (name) => {
    expect(() => checkIdentifier('test', 'table', name)).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
  });
});
