/**
 * A game that keeps its players in a PGlite directory (argv[2]), as the adapter-postgres README shows: the store
 * tools/packed-install then hands to the installed `cagey-sessions` command (count, export, import, verify).
 * Prints the players it stored as JSON Lines, in the command's export format, for comparison.
 */
import { PostgresAdapter } from '@cagey-sessions/adapter-postgres';
import { create } from '@cagey-sessions/core';
import { PGlite } from '@electric-sql/pglite';

const directory = process.argv[2];
if (directory === undefined) throw new Error('usage: node pglite-game.mjs <directory>');

interface Player {
  gold: number;
  name: string;
}

const db = await PGlite.create(directory);
const adapter = new PostgresAdapter({ client: db });
await adapter.setup();
const manager = create<Player>({ adapter }, { userData: { persistence: { events: ['shutdown'] } } });

// Awkward ids and data on purpose: a number, a space, a quote, non-ASCII; one player written twice (version 2).
const players: [string | number, Player][] = [
  [42, { gold: 10, name: 'Ada' }],
  ['player two', { gold: 0, name: 'Zoë "the quick"' }],
  ['ユーザー', { gold: 7, name: '名前' }],
];
for (const [userId, defaults] of players) {
  const session = await manager.create();
  await session.identify(userId, { defaults });
  await session.persistNow();
}
const first = manager.findByUserId(42);
first!.userData!.gold += 5;
await manager.destroy(true);

const ids = players.map(([userId]) => String(userId)).sort();
for (const userId of ids) {
  const stored = await adapter.load(userId);
  console.log(JSON.stringify({ userId, version: stored?.version, userData: stored?.userData }));
}
await adapter.close();
await db.close();
