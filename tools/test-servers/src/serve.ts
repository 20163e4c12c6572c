/**
 * Starts throwaway servers for trying things by hand (the demo on a real database, a benchmark against a
 * server you keep) and prints their URLs as environment variables; Ctrl-C stops them and removes their data.
 *
 *   pnpm servers                       # PostgreSQL, Redis and FerretDB
 *   pnpm servers postgres redis       # only these
 */
import { startFerretDB } from './ferretdb.js';
import { startPostgres } from './postgres.js';
import { startRedis } from './redis.js';
import type { RunningServer } from './types.js';

const starters = {
  postgres: { variable: 'DATABASE_URL', start: () => startPostgres() },
  redis: { variable: 'REDIS_URL', start: () => startRedis() },
  mongo: { variable: 'MONGODB_URI', start: () => startFerretDB() },
} satisfies Record<string, { variable: string; start: () => Promise<RunningServer> }>;
type Kind = keyof typeof starters;

const requested = process.argv.slice(2);
const unknown = requested.filter((kind) => !(kind in starters));
if (unknown.length > 0) {
  console.error(`Unknown server ${unknown.join(', ')}; choose from ${Object.keys(starters).join(', ')}.`);
  process.exit(2);
}
const kinds = (requested.length > 0 ? requested : Object.keys(starters)) as Kind[];

const running: RunningServer[] = [];
const stopAll = () => Promise.allSettled(running.map((server) => server.stop()));
try {
  for (const kind of kinds) {
    const server = await starters[kind].start();
    running.push(server);
    console.log(`export ${starters[kind].variable}='${server.url}'`);
  }
} catch (error) {
  await stopAll();
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
console.error('Servers running on 127.0.0.1. Ctrl-C stops them and removes their data.');
// The servers' processes do not hold the event loop open (tests must be able to exit); this does, until a signal.
const keepAlive = setInterval(() => {}, 2 ** 30);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    clearInterval(keepAlive);
    void stopAll().then(() => process.exit(0));
  });
}
