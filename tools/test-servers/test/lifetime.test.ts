import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { canConnect, type ServerKind } from '../src/index.js';
import { isGone } from '../src/signals.js';
import { eventually, serverInstalled } from './helpers.js';

const fixture = fileURLToPath(new URL('./fixtures/start-and-leave.ts', import.meta.url));
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const children = new Set<ChildProcess>();

afterEach(() => {
  // A failed assertion must not leave the fixture (and so its server) running.
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});

/** Runs the fixture and resolves what it reports once its server is up. */
function startInChild(kind: ServerKind, mode: 'exit' | 'pause-exit' | 'hang') {
  // node itself with tsx's loader, not the tsx CLI, which would run the fixture in a grandchild process.
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, kind, mode], {
    cwd: packageDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const reported = new Promise<{ port: number; dir: string; pids: number[] }>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk) => {
      stdout += chunk;
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line) resolve(JSON.parse(line));
    });
    child.once('exit', (code) => reject(new Error(`fixture exited (${code}) before reporting:\n${stderr}`)));
  });
  return { child, reported };
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()));

describe.each([
  ['redis' as const, serverInstalled('redis')],
  ['postgres' as const, serverInstalled('postgres')],
])('%s never outlives the process that started it', (kind, installed) => {
  it.skipIf(!installed)(
    'a normal exit without stop() kills the server and removes its directory',
    async () => {
      const { child, reported } = startInChild(kind, 'exit');
      const { port, dir } = await reported;
      await exited(child);
      expect(await eventually(async () => !(await canConnect(port)))).toBe(true);
      expect(await eventually(() => !existsSync(dir))).toBe(true);
    },
  );

  it.skipIf(!installed)('a normal exit while the server is paused still kills it', async () => {
    const { child, reported } = startInChild(kind, 'pause-exit');
    const { port, dir, pids } = await reported;
    expect(pids.length).toBeGreaterThan(0);
    await exited(child);
    // Every process of the server exits, not only the one holding the port.
    expect(await eventually(() => pids.every(isGone))).toBe(true);
    expect(await eventually(async () => !(await canConnect(port)))).toBe(true);
    expect(await eventually(() => !existsSync(dir))).toBe(true);
  });

  it.skipIf(!installed || process.platform !== 'linux')(
    'SIGKILL of the starting process kills the server (parent-death signal)',
    async () => {
      const { child, reported } = startInChild(kind, 'hang');
      const { port, dir } = await reported;
      expect(await canConnect(port)).toBe(true);
      child.kill('SIGKILL');
      await exited(child);
      expect(await eventually(async () => !(await canConnect(port)))).toBe(true);
      // No exit hook ran, so the directory is left behind; the next process to start a server sweeps it.
      expect(existsSync(dir)).toBe(true);
      const next = startInChild(kind, 'exit');
      await next.reported;
      await exited(next.child);
      expect(await eventually(() => !existsSync(dir))).toBe(true);
    },
  );
});
