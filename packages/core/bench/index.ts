/**
 * Core benchmarks: session lifecycle throughput, heap per idle identified session, and flushes of 10,000
 * sessions through the in-memory adapter (all dirty, then 1% dirty). Run with `pnpm bench`.
 */
import diagnostics from 'node:diagnostics_channel';
import {
  type BenchRow,
  collectGarbage,
  medianMs,
  type PlayerData,
  playerData,
  report,
} from '@cagey-sessions/bench-kit';
import { FaultyAdapter, MemoryAdapter } from '@cagey-sessions/testing';
import { CHANNELS, type Session, SessionManager } from '../src/index.js';

const SESSIONS = 10_000;
const LIFECYCLES = 100_000;

async function lifecyclesPerSecond(): Promise<number> {
  const manager = new SessionManager({ adapter: new MemoryAdapter() });
  const run = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const session = await manager.create();
      await session.start();
      await session.setUser(i, { gold: i });
      await session.destroy(false);
    }
  };
  await run(10_000); // warm-up
  const ms = await medianMs(3, () => run(LIFECYCLES));
  await manager.destroy(false);
  return LIFECYCLES / (ms / 1000);
}

async function heapPerIdleSession(): Promise<number | undefined> {
  if (!collectGarbage()) return undefined;
  const data = Array.from({ length: SESSIONS }, (_, i) => ({ gold: i, name: `p${i}` }));
  collectGarbage();
  const before = process.memoryUsage().heapUsed;
  const manager = new SessionManager({
    adapter: new MemoryAdapter(),
    userData: { persistence: { interval: '1h' } },
  });
  const sessions: Session[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const session = await manager.create(`key-${i}`);
    await session.setUser(i, data[i]!);
    sessions.push(session);
  }
  await manager.persistAllUserData(); // every session stored, versioned, clean and idle, as between two flushes
  collectGarbage();
  const after = process.memoryUsage().heapUsed;
  const perSession = (after - before) / SESSIONS;
  await manager.destroy(false);
  return perSession;
}

async function flushes(): Promise<{
  allMs: number;
  onePercentMs: number;
  onePercentWritten: number;
  bytes: number;
}> {
  const adapter = new FaultyAdapter(new MemoryAdapter());
  const manager = new SessionManager<PlayerData>({ adapter });
  const sessions: Session<PlayerData>[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const session = await manager.create();
    await session.setUser(i, playerData(i));
    sessions.push(session);
  }
  const bytes = JSON.stringify(playerData(SESSIONS)).length;
  let round = 0;
  const dirtyAll = () => {
    round++;
    for (const session of sessions) session.userData!.gold = round;
  };
  const allMs = await medianMs(5, () => manager.persistAllUserData(), dirtyAll);
  let written = 0;
  const dirtyOnePercent = () => {
    round++;
    for (let i = 0; i < SESSIONS; i += 100) sessions[i]!.userData!.gold = round;
    adapter.saves.length = 0;
  };
  const onePercentMs = await medianMs(
    5,
    async () => {
      await manager.persistAllUserData();
      written = adapter.saves.reduce((sum, save) => sum + save.userIds.length, 0);
    },
    dirtyOnePercent,
  );
  await manager.destroy(false);
  return { allMs, onePercentMs, onePercentWritten: written, bytes };
}

/** Runs `fn` while a no-op subscriber listens on every instrumentation channel (what an exporter costs at least). */
async function subscribed<T>(fn: () => Promise<T>): Promise<T> {
  const noop = () => {};
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop };
  const tracing = [CHANNELS.flush, CHANNELS.batch, CHANNELS.persist].map((name) =>
    diagnostics.tracingChannel(name),
  );
  const plain = [CHANNELS.retry, CHANNELS.conflict, CHANNELS.shutdown];
  for (const channel of tracing) channel.subscribe(handlers);
  for (const name of plain) diagnostics.subscribe(name, noop);
  try {
    return await fn();
  } finally {
    for (const channel of tracing) channel.unsubscribe(handlers);
    for (const name of plain) diagnostics.unsubscribe(name, noop);
  }
}

const lifecycles = await lifecyclesPerSecond();
const lifecyclesSubscribed = await subscribed(lifecyclesPerSecond);
const heap = await heapPerIdleSession();
const flush = await flushes();
const flushSubscribed = await subscribed(flushes);

const rows: BenchRow[] = [
  {
    name: 'session lifecycles (create, start, setUser, destroy)',
    value: lifecycles,
    unit: '/s',
    note: `${(lifecycles / 100_000).toFixed(2)}x the 100,000/s target`,
  },
  heap === undefined
    ? { name: 'heap per idle identified session', value: Number.NaN, unit: 'B', note: 'run with --expose-gc' }
    : {
        name: 'heap per idle identified session, beyond its userData',
        value: heap,
        unit: 'B',
        note: `${(heap / 1024).toFixed(2)}x the 1 KB ceiling`,
      },
  {
    name: `flush ${SESSIONS.toLocaleString('en-US')} dirty sessions (${flush.bytes} B userData) via MemoryAdapter`,
    value: flush.allMs,
    unit: 'ms',
    note: `${Math.round(SESSIONS / (flush.allMs / 1000)).toLocaleString('en-US')} sessions/s`,
  },
  {
    name: `flush ${SESSIONS.toLocaleString('en-US')} sessions, 1% dirty`,
    value: flush.onePercentMs,
    unit: 'ms',
    note: `wrote ${flush.onePercentWritten} of ${SESSIONS / 100} dirty (exact: ${flush.onePercentWritten === SESSIONS / 100}); ${(flush.allMs / flush.onePercentMs).toFixed(1)}x faster than all dirty`,
  },
];
rows.push(
  {
    name: 'session lifecycles, a subscriber on every instrumentation channel',
    value: lifecyclesSubscribed,
    unit: '/s',
    note: `${(lifecyclesSubscribed / lifecycles).toFixed(2)}x the rate without (no channel is used on this path)`,
  },
  {
    name: `flush ${SESSIONS.toLocaleString('en-US')} dirty sessions, a subscriber on every channel`,
    value: flushSubscribed.allMs,
    unit: 'ms',
    note: `${(flushSubscribed.allMs / flush.allMs).toFixed(2)}x the time without`,
  },
);
report('core', rows, { sessions: SESSIONS, lifecycles: LIFECYCLES });
if (flush.onePercentWritten !== SESSIONS / 100) process.exitCode = 1;
