import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresAdapter } from '@cagey-sessions/adapter-postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { awkwardUser, randomName } from './helpers.js';
import { runCli, summaryOf } from './process.js';
import { seedPostgres, servers } from './stores.js';

const { postgres, redis, mongo, all } = servers();
const PLAYERS = 10_000;
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!all)('a round trip through every kind of store', () => {
  it(`moves ${PLAYERS} awkward players PostgreSQL -> Redis -> MongoDB -> PGlite -> PostgreSQL with no difference`, async () => {
    const { table } = await seedPostgres(postgres!, PLAYERS);
    const pglite = mkdtempSync(join(tmpdir(), 'cli-pglite-'));
    dirs.push(pglite);
    const hops: string[][] = [
      ['--from', postgres!, '--from-table', table],
      ['--to', redis!, '--to-prefix', `${randomName('rt')}:`],
      ['--to', mongo!, '--to-collection', randomName('rt')],
      ['--to', `pglite:${pglite}`],
      ['--to', postgres!, '--to-table', randomName('back')],
    ];
    const asSource = (hop: string[]) => hop.map((arg) => arg.replace(/^--to/, '--from'));
    for (let i = 1; i < hops.length; i++) {
      const from = i === 1 ? hops[0]! : asSource(hops[i - 1]!);
      const migrated = await runCli(['migrate', ...from, ...hops[i]!, '--json']);
      const summary = summaryOf(migrated);
      expect(summary, migrated.stderr).toMatchObject({ outcome: 'complete', exitCode: 0 });
      expect(summary.counts).toMatchObject({ users: PLAYERS, copied: PLAYERS, conflicts: 0, errors: 0 });
      expect(migrated.code).toBe(0);
      const verified = await runCli(['verify', ...from, ...hops[i]!, '--json']);
      expect(summaryOf(verified), verified.stdout).toMatchObject({ problemCount: 0, exitCode: 0 });
      expect(verified.code).toBe(0);
    }
    // The last store against the first: every player unchanged, versions included.
    const last = hops.at(-1)!;
    const endToEnd = await runCli(['verify', ...hops[0]!, ...last, '--json']);
    expect(summaryOf(endToEnd)).toMatchObject({ problemCount: 0, counts: { compared: PLAYERS } });
    expect(endToEnd.code).toBe(0);

    // A planted difference is found, listed and makes verify fail.
    const finalTable = last[last.indexOf('--to-table') + 1]!;
    const target = new PostgresAdapter({ url: postgres!, table: finalTable });
    const victim = awkwardUser(4).userId;
    const stored = (await target.load(victim))!;
    await target.save([
      { userId: victim, userData: { ...stored.userData, gold: 'changed' }, expectedVersion: stored.version },
    ]);
    await target.close();
    const planted = await runCli(['verify', ...hops[0]!, ...last]);
    expect(planted.code).toBe(3);
    expect(planted.stdout).toContain(`data     ${JSON.stringify(victim)}: data differs at gold`);
  }, 600_000);
});
