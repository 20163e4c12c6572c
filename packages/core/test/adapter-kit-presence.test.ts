/** The adapter kit's checks for a Presence: node ids, lease TTLs, messages, received payloads, warnings. */
import { MemoryPresence } from '@cagey-sessions/testing';
import { describe, expect, it } from 'vitest';
import {
  checkLeaseTtl,
  checkNodeId,
  checkPresenceMessage,
  deliverMessage,
  MAX_NODE_ID_LENGTH,
  parseIncoming,
  WarnOnce,
} from '../src/adapter-kit/index.js';
import { resolvePresenceOptions } from '../src/options.js';

const invalid = { name: 'ValidationError', code: 'INVALID_OPTIONS' };

describe('checkNodeId', () => {
  it.each(['a', 'game-1', 'eu.west:node_7', 'x'.repeat(MAX_NODE_ID_LENGTH)])('accepts %j', (nodeId) => {
    expect(checkNodeId('test', nodeId)).toBe(nodeId);
  });

  it.each([
    '',
    'x'.repeat(MAX_NODE_ID_LENGTH + 1),
    'bad\nid',
    'with space',
    'héllo',
    'slash/id',
    5,
    undefined,
  ])('refuses %j with INVALID_OPTIONS naming the adapter', (nodeId) => {
    expect(() => checkNodeId('test', nodeId)).toThrow(expect.objectContaining(invalid));
    expect(() => checkNodeId('test', nodeId)).toThrow(/^\[test\] Invalid nodeId/);
  });

  it('accepts exactly the node ids a manager accepts', () => {
    const presence = new MemoryPresence();
    for (const nodeId of ['node-1', 'with space', 'bad\nid', 'a:b.c_d-e', 'ü', 'x'.repeat(129)]) {
      let managerAccepts = true;
      try {
        resolvePresenceOptions({ presence, nodeId });
      } catch {
        managerAccepts = false;
      }
      let kitAccepts = true;
      try {
        checkNodeId('test', nodeId);
      } catch {
        kitAccepts = false;
      }
      expect(kitAccepts, nodeId).toBe(managerAccepts);
    }
  });
});

describe('checkLeaseTtl', () => {
  it.each([1, 1.5, 30_000, 2 ** 31 - 1])('accepts %d ms', (ttl) => {
    expect(checkLeaseTtl('test', ttl)).toBe(ttl);
  });

  it.each([0, 0.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, '30s', undefined])(
    'refuses %j with INVALID_OPTIONS',
    (ttl) => {
      expect(() => checkLeaseTtl('test', ttl)).toThrow(expect.objectContaining(invalid));
    },
  );
});

describe('checkPresenceMessage', () => {
  it('returns the message itself, fields core may add included', () => {
    const message = { type: 'release', userId: 'alice', from: 'node-1', extra: { n: 1 } };
    expect(checkPresenceMessage('test', message)).toBe(message);
    expect(checkPresenceMessage('test', { type: 'released', userId: '5', from: 'b' })).toEqual({
      type: 'released',
      userId: '5',
      from: 'b',
    });
  });

  it.each([
    ['an unknown type', { type: 'steal', userId: 'u', from: 'a' }, 'INVALID_OPTIONS'],
    ['no type', { userId: 'u', from: 'a' }, 'INVALID_OPTIONS'],
    ['not an object', 'release', 'INVALID_OPTIONS'],
    ['null', null, 'INVALID_OPTIONS'],
    ['a numeric userId', { type: 'release', userId: 5, from: 'a' }, 'INVALID_USER_ID'],
    ['an empty userId', { type: 'release', userId: '', from: 'a' }, 'INVALID_USER_ID'],
    ['a userId over 512 bytes', { type: 'release', userId: 'x'.repeat(513), from: 'a' }, 'INVALID_USER_ID'],
    ['a bad from', { type: 'release', userId: 'u', from: 'bad\nid' }, 'INVALID_OPTIONS'],
    ['no from', { type: 'release', userId: 'u' }, 'INVALID_OPTIONS'],
  ])('refuses %s with %s', (_name, message, code) => {
    expect(() => checkPresenceMessage('test', message)).toThrow(expect.objectContaining({ code }));
  });
});

describe('parseIncoming', () => {
  it('parses a payload into the message it holds', () => {
    const message = { type: 'release', userId: 'u1', from: 'a', extra: true };
    expect(parseIncoming(JSON.stringify(message))).toEqual(message);
  });

  it('names the problem of a payload that is not JSON, or not a presence message', () => {
    expect(parseIncoming('{not json')).toEqual({ problem: 'json' });
    expect(parseIncoming('')).toEqual({ problem: 'json' });
    expect(parseIncoming('{"type":"steal","userId":"u","from":"a"}')).toEqual({ problem: 'shape' });
    expect(parseIncoming('null')).toEqual({ problem: 'shape' });
  });

  it('with read, returns what read takes from the JSON, and a shape problem when read throws', () => {
    const read = (value: unknown) => {
      const { to } = value as { to?: unknown };
      if (typeof to !== 'string') throw new Error('no recipient');
      return { to };
    };
    expect(parseIncoming('{"to":"b"}', read)).toEqual({ to: 'b' });
    expect(parseIncoming('{"to":5}', read)).toEqual({ problem: 'shape' });
    expect(parseIncoming('to', read)).toEqual({ problem: 'json' });
  });
});

describe('deliverMessage', () => {
  const message = { type: 'release', userId: 'u1', from: 'a' } as const;

  it('hands the message to the listener; nothing is reported when it returns', () => {
    const received: unknown[] = [];
    const failures: unknown[] = [];
    deliverMessage(
      (m) => received.push(m),
      message,
      (error) => failures.push(error),
    );
    expect(received).toEqual([message]);
    expect(failures).toEqual([]);
  });

  it('reports a listener that throws, or whose promise rejects, instead of letting it escape', async () => {
    const failures: unknown[] = [];
    const thrown = new Error('sync');
    const rejected = new Error('async');
    deliverMessage(
      () => {
        throw thrown;
      },
      message,
      (error) => failures.push(error),
    );
    deliverMessage(
      (async () => {
        throw rejected;
      }) as unknown as () => void,
      message,
      (error) => failures.push(error),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(failures).toEqual([thrown, rejected]);
  });
});

describe('WarnOnce', () => {
  it('warns once per kind, with the error when given', () => {
    const warnings: unknown[][] = [];
    const once = new WarnOnce({ warn: (...args: unknown[]) => warnings.push(args) });
    const error = new Error('boom');
    once.warn('json', 'first json');
    once.warn('json', 'second json');
    once.warn('listener', 'listener threw', error);
    once.warn('listener', 'listener threw again', error);
    expect(warnings).toEqual([['first json'], ['listener threw', error]]);
  });

  it('without a logger, or with one that throws, warning is silent', () => {
    expect(() => new WarnOnce(undefined).warn('json', 'nobody listens')).not.toThrow();
    const throwing = new WarnOnce({
      warn: () => {
        throw new Error('logger down');
      },
    });
    expect(() => throwing.warn('json', 'lost')).not.toThrow();
  });
});
