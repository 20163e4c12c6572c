/** Compares what the store holds with what it must hold. */
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { OwnedItem, Player } from './game.js';

export interface Difference {
  userId: string;
  problem: 'missing from the store' | 'differs';
  expected: Player;
  stored: unknown;
}

/** Reads each of `userIds` once through `read`, a few at a time. */
export async function readAll(
  userIds: Iterable<string>,
  read: (userId: string) => Promise<unknown>,
  concurrency = 16,
): Promise<Map<string, unknown>> {
  const ids = [...new Set(userIds)];
  const stored = new Map<string, unknown>();
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const userId = ids[next++]!;
      stored.set(userId, await read(userId));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker));
  return stored;
}

/**
 * The players in `expected` whose stored data is missing or not deeply equal to the expected data. Key order
 * does not matter (PostgreSQL's jsonb reorders keys).
 */
export function compareWith(
  expected: ReadonlyMap<string, Player>,
  stored: ReadonlyMap<string, unknown>,
): Difference[] {
  const differences: Difference[] = [];
  for (const [userId, player] of expected) {
    const value = stored.get(userId);
    if (value === undefined)
      differences.push({ userId, problem: 'missing from the store', expected: player, stored: value });
    else if (!isDeepStrictEqual(value, player))
      differences.push({ userId, problem: 'differs', expected: player, stored: value });
  }
  return differences.sort((a, b) => (a.userId < b.userId ? -1 : 1));
}

/** Reads every player in `expected` through `read` and compares (see `compareWith`). */
export async function compareWithStore(
  expected: ReadonlyMap<string, Player>,
  read: (userId: string) => Promise<unknown>,
  concurrency = 16,
): Promise<Difference[]> {
  return compareWith(expected, await readAll(expected.keys(), read, concurrency));
}

/** Purchase keys that appear more than once in a stored inventory: a purchase made twice. */
export function duplicatePurchases(stored: unknown): string[] {
  const inventory = (stored as Partial<Player> | undefined)?.inventory;
  if (!Array.isArray(inventory)) return [];
  const seen = new Set<string>();
  const twice: string[] = [];
  for (const owned of inventory) {
    if (owned.key === undefined) continue;
    if (seen.has(owned.key)) twice.push(owned.key);
    seen.add(owned.key);
  }
  return twice;
}

/** A digest of a JSON value that ignores key order: equal data, equal digest, whatever the store did to it. */
export function stateDigest(value: unknown): string {
  return createHash('sha1').update(canonicalJson(value)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Purchases the server acknowledged that are not in the stored inventory. */
export function missingPurchases(stored: unknown, acknowledged: readonly OwnedItem[]): OwnedItem[] {
  const inventory = (stored as Partial<Player> | undefined)?.inventory;
  if (!Array.isArray(inventory)) return [...acknowledged];
  return acknowledged.filter(
    (purchase) =>
      !inventory.some(
        (owned) => owned.id === purchase.id && owned.item === purchase.item && owned.key === purchase.key,
      ),
  );
}

/** One line per difference, for the demo's output. */
export function describeDifference(difference: Difference): string {
  const stored = difference.stored === undefined ? 'nothing' : JSON.stringify(difference.stored);
  return `${difference.userId}: ${difference.problem}\n    expected ${JSON.stringify(difference.expected)}\n    stored   ${stored}`;
}
