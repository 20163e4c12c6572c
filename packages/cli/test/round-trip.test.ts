import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresAdapter } from '@cagey-sessions/adapter-postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { awkwardUser, randomName } from './helpers.js';
import { runCli, summaryOf } from './process.js';
import { seedPostgres, servers } from './stores.js';

const { postgres, redis, mongo, all, mongoIsFerretDB } = servers();
const PLAYERS = 10_000;
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** `migrate` then `verify` from each store to the next; returns the options naming the last one. */
async function hopThrough(hops: string[][], players: number, extra: (hop: string[]) => string[] = () => []) {
  const asSource = (hop: string[]) => hop.map((arg) => arg.replace(/^--to/, '--from'));
  for (let i = 1; i < hops.length; i++) {
    const from = i === 1 ? hops[0]! : asSource(hops[i - 1]!);
    const migrated = await runCli(['migrate', ...from, ...hops[i]!, ...extra(hops[i]!), '--json']);
    const summary = summaryOf(migrated);
    expect(summary, migrated.stderr).toMatchObject({ outcome: 'complete', exitCode: 0 });
    expect(summary.counts).toMatchObject({ users: players, copied: players, conflicts: 0, errors: 0 });
    expect(migrated.code).toBe(0);
    const verified = await runCli(['verify', ...from, ...hops[i]!, '--json']);
    expect(summaryOf(verified), verified.stdout).toMatchObject({ problemCount: 0, exitCode: 0 });
    expect(verified.code).toBe(0);
  }
  // The last store against the first: every player unchanged, versions included.
  const endToEnd = await runCli(['verify', ...hops[0]!, ...hops.at(-1)!, '--json']);
  expect(summaryOf(endToEnd)).toMatchObject({ problemCount: 0, counts: { compared: players } });
  expect(endToEnd.code).toBe(0);
}

function pgliteDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cli-pglite-'));
  dirs.push(dir);
  return dir;
}

describe.skipIf(!postgres || !redis)('a round trip through PostgreSQL, Redis and PGlite', () => {
  it(`moves ${PLAYERS} awkward players PostgreSQL -> Redis -> PGlite -> PostgreSQL with no difference`, async () => {
    const { table } = await seedPostgres(postgres!, PLAYERS);
    const hops: string[][] = [
      ['--from', postgres!, '--from-table', table],
      ['--to', redis!, '--to-prefix', `${randomName('rt')}:`],
      ['--to', `pglite:${pgliteDir()}`],
      ['--to', postgres!, '--to-table', randomName('back')],
    ];
    await hopThrough(hops, PLAYERS);

    // A planted difference is found, listed and makes verify fail.
    const last = hops.at(-1)!;
    const target = new PostgresAdapter({ url: postgres!, table: last[last.indexOf('--to-table') + 1]! });
    const victim = awkwardUser(4).userId;
    const stored = (await target.load(victim))!;
    await target.save([
      { userId: victim, userData: { ...stored.userData, gold: 'changed' }, expectedVersion: stored.version },
    ]);
    await target.close();
    const planted = await runCli(['verify', ...hops[0]!, ...last]);
    expect(planted.code).toBe(3);
    expect(planted.stdout).toContain(`data     ${JSON.stringify(victim)}: data differs at gold`);
  }, 900_000);
});

/**
 * FerretDB 1.x reads its whole collection to answer each query (a scan page, a load): moving 10,000 players
 * PostgreSQL -> FerretDB and verifying them took about 60 s and 450 s there, so the MongoDB leg moves fewer
 * players on FerretDB, and all of them against a real MongoDB (MONGODB_URI). Batches stay under FerretDB's limit
 * of updates in flight.
 */
const MONGO_PLAYERS = mongoIsFerretDB ? 300 : PLAYERS;

describe.skipIf(!all)('a round trip through every kind of store', () => {
  it(`moves ${MONGO_PLAYERS} awkward players PostgreSQL -> Redis -> MongoDB -> PGlite -> PostgreSQL with no difference`, async () => {
    const { table } = await seedPostgres(postgres!, MONGO_PLAYERS);
    const hops: string[][] = [
      ['--from', postgres!, '--from-table', table],
      ['--to', redis!, '--to-prefix', `${randomName('rt')}:`],
      ['--to', mongo!, '--to-collection', randomName('rt')],
      ['--to', `pglite:${pgliteDir()}`],
      ['--to', postgres!, '--to-table', randomName('back')],
    ];
    const forFerretDB = (hop: string[]) =>
      mongoIsFerretDB && hop[1] === mongo ? ['--batch-size', '50', '--concurrency', '1'] : [];
    await hopThrough(hops, MONGO_PLAYERS, forFerretDB);
  }, 900_000);
});
