import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { typescriptNodeArgs } from '../src/launch.js';
import type { StoreKind } from '../src/stores.js';

export const STORE_ENV = { postgres: 'DATABASE_URL', redis: 'REDIS_URL', mongo: 'MONGODB_URI' } as const;

/**
 * The environment that points the demo at `kind`, or null (with a loud warning) when its server is not
 * installed. Servers are started by global-setup.ts, which fails instead when CI=true.
 */
export function storeEnv(kind: StoreKind, test: string): NodeJS.ProcessEnv | null {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.values(STORE_ENV)) delete env[name];
  if (kind === 'memory' || kind === 'pglite') return env;
  const url = inject('storeUrls')[kind];
  if (url === null) {
    if (process.env.CI === 'true') throw new Error(`${test}: no ${kind} server for this run, and CI=true.`);
    console.warn(
      `\n⚠ ${test}: SKIPPED — no ${kind} server could be started (see the warning from global setup).\n` +
        '  Install it with: bash tools/test-servers/install-servers.sh (CI fails instead of skipping).\n',
    );
    return null;
  }
  env[STORE_ENV[kind]] = url;
  return env;
}

/** A temporary directory removed by the returned function. */
export function temporaryDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A namespace no other run uses, so tests sharing a server never see each other's players. */
export function randomNamespace(): string {
  return `t${Math.random().toString(36).slice(2, 10)}`;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `src/demo.ts` the way `pnpm demo` does and collects its output. */
export function runDemoCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 110_000): Promise<CliRun> {
  const ts = typescriptNodeArgs();
  const demo = fileURLToPath(new URL('../src/demo.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...ts.args, demo, ...args], {
      env: { ...env, ...ts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`demo did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
