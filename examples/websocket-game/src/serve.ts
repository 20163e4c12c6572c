/**
 * Runs the game server. From the repository root (pnpm 10 passes the options on as they are; no `--`):
 *
 *   pnpm --filter @cagey-sessions/example-websocket-game start --store pglite --port 8080
 *
 * SIGINT or SIGTERM shuts it down gracefully (every player's data stored before exit); a second signal exits
 * at once. Set GAME_AUTH_SECRET to require every login to carry `auth` (see src/auth.ts); without it any
 * client may log in as any player.
 *
 * When started by the demo (with an IPC channel), it reports `ready` and, at exit, its shutdown report; with
 * `--fault-control` the demo can make its store hang and heal (an outage of an in-process store).
 */
import { parseArgs } from 'node:util';
import type { PersistenceAdapter } from '@cagey-sessions/core';
import { hmacAuthenticator } from './auth.js';
import { consoleLogger, isLevel, parseDuration, parseInteger, UsageError } from './cli.js';
import { type ClusterNode, isPresenceKind, openClusterNode } from './cluster-node.js';
import type { ParentToServer, ServerToParent } from './launch.js';
import { DEFAULT_LIMITS, type Limits, type ShutdownReport, startGameServer } from './server.js';
import { defaultDataDir, isStoreKind, openStore, STORE_KINDS } from './stores.js';

const seconds = (ms: number) => `${ms / 1000}s`;

const START_COMMAND = 'pnpm --filter @cagey-sessions/example-websocket-game start';

const USAGE = `Usage: ${START_COMMAND} [options]
  --store <kind>              ${STORE_KINDS.join(' | ')} (default pglite)
                              postgres reads DATABASE_URL, redis REDIS_URL, mongo MONGODB_URI
  --host <address>            address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --port <n>                  port, 0 for any free one (default 8080)
  --data-dir <dir>            where PGlite keeps its files (default ${defaultDataDir()})
  --namespace <name>          table / key prefix / collection name part (default game)
  --grace <duration>          how long a disconnected player's session waits for a reconnect (default 10s)
  --interval <duration>       how often changed player data is flushed (default 10s)
  --shutdown-timeout <d>      how long shutdown retries unsaved data (default 15s)
  --call-timeout <d>          how long one store call may take before it counts as failed (default 10s)
  --max-frame-bytes <n>       largest client frame; larger closes with 1009 (default ${DEFAULT_LIMITS.maxFrameBytes})
  --max-pending <n>           requests queued per connection before the server stops reading it (default ${DEFAULT_LIMITS.maxPending})
  --max-buffered-bytes <n>    unread reply bytes per connection before its requests wait (default ${DEFAULT_LIMITS.maxBufferedBytes})
  --slow-reader-timeout <d>   how long replies may stay unread above that; then close 4002 (default ${seconds(DEFAULT_LIMITS.slowReaderTimeoutMs)})
  --heartbeat <d>             ping interval; a connection silent for two is dropped; 0 = off (default ${seconds(DEFAULT_LIMITS.heartbeatMs)})
  --login-timeout <d>         close 4001 when no login succeeded by then (default ${seconds(DEFAULT_LIMITS.loginTimeoutMs)})
  --rate-limit <n>/<burst>    requests per second per player, and burst; "off" to disable (default ${DEFAULT_LIMITS.rateLimit?.perSecond}/${DEFAULT_LIMITS.rateLimit?.burst})
  --log-level <level>         debug | info | warn | error (default info)
  --presence <kind>           redis | postgres: run beside other servers on the same store, one live session
                              per player across them (URL from PRESENCE_URL, else REDIS_URL / DATABASE_URL)
  --node-id <id>              this server's name in the presence (default game-<pid>)
  --lease-ttl <d>             how long this server's players outlive its last lease renewal (default 5s)
  --lives-log <file>          append each session's start and end and each handoff, as JSON lines
Environment: GAME_AUTH_SECRET (16+ characters) makes every login carry auth = base64url(HMAC-SHA256(secret, userId)).`;

