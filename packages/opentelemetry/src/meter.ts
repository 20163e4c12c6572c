/**
 * The instruments, created once per `Meter` and shared by every manager instrumented on it. The observable
 * ones are read by one batch callback over all those managers: managers whose attributes are equal are summed
 * into one series (the counts are additive), so that two managers never overwrite each other's values.
 */

import type { SessionManagerStats } from '@cagey-sessions/core';
import type {
  Attributes,
  BatchObservableResult,
  Counter,
  Histogram,
  Meter,
  ObservableUpDownCounter,
} from '@opentelemetry/api';
import { GAUGES, METRICS, SECONDS_BUCKETS, SIZE_BUCKETS } from './names.js';

type GaugeKey = keyof typeof GAUGES;

/** A manager whose state the observable instruments report, with the attributes of its series. */
export interface GaugeSource {
  stats(): Pick<SessionManagerStats, GaugeKey>;
  attributes: Attributes;
}

export interface Instruments {
  writes: Counter;
  retries: Counter;
  conflicts: Counter;
  flushDuration: Histogram;
  batchDuration: Histogram;
  batchSize: Histogram;
  persistDuration: Histogram;
  shutdownDuration: Histogram;
  shutdownUnsaved: Counter;
  handoffDuration: Histogram;
  /** Starts reporting a manager's state; the function returned stops it. */
  observe(source: GaugeSource): () => void;
}

const GAUGE_DESCRIPTIONS: Record<GaugeKey, [description: string, unit: string]> = {
  sessions: ['Live sessions.', '{session}'],
  identified: ['Live sessions with a user.', '{session}'],
  dirty: ['Users whose data differs from what is stored (computed over every user held).', '{user}'],
  inFlight: ['Users whose write is running now.', '{user}'],
  queued: ['Users waiting for a batch.', '{user}'],
  retrying: ['Users waiting for an automatic retry after a failed write.', '{user}'],
  orphaned: ['Users of destroyed sessions whose data is not stored yet.', '{user}'],
};

const byMeter = new WeakMap<Meter, Instruments>();

export function instrumentsOf(meter: Meter): Instruments {
  let instruments = byMeter.get(meter);
  if (instruments === undefined) {
    instruments = createInstruments(meter);
    byMeter.set(meter, instruments);
  }
  return instruments;
}

function seconds(meter: Meter, name: string, description: string): Histogram {
  return meter.createHistogram(name, {
    description,
    unit: 's',
    advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
  });
}

function createInstruments(meter: Meter): Instruments {
  const gauges = Object.fromEntries(
    Object.entries(GAUGES).map(([key, name]) => {
      const [description, unit] = GAUGE_DESCRIPTIONS[key as GaugeKey];
      return [key, meter.createObservableUpDownCounter(name, { description, unit })];
    }),
  ) as Record<GaugeKey, ObservableUpDownCounter>;
  const observables = Object.values(gauges);
  const sources = new Set<GaugeSource>();

  const collect = (result: BatchObservableResult): void => {
    const sums = new Map<string, { attributes: Attributes; values: Record<GaugeKey, number> }>();
    for (const source of sources) {
      let stats: Pick<SessionManagerStats, GaugeKey>;
      try {
        stats = source.stats();
      } catch {
        continue; // a manager that cannot answer (mid-shutdown, say) is left out of this collection
      }
      const key = attributesKey(source.attributes);
      let sum = sums.get(key);
      if (sum === undefined) {
        const values = Object.fromEntries(Object.keys(GAUGES).map((k) => [k, 0])) as Record<GaugeKey, number>;
        sum = { attributes: source.attributes, values };
        sums.set(key, sum);
      }
      for (const gauge of Object.keys(GAUGES) as GaugeKey[]) {
        const value = stats[gauge];
        if (typeof value === 'number' && Number.isFinite(value)) sum.values[gauge] += value;
      }
    }
    for (const { attributes, values } of sums.values()) {
      for (const gauge of Object.keys(GAUGES) as GaugeKey[]) {
        result.observe(gauges[gauge], values[gauge], attributes);
      }
    }
  };

  return {
    writes: meter.createCounter(METRICS.writes, {
      description: 'Records that adapter save calls finished, by outcome (ok, conflict, error).',
      unit: '{write}',
    }),
    retries: meter.createCounter(METRICS.retries, {
      description: 'Failed writes scheduled for an automatic retry.',
      unit: '{retry}',
    }),
    conflicts: meter.createCounter(METRICS.conflicts, {
      description: 'Writes refused because the store held another version of the user.',
      unit: '{conflict}',
    }),
    flushDuration: seconds(meter, METRICS.flushDuration, 'Duration of flushes (interval and explicit).'),
    batchDuration: seconds(meter, METRICS.batchDuration, 'Duration of adapter save calls.'),
    batchSize: meter.createHistogram(METRICS.batchSize, {
      description: 'Records per adapter save call.',
      unit: '{record}',
      advice: { explicitBucketBoundaries: SIZE_BUCKETS },
    }),
    persistDuration: seconds(meter, METRICS.persistDuration, 'Latency of session.persistNow().'),
    shutdownDuration: seconds(meter, METRICS.shutdownDuration, 'Duration of manager.destroy().'),
    shutdownUnsaved: meter.createCounter(METRICS.shutdownUnsaved, {
      description: 'Users reported unsaved when a shutdown finished.',
      unit: '{user}',
    }),
    handoffDuration: seconds(
      meter,
      METRICS.handoffDuration,
      'Logins that met another node holding the user (presence), from the claim until it got the user or gave up.',
    ),
    observe(source) {
      if (sources.size === 0) meter.addBatchObservableCallback(collect, observables);
      sources.add(source);
      return () => {
        if (!sources.delete(source)) return;
        if (sources.size === 0) meter.removeBatchObservableCallback(collect, observables);
      };
    },
  };
}

/** A key equal for equal attribute sets, whatever the order of their keys. */
function attributesKey(attributes: Attributes): string {
  return JSON.stringify(Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
