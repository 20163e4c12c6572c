/**
 * Runs the game server: `pnpm start -- --store pglite --port 8080`. SIGINT or SIGTERM shuts it down
 * gracefully (every player's data stored before exit); a second signal exits at once.
 *
 * When started by the demo (with an IPC channel), it reports `ready` and, at exit, its shutdown report.
 */
import { parseArgs } from 'node:util';
import { consoleLogger, isLevel, parseDuration, parseInteger, UsageError } from './cli.js';
import type { ServerToParent } from './launch.js';
import { type ShutdownReport, startGameServer } from './server.js';
import { defaultDataDir, isStoreKind, openStore, STORE_KINDS } from './stores.js';

const USAGE = `Usage: serve [options]
  --store <kind>          ${STORE_KINDS.join(' | ')} (default pglite)
                          postgres reads DATABASE_URL, redis REDIS_URL, mongo MONGODB_URI
  --port <n>              port on 127.0.0.1, 0 for any free one (default 8080)
  --data-dir <dir>        where PGlite keeps its files (default ${defaultDataDir()})
  --namespace <name>      table / key prefix / collection name part (default game)
  --grace <duration>      how long a disconnected player's session waits for a reconnect (default 10s)
  --interval <duration>   how often changed player data is flushed (default 10s)
  --shutdown-timeout <d>  how long shutdown retries unsaved data (default 15s)
  --log-level <level>     debug | info | warn | error (default info)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      store: { type: 'string', default: 'pglite' },
      port: { type: 'string', default: '8080' },
      'data-dir': { type: 'string', default: defaultDataDir() },
      namespace: { type: 'string', default: 'game' },
      grace: { type: 'string', default: '10s' },
      interval: { type: 'string', default: '10s' },
      'shutdown-timeout': { type: 'string', default: '15s' },
      'log-level': { type: 'string', default: 'info' },
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
  const log = consoleLogger(values['log-level']);
  const report = (message: ServerToParent) =>
    new Promise<void>((resolve) => {
      if (process.send === undefined || !process.connected) resolve();
      else process.send(message, undefined, {}, () => resolve());
    });

  const store = await openStore(values.store, { dataDir: values['data-dir'], namespace: values.namespace });
  let result: ShutdownReport;
  let contents: Record<string, unknown> | undefined;
  try {
    const server = await startGameServer({
      adapter: store.adapter,
      port,
      graceMs,
      interval,
      shutdownTimeout,
      log,
      ...(store.tuning === undefined ? {} : { tuning: store.tuning }),
    });
    log.info?.({ store: store.location }, `game server listening on ${server.url}`);
    await report({ type: 'ready', port: server.port, location: store.location });

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
  await report(
    contents === undefined
      ? { type: 'report', report: result }
      : { type: 'report', report: result, contents },
  );
  if (process.connected) process.disconnect();
  return result.unsaved.length === 0 ? 0 : 1;
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
