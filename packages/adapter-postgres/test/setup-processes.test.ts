import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { newPool, randomTable, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: setup() from 4 processes');
const worker = fileURLToPath(new URL('./fixtures/setup-worker.ts', import.meta.url));
const tsconfig = fileURLToPath(new URL('../tsconfig.test.json', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');

interface Worker {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  line(): Promise<string>;
}

function startWorker(table: string): Worker {
  const child = spawn(process.execPath, ['--import', tsx, worker, url!, table], {
    env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
  });
  const lines: string[] = [];
  let waiting: ((line: string) => void) | undefined;
  let buffer = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk;
  });
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk;
    for (let at = buffer.indexOf('\n'); at !== -1; at = buffer.indexOf('\n')) {
      lines.push(buffer.slice(0, at));
      buffer = buffer.slice(at + 1);
    }
    if (waiting !== undefined && lines.length > 0) waiting(lines.shift()!);
  });
  const exited = once(child, 'exit');
  return {
    child,
    lines,
    line: () =>
      new Promise<string>((resolve, reject) => {
        if (lines.length > 0) return resolve(lines.shift()!);
        waiting = resolve;
        exited.then(([code]) => reject(new Error(`worker exited (${code}) early: ${stderr.slice(-2000)}`)));
      }),
  };
}

describe.skipIf(url === null)('setup() from separate processes', () => {
  const workers: Worker[] = [];
  afterAll(() => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  });

  it('4 processes running setup() at the same moment all succeed and create the table once', async () => {
    const schema = randomTable('race');
    const table = `${schema}.user_data`;
    for (let i = 0; i < 4; i++) workers.push(startWorker(table));
    expect(await Promise.all(workers.map((w) => w.line()))).toEqual(Array(4).fill('ready'));
    for (const w of workers) w.child.stdin.write('go\n');
    expect(await Promise.all(workers.map((w) => w.line()))).toEqual(Array(4).fill('ok'));
    const codes = await Promise.all(
      workers.map((w) => (w.child.exitCode !== null ? [w.child.exitCode] : once(w.child, 'exit'))),
    );
    expect(codes.map(([code]) => code)).toEqual([0, 0, 0, 0]);

    const pool = newPool(url!);
    try {
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = 'user_data' AND c.relkind = 'r'`,
        [schema],
      );
      expect(rows[0].n).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
