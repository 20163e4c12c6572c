/**
 * `pnpm demo --nodes 3`: several game servers on one store and one presence, bots reconnecting to any of them
 * at random. A player who comes back on another server is taken over from the one holding it: that server
 * closes the old connection (4003), stores the player, and only then does the new login load it.
 *
 * The store must be a server (a multi-process PGlite is impossible): PostgreSQL from DATABASE_URL, or one started
 * for the run through tools/test-servers. The presence is PostgreSQL by default (on that server), Redis with
 * `--presence redis` or when REDIS_URL is set. At the end every player is read back and compared with what the
 * servers last acknowledged to their bot, and the servers' session logs are checked for a player live on two
 * servers at once.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '@cagey-sessions/test-servers';
import { startBots } from './bots.js';
import { UsageError } from './cli.js';
import { isPresenceKind, type LifeLine, type PresenceKind } from './cluster-node.js';
import type { Player } from './game.js';
import { launchServer, type ServerExit, type ServerProcess } from './launch.js';
import { describeUrl, openStore, STORE_URL_VARIABLES, type StoreKind } from './stores.js';
import { compareWithStore, describeDifference, missingPurchases, readAll } from './verify.js';

export interface ClusterDemoOptions {
  nodes: number;
  /** Default: redis when REDIS_URL is set, else postgres. */
  presence: PresenceKind | undefined;
  store: Extract<StoreKind, 'postgres' | 'redis' | 'mongo'>;
  players: number;
  adversarial: number;
  durationMs: number;
  graceMs: number;
  intervalMs: number;
  callTimeoutMs: number;
  seed: number;
  dataDir: string;
  namespace: string;
  reportFile: string | undefined;
}

export interface ClusterSummary {
  nodes: number;
  store: string;
  presence: PresenceKind;
  players: number;
  durationMs: number;
  actions: number;
  purchases: number;
  /** Logins that met another server holding the player and took it over (released, or its lease expired). */
  handoffs: number;
  handoffP50Ms: number | undefined;
  handoffP99Ms: number | undefined;
  /** Logins that gave up waiting for another server (HANDOFF_TIMEOUT, presence unreachable). */
  handoffsFailed: number;
  /** Connections the bots saw closed with 4003 (their player logged in on another server). */
  closedHandedOff: number;
  sessions: number;
  /** Pairs of sessions of one player on two servers that overlap in time, from the servers' logs. */
  liveOnTwoNodes: number;
  checked: number;
  differences: number;
  missingPurchases: number;
  serverExitCodes: (number | null)[];
  botErrors: number;
  ok: boolean;
}

const LEASE_TTL = '3s';

/** Throwaway servers for the run, when the environment names none. */
async function serversFor(
  options: ClusterDemoOptions,
  presence: PresenceKind,
  say: (line: string) => void,
): Promise<{ env: NodeJS.ProcessEnv; started: RunningServer[] }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const started: RunningServer[] = [];
  const { startPostgres, startRedis } = await import('@cagey-sessions/test-servers');
  const needPostgres = options.store === 'postgres' || presence === 'postgres';
  if (needPostgres && !env.DATABASE_URL) {
    say('  starting a PostgreSQL server for the run (tools/test-servers; set DATABASE_URL to use yours)...');
    const server = await startPostgres();
    started.push(server);
    env.DATABASE_URL = server.url;
  }
  if (presence === 'redis' && !env.REDIS_URL && !env.PRESENCE_URL) {
    say('  starting a Redis server for the presence (tools/test-servers)...');
    const server = await startRedis();
    started.push(server);
    env.REDIS_URL = server.url;
  }
  return { env, started };
}

