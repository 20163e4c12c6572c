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

interface Counters {
  actions: number;
  errors: number;
  mismatches: number;
  lostPurchases: number;
  lostActions: number;
  tricks: number;
  rateLimited: number;
  notStored: number;
  storeUnavailable: number;
}

interface Summary {
  ok: boolean;
  mode: 'graceful' | 'crash' | 'outage';
  players: number;
  returning: number;
  returningCompared: { matched: number; differ: string[]; unknown: number } | undefined;
  checked: number;
  differences: number;
  finalStateDifferences: number;
  unsaved: number;
  serverExitCode: number | null;
  acknowledgedPurchases: number;
  missingPurchases: number;
  duplicatePurchases: number;
  bots: Counters;
  adversarialBots: Counters;
  server: { written: number; failed: number; conflicts: number };
  writes: Record<string, number>;
  crash?: {
    returned: number;
    lostActions: number;
    maxLostAgeMs: number;
    lossBoundMs: number;
    lostAcknowledgedPurchases: number;
  };
  outage?: {
    notStored: number;
    storeUnavailable: number;
    failedWrites: number;
    recoveryMs: number | undefined;
    lostAcknowledgedPurchases: number;
  };
  timing: { startupMs: number; readBackMs: number };
  memory: { serverPeakBytes: number | undefined };
}

type Mode = 'graceful' | 'crash' | 'outage';

async function demo(kind: StoreKind, mode: Mode, dataDir: string, namespace: string, env: NodeJS.ProcessEnv) {
  const reportFile = join(dataDir, `summary-${Math.random().toString(36).slice(2)}.json`);
  const run = await runDemoCli(
    [
      `--store=${kind}`,
      `--players=${PLAYERS}`,
      `--duration=${mode === 'graceful' ? '3s' : mode === 'crash' ? '4s' : '5s'}`,
      ...(mode === 'graceful' ? [] : [`--${mode}`]),
      ...(mode === 'outage' ? ['--outage-duration=2s'] : []),
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
    duplicatePurchases: 0,
    bots: { errors: 0, mismatches: 0, lostPurchases: 0 },
  });
  // The run did real work: without actions and purchases a zero-difference check would prove nothing.
  expect(summary.bots.actions).toBeGreaterThan(PLAYERS);
  expect(summary.acknowledgedPurchases).toBeGreaterThan(0);
  expect(Object.values(summary.writes).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  expect(summary.adversarialBots.tricks, output).toBeGreaterThan(0);
  expect(Object.keys(summary.writes).sort()).toEqual(['interval', 'logout', 'purchase', 'shutdown']);
  expect(summary.timing.startupMs).toBeGreaterThan(0);
  expect(output).toContain("OK: every player's data in the store equals what the server last confirmed");
  // The address of the live dashboard, on the game server's port.
  expect(output).toMatch(/ {2}metrics http:\/\/127\.0\.0\.1:\d+\/dashboard /);
  if (summary.mode !== 'crash') expect(summary.bots.lostActions).toBe(0);
}

function expectCrash(summary: Summary, output: string) {
  expectClean(summary, output);
  const crash = summary.crash!;
  expect(crash, output).toBeDefined();
  expect(crash.returned).toBeGreaterThan(0);
  expect(crash.lostAcknowledgedPurchases).toBe(0);
  expect(crash.maxLostAgeMs).toBeLessThanOrEqual(crash.lossBoundMs + 1000);
  expect(output).toContain('unacknowledged play lost:');
}

function expectOutage(summary: Summary, output: string) {
  expectClean(summary, output);
  const outage = summary.outage!;
  expect(outage, output).toBeDefined();
  expect(outage.notStored + outage.storeUnavailable, `refusals; ${output}`).toBeGreaterThan(0);
  expect(outage.failedWrites, `failed writes; ${output}`).toBeGreaterThan(0);
  expect(outage.recoveryMs).toBeTypeOf('number');
  expect(outage.lostAcknowledgedPurchases).toBe(0);
  expect(output).toContain('NOT_STORED');
}

/** The second run on a store finds the players of the first exactly as the first left them. */
function expectReturning(summary: Summary) {
  expect(summary.returning).toBe(PLAYERS);
  expect(summary.returningCompared).toEqual({ matched: PLAYERS, differ: [], unknown: 0 });
}

describe('pnpm demo, end to end', () => {
  it('on memory: --outage (every store call fails inside the server for a while)', async () => {
    const env = storeEnv('memory', 'demo on memory')!;
    const tmp = temporaryDir('demo-memory');
    cleanups.push(tmp.remove);
    const outage = await demo('memory', 'outage', tmp.dir, 'game', env);
    expectOutage(outage.summary, outage.output);
  });

  it('on pglite (the default): graceful, then --crash, then --outage on the same files; each run finds the players as the one before left them', async () => {
    const env = storeEnv('pglite', 'demo on pglite')!;
    const tmp = temporaryDir('demo-pglite');
    cleanups.push(tmp.remove);
    const first = await demo('pglite', 'graceful', tmp.dir, 'game', env);
    expectClean(first.summary, first.output);
    expect(first.summary.returning).toBe(0);
    // Measured, and bounded: PGlite with 16 MB of shared buffers. (The first run's peak is PGlite's initdb.)
    expect(first.summary.memory.serverPeakBytes).toBeGreaterThan(0);
    expect(first.summary.timing.readBackMs).toBeGreaterThan(0);
    const crash = await demo('pglite', 'crash', tmp.dir, 'game', env);
    expect(crash.summary.memory.serverPeakBytes).toBeLessThan(500e6);
    expectCrash(crash.summary, crash.output);
    expectReturning(crash.summary);
    expect(crash.output).toContain(`0 new, ${PLAYERS} returning from an earlier run`);
    expect(crash.output).toContain(
      `returning    ${PLAYERS} found exactly what the previous run left, 0 differ`,
    );
    const outage = await demo('pglite', 'outage', tmp.dir, 'game', env);
    expectOutage(outage.summary, outage.output);
    expectReturning(outage.summary);
  });

  it.for<StoreKind>(['postgres', 'redis', 'mongo'])(
    'on %s: graceful, then --crash, then --outage (the fault proxy resets the store connections)',
    async (kind, context) => {
      const env = storeEnv(kind, `demo on ${kind}`);
      if (env === null) return context.skip();
      const tmp = temporaryDir(`demo-${kind}`);
      cleanups.push(tmp.remove);
      const namespace = randomNamespace();
      const graceful = await demo(kind, 'graceful', tmp.dir, namespace, env);
      expectClean(graceful.summary, graceful.output);
      expect(graceful.summary.returning).toBe(0);
      const crash = await demo(kind, 'crash', tmp.dir, namespace, env);
      expectCrash(crash.summary, crash.output);
      expectReturning(crash.summary);
      const outage = await demo(kind, 'outage', tmp.dir, namespace, env);
      expectOutage(outage.summary, outage.output);
      expectReturning(outage.summary);
    },
  );

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

  it('refuses --crash on the memory store, which dies with the server', async () => {
    const env = storeEnv('memory', 'demo --crash on memory')!;
    const run = await runDemoCli(['--store=memory', '--crash'], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--crash needs a store that outlives the server');
  });
});
