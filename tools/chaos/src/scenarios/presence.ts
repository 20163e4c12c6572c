/**
 * Three game-server processes sharing one store and one presence (Redis or PostgreSQL); 300 players hop between
 * them at random, each move a login on the new node that takes the player over from the node holding it (the
 * old session is `kicked`, stores the newest data, and only then is the player released). The `-kill9` runs
 * SIGKILL one node halfway: its players are taken over once its lease expires, and the store is fenced.
 *
 * Checked from the nodes' own logs and the store read back with the raw driver:
 * - overlapping lives: 0 (no user ever had live sessions on two nodes at once: every node logs each session's
 *   start and end on the machine's clock);
 * - acknowledged updates lost: 0, and the final counter is exactly the newest acknowledged one unless a change's
 *   fate was unknown (its `persistNow()` rejected or never answered);
 * - stale overwrites: 0 (acknowledged counters of a player are distinct and their versions grow with them; the
 *   store, sampled every second, never goes back in counter or version);
 * - after the kill, every player the killed node held logs in elsewhere within leaseTtl plus one renewal
 *   period (plus a second of slack for a loaded machine: a correctness bound, not a speed target).
 */
import { GameCommandError, type GameProcess, type LogLine, sleep } from '../lib/game.js';
import {
  examples,
  expect,
  readStored,
  type Scenario,
  type ScenarioContext,
  type ScenarioResult,
  startGame,
  storeTuning,
  userIds,
} from '../lib/scenario.js';
import { readPlayers, type StoredPlayer, type StoreKind } from '../lib/stores.js';

const NODES = 3;
const LEASE_TTL_MS = 3_000;
const RENEWAL_MS = LEASE_TTL_MS / 3;
/** Slack over leaseTtl + one renewal for the takeover bound: claims look again every 250 ms, the machine is shared. */
const TAKEOVER_SLACK_MS = 1_000;
const HANDOFF_TIMEOUT_MS = 10_000;
const SAMPLE_EVERY_MS = 1_000;
/** Chance that a move goes to another node (a handoff) rather than staying. */
const HOP = 0.4;
/** Chance that a hop logs out first (a clean move, no kick). */
const LOGOUT_FIRST = 0.1;
/** Chance that a move connects to two nodes at once (the second login kicks the first). */
const DOUBLE = 0.03;

type PresenceKind = 'redis' | 'postgres';

/** The issue asks for a minute; CI runs 20 s per run to keep the suite reasonable. */
export function presenceDurationMs(): number {
  const seconds = Number(process.env.CHAOS_PRESENCE_SECONDS ?? 20);
  return Number.isFinite(seconds) && seconds > 0 && seconds <= 600 ? seconds * 1_000 : 20_000;
}

function players(): number {
  const count = Number(process.env.CHAOS_PRESENCE_PLAYERS ?? 300);
  return Number.isSafeInteger(count) && count > 0 && count <= 10_000 ? count : 300;
}

/** `CHAOS_SEED` replays a run's choices (each player's moves come from its own generator). */
function seed(): number {
  const given = Number(process.env.CHAOS_SEED);
  return Number.isSafeInteger(given) ? given : Math.floor(Math.random() * 2 ** 31);
}

function scenario(presence: PresenceKind, kill: boolean): Scenario {
  const other: StoreKind = presence === 'redis' ? 'mongo' : 'redis';
  return {
    name: `presence-${presence}${kill ? '-kill9' : ''}`,
    summary:
      `3 game processes, ${presence === 'redis' ? 'Redis' : 'PostgreSQL'} presence, 300 players hopping at random` +
      `${kill ? ', one node SIGKILLed halfway' : ''}: 0 overlapping lives, 0 acked lost, 0 stale` +
      `${kill ? ', takeover within leaseTtl + renewal' : ''}`,
    stores: kill ? [presence === 'redis' ? 'postgres' : 'redis'] : ['postgres', other],
    servers: [presence],
    limitMs: presenceDurationMs() + 90_000,
    run: (context, result) => run(context, result, presence, kill),
  };
}

export const presenceRedis = scenario('redis', false);
export const presencePostgres = scenario('postgres', false);
export const presenceRedisKill9 = scenario('redis', true);
export const presencePostgresKill9 = scenario('postgres', true);