export async function runCluster(
  options: ClusterDemoOptions,
  out: NodeJS.WriteStream = process.stdout,
): Promise<ClusterSummary> {
  const say = (line = '') => out.write(`${line}\n`);
  const presence: PresenceKind = options.presence ?? (process.env.REDIS_URL ? 'redis' : 'postgres');
  mkdirSync(options.dataDir, { recursive: true });
  say(
    `cagey-sessions demo: ${options.players} bot players for ${seconds(options.durationMs)} on ${options.nodes} ` +
      `game servers, ${options.store} store, ${presence} presence`,
  );
  const { env, started } = await serversFor(options, presence, say);
  const servers: ServerProcess[] = [];
  try {
    const authSecret = randomBytes(24).toString('base64url');
    const livesLogs: string[] = [];
    for (let i = 1; i <= options.nodes; i++) {
      const livesLog = join(options.dataDir, `lives-node${i}.jsonl`);
      const logFile = join(options.dataDir, `server-${options.store}-node${i}.log`);
      writeFileSync(livesLog, '');
      writeFileSync(logFile, '');
      livesLogs.push(livesLog);
      servers.push(
        await launchServer({
          store: options.store,
          dataDir: options.dataDir,
          namespace: options.namespace,
          graceMs: options.graceMs,
          intervalMs: options.intervalMs,
          callTimeoutMs: options.callTimeoutMs,
          authSecret,
          logFile,
          env,
          args: [
            `--presence=${presence}`,
            `--node-id=node${i}`,
            `--lease-ttl=${LEASE_TTL}`,
            `--lives-log=${livesLog}`,
          ],
        }),
      );
      say(`  node${i}   ${servers.at(-1)!.url} (log ${logFile})`);
    }
    const location = describeUrl(env[STORE_URL_VARIABLES[options.store][0]] ?? '');
    say(`  store   ${servers[0]!.location}`);
    say(
      `  bots    seed ${options.seed}; each connection goes to one of the ${options.nodes} servers at random`,
    );
    say();

    const fleet = startBots({
      url: servers[0]!.url,
      urls: servers.map((server) => server.url),
      players: options.players,
      adversarial: options.adversarial,
      durationMs: options.durationMs,
      graceMs: options.graceMs,
      seed: options.seed,
      authSecret,
    });
    const interrupt = () => fleet.stop();
    process.once('SIGINT', interrupt);
    const startedAt = performance.now();
    await fleet.done;
    process.off('SIGINT', interrupt);
    const durationMs = performance.now() - startedAt;
    say(
      `  played for ${seconds(durationMs)}; stopping the servers (SIGTERM), then reading every player back`,
    );

    const exits: ServerExit[] = await Promise.all(servers.map((server) => server.stop('SIGTERM', 60_000)));
    servers.length = 0;
    await fleet.close();

    // What each bot was last told is what the store must hold.
    const expected = new Map<string, Player>();
    for (const bot of fleet.bots) if (bot.state !== undefined) expected.set(bot.userId, bot.state);
    const store = await openStore(options.store, {
      dataDir: options.dataDir,
      namespace: options.namespace,
      env,
    });
    let differences: Awaited<ReturnType<typeof compareWithStore>>;
    let missing = 0;
    try {
      const read = async (userId: string) => (await store.adapter.load(userId))?.userData;
      differences = await compareWithStore(expected, read);
      const stored = await readAll(
        fleet.bots.filter((bot) => bot.acknowledged.length > 0).map((bot) => bot.userId),
        read,
      );
      for (const bot of fleet.bots) {
        if (bot.acknowledged.length > 0)
          missing += missingPurchases(stored.get(bot.userId), bot.acknowledged).length;
      }
    } finally {
      await store.close();
    }

    const lines = livesLogs.flatMap(readLives);
    const overlaps = overlapping(lines);
    const handoffs = lines.filter(
      (line): line is Extract<LifeLine, { event: 'handoff' }> =>
        line.event === 'handoff' && (line.outcome === 'released' || line.outcome === 'expired'),
    );
    const failedHandoffs = lines.filter(
      (line) => line.event === 'handoff' && line.outcome !== 'released' && line.outcome !== 'expired',
    ).length;
    const latencies = handoffs.map((line) => line.ms).sort((a, b) => a - b);
    const totals = fleet.totals();
    const summary: ClusterSummary = {
      nodes: options.nodes,
      store: `${options.store} ${location}`,
      presence,
      players: options.players,
      durationMs,
      actions: totals.actions,
      purchases: totals.purchases,
      handoffs: handoffs.length,
      handoffP50Ms: percentile(latencies, 50),
      handoffP99Ms: percentile(latencies, 99),
      handoffsFailed: failedHandoffs,
      closedHandedOff: totals.closedHandedOff,
      sessions: lines.filter((line) => line.event === 'start').length,
      liveOnTwoNodes: overlaps.length,
      checked: expected.size,
      differences: differences.length,
      missingPurchases: missing,
      serverExitCodes: exits.map((exit) => exit.code),
      botErrors: totals.errors + totals.mismatches + totals.lostPurchases,
      ok: false,
    };
    summary.ok =
      summary.liveOnTwoNodes === 0 &&
      summary.differences === 0 &&
      summary.missingPurchases === 0 &&
      summary.botErrors === 0 &&
      summary.serverExitCodes.every((code) => code === 0);

    const ms = (value: number | undefined) => (value === undefined ? '-' : `${value.toFixed(1)} ms`);
    say();
    say(`  actions        ${fmt(summary.actions)} acknowledged, ${fmt(summary.purchases)} purchases stored`);
    say(
      `  handoffs       ${fmt(summary.handoffs)} (a login on one server took the player over from another; ` +
        `p50 ${ms(summary.handoffP50Ms)}, p99 ${ms(summary.handoffP99Ms)}), ${fmt(failedHandoffs)} gave up`,
    );
    say(`                 ${fmt(summary.closedHandedOff)} bot connections closed with 4003 (handed off)`);
    say(
      `  players live on two nodes at once: ${summary.liveOnTwoNodes} ` +
        `(from the servers' logs of ${fmt(summary.sessions)} sessions)`,
    );
    for (const overlap of overlaps.slice(0, 5)) say(`    ${overlap}`);
    say(
      `  read back      ${fmt(summary.checked)} players: ${summary.differences} differ from what the servers last ` +
        `acknowledged, ${summary.missingPurchases} acknowledged purchases missing`,
    );
    for (const difference of differences.slice(0, 5)) say(`    ${describeDifference(difference)}`);
    if (summary.botErrors > 0) {
      const last = fleet.bots.find((bot) => bot.lastError !== undefined)?.lastError;
      say(`  bot errors     ${summary.botErrors}${last === undefined ? '' : `, e.g. ${last}`}`);
    }
    say(`  servers        exit codes ${summary.serverExitCodes.join(', ')}`);
    say(summary.ok ? '\nOK' : '\nFAILED');
    if (options.reportFile !== undefined) {
      writeFileSync(options.reportFile, `${JSON.stringify(summary, null, 2)}\n`);
    }
    return summary;
  } finally {
    await Promise.allSettled(servers.map((server) => server.stop('SIGKILL', 5_000)));
    await Promise.allSettled(started.map((server) => server.stop()));
  }
}

