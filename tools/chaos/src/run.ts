/**
 * The fault suite: `pnpm chaos` runs every scenario on every store it applies to; `pnpm chaos <name>` or
 * `pnpm chaos <name>:<store>` runs a selection (`--list` shows them, `--verbose` prints progress).
 *
 * Starts PostgreSQL, Redis and FerretDB once (tools/test-servers, loopback only), runs the scenarios one after
 * another, each bounded by its time limit, prints one line of figures per scenario and a table at the end.
 * Exits 1 when any scenario lost data, left stale data or failed an expectation; 2 on a usage or setup error.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAllGames, sleep } from './lib/game.js';
import type { Scenario, ScenarioContext, ScenarioResult } from './lib/scenario.js';
import { readPlayers, STORE_KINDS, type Store, type StoreKind, startStore, urlOf } from './lib/stores.js';
import { gameKill } from './scenarios/game-kill.js';
import {
  presenceDurationMs,
  presencePostgres,
  presencePostgresKill9,
  presenceRedis,
  presenceRedisKill9,
} from './scenarios/presence.js';
import { shutdownStoreBack, shutdownStoreDown } from './scenarios/shutdown.js';
import { storeKillMidFlush } from './scenarios/store-kill.js';
import { storePause } from './scenarios/store-pause.js';
import { twoNodesClean, twoNodesDurationMs, twoNodesUnclean } from './scenarios/two-nodes.js';

const SCENARIOS: readonly Scenario[] = [
  shutdownStoreDown,
  shutdownStoreBack,
  storeKillMidFlush,
  storePause,
  gameKill,
  twoNodesClean,
  twoNodesUnclean,
  presenceRedis,
  presencePostgres,
  presenceRedisKill9,
  presencePostgresKill9,
];

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** The packages the game server imports as a user would: from their built `dist`. */
const BUILT_PACKAGES = ['core', 'adapter-postgres', 'adapter-redis', 'adapter-mongo'];
/** No scenario starts after this long; each one has its own limit too. */
const SUITE_LIMIT_MS = 10 * 60_000;
const BUILD_COMMAND = 'pnpm -r --filter "./packages/*" build';
const COLUMNS = [
  'result',
  'scenario',
  'store',
  'lost',
  'stale',
  'exit codes',
  'recover ms',
  'max stall ms',
  'notes',
];

interface Entry {
  scenario: Scenario;
  kind: StoreKind;
}

function usage(): string {
  const lines = SCENARIOS.map((s) => `  ${s.name.padEnd(22)} ${s.stores.join(', ').padEnd(22)} ${s.summary}`);
  return `Usage: pnpm chaos [--verbose] [--list] [<scenario>[:<store>] ...]\n\nScenarios (stores):\n${lines.join('\n')}`;
}

function select(args: readonly string[]): { entries: Entry[]; left: string[] } {
  const all = SCENARIOS.flatMap((scenario) => scenario.stores.map((kind) => ({ scenario, kind })));
  const left: string[] = [];
  const byDefault = (entry: Entry) => {
    const reason = entry.scenario.onlyWhenNamed?.[entry.kind];
    if (reason !== undefined) left.push(`${entry.scenario.name}:${entry.kind} (${reason})`);
    return reason === undefined;
  };
  if (args.length === 0) return { entries: all.filter(byDefault), left };
  const chosen: Entry[] = [];
  for (const arg of args) {
    const [name, kind] = arg.split(':');
    const matches = all.filter(
      (entry) =>
        (entry.scenario.name === name || entry.scenario.name.startsWith(`${name}-`)) &&
        (kind === undefined || entry.kind === kind),
    );
    if (matches.length === 0) throw new UsageError(`No scenario matches ${JSON.stringify(arg)}.`);
    for (const match of kind === undefined ? matches.filter(byDefault) : matches) {
      if (!chosen.includes(match)) chosen.push(match);
    }
  }
  return { entries: chosen, left };
}

class UsageError extends Error {}

/** The game server runs the packages' built dist: it must exist and be newer than the sources. */
function checkBuilt(): string | undefined {
  const problems: string[] = [];
  for (const name of BUILT_PACKAGES) {
    const dir = join(REPO, 'packages', name);
    const dist = newest(join(dir, 'dist'));
    const src = newest(join(dir, 'src'));
    if (dist === undefined) problems.push(`packages/${name}/dist is missing`);
    else if (src !== undefined && src.mtime > dist.mtime + 1) {
      problems.push(`packages/${name}/dist is older than ${src.path.slice(REPO.length)}`);
    }
  }
  if (problems.length === 0) return undefined;
  return `The game server imports the packages as a user installs them (their dist):\n  ${problems.join('\n  ')}\nBuild them first: ${BUILD_COMMAND}`;
}