/** A small seeded generator: floats in [0, 1). */
function mulberry32(state: number): () => number {
  let a = state | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The machine's clock, comparable with the nodes' `at` (they use the same expression). */
const clock = () => performance.timeOrigin + performance.now();

interface Node {
  name: string;
  game: GameProcess;
  /** `clock()` of the SIGKILL, when it was killed. */
  killedAt?: number;
}

interface Ack {
  counter: number;
  version: number;
}

interface Player {
  id: string;
  random: () => number;
  home: Node | undefined;
  acks: Ack[];
  /** Changes whose fate is unknown: `persistNow()` rejected, or the node died before answering. */
  unknown: number;
  /** Wakes the player from its pause (the kill wakes the killed node's players at once). */
  wake?: () => void;
}

interface Counts {
  plays: number;
  acked: number;
  hops: number;
  logouts: number;
  doubles: number;
  /** Logins refused, by code (nothing changed: a double connection's loser, a handoff timeout...). */
  refused: Map<string, number>;
  unknown: number;
  /** Store samples that went back in counter or version. */
  regressions: string[];
}

async function run(
  context: ScenarioContext,
  result: ScenarioResult,
  presenceKind: PresenceKind,
  kill: boolean,
): Promise<void> {
  const durationMs = presenceDurationMs();
  const runSeed = seed();
  const presenceServer = context.servers.get(presenceKind);
  if (presenceServer === undefined) throw new Error(`no ${presenceKind} server for the presence`);
  result.notes.push(`seed ${runSeed} (CHAOS_SEED)`, `${durationMs / 1000} s (CHAOS_PRESENCE_SECONDS)`);
  const presence = {
    kind: presenceKind,
    url: presenceServer.url,
    name: presenceKind === 'redis' ? `chaos-presence:${context.namespace}` : `presence_${context.namespace}`,
    leaseTtl: LEASE_TTL_MS,
    handoffTimeout: HANDOFF_TIMEOUT_MS,
  };
  const nodes: Node[] = [];
  for (let i = 0; i < NODES; i++) {
    const name = `n${i + 1}`;
    const game = await startGame(context, {
      node: name,
      script: 'presence-node',
      url: context.url,
      presence,
      persistence: { events: ['disconnect'], callTimeout: '5s', ...storeTuning(context.store.kind) },
    });
    nodes.push({ name, game });
  }
  context.progress(`3 nodes up (${presenceKind} presence on ${context.store.label})`);

  const counts: Counts = {
    plays: 0,
    acked: 0,
    hops: 0,
    logouts: 0,
    doubles: 0,
    refused: new Map(),
    unknown: 0,
    regressions: [],
  };
  const everyone: Player[] = userIds(players(), 'p').map((id, index) => ({
    id,
    random: mulberry32(runSeed + index * 7919),
    home: undefined,
    acks: [],
    unknown: 0,
  }));
  const alive = () => nodes.filter((node) => node.killedAt === undefined);
  const started = performance.now();
  const end = started + durationMs;
  // FerretDB's single writer is slower: its players pause longer between moves.
  const pauseScale = context.store.kind === 'mongo' ? 2 : 1;

  const play = async (player: Player, node: Node): Promise<void> => {
    counts.plays++;
    try {
      const reply = await node.game.request<{ counter: number; version: number }>(
        'play',
        { userId: player.id },
        HANDOFF_TIMEOUT_MS + 20_000,
      );
      player.acks.push({ counter: reply.counter, version: reply.version });
      counts.acked++;
    } catch (error) {
      const info = error instanceof GameCommandError ? error.info : undefined;
      const phase = (info as { phase?: string } | undefined)?.phase;
      if (phase === 'identify') {
        const code = info?.code ?? 'ERROR';
        counts.refused.set(code, (counts.refused.get(code) ?? 0) + 1);
      } else {
        // Rejected while storing, or no answer (the node died): the change may or may not be stored.
        player.unknown++;
        counts.unknown++;
      }
    }
  };

  const pause = (player: Player, ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        player.wake = undefined;
        resolve();
      }
      player.wake = done;
    });

  const loop = async (player: Player): Promise<void> => {
    const { random } = player;
    // Players arrive over the first second.
    await pause(player, random() * 1_000);
    while (performance.now() < end) {
      const live = alive();
      let target = player.home !== undefined && live.includes(player.home) ? player.home : undefined;
      if (target === undefined || random() < HOP) {
        const others = live.filter((node) => node !== player.home);
        const next = others[Math.floor(random() * others.length)] ?? live[0]!;
        if (target !== undefined && next !== target) {
          counts.hops++;
          if (random() < LOGOUT_FIRST) {
            counts.logouts++;
            await target.game.request('logout', { userId: player.id }).catch(() => {});
          }
        }
        target = next;
      }
      const second = random() < DOUBLE ? live.find((node) => node !== target) : undefined;
      player.home = second ?? target;
      if (second !== undefined) {
        counts.doubles++;
        await Promise.all([play(player, target), play(player, second)]);
      } else {
        await play(player, target);
      }
      if (player.home.killedAt !== undefined) continue; // its node died under it: move on at once
      await pause(player, (300 + random() * 1_000) * pauseScale);
    }
  };

  let sampling = true;
  const sampler = (async () => {
    const last = new Map<string, StoredPlayer>();
    while (sampling) {
      const stored = await readPlayers(context.store, context.namespace).catch(() => undefined);
      for (const [userId, now] of stored ?? []) {
        const before = last.get(userId);
        if (before !== undefined && (now.counter < before.counter || now.version < before.version)) {
          counts.regressions.push(
            `${userId}: counter ${before.counter} -> ${now.counter}, version ${before.version} -> ${now.version}`,
          );
        }
        last.set(userId, now);
      }
      await sleep(SAMPLE_EVERY_MS);
    }
  })();

  let victim: Node | undefined;
  const killer = kill
    ? (async () => {
        await sleep(durationMs / 2);
        const index = Math.floor(mulberry32(runSeed)() * NODES);
        victim = nodes[index]!;
        victim.killedAt = clock();
        victim.game.kill9();
        context.progress(`SIGKILL ${victim.name}`);
        for (const player of everyone) if (player.home === victim) player.wake?.();
      })()
    : Promise.resolve();

  await Promise.all([...everyone.map(loop), killer]);
  context.progress(`played: ${counts.plays} moves, ${counts.acked} acknowledged; logging everyone out`);

  // The end of the run: every player leaves, every node shuts down as the README says.
  for (const node of alive()) {
    const out = await node.game
      .request<{ failures: unknown[] }>('logoutAll', {}, 60_000)
      .catch((error: unknown) => ({ failures: [String(error)] }));
    expect(
      result,
      out.failures.length === 0,
      `${node.name}: logouts failed: ${JSON.stringify(out.failures[0])}`,
    );
  }
  sampling = false;
  await sampler;
  const exits: string[] = [];
  for (const node of nodes) {
    if (node.killedAt !== undefined) {
      exits.push('SIGKILL');
      continue;
    }
    node.game.terminate();
    const exit = await node.game.waitExit(30_000);
    exits.push(exit.timedOut ? 'hung' : String(exit.code ?? exit.signal));
    expect(result, exit.code === 0, `${node.name} exited ${exit.code ?? exit.signal}:\n${node.game.tail()}`);
  }
  result.exits = exits.join(' ');

  // ------------------------------------------------------------------------------------------------ verdicts

  const lives = livesOf(nodes);
  const overlaps = overlapping(lives);
  expect(result, overlaps.length === 0, `users live on two nodes at once: ${examples(overlaps, (s) => s)}`);

  const stored = await readStored(context, result);
  if (stored === undefined) return;
  const lost: string[] = [];
  const mismatched: string[] = [];
  const staleAcks: string[] = [];
  for (const player of everyone) {
    const final = stored.get(player.id)?.counter ?? 0;
    const newest = Math.max(0, ...player.acks.map((ack) => ack.counter));
    if (final < newest) lost.push(`${player.id} stored ${final} < acked ${newest}`);
    else if (final > newest + player.unknown) {
      mismatched.push(`${player.id} stored ${final} > acked ${newest} + ${player.unknown} of unknown fate`);
    } else if (player.unknown === 0 && final !== newest) {
      mismatched.push(`${player.id} stored ${final}, acked ${newest}`);
    }
    // Two acknowledgements of one counter: two sessions added to the same base (one overwrote the other).
    const byCounter = [...player.acks].sort((a, b) => a.counter - b.counter);
    for (let i = 1; i < byCounter.length; i++) {
      const [a, b] = [byCounter[i - 1]!, byCounter[i]!];
      if (a.counter === b.counter || a.version >= b.version) {
        staleAcks.push(`${player.id}: acked ${a.counter}@v${a.version} then ${b.counter}@v${b.version}`);
        break;
      }
    }
  }
  const stale = [...staleAcks, ...counts.regressions];
  result.lost = lost.length;
  result.stale = stale.length;
  expect(result, lost.length === 0, `acknowledged updates lost: ${examples(lost, (s) => s)}`);
  expect(result, stale.length === 0, `stale overwrites: ${examples(stale, (s) => s)}`);
  expect(
    result,
    mismatched.length === 0,
    `stored counter is not the acknowledged one: ${examples(mismatched, (s) => s)}`,
  );

  const handoffs = lives.kicks.filter((kick) => kick.reason === 'login-elsewhere').length;
  const leaseLost = lives.kicks.filter((kick) => kick.reason === 'lease-lost').length;
  expect(result, counts.acked > 0, 'no move was acknowledged');
  expect(result, handoffs > 0, 'no session was handed over (kicked) in the whole run');
  const refused = [...counts.refused].map(([code, n]) => `${code} ${n}`).join(', ') || '0';
  result.notes.push(
    `${everyone.length} players, ${counts.plays} moves (${counts.acked} acked, ${counts.unknown} unknown, refused ${refused})`,
    `${handoffs} handoffs, ${counts.logouts} clean moves, ${counts.doubles} double connections, ${leaseLost} lease-lost kicks`,
    `overlaps ${overlaps.length}`,
  );

  if (victim?.killedAt !== undefined) {
    const takeover = takeovers(lives, victim);
    const bound = LEASE_TTL_MS + RENEWAL_MS + TAKEOVER_SLACK_MS;
    const worst = Math.max(0, ...takeover.times);
    result.recoverMs = Math.round(worst);
    result.notes.push(
      `kill -9 of ${victim.name}: ${takeover.held} players held, ${takeover.times.length} taken over; ` +
        `takeover max ${Math.round(worst)} ms, median ${Math.round(median(takeover.times))} ms ` +
        `(bound leaseTtl ${LEASE_TTL_MS} + renewal ${RENEWAL_MS} + slack ${TAKEOVER_SLACK_MS} ms)`,
    );
    expect(result, takeover.held > 0, `the killed node ${victim.name} held no player`);
    expect(
      result,
      takeover.missing.length === 0,
      `players of the killed node never logged in elsewhere: ${examples(takeover.missing, (s) => s)}`,
    );
    expect(result, worst <= bound, `takeover after kill -9 took ${Math.round(worst)} ms > ${bound} ms`);
  }
}

