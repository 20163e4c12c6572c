/**
 * Handoff benchmark: two game-server processes (src/presence-node.mjs) on loopback share a PostgreSQL store; a
 * player who is live on node A logs in on node B. With a presence (Redis, PostgreSQL), B's login asks A to store
 * the player and let go, and loads what A stored. Without one (the naive baseline, what games without a presence
 * do), A only notices the player left when the connection's grace period (1 s) ends, stores the player then, and
 * B may load only after that.
 *
 * Measured side by side in one run: handoff latency p50/p99 (from the move to B's login done; B's own write of
 * the move is taken out), with a few players moving at once, and handoffs per second with 50 players hopping
 * between the two nodes as fast as they can. Target: p99 < 100 ms with a presence.
 *
 * `CAGEY_BENCH_HANDOFF_SECONDS` sets the rate phase (default 5 s). Missing servers print a dash, or fail with
 * `CI=true`.
 */
import { cpus, loadavg } from 'node:os';
import { type BenchRow, report } from '@cagey-sessions/bench-kit';
import { type GameConfig, GameProcess, type PresenceConfig } from '../src/lib/game.js';
import { type Store, type StoreKind, startStore } from '../src/lib/stores.js';

const GRACE_MS = 1_000;
/**
 * Latency is measured twice: one player moving at a time (the floor), then `CROWD` players moving at once
 * (`CAGEY_BENCH_HANDOFF_PLAYERS`). Moves per player: the naive baseline takes a second per move.
 */
const CROWD = Math.max(2, Math.min(100, Number(process.env.CAGEY_BENCH_HANDOFF_PLAYERS) || 10));
const MOVES = { alone: { presence: 100, naive: 5 }, crowd: { presence: 30, naive: 5 } };
const RATE_PLAYERS = 50;
const WARM_UP_MOVES = 5;

function rateSeconds(): number {
  const seconds = Number(process.env.CAGEY_BENCH_HANDOFF_SECONDS ?? 5);
  return Number.isFinite(seconds) && seconds > 0 && seconds <= 120 ? seconds : 5;
}

type Mode = { kind: 'redis' | 'postgres'; label: string } | { kind: 'naive'; label: string };

const MODES: Mode[] = [
  { kind: 'redis', label: 'Redis presence' },
  { kind: 'postgres', label: 'PostgreSQL presence' },
  { kind: 'naive', label: `no presence, ${GRACE_MS / 1000} s grace` },
];

interface PlayReply {
  persistMs: number;
}

interface Latency {
  p50: number;
  p99: number;
  samples: number;
}

interface Figures {
  alone: Latency;
  crowd: Latency;
  perSecond: number;
  handoffs: number;
  kicked: number;
}

/** A cluster of two nodes and the moves between them. */
class Pair {
  readonly nodes: [GameProcess, GameProcess];
  readonly naive: boolean;
  /** Which node each player is on. */
  readonly #on = new Map<string, 0 | 1>();

  constructor(nodes: [GameProcess, GameProcess], naive: boolean) {
    this.nodes = nodes;
    this.naive = naive;
  }

  async enter(userId: string): Promise<void> {
    await this.nodes[0].request('play', { userId });
    this.#on.set(userId, 0);
  }

  /** Moves the player to the other node; resolves the handoff's latency in ms. */
  async move(userId: string): Promise<number> {
    const from = this.#on.get(userId) ?? 0;
    const to = from === 0 ? 1 : 0;
    const started = performance.now();
    if (this.naive) await this.nodes[from].request('logout', { userId, graceMs: GRACE_MS });
    const reply = await this.nodes[to].request<PlayReply>('play', { userId }, 30_000);
    this.#on.set(userId, to);
    return performance.now() - started - reply.persistMs;
  }

  async kicked(): Promise<number> {
    const stats = await Promise.all(this.nodes.map((node) => node.request<{ kicked: number }>('stats')));
    return stats.reduce((sum, s) => sum + s.kicked, 0);
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

/** `players` players moving between the nodes at once, `moves` moves each: p50 and p99 of the handoffs. */
async function latency(pair: Pair, users: readonly string[], moves: number): Promise<Latency> {
  const samples: number[] = [];
  await Promise.all(
    users.map(async (userId) => {
      for (let i = 0; i < moves; i++) samples.push(await pair.move(userId));
    }),
  );
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), samples: samples.length };
}

