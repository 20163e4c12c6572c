/**
 * Sessions persisted through the in-memory adapter: login, in-place mutation, a purchase saved at once,
 * a disconnect, a returning player, and a shutdown that reports what it could not save.
 */
import { create } from '@cagey-sessions/core';
import { MemoryAdapter } from '@cagey-sessions/testing';

type Player = { gold: number; inventory: string[] };

const adapter = new MemoryAdapter();
const manager = create<Player>(
  { adapter },
  { userData: { persistence: { interval: '30s', events: ['disconnect', 'shutdown'] } } },
);
manager.on('persisted', (session, version) => console.log(`saved ${session.userId} at version ${version}`));

// A player connects and logs in: a new player starts from a copy of the defaults.
const session = await manager.create('reconnect-token-1');
await session.start();
const player = await session.identify('user-42', { defaults: { gold: 100, inventory: [] } });

// Play: mutate in place. A purchase is a critical moment: persist it now.
player.gold -= 30;
player.inventory.push('sword');
await session.persistNow();

// Disconnect: persisted because the events include 'disconnect'.
player.gold += 5;
await session.destroy();

// The player returns on another connection: their data comes back from the store.
const again = await manager.create('reconnect-token-2');
const loaded = await again.identify('user-42');
console.log('loaded after reconnect:', loaded, 'version', again.version);
if (loaded.gold !== 75 || loaded.inventory[0] !== 'sword')
  throw new Error('the stored player is not what was played');

// Shutdown flushes everything and rejects with the exact list of players it could not save.
await manager.destroy();
await adapter.close();
console.log('stats at shutdown:', manager.stats());
