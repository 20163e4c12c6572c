/**
 * Flush 10,000 dirty sessions (about 1 KB of userData each) to Redis, three ways side by side, interleaved
 * round by round in one process, on a standalone server and on a 3-master Cluster:
 *   core + RedisAdapter      versions on: every write is checked against the stored version on the server;
 *   (a) original style       no adapter: a `persistUserData` listener awaiting one SET per session, one session
 *                            after the other as the original library did (core batches of one, concurrency 1);
 *   (a, batched)             the same listener with core's default batching, which runs a batch's listeners
 *                            concurrently (for information);
 *   (b) raw pipeline         the ceiling: the same SETs in one ioredis pipeline (one per node on a Cluster).
 * Two more rows split core + adapter into its parts: the adapter's save alone, and core with an adapter that
 * answers at once.
 * Targets: core + adapter at least 20x faster than (a), and within 1.3x of (b).
 * Run with `pnpm bench`; it starts its own servers and writes bench-results/adapter-redis.json.
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { type BenchRow, type PlayerData, playerData, report, timeMs } from '@cagey-sessions/bench-kit';
import {
  create,
  type PersistenceAdapter,
  type SaveRecord,
  type SessionManager,
  type UserId,
} from '@cagey-sessions/core';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import { RedisAdapter } from '../src/index.js';

const SESSIONS = 10_000;
/** Rounds of the fast contenders; the listener contenders are slow and run fewer. */
const ROUNDS = 7;
const SLOW_ROUNDS = 3;
const TIME_BUDGET_MS = 4 * 60_000;
const TARGET_SPEEDUP = 20;
const TARGET_CEILING_RATIO = 1.3;

interface ModeResult {
  /** core + RedisAdapter, versions on. */
  coreMs: number;
  /** (a) a persistUserData listener awaiting one SET per session, one session after the other. */
  listenerMs: number;
  /** The same listener with core's default batching: a batch's listeners run concurrently. */
  batchedListenerMs: number;
  /** (b) the same SETs in one raw pipeline (one per node). */
  rawMs: number;
  /** RedisAdapter.save alone on the same data (JSON.stringify included), versions on: the adapter's share. */
  adapterMs: number;
  /** core flushing into an adapter that answers at once: core's share (serialise, validate, digest, batch). */
  coreNoIoMs: number;
  bytes: number;
}

async function bindSessions(
  manager: SessionManager<PlayerData>,
  version: number | undefined,
): Promise<PlayerData[]> {
  const data: PlayerData[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const session = await manager.create();
    await session.start();
    const userData = playerData(i);
    await session.setUser(`player-${i}`, userData, version === undefined ? {} : { version });
    data.push(userData);
  }
  return data;
}

/** The ceiling: every SET in one pipeline, or one pipeline per node of a Cluster. */
async function rawPipeline(client: Redis | Cluster, keys: string[], data: PlayerData[]): Promise<void> {
  const groups = new Map<string, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const node = client instanceof Cluster ? (client.slots[calculateSlot(keys[i]!)]?.join(';') ?? '') : '';
    const group = groups.get(node);
    if (group) group.push(i);
    else groups.set(node, [i]);
  }
  await Promise.all(
    [...groups.values()].map(async (indexes) => {
      const pipeline = client.pipeline();
      for (const i of indexes) pipeline.set(keys[i]!, JSON.stringify(data[i]));
      const replies = await pipeline.exec();
      const failed = replies?.find(([error]) => error);
      if (failed) throw failed[0];
    }),
  );
}

/** Answers every record at once with the next version: core's cost without any I/O. */
function instantAdapter(): PersistenceAdapter {
  const versions = new Map<UserId, number>();
  return {
    name: 'instant',
    maxBatchSize: 1000,
    load: async () => undefined,
    delete: async () => false,
    close: async () => {},
    save: async (records) =>
      records.map((record) => {
        const version = (versions.get(record.userId) ?? 0) + 1;
        versions.set(record.userId, version);
        return { status: 'ok', version };
      }),
  };
}

