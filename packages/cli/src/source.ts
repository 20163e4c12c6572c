import { setImmediate as eventLoopTurn } from 'node:timers/promises';
import type { PersistenceAdapter } from '@cagey-sessions/core';
import { type RetryOptions, withRetry } from './retry.js';

/** A user as the commands move it: stored (string) id, data, and the version it has in its store. */
export interface SourceUser {
  userId: string;
  userData: object;
  version: number;
}

/**
 * Every user of a store, a page at a time (`scan`), each page fetched with retries. Only one page is held at a
 * time, so memory does not grow with the number of users. Stops early when `signal` is aborted. Gives the event
 * loop a turn after each page (timers, signals), whatever the store.
 */
export async function* scanPages(
  adapter: PersistenceAdapter,
  options: { pageSize: number; signal: AbortSignal; retry: RetryOptions },
): AsyncGenerator<SourceUser[]> {
  let cursor: string | undefined;
  do {
    if (options.signal.aborted) return;
    const scan = adapter.scan!.bind(adapter);
    const page = await withRetry(() => scan({ cursor, limit: options.pageSize }), options.retry);
    cursor = page.cursor;
    if (page.users.length > 0) yield page.users;
    // A store inside the process (PGlite) answers without ever giving the event loop a turn: without one here a
    // whole run would go by with no progress redrawn and no Ctrl-C handled.
    await eventLoopTurn();
  } while (cursor !== undefined);
}

/** Splits `items` into arrays of at most `size`. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/**
 * Runs `task` over every item of `batches` with at most `concurrency` tasks in flight. The source is pulled
 * only when a slot is free (backpressure): memory holds `concurrency` batches and one page. After `signal`
 * aborts, no new batch starts; the ones in flight finish. The first task error stops the run and is thrown
 * after the in-flight tasks settled.
 */
export async function runBounded<T>(
  batches: AsyncIterable<T>,
  concurrency: number,
  signal: AbortSignal,
  task: (batch: T) => Promise<void>,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  try {
    for await (const batch of batches) {
      if (signal.aborted || failure) break;
      const running: Promise<void> = task(batch)
        .catch((error: unknown) => {
          failure ??= { error };
        })
        .finally(() => inFlight.delete(running));
      inFlight.add(running);
      if (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (signal.aborted || failure) break;
    }
  } finally {
    // Also when reading the source failed: the batches in flight finish and are counted before the error.
    await Promise.all(inFlight);
  }
  if (failure) throw failure.error;
}

/** Re-chunks pages into batches of `size`. */
export async function* batchesOf<T>(pages: AsyncIterable<T[]>, size: number): AsyncGenerator<T[]> {
  for await (const page of pages) yield* chunk(page, size);
}