function readLives(file: string): LifeLine[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LifeLine);
}

/** Sessions of one player on two servers that overlap in time (a session still open at the end ends then). */
export function overlapping(lines: readonly LifeLine[]): string[] {
  const lives = new Map<string, { node: string; userId: string; start: number; end: number }>();
  for (const line of lines) {
    if (line.event === 'start') {
      lives.set(`${line.node}/${line.life}`, {
        node: line.node,
        userId: line.userId,
        start: line.at,
        end: Number.POSITIVE_INFINITY,
      });
    } else if (line.event === 'end') {
      const life = lives.get(`${line.node}/${line.life}`);
      if (life !== undefined) life.end = line.at;
    }
  }
  const byUser = new Map<string, { node: string; start: number; end: number }[]>();
  for (const life of lives.values()) {
    const list = byUser.get(life.userId) ?? [];
    list.push(life);
    byUser.set(life.userId, list);
  }
  const found: string[] = [];
  for (const [userId, list] of byUser) {
    list.sort((a, b) => a.start - b.start);
    let latest: { node: string; end: number } | undefined;
    for (const life of list) {
      if (latest !== undefined && life.start < latest.end) {
        found.push(
          `${userId}: on ${latest.node} and ${life.node} for ${(latest.end - life.start).toFixed(1)} ms`,
        );
      }
      if (latest === undefined || life.end > latest.end) latest = life;
    }
  }
  return found;
}

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

const number = new Intl.NumberFormat('en-US');
const fmt = (n: number) => number.format(Math.round(n));
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

/** The demo's options for a run on several servers; UsageError for what such a run cannot do. */
export function clusterOptions(options: {
  store: StoreKind;
  mode: string;
  nodes: number;
  presence: string | undefined;
  players: number;
  adversarial: number;
  durationMs: number;
  graceMs: number;
  intervalMs: number;
  callTimeoutMs: number;
  seed: number;
  dataDir: string;
  namespace: string;
  reportFile: string | undefined;
}): ClusterDemoOptions {
  if (options.mode !== 'graceful')
    throw new UsageError('--crash and --outage run on one server: drop --nodes.');
  if (options.store === 'memory') {
    throw new UsageError(
      '--nodes needs a store the servers share: postgres (the default with --nodes), redis or mongo.',
    );
  }
  if (options.presence !== undefined && !isPresenceKind(options.presence)) {
    throw new UsageError('--presence must be postgres or redis.');
  }
  return {
    ...options,
    // PGlite lives in one process: several servers share a PostgreSQL server instead.
    store: options.store === 'pglite' ? 'postgres' : options.store,
    presence: options.presence,
  };
}
