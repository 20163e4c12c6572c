/**
 * What `instrument()` costs, side by side in one process: the same manager and sessions measured without
 * instrumentation, with `instrument()` on an SDK MeterProvider (metrics only, as the example game server runs
 * it), and with an SDK TracerProvider as well (spans, those of every `persistNow()` included, whose processor
 * discards them). The variants take turns round after round, a different one first each round, and each result
 * is the median of its rounds, so that a busy moment of a shared machine does not land on one variant only.
 * Run with `pnpm bench`.
 *
 * Two costs, measured apart: what each event costs while the game runs (flushes and `persistNow()`, with no
 * collection during them), and what one collection costs (a Prometheus scrape, or a periodic reader's export):
 * it reads `stats()`, which checks every user held, so it grows with the sessions, not with the traffic.
 *
 * Times are the process's CPU time (user and system, every thread: garbage collection included), not wall
 * time: on a machine shared with other work, wall time measures the neighbours as much as the code.
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
const PERSISTS = 5_000;
const ROUNDS = 9;

type Variant = 'none' | 'metrics' | 'metrics and spans';
const VARIANTS: Variant[] = ['none', 'metrics', 'metrics and spans'];

/** Ends every span and keeps none: the cost of making spans, not of exporting them. */
const discard: SpanProcessor = {
  onStart: () => {},
  onEnd: () => {},
  forceFlush: async () => {},
  shutdown: async () => {},
};

interface Attached {
  /** Collects every metric now, as a scrape does. */
  collect(): Promise<unknown>;
  detach(): Promise<void>;
}

/** Attaches `variant` to `manager`, with a reader that collects only when asked. */
function attach(manager: SessionManager<PlayerData>, variant: Variant, gauges = true): Attached {
  if (variant === 'none') return { collect: async () => {}, detach: async () => {} };
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [discard] });
  const telemetry = instrument(manager, {
    meterProvider,
    tracerProvider,
    spans: variant === 'metrics and spans',
    persistSpans: variant === 'metrics and spans',
    gauges,
  });
  return {
    collect: () => reader.collect(),
    async detach() {
      telemetry.uninstrument();
      await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]);
    },
  };
}

/** CPU milliseconds `fn` took (the whole process's: what the work costs whatever else runs on the machine). */
async function cpuMs(fn: () => Promise<unknown>): Promise<number> {
  const start = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
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
const collections: { gauges: number[]; noGauges: number[] } = { gauges: [], noGauges: [] };
await flushAll(); // warm-up
await persistOneByOne();
for (let r = 0; r < ROUNDS; r++) {
  for (let v = 0; v < VARIANTS.length; v++) {
    const variant = VARIANTS[(r + v) % VARIANTS.length]!;
    const attached = attach(manager, variant);
    times[variant].flush.push(await flushAll());
    times[variant].persist.push(await persistOneByOne());
    if (variant === 'metrics') collections.gauges.push(await cpuMs(() => attached.collect()));
    await attached.detach();
  }
  const withoutGauges = attach(manager, 'metrics', false);
  await persistOneByOne(); // something to collect
  collections.noGauges.push(await cpuMs(() => withoutGauges.collect()));
  await withoutGauges.detach();
}
await manager.destroy(false);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const flush = (variant: Variant) => median(times[variant].flush);
const persist = (variant: Variant) => median(times[variant].persist);
const count = (n: number) => n.toLocaleString('en-US');
const ratio = (with_: number, without: number) => `${(with_ / without).toFixed(2)}x the CPU time without`;
const perCall = (variant: Variant) =>
  `${ratio(persist(variant), persist('none'))}; ${(((persist(variant) - persist('none')) * 1000) / PERSISTS).toFixed(1)} µs more per call`;

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
      name: `flush ${count(SESSIONS)} dirty sessions, + SDK TracerProvider (spans)`,
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
      note: perCall('metrics'),
    },
    {
      name: `${count(PERSISTS)} persistNow() one after another, + SDK TracerProvider (a span each)`,
      value: PERSISTS / (persist('metrics and spans') / 1000),
      unit: '/CPU s',
      note: perCall('metrics and spans'),
    },
    {
      name: `one collection (a scrape), ${count(SESSIONS)} sessions held`,
      value: median(collections.gauges),
      unit: 'ms CPU',
      note: 'the gauges read stats(), which checks every user held',
    },
    {
      name: 'one collection, gauges: false',
      value: median(collections.noGauges),
      unit: 'ms CPU',
      note: 'counters and histograms only',
    },
  ],
  { sessions: SESSIONS, persists: PERSISTS, rounds: ROUNDS, time: 'process CPU time' },
);
