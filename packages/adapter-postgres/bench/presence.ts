/**
 * What the presence costs per call, on one server and on PGlite: a claim of a free user and of a held one, a
 * burst of 10,000 claims (100 in flight), releasing 10,000 users, a renewal, and a message from `send` to the
 * listener. Medians of several rounds. Starts its own server (tools/test-servers) unless CAGEY_BENCH_POSTGRES_URL
 * names one. Run with `pnpm bench:presence`.
 */
import { type BenchRow, report, timeMs } from '@cagey-sessions/bench-kit';
import { startPostgres } from '@cagey-sessions/test-servers';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { PostgresPresence } from '../src/index.js';

const ROUNDS = Number(process.env.CAGEY_BENCH_ROUNDS ?? 3);
const SAMPLES = 500;
const BURST = 10_000;

/** Tables of this run (`<table>_nodes`, `<table>_users`), dropped at the end. */
const TABLE = `bench_presence_${process.pid}`;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Per-call medians of one round, in ms, and the burst and release totals. */
async function round(
  make: (table: string) => PostgresPresence,
  table: string,
): Promise<Record<string, number>> {
  const a = make(table);
  const b = make(table);
  try {
    await a.setup();
    let delivered: (() => void) | undefined;
    await a.join('a', 600_000, () => delivered?.());
    await b.join('b', 600_000, () => {});
    const free: number[] = [];
    const held: number[] = [];
    const renew: number[] = [];
    const message: number[] = [];
    for (let i = 0; i < SAMPLES; i++) free.push(await timeMs(() => a.claim(`u${i}`, 'a')));
    for (let i = 0; i < SAMPLES; i++) held.push(await timeMs(() => b.claim(`u${i}`, 'b')));
    for (let i = 0; i < SAMPLES; i++) renew.push(await timeMs(() => a.renew('a', 600_000)));
    for (let i = 0; i < SAMPLES; i++) {
      const arrived = new Promise<void>((resolve) => {
        delivered = resolve;
      });
      message.push(
        await timeMs(async () => {
          await b.send('a', { type: 'release', userId: `m${i}`, from: 'b' });
          await arrived;
        }),
      );
    }
    const ids = Array.from({ length: BURST }, (_, i) => `burst-${i}`);
    const burst = await timeMs(async () => {
      for (let i = 0; i < ids.length; i += 100) {
        await Promise.all(ids.slice(i, i + 100).map((id) => a.claim(id, 'a')));
      }
    });
    const release = await timeMs(() => a.release('a', ids));
    return {
      free: median(free),
      held: median(held),
      renew: median(renew),
      message: median(message),
      burst,
      release,
    };
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

const ownServer = process.env.CAGEY_BENCH_POSTGRES_URL ? undefined : await startPostgres();
const url = process.env.CAGEY_BENCH_POSTGRES_URL ?? ownServer!.url;
const db = await PGlite.create();
try {
  const targets = {
    'server (url: pool of 10 + a listening client)': (table: string) => new PostgresPresence({ url, table }),
    'PGlite (in-process)': (table: string) => new PostgresPresence({ client: db, table }),
  };
  const results: Record<string, Record<string, number>[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved, so that both meet the same background load.
    for (const [name, make] of Object.entries(targets)) {
      const rounds = results[name] ?? [];
      results[name] = rounds;
      rounds.push(await round(make, `${TABLE}_${r}`));
    }
  }
  const rows: BenchRow[] = [];
  for (const [name, rounds] of Object.entries(results)) {
    const of = (key: string) => median(rounds.map((result) => result[key]!));
    rows.push(
      { name: `${name}: claim of a free user`, value: of('free'), unit: 'ms', note: 'median call' },
      { name: `${name}: claim of a user held elsewhere`, value: of('held'), unit: 'ms', note: 'median call' },
      { name: `${name}: renew`, value: of('renew'), unit: 'ms', note: 'median call' },
      { name: `${name}: send → listener`, value: of('message'), unit: 'ms', note: 'median, NOTIFY' },
      {
        name: `${name}: ${BURST.toLocaleString('en-US')} claims, 100 in flight`,
        value: (BURST / of('burst')) * 1000,
        unit: 'claims/s',
      },
      {
        name: `${name}: release ${BURST.toLocaleString('en-US')} users`,
        value: of('release'),
        unit: 'ms',
        note: 'one statement',
      },
    );
  }
  report('adapter-postgres-presence', rows, { rounds: ROUNDS, samplesPerCall: SAMPLES });
} finally {
  await db.close();
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  pool.on('error', () => {}); // the server may stop before this connection's end is acknowledged
  for (let r = 0; r < ROUNDS; r++) {
    await pool.query(`DROP TABLE IF EXISTS "${TABLE}_${r}_nodes", "${TABLE}_${r}_users"`).catch(() => {});
  }
  await pool.end();
  await ownServer?.stop();
}
