/**
 * Migration of 100,000 players (about 1 KB of userData each) from PostgreSQL to Redis, two ways side by side in
 * one run, alternating round by round:
 *   cagey-sessions migrate   the command in a child process: scan pages through PostgresAdapter, conditional
 *                            restore through RedisAdapter (a Lua script per user, one pipeline per batch);
 *   raw copy                 the floor: keyset pages of the same table with pg, one ioredis pipeline of plain
 *                            SETs per page, same key layout, no version check.
 * Also the command's peak RSS (VmHWM of its process, polled), to show memory does not follow the player count.
 * Target: the command within 2x of the raw copy's time.
 * Run with `pnpm bench`; it starts its own servers (or uses DATABASE_URL and REDIS_URL) and writes
 * bench-results/cli.json.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { PostgresAdapter } from '@cagey-sessions/adapter-postgres';
import { encodeUserKey } from '@cagey-sessions/adapter-redis';
import { type BenchRow, playerData, report, timeMs } from '@cagey-sessions/bench-kit';
import { startPostgres, startRedis } from '@cagey-sessions/test-servers';
import { Redis } from 'ioredis';
import pg from 'pg';

const PLAYERS = Number(process.env.CAGEY_BENCH_PLAYERS ?? 100_000);
const ROUNDS = 2;
const TARGET_RATIO = 2;
const PAGE = 1000;
const packageDir = fileURLToPath(new URL('..', import.meta.url));

const postgresServer = process.env.DATABASE_URL ? undefined : await startPostgres();
const redisServer = process.env.REDIS_URL ? undefined : await startRedis();
const postgresUrl = process.env.DATABASE_URL ?? postgresServer!.url;
const redisUrl = process.env.REDIS_URL ?? redisServer!.url;
const table = `bench_${randomBytes(4).toString('hex')}`;

try {
  const bytes = await seed();
  const cliMs: number[] = [];
  const cliWallMs: number[] = [];
  const rawMs: number[] = [];
  let peakRssMb = 0;
  for (let round = 0; round < ROUNDS; round++) {
    rawMs.push(await timeMs(() => rawCopy(`raw_${round}_${randomBytes(3).toString('hex')}:`)));
    const run = await runCli(`cli_${round}_${randomBytes(3).toString('hex')}:`);
    cliMs.push(run.ms);
    cliWallMs.push(run.wallMs);
    peakRssMb = Math.max(peakRssMb, run.peakRssMb);
  }
  const cli = Math.min(...cliMs);
  const raw = Math.min(...rawMs);
  const ratio = cli / raw;
  const rows: BenchRow[] = [
    {
      name: `cagey-sessions migrate, ${PLAYERS.toLocaleString('en-US')} players PostgreSQL -> Redis`,
      value: PLAYERS / (cli / 1000),
      unit: 'players/s',
      note: `${(cli / 1000).toFixed(1)} s (best of ${ROUNDS}, as the command reports it); ${ratio.toFixed(2)}x the raw copy's time (target ≤ ${TARGET_RATIO}x)`,
    },
    {
      name: 'raw copy: pg keyset pages + ioredis pipelined SET',
      value: PLAYERS / (raw / 1000),
      unit: 'players/s',
      note: `${(raw / 1000).toFixed(1)} s (best of ${ROUNDS})`,
    },
    {
      name: 'cagey-sessions migrate, wall time with process start',
      value: Math.min(...cliWallMs) / 1000,
      unit: 's',
      note: 'node + tsx start-up and connections included',
    },
    {
      name: 'cagey-sessions migrate, peak RSS',
      value: peakRssMb,
      unit: 'MB',
      note: `VmHWM of the command's process; ${(bytes / 1e6).toFixed(0)} MB of userData moved`,
    },
  ];
  report('cli', rows, {
    players: PLAYERS,
    userDataBytes: bytes,
    cliMs,
    rawMs,
    cpus: cpus().length,
    loadavg: loadavg(),
    target: `within ${TARGET_RATIO}x of the raw copy`,
    met: ratio <= TARGET_RATIO,
  });
} finally {
  await Promise.all([postgresServer?.stop(), redisServer?.stop()]);
}

async function seed(): Promise<number> {
  const adapter = new PostgresAdapter({ url: postgresUrl, table, batchSize: 1000 });
  await adapter.setup();
  let bytes = 0;
  for (let i = 0; i < PLAYERS; i += 1000) {
    const records = [];
    for (let k = i; k < Math.min(PLAYERS, i + 1000); k++) {
      const userData = playerData(k);
      bytes += JSON.stringify(userData).length;
      records.push({ userId: `player-${k}`, userData, expectedVersion: 0 });
    }
    await adapter.save(records);
  }
  await adapter.close();
  return bytes;
}

/** The floor: what copying the same rows costs with the drivers alone, page by page. */
async function rawCopy(prefix: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: postgresUrl, max: 2 });
  const redis = new Redis(redisUrl);
  try {
    let after = '';
    for (;;) {
      const { rows } = await pool.query<{ user_id: string; data: unknown; version: string }>(
        `SELECT user_id, data, version FROM ${table} WHERE user_id > $1 AND data IS NOT NULL ORDER BY user_id LIMIT ${PAGE}`,
        [after],
      );
      if (rows.length === 0) break;
      const pipeline = redis.pipeline();
      for (const row of rows) {
        pipeline.set(`${prefix}${encodeUserKey(row.user_id)}`, `${row.version}:${JSON.stringify(row.data)}`);
      }
      await pipeline.exec();
      after = rows.at(-1)!.user_id;
    }
  } finally {
    await pool.end();
    redis.disconnect();
  }
}

/** Runs the command in a child process; its own measure of the run, the wall time, and its peak RSS. */
function runCli(prefix: string): Promise<{ ms: number; wallMs: number; peakRssMb: number }> {
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/bin.ts',
      'migrate',
      '--from',
      'env:BENCH_FROM',
      '--from-table',
      table,
      '--to',
      'env:BENCH_TO',
      '--to-prefix',
      prefix,
      '--batch-size',
      String(PAGE),
      '--json',
      '--quiet',
    ],
    {
      cwd: packageDir,
      env: {
        ...process.env,
        TSX_TSCONFIG_PATH: 'tsconfig.test.json',
        BENCH_FROM: postgresUrl,
        BENCH_TO: redisUrl,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  let peakKb = 0;
  const poll = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      peakKb = Math.max(peakKb, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
    } catch {
      // The process has exited.
    }
  }, 50);
  return new Promise((resolve, reject) => {
    child.once('close', (code) => {
      clearInterval(poll);
      const summary = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
      if (code !== 0 || summary.counts?.copied !== PLAYERS) {
        reject(new Error(`migrate exited ${code}: ${stdout}`));
        return;
      }
      resolve({ ms: summary.seconds * 1000, wallMs: Date.now() - started, peakRssMb: peakKb / 1024 });
    });
  });
}
