/**
 * `store-kill-mid-flush`: a flush of 10,000 dirty sessions; in the middle of it the fault proxy lets one write
 * commit and reach the client side of the proxy, then throws its reply away and resets the connection (a
 * committed-but-unacknowledged batch, in every run), and the store is killed at once with SIGKILL and
 * restarted. Then SIGTERM: every player's newest data must end up stored (0 lost, 0 stale), the exit code must
 * be 0, and no write may come back as a conflict (the game's own committed write is not someone else's).
 */
import { matchesText, postgresReplyComplete } from '@cagey-sessions/fault-proxy';
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
  userIds,
} from '../lib/scenario.js';
import { control } from '../lib/stores.js';

const USERS = 10_000;
const ACKED_USERS = 200;
const SHUTDOWN_TIMEOUT_MS = 20_000;
/** The cut hits about the fifth write request of the flush (of 20 batches of 500). */
const CUT_AT_WRITE = 5;

export const storeKillMidFlush: Scenario = {
  name: 'store-kill-mid-flush',
  summary:
    'kill -9 of the store in the middle of a flush of 10,000 dirty sessions, after a committed-but-unacknowledged write; restart: all newest data stored',
  stores: ['postgres', 'redis'],
  limitMs: 90_000,
  run,
};

async function run(context: ScenarioContext, result: ScenarioResult): Promise<void> {
  const { store } = context;
  const kill = control(store, 'kill');
  const proxy = await proxyFor(context);
  const game = await startGame(context, {
    node: 'g',
    url: proxy.urlFor(context.url),
    onConflict: 'none',
    persistence: {
      events: ['disconnect', 'shutdown'],
      batchSize: 500,
      concurrency: 4,
      callTimeout: 2_000,
      shutdownTimeout: SHUTDOWN_TIMEOUT_MS,
      retry: { initialDelay: 100, maxDelay: 1_000 },
    },
  });
  const ledger = new Ledger();
  const users = userIds(USERS);
  const loginStarted = performance.now();
  await loginAll(game, users, ledger);
  context.progress(`${USERS} logged in in ${round(performance.now() - loginStarted)} ms`);
  const acked = users.slice(0, ACKED_USERS);
  const purchases = await inParallel(acked, 16, (userId) => purchase(game, userId, ledger));
  const failed = purchases.filter((outcome) => !outcome.ok);
  if (failed.length > 0)
    throw new Error(`setup: ${failed.length} purchases failed, e.g. ${failed[0]!.error}`);
  const { counters } = await game.request<{ counters: Record<string, number> }>(
    'mutate',
    { all: true },
    60_000,
  );
  ledger.holdAll(counters);

  // Arm the cut: the first write request seen after the CUT_AT_WRITE-th one.
  const isWrite =
    store.kind === 'postgres' ? matchesText('WITH input AS') : matchesText('evalsha', { ignoreCase: true });
  let writes = 0;
  const cut = proxy.cutAfterReply({
    request: (chunk) => isWrite(chunk) && ++writes >= CUT_AT_WRITE,
    ...(store.kind === 'postgres' ? { replyComplete: postgresReplyComplete } : {}),
  });
  const cutOutcome = cut.then(
    () => 'cut' as const,
    (error: unknown) => `cut failed: ${error instanceof Error ? error.message : String(error)}`,
  );

  const flushStarted = performance.now();
  const flush = game.request<{ ok: boolean; ms: number; error?: { code?: string; unsaved?: unknown[] } }>(
    'flush',
    {},
    60_000,
  );
  const firstDone = await Promise.race([
    cutOutcome,
    flush.then(() => 'flush finished' as const),
    sleep(30_000).then(() => 'timeout' as const),
  ]);
  let restarted: number | undefined;
  if (firstDone === 'cut') {
    const cutAt = performance.now() - flushStarted;
    await kill();
    context.progress(`write cut after its reply ${round(cutAt)} ms into the flush; store SIGKILLed`);
    await sleep(300);
    await store.server.restart();
    restarted = performance.now();
    result.notes.push(
      `cut+kill ${round(cutAt)} ms into the flush, restart ${round(restarted - flushStarted - cutAt)} ms`,
    );
  } else {
    expect(result, false, `no committed-but-unacknowledged write happened: ${firstDone}`);
  }
  const flushed = await flush.catch((error: unknown) => ({
    ok: false,
    ms: performance.now() - flushStarted,
    error: { code: error instanceof Error ? error.message : String(error), unsaved: [] as unknown[] },
  }));
  result.notes.push(
    flushed.ok
      ? `flush ok in ${round(flushed.ms)} ms`
      : `flush ${flushed.error?.code} (${flushed.error?.unsaved?.length ?? 0} unsaved) in ${round(flushed.ms)} ms`,
  );

  const signalled = game.terminate();
  const exit = await game.waitExit(SHUTDOWN_TIMEOUT_MS + 15_000);
  result.exits = describeExit(exit);
  if (restarted !== undefined) result.recoverMs = round(exit.at - restarted);
  result.notes.push(`exit ${round(exit.at - signalled)} ms after SIGTERM`);

  expect(result, exit.signal === null && exit.code === 0, `exit code ${describeExit(exit)}, expected 0`);
  const read = await readStored(context, result);
  const stored = read ?? new Map();
  if (read) expectStoreMatches(result, ledger, stored);

  const final =
    game.find('info', 'game server: every player stored')[0] ??
    game.find('error', 'game server: shutdown incomplete')[0];
  recordStall(result, final);
  const conflicts = typeof final?.conflicts === 'number' ? final.conflicts : undefined;
  const conflictLines = game.logs.filter((line) => line.level === 'warn' && line.msg.includes('conflict'));
  result.notes.push(`conflicts ${conflicts ?? '?'}`);
  expect(
    result,
    conflicts === 0 && conflictLines.length === 0,
    `the game's own unacknowledged write came back as a conflict: ${conflicts ?? '?'} conflict events, ${conflictLines.length} conflict log lines, e.g. ${JSON.stringify(conflictLines[0] ?? {}).slice(0, 240)}`,
  );
  const incomplete = game.find('error', 'game server: shutdown incomplete')[0];
  if (incomplete !== undefined) {
    const err = incomplete.err as { unsaved?: { userId: string; maybeStored?: boolean; error?: string }[] };
    const unsaved = err?.unsaved ?? [];
    const errors = [...new Set(unsaved.map((u) => u.error))].join(', ');
    result.notes.push(
      `SHUTDOWN_INCOMPLETE: ${unsaved.length} unsaved (${unsaved.filter((u) => u.maybeStored).length} maybeStored; ${errors})`,
    );
  }
}
