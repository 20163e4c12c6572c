/**
 * What RedisPresence costs, on a standalone server and on a 3-master Cluster, each presence with its own
 * connections as a game-server process has:
 *   claim, free user              one claim after the other (latency), and 100 in flight (throughput);
 *   claim, held by a live node    the refusal a login elsewhere meets first;
 *   claim, take-over              users of a node whose lease is gone, one after the other;
 *   release 10,000 users          the shutdown of a full node;
 *   message, send -> delivered    one message at a time, from a send() call to the receiver's onMessage.
 * Run with `pnpm exec tsx --tsconfig tsconfig.test.json bench/presence.ts`; it starts its own servers and writes bench-results/adapter-redis-presence.json.
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { type BenchRow, report, timeMs } from '@cagey-sessions/bench-kit';
import { startRedis, startRedisCluster } from '@cagey-sessions/test-servers';
import { RedisPresence } from '../src/index.js';

const SEQUENTIAL = 2_000;
const CONCURRENT = 10_000;
const IN_FLIGHT = 100;
const RELEASED = 10_000;
const MESSAGES = 2_000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

/** Median and 99th percentile of one call after the other, in ms. */
async function latencies(count: number, call: (i: number) => Promise<unknown>): Promise<[number, number]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) times.push(await timeMs(() => call(i)));
  times.sort((a, b) => a - b);
  return [percentile(times, 50), percentile(times, 99)];
}

/** Runs `count` calls with at most `inFlight` pending; returns calls per second. */
async function throughput(count: number, inFlight: number, call: (i: number) => Promise<unknown>) {
  let next = 0;
  const ms = await timeMs(() =>
    Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < count) await call(next++);
      }),
    ),
  );
  return (count / ms) * 1000;
}

async function measure(label: string, url: string): Promise<BenchRow[]> {
  const prefix = `bench_${randomBytes(4).toString('hex')}:`;
  const a = new RedisPresence({ url, prefix });
  const b = new RedisPresence({ url, prefix });
  const dead = new RedisPresence({ url, prefix });
  const rows: BenchRow[] = [];
  try {
    let received: (() => void) | undefined;
    await a.join('a', 60_000, () => {});
    await b.join('b', 60_000, () => received?.());
    await dead.join('dead', 60_000, () => {});

    const [freeP50, freeP99] = await latencies(SEQUENTIAL, (i) => a.claim(`seq-${i}`, 'a'));
    rows.push({
      name: `${label}: claim a free user, one at a time (p50)`,
      value: freeP50,
      unit: 'ms',
      note: `p99 ${freeP99.toFixed(2)} ms`,
    });
    const perSecond = await throughput(CONCURRENT, IN_FLIGHT, (i) => a.claim(`par-${i}`, 'a'));
    rows.push({
      name: `${label}: claim free users, ${IN_FLIGHT} in flight`,
      value: perSecond,
      unit: 'claims/s',
    });
    const [heldP50, heldP99] = await latencies(SEQUENTIAL, (i) => b.claim(`seq-${i}`, 'b'));
    rows.push({
      name: `${label}: claim a user a live node holds (p50)`,
      value: heldP50,
      unit: 'ms',
      note: `p99 ${heldP99.toFixed(2)} ms`,
    });

    for (let i = 0; i < SEQUENTIAL; i += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, j) => dead.claim(`orphan-${i + j}`, 'dead')));
    }
    await dead.leave('dead');
    const [takeP50, takeP99] = await latencies(SEQUENTIAL, (i) => b.claim(`orphan-${i}`, 'b'));
    rows.push({
      name: `${label}: take over a dead node's user (p50)`,
      value: takeP50,
      unit: 'ms',
      note: `p99 ${takeP99.toFixed(2)} ms`,
    });

    const ids = Array.from({ length: RELEASED }, (_, i) => `par-${i}`);
    const releaseMs = await timeMs(() => a.release('a', ids));
    rows.push({
      name: `${label}: release ${RELEASED.toLocaleString('en-US')} users`,
      value: releaseMs,
      unit: 'ms',
    });

    const [sendP50, sendP99] = await latencies(
      MESSAGES,
      (i) =>
        new Promise<void>((resolve, reject) => {
          received = resolve;
          a.send('b', { type: 'release', userId: `m${i}`, from: 'a' }).catch(reject);
        }),
    );
    rows.push({
      name: `${label}: message, send() to onMessage (p50)`,
      value: sendP50,
      unit: 'ms',
      note: `p99 ${sendP99.toFixed(2)} ms`,
    });
  } finally {
    await Promise.all([a.close(), b.close(), dead.close()]);
  }
  return rows;
}

const standalone = await startRedis();
const cluster = await startRedisCluster({ masters: 3 });
try {
  const clusterUrl = `redis+cluster://${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
  const rows = [...(await measure('standalone', standalone.url)), ...(await measure('cluster', clusterUrl))];
  report('adapter-redis-presence', rows, { cpus: cpus().length, loadavg: loadavg() });
} finally {
  await Promise.all([standalone.stop(), cluster.stop()]);
}
