import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisAdapter } from '@cagey-sessions/adapter-redis';
import { freePort } from '@cagey-sessions/test-servers';
import { afterAll, describe, expect, it } from 'vitest';
import { postgresToRedis, randomName } from './helpers.js';
import { runCli, summaryOf } from './process.js';
import { seedPostgres, servers } from './stores.js';

const { postgres, redis } = servers();
const dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('usage', () => {
  it('--help lists the commands and exits 0; each command has its own help', async () => {
    const main = await runCli(['--help']);
    expect(main.code).toBe(0);
    for (const command of ['migrate', 'export', 'import', 'verify', 'count'])
      expect(main.stdout).toContain(command);
    const help = await runCli(['import', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--to-prefix <prefix>');
  });

  it('refuses an unknown flag or command with exit code 2, naming the nearest one', async () => {
    const flag = await runCli(['migrate', '--form', 'postgres://x', '--to', 'redis://y']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('Unknown option --form for migrate. Did you mean --from?');
    const command = await runCli(['verfy']);
    expect(command.code).toBe(2);
    expect(command.stderr).toContain('Did you mean verify?');
  });

  it('refuses an option that does not apply to the store, and an unsupported URL', async () => {
    const misplaced = await runCli(['count', 'redis://127.0.0.1:1', '--table', 'players']);
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain('--table does not apply to a redis store');
    const scheme = await runCli(['count', 'mysql://root:hunter22@db/x']);
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toContain('Unsupported store URL mysql://***@db/x');
    expect(scheme.stderr).not.toContain('hunter22');
  });
});

describe('an unreachable store', () => {
  it('exits 5 after --retry-for, and prints no password', async () => {
    const port = await freePort();
    const run = await runCli([
      'count',
      `postgres://admin:s3cret-pw@127.0.0.1:${port}/db`,
      '--retry-for',
      '1',
    ]);
    expect(run.code).toBe(5);
    expect(`${run.stdout}${run.stderr}`).toContain('postgres://***@127.0.0.1');
    expect(`${run.stdout}${run.stderr}`).not.toContain('s3cret-pw');
  });

  it('reads a URL from the environment with env:NAME', async () => {
    const port = await freePort();
    const run = await runCli(['count', 'env:OLD_STORE', '--retry-for', '1'], {
      env: { OLD_STORE: `redis://:pa55word-x@127.0.0.1:${port}` },
    });
    expect(run.code).toBe(5);
    expect(`${run.stdout}${run.stderr}`).not.toContain('pa55word-x');
    const unset = await runCli(['count', 'env:NOT_SET_ANYWHERE']);
    expect(unset.code).toBe(2);
  });
});

describe.skipIf(!postgres || !redis)('export, import, count and conflicts', () => {
  it('exports JSON Lines to a file, imports them elsewhere, and a rerun imports nothing twice', async () => {
    const { table } = await seedPostgres(postgres!, 300);
    const file = join(dir, 'players.jsonl');
    const exported = await runCli(['export', '--from', postgres!, '--from-table', table, '--out', file]);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(300);
    expect(JSON.parse(lines[0]!)).toMatchObject({ userId: expect.any(String), version: expect.any(Number) });

    const prefix = `${randomName('imp')}:`;
    const imported = await runCli(['import', '--to', redis!, '--to-prefix', prefix, '--in', file, '--json']);
    expect(summaryOf(imported).counts).toMatchObject({ users: 300, copied: 300 });
    const again = await runCli(['import', '--to', redis!, '--to-prefix', prefix, '--json'], {
      input: readFileSync(file, 'utf8'),
    });
    expect(summaryOf(again).counts).toMatchObject({ users: 300, copied: 0, alreadyThere: 300 });

    const count = await runCli(['count', redis!, '--prefix', prefix, '--json']);
    expect(summaryOf(count).counts.users).toBe(300);
    const verified = await runCli(['verify', ...postgresToRedis(postgres!, table, redis!, prefix)]);
    expect(verified.code).toBe(0);
  });

  it('a bad import line is reported with its line number; the good lines are imported', async () => {
    const file = join(dir, 'bad.jsonl');
    writeFileSync(
      file,
      [
        '{"userId":"a","version":2,"userData":{"x":1}}',
        'not json',
        '{"userId":"b","version":0,"userData":{}}',
        '',
      ].join('\n'),
    );
    const prefix = `${randomName('bad')}:`;
    const run = await runCli(['import', '--to', redis!, '--to-prefix', prefix, '--in', file, '--json']);
    expect(run.code).toBe(1);
    const summary = summaryOf(run);
    expect(summary.counts).toMatchObject({ copied: 1, errors: 2 });
    expect(summary.problems.map((p) => p.userId)).toEqual(['(line 2)', '(line 3)']);
  });

  it('keeps newer data in the target and exits 4; --overwrite replaces it; --dry-run writes nothing', async () => {
    const { table } = await seedPostgres(postgres!, 20);
    const prefix = `${randomName('conf')}:`;
    const target = new RedisAdapter({ url: redis!, prefix });
    await target.save([{ userId: '0', userData: { newer: true }, expectedVersion: 0 }]);
    for (let v = 1; v < 5; v++)
      await target.save([{ userId: '0', userData: { newer: v }, expectedVersion: v }]);
    const args = ['migrate', ...postgresToRedis(postgres!, table, redis!, prefix)];

    const dry = await runCli([...args, '--dry-run', '--json']);
    expect(summaryOf(dry).counts).toMatchObject({ copied: 19, conflicts: 1 });
    expect(await target.load('8')).toBeUndefined();

    const run = await runCli([...args, '--json']);
    expect(run.code).toBe(4);
    expect(summaryOf(run).problems).toEqual([
      {
        userId: '0',
        kind: 'conflict',
        message: 'the target holds version 5, the source 2; skipped (newer data kept)',
      },
    ]);
    expect((await target.load('0'))?.userData).toEqual({ newer: 4 });

    const overwrite = await runCli([...args, '--overwrite', '--json']);
    expect(overwrite.code).toBe(0);
    expect(summaryOf(overwrite).counts).toMatchObject({ overwritten: 1, alreadyThere: 19 });
    expect(await target.load('0')).toMatchObject({ version: 6, userData: { name: expect.any(String) } });
    await target.close();
  });
});
