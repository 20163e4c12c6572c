/** The adapter kit's shared mechanics: version rules, lifecycle, options, chunking. */
import { describe, expect, it } from 'vitest';
import {
  ClientLifecycle,
  checkOptionKeys,
  chunkByCountAndSize,
  clientOrUrl,
  decideWrite,
  nearestKey,
  parseDuration,
  parsePositiveInteger,
} from '../src/adapter-kit/index.js';

describe('decideWrite', () => {
  const missing = { version: 0, live: false };
  const live3 = { version: 3, live: true, writeId: 'w3' };
  const tombstone4 = { version: 4, live: false };
  it.each([
    ['unconditional on a missing user', undefined, missing, { write: true, version: 1 }],
    ['unconditional on a live user', undefined, live3, { write: true, version: 4 }],
    [
      'unconditional on a tombstone: versions keep growing',
      undefined,
      tombstone4,
      { write: true, version: 5 },
    ],
    ['insert on a missing user', 0, missing, { write: true, version: 1 }],
    ['insert over a tombstone', 0, tombstone4, { write: true, version: 5 }],
    ['insert over a live user', 0, live3, { write: false, currentVersion: 3, currentWriteId: 'w3' }],
    ['write on the live version', 3, live3, { write: true, version: 4 }],
    ['write on a stale version', 2, live3, { write: false, currentVersion: 3, currentWriteId: 'w3' }],
    ['write ahead of the store', 9, live3, { write: false, currentVersion: 3, currentWriteId: 'w3' }],
    [
      'write on a deleted version',
      4,
      tombstone4,
      { write: false, currentVersion: 0, currentWriteId: undefined },
    ],
    ['write on a missing user', 1, missing, { write: false, currentVersion: 0, currentWriteId: undefined }],
  ] as const)('%s', (_name, expected, stored, decision) => {
    expect(decideWrite(expected, stored)).toEqual(decision);
  });
});

describe('ClientLifecycle', () => {
  it('opens its own client once, on first use, and closes it; a client passed in is never closed', async () => {
    let opened = 0;
    const released: string[] = [];
    const own = new ClientLifecycle<string>('x', {
      open: async () => `client-${++opened}`,
      release: async (client) => {
        released.push(client);
      },
    });
    expect(own.ownsClient).toBe(true);
    expect(await Promise.all([own.client('load'), own.client('save')])).toEqual(['client-1', 'client-1']);
    await own.close();
    await own.close();
    expect(released).toEqual(['client-1']);
    const given = new ClientLifecycle<string>('x', { given: 'theirs' });
    expect(await given.client('load')).toBe('theirs');
    await given.close();
    expect(given.ownsClient).toBe(false);
  });

  it('tries a failed open again on the next call, and closes nothing that never opened', async () => {
    let attempts = 0;
    const released: unknown[] = [];
    const lifecycle = new ClientLifecycle<number>('x', {
      open: async () => {
        if (++attempts === 1) throw new Error('refused');
        return attempts;
      },
      release: async (client) => {
        released.push(client);
      },
    });
    await expect(lifecycle.client('load')).rejects.toThrow('refused');
    expect(await lifecycle.client('load')).toBe(2);
    const never = new ClientLifecycle<number>('x', {
      open: async () => 1,
      release: async (c) => void released.push(c),
    });
    await never.close();
    expect(released).toEqual([]);
  });

  it('wraps a failure to open as an AdapterError without the secrets', async () => {
    const lifecycle = new ClientLifecycle<string>(
      'x',
      {
        open: async () => {
          throw new Error('password authentication failed: s3cr3t-pw');
        },
        release: async () => {},
      },
      { secrets: ['s3cr3t-pw'] },
    );
    const error = await lifecycle.client('load').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ADAPTER_ERROR', adapter: 'x' });
    expect(JSON.stringify(error) + String((error as Error).message)).not.toContain('s3cr3t-pw');
  });

  it('fails every call after close() with ADAPTER_CLOSED, worded the same for every adapter', async () => {
    const lifecycle = new ClientLifecycle<string>('redis', { given: 'c' });
    await lifecycle.close();
    await expect(lifecycle.client('save')).rejects.toMatchObject({
      code: 'ADAPTER_CLOSED',
      adapter: 'redis',
      message: '[redis] save failed: the adapter is closed. Create a new adapter to keep using the store.',
    });
    expect(() => lifecycle.assertOpen('load')).toThrow(expect.objectContaining({ code: 'ADAPTER_CLOSED' }));
  });
});

