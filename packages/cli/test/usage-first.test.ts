import { freePort } from '@cagey-sessions/test-servers';
import { describe, expect, it } from 'vitest';
import { runCli } from './process.js';

// Bad usage is found before any store is opened: a misplaced option of the target is not reported only after
// the source was reached, or retried for --retry-for seconds when it cannot be.
describe('an option for another kind of store', () => {
  it('on the target side is refused (exit 2) before the source is opened', async () => {
    const unreachable = `postgres://game:pw-of-source-1@127.0.0.1:${await freePort()}/game`;
    const args = ['migrate', '--from', unreachable, '--to', 'redis://127.0.0.1:1', '--to-table', 'players'];
    const run = await runCli([...args, '--retry-for', '30']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--to-table does not apply to a redis store');
    expect(`${run.stdout}${run.stderr}`).not.toContain('pw-of-source-1');
  });

  it('and so is an unsupported target URL, for verify too', async () => {
    const unreachable = `postgres://127.0.0.1:${await freePort()}/game`;
    const run = await runCli(['verify', '--from', unreachable, '--to', 'mysql://db/x', '--retry-for', '30']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Unsupported store URL mysql://db/x');
  });
});
