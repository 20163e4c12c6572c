import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './process.js';
import { servers } from './stores.js';

const { postgres, redis } = servers();
const dir = mkdtempSync(join(tmpdir(), 'cli-missing-table-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A table that is not there is a wrong --table or database, not a store that restarts: the run stops at once
// (whatever --retry-for says) with exit code 2, names the table and says what to check.
describe('a source whose table does not exist', () => {
  it.skipIf(!postgres || !redis)('PostgreSQL: migrate exits 2 at once', async () => {
    const args = ['migrate', '--from', postgres!, '--from-table', 'no_such_players', '--to', redis!];
    const run = await runCli([...args, '--to-prefix', 'missing-table-test:', '--retry-for', '30']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('relation "no_such_players" does not exist');
    expect(run.stderr).toContain('Check the table option');
    expect(run.stderr).not.toMatch(/failed \d+ times/);
  });

  it('PGlite: count of a directory that holds no store exits 2 at once', async () => {
    const run = await runCli(['count', `pglite:${dir}`, '--retry-for', '30']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('relation "cagey_user_data" does not exist');
    expect(run.stderr).toContain('Check the table option');
  });
});
