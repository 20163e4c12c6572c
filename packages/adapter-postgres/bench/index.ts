/**
 * Flushing 10,000 dirty sessions (about 1 KB of user data each) to PostgreSQL, side by side on one server:
 * - core + PostgresAdapter, versions on (every write fenced by the session's version);
 * - (a) the original style: no adapter, a `persistUserData` listener awaiting one upsert per session, one
 *   session after the other as the original library did;
 * - (b) the ceiling: one hand-written bulk upsert statement of the same rows with raw pg (fastest input form
 *   measured, no version predicate);
 * plus, for information, the adapter at other batch sizes and over an in-process PGlite.
 * Rounds are interleaved and the median is reported. Starts its own server (tools/test-servers) unless
 * CAGEY_BENCH_POSTGRES_URL names one. Run with `pnpm bench`.
 */
import { type BenchRow, medianMs, playerData, report } from '@cagey-sessions/bench-kit';
import { create, type SessionManager } from '@cagey-sessions/core';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { PostgresAdapter, type PostgresClient } from '../src/index.js';

const SESSIONS = 10_000;
const ROUNDS = Number(process.env.CAGEY_BENCH_ROUNDS ?? 5);
/** The whole benchmark gives up after this long. */
const DEADLINE_MS = 10 * 60_000;

function createTable(client: PostgresClient, table: string) {
  return new PostgresAdapter({ client, table }).setup();
}

/** A contender: prepared once, then `flush` is timed after `dirty` (untimed) changed every session's data. */
interface Contender {
  name: string;
  dirty(): void;
  flush(): Promise<void>;
  dispose(): Promise<void>;
}

async function sessions(manager: SessionManager, versioned: boolean) {
  const list = [];
  for (let i = 0; i < SESSIONS; i++) {
    const session = await manager.create();
    await session.start();
    await session.setUser(i, playerData(i), versioned ? { version: 0 } : {});
    list.push(session);
  }
  return list;
}

async function coreWithAdapter(
  name: string,
  client: PostgresClient,
  table: string,
  batchSize?: number,
): Promise<Contender> {
  const adapter = new PostgresAdapter({ client, table, batchSize });
  await adapter.setup();
  const manager = create({ adapter }, { userData: { persistence: { interval: '1h' } } });
  const list = await sessions(manager, true);
  await manager.persistAllUserData(); // first write: inserts with expectedVersion 0
  return {
    name,
    dirty: () => {
      for (const session of list) (session.userData as { gold: number }).gold += 1;
    },
    flush: () => manager.persistAllUserData(),
    dispose: () => manager.destroy(false),
  };
}

async function originalStyle(pool: pg.Pool, table: string): Promise<Contender> {
  await createTable(pool, table);
  // Batches of one, one at a time: each session's listener runs and is awaited before the next, as the
  // original library's persistAllUserData did (core would otherwise run a batch's listeners concurrently).
  const manager = create({}, { userData: { persistence: { interval: '1h', batchSize: 1, concurrency: 1 } } });
  const upsert = `INSERT INTO "${table}" AS t (user_id, data, version) VALUES ($1, $2::text::jsonb, 1)
    ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, version = t.version + 1, updated_at = now()`;
  manager.on('persistUserData', async (session) => {
    await pool.query(upsert, [String(session.userId), JSON.stringify(session.userData)]);
  });
  const list = await sessions(manager, false);
  await manager.persistAllUserData();
  return {
    name: '(a) original style: one awaited upsert per session',
    dirty: () => {
      for (const session of list) (session.userData as { gold: number }).gold += 1;
    },
    flush: () => manager.persistAllUserData(),
    dispose: () => manager.destroy(false),
  };
}

