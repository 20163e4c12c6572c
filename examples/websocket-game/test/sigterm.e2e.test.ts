import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type BotFleet, startBots } from '../src/bots.js';
import { applyReply, type Player, type ServerMessage } from '../src/game.js';
import { launchServer, type ServerProcess } from '../src/launch.js';
import { openStore, type StoreKind } from '../src/stores.js';
import { compareWithStore, missingPurchases } from '../src/verify.js';
import { randomNamespace, storeEnv, temporaryDir } from './helpers.js';

const PLAYERS = 40;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A player that logs in, mines once (acknowledged) and then only holds its connection open. */
async function connectIdler(url: string, userId: string) {
  const ws = new WebSocket(url);
  const replies: Record<string, unknown>[] = [];
  let wake: (() => void) | undefined;
  ws.on('message', (data) => {
    replies.push(JSON.parse(String(data)) as Record<string, unknown>);
    wake?.();
  });
  await once(ws, 'open');
  const request = async (message: Record<string, unknown>) => {
    const before = replies.length;
    ws.send(JSON.stringify(message));
    while (replies.length === before) await new Promise<void>((resolve) => (wake = resolve));
    return replies[before]!;
  };
  const welcome = (await request({ t: 'login', seq: 1, userId })) as ServerMessage;
  if (welcome.t !== 'welcome') throw new Error(`idler login refused: ${JSON.stringify(welcome)}`);
  const copy = { v: welcome.v, state: welcome.state };
  const mined = (await request({ t: 'mine', seq: 2 })) as ServerMessage;
  if (mined.t !== 'ok' || !applyReply(copy, mined))
    throw new Error(`idler could not mine: ${JSON.stringify(mined)}`);
  return { userId, state: copy.state, close: () => ws.terminate() };
}

describe('SIGTERM in the middle of play', () => {
  it.for<StoreKind>(['pglite', 'postgres', 'redis', 'mongo'])(
    'on %s: every acknowledged purchase survives and the store holds the final state',
    async (kind, context) => {
      const env = storeEnv(kind, `SIGTERM on ${kind}`);
      if (env === null) return context.skip();
      const tmp = temporaryDir(`sigterm-${kind}`);
      cleanups.push(tmp.remove);
      const namespace = randomNamespace();
      const server: ServerProcess = await launchServer({
        store: kind,
        dataDir: tmp.dir,
        namespace,
        graceMs: 500,
        // Far longer than the run: what the interval would have written is left to the shutdown flush.
        intervalMs: 600_000,
        logFile: join(tmp.dir, 'server.log'),
        env,
      });
      cleanups.push(async () => {
        if (server.child.exitCode === null && server.child.signalCode === null) await server.stop('SIGKILL');
      });

      // SIGTERM arrives once every player has had a purchase acknowledged, while they all keep playing.
      const buyers = new Set<string>();
      let everyoneBought!: () => void;
      const allBought = new Promise<void>((resolve) => {
        everyoneBought = resolve;
      });
      const fleet: BotFleet = startBots({
        url: server.url,
        players: PLAYERS,
        durationMs: 60_000,
        graceMs: 500,
        seed: 11,
        thinkMs: [5, 40],
        disconnectChance: 1 / 40,
        onPurchase: (userId) => {
          buyers.add(userId);
          if (buyers.size === PLAYERS) everyoneBought();
        },
      });
      cleanups.push(() => fleet.close());
      await Promise.race([
        allBought,
        fleet.done.then(() => {
          throw new Error(`the bots stopped before all bought something (${buyers.size} did)`);
        }),
      ]);

      // Shutdown must have work to do, for certain: one more player mines (a change written only by the
      // interval, which never runs here, or by shutdown) and stays connected, idle, until the signal.
      const idler = await connectIdler(server.url, `idler-${namespace}`);
      cleanups.push(() => idler.close());

      const exit = await server.stop('SIGTERM');
      await fleet.done;
      const log = join(tmp.dir, 'server.log');
      expect(exit.code, `server log: ${log}`).toBe(0);
      expect(exit.report?.unsaved).toEqual([]);
      // Shutdown had work to do: the interval never ran, and the idler's mining was unsaved at the signal.
      expect(exit.report!.dirtyAtShutdown).toBeGreaterThan(0);
      expect(exit.report!.finalState[idler.userId]).toEqual(idler.state);

      const store = await openStore(kind, { dataDir: tmp.dir, namespace, env });
      cleanups.push(() => store.close());
      const read = async (userId: string) =>
        (await store.adapter.load(userId))?.userData as Player | undefined;
      const acknowledged = fleet.bots.flatMap((bot) =>
        bot.acknowledged.map((purchase) => ({ bot, purchase })),
      );
      expect(acknowledged.length).toBeGreaterThanOrEqual(PLAYERS);
      const lost: string[] = [];
      for (const bot of fleet.bots) {
        for (const purchase of missingPurchases(await read(bot.userId), bot.acknowledged)) {
          lost.push(`${bot.userId} #${purchase.id} ${purchase.item}`);
        }
      }
      expect(lost).toEqual([]);

      // Players with a session at the signal must find what it held; the others (their session had ended, or
      // they were between connections) what the server last acknowledged to them.
      const finalState = new Map(Object.entries(exit.report!.finalState));
      expect(finalState.size).toBeGreaterThan(0);
      const expected = new Map<string, Player>(finalState);
      for (const bot of fleet.bots) {
        if (!expected.has(bot.userId) && bot.state !== undefined) expected.set(bot.userId, bot.state);
      }
      expect(expected.size).toBe(PLAYERS + 1);
      expect(await compareWithStore(expected, read)).toEqual([]);
    },
  );
});
