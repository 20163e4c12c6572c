import { SessionManager } from '@cagey-sessions/core';
import { instrument } from '@cagey-sessions/opentelemetry';
import { FaultyAdapter, MemoryAdapter } from '@cagey-sessions/testing';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { expect, it } from 'vitest';

it('counts a failed write as an error and a retry', async () => {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({
    exporter: metricExporter,
    exportIntervalMillis: 60_000,
  });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });

  const faulty = new FaultyAdapter(new MemoryAdapter());
  const manager = new SessionManager({ adapter: faulty });
  const telemetry = instrument(manager, { meterProvider, tracerProvider });
  const session = await manager.create();
  await session.identify('hero', { defaults: { gold: 0 } });
  faulty.failNext(1);
  await expect(session.persistNow()).rejects.toMatchObject({ code: 'PERSIST_FAILED' });
  await session.persistNow(); // stored this time

  await reader.forceFlush(); // collects and exports now
  const metrics = metricExporter
    .getMetrics()
    .at(-1)!
    .scopeMetrics.flatMap((scope) => scope.metrics);
  const points = (name: string) =>
    metrics.find((metric) => metric.descriptor.name === name)?.dataPoints ?? [];
  const writes = points('cagey_sessions.writes').map((point) => [
    point.attributes['cagey_sessions.write.outcome'],
    point.value,
  ]);
  expect(writes).toEqual(
    expect.arrayContaining([
      ['error', 1],
      ['ok', 1],
      ['conflict', 0],
    ]),
  );
  expect(points('cagey_sessions.retries').map((point) => point.value)).toEqual([1]);

  const batches = spanExporter.getFinishedSpans().filter((span) => span.name === 'cagey_sessions.batch');
  expect(batches.map((span) => span.attributes['cagey_sessions.batch.error'])).toEqual([1, 0]);

  telemetry.uninstrument();
  await manager.destroy(false);
  await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]);
});
