import { type RunningServer, startRedis } from '@cagey-sessions/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, summaryOf } from './process.js';
import { seedPostgres, servers } from './stores.js';

const { postgres, redis } = servers();

// A refused password is not a store that restarts: the run stops at once (no retry, whatever --retry-for says),
// with exit code 5 and a message that says what to check, and prints no password.
describe.skipIf(!postgres || !redis)('a store that refuses the credentials', () => {
  let guarded: RunningServer;
  beforeAll(async () => {
    guarded = await startRedis({ password: 'the-right-pw-1' });
  });
  afterAll(() => guarded?.stop());

  function expectRefused(run: Awaited<ReturnType<typeof runCli>>, password: string) {
    expect(run.code).toBe(5);
    const summary = summaryOf(run);
    expect(summary.outcome).toBe('failed');
    expect(summary.error).toContain('the store refused the credentials');
    expect(summary.error).not.toMatch(/failed \d+ times/);
    expect(summary.error).toContain('Check the user and password');
    expect(`${run.stdout}${run.stderr}`).not.toContain(password);
  }

  it('PostgreSQL: a wrong password', async () => {
    const url = new URL(postgres!);
    url.password = 'wrong-pg-pw-1';
    expectRefused(await runCli(['count', url.href, '--retry-for', '30', '--json']), 'wrong-pg-pw-1');
  });

  it('Redis: a wrong password, and none where the server requires one', async () => {
    const wrong = `redis://:wrong-redis-pw-1@127.0.0.1:${guarded.port}`;
    expectRefused(await runCli(['count', wrong, '--retry-for', '30', '--json']), 'wrong-redis-pw-1');
    const { table } = await seedPostgres(postgres!, 3);
    const none = `redis://127.0.0.1:${guarded.port}`;
    const args = ['migrate', '--from', postgres!, '--from-table', table, '--to', none, '--retry-for', '30'];
    expectRefused(await runCli([...args, '--json']), 'the-right-pw-1');
  });
});
