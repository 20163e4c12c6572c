/**
 * SIGTERM while the store is unreachable (every connection reset by the fault proxy; the server itself stays
 * up). Two endings:
 *
 * - `shutdown-store-down`: the store stays down. The game server must stay up until `shutdownTimeout`, exit
 *   non-zero, and log exactly the users whose newest data is not stored (no more, no fewer).
 * - `shutdown-store-back`: the store comes back 2 s into the shutdown. Everything is stored and the exit code
 *   is 0.
 */
import { describeExit, sleep } from '../lib/game.js';
import {
  expect,
  expectStoreMatches,
  inParallel,
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
import { STORE_KINDS } from '../lib/stores.js';

const USERS = 200;
const CALL_TIMEOUT_MS = 1_000;
const SHUTDOWN_TIMEOUT_MS = 5_000;
/** When the store comes back in `shutdown-store-back`, counted from SIGTERM. */
const BACK_AFTER_MS = 2_000;

function scenario(back: boolean): Scenario {
  return {
    name: back ? 'shutdown-store-back' : 'shutdown-store-down',
    summary: back
      ? 'SIGTERM with the store unreachable, store back before the deadline: all saved, exit 0'
      : 'SIGTERM with the store unreachable until the deadline: stays up until it, exits non-zero, logs exactly the unsaved users',
    stores: STORE_KINDS,
    limitMs: 60_000,
    run: (context, result) => run(context, result, back),
  };
}

export const shutdownStoreDown = scenario(false);
export const shutdownStoreBack = scenario(true);

async function run(context: ScenarioContext, result: ScenarioResult, back: boolean): Promise<void> {
  const proxy = await proxyFor(context);
  const game = await startGame(context, {
    node: 'g',
    url: proxy.urlFor(context.url),
    persistence: {
      events: ['disconnect', 'shutdown'],
      callTimeout: CALL_TIMEOUT_MS,
      shutdownTimeout: SHUTDOWN_TIMEOUT_MS,
      retry: { initialDelay: 100, maxDelay: 500 },
      ...storeTuning(context.store.kind),
    },
  });
  const ledger = new Ledger();
  const users = userIds(USERS);
  await loginAll(game, users, ledger);
  const purchases = await inParallel(users, 16, (userId) => purchase(game, userId, ledger));
  const refused = purchases.filter((outcome) => !outcome.ok);
  if (refused.length > 0) {
    throw new Error(`setup: ${refused.length} purchases failed with the store up, e.g. ${refused[0]!.error}`);
  }

  // A third of the players change after their last write: exactly these are unsaved when the store is down.
  const dirty = users.filter((_, index) => index % 3 === 0);
  const { counters } = await game.request<{ counters: Record<string, number> }>('mutate', {
    users: dirty,
    times: 2,
  });
  ledger.holdAll(counters);
  await game.request('resetStall');

  proxy.refuse();
  context.progress(`store cut off; SIGTERM with ${dirty.length} unsaved players`);
  const signalled = game.terminate();
  let healed: number | undefined;
  if (back) {
    await sleep(BACK_AFTER_MS);
    proxy.heal();
    healed = performance.now();
    context.progress('store reachable again');
  }
  const exit = await game.waitExit(SHUTDOWN_TIMEOUT_MS + 15_000);
  proxy.heal();
  const elapsed = exit.at - signalled;
  result.exits = describeExit(exit);
  result.notes.push(`exit after ${round(elapsed)} ms`);

  const read = await readStored(context, result);
  const stored = read ?? new Map();
  // What the library logged when it gave up (log.error({ userIds, ... })) and what the game logged from the
  // rejection (error.unsaved).
  const libraryLines = game.logs.filter((line) => line.level === 'error' && Array.isArray(line.userIds));
  const gameLine = game.find('error', 'game server: shutdown incomplete')[0];
  const gameError = gameLine?.err as
    | { code?: string; unsaved?: { userId: string; maybeStored?: boolean }[] }
    | undefined;
  // The game loop's longest stall from before the cut to the exit, from the game's last log line.
  const lastWords = gameLine ?? game.find('info', 'game server: every player stored')[0];
  recordStall(result, lastWords);
  const reported = new Set((gameError?.unsaved ?? []).map((u) => u.userId));
  if (read) {
    expectStoreMatches(result, ledger, stored, {
      excused: reported,
      staleMessage: "stored data older than the game's, not reported unsaved",
    });
  }

  if (!back) {
    expect(result, !exit.timedOut, `did not exit within ${SHUTDOWN_TIMEOUT_MS + 15_000} ms of SIGTERM`);
    expect(
      result,
      exit.signal === null && exit.code !== 0,
      `exit code ${describeExit(exit)}, expected non-zero`,
    );
    expect(
      result,
      elapsed >= SHUTDOWN_TIMEOUT_MS - 250,
      `exited ${round(elapsed)} ms after SIGTERM, before the ${SHUTDOWN_TIMEOUT_MS} ms shutdownTimeout (the drain did not keep the process up)`,
    );
    expect(
      result,
      elapsed <= SHUTDOWN_TIMEOUT_MS + 2 * CALL_TIMEOUT_MS + 3_000,
      `exited ${round(elapsed)} ms after SIGTERM, long after the ${SHUTDOWN_TIMEOUT_MS} ms shutdownTimeout`,
    );
    const expected = new Set(dirty);
    const mismatch = (ids: readonly unknown[]) => {
      const got = new Set(ids.map(String));
      const missing = [...expected].filter((id) => !got.has(id));
      const extra = [...got].filter((id) => !expected.has(id));
      return missing.length + extra.length === 0
        ? undefined
        : `${missing.length} unsaved users missing (${missing.slice(0, 3).join(', ')}), ${extra.length} saved users listed (${extra.slice(0, 3).join(', ')})`;
    };
    if (expect(result, libraryLines.length > 0, 'the library logged no error with userIds at shutdown')) {
      for (const line of libraryLines) {
        const wrong = mismatch(line.userIds as unknown[]);
        expect(
          result,
          wrong === undefined,
          `library log "${line.msg}" does not list exactly the unsaved: ${wrong}`,
        );
      }
    }
    expect(result, gameError !== undefined, 'manager.destroy() did not reject (no "shutdown incomplete")');
    if (gameError !== undefined) {
      expect(
        result,
        gameError.code === 'SHUTDOWN_INCOMPLETE',
        `destroy() rejected with ${gameError.code}, expected SHUTDOWN_INCOMPLETE`,
      );
      const wrong = mismatch([...reported]);
      expect(
        result,
        wrong === undefined,
        `SHUTDOWN_INCOMPLETE unsaved is not exactly the unsaved users: ${wrong}`,
      );
      const maybe = (gameError.unsaved ?? []).filter((u) => u.maybeStored === true).length;
      const flagged = (gameError.unsaved ?? []).filter((u) => typeof u.maybeStored === 'boolean').length;
      result.notes.push(`${reported.size}/${dirty.length} reported unsaved, ${maybe} maybeStored`);
      expect(
        result,
        flagged === reported.size,
        `${reported.size - flagged} unsaved entries without a maybeStored flag`,
      );
      // Reported unsaved, certainly not stored, yet the store holds the newest data: a false report.
      const falselyReported = (gameError.unsaved ?? []).filter(
        (u) =>
          read !== undefined &&
          u.maybeStored === false &&
          (stored.get(u.userId)?.counter ?? -1) >= (ledger.held.get(u.userId) ?? Number.POSITIVE_INFINITY),
      );
      expect(
        result,
        falselyReported.length === 0,
        `${falselyReported.length} users reported not stored (maybeStored false) are stored with their newest data`,
      );
    }
  } else {
    expect(result, !exit.timedOut, `did not exit within ${SHUTDOWN_TIMEOUT_MS + 15_000} ms of SIGTERM`);
    expect(result, exit.signal === null && exit.code === 0, `exit code ${describeExit(exit)}, expected 0`);
    expect(
      result,
      elapsed >= BACK_AFTER_MS - 50,
      `exited ${round(elapsed)} ms after SIGTERM, before the store came back at ${BACK_AFTER_MS} ms`,
    );
    if (healed !== undefined) result.recoverMs = round(exit.at - healed);
    expect(
      result,
      libraryLines.length === 0 && gameError === undefined,
      `unsaved users reported although the store came back: ${JSON.stringify(gameError ?? libraryLines[0])?.slice(0, 300)}`,
    );
  }
}
