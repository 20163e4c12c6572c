/**
 * `pnpm demo`: starts the game server, lets bot players (some of them adversarial) play over real WebSockets
 * for a while, stops the server with SIGTERM, then reads every player back from the store and checks it holds
 * exactly what the server last acknowledged to that player. Exits non-zero if a single player differs.
 *
 * `--crash` kills the server with SIGKILL halfway and starts it again on the same store; `--outage` takes the
 * store away for a while (the fault proxy in front of a database server, or a fault inside the server process
 * for PGlite and memory). Both end with the same check.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { userKey } from '@cagey-sessions/core';
import type { FaultProxy } from '@cagey-sessions/fault-proxy';
import { authToken } from './auth.js';
import { ADVERSARIAL_KINDS, type BotCounters, type BotFleet, type BotKind, startBots } from './bots.js';
import { parseDuration, parseInteger, UsageError } from './cli.js';
import { clusterOptions, runCluster } from './cluster.js';
import type { Player } from './game.js';
import { type LaunchOptions, launchServer, type ServerExit, type ServerProcess } from './launch.js';
import type { ServerStats, WriteCause } from './server.js';
import {
  checkStoreEnv,
  defaultDataDir,
  describeUrl,
  isStoreKind,
  openStore,
  STORE_KINDS,
  STORE_URL_VARIABLES,
  type StoreKind,
} from './stores.js';
import {
  compareWith,
  type Difference,
  describeDifference,
  duplicatePurchases,
  missingPurchases,
  readAll,
  stateDigest,
} from './verify.js';

const USAGE = `Usage: pnpm demo [options]
  --store <kind>         ${STORE_KINDS.join(' | ')} (default pglite, in --data-dir)
                         postgres reads DATABASE_URL, redis REDIS_URL, mongo MONGODB_URI
  --players <n>          bot players (default 300)
  --adversarial <n>      how many of them misbehave: drop mid-request, resume mid-request, flood, read
                         slowly, log in twice (default a tenth, at least 5)
  --duration <time>      how long the bots play, e.g. 20s, 90s, 2m (default 20s)
  --crash                SIGKILL the server halfway, start it again on the same store, let the bots come back
  --outage               take the store away for a while mid-run (--outage-duration), then bring it back
  --outage-duration <t>  how long the store is gone (default a quarter of the run, at least 3 call timeouts)
  --outage-kind <kind>   refuse: connections to the store are reset, calls fail at once (a stopped database);
                         blackhole: nothing comes back, calls time out (a network partition) (default refuse)
  --port <n>             server port on 127.0.0.1, 0 for any free one (default 0)
  --data-dir <dir>       PGlite files and the server log (default ${defaultDataDir()})
  --namespace <name>     table / key prefix / collection name part (default game)
  --grace <time>         how long a dropped player's session waits for a reconnect (default 1500ms)
  --interval <time>      how often the server flushes changed player data (default 3s)
  --call-timeout <time>  how long one store call may take (default 10s; 1s with --outage)
  --seed <n>             seed for the bots' choices (default: random)
  --report <file>        also write the summary as JSON to this file
  --nodes <n>            run n game servers on one store and one presence, bots reconnecting to any of them
                         (default 1; more needs a server store: postgres, started for the run without DATABASE_URL)
  --presence <kind>      with --nodes: postgres | redis (default redis when REDIS_URL is set, else postgres)`;

type Mode = 'graceful' | 'crash' | 'outage';

interface DemoOptions {
  store: StoreKind;
  players: number;
  adversarial: number;
  durationMs: number;
  mode: Mode;
  outageMs: number;
  outageKind: 'refuse' | 'blackhole';
  port: number;
  dataDir: string;
  namespace: string;
  graceMs: number;
  intervalMs: number;
  callTimeoutMs: number;
  seed: number;
  reportFile: string | undefined;
  nodes: number;
  presence: string | undefined;
}

interface CrashSummary {
  /** When the server was killed, from the start of play. */
  killedAtMs: number;
  /** From the kill to the new server listening. */
  restartMs: number;
  /** Players who came back to the restarted server. */
  returned: number;
  lostActions: number;
  lostPlayers: number;
  /** The oldest lost action, measured back from when its player's connection was lost. */
  maxLostAgeMs: number;
  /** What the loss may reach back: the interval plus the last flush's duration before the kill. */
  lossBoundMs: number;
  /**
   * Interval ticks the server had skipped before the kill because a flush was still running: a store that
   * does not keep up with the writes, so unsaved changes can be older than the bound.
   */
  skippedTicks: number;
  lostAcknowledgedPurchases: number;
}