async function measure(pair: Pair, mode: Mode, prefix: string): Promise<Figures> {
  const crowdUsers = Array.from({ length: CROWD }, (_, i) => `${prefix}l${i}`);
  const rateUsers = Array.from({ length: RATE_PLAYERS }, (_, i) => `${prefix}r${i}`);
  await Promise.all([...crowdUsers, ...rateUsers].map((u) => pair.enter(u)));
  if (!pair.naive) {
    for (const userId of crowdUsers) for (let i = 0; i < WARM_UP_MOVES; i++) await pair.move(userId);
  }
  const kickedBefore = await pair.kicked();
  const kind = mode.kind === 'naive' ? 'naive' : 'presence';
  const alone = await latency(pair, crowdUsers.slice(0, 1), MOVES.alone[kind]);
  const crowd = await latency(pair, crowdUsers, MOVES.crowd[kind]);

  const seconds = rateSeconds();
  const end = performance.now() + seconds * 1_000;
  const started = performance.now();
  let handoffs = 0;
  await Promise.all(
    rateUsers.map(async (userId) => {
      while (performance.now() < end) {
        await pair.move(userId);
        handoffs++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1_000;
  const kicked = (await pair.kicked()) - kickedBefore;
  return {
    alone,
    crowd,
    perSecond: handoffs / elapsed,
    handoffs: alone.samples + crowd.samples + handoffs,
    kicked,
  };
}

async function startPair(mode: Mode, store: Store, presenceStore: Store | undefined): Promise<Pair> {
  const namespace = `bench_handoff_${mode.kind}_${Math.random().toString(36).slice(2, 8)}`;
  const presence: PresenceConfig | undefined =
    mode.kind === 'naive' || presenceStore === undefined
      ? undefined
      : {
          kind: mode.kind,
          url: presenceStore.url,
          name: mode.kind === 'redis' ? `bench-presence:${namespace}` : `presence_${namespace}`,
          leaseTtl: 5_000,
          handoffTimeout: 10_000,
        };
  const config = (node: string): GameConfig => ({
    node,
    script: 'presence-node',
    store: store.kind,
    url: store.url,
    namespace,
    persistence: { events: ['disconnect'] },
    lifetimeMs: 600_000,
    ...(presence === undefined ? {} : { presence }),
  });
  const nodes = await Promise.all([GameProcess.start(config('a')), GameProcess.start(config('b'))]);
  return new Pair(nodes, mode.kind === 'naive');
}

async function main(): Promise<void> {
  const kinds: StoreKind[] = ['postgres', 'redis'];
  const stores = new Map<StoreKind, Store>();
  for (const kind of kinds) {
    const store = await startStore(kind);
    if (store !== undefined) stores.set(kind, store);
    else if (process.env.CI === 'true')
      throw new Error(`${kind} is not installed; CI=true: a missing server is a failure`);
    else console.warn(`!!! ${kind} not installed: its rows are dashes`);
  }
  const rows: BenchRow[] = [];
  // Latency under load says as much about the machine as about the handoff: the load is reported with it.
  const loadBefore = loadavg()[0]!;
  const meta: Record<string, unknown> = {
    cores: cpus().length,
    loadBefore,
    store: 'PostgreSQL (loopback)',
    graceMs: GRACE_MS,
    crowd: CROWD,
    ratePlayers: RATE_PLAYERS,
    rateSeconds: rateSeconds(),
  };
  try {
    const store = stores.get('postgres');
    for (const mode of MODES) {
      const presenceStore = mode.kind === 'naive' ? undefined : stores.get(mode.kind);
      let figures: Figures | undefined;
      let problem = '';
      if (store === undefined || (mode.kind !== 'naive' && presenceStore === undefined)) {
        problem = 'server not installed';
      } else {
        const pair = await startPair(mode, store, presenceStore);
        try {
          figures = await measure(pair, mode, `${mode.kind}-`);
          meta[mode.kind] = figures;
        } finally {
          for (const node of pair.nodes) {
            node.terminate();
            await node.waitExit(15_000);
          }
        }
        if (mode.kind !== 'naive' && figures.kicked < figures.handoffs) {
          problem = `only ${figures.kicked} of ${figures.handoffs} moves kicked a live session`;
        }
      }
      const note = (text: string) => [text, problem].filter(Boolean).join('; ');
      const target = mode.kind === 'naive' ? '' : 'target < 100 ms';
      const ms = (name: string, value: number | undefined, text: string) =>
        rows.push({
          name: `${name}, ${mode.label}`,
          value: value ?? Number.NaN,
          unit: 'ms',
          note: note(text),
        });
      ms('handoff p50, one player at a time', figures?.alone.p50, `${figures?.alone.samples ?? 0} handoffs`);
      ms('handoff p99, one player at a time', figures?.alone.p99, target);
      ms(
        `handoff p50, ${CROWD} players at once`,
        figures?.crowd.p50,
        `${figures?.crowd.samples ?? 0} handoffs`,
      );
      ms(`handoff p99, ${CROWD} players at once`, figures?.crowd.p99, target);
      rows.push({
        name: `handoffs per second, ${mode.label}`,
        value: figures?.perSecond ?? Number.NaN,
        unit: '/s',
        note: note(`${RATE_PLAYERS} players hopping between 2 nodes for ${rateSeconds()} s`),
      });
    }
  } finally {
    await Promise.allSettled([...stores.values()].map((store) => store.server.stop()));
  }
  meta.loadAfter = loadavg()[0]!;
  report('handoff', rows, meta);
  console.log(
    `${cpus().length} cores, 1-minute load average ${loadBefore.toFixed(1)} before, ${(meta.loadAfter as number).toFixed(1)} after`,
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
