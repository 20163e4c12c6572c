import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type FaultProxy, startFaultProxy } from '@cagey-sessions/fault-proxy';
import { GameCommandError, type GameConfig, GameProcess, type PersistenceConfig } from './game.js';
import { readPlayers, type Store, type StoredPlayer, type StoreKind } from './stores.js';

/** One line of the report. `null` figures print as `-` (not measured or not applicable). */
export interface ScenarioResult {
  scenario: string;
  store: string;
  lost: number | null;
  stale: number | null;
  exits: string;
  recoverMs: number | null;
  /**
   * The game loop's longest stall that the game process's own work accounts for (lateness of a 5 ms tick,
   * capped by the CPU time the process used meanwhile), ms.
   */
  maxStallMs: number | null;
  /** The longest lateness of a tick as measured (includes time the machine did not run the process), ms. */
  rawStallMs: number | null;
  /** 1-minute load average when the raw stall happened. */
  loadAtRawStall: number | null;
  notes: string[];
  /** Expectations that did not hold, with their evidence. Empty: passed. */
  failures: string[];
  durationMs: number;
}

export interface ScenarioContext {
  store: Store;
  /** Unique per scenario run: names the table / key prefix / collection. */
  namespace: string;
  /** The store URL for this scenario's data (direct; hand `proxy.urlFor(url)` to the game). */
  url: string;
  /** Progress lines (printed indented, only with --verbose). */
  progress(message: string): void;
  /** Registers cleanup that runs when the scenario ends, however it ends (LIFO). */
  defer(cleanup: () => Promise<void> | void): void;
  /** The other servers the scenario asked for (`Scenario.servers`), by kind. */
  servers: ReadonlyMap<StoreKind, Store>;
}

export interface Scenario {
  /** Name used on the command line (`pnpm chaos <name>` or `<name>:<store>`). */
  name: string;
  /** One sentence: what it does and proves. */
  summary: string;
  stores: readonly StoreKind[];
  /**
   * Stores in `stores` that run only when named explicitly (`<name>:<store>`), with the reason, printed when
   * they are left out.
   */
  onlyWhenNamed?: Partial<Record<StoreKind, string>>;
  /** Servers the scenario needs besides its store (e.g. the one its presence runs on). */
  servers?: readonly StoreKind[];
  /** Hard limit for one run on one store; the runner kills the scenario's processes after it. */
  limitMs: number;
  run(context: ScenarioContext, result: ScenarioResult): Promise<void>;
}

/** The stall figures a game reports (stats, or its last log line). */
export interface StallFigures {
  maxStallMs?: unknown;
  maxBusyStallMs?: unknown;
  loadAtMaxStall?: unknown;
}

/** Takes the worst of `figures` into the result's stall columns. */
export function recordStall(result: ScenarioResult, from: object | undefined): void {
  if (from === undefined) return;
  const figures = from as StallFigures;
  if (typeof figures.maxBusyStallMs === 'number') {
    result.maxStallMs = Math.max(result.maxStallMs ?? 0, figures.maxBusyStallMs);
  }
  if (typeof figures.maxStallMs === 'number' && figures.maxStallMs >= (result.rawStallMs ?? 0)) {
    result.rawStallMs = figures.maxStallMs;
    result.loadAtRawStall = typeof figures.loadAtMaxStall === 'number' ? figures.loadAtMaxStall : null;
  }
}

/** Records an expectation; a false one is a failure with its evidence. Returns `ok`. */
export function expect(result: ScenarioResult, ok: boolean, failure: string): boolean {
  if (!ok) result.failures.push(failure);
  return ok;
}

/**
 * What the game acknowledged and what it held: the ground truth the stored data is compared with.
 * Counters only grow, so "older" is "smaller counter".
 */
export class Ledger {
  /** Highest counter the game acknowledged as stored (persistNow resolved) per user. */
  readonly acked = new Map<string, number>();
  /** The counter the game held last per user (its newest data). */
  readonly held = new Map<string, number>();