interface OutageSummary {
  how: string;
  startedAtMs: number;
  durationMs: number;
  notStored: number;
  storeUnavailable: number;
  failedWrites: number;
  /** From the store coming back to the server having stored again with nothing left to retry. */
  recoveryMs: number | undefined;
  lostAcknowledgedPurchases: number;
}

interface DemoSummary {
  store: StoreKind;
  mode: Mode;
  location: string;
  players: number;
  adversarial: Partial<Record<BotKind, number>>;
  returning: number;
  /** Returning players compared with what the previous run left in the store (undefined: no record). */
  returningCompared: { matched: number; differ: string[]; unknown: number } | undefined;
  durationMs: number;
  bots: BotCounters;
  adversarialBots: BotCounters;
  server: ServerStats | undefined;
  /** Writes of the whole run by cause (both servers, with --crash: the first as of its last report). */
  writes: Record<WriteCause, number> | undefined;
  serverExitCode: number | null;
  shutdownMs: number | undefined;
  unsaved: number;
  crash: CrashSummary | undefined;
  outage: OutageSummary | undefined;
  timing: {
    startupMs: number;
    openStoreMs: number;
    restartMs: number | undefined;
    readBackMs: number;
    shutdownMs: number | undefined;
  };
  memory: { serverPeakBytes: number | undefined; demoPeakBytes: number };
  checked: number;
  /** Players whose stored data differs from the last state the server acknowledged to them. */
  differences: number;
  /** Players whose stored data differs from what the server held when it shut down. */
  finalStateDifferences: number;
  acknowledgedPurchases: number;
  missingPurchases: number;
  /** Purchase keys stored twice (a purchase made twice). */
  duplicatePurchases: number;
  ok: boolean;
}

function parseOptions(argv: string[]): DemoOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string', default: 'pglite' },
      players: { type: 'string', default: '300' },
      adversarial: { type: 'string' },
      duration: { type: 'string', default: '20s' },
      crash: { type: 'boolean', default: false },
      outage: { type: 'boolean', default: false },
      'outage-duration': { type: 'string' },
      'outage-kind': { type: 'string', default: 'refuse' },
      port: { type: 'string', default: '0' },
      'data-dir': { type: 'string', default: defaultDataDir() },
      namespace: { type: 'string', default: 'game' },
      grace: { type: 'string', default: '1500ms' },
      interval: { type: 'string', default: '3s' },
      'call-timeout': { type: 'string' },
      seed: { type: 'string' },
      report: { type: 'string' },
      nodes: { type: 'string', default: '1' },
      presence: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  if (!isStoreKind(values.store)) throw new UsageError(`--store must be one of ${STORE_KINDS.join(', ')}.`);
  if (values.crash && values.outage)
    throw new UsageError('--crash and --outage are separate runs: pick one.');
  if (values.crash && values.store === 'memory') {
    throw new UsageError('--crash needs a store that outlives the server; the memory store dies with it.');
  }
  const players = parseInteger('players', values.players, 1, 20_000);
  const outageKind = values['outage-kind'];
  if (outageKind !== 'refuse' && outageKind !== 'blackhole')
    throw new UsageError('--outage-kind must be refuse or blackhole.');
  const durationMs = parseDuration('duration', values.duration);
  const mode: Mode = values.crash ? 'crash' : values.outage ? 'outage' : 'graceful';
  const callTimeoutMs =
    values['call-timeout'] === undefined
      ? mode === 'outage'
        ? 1000
        : 10_000
      : parseDuration('call-timeout', values['call-timeout']);
  const options: DemoOptions = {
    store: values.store,
    players,
    adversarial:
      values.adversarial === undefined
        ? Math.min(Math.floor(players / 2), Math.max(5, Math.round(players / 10)))
        : parseInteger('adversarial', values.adversarial, 0, players),
    durationMs,
    mode,
    // Longer than a few store calls' timeouts, so that purchases and logins meet the outage.
    outageMs:
      values['outage-duration'] === undefined
        ? Math.max(3 * callTimeoutMs, Math.round(durationMs / 4))
        : parseDuration('outage-duration', values['outage-duration']),
    port: parseInteger('port', values.port, 0, 65535),
    dataDir: resolve(values['data-dir']),
    namespace: values.namespace,
    graceMs: parseDuration('grace', values.grace),
    intervalMs: parseDuration('interval', values.interval),
    callTimeoutMs,
    outageKind,
    seed:
      values.seed === undefined
        ? Math.floor(Math.random() * 2 ** 31)
        : parseInteger('seed', values.seed, 0, 2 ** 32 - 1),
    reportFile: values.report === undefined ? undefined : resolve(values.report),
    nodes: parseInteger('nodes', values.nodes, 1, 16),
    presence: values.presence,
  };
  if (mode === 'outage' && options.durationMs - options.outageMs - 1500 < 500) {
    throw new UsageError(
      `--duration ${seconds(durationMs)} leaves no room for a ${seconds(options.outageMs)} outage and the recovery after it: ` +
        `use at least ${seconds(options.outageMs + 2000)}, or a shorter --outage-duration.`,
    );
  }
  return options;
}