/** "2.5x faster" or "1.3x slower": how `ms` compares with `otherMs`. */
function compare(ms: number, otherMs: number): string {
  return ms <= otherMs ? `${(otherMs / ms).toFixed(1)}x faster` : `${(ms / otherMs).toFixed(1)}x slower`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function runMode(
  name: string,
  openClient: () => Redis | Cluster,
  deadline: number,
): Promise<ModeResult> {
  // A fresh namespace per run, so a reused server never holds keys of an earlier run.
  const mode = `${name}_${randomBytes(3).toString('hex')}`;
  const client = openClient();
  const adapterClient = openClient();
  const adapter = new RedisAdapter({ client: adapterClient, prefix: `bench_${mode}_core` });
  await adapter.setup();
  const persistence = { userData: { persistence: { interval: '1h' as const } } };

  const core = create<PlayerData>({ adapter }, persistence);
  const coreData = await bindSessions(core, 0);
  await core.persistAllUserData(); // inserts every user (version 1), untimed

  const noIo = create<PlayerData>({ adapter: instantAdapter() }, persistence);
  const noIoData = await bindSessions(noIo, 0);
  await noIo.persistAllUserData();

  const setListener = async (session: { userId: UserId | undefined; userData: PlayerData | undefined }) => {
    await client.set(`bench_${mode}_listener:${session.userId}`, JSON.stringify(session.userData));
  };
  // Batches of one, one at a time: each listener is awaited before the next session's starts.
  const listener = create<PlayerData>(
    {},
    { userData: { persistence: { interval: '1h', batchSize: 1, concurrency: 1 } } },
  );
  listener.on('persistUserData', setListener);
  const listenerData = await bindSessions(listener, undefined);
  const batchedListener = create<PlayerData>({}, persistence);
  batchedListener.on('persistUserData', setListener);
  const batchedListenerData = await bindSessions(batchedListener, undefined);

  const rawKeys = Array.from({ length: SESSIONS }, (_, i) => `bench_${mode}_raw:player-${i}`);
  const rawData = Array.from({ length: SESSIONS }, (_, i) => playerData(i));
  await rawPipeline(client, rawKeys, rawData); // the keys exist, as they do for the other contenders

  const adapterOnly = new RedisAdapter({ client: adapterClient, prefix: `bench_${mode}_adapter` });
  const adapterData = Array.from({ length: SESSIONS }, (_, i) => playerData(i));
  const adapterVersions: number[] = new Array(SESSIONS).fill(0);
  // Serialised inside the timed part, as (b) does; versions on, as core + adapter has them.
  const adapterSave = async () => {
    const records: SaveRecord[] = adapterData.map((userData, i) => ({
      userId: `player-${i}`,
      userData,
      json: JSON.stringify(userData),
      expectedVersion: adapterVersions[i],
    }));
    const results = await adapterOnly.save(records);
    results.forEach((result, i) => {
      if (result.status !== 'ok') throw new Error(`adapter-only save: ${JSON.stringify(result)}`);
      adapterVersions[i] = result.version;
    });
  };
  await adapterSave();

  const dirty = (data: PlayerData[]) => {
    for (const userData of data) userData.gold += 1;
  };
  const times = {
    core: [] as number[],
    listener: [] as number[],
    batchedListener: [] as number[],
    raw: [] as number[],
    adapter: [] as number[],
    noIo: [] as number[],
  };
  for (let round = 0; round < ROUNDS; round++) {
    if (performance.now() > deadline) throw new Error('benchmark time budget exceeded');
    dirty(coreData);
    times.core.push(await timeMs(() => core.persistAllUserData()));
    dirty(rawData);
    times.raw.push(await timeMs(() => rawPipeline(client, rawKeys, rawData)));
    dirty(adapterData);
    times.adapter.push(await timeMs(adapterSave));
    dirty(noIoData);
    times.noIo.push(await timeMs(() => noIo.persistAllUserData()));
    if (round < SLOW_ROUNDS) {
      dirty(listenerData);
      times.listener.push(await timeMs(() => listener.persistAllUserData()));
      dirty(batchedListenerData);
      times.batchedListener.push(await timeMs(() => batchedListener.persistAllUserData()));
    }
  }

  // The timed writes really happened, with versions: every user went through ROUNDS updates after the insert.
  const stats = core.stats();
  const sample = await adapter.load('player-4321');
  if (stats.conflicts > 0 || stats.failed > 0 || sample?.version !== ROUNDS + 1) {
    throw new Error(`core + adapter did not write as expected: ${JSON.stringify({ stats, sample })}`);
  }
  if ((sample.userData as PlayerData).gold !== coreData[4321]!.gold)
    throw new Error('stored data is not the newest');

  await Promise.all([core, noIo, listener, batchedListener].map((manager) => manager.destroy(false)));
  await adapter.close();
  await adapterOnly.close();
  await Promise.all([adapterClient.quit(), client.quit()]);
  return {
    coreMs: median(times.core),
    listenerMs: median(times.listener),
    batchedListenerMs: median(times.batchedListener),
    rawMs: median(times.raw),
    adapterMs: median(times.adapter),
    coreNoIoMs: median(times.noIo),
    bytes: JSON.stringify(coreData[SESSIONS - 1]).length,
  };
}

function rows(mode: string, result: ModeResult): BenchRow[] {
  const speedup = result.listenerMs / result.coreMs;
  const ratio = result.coreMs / result.rawMs;
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  const n = SESSIONS.toLocaleString('en-US');
  return [
    {
      name: `${mode}: flush ${n} dirty sessions (${result.bytes} B) core + RedisAdapter, versions on`,
      value: result.coreMs,
      unit: 'ms',
      note:
        `${speedup.toFixed(1)}x faster than (a) (target ≥ ${TARGET_SPEEDUP}x: ${verdict(speedup >= TARGET_SPEEDUP)}); ` +
        `${ratio.toFixed(2)}x (b) (target ≤ ${TARGET_CEILING_RATIO}x: ${verdict(ratio <= TARGET_CEILING_RATIO)})`,
    },
    {
      name: `${mode}: (a) original style: a persistUserData listener awaiting one SET per session`,
      value: result.listenerMs,
      unit: 'ms',
      note: 'one session after the other',
    },
    {
      name: `${mode}: (a) with core's default batching`,
      value: result.batchedListenerMs,
      unit: 'ms',
      note: `listeners of a batch run concurrently; core + adapter is ${compare(result.coreMs, result.batchedListenerMs)}`,
    },
    {
      name: `${mode}: (b) raw ioredis pipeline of the same SETs, no versions`,
      value: result.rawMs,
      unit: 'ms',
      note: 'includes JSON.stringify, as the other contenders do',
    },
    {
      name: `${mode}: RedisAdapter.save alone of the same data, JSON.stringify included, versions on`,
      value: result.adapterMs,
      unit: 'ms',
      note: `the adapter's share: ${(result.adapterMs / result.rawMs).toFixed(2)}x (b)`,
    },
    {
      name: `${mode}: core flushing into an adapter that answers at once`,
      value: result.coreNoIoMs,
      unit: 'ms',
      note: "core's share: serialise, validate, digest, batch",
    },
  ];
}

const deadline = performance.now() + TIME_BUDGET_MS;
const results: BenchRow[] = [];
const meta: Record<string, unknown> = {
  sessions: SESSIONS,
  rounds: ROUNDS,
  slowRounds: SLOW_ROUNDS,
  cpus: cpus().length,
  // Other work on the machine skews every contender; the load averages say how busy it was.
  loadAverageBefore: loadavg(),
};

// CAGEY_BENCH_REDIS_URL / CAGEY_BENCH_REDIS_CLUSTER_URL (redis+cluster://h1:p1,h2:p2) name servers to use
// instead of starting them.
const standaloneUrl = process.env.CAGEY_BENCH_REDIS_URL;
const servers = () => import('@cagey-sessions/test-servers');
const standalone = standaloneUrl ? undefined : await (await servers()).startRedis();
try {
  const url = standaloneUrl ?? standalone!.url;
  const result = await runMode('standalone', () => new Redis(url), deadline);
  results.push(...rows('standalone', result));
  meta.standalone = result;
} finally {
  await standalone?.stop();
}

const clusterUrl = process.env.CAGEY_BENCH_REDIS_CLUSTER_URL;
const cluster = clusterUrl ? undefined : await (await servers()).startRedisCluster({ masters: 3 });
try {
  const nodes = clusterUrl
    ? clusterUrl
        .replace(/^redis\+cluster:\/\//, '')
        .split(',')
        .map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) }))
    : [...cluster!.nodes];
  const result = await runMode('cluster', () => new Cluster(nodes), deadline);
  results.push(...rows('cluster (3 masters)', result));
  meta.cluster = result;
} finally {
  await cluster?.stop();
}

meta.loadAverageAfter = loadavg();
report('adapter-redis', results, meta);
