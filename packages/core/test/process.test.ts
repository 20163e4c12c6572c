/**
 * Promises about a process, proven in a real child process: an in-process test would keep the event loop
 * alive for the code under test and hide exactly these bugs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

interface Run {
  code: number | null;
  lines: Record<string, unknown>[];
  /** Milliseconds from SIGTERM to exit. */
  stopMs: number;
}

function startServer(env: Record<string, string>): {
  child: ChildProcess;
  ready: Promise<void>;
  exited: Promise<Run>;
} {
  const fixture = fileURLToPath(new URL('./fixtures/shutdown.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let buffer = '';
  let signalledAt = 0;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
      const line = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
      buffer = buffer.slice(newline + 1);
      lines.push(line);
      if (line.ready === true) markReady();
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<Run>((resolve) =>
    child.once('exit', (code) => {
      markReady(); // a child that dies before it is ready fails the test at its exit code, not by timing out
      resolve({ code, lines, stopMs: performance.now() - signalledAt });
    }),
  );
  const originalKill = child.kill.bind(child);
  child.kill = (signal?: NodeJS.Signals | number) => {
    signalledAt = performance.now();
    return originalKill(signal);
  };
  exited.then(({ code }) => {
    if (code !== 0 && code !== 1) console.error(stderr);
  });
  return { child, ready, exited };
}

describe('SIGTERM with `await manager.destroy()` in the handler', () => {
  it('with the store down: stays up until shutdownTimeout, exits non-zero and logs exactly the unsaved users', async () => {
    const { child, ready, exited } = startServer({ SHUTDOWN_TIMEOUT: '1500ms' });
    await ready;
    child.kill('SIGTERM');
    const run = await exited;
    expect(run.code).toBe(1); // the rejection is unhandled in the README's handler: Node exits with 1
    expect(run.stopMs).toBeGreaterThanOrEqual(1400);
    const report = run.lines.find((line) => line.message === 'cagey-sessions: users not saved at shutdown');
    expect(report).toBeDefined();
    expect((report!.fields as { userIds: string[] }).userIds.sort()).toEqual(['ann', 'bob', 'cid']);
  }, 20_000);

  it('with the store back before the deadline: stores everything and exits 0', async () => {
    const { child, ready, exited } = startServer({ SHUTDOWN_TIMEOUT: '5s', STORE_BACK_AFTER_MS: '700' });
    await ready;
    child.kill('SIGTERM');
    const run = await exited;
    expect(run.code).toBe(0);
    expect(run.lines.some((line) => line.level === 'error')).toBe(false);
    const stored = run.lines.find((line) => 'stored' in line)?.stored as [string, { gold: number }][];
    expect(Object.fromEntries(stored)).toEqual({ ann: { gold: 7 }, bob: { gold: 7 }, cid: { gold: 7 } });
  }, 20_000);
});

describe('presence timers', () => {
  function runFixture(presenceCase: string): Promise<{ code: number | null; stdout: string }> {
    const fixture = fileURLToPath(new URL('./fixtures/presence-node.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      // The workspace's paths, so the fixture loads @cagey-sessions/testing from source like the tests do.
      env: {
        ...process.env,
        PRESENCE_CASE: presenceCase,
        TSX_TSCONFIG_PATH: fileURLToPath(new URL('../tsconfig.test.json', import.meta.url)),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    return new Promise((resolve) =>
      child.once('exit', (code) => {
        clearTimeout(killer);
        resolve({ code, stdout });
      }),
    );
  }

  it('lease renewals never keep an idle process alive', async () => {
    const { code, stdout } = await runFixture('idle');
    expect(code).toBe(0);
    expect(stdout.split('\n').filter(Boolean)).toEqual(['held', 'exited']);
  });

  it('a login waiting for a lease to expire keeps the process alive until it resolves', async () => {
    const { code, stdout } = await runFixture('takeover');
    expect(code).toBe(0);
    expect(stdout.split('\n').filter(Boolean)).toEqual(['held', 'taken over {"gold":1} version 2', 'exited']);
  });
});