  ack(userId: string, counter: number): void {
    if (counter > (this.acked.get(userId) ?? -1)) this.acked.set(userId, counter);
    this.hold(userId, counter);
  }

  hold(userId: string, counter: number): void {
    if (counter > (this.held.get(userId) ?? -1)) this.held.set(userId, counter);
  }

  holdAll(counters: Record<string, number>): void {
    for (const [userId, counter] of Object.entries(counters)) this.hold(userId, counter);
  }
}

export interface Verdict {
  /** Users whose acknowledged data is not stored (stored counter below the acknowledged one, or no record). */
  lost: string[];
  /** Users whose stored data is older than the newest the game held (and not reported unsaved). */
  stale: string[];
  /** Users stored with a counter the game never reached (data from nowhere). */
  ahead: string[];
}

/**
 * Compares the store with the ledger. `expectNewest`: every user held must be stored with their newest
 * data, except users in `excused` (reported unsaved by the game).
 */
export function judge(
  ledger: Ledger,
  stored: Map<string, StoredPlayer>,
  options: { expectNewest: boolean; excused?: ReadonlySet<string> },
): Verdict {
  const lost: string[] = [];
  const stale: string[] = [];
  const ahead: string[] = [];
  for (const [userId, counter] of ledger.acked) {
    if ((stored.get(userId)?.counter ?? -1) < counter) lost.push(userId);
  }
  for (const [userId, counter] of ledger.held) {
    const have = stored.get(userId)?.counter ?? -1;
    if (have > counter) ahead.push(userId);
    else if (options.expectNewest && have < counter && !options.excused?.has(userId)) stale.push(userId);
  }
  return { lost, stale, ahead };
}

/**
 * Judges the store against the ledger (see `judge`, with `expectNewest`) and records the verdict in `result`:
 * the lost and stale counts, and a failed expectation for acknowledged data lost, for newest data not stored
 * (worded by `staleMessage`) and for stored data the game never had.
 */
export function expectStoreMatches(
  result: ScenarioResult,
  ledger: Ledger,
  stored: Map<string, StoredPlayer>,
  {
    excused,
    staleMessage = 'newest data not stored',
  }: { excused?: ReadonlySet<string>; staleMessage?: string } = {},
): void {
  const verdict = judge(ledger, stored, {
    expectNewest: true,
    ...(excused === undefined ? {} : { excused }),
  });
  result.lost = verdict.lost.length;
  result.stale = verdict.stale.length;
  const describe = (userId: string) =>
    `${userId} stored ${stored.get(userId)?.counter ?? 'nothing'}, acked ${ledger.acked.get(userId) ?? '-'}, held ${ledger.held.get(userId)}`;
  expect(result, verdict.lost.length === 0, `acknowledged data lost: ${examples(verdict.lost, describe)}`);
  expect(result, verdict.stale.length === 0, `${staleMessage}: ${examples(verdict.stale, describe)}`);
  expect(
    result,
    verdict.ahead.length === 0,
    `stored data the game never had: ${examples(verdict.ahead, describe)}`,
  );
}

/** "3 (u1 stored 4 < 5, ...)" for a failure message. */
export function examples(users: readonly string[], describe: (userId: string) => string, count = 3): string {
  const shown = users.slice(0, count).map(describe).join('; ');
  return `${users.length}${users.length > 0 ? ` (${shown}${users.length > count ? '; ...' : ''})` : ''}`;
}