const number = new Intl.NumberFormat('en-US');
const fmt = (n: number) => number.format(Math.round(n));
/** `1 player`, `3 players` */
const count = (n: number, noun: string, plural = `${noun}s`) => `${fmt(n)} ${n === 1 ? noun : plural}`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const megabytes = (bytes: number | undefined) => (bytes === undefined ? 'unknown' : `${fmt(bytes / 1e6)} MB`);
const KIND_NAMES: Record<BotKind, string> = {
  player: 'normal players',
  dropper: 'drop mid-request',
  resumer: 'resume mid-request',
  flooder: 'flood',
  slowReader: 'read slowly',
  doubleLogin: 'log in twice',
};

/** What the demo remembers of a run in the data directory, for the next run to compare its returning players. */
interface RunRecord {
  store: StoreKind;
  location: string;
  namespace: string;
  finishedAt: string;
  /** Each player's stored data at the end of the run, as a digest (see `stateDigest`). */
  players: Record<string, string>;
}

/** When the outage begins: a third into the run, leaving time after it for recovery. */
function outageStart(options: DemoOptions): number {
  return Math.max(
    500,
    Math.min(Math.round(options.durationMs / 3), options.durationMs - options.outageMs - 1500),
  );
}

function recordFile(options: DemoOptions): string {
  return join(options.dataDir, `last-run-${options.store}-${options.namespace}.json`);
}

function readRecord(file: string): RunRecord | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RunRecord;
  } catch {
    return undefined;
  }
}

/** For --outage on a database server: a fault proxy in front of it, when it is on this machine. */
async function proxyInFront(
  options: DemoOptions,
  env: NodeJS.ProcessEnv,
): Promise<{ proxy: FaultProxy; env: NodeJS.ProcessEnv } | undefined> {
  if (options.mode !== 'outage' || options.store === 'pglite' || options.store === 'memory') return undefined;
  const [variable] = STORE_URL_VARIABLES[options.store];
  const url = env[variable]!;
  let target: { host: string; port: number };
  try {
    const parsed = new URL(url);
    const host = parsed.hostname.replace(/^\[|\]$/g, '');
    const defaults = { postgres: 5432, redis: 6379, mongo: 27017 } as const;
    target = { host, port: parsed.port === '' ? defaults[options.store] : Number(parsed.port) };
    if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host)) return undefined;
  } catch {
    return undefined;
  }
  const { startFaultProxy } = await import('@cagey-sessions/fault-proxy');
  const proxy = await startFaultProxy({ target });
  return { proxy, env: { ...env, [variable]: proxy.urlFor(url) } };
}

