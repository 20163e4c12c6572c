/**
 * Runs a program as a reader would: `run` programs with `node --import tsx` (what `npx tsx file.ts` does),
 * `test` programs with `vitest run`. Either must finish on its own, successfully, within the time limit: a
 * database or adapter left open keeps the process alive and fails the check.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { DocProgram } from './programs.js';
import { packageDir, tsconfigPath } from './workspace.js';

const require = createRequire(import.meta.url);

export interface RunResult {
  ok: boolean;
  /** Exit code, or the signal that ended it (`SIGTERM` when the time limit was reached). */
  exit: number | string;
  stdout: string;
  stderr: string;
  ms: number;
}

export const RUN_TIMEOUT_MS = 60_000;

export function runProgram(
  program: DocProgram,
  file: string,
  timeoutMs = RUN_TIMEOUT_MS,
): Promise<RunResult> {
  if (program.mode === 'test') {
    const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
    return spawn(
      [vitest, 'run', '--config', join(packageDir, 'vitest.programs.config.ts'), file],
      packageDir,
      timeoutMs,
    );
  }
  return spawn(['--import', require.resolve('tsx'), file], dirname(file), timeoutMs);
}

function spawn(args: string[], cwd: string, timeoutMs: number): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      {
        cwd,
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        env: programEnv(),
      },
      (error, stdout, stderr) => {
        const failure = error as
          | (Error & { code?: number | string; signal?: string; killed?: boolean })
          | null;
        const exit = failure === null ? 0 : (failure.signal ?? failure.code ?? 'error');
        resolve({ ok: failure === null, exit, stdout, stderr, ms: performance.now() - started });
      },
    );
  });
}

function programEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // tsx resolves @cagey-sessions/* to the workspace's sources through the paths of tsconfig.dev.json.
    TSX_TSCONFIG_PATH: tsconfigPath,
    NO_COLOR: '1',
  };
  // A program that reads a server's URL from the environment must not find the developer's or the test run's.
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'MONGODB_URI', 'FORCE_COLOR']) delete env[name];
  // A `test` program's vitest is a run of its own, not a worker of this one.
  for (const name of Object.keys(env)) if (name.startsWith('VITEST')) delete env[name];
  return env;
}

/** What a failed run said, for the test's message: the exit and the end of its output. */
export function describeRun(program: DocProgram, result: RunResult): string {
  const tail = (text: string) => text.trimEnd().split('\n').slice(-40).join('\n');
  const timedOut = result.exit === 'SIGKILL' && result.ms >= RUN_TIMEOUT_MS - 1000;
  return [
    `${program.label} (${program.mode}) ${
      timedOut
        ? `did not finish within ${RUN_TIMEOUT_MS / 1000} s: does it leave a database, adapter or timer open?`
        : `exited with ${result.exit}`
    }`,
    result.stdout.trim() ? `--- stdout\n${tail(result.stdout)}` : '',
    result.stderr.trim() ? `--- stderr\n${tail(result.stderr)}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}
