import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, type ErrorCode } from '../src/game.js';
import { DEFAULT_LIMITS } from '../src/server.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const serveSource = readFileSync(new URL('../src/serve.ts', import.meta.url), 'utf8');
const gameSource = readFileSync(new URL('../src/game.ts', import.meta.url), 'utf8');
const repositoryRoot = fileURLToPath(new URL('../../..', import.meta.url));
const START = 'pnpm --filter @cagey-sessions/example-websocket-game start';

/** The rows of the README table whose first cell is `first`. */
function row(first: string): string | undefined {
  return readme
    .split('\n')
    .find((line) => line.startsWith(`| ${first} `) || line.startsWith(`| \`${first}\` `));
}

describe('the README documents what the code does', () => {
  it.each(Object.entries(CLOSE_CODES))('close code %s (%i) has a row', (_name, code) => {
    expect(row(String(code)), `no row for close code ${code}`).toBeDefined();
  });

  it('lists no close code the server does not use', () => {
    const documented = readme.match(/^\| (\d{4}) /gm)?.map((cell) => Number(cell.slice(2, 6))) ?? [];
    expect(documented.sort()).toEqual(Object.values(CLOSE_CODES).sort());
  });

  it.each(Object.entries(DEFAULT_LIMITS))('limit %s has a row with its default', (name, value) => {
    const line = row(name);
    expect(line, `no row for ${name}`).toBeDefined();
    const expected =
      value === null || typeof value !== 'object'
        ? String(value)
        : `${(value as { perSecond: number }).perSecond}/s, burst ${(value as { burst: number }).burst}`;
    expect(line).toContain(expected);
  });

  it('has a row for every error code', () => {
    const codes = /export type ErrorCode =([^;]+);/.exec(gameSource)![1]!.match(/'([A-Z_]+)'/g)!;
    expect(codes.length).toBeGreaterThan(5);
    for (const quoted of codes) {
      const code = quoted.slice(1, -1) as ErrorCode;
      expect(row(code), `no row for ${code}`).toBeDefined();
    }
  });

  it('has a "Before production" section', () => {
    expect(readme).toContain('## Before production');
    expect(readme).toMatch(/\*\*It does not, and why:\*\*/);
  });
});

describe('the start command', () => {
  it('is the same in serve.ts and the README, and never puts -- before the options (pnpm 10 passes it on)', () => {
    expect(serveSource).toContain(`${START} --store pglite --port 8080`);
    expect(readme).toContain(`${START} --store pglite --port 8080`);
    expect(serveSource).not.toMatch(/pnpm (start|run start) --/);
    expect(readme).not.toMatch(/start -- /);
  });

  it('runs with pnpm 10 from the repository root', () => {
    const run = spawnSync('pnpm', ['--filter', '@cagey-sessions/example-websocket-game', 'start', '--help'], {
      cwd: repositoryRoot,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toContain(`Usage: ${START} [options]`);
    for (const option of [
      '--host',
      '--max-frame-bytes',
      '--max-pending',
      '--max-buffered-bytes',
      '--slow-reader-timeout',
      '--heartbeat',
      '--login-timeout',
      '--rate-limit',
    ]) {
      expect(run.stdout).toContain(option);
    }
  });
});
