/**
 * `pnpm demo`: starts the game server, lets bot players play over real WebSockets for a while, stops the
 * server with SIGTERM, then reads every player back from the store and checks it holds exactly what the
 * server last acknowledged to that player. Exits non-zero if a single player differs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { userKey } from '@cagey-sessions/core';
import { type BotCounters, startBots } from './bots.js';
import { parseDuration, parseInteger, UsageError } from './cli.js';
import type { Player } from './game.js';
import { launchServer, type ServerExit } from './launch.js';
import type { ServerStats } from './server.js';
import {
  checkStoreEnv,
  defaultDataDir,
  isStoreKind,
  openStore,
  STORE_KINDS,
  type StoreKind,
} from './stores.js';
import { compareWithStore, type Difference, describeDifference, missingPurchases } from './verify.js';

const USAGE = `Usage: pnpm demo [options]
  --store <kind>       ${STORE_KINDS.join(' | ')} (default pglite, in --data-dir)
                       postgres reads DATABASE_URL, redis REDIS_URL, mongo MONGODB_URI
  --players <n>        bot players (default 300)
  --duration <time>    how long the bots play, e.g. 20s, 90s, 2m (default 20s)
  --port <n>           server port on 127.0.0.1, 0 for any free one (default 0)
  --data-dir <dir>     PGlite files and the server log (default ${defaultDataDir()})
  --namespace <name>   table / key prefix / collection name part (default game)
  --grace <time>       how long a dropped player's session waits for a reconnect (default 1500ms)
  --interval <time>    how often the server flushes changed player data (default 3s)
  --seed <n>           seed for the bots' choices (default: random)
  --report <file>      also write the summary as JSON to this file`;

interface DemoOptions {
  store: StoreKind;
  players: number;
  durationMs: number;
  port: number;
  dataDir: string;
  namespace: string;
  graceMs: number;
  intervalMs: number;
  seed: number;
  reportFile: string | undefined;
}

interface DemoSummary {
  store: StoreKind;
  location: string;
  players: number;
  returning: number;
  durationMs: number;
  bots: BotCounters;
  server: ServerStats | undefined;
  serverExitCode: number | null;
  shutdownMs: number | undefined;
  unsaved: number;
  checked: number;
  /** Players whose stored data differs from the last state the server acknowledged to them. */
  differences: number;
  /** Players whose stored data differs from what the server held when it shut down. */
  finalStateDifferences: number;
  acknowledgedPurchases: number;
  missingPurchases: number;
  ok: boolean;
}

function parseOptions(argv: string[]): DemoOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string', default: 'pglite' },
      players: { type: 'string', default: '300' },
      duration: { type: 'string', default: '20s' },
      port: { type: 'string', default: '0' },
      'data-dir': { type: 'string', default: defaultDataDir() },
      namespace: { type: 'string', default: 'game' },
      grace: { type: 'string', default: '1500ms' },
      interval: { type: 'string', default: '3s' },
      seed: { type: 'string' },
      report: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  if (!isStoreKind(values.store)) throw new UsageError(`--store must be one of ${STORE_KINDS.join(', ')}.`);
  return {
    store: values.store,
    players: parseInteger('players', values.players, 1, 20_000),
    durationMs: parseDuration('duration', values.duration),
    port: parseInteger('port', values.port, 0, 65535),
    dataDir: resolve(values['data-dir']),
    namespace: values.namespace,
    graceMs: parseDuration('grace', values.grace),
    intervalMs: parseDuration('interval', values.interval),
    seed:
      values.seed === undefined
        ? Math.floor(Math.random() * 2 ** 31)
        : parseInteger('seed', values.seed, 0, 2 ** 32 - 1),
    reportFile: values.report === undefined ? undefined : resolve(values.report),
  };
}

const number = new Intl.NumberFormat('en-US');
const fmt = (n: number) => number.format(Math.round(n));
/** `1 player`, `3 players` */
const count = (n: number, noun: string) => `${fmt(n)} ${noun}${n === 1 ? '' : 's'}`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

