import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { StoreKind } from '../src/stores.js';
import { randomNamespace, runDemoCli, storeEnv, temporaryDir } from './helpers.js';

const PLAYERS = 40;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

interface Summary {
  ok: boolean;
  players: number;
  returning: number;
  checked: number;
  differences: number;
  finalStateDifferences: number;
  unsaved: number;
  serverExitCode: number | null;
  acknowledgedPurchases: number;
  missingPurchases: number;
  bots: { actions: number; errors: number; mismatches: number };
  server: { written: number; failed: number; conflicts: number };
}

async function demo(kind: StoreKind, dataDir: string, namespace: string, env: NodeJS.ProcessEnv) {
  const reportFile = join(dataDir, `summary-${Math.random().toString(36).slice(2)}.json`);
  const run = await runDemoCli(
    [
      `--store=${kind}`,
      `--players=${PLAYERS}`,
      '--duration=4s',
      `--data-dir=${dataDir}`,
      `--namespace=${namespace}`,
      '--grace=700ms',
      '--interval=1s',
      '--seed=7',
      `--report=${reportFile}`,
    ],
    env,
  );
  const output = `${run.stdout}\n${run.stderr}`;
  expect(run.code, output).toBe(0);
  return { summary: JSON.parse(readFileSync(reportFile, 'utf8')) as Summary, output };
}

function expectClean(summary: Summary, output: string) {
  expect(summary, output).toMatchObject({
    ok: true,
    players: PLAYERS,
    checked: PLAYERS,
    differences: 0,
    finalStateDifferences: 0,
    unsaved: 0,
    serverExitCode: 0,
    missingPurchases: 0,
    bots: { errors: 0, mismatches: 0 },
    server: { failed: 0, conflicts: 0 },
  });
  // The run did real work: without actions and purchases a zero-difference check would prove nothing.
  expect(summary.bots.actions).toBeGreaterThan(PLAYERS);
  expect(summary.acknowledgedPurchases).toBeGreaterThan(0);
  expect(summary.server.written).toBeGreaterThanOrEqual(PLAYERS);
  expect(output).toContain("OK: every player's data in the store equals what the server last confirmed");
}

describe('pnpm demo, end to end', () => {
  it.for<StoreKind>(['memory', 'postgres', 'redis', 'mongo'])(
    'on %s: every player read back from the store equals what the server acknowledged',
    async (kind, context) => {
      const env = storeEnv(kind, `demo on ${kind}`);
      if (env === null) return context.skip();
      const tmp = temporaryDir(`demo-${kind}`);
      cleanups.push(tmp.remove);
      const { summary, output } = await demo(kind, tmp.dir, randomNamespace(), env);
      expectClean(summary, output);
      expect(summary.returning).toBe(0);
    },
  );

  it('on pglite (the default): zero differences, and a second run finds the players of the first', async () => {
    const env = storeEnv('pglite', 'demo twice on pglite')!;
    const tmp = temporaryDir('demo-pglite-twice');
    cleanups.push(tmp.remove);
    const first = await demo('pglite', tmp.dir, 'game', env);
    expectClean(first.summary, first.output);
    expect(first.summary.returning).toBe(0);
    const second = await demo('pglite', tmp.dir, 'game', env);
    expectClean(second.summary, second.output);
    expect(second.summary.returning).toBe(PLAYERS);
    expect(second.output).toContain(`(0 new, ${PLAYERS} returning from an earlier run)`);
  });

  it('exits non-zero and names the variable when a server store has no URL', async () => {
    const env = storeEnv('memory', 'demo without a URL')!;
    const tmp = temporaryDir('demo-no-url');
    cleanups.push(tmp.remove);
    const run = await runDemoCli(
      ['--store=postgres', '--players=2', '--duration=1s', `--data-dir=${tmp.dir}`],
      env,
    );
    expect(run.code).not.toBe(0);
    expect(`${run.stdout}${run.stderr}`).toContain('DATABASE_URL');
  });
});
