import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { type RunningServer, startPostgres } from '@cagey-sessions/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomTable, serverUrl } from './helpers.js';

// This file kills a server, so it starts its own instead of sharing the run's.
const available = serverUrl('adapter-postgres: presence and the process') !== null;
const fixture = fileURLToPath(new URL('./fixtures/presence-process.ts', import.meta.url));
const tsconfig = fileURLToPath(new URL('../tsconfig.test.json', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');

/** Starts the fixture; resolves once it has joined, with a promise of its exit code (killed after 30 s). */
async function node(url: string, mode: 'close' | 'keep') {
  const child = spawn(process.execPath, ['--import', tsx, fixture, url, randomTable('p'), mode], {
    env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk;
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  exited.finally(() => clearTimeout(timer));
  await expect.poll(() => output, { timeout: 30_000 }).toContain('joined\n');
  return { exited, output: () => output };
}

describe.skipIf(!available)('PostgresPresence and the process', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('after close() nothing the presence opened keeps the process alive', async () => {
    const { exited, output } = await node(server.url, 'close');
    expect(await exited, output()).toBe(0);
  });

  it('reconnecting after the server went away never keeps the process alive on its own', async () => {
    const { exited, output } = await node(server.url, 'keep');
    // The open presence holds its connections; once the server is gone only reconnection attempts remain.
    await server.kill();
    expect(await exited, output()).toBe(0);
  });
});
