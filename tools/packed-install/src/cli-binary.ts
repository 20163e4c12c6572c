/**
 * The `cagey-sessions` command as a user runs it after `npm install @cagey-sessions/cli`: through `npx` from the
 * scratch project's node_modules/.bin, on PGlite directories (no server). A game (../consumer/pglite-game.mts)
 * stores players in one directory; the command counts them, exports them, imports the export into a second
 * directory, verifies the two, and an import run again finds everything already there.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const TIMEOUT_MS = 60_000;
const COMMANDS = ['migrate', 'export', 'import', 'verify', 'count'];

interface Summary {
  command: string;
  outcome: string;
  exitCode: number;
  counts: Record<string, number>;
}

interface ExportLine {
  userId: string;
  version: number;
  userData: unknown;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  console.log(`$ ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: TIMEOUT_MS });
  if (result.error) throw result.error;
  const { stdout, stderr, status } = result;
  if (stdout.trim()) console.log(stdout.trimEnd());
  if (stderr.trim()) console.log(stderr.trimEnd());
  return { stdout, stderr, status: status ?? `killed after ${TIMEOUT_MS / 1000} s` };
}

/** Runs `npx --no-install cagey-sessions <args> --json` and returns its summary, requiring the exit code. */
function command(appDir: string, env: NodeJS.ProcessEnv, args: string[], exitCode = 0): Summary {
  const result = run('npx', ['--no-install', 'cagey-sessions', ...args, '--json'], appDir, env);
  assert.equal(result.status, exitCode, `cagey-sessions ${args[0]} exited with ${result.status}`);
  // The summary is the last line of stdout (export to stdout prints it on stderr instead).
  const lines = (args.includes('--out') || args[0] !== 'export' ? result.stdout : result.stderr).trim();
  return JSON.parse(lines.split('\n').pop() ?? '') as Summary;
}

function parseLines(text: string): ExportLine[] {
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as ExportLine)
    .sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
}

/** Throws (an AssertionError naming the step) when the installed command does not do what its README says. */
export function checkCliBinary(appDir: string, env: NodeJS.ProcessEnv): void {
  const help = run('npx', ['--no-install', 'cagey-sessions', '--help'], appDir, env);
  assert.equal(help.status, 0, 'cagey-sessions --help');
  for (const name of COMMANDS) assert.match(help.stdout, new RegExp(`\\b${name}\\b`), `--help names ${name}`);

  const unknown = run('npx', ['--no-install', 'cagey-sessions', 'migrat'], appDir, env);
  assert.equal(unknown.status, 2, 'an unknown command is bad usage (exit code 2)');
  assert.match(unknown.stderr, /migrate/, 'an unknown command names the nearest one');

  // A game stores three players in a PGlite directory; it prints them as the export should.
  const game = run('node', ['out/pglite-game.mjs', 'store-a'], appDir, env);
  assert.equal(game.status, 0, 'node out/pglite-game.mjs');
  const stored = parseLines(game.stdout);
  assert.equal(stored.length, 3);

  const counted = command(appDir, env, ['count', 'pglite:store-a']);
  assert.deepEqual(counted.counts, { users: 3 }, 'count pglite:store-a');

  const exported = command(appDir, env, ['export', '--from', 'pglite:store-a', '--out', 'players.jsonl']);
  assert.equal(exported.counts.exported, 3, 'export --out players.jsonl');
  assert.deepEqual(parseLines(readFileSync(join(appDir, 'players.jsonl'), 'utf8')), stored, 'the export');

  const imported = command(appDir, env, ['import', '--to', 'pglite:store-b', '--in', 'players.jsonl']);
  assert.equal(imported.counts.copied, 3, 'import --to pglite:store-b');
  const again = command(appDir, env, ['import', '--to', 'pglite:store-b', '--in', 'players.jsonl']);
  assert.equal(again.counts.alreadyThere, 3, 'the same import again: every user already there');
  assert.equal(again.counts.copied, 0);

  const verified = command(appDir, env, ['verify', '--from', 'pglite:store-a', '--to', 'pglite:store-b']);
  assert.equal(verified.counts.compared, 3, 'verify');
  assert.equal(verified.counts.differences, 0);

  // The second directory's export (to stdout) holds the same users, versions and data as the game stored.
  const fromB = run(
    'npx',
    ['--no-install', 'cagey-sessions', 'export', '--from', 'pglite:store-b'],
    appDir,
    env,
  );
  assert.equal(fromB.status, 0, 'export --from pglite:store-b to stdout');
  assert.deepEqual(parseLines(fromB.stdout), stored, 'the round trip through the second directory');
}
