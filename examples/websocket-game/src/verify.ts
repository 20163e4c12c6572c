/** Compares what the store holds with what it must hold. */
import { isDeepStrictEqual } from 'node:util';
import type { OwnedItem, Player } from './game.js';

export interface Difference {
  userId: string;
  problem: 'missing from the store' | 'differs';
  expected: Player;
  stored: unknown;
}

/**
 * Reads every player in `expected` through `read` (a few at a time) and returns those whose stored data is
 * not deeply equal to the expected data. Key order does not matter (PostgreSQL's jsonb reorders keys).
 */
export async function compareWithStore(
  expected: ReadonlyMap<string, Player>,
  read: (userId: string) => Promise<unknown>,
  concurrency = 16,
): Promise<Difference[]> {
  const differences: Difference[] = [];
  const entries = [...expected];
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const [userId, player] = entries[next++]!;
      const stored = await read(userId);
      if (stored === undefined)
        differences.push({ userId, problem: 'missing from the store', expected: player, stored });
      else if (!isDeepStrictEqual(stored, player))
        differences.push({ userId, problem: 'differs', expected: player, stored });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker));
  return differences.sort((a, b) => (a.userId < b.userId ? -1 : 1));
}

/** Purchases the server acknowledged that are not in the stored inventory. */
export function missingPurchases(stored: unknown, acknowledged: readonly OwnedItem[]): OwnedItem[] {
  const inventory = (stored as Partial<Player> | undefined)?.inventory;
  if (!Array.isArray(inventory)) return [...acknowledged];
  return acknowledged.filter(
    (purchase) => !inventory.some((owned) => owned.id === purchase.id && owned.item === purchase.item),
  );
}

/** One line per difference, for the demo's output. */
export function describeDifference(difference: Difference): string {
  const stored = difference.stored === undefined ? 'nothing' : JSON.stringify(difference.stored);
  return `${difference.userId}: ${difference.problem}\n    expected ${JSON.stringify(difference.expected)}\n    stored   ${stored}`;
}