async function runDemo(options: DemoOptions, out: NodeJS.WriteStream = process.stdout): Promise<DemoSummary> {
  const say = (line = '') => out.write(`${line}\n`);
  checkStoreEnv(options.store);
  mkdirSync(options.dataDir, { recursive: true });
  const logFile = join(options.dataDir, `server-${options.store}.log`);
  writeFileSync(logFile, '');

  say(
    `cagey-sessions demo: ${options.players} bot players for ${seconds(options.durationMs)} on ${options.store}`,
  );
  say(
    options.store === 'pglite'
      ? '  starting the game server (PGlite creates its database files on the first run: a few seconds)...'
      : '  starting the game server...',
  );
  const server = await launchServer({
    store: options.store,
    dataDir: options.dataDir,
    namespace: options.namespace,
    port: options.port,
    graceMs: options.graceMs,
    intervalMs: options.intervalMs,
    logFile,
  });
  say(`  store   ${server.location}`);
  say(`  server  ${server.url} (pid ${server.child.pid}, log ${logFile})`);
  say(
    `  bots    seed ${options.seed}; they mine, fight, buy, drop their connection and come back ` +
      `(within the ${seconds(options.graceMs)} grace period, after it, or from a second connection)`,
  );
  say();

  const fleet = startBots({
    url: server.url,
    players: options.players,
    durationMs: options.durationMs,
    graceMs: options.graceMs,
    seed: options.seed,
  });
  const started = performance.now();
  // Ctrl-C ends the run early; the server (in its own process group) is then stopped and checked as usual.
  // A second Ctrl-C quits at once, and the server, seeing its parent gone, shuts down gracefully by itself.
  let interruptedAt: number | undefined;
  const interrupt = () => {
    // tsx passes the terminal's SIGINT on to this process as well: one Ctrl-C can arrive twice at once.
    if (interruptedAt !== undefined) {
      if (performance.now() - interruptedAt > 1000) process.exit(130);
      return;
    }
    interruptedAt = performance.now();
    fleet.stop();
    out.write('\n  interrupted: ending the run early; the check still runs (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', interrupt);
  await showProgress(out, fleet, server.port, started, options);
  if (interruptedAt === undefined) process.off('SIGINT', interrupt);
  const playedMs = performance.now() - started;

  say("Stopping the server with SIGTERM: it stops taking actions, then stores every player's data...");
  let exit: ServerExit;
  try {
    exit = await server.stop('SIGTERM');
  } finally {
    await fleet.close();
  }
  const report = exit.report;
  const shutdownNote =
    report === undefined
      ? `the server exited (${exit.signal ?? `code ${exit.code}`}) without a shutdown report; see ${logFile}`
      : `the server exited with code ${exit.code} after ${seconds(report.durationMs)}: ` +
        `${fmt(report.stats.written)} writes in all, ${count(report.unsaved.length, 'player')} unsaved`;
  say(`  ${shutdownNote}`);

  // What each player must find in the store: the last state the server acknowledged to them.
  const acknowledged = new Map<string, Player>();
  for (const bot of fleet.bots) if (bot.state !== undefined) acknowledged.set(userKey(bot.userId), bot.state);
  const finalState = new Map(Object.entries(report?.finalState ?? {}));

  say(
    options.store === 'memory'
      ? 'Reading every player from the memory store, whose contents the server sent as it exited...'
      : 'Reading every player back from the store (a new connection, after the server exited)...',
  );
  let read: (userId: string) => Promise<unknown>;
  let closeStore = async () => {};
  if (options.store === 'memory') {
    // The memory store lived in the server process: its contents came with the shutdown report.
    const contents = exit.contents ?? {};
    read = async (userId) => contents[userId];
  } else {
    const store = await openStore(options.store, { dataDir: options.dataDir, namespace: options.namespace });
    read = async (userId) => (await store.adapter.load(userId))?.userData;
    closeStore = () => store.close();
  }
  let differences: Difference[];
  let finalDifferences: Difference[];
  let missing = 0;
  try {
    differences = await compareWithStore(acknowledged, read);
    finalDifferences = await compareWithStore(finalState, read);
    for (const bot of fleet.bots) {
      if (bot.acknowledged.length > 0)
        missing += missingPurchases(await read(userKey(bot.userId)), bot.acknowledged).length;
    }
  } finally {
    await closeStore();
  }

  const bots = fleet.totals();
  const loggedIn = acknowledged.size;
  const returning = fleet.bots.filter((bot) => bot.returning).length;
  const summary: DemoSummary = {
    store: options.store,
    location: server.location,
    players: options.players,
    returning,
    durationMs: playedMs,
    bots,
    server: report?.stats,
    serverExitCode: exit.code,
    shutdownMs: report?.durationMs,
    unsaved: report?.unsaved.length ?? Number.NaN,
    checked: acknowledged.size,
    differences: differences.length,
    finalStateDifferences: finalDifferences.length,
    acknowledgedPurchases: bots.purchases,
    missingPurchases: missing,
    ok: false,
  };
  const problems: string[] = [];
  if (exit.code !== 0)
    problems.push(`the server exited with ${exit.signal ?? `code ${exit.code}`} (log: ${logFile})`);
  if (report === undefined) problems.push('no shutdown report from the server');
  else if (report.unsaved.length > 0)
    problems.push(`${count(report.unsaved.length, 'player')} not saved at shutdown`);
  if (loggedIn < options.players)
    problems.push(`${count(options.players - loggedIn, 'bot')} never logged in`);
  if (bots.errors > 0) problems.push(`${count(bots.errors, 'bot error')} (e.g. ${firstError(fleet.bots)})`);
  if (bots.mismatches > 0)
    problems.push(`${count(bots.mismatches, 'login')} returned data other than last acknowledged`);
  if (differences.length > 0)
    problems.push(`${count(differences.length, 'player')} differ from their acknowledged state`);
  if (finalDifferences.length > 0)
    problems.push(`${count(finalDifferences.length, 'player')} differ from the server's final state`);
  if (missing > 0) problems.push(`${count(missing, 'acknowledged purchase')} missing from the store`);
  summary.ok = problems.length === 0;

  const stats = report?.stats;
  say();
  say(`Summary (${options.store})`);
  say(
    `  players      ${fmt(options.players)} (${fmt(options.players - returning)} new, ${fmt(returning)} returning from an earlier run)`,
  );
  say(
    `  actions      ${fmt(bots.actions)} in ${seconds(playedMs)} (${fmt(bots.actions / (playedMs / 1000))}/s), ${fmt(bots.rejected)} refused for lack of gold`,
  );
  say(`  purchases    ${fmt(bots.purchases)} acknowledged, each only after persistNow() resolved`);
  say(
    `  reconnects   ${fmt(bots.resumed)} resumed within the grace period, ${fmt(bots.reloaded)} after it ` +
      `(data loaded from the store), ${fmt(bots.takeovers)} from a second connection`,
  );
  if (stats !== undefined) {
    say(
      `  store writes ${fmt(stats.written)} (interval, disconnect, purchase, shutdown), ${fmt(stats.failed)} failed, ` +
        `${fmt(stats.conflicts)} conflicts`,
    );
    say(
      `  shutdown     ${count(report!.dirtyAtShutdown, 'player')} had unsaved changes at SIGTERM; ` +
        `all stored in ${seconds(report!.durationMs)}, ${report!.unsaved.length} unsaved`,
    );
  }
  say(
    `  check        ${fmt(acknowledged.size)} players read back: ${differences.length} differ from the last state ` +
      `acknowledged to them, ${finalDifferences.length} from the server's final state; ` +
      `${fmt(bots.purchases - missing)}/${fmt(bots.purchases)} acknowledged purchases present`,
  );
  for (const difference of [...differences, ...finalDifferences].slice(0, 5))
    say(`    ${describeDifference(difference)}`);
  say();
  if (summary.ok) {
    say(`OK: every player's data in the store equals what the server last confirmed to them.`);
    if (options.store === 'pglite')
      say(`Run it again: the same players come back from ${join(options.dataDir, 'pglite')}.`);
  } else {
    say(`FAILED: ${problems.join('; ')}.`);
  }
  if (options.reportFile !== undefined)
    writeFileSync(options.reportFile, `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}

function firstError(bots: readonly { lastError: string | undefined; userId: string }[]): string {
  const bot = bots.find((b) => b.lastError !== undefined);
  return bot === undefined ? 'unknown' : `${bot.userId}: ${bot.lastError}`;
}

/** A live progress line on a terminal; a plain line every few seconds otherwise (CI logs, pipes). */
async function showProgress(
  out: NodeJS.WriteStream,
  fleet: ReturnType<typeof startBots>,
  port: number,
  started: number,
  options: DemoOptions,
): Promise<void> {
  const tty = out.isTTY === true;
  const everyMs = tty ? 500 : 5000;
  let finished = false;
  void fleet.done.then(() => {
    finished = true;
  });
  let last = { at: started, actions: 0, written: 0 };
  // Bounded: the fleet ends at its deadline; the extra ticks cover bots finishing their last request.
  const maxTicks = Math.ceil((options.durationMs + 90_000) / everyMs);
  for (let tick = 0; tick < maxTicks && !finished; tick++) {
    await Promise.race([fleet.done, new Promise((resolve) => setTimeout(resolve, everyMs))]);
    const now = performance.now();
    const stats = await fetchStats(port);
    const actions = fleet.totals().actions;
    const written = stats?.written ?? last.written;
    const elapsed = Math.max(1, now - last.at) / 1000;
    const left = Math.max(0, options.durationMs - (now - started));
    const line =
      `  ${seconds(now - started).padStart(7)}  online ${fmt(fleet.online())}/${fmt(options.players)}` +
      `  actions/s ${fmt((actions - last.actions) / elapsed).padStart(5)}` +
      `  writes/s ${fmt((written - last.written) / elapsed).padStart(5)}` +
      `  dirty ${fmt(stats?.dirty ?? 0).padStart(4)}` +
      `  ${left >= 500 ? `${Math.round(left / 1000)} s left` : 'finishing'}`;
    last = { at: now, actions, written };
    out.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }
  await fleet.done;
  if (tty) out.write('\n');
}

async function fetchStats(port: number): Promise<ServerStats | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/stats`, { signal: AbortSignal.timeout(1000) });
    return (await response.json()) as ServerStats;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options === undefined) {
    console.log(USAGE);
    return 0;
  }
  const summary = await runDemo(options);
  return summary.ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) console.error(`${error.message}\n\n${USAGE}`);
    else console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);
