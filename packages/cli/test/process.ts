import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts the command line in a child process (its TypeScript sources through tsx, workspace packages from
 * their sources), as a user would run it.
 */
export function startCli(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/bin.ts', ...args], {
    cwd: packageDir,
    env: { ...process.env, TSX_TSCONFIG_PATH: 'tsconfig.test.json', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin!.end(options.input ?? '');
  const done = new Promise<CliRun>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child: child as ChildProcess, done, output: () => ({ stdout, stderr }) };
}

export function runCli(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  return startCli(args, options).done;
}

/** The `--json` summary a run printed (the last JSON line of its stdout, or of stderr for an export). */
export function summaryOf(run: CliRun): {
  outcome: string;
  exitCode: number;
  counts: Record<string, number>;
  problems: { userId: string; kind: string; message: string }[];
  problemCount: number;
  error?: string;
} {
  const lines = `${run.stdout}\n${run.stderr}`.split('\n').filter((line) => line.startsWith('{"command"'));
  const last = lines.at(-1);
  if (last === undefined) throw new Error(`no JSON summary in:\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(last);
}