export function userIds(count: number, prefix = 'u'): string[] {
  const width = String(count - 1).length;
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(width, '0')}`);
}

/** Persistence settings a store needs: FerretDB 1.x wants batches of 50, one at a time (see adapter-mongo). */
export function storeTuning(kind: StoreKind): PersistenceConfig {
  return kind === 'mongo' ? { batchSize: 50, concurrency: 1 } : {};
}

/** A fault proxy in front of the store, closed when the scenario ends. */
export async function proxyFor(context: ScenarioContext): Promise<FaultProxy> {
  const { server } = context.store;
  const proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
  context.defer(() => proxy.close());
  return proxy;
}

/** Starts a game server for this scenario; it is SIGKILLed when the scenario ends if still running. */
export async function startGame(
  context: ScenarioContext,
  config: Omit<GameConfig, 'store' | 'namespace'>,
): Promise<GameProcess> {
  const game = await GameProcess.start({
    ...config,
    store: context.store.kind,
    namespace: context.namespace,
    lifetimeMs: config.lifetimeMs ?? 240_000,
  });
  context.defer(() => {
    game.kill9();
    keepLogs(context, game);
  });
  return game;
}

/** Logs `users` in on `game` in chunks; throws when any login failed. */
export async function loginAll(game: GameProcess, users: readonly string[], ledger?: Ledger): Promise<void> {
  for (let i = 0; i < users.length; i += 2000) {
    const chunk = users.slice(i, i + 2000);
    const { loaded, failed } = await game.request<{
      loaded: Record<string, number>;
      failed: Record<string, unknown>;
    }>('login', { users: chunk, concurrency: 16 }, 120_000);
    const failures = Object.keys(failed);
    if (failures.length > 0) {
      throw new Error(
        `${game.name}: ${failures.length} logins failed, e.g. ${JSON.stringify(failed[failures[0]!])}`,
      );
    }
    ledger?.holdAll(loaded);
  }
}

export interface PurchaseOutcome {
  userId: string;
  ok: boolean;
  counter?: number;
  token?: string;
  /** Parent-side latency, ms. */
  ms: number;
  code?: string;
  error?: string;
}

/** One purchase (mutate + persistNow); never rejects. An ok outcome is acknowledged in `ledger`. */
export async function purchase(
  game: GameProcess,
  userId: string,
  ledger: Ledger | undefined,
  timeoutMs = 30_000,
): Promise<PurchaseOutcome> {
  const started = performance.now();
  try {
    const reply = await game.request<{ counter: number; token: string }>('purchase', { userId }, timeoutMs);
    ledger?.ack(userId, reply.counter);
    return { userId, ok: true, counter: reply.counter, token: reply.token, ms: performance.now() - started };
  } catch (error) {
    const outcome: PurchaseOutcome = {
      userId,
      ok: false,
      ms: performance.now() - started,
      error: error instanceof Error ? error.message : String(error),
    };
    if (error instanceof GameCommandError && error.code !== undefined) outcome.code = error.code;
    return outcome;
  }
}

/** Runs `operation` over `items`, `limit` at a time. */
export async function inParallel<T, R>(
  items: readonly T[],
  limit: number,
  operation: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await operation(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes; resolves whether it did. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 200,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return false;
}

export function round(ms: number): number {
  return Math.round(ms);
}

/** Reads the scenario's players with the raw driver; a store that cannot be read is a failure, not a crash. */
export async function readStored(
  context: ScenarioContext,
  result: ScenarioResult,
): Promise<Map<string, StoredPlayer> | undefined> {
  try {
    return await readPlayers(context.store, context.namespace);
  } catch (error) {
    result.failures.push(
      `the store could not be read back with the raw driver: ${error instanceof Error ? error.message : String(error)}`,
    );
    return undefined;
  }
}

/** With CHAOS_LOG_DIR set, each game server's log lines go to `<dir>/<namespace>-<store>-<node>.jsonl`. */
function keepLogs(context: ScenarioContext, game: GameProcess): void {
  const dir = process.env.CHAOS_LOG_DIR;
  if (!dir) return;
  const lines = [...game.logs.map((line) => JSON.stringify(line)), ...game.otherOutput];
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${context.namespace}-${context.store.kind}-${game.name}.jsonl`),
    `${lines.join('\n')}\n`,
  );
}