async function main(): Promise<number> {
  const started = performance.now();
  const { values } = parseArgs({
    options: {
      store: { type: 'string', default: 'pglite' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8080' },
      'data-dir': { type: 'string', default: defaultDataDir() },
      namespace: { type: 'string', default: 'game' },
      grace: { type: 'string', default: '10s' },
      interval: { type: 'string', default: '10s' },
      'shutdown-timeout': { type: 'string', default: '15s' },
      'call-timeout': { type: 'string', default: '10s' },
      'max-frame-bytes': { type: 'string' },
      'max-pending': { type: 'string' },
      'max-buffered-bytes': { type: 'string' },
      'slow-reader-timeout': { type: 'string' },
      heartbeat: { type: 'string' },
      'login-timeout': { type: 'string' },
      'rate-limit': { type: 'string' },
      'fault-control': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      presence: { type: 'string' },
      'node-id': { type: 'string' },
      'lease-ttl': { type: 'string' },
      'lives-log': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!isStoreKind(values.store)) throw new UsageError(`--store must be one of ${STORE_KINDS.join(', ')}.`);
  if (!isLevel(values['log-level'])) throw new UsageError('--log-level must be debug, info, warn or error.');
  const port = parseInteger('port', values.port, 0, 65535);
  const graceMs = parseDuration('grace', values.grace);
  const interval = parseDuration('interval', values.interval);
  const shutdownTimeout = parseDuration('shutdown-timeout', values['shutdown-timeout']);
  const callTimeout = parseDuration('call-timeout', values['call-timeout']);
  const limits = parseLimits(values);
  const secret = process.env.GAME_AUTH_SECRET;
  if (secret !== undefined && secret.length < 16)
    throw new UsageError('GAME_AUTH_SECRET must be at least 16 characters.');
  const log = consoleLogger(values['log-level']);
  const report = (message: ServerToParent) =>
    new Promise<void>((resolve) => {
      if (process.send === undefined || !process.connected) resolve();
      else process.send(message, undefined, {}, () => resolve());
    });

  const presence = values.presence;
  if (presence !== undefined && !isPresenceKind(presence))
    throw new UsageError('--presence must be redis or postgres.');
  const cluster: ClusterNode | undefined =
    presence === undefined
      ? undefined
      : await openClusterNode({
          presence,
          nodeId: values['node-id'] ?? `game-${process.pid}`,
          namespace: values.namespace,
          ...(values['lease-ttl'] === undefined
            ? {}
            : { leaseTtlMs: parseDuration('lease-ttl', values['lease-ttl']) }),
          ...(values['lives-log'] === undefined ? {} : { livesLog: values['lives-log'] }),
        });

  const openStarted = performance.now();
  const store = await openStore(values.store, { dataDir: values['data-dir'], namespace: values.namespace });
  const openStoreMs = performance.now() - openStarted;
  let adapter: PersistenceAdapter = store.adapter;
  if (values['fault-control']) {
    // For the demo's --outage on a store inside this process: the demo says when the store hangs and heals.
    const { FaultyAdapter } = await import('@cagey-sessions/testing');
    const faulty = new FaultyAdapter(store.adapter);
    adapter = faulty;
    let hang: { release(): void } | undefined;
    process.on('message', (message: ParentToServer) => {
      if (message.type !== 'fault') return;
      const methods = ['load', 'save', 'delete'] as const;
      if (message.action === 'hang') hang ??= faulty.hang({ methods });
      else if (message.action === 'fail') faulty.failRate(1, { methods });
      else {
        faulty.failRate(0);
        hang?.release();
        hang = undefined;
      }
      log.warn?.(
        { action: message.action },
        message.action === 'heal' ? 'store outage ends' : 'store outage begins',
      );
    });
  }
  let result: ShutdownReport;
  let contents: Record<string, unknown> | undefined;
  try {
    const server = await startGameServer({
      adapter,
      host: values.host,
      port,
      graceMs,
      interval,
      shutdownTimeout,
      callTimeout,
      limits,
      log,
      telemetry: { store: store.kind },
      ...(secret === undefined ? {} : { authenticate: hmacAuthenticator(secret) }),
      ...(store.tuning === undefined ? {} : { tuning: store.tuning }),
      ...(cluster === undefined ? {} : { cluster: cluster.options }),
    });
    cluster?.watch(server.manager);
    log.info?.({ store: store.location }, `game server listening on ${server.url}`);
    log.info?.(`play in a browser: http://${server.url.slice('ws://'.length)}/`);
    log.info?.(
      `live dashboard: http://${server.url.slice('ws://'.length)}/dashboard (Prometheus: GET /metrics)`,
    );
    if (secret === undefined) {
      log.warn?.('GAME_AUTH_SECRET is not set: any client can log in as any player (fine on loopback only)');
    }
    await report({
      type: 'ready',
      port: server.port,
      location: store.location,
      startupMs: performance.now() - started,
      openStoreMs,
    });

    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
      // Started by a parent that went away: nobody will send a signal, so shut down as if asked to.
      process.once('disconnect', () => resolve('parent exited'));
    });
    const forced = () => {
      log.error?.('second signal: exiting without waiting for the store');
      process.exit(130);
    };
    process.once('SIGINT', forced);
    process.once('SIGTERM', forced);

    log.info?.(`${signal}: shutting down, storing every player's data`);
    result = await server.shutdown();
    contents = store.contents?.();
  } finally {
    await store.close();
    await cluster?.close();
  }
  const { stats } = result;
  if (result.unsaved.length === 0) {
    log.info?.(
      { written: stats.written, failed: stats.failed, conflicts: stats.conflicts },
      `all player data stored in ${Math.round(result.durationMs)} ms`,
    );
  } else {
    log.error?.({ unsaved: result.unsaved }, `players not stored: ${result.unsaved.length}`);
  }
  const maxRssBytes = process.resourceUsage().maxRSS * 1024;
  await report(
    contents === undefined
      ? { type: 'report', report: result, maxRssBytes }
      : { type: 'report', report: result, maxRssBytes, contents },
  );
  if (process.connected) process.disconnect();
  return result.unsaved.length === 0 ? 0 : 1;
}

function parseLimits(values: Record<string, string | boolean | undefined>): Partial<Limits> {
  const limits: Partial<Limits> = {};
  const text = (name: string) => values[name] as string | undefined;
  const integer = (name: string) => {
    const value = text(name);
    return value === undefined ? undefined : parseInteger(name, value, 1, 2 ** 31);
  };
  const duration = (name: string) => {
    const value = text(name);
    return value === undefined ? undefined : parseDuration(name, value);
  };
  const set = <K extends keyof Limits>(key: K, value: Limits[K] | undefined) => {
    if (value !== undefined) limits[key] = value;
  };
  set('maxFrameBytes', integer('max-frame-bytes'));
  set('maxPending', integer('max-pending'));
  set('maxBufferedBytes', integer('max-buffered-bytes'));
  set('slowReaderTimeoutMs', duration('slow-reader-timeout'));
  const heartbeat = text('heartbeat');
  if (heartbeat !== undefined)
    limits.heartbeatMs = heartbeat.trim() === '0' ? 0 : parseDuration('heartbeat', heartbeat);
  set('loginTimeoutMs', duration('login-timeout'));
  const rate = text('rate-limit');
  if (rate === 'off') limits.rateLimit = null;
  else if (rate !== undefined) {
    const match = /^(\d+)\/(\d+)$/.exec(rate.trim());
    if (match === null)
      throw new UsageError(
        `--rate-limit ${JSON.stringify(rate)}: expected <per second>/<burst>, e.g. 20/40, or off.`,
      );
    limits.rateLimit = {
      perSecond: parseInteger('rate-limit', match[1]!, 1, 1_000_000),
      burst: parseInteger('rate-limit', match[2]!, 1, 1_000_000),
    };
  }
  return limits;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Everything is closed; a handle a driver left open must not keep the process alive.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (error: unknown) => {
    if (error instanceof UsageError) console.error(`${error.message}\n\n${USAGE}`);
    else console.error(`game server failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