describe('option parsing', () => {
  it('parses durations from milliseconds and ms strings, with a fallback', () => {
    expect(parseDuration('x', 'connectTimeout', undefined, '5s')).toBe(5000);
    expect(parseDuration('x', 'connectTimeout', 250, '5s')).toBe(250);
    expect(parseDuration('x', 'ttl', '7d')).toBe(7 * 86_400_000);
    expect(parseDuration('x', 'ttl', undefined)).toBeUndefined();
    expect(parseDuration('x', 'ttl', '30d', undefined, { max: Number.MAX_SAFE_INTEGER })).toBe(
      30 * 86_400_000,
    );
    expect(() => parseDuration('x', 'ttl', '30d')).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }),
    );
    for (const bad of ['soon', '', -1, 0, Number.NaN, 2 ** 31, '30 secs ago', {}]) {
      expect(() => parseDuration('x', 'ttl', bad)).toThrow(
        expect.objectContaining({
          code: 'INVALID_OPTIONS',
          message: expect.stringContaining('[x] Invalid options: ttl'),
        }),
      );
    }
  });

  it('parses positive integers within a bound', () => {
    expect(parsePositiveInteger('x', 'batchSize', undefined, 500)).toBe(500);
    expect(parsePositiveInteger('x', 'batchSize', 7, 500, 10)).toBe(7);
    for (const bad of [0, -1, 1.5, 11, '5', Number.NaN]) {
      expect(() => parsePositiveInteger('x', 'batchSize', bad, 500, 10)).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTIONS' }),
      );
    }
  });

  it('takes exactly one of client and url, falls back to the environment, and never shows the url', () => {
    const spec = { schemes: ['redis', 'rediss'], envVar: 'CAGEY_TEST_URL', clientNoun: 'an ioredis client' };
    expect(clientOrUrl('x', { client: 'c' }, spec)).toEqual({ kind: 'client', client: 'c' });
    expect(clientOrUrl('x', { url: 'redis://h:1' }, spec)).toEqual({ kind: 'url', url: 'redis://h:1' });
    expect(() => clientOrUrl('x', { client: 'c', url: 'redis://h' }, spec)).toThrow(/not both/);
    delete process.env.CAGEY_TEST_URL;
    expect(() => clientOrUrl('x', {}, spec)).toThrow(/set the CAGEY_TEST_URL environment variable/);
    process.env.CAGEY_TEST_URL = 'rediss://env:1';
    try {
      expect(clientOrUrl('x', {}, spec)).toEqual({ kind: 'url', url: 'rediss://env:1' });
    } finally {
      delete process.env.CAGEY_TEST_URL;
    }
    let message = '';
    try {
      clientOrUrl('x', { url: 'postgres://u:hunter22@h/db' }, spec);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('must start with redis://, rediss://');
    expect(message).not.toContain('hunter22');
  });
});

describe('checkOptionKeys', () => {
  it('refuses unknown keys, naming the nearest known one or the new name of a renamed one', () => {
    const known = ['url', 'batchSize', 'clientOptions'];
    expect(() => checkOptionKeys('pg', { url: 'x', batchSize: 1 }, known)).not.toThrow();
    expect(() => checkOptionKeys('pg', { batchsize: 1 }, known)).toThrow(
      '[pg] Invalid options: unknown option "batchsize". Did you mean batchSize?',
    );
    expect(() => checkOptionKeys('pg', { pool: {} }, known, { pool: 'clientOptions' })).toThrow(
      expect.objectContaining({
        code: 'INVALID_OPTIONS',
        message: '[pg] Invalid options: "pool" was renamed to clientOptions.',
      }),
    );
    expect(() => checkOptionKeys('pg', { zzz: 1 }, known)).toThrow(
      /Known options: url, batchSize, clientOptions/,
    );
  });
});

describe('nearestKey', () => {
  it('names the known key a typo most likely meant, ignoring case, and none for a word too far from all', () => {
    const known = ['from', 'to', 'batch-size', 'dry-run'];
    expect(nearestKey('batchsize', known)).toBe('batch-size');
    expect(nearestKey('DRY-RUM', known)).toBe('dry-run');
    expect(nearestKey('form', known)).toBe('from');
    expect(nearestKey('verbose', known)).toBeUndefined();
    expect(nearestKey('x'.repeat(100), known)).toBeUndefined();
  });
});

describe('chunkByCountAndSize', () => {
  it('splits by count and by size, in order, and gives an oversized item a chunk of its own', () => {
    const sizes = [3, 3, 3, 10, 1, 1, 1, 1];
    const chunks = chunkByCountAndSize(sizes, (n) => n, { maxCount: 3, maxSize: 7 });
    expect(chunks).toEqual([[3, 3], [3], [10], [1, 1, 1], [1]]);
    expect(chunkByCountAndSize([], (n: number) => n, { maxCount: 3, maxSize: 7 })).toEqual([]);
  });
});
