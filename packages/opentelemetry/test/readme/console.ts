import { create } from '@cagey-sessions/core';
import { instrument } from '@cagey-sessions/opentelemetry';
import { MemoryAdapter } from '@cagey-sessions/testing';
import {
  ConsoleMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

// An OpenTelemetry SDK that prints to the console: metrics every 10 s and at shutdown, spans as they end.
const meterProvider = new MeterProvider({
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new ConsoleMetricExporter(),
      exportIntervalMillis: 10_000,
    }),
  ],
});
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())],
});

const adapter = new MemoryAdapter();
const manager = create(
  { adapter },
  { userData: { persistence: { interval: '30s', events: ['disconnect', 'shutdown'] } } },
);
const telemetry = instrument(manager, { meterProvider, tracerProvider });

const session = await manager.create();
const player = await session.identify('user-42', { defaults: { gold: 0 } });
player.gold += 10;
await session.persistNow(); // cagey_sessions.persist.duration, a cagey_sessions.batch span
await manager.persistAllUserData(); // a cagey_sessions.flush span

await manager.destroy(); // a cagey_sessions.shutdown span
await meterProvider.shutdown(); // exports the metrics one last time, the manager's state included
await tracerProvider.shutdown();
telemetry.uninstrument();
await adapter.close();