async function runDemo(options: DemoOptions, out: NodeJS.WriteStream = process.stdout): Promise<DemoSummary> {
  const say = (line = '') => out.write(`${line}\n`);
  checkStoreEnv(options.store);
  mkdirSync(options.dataDir, { recursive: true });
  const logFile = join(options.dataDir, `server-${options.store}.log`);
  writeFileSync(logFile, '');
  const previous = readRecord(recordFile(options));
  // Where the players live, independent of a fault proxy in between: the record of a run is kept per store.
  const identity =
    options.store === 'pglite' || options.store === 'memory'
      ? `${options.store} ${join(options.dataDir, options.store)}`
      : `${options.store} ${describeUrl(process.env[STORE_URL_VARIABLES[options.store][0]] ?? '')}`;

  const modeNote = {
    graceful: '',
    crash: ', killing the server halfway (--crash)',
    outage: ', with a store outage (--outage)',
  }[options.mode];
  say(
    `cagey-sessions demo: ${options.players} bot players for ${seconds(options.durationMs)} on ${options.store}${modeNote}`,
  );
  say(
    options.store === 'pglite' && !existsSync(join(options.dataDir, 'pglite', 'PG_VERSION'))
      ? '  starting the game server (PGlite creates its database files on the first run: a few seconds)...'
      : '  starting the game server...',
  );
  const proxied = await proxyInFront(options, process.env);
  const outageHow =
    options.outageKind === 'refuse'
      ? proxied !== undefined
        ? 'the fault proxy between server and store resets every connection (a stopped database)'
        : "every store call fails inside the server (the store lives in the server's process)"
      : proxied !== undefined
        ? 'the fault proxy between server and store holds every byte (a network black hole)'
        : "every store call hangs inside the server (the store lives in the server's process)";
  // A fresh secret per run: every login carries its HMAC, as the server's authenticate hook requires.
  const authSecret = randomBytes(24).toString('base64url');
  const launchOptions: LaunchOptions = {
    store: options.store,
    dataDir: options.dataDir,
    namespace: options.namespace,
    port: options.port,
    graceMs: options.graceMs,
    intervalMs: options.intervalMs,
    callTimeoutMs: options.callTimeoutMs,
    faultControl: options.mode === 'outage' && proxied === undefined,
    authSecret,
    logFile,
    ...(proxied === undefined ? {} : { env: proxied.env }),
  };
  let server: ServerProcess;
  try {
    server = await launchServer(launchOptions);
  } catch (error) {
    await proxied?.proxy.close();
    throw error;
  }
  const firstServer = server;
  say(`  store   ${server.location}`);
  say(`  server  ${server.url} (pid ${server.child.pid}, log ${logFile})`);
  // The server requires a login token; this link carries one for a player of your own beside the bots.
  say(`  browser http://127.0.0.1:${server.port}/#user=visitor&auth=${authToken(authSecret, 'visitor')}`);
  say(`  metrics http://127.0.0.1:${server.port}/dashboard (live dashboard; Prometheus scrapes /metrics)`);
  say(`          started in ${seconds(server.startupMs)} (opening the store ${seconds(server.openStoreMs)})`);
  const kinds: Partial<Record<BotKind, number>> = {};
  for (let i = 0; i < options.adversarial; i++) {
    const kind = ADVERSARIAL_KINDS[i % ADVERSARIAL_KINDS.length]!;
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  say(
    `  bots    seed ${options.seed}; they mine, fight, buy, drop their connection and come back ` +
      `(within the ${seconds(options.graceMs)} grace period, after it, or from a second connection)`,
  );
  if (options.adversarial > 0) {
    say(
      `          ${options.adversarial} of them misbehave now and then: ` +
        Object.entries(kinds)
          .map(([kind, n]) => `${n} ${KIND_NAMES[kind as BotKind]}`)
          .join(', '),
    );
  }
  say();

  const fleet = startBots({
    url: server.url,
    players: options.players,
    adversarial: options.adversarial,
    durationMs: options.durationMs,
    graceMs: options.graceMs,
    seed: options.seed,
    authSecret,
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

  const live: LiveState = { lastStats: undefined, note: undefined, serverPeakBytes: undefined };
  const events: Promise<void>[] = [];
  let crash:
    | Omit<
        CrashSummary,
        'returned' | 'lostActions' | 'lostPlayers' | 'maxLostAgeMs' | 'lostAcknowledgedPurchases'
      >
    | undefined;
  let crashedStats: ServerStats | undefined;
  let killedAt = 0;
  let outage:
    | Omit<OutageSummary, 'notStored' | 'storeUnavailable' | 'failedWrites' | 'lostAcknowledgedPurchases'>
    | undefined;
  if (options.mode === 'crash') {
    events.push(
      (async () => {
        await sleep(options.durationMs / 2);
        if (interruptedAt !== undefined) return;
        // The last numbers the server gave before it dies: its writes so far and how long a flush takes.
        const before = await fetchStats(server.port);
        crashedStats = before?.stats ?? live.lastStats;
        live.serverPeakBytes = Math.max(live.serverPeakBytes ?? 0, before?.process.maxRssBytes ?? 0);
        killedAt = performance.now();
        live.note = 'server killed (SIGKILL); starting it again';
        await server.stop('SIGKILL');
        server = await launchServer({ ...launchOptions, port: server.port });
        live.note = undefined;
        crash = {
          killedAtMs: killedAt - started,
          restartMs: performance.now() - killedAt,
          lossBoundMs: options.intervalMs + (crashedStats?.lastFlushMs ?? 0),
          skippedTicks: crashedStats?.skippedTicks ?? 0,
        };
        out.write(
          `${out.isTTY ? '\r\x1b[2K' : ''}  ${seconds(killedAt - started).padStart(7)}  server killed with SIGKILL; ` +
            `back on the same store and port after ${seconds(crash.restartMs)}\n`,
        );
      })(),
    );
  } else if (options.mode === 'outage') {
    events.push(
      (async () => {
        const startAt = outageStart(options);
        await sleep(startAt);
        if (interruptedAt !== undefined) return;
        const begun = performance.now();
        if (proxied !== undefined) {
          if (options.outageKind === 'refuse') proxied.proxy.refuse();
          else proxied.proxy.blackhole();
        } else server.fault(options.outageKind === 'refuse' ? 'fail' : 'hang');
        live.note = 'STORE DOWN';
        out.write(
          `${out.isTTY ? '\r\x1b[2K' : ''}  ${seconds(begun - started).padStart(7)}  store outage begins: ${outageHow}\n`,
        );
        await sleep(options.outageMs);
        const healed = performance.now();
        if (proxied !== undefined) proxied.proxy.heal();
        else server.fault('heal');
        live.note = 'store back; recovering';
        out.write(
          `${out.isTTY ? '\r\x1b[2K' : ''}  ${seconds(healed - started).padStart(7)}  store back after ${seconds(healed - begun)}\n`,
        );
        // Recovered: the server has stored again since the store came back, and has nothing left to retry.
        const writtenAtHeal = (await fetchStats(server.port))?.stats.written ?? 0;
        let recoveryMs: number | undefined;
        for (let i = 0; i < 300; i++) {
          const now = await fetchStats(server.port);
          if (now !== undefined) {
            const storedAgain = now.stats.written > writtenAtHeal || now.stats.dirty === 0;
            if (storedAgain && now.stats.retrying === 0) {
              recoveryMs = performance.now() - healed;
              break;
            }
          }
          await sleep(100);
        }
        live.note = undefined;
        outage = {
          how: outageHow,
          startedAtMs: begun - started,
          durationMs: healed - begun,
          recoveryMs,
        };
        out.write(
          `${out.isTTY ? '\r\x1b[2K' : ''}  ${seconds(performance.now() - started).padStart(7)}  ` +
            (recoveryMs === undefined
              ? 'NOT recovered within 30 s\n'
              : `recovered ${seconds(recoveryMs)} after the store came back\n`),
        );
      })(),
    );
  }
  await showProgress(out, fleet, () => server.port, started, options, live);
  await Promise.all(events);
  if (interruptedAt === undefined) process.off('SIGINT', interrupt);
  const playedMs = performance.now() - started;

  say("Stopping the server with SIGTERM: it stops taking actions, then stores every player's data...");
  let exit: ServerExit;
  try {
    exit = await server.stop('SIGTERM');
  } finally {
    await fleet.close();
    await proxied?.proxy.close();
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
  const readStarted = performance.now();
  let stored: Map<string, unknown>;
  const everyone = [
    ...acknowledged.keys(),
    ...finalState.keys(),
    ...fleet.bots.map((bot) => userKey(bot.userId)),
  ];
  if (options.store === 'memory') {
    // The memory store lived in the server process: its contents came with the shutdown report.
    const contents = exit.contents ?? {};
    stored = await readAll(everyone, async (userId) => contents[userId]);
  } else {
    const store = await openStore(options.store, { dataDir: options.dataDir, namespace: options.namespace });
    try {
      // Bounded: a store that stopped answering fails the run instead of hanging it.
      stored = await readAll(everyone, (userId) =>
        withTimeout(
          store.adapter.load(userId).then((found) => found?.userData),
          READ_TIMEOUT_MS,
          `the store did not answer the read-back of ${userId} within ${READ_TIMEOUT_MS / 1000} s`,
        ),
      );
    } finally {
      await store.close();
    }
  }
  const readBackMs = performance.now() - readStarted;
  const differences: Difference[] = compareWith(acknowledged, stored);
  const finalDifferences: Difference[] = compareWith(finalState, stored);
  let missing = 0;
  let duplicates = 0;
  for (const bot of fleet.bots) {
    const value = stored.get(userKey(bot.userId));
    if (bot.acknowledged.length > 0) missing += missingPurchases(value, bot.acknowledged).length;
    duplicates += duplicatePurchases(value).length;
  }

  // Returning players: did they find what the previous run left in the store?
  let returningCompared: DemoSummary['returningCompared'];
  if (previous !== undefined && previous.location === identity && previous.namespace === options.namespace) {
    returningCompared = { matched: 0, differ: [], unknown: 0 };
    for (const bot of fleet.bots) {
      if (!bot.returning || bot.firstState === undefined) continue;
      const recorded = previous.players[userKey(bot.userId)];
      if (recorded === undefined) returningCompared.unknown++;
      else if (recorded === stateDigest(bot.firstState)) returningCompared.matched++;
      else returningCompared.differ.push(bot.userId);
    }
  }
  if (options.store !== 'memory') {
    const record: RunRecord = {
      store: options.store,
      location: identity,
      namespace: options.namespace,
      finishedAt: new Date().toISOString(),
      players: Object.fromEntries(
        [...stored]
          .filter(([, value]) => value !== undefined)
          .map(([userId, value]) => [userId, stateDigest(value)]),
      ),
    };
    writeFileSync(recordFile(options), `${JSON.stringify(record)}\n`);
  }

  const bots = fleet.totals();
  const adversarialBots = fleet.totals((bot) => bot.kind !== 'player');
  const loggedIn = acknowledged.size;
  const returning = fleet.bots.filter((bot) => bot.returning).length;
  const stats = report?.stats;
  const writes =
    stats === undefined
      ? undefined
      : crashedStats === undefined
        ? stats.writes
        : (Object.fromEntries(
            Object.entries(stats.writes).map(([cause, n]) => [
              cause,
              n + crashedStats!.writes[cause as WriteCause],
            ]),
          ) as Record<WriteCause, number>);
  const crashSummary: CrashSummary | undefined =
    crash === undefined
      ? undefined
      : {
          ...crash,
          returned: fleet.bots.filter((bot) => bot.counters.crashReturns > 0).length,
          lostActions: bots.lostActions,
          lostPlayers: bots.lostPlayers,
          maxLostAgeMs: Math.max(
            0,
            killedAt - Math.min(...fleet.bots.map((bot) => bot.lostSince ?? killedAt)),
          ),
          lostAcknowledgedPurchases: bots.lostPurchases + missing,
        };
  const outageSummary: OutageSummary | undefined =
    outage === undefined
      ? undefined
      : {
          ...outage,
          notStored: bots.notStored,
          storeUnavailable: bots.storeUnavailable,
          // Nothing fails outside the outage: the run's failed writes are the outage's.
          failedWrites: stats?.failed ?? 0,
          lostAcknowledgedPurchases: bots.lostPurchases + missing,
        };
  const serverPeakBytes = Math.max(live.serverPeakBytes ?? 0, exit.maxRssBytes ?? 0) || undefined;
  const summary: DemoSummary = {
    store: options.store,
    mode: options.mode,
    location: server.location,
    players: options.players,
    adversarial: kinds,
    returning,
    returningCompared,
    durationMs: playedMs,
    bots,
    adversarialBots,
    server: stats,
    writes,
    serverExitCode: exit.code,
    shutdownMs: report?.durationMs,
    unsaved: report?.unsaved.length ?? Number.NaN,
    crash: crashSummary,
    outage: outageSummary,
    timing: {
      startupMs: firstServer.startupMs,
      openStoreMs: firstServer.openStoreMs,
      restartMs: crash?.restartMs,
      readBackMs,
      shutdownMs: report?.durationMs,
    },
    memory: { serverPeakBytes, demoPeakBytes: process.resourceUsage().maxRSS * 1024 },
    checked: acknowledged.size,
    differences: differences.length,
    finalStateDifferences: finalDifferences.length,
    acknowledgedPurchases: bots.purchases,
    missingPurchases: missing,
    duplicatePurchases: duplicates,
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
    problems.push(
      `${count(bots.mismatches, 'state')} the server sent that its earlier replies do not explain (e.g. ${firstError(fleet.bots)})`,
    );
  if (bots.lostPurchases > 0)
    problems.push(`${count(bots.lostPurchases, 'acknowledged purchase')} missing after a login`);
  if (options.mode !== 'crash' && bots.lostActions > 0)
    problems.push(
      `${count(bots.lostActions, 'acknowledged action')} lost without a crash (e.g. ${
        fleet.bots.find((bot) => bot.lastLoss !== undefined)?.userId
      }: ${fleet.bots.find((bot) => bot.lastLoss !== undefined)?.lastLoss})`,
    );
  if (differences.length > 0)
    problems.push(`${count(differences.length, 'player')} differ from their acknowledged state`);
  if (finalDifferences.length > 0)
    problems.push(`${count(finalDifferences.length, 'player')} differ from the server's final state`);
  if (missing > 0) problems.push(`${count(missing, 'acknowledged purchase')} missing from the store`);
  if (duplicates > 0) problems.push(`${count(duplicates, 'purchase')} stored twice`);
  if (returningCompared !== undefined && returningCompared.differ.length > 0)
    problems.push(
      `${count(returningCompared.differ.length, 'returning player')} found other data than the previous run left`,
    );
  if (options.mode === 'crash' && interruptedAt === undefined) {
    if (crashSummary === undefined) problems.push('the server was not killed');
    else {
      if (crashSummary.returned === 0) problems.push('no player came back after the crash');
      // The bound holds while the store keeps up; when it does not, the summary says so instead.
      if (crashSummary.skippedTicks === 0 && crashSummary.maxLostAgeMs > crashSummary.lossBoundMs + 1000)
        problems.push(
          `play ${seconds(crashSummary.maxLostAgeMs)} old was lost, more than an interval and a flush (${seconds(crashSummary.lossBoundMs)})`,
        );
    }
  }
  if (options.mode === 'outage' && interruptedAt === undefined) {
    if (outageSummary === undefined) problems.push('the outage did not happen');
    else {
      if (outageSummary.recoveryMs === undefined)
        problems.push('the server did not recover after the outage');
      if (outageSummary.notStored + outageSummary.storeUnavailable + outageSummary.failedWrites === 0)
        problems.push('the outage went unnoticed (no NOT_STORED, no failed write): it proves nothing');
    }
  }
  summary.ok = problems.length === 0;

  say();
  say(`Summary (${options.store}${options.mode === 'graceful' ? '' : `, --${options.mode}`})`);
  say(
    `  players      ${fmt(options.players)}: ${fmt(options.players - options.adversarial)} playing normally, ${fmt(options.adversarial)} adversarial; ` +
      `${fmt(options.players - returning)} new, ${fmt(returning)} returning from an earlier run`,
  );
  if (returning > 0) {
    say(
      returningCompared === undefined
        ? '  returning    not compared: no record of a previous run on this store here'
        : `  returning    ${fmt(returningCompared.matched)} found exactly what the previous run left, ${returningCompared.differ.length} differ` +
            (returningCompared.unknown > 0 ? `, ${fmt(returningCompared.unknown)} not in its record` : ''),
    );
  }
  say(
    `  actions      ${fmt(bots.actions)} in ${seconds(playedMs)} (${fmt(bots.actions / (playedMs / 1000))}/s), ${fmt(bots.rejected)} refused for lack of gold`,
  );
  say(
    `  purchases    ${fmt(bots.purchases)} acknowledged, each only after persistNow() resolved; ` +
      `${fmt(bots.replayed)} confirmed again by their key (never bought twice)`,
  );
  say(
    `  reconnects   ${fmt(bots.resumed)} resumed within the grace period, ${fmt(bots.reloaded)} after it ` +
      `(data loaded from the store), ${fmt(bots.takeovers)} from a second connection`,
  );
  if (options.adversarial > 0) {
    say(
      `  adversarial  ${fmt(adversarialBots.tricks)} tricks; refused: ${fmt(bots.rateLimited)} requests over the rate limit (RATE_LIMITED), ` +
        `${count(bots.closedFlood, 'connection')} cut off for flooding (1008), ${fmt((stats?.cancelled ?? 0) + (crashedStats?.cancelled ?? 0))} requests dropped unapplied ` +
        `after their connection closed or was replaced, ${fmt((stats?.closed.replaced ?? 0) + (crashedStats?.closed.replaced ?? 0))} connections replaced (4000); ` +
        `${bots.mismatches} states unexplained`,
    );
  }
  if (stats !== undefined && writes !== undefined) {
    const total = Object.values(writes).reduce((a, b) => a + b, 0);
    say(
      `  store writes ${fmt(total)}: ${fmt(writes.purchase)} purchases, ${fmt(writes.interval)} interval, ${fmt(writes.logout)} grace expiry, ` +
        `${fmt(writes.shutdown)} shutdown; ${fmt(stats.failed + (crashedStats?.failed ?? 0))} failed, ` +
        `${fmt(stats.conflicts + (crashedStats?.conflicts ?? 0))} conflicts`,
    );
  }
  if (crashSummary !== undefined) {
    say(
      `  crash        SIGKILL at ${seconds(crashSummary.killedAtMs)}; the server was back on the same store in ${seconds(crashSummary.restartMs)}; ` +
        `${count(crashSummary.returned, 'player')} came back`,
    );
    say(
      `               unacknowledged play lost: ${count(crashSummary.lostActions, 'action')} of ${count(crashSummary.lostPlayers, 'player')}, ` +
        `the oldest ${seconds(crashSummary.maxLostAgeMs)} before the kill (bound: interval ${seconds(options.intervalMs)} + last flush ` +
        `${seconds(crashSummary.lossBoundMs - options.intervalMs)}); ${crashSummary.lostAcknowledgedPurchases} acknowledged purchases lost`,
    );
    if (crashSummary.skippedTicks > 0) {
      say(
        `               the store did not keep up before the kill (${count(crashSummary.skippedTicks, 'interval tick')} skipped while a ` +
          'flush was still running): unsaved changes wait longer than an interval, so the loss can reach further back',
      );
    }
  }
  if (outageSummary !== undefined) {
    say(
      `  outage       ${seconds(outageSummary.durationMs)} from ${seconds(outageSummary.startedAtMs)}: ${outageSummary.how}`,
    );
    say(
      `               ${fmt(outageSummary.notStored)} purchases answered NOT_STORED (applied, confirmed later by their key), ` +
        `${fmt(outageSummary.storeUnavailable)} logins refused (STORE_UNAVAILABLE), ${fmt(outageSummary.failedWrites)} writes failed and retried; ` +
        (outageSummary.recoveryMs === undefined
          ? 'NOT recovered'
          : `recovered ${seconds(outageSummary.recoveryMs)} after the store came back`) +
        `; ${outageSummary.lostAcknowledgedPurchases} acknowledged purchases lost`,
    );
  }
  if (stats !== undefined) {
    say(
      `  shutdown     ${count(report!.dirtyAtShutdown, 'player')} had unsaved changes at SIGTERM; ` +
        `all stored in ${seconds(report!.durationMs)}, ${report!.unsaved.length} unsaved`,
    );
  }
  say(
    `  cost         server start-up ${seconds(firstServer.startupMs)} (store open ${seconds(firstServer.openStoreMs)})` +
      (crash === undefined ? '' : `, restart ${seconds(crash.restartMs)}`) +
      `, read-back ${seconds(readBackMs)}; peak memory: server ${megabytes(serverPeakBytes)}, demo ${megabytes(summary.memory.demoPeakBytes)}`,
  );
  say(
    `  check        ${fmt(acknowledged.size)} players read back: ${differences.length} differ from the last state ` +
      `acknowledged to them, ${finalDifferences.length} from the server's final state; ` +
      `${fmt(bots.purchases - missing)}/${fmt(bots.purchases)} acknowledged purchases present, ${duplicates} bought twice`,
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

interface LiveState {
  lastStats: ServerStats | undefined;
  /** Shown on the progress line (a crash or an outage under way). */
  note: string | undefined;
  serverPeakBytes: number | undefined;
}

/** A live progress line on a terminal; a plain line every few seconds otherwise (CI logs, pipes). */
async function showProgress(
  out: NodeJS.WriteStream,
  fleet: BotFleet,
  port: () => number,
  started: number,
  options: DemoOptions,
  live: LiveState,
): Promise<void> {
  const tty = out.isTTY === true;
  const everyMs = tty ? 500 : Math.min(5000, Math.max(1000, options.durationMs / 4));
  let finished = false;
  void fleet.done.then(() => {
    finished = true;
  });
  let last = { at: started, actions: 0, written: 0 };
  // Bounded: the fleet ends at its deadline; the extra ticks cover bots finishing their last request.
  const maxTicks = Math.ceil((options.durationMs + 120_000) / everyMs);
  for (let tick = 0; tick < maxTicks && !finished; tick++) {
    await Promise.race([fleet.done, sleep(everyMs)]);
    const now = performance.now();
    const fetched = await fetchStats(port());
    if (fetched !== undefined) {
      live.lastStats = fetched.stats;
      live.serverPeakBytes = Math.max(live.serverPeakBytes ?? 0, fetched.process.maxRssBytes);
    }
    const stats = fetched?.stats;
    const actions = fleet.totals().actions;
    // After a restart the server counts from zero again.
    const written = stats?.written ?? last.written;
    const elapsed = Math.max(1, now - last.at) / 1000;
    const left = Math.max(0, options.durationMs - (now - started));
    const line =
      `  ${seconds(now - started).padStart(7)}  online ${fmt(fleet.online())}/${fmt(options.players)}` +
      `  actions/s ${fmt((actions - last.actions) / elapsed).padStart(5)}` +
      `  writes/s ${fmt(Math.max(0, written - last.written) / elapsed).padStart(5)}` +
      `  dirty ${fmt(stats?.dirty ?? 0).padStart(4)}` +
      `  ${left >= 500 ? `${Math.round(left / 1000)} s left` : 'finishing'}` +
      (live.note === undefined ? '' : `  [${live.note}]`);
    last = { at: now, actions, written };
    out.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }
  await fleet.done;
  if (tty) out.write('\n');
}

async function fetchStats(
  port: number,
): Promise<{ stats: ServerStats; process: { rssBytes: number; maxRssBytes: number } } | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/stats`, { signal: AbortSignal.timeout(1000) });
    const body = (await response.json()) as ServerStats & {
      process: { rssBytes: number; maxRssBytes: number };
    };
    const { process: memory, ...stats } = body;
    return { stats, process: memory };
  } catch {
    return undefined;
  }
}

/** How long one read of the read-back may take. */
const READ_TIMEOUT_MS = 30_000;

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options === undefined) {
    console.log(USAGE);
    return 0;
  }
  // Several servers: src/cluster.ts.
  if (options.nodes > 1) return (await runCluster(clusterOptions(options))).ok ? 0 : 1;
  const summary = await runDemo(options);
  return summary.ok ? 0 : 1;
}

/**
 * Exits once the output is written. Everything the demo opened is closed by then, but a socket the fault proxy
 * reset can leave a request that Node waits for at exit (seen with FerretDB after --outage: 10-20 s), so the
 * demo does not wait for the event loop to empty.
 */
function exit(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main().then(exit, (error: unknown) => {
  if (error instanceof UsageError) console.error(`${error.message}\n\n${USAGE}`);
  else console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  exit(error instanceof UsageError ? 2 : 1);
});
