import { describe, expect, it } from 'vitest';
import { AsyncEventEmitter } from '../src/events.js';

type Events = { ping: [value: number] };

describe('AsyncEventEmitter', () => {
  it('resolves only after every async listener finished', async () => {
    const emitter = new AsyncEventEmitter<Events>();
    const seen: number[] = [];
    emitter.on('ping', async (value) => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      seen.push(value);
    });
    emitter.on('ping', (value) => {
      seen.push(value * 10);
    });
    await emitter.emitAsync('ping', 2);
    expect(seen.sort()).toEqual([2, 20]);
  });

  it('calls each listener with the context it was added with, the emitter by default', async () => {
    const emitter = new AsyncEventEmitter<{ ping: [] }>();
    const context = { name: 'ctx' };
    const seen: unknown[] = [];
    emitter.on(
      'ping',
      function (this: unknown) {
        seen.push(this);
      },
      context,
    );
    emitter.once(
      'ping',
      function (this: unknown) {
        seen.push(this);
      },
      context,
    );
    emitter.on('ping', function (this: unknown) {
      seen.push(this);
    });
    await emitter.emitAsync('ping');
    expect(seen).toEqual([context, context, emitter]);
    expect(seen[2]).toBe(emitter);
  });

  it('returns undefined when nobody listens', () => {
    expect(new AsyncEventEmitter<Events>().emitAsync('ping', 1)).toBeUndefined();
  });

  it('rejects with a listener error, sync or async, after all listeners settled', async () => {
    const emitter = new AsyncEventEmitter<Events>();
    let slowFinished = false;
    emitter.on('ping', async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      slowFinished = true;
    });
    emitter.on('ping', () => {
      throw new Error('sync boom');
    });
    await expect(emitter.emitAsync('ping', 1)).rejects.toThrow('sync boom');
    expect(slowFinished).toBe(true);
  });

  it('runs a once listener once and lets it be removed by its original function', async () => {
    const emitter = new AsyncEventEmitter<Events>();
    let calls = 0;
    const listener = () => {
      calls++;
    };
    emitter.once('ping', listener);
    await emitter.emitAsync('ping', 1);
    await emitter.emitAsync('ping', 1);
    expect(calls).toBe(1);

    emitter.once('ping', listener);
    emitter.off('ping', listener);
    await emitter.emitAsync('ping', 1);
    expect(calls).toBe(1);
    expect(emitter.listenerCount('ping')).toBe(0);
  });

  it('still delivers plain emit() to once listeners', () => {
    const emitter = new AsyncEventEmitter<Events>();
    const values: number[] = [];
    emitter.once('ping', (value) => values.push(value));
    emitter.emit('ping', 3);
    emitter.emit('ping', 4);
    expect(values).toEqual([3]);
  });
});
