import { PostgresAdapter } from '@cagey-sessions/adapter-postgres';
import { RedisAdapter } from '@cagey-sessions/adapter-redis';
import { create, MigratingAdapter } from '@cagey-sessions/core';
import { describe, expect, it } from 'vitest';
import { awkwardUser, postgresToRedis, randomName } from './helpers.js';
import { runCli, startCli, summaryOf } from './process.js';
import { seedPostgres, servers } from './stores.js';

const { postgres, redis } = servers();
const PLAYERS = 5_000;

describe.skipIf(!postgres || !redis)(
  'game servers writing through MigratingAdapter during a backfill',
  () => {
    it('loses no acknowledged write and rolls no player back', async () => {
      const { table } = await seedPostgres(postgres!, PLAYERS);
      const prefix = `${randomName('live')}:`;
      const from = new PostgresAdapter({ url: postgres!, table });
      const to = new RedisAdapter({ url: redis!, prefix });
      const ids = Array.from({ length: PLAYERS }, (_, i) => awkwardUser(i).userId);
      /** The last acknowledged state of each player a game server wrote. */
      const acknowledged = new Map<string, { gold: number }>();
      let deleted = 0;
      let stop = false;

      // Two game servers, each a SessionManager over its own MigratingAdapter, playing players one after another.
      const gameServer = async (node: number) => {
        const adapter = new MigratingAdapter({ from, to });
        const manager = create<{ gold: number }>({ adapter });
        let n = 0;
        while (!stop) {
          const userId = ids[(node * 2503 + n++ * 17) % PLAYERS]!;
          if (node === 1 && n % 25 === 0 && !acknowledged.has(userId)) {
            // A player deleting their account during the migration: must not come back.
            if (await adapter.delete(userId)) {
              deleted++;
              acknowledged.set(userId, { gold: -1 });
            }
            continue;
          }
          if (acknowledged.get(userId)?.gold === -1) continue;
          const session = await manager.create();
          await session.start();
          const player = await session.identify(userId, { defaults: { gold: 0 } });
          player.gold = (typeof player.gold === 'number' ? player.gold : 0) + 1;
          try {
            await session.persistNow();
            acknowledged.set(userId, { gold: player.gold });
          } catch {
            // A conflict with the other server: not acknowledged.
          }
          await session.destroy(false);
        }
        await manager.destroy();
      };
      const servers = [gameServer(0), gameServer(1)];
      const backfill = startCli([
        'migrate',
        ...postgresToRedis(postgres!, table, redis!, prefix),
        '--live',
        '--batch-size',
        '100',
        '--concurrency',
        '2',
        '--json',
      ]);
      const run = await backfill.done;
      stop = true;
      await Promise.all(servers);
      expect(run.code, run.stderr).toBe(0);
      expect(summaryOf(run).counts.users).toBeGreaterThan(PLAYERS - deleted - 1);

      const counts = summaryOf(run).counts;
      console.log(
        `live backfill: ${acknowledged.size} players acknowledged by the game servers, ${deleted} deleted, ` +
          `backfill copied ${counts.copied}, newer in target ${counts.newerInTarget}`,
      );
      expect(acknowledged.size).toBeGreaterThan(100);
      expect(deleted).toBeGreaterThan(0);
      for (const [userId, last] of acknowledged) {
        const stored = await to.load(userId);
        if (last.gold === -1) expect(stored, userId).toBeUndefined();
        else expect(stored?.userData, userId).toMatchObject({ gold: last.gold });
      }
      // Every player nobody played is in the target as it was in the source.
      const verified = await runCli([
        'verify',
        ...postgresToRedis(postgres!, table, redis!, prefix),
        '--live',
        '--json',
      ]);
      expect(summaryOf(verified), verified.stdout).toMatchObject({ problemCount: 0 });
      await Promise.all([from.close(), to.close()]);
    }, 300_000);
  },
);
