/**
 * The server's telemetry, in one place: an OpenTelemetry MeterProvider of its own, `instrument()` of
 * `@cagey-sessions/opentelemetry` on the session manager, two metrics of the game (connections and players
 * online), and the Prometheus exporter as the provider's reader. Nothing is pushed anywhere: each scrape of
 * `/metrics` collects the current values, in the Prometheus text format, from the process that serves it (with
 * several server processes, each has its own `/metrics`).
 *
 * The provider is the server's own rather than the global one, so that several servers in one process (as in
 * the tests) keep their numbers apart, and so that a game that already runs an OpenTelemetry SDK is not
 * changed behind its back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionManager } from '@cagey-sessions/core';
import { instrument } from '@cagey-sessions/opentelemetry';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/** The attribute that names the store on every point (`game_store` in Prometheus): pglite, postgres, ... */
export const STORE_ATTRIBUTE = 'game.store';

/** The game's own metrics, beside the `cagey_sessions.*` ones. */
export const GAME_METRICS = {
  connections: 'game.connections',
  online: 'game.players_online',
} as const;

export interface TelemetryOptions {
  /** What the store is, shown on every point and on the dashboard. Default: the adapter's name. */
  store?: string;
}

export interface Telemetry {
  /** Answers a scrape: every metric, collected now, in the Prometheus text format. */
  serveMetrics(request: IncomingMessage, response: ServerResponse): void;
  /** Stops the instrumentation and the provider. After the manager is destroyed, so its shutdown is counted. */
  close(): Promise<void>;
}

/** What the server counts itself, read at each scrape. */
export interface GameGauges {
  connections(): number;
  online(): number;
}

export function startTelemetry<Data extends object>(
  manager: SessionManager<Data>,
  game: GameGauges,
  options: { store: string },
): Telemetry {
  // The server answers the scrapes itself, on its own port: the exporter opens no server of its own.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  const attributes = { [STORE_ATTRIBUTE]: options.store };
  const instrumentation = instrument(manager, { meterProvider, attributes, spans: false });

  const meter = meterProvider.getMeter('websocket-game');
  const connections = meter.createObservableUpDownCounter(GAME_METRICS.connections, {
    description: 'Open WebSocket connections, logged in or not.',
    unit: '{connection}',
  });
  const online = meter.createObservableUpDownCounter(GAME_METRICS.online, {
    description: 'Connections with a logged-in player (players in their grace period are not online).',
    unit: '{player}',
  });
  connections.addCallback((result) => result.observe(game.connections(), attributes));
  online.addCallback((result) => result.observe(game.online(), attributes));

  let closed: Promise<void> | undefined;
  return {
    serveMetrics: (request, response) => exporter.getMetricsRequestHandler(request, response),
    close() {
      closed ??= (async () => {
        instrumentation.uninstrument();
        await meterProvider.shutdown();
      })();
      return closed;
    },
  };
}