function newest(dir: string): { path: string; mtime: number } | undefined {
  let best: { path: string; mtime: number } | undefined;
  const walk = (path: string, depth: number) => {
    let entries: string[];
    try {
      entries = readdirSync(path);
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = join(path, entry);
      const stat = statSync(full);
      if (stat.isDirectory()) {
        if (depth < 8) walk(full, depth + 1);
      } else if (best === undefined || stat.mtimeMs > best.mtime) {
        best = { path: full, mtime: stat.mtimeMs };
      }
    }
  };
  walk(dir, 0);
  return best;
}

function cells(result: ScenarioResult): string[] {
  const figure = (value: number | null) => (value === null ? '-' : String(value));
  return [
    result.failures.length === 0 ? 'PASS' : 'FAIL',
    result.scenario,
    result.store,
    figure(result.lost),
    figure(result.stale),
    result.exits,
    figure(result.recoverMs),
    result.maxStallMs === null
      ? '-'
      : `${result.maxStallMs.toFixed(1)}${result.rawStallMs === null ? '' : ` (raw ${result.rawStallMs.toFixed(0)})`}`,
    [`${(result.durationMs / 1000).toFixed(1)} s`, ...result.notes].join('; '),
  ];
}

function table(results: readonly ScenarioResult[]): string {
  const rows = [COLUMNS, ...results.map(cells)];
  const widths = COLUMNS.map((_, column) =>
    column === COLUMNS.length - 1 ? 0 : Math.max(...rows.map((row) => row[column]!.length)),
  );
  const line = (row: readonly string[]) =>
    row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ');
  return [
    line(rows[0]!),
    widths.map((w) => '-'.repeat(Math.max(w, 5))).join('-|-'),
    ...rows.slice(1).map(line),
  ].join('\n');
}

/** Stores that could not be brought back after a scenario: their later scenarios fail at once. */
const broken = new Set<Store>();

function notRun(entry: Entry, store: Store, reason: string): ScenarioResult {
  const result = emptyResult(entry, store);
  result.failures.push(reason);
  return result;
}

function emptyResult(entry: Entry, store: Store): ScenarioResult {
  return {
    scenario: entry.scenario.name,
    store: store.label,
    lost: null,
    stale: null,
    exits: '-',
    recoverMs: null,
    maxStallMs: null,
    rawStallMs: null,
    loadAtRawStall: null,
    notes: [],
    failures: [],
    durationMs: 0,
  };
}