interface Life {
  node: string;
  userId: string;
  start: number;
  end: number;
}

interface Lives {
  byUser: Map<string, Life[]>;
  kicks: { node: string; userId: string; reason: string; at: number }[];
}

/** Every session's life from the nodes' logs; a life still open when its node died ends at the SIGKILL. */
function livesOf(nodes: readonly Node[]): Lives {
  const byUser = new Map<string, Life[]>();
  const kicks: Lives['kicks'] = [];
  for (const node of nodes) {
    const open = new Map<number, Life>();
    const diedAt = node.killedAt ?? (node.game.exit ? performance.timeOrigin + node.game.exit.at : clock());
    for (const line of node.game.logs as (LogLine & { event?: string; life?: number; at?: number })[]) {
      if (line.msg !== 'life' || typeof line.at !== 'number') continue;
      const userId = String(line.userId);
      if (line.event === 'start') {
        const life = { node: node.name, userId, start: line.at, end: Number.POSITIVE_INFINITY };
        open.set(line.life!, life);
        const list = byUser.get(userId) ?? [];
        list.push(life);
        byUser.set(userId, list);
      } else if (line.event === 'end') {
        const life = open.get(line.life!);
        if (life !== undefined) life.end = line.at;
        open.delete(line.life!);
      } else if (line.event === 'kicked') {
        kicks.push({ node: node.name, userId, reason: String(line.reason), at: line.at });
      }
    }
    for (const life of open.values()) life.end = Math.max(life.start, diedAt);
  }
  return { byUser, kicks };
}

