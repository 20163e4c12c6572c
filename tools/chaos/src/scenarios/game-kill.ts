/**
 * `game-kill`: the game server is killed with SIGKILL in the middle of a storm of purchases (each one a change
 * then `persistNow()`, acknowledged to the player only once it resolved). Every acknowledged change must be in
 * the store: 0 lost. Changes never acknowledged may be lost (the process died); stale is not applicable.
 */
import { describeExit, sleep } from '../lib/game.js';
import {
  examples,
  expect,
  judge,
  Ledger,
  loginAll,
  proxyFor,
  purchase,
  readStored,
  recordStall,
  round,
  type Scenario,
  type ScenarioContext,
  type ScenarioResult,
  startGame,
  storeTuning,
  userIds,
} from '../lib/scenario.js';

const USERS = 300;
const WORKERS = 24;

export const gameKill: Scenario = {
  name: 'game-kill',
  summary:
    'kill -9 of the game server during a purchase storm: 0 acknowledged (persistNow resolved) changes lost',
  stores: ['postgres', 'redis', 'mongo'],
  limitMs: 45_000,
  run,
};

async function run(context: ScenarioContext, result: ScenarioResult): Promise<void> {
  const proxy = await proxyFor(context);
  const game = await startGame(context, {
    node: 'g',
    url: proxy.urlFor(context.url),
    persistence: {
      events: ['disconnect', 'shutdown'],
      interval: 1_000,
      callTimeout: 2_000,
      shutdownTimeout: 5_000,
      ...storeTuning(context.store.kind),
    },
  });
  const ledger = new Ledger();
  const users = userIds(USERS);
  await loginAll(game, users, ledger);
  await game.request('resetStall');

  let killed = false;
  let acked = 0;
  let refused = 0;
  let cutShort = 0;
  const worker = async () => {
    for (let i = 0; i < 5_000 && !killed; i++) {
      const userId = users[Math.floor(Math.random() * USERS)]!;
      if (Math.random() < 0.2) {
        const reply = await game
          .request<{ counters: Record<string, number> }>('mutate', { users: [userId] }, 10_000)
          .catch(() => undefined);
        if (reply) ledger.holdAll(reply.counters);
        continue;
      }
      const outcome = await purchase(game, userId, ledger, 10_000);
      if (outcome.ok) acked++;
      else if (killed) cutShort++;
      else refused++;
    }
  };
  const started = performance.now();
  const workers = Array.from({ length: WORKERS }, worker);
  const killAfter = 1_500 + Math.random() * 1_500;
  await sleep(killAfter / 2);
  const stats = await game.stats().catch(() => undefined);
  await sleep(killAfter / 2);
  killed = true;
  game.kill9();
  const exit = await game.waitExit(10_000);
  await Promise.race([Promise.all(workers), sleep(15_000)]);
  result.exits = describeExit(exit);
  recordStall(result, stats);

  expect(result, exit.signal === 'SIGKILL', `exit ${describeExit(exit)}, expected SIGKILL`);
  const stored = await readStored(context, result);
  if (stored === undefined) return;
  const verdict = judge(ledger, stored, { expectNewest: false });
  result.lost = verdict.lost.length;
  result.stale = null;
  result.notes.push(
    `SIGKILL at ${round(performance.now() - started)} ms; ${acked} acked purchases, ${cutShort} cut short, ${refused} refused`,
  );
  const describe = (userId: string) =>
    `${userId} stored ${stored.get(userId)?.counter ?? 'nothing'}, acked ${ledger.acked.get(userId)}`;
  expect(result, verdict.lost.length === 0, `acknowledged data lost: ${examples(verdict.lost, describe)}`);
  expect(
    result,
    acked >= 100,
    `only ${acked} purchases acknowledged before the kill: too few to mean anything`,
  );
  expect(result, refused === 0, `${refused} purchases failed before the kill with the store up`);
}
