/**
 * Event-loop stalls during flushes: the longest stretch a flush holds the event loop, and the flush's duration,
 * at 10,000 and 100,000 sessions of 1 KB with 0%, 1% and 100% of them changed; for this core in both dirty
 * tracking modes and, side by side in the same run, for the core of `BASELINE` (built from git into a
 * temporary directory). Each case runs in its own process. Run with `pnpm --filter @cagey-sessions/core bench:stalls`
 * (`CAGEY_BENCH_SESSIONS=100000` for one size, `CAGEY_BENCH_BASELINE=<rev>` for another baseline).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchRow, report } from '@cagey-sessions/bench-kit';

/** The core before flushes were sliced and the pipeline split into modules. */
const BASELINE = process.env.CAGEY_BENCH_BASELINE ?? '0586950';
const coreDir = fileURLToPath(new URL('..', import.meta.url));
const repoDir = join(coreDir, '..', '..');

function buildBaseline(): { module: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'cagey-core-baseline-'));
  const archive = execFileSync('git', [
    '-C',
    repoDir,
    'archive',
    BASELINE,
    'packages/core',
    'tsconfig.base.json',
  ]);
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  symlinkSync(join(coreDir, 'node_modules'), join(dir, 'packages/core/node_modules'));
  symlinkSync(join(repoDir, 'node_modules'), join(dir, 'node_modules')); // @types/node for the build
  execFileSync(join(repoDir, 'node_modules/.bin/tsc'), ['-p', join(dir, 'packages/core/tsconfig.json')]);
  return {
    module: join(dir, 'packages/core/dist/index.js'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function runCase(
  module: string,
  sessions: number,
  dirty: number,
  mode: string,
): { flushMs: number; stallMs: number } {
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(coreDir, 'bench/stall-case.ts'), module, String(sessions), String(dirty), mode],
    {
      cwd: coreDir,
      env: { ...process.env, TSX_TSCONFIG_PATH: join(coreDir, 'tsconfig.test.json') },
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    },
  );
  const line = child.stdout.trim().split('\n').at(-1) ?? '';
  if (child.status !== 0 || !line.startsWith('{'))
    throw new Error(`case failed: ${child.stderr.slice(-2000)}`);
  return JSON.parse(line) as { flushMs: number; stallMs: number };
}

const baseline = buildBaseline();
const contenders = [
  { name: `${BASELINE} (snapshot)`, module: baseline.module, mode: 'snapshot' },
  { name: 'now, snapshot', module: join(coreDir, 'src/index.ts'), mode: 'snapshot' },
  { name: 'now, explicit', module: join(coreDir, 'src/index.ts'), mode: 'explicit' },
];
const rows: BenchRow[] = [];
try {
  const sizes = (process.env.CAGEY_BENCH_SESSIONS ?? '10000,100000').split(',').map(Number);
  for (const sessions of sizes) {
    for (const dirty of [0, 0.01, 1]) {
      const label = `${sessions.toLocaleString('en-US')} sessions, ${dirty * 100}% dirty`;
      const results = contenders.map((contender) => ({
        contender,
        ...runCase(contender.module, sessions, dirty, contender.mode),
      }));
      const before = results[0]!;
      for (const { contender, flushMs, stallMs } of results) {
        rows.push({
          name: `${label}: ${contender.name}, longest stall`,
          value: stallMs,
          unit: 'ms',
          note:
            contender === before.contender
              ? `flush ${flushMs.toFixed(1)} ms`
              : `flush ${flushMs.toFixed(1)} ms; stall ${(stallMs / before.stallMs).toFixed(2)}x, flush ${(flushMs / before.flushMs).toFixed(2)}x the baseline's`,
        });
      }
    }
  }
  // Shutting down 10,000 sessions with unsaved changes while the store refuses connections.
  const down = [contenders[0]!, contenders[1]!].map((contender) => ({
    contender,
    ...runCase(contender.module, 10_000, 1, 'shutdown-down'),
  }));
  for (const { contender, flushMs, stallMs } of down) {
    rows.push({
      name: `destroy 10,000 sessions, store down: ${contender.name.replace(/ \(snapshot\)|, snapshot/, '')}, longest stall`,
      value: stallMs,
      unit: 'ms',
      note:
        contender === down[0]!.contender
          ? `shutdown ${flushMs.toFixed(0)} ms`
          : `shutdown ${flushMs.toFixed(0)} ms; stall ${(stallMs / down[0]!.stallMs).toFixed(2)}x the baseline's`,
    });
  }
} finally {
  baseline.remove();
}
report('core-stalls', rows, { baseline: BASELINE });