/** Pairs of lives of one user that overlap in time (on any nodes). */
function overlapping({ byUser }: Lives): string[] {
  const found: string[] = [];
  for (const [userId, lives] of byUser) {
    const sorted = [...lives].sort((a, b) => a.start - b.start);
    let latest: Life | undefined;
    for (const life of sorted) {
      if (latest !== undefined && life.start < latest.end) {
        found.push(
          `${userId}: ${latest.node} until ${fmt(latest.end)} and ${life.node} from ${fmt(life.start)} ` +
            `(${(latest.end - life.start).toFixed(1)} ms together)`,
        );
      }
      if (latest === undefined || life.end > latest.end) latest = life;
    }
  }
  return found;
}

/** For each player the killed node held when it died: how long until a session elsewhere started. */
function takeovers({ byUser }: Lives, victim: Node): { held: number; times: number[]; missing: string[] } {
  const killedAt = victim.killedAt!;
  const times: number[] = [];
  const missing: string[] = [];
  let held = 0;
  for (const [userId, lives] of byUser) {
    const wasHeld = lives.some((l) => l.node === victim.name && l.start <= killedAt && l.end >= killedAt);
    if (!wasHeld) continue;
    held++;
    const next = lives
      .filter((l) => l.node !== victim.name && l.start >= killedAt)
      .sort((a, b) => a.start - b.start)[0];
    if (next === undefined) missing.push(userId);
    else times.push(next.start - killedAt);
  }
  return { held, times, missing };
}

function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function fmt(at: number): string {
  return new Date(at).toISOString().slice(11, 23);
}
