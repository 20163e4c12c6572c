import { RedisAdapter } from '@cagey-sessions/adapter-redis';
import { describe, expect, it } from 'vitest';
import { postgresToRedis, randomName } from './helpers.js';
import { runCli, startCli, summaryOf } from './process.js';
import { countOf, seedPostgres, servers } from './stores.js';

const { postgres, redis } = servers();
const PLAYERS = 10_000;

/** Waits until the target holds at least `atLeast` users (the copy is under way), polling. */
async function waitForCopies(target: RedisAdapter, atLeast: number): Promise<number> {
  for (;;) {
    const count = await countOf(target);
    if (count >= atLeast) return count;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(!postgres || !redis)('an interrupted migration, run again', () => {
  for (const signal of ['SIGINT', 'SIGKILL'] as const) {
    it(`after ${signal} mid-run goes on where it stopped: 0 lost, 0 written twice`, async () => {
      const { table } = await seedPostgres(postgres!, PLAYERS);
      const prefix = `${randomName('int')}:`;
      const args = ['migrate', ...postgresToRedis(postgres!, table, redis!, prefix)];
      const target = new RedisAdapter({ url: redis!, prefix });
      try {
        // Small batches, one at a time: the run takes long enough to be stopped in the middle.
        const first = startCli([...args, '--batch-size', '50', '--concurrency', '1', '--json']);
        await waitForCopies(target, 500);
        first.child.kill(signal);
        const stopped = await first.done;
        const copiedBefore = await countOf(target);
        expect(copiedBefore).toBeGreaterThan(0);
        expect(copiedBefore).toBeLessThan(PLAYERS);
        if (signal === 'SIGINT') {
          expect(stopped.code).toBe(130);
          const summary = summaryOf(stopped);
          expect(summary.outcome).toBe('interrupted');
          // The in-flight batch was finished: what the summary counts is what the target holds.
          expect(summary.counts.copied).toBe(copiedBefore);
        } else {
          expect(stopped.signal).toBe('SIGKILL');
        }

        const second = await runCli([...args, '--json']);
        expect(second.code, second.stderr).toBe(0);
        const summary = summaryOf(second);
        expect(summary.counts).toMatchObject({ users: PLAYERS, conflicts: 0, errors: 0 });
        // Nothing written twice: the second run copied exactly what the first had not.
        expect(summary.counts.alreadyThere).toBe(copiedBefore);
        expect(summary.counts.copied).toBe(PLAYERS - copiedBefore);
        expect(await countOf(target)).toBe(PLAYERS);
        console.log(`${signal}: ${copiedBefore} copied before, ${summary.counts.copied} by the second run`);
        const verified = await runCli(['verify', ...postgresToRedis(postgres!, table, redis!, prefix)]);
        expect(verified.code, verified.stdout).toBe(0);
      } finally {
        await target.close();
      }
    }, 300_000);
  }
});
