import type { PersistenceAdapter, SaveRecord, SaveResult, StoredUser, UserId } from '@cagey-sessions/core';
import { expect as vitestExpect } from 'vitest';
import type { CheckContext } from './context.js';

export function expect<T>(actual: T, message?: string) {
  return vitestExpect(actual, message);
}

export function fail(message: string): never {
  throw new Error(message);
}

/**
 * Calls an adapter method that must reject and returns the rejection. A synchronous throw fails the check:
 * callers of a promise-returning API handle rejections, not throws.
 */
export async function rejection(call: () => unknown, what: string): Promise<unknown> {
  let promise: unknown;
  try {
    promise = call();
  } catch (error) {
    throw new Error(`${what} threw synchronously; it must return a rejected promise instead.`, {
      cause: error,
    });
  }
  if (!isThenable(promise)) fail(`${what} did not return a promise.`);
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    return error;
  }
  return fail(`${what} resolved with ${preview(value)}; expected it to reject.`);
}

/** Asserts that `error` is an Error carrying `code` (and is of class `className` when given). */
export function expectCode(error: unknown, code: string, what: string, className?: string): void {
  expect(error, `${what}: expected an Error`).toBeInstanceOf(Error);
  expect(
    (error as { code?: unknown }).code,
    `${what}: error code (message: ${(error as Error).message})`,
  ).toBe(code);
  if (className !== undefined) expect((error as Error).name, `${what}: error class`).toBe(className);
}

export function expectOk(result: SaveResult | undefined, version: number, what: string): void {
  expect(simplify(result), what).toEqual({ status: 'ok', version });
}

export function expectConflict(result: SaveResult | undefined, currentVersion: number, what: string): void {
  expect(simplify(result), what).toEqual({ status: 'conflict', currentVersion });
}

export function expectErrorResult(result: SaveResult | undefined, what: string, code?: string): Error {
  expect(result?.status, `${what}: result status (got ${preview(simplify(result))})`).toBe('error');
  const error = (result as { error?: unknown }).error;
  if (code === undefined) expect(error, `${what}: result error`).toBeInstanceOf(Error);
  else expectCode(error, code, what);
  return error as Error;
}

/** Saves one record and returns its result, checking the batch shape on the way. */
export async function saveOne(
  adapter: PersistenceAdapter,
  userId: UserId,
  userData: object,
  expectedVersion?: number,
  writeId?: string,
): Promise<SaveResult> {
  const record: SaveRecord = { userId, userData };
  if (expectedVersion !== undefined) record.expectedVersion = expectedVersion;
  if (writeId !== undefined) record.writeId = writeId;
  const results = await adapter.save([record]);
  expect(Array.isArray(results) && results.length, 'save([one record]) resolves one result').toBe(1);
  return results[0]!;
}

/** Writes a user until it holds `version`, each write storing `{ step }`; returns the final data. */
export async function writeVersions(
  adapter: PersistenceAdapter,
  userId: UserId,
  version: number,
): Promise<object> {
  let data: object = {};
  for (let step = 1; step <= version; step++) {
    data = { step, userId: String(userId) };
    const result = await saveOne(adapter, userId, data);
    expectOk(result, step, `unconditional write ${step} of ${JSON.stringify(userId)}`);
  }
  return data;
}

/**
 * Asserts what the store holds for a user: through `load` of the given adapter and, when provided, through
 * the raw reader. `expected` undefined means missing or deleted.
 */
export async function expectStored(
  t: CheckContext,
  adapter: PersistenceAdapter,
  userId: UserId,
  expected: StoredUser<object> | undefined,
  what = `stored record of ${JSON.stringify(userId)}`,
): Promise<void> {
  const loaded = await adapter.load(userId);
  expect(loaded, `${what} (through load)`).toEqual(expected);
  if (t.canInspect) {
    const inspected = await t.inspect(userId);
    expect(inspected, `${what} (through inspect, the raw reader)`).toEqual(expected);
  }
}

/** Loads many users with bounded concurrency. */
export async function loadAll(
  adapter: PersistenceAdapter,
  userIds: readonly UserId[],
  concurrency = 16,
): Promise<(StoredUser | undefined)[]> {
  const out: (StoredUser | undefined)[] = new Array(userIds.length);
  let next = 0;
  const worker = async () => {
    while (next < userIds.length) {
      const index = next++;
      out[index] = await adapter.load(userIds[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, userIds.length) }, worker));
  return out;
}

/** The JSON view of a value: what every store must give back. */
export function jsonCopy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A result reduced to what a check compares; an error result keeps only its code and message. */
/** A result in a comparable form: an error as its code and message, a conflict without its write id. */
function simplify(result: SaveResult | undefined): unknown {
  if (result?.status === 'error') {
    const error = result.error as Error & { code?: string };
    return { status: 'error', error: `${error?.code ?? ''} ${error?.message ?? String(error)}` };
  }
  if (result?.status === 'conflict') return { status: 'conflict', currentVersion: result.currentVersion };
  return result;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

export function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