async function ceiling(pool: pg.Pool, table: string): Promise<Contender> {
  await createTable(pool, table);
  const data = Array.from({ length: SESSIONS }, (_, i) => playerData(i));
  const keys = data.map((_, i) => String(i));
  const sql = `INSERT INTO "${table}" AS t (user_id, data, version)
    SELECT k, d::jsonb, 1 FROM ROWS FROM (unnest($1::text[]), unnest(string_to_array($2::text, chr(30)))) AS i(k, d)
    ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, version = t.version + 1, updated_at = now()`;
  const flush = async () => {
    await pool.query(sql, [keys, data.map((d) => JSON.stringify(d)).join('\u001e')]);
  };
  await flush();
  return {
    name: '(b) ceiling: one hand-written bulk upsert, raw pg',
    dirty: () => {
      for (const d of data) (d as { gold: number }).gold += 1;
    },
    flush,
    dispose: async () => {},
  };
}

async function main() {
  const started = Date.now();
  const givenUrl = process.env.CAGEY_BENCH_POSTGRES_URL;
  const server =
    givenUrl === undefined ? await (await import('@cagey-sessions/test-servers')).startPostgres() : undefined;
  const url = givenUrl ?? server!.url;
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => {});
  const lite = await PGlite.create();
  const suffix = Date.now().toString(36);
  try {
    const { rows } = await pool.query('SHOW server_version');
    const version = (rows[0] as { server_version: string }).server_version;
    const contenders = [
      await coreWithAdapter(
        'core + PostgresAdapter (default batchSize 500, versions on)',
        pool,
        `bench_core_${suffix}`,
      ),
      await originalStyle(pool, `bench_original_${suffix}`),
      await ceiling(pool, `bench_ceiling_${suffix}`),
      await coreWithAdapter('info: core + adapter, batchSize 250', pool, `bench_b250_${suffix}`, 250),
      await coreWithAdapter('info: core + adapter, batchSize 1000', pool, `bench_b1000_${suffix}`, 1000),
      await coreWithAdapter('info: core + adapter, batchSize 5000', pool, `bench_b5000_${suffix}`, 5000),
      await coreWithAdapter('info: core + adapter over PGlite (in-process)', lite, `bench_lite_${suffix}`),
    ];
    const times = new Map<Contender, number[]>(contenders.map((c) => [c, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so no contender always runs right after the same neighbour.
      for (let k = 0; k < contenders.length; k++) {
        if (Date.now() - started > DEADLINE_MS) throw new Error('benchmark exceeded its 10 minute deadline');
        const contender = contenders[(round + k) % contenders.length]!;
        times.get(contender)!.push(
          await medianMs(
            1,
            () => contender.flush(),
            () => contender.dirty(),
          ),
        );
      }
    }
    const median = (c: Contender) => {
      const sorted = [...times.get(c)!].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)]!;
    };
    const [ours, original, bulk] = contenders as [Contender, Contender, Contender];
    const oursMs = median(ours);
    const rows_: BenchRow[] = contenders.map((c) => {
      const ms = median(c);
      let note = `${Math.round((SESSIONS / ms) * 1000).toLocaleString('en-US')} sessions/s`;
      if (c === ours) {
        note +=
          `; ${(median(original) / ms).toFixed(1)}x faster than (a) (target ≥ 30x)` +
          `; ${(ms / median(bulk)).toFixed(2)}x the time of (b) (target ≤ 1.3x)`;
      } else if (c !== bulk && c !== original) {
        note += `; ${(ms / oursMs).toFixed(2)}x the time of the default`;
      }
      return {
        name: `flush ${SESSIONS.toLocaleString('en-US')} dirty sessions: ${c.name}`,
        value: ms,
        unit: 'ms',
        note,
      };
    });
    report('adapter-postgres', rows_, {
      sessions: SESSIONS,
      rounds: ROUNDS,
      bytesPerSession: JSON.stringify(playerData(SESSIONS)).length,
      postgres: version,
      server:
        givenUrl === undefined
          ? 'ephemeral (tools/test-servers: fsync off, loopback)'
          : 'CAGEY_BENCH_POSTGRES_URL',
      cpus: (await import('node:os')).cpus().length,
    });
    for (const c of contenders) await c.dispose();
  } finally {
    await pool.end();
    await lite.close();
    await server?.stop();
  }
}

await main();
