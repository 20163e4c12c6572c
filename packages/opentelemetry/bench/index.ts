/**
 * What `instrument()` costs, side by side in one process: the same manager and sessions measured without
 * instrumentation, with `instrument()` on an SDK MeterProvider (metrics only, as the example game server runs
 * it), and with an SDK TracerProvider as well (spans, those of every `persistNow()` included, whose processor discards them). The variants take turns
 * round after round, and each result is the median of its rounds, so that a busy moment of a shared machine
 * does not land on one variant only. Run with `pnpm bench`.
 *
 * Times are the process's CPU time (user and system, every thread: garbage collection included), not wall
 * time: on a machine shared with other work, wall time measures the neighbours as much as the code. The reader
 * collects every second (as the example's dashboard scrapes), so that collections, `stats()` included, are
 * part of the cost.
 */
import { type PlayerData, playerData, report } from '@cagey-sessions/bench-kit';
import { type Session, SessionManager } from '@cagey-sessions/core';
import { MemoryAdapter } from '@cagey-sessions/testing';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { instrument } from '../src/index.js';

const SESSIONS = 10_000;
const PERSISTS = 2_000;
const ROUNDS = 9;
const COLLECT_EVERY_MS = 1000;

type Variant = 'none' | 'metrics' | 'metrics and spans';
const VARIANTS: Variant[] = ['none', 'metrics', 'metrics and spans'];

/** Ends every span and keeps none: the cost of making spans, not of exporting them. */
const discard: SpanProcessor = {
  onStart: () => {},
  onEnd: () => {},
  forceFlush: async () => {},
  shutdown: async () => {},
};

/** Attaches `variant` to `manager`; the returned function detaches it and shuts its SDK down. */
function attach(manager: SessionManager<PlayerData>, variant: Variant): () => Promise<void> {
  if (variant === 'none') return async () => {};
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: COLLECT_EVERY_MS });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [discard] });
  const telemetry = instrument(manager, {
    meterProvider,
    tracerProvider,
    spans: variant === 'metrics and spans',
    persistSpans: variant === 'metrics and spans',
  });
  return async () => {
    telemetry.uninstrument();
    await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]);
  };
}

const manager = new SessionManager<PlayerData>({
  adapter: new MemoryAdapter(),
  userData: { persistence: { interval: '1h' } },
});
const sessions: Session<PlayerData>[] = [];
for (let i = 0; i < SESSIONS; i++) {
  const session = await manager.create();
  await session.setUser(i, playerData(i));
  sessions.push(session);
}
let round = 0;

/** CPU milliseconds `fn` took (the whole process's: what the work costs whatever else runs on the machine). */
async function cpuMs(fn: () => Promise<unknown>): Promise<number> {
  const start = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

/** Every session changed, then one flush writes them all. */
async function flushAll(): Promise<number> {
  round++;
  for (const session of sessions) session.userData!.gold = round;
  return cpuMs(() => manager.persistAllUserData());
}

/** `PERSISTS` purchases one after the other: a change, then `persistNow()`, awaited. */
async function persistOneByOne(): Promise<number> {
  round++;
  return cpuMs(async () => {
    for (let i = 0; i < PERSISTS; i++) {
      const session = sessions[i]!;
      session.userData!.gold = round;
      await session.persistNow();
    }
  });
}

const times: Record<Variant, { flush: number[]; persist: number[] }> = {
  none: { flush: [], persist: [] },
  metrics: { flush: [], persist: [] },
  'metrics and spans': { flush: [], persist: [] },
};
await flushAll(); // warm-up
await persistOneByOne();
for (let r = 0; r < ROUNDS; r++) {
  // A different variant goes first in each round.
  for (let v = 0; v < VARIANTS.length; v++) {
    const variant = VARIANTS[(r + v) % VARIANTS.length]!;
    const detach = attach(manager, variant);
    times[variant].flush.push(await flushAll());
    times[variant].persist.push(await persistOneByOne());
    await detach();
  }
}
await manager.destroy(false);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const flush = (variant: Variant) => median(times[variant].flush);
const persist = (variant: Variant) => median(times[variant].persist);
const count = (n: number) => n.toLocaleString('en-US');
const ratio = (with_: number, without: number) => `${(with_ / without).toFixed(2)}x the CPU time without`;

report(
  'opentelemetry',
  [
    {
      name: `flush ${count(SESSIONS)} dirty sessions, not instrumented`,
      value: flush('none'),
      unit: 'ms CPU',
    },
    {
      name: `flush ${count(SESSIONS)} dirty sessions, instrument() + SDK MeterProvider`,
      value: flush('metrics'),
      unit: 'ms CPU',
      note: ratio(flush('metrics'), flush('none')),
    },
    {
      name: `flush ${count(SESSIONS)} dirty sessions, + SDK TracerProvider (spans, persistNow ones too)`,
      value: flush('metrics and spans'),
      unit: 'ms CPU',
      note: ratio(flush('metrics and spans'), flush('none')),
    },
    {
      name: `${count(PERSISTS)} persistNow() one after another, not instrumented`,
      value: PERSISTS / (persist('none') / 1000),
      unit: '/CPU s',
    },
    {
      name: `${count(PERSISTS)} persistNow() one after another, instrument() + SDK MeterProvider`,
      value: PERSISTS / (persist('metrics') / 1000),
      unit: '/CPU s',
      note: ratio(persist('metrics'), persist('none')),
    },
    {
      name: `${count(PERSISTS)} persistNow() one after another, + SDK TracerProvider (spans, persistNow ones too)`,
      value: PERSISTS / (persist('metrics and spans') / 1000),
      unit: '/CPU s',
      note: ratio(persist('metrics and spans'), persist('none')),
    },
  ],
  { sessions: SESSIONS, persists: PERSISTS, rounds: ROUNDS, collectEveryMs: COLLECT_EVERY_MS, time: 'process CPU time' },
);