async function runEntry(
  entry: Entry,
  store: Store,
  servers: ReadonlyMap<StoreKind, Store>,
  verbose: boolean,
): Promise<ScenarioResult> {
  const { scenario } = entry;
  const result = emptyResult(entry, store);
  const cleanups: (() => Promise<void> | void)[] = [];
  const id = Math.random().toString(36).slice(2, 8);
  const namespace = `${scenario.name.replace(/-/g, '_')}_${id}`;
  const context: ScenarioContext = {
    store,
    namespace,
    url: urlOf(store, namespace),
    progress: (message) => {
      if (verbose) console.log(`    ${scenario.name}:${entry.kind} ${message}`);
    },
    defer: (cleanup) => {
      cleanups.push(cleanup);
    },
    servers,
  };
  const started = performance.now();
  if (broken.has(store)) {
    result.failures.push(`not run: ${store.label} was left unusable by an earlier scenario`);
    return result;
  }
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  try {
    const limit = new Promise<'limit'>((resolve) => {
      timer = setTimeout(() => resolve('limit'), scenario.limitMs);
    });
    running = scenario.run(context, result);
    const outcome = await Promise.race([running.then(() => 'done' as const), limit]);
    if (outcome === 'limit') result.failures.push(`time limit of ${scenario.limitMs / 1000} s exceeded`);
  } catch (error) {
    result.failures.push(
      `scenario error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
  } finally {
    clearTimeout(timer);
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        result.notes.push(`cleanup failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    // A scenario stopped by its time limit must not touch the store during the next one: with its game
    // servers killed and its proxy closed it ends quickly; wait for that (bounded).
    await Promise.race([running?.catch(() => {}), sleep(30_000)]);
    result.durationMs = performance.now() - started;
  }
  if (!(await ensureHealthy(store, result))) broken.add(store);
  return result;
}

/**
 * After a scenario the store must answer again (resumed, restarted) before the next one uses it. Resolves
 * false when it cannot be brought back.
 */
async function ensureHealthy(store: Store, result: ScenarioResult): Promise<boolean> {
  const ping = () =>
    readPlayers(store, 'health_check').then(
      () => true,
      () => false,
    );
  if (await ping()) return true;
  result.notes.push(`${store.label} unhealthy after the scenario`);
  try {
    await store.server.resume?.();
    if (await ping()) return true;
    await store.server.restart();
    if (await ping()) return true;
  } catch (error) {
    result.failures.push(
      `${store.label} could not be brought back after the scenario: ${error instanceof Error ? error.message : String(error)}`,
    );
    return false;
  }
  result.failures.push(`${store.label} does not answer after a restart`);
  return false;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const verbose = args.includes('--verbose') || args.includes('-v');
  if (args.includes('--help') || args.includes('-h') || args.includes('--list')) {
    console.log(usage());
    return 0;
  }
  const { entries, left } = select(args.filter((arg) => !arg.startsWith('-')));
  const unbuilt = checkBuilt();
  if (unbuilt !== undefined && process.env.CHAOS_STALE_DIST_OK === '1') {
    console.warn(`!!! ${unbuilt}\n!!! CHAOS_STALE_DIST_OK=1: running on the dist as it is`);
  } else if (unbuilt !== undefined) {
    console.error(unbuilt);
    return 2;
  }

  const suiteStarted = performance.now();
  const kinds = STORE_KINDS.filter((kind) =>
    entries.some((entry) => entry.kind === kind || entry.scenario.servers?.includes(kind)),
  );
  console.log(
    `cagey-sessions chaos: ${entries.length} scenario runs on ${kinds.join(', ')}; ` +
      `two-nodes runs last ${twoNodesDurationMs() / 1000} s each, presence runs ${presenceDurationMs() / 1000} s ` +
      "(the issues' minute, scaled down to keep the suite near 8 minutes)",
  );
  for (const entry of left) console.log(`not run by default: ${entry}`);
  const stores = new Map<StoreKind, Store>();
  const skipped: string[] = [];
  try {
    const started = await Promise.allSettled(kinds.map((kind) => startStore(kind)));
    let startFailed = false;
    started.forEach((outcome, index) => {
      const kind = kinds[index]!;
      if (outcome.status === 'rejected') {
        console.error(`!!! ${kind} server failed to start: ${String(outcome.reason)}`);
        startFailed = true;
      } else if (outcome.value === undefined) {
        skipped.push(kind);
      } else {
        stores.set(kind, outcome.value);
      }
    });
    if (startFailed) return 2;
    if (skipped.length > 0) {
      const message = `!!! chaos: ${skipped.join(', ')} not installed (bash tools/test-servers/install-servers.sh && bash tools/test-servers/build-ferretdb.sh)`;
      if (process.env.CI === 'true') {
        console.error(`${message}; CI=true: a missing server is a failure`);
        return 2;
      }
      console.warn(`\n${message}\n!!! their scenarios are SKIPPED\n`);
    }
    console.log(`servers up in ${Math.round(performance.now() - suiteStarted)} ms\n${COLUMNS.join(' | ')}`);

    const results: ScenarioResult[] = [];
    for (const entry of entries) {
      const store = stores.get(entry.kind);
      if (store === undefined || entry.scenario.servers?.some((kind) => !stores.has(kind))) continue;
      const result =
        performance.now() - suiteStarted < SUITE_LIMIT_MS
          ? await runEntry(entry, store, stores, verbose)
          : notRun(entry, store, `not run: the suite's ${SUITE_LIMIT_MS / 60_000} minute limit was reached`);
      results.push(result);
      console.log(cells(result).join(' | '));
      for (const failure of result.failures) console.log(`    FAILED: ${failure}`);
    }

    const failed = results.filter((result) => result.failures.length > 0);
    console.log(`\n${table(results)}\n`);
    if (skipped.length > 0) console.log(`SKIPPED (not installed): ${skipped.join(', ')}`);
    console.log(
      `${results.length - failed.length}/${results.length} passed in ${((performance.now() - suiteStarted) / 1000).toFixed(0)} s` +
        (failed.length > 0 ? `; FAILED: ${failed.map((r) => `${r.scenario}:${r.store}`).join(', ')}` : ''),
    );
    return failed.length > 0 ? 1 : 0;
  } finally {
    killAllGames();
    await Promise.allSettled([...stores.values()].map((store) => store.server.stop()));
  }
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  console.error('\ninterrupted: stopping game servers and test servers (Ctrl-C again to exit at once)');
  killAllGames();
  // The test servers are stopped by their own exit handler.
  void sleep(0).then(() => process.exit(130));
});

main().then(
  (code) => {
    process.exitCode = code;
    // Everything is stopped; a driver handle left open must not keep the run alive.
    setTimeout(() => process.exit(code), 2_000).unref();
  },
  (error: unknown) => {
    console.error(error instanceof UsageError ? `${error.message}\n\n${usage()}` : error);
    process.exit(2);
  },
);
