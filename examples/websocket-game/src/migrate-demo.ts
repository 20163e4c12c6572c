/**
 * Moves the demo's players from PGlite (where `pnpm demo` left them) to another store with the
 * `cagey-sessions` command, then verifies both hold the same players. Run `pnpm demo` first; then
 * `pnpm demo:migrate` at the repository root (a throwaway Redis is started for the copy, or pass `--to <url>`).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT, run } from '@cagey-sessions/cli';
import { startRedis } from '@cagey-sessions/test-servers';
import { defaultDataDir, describeUrl } from './stores.js';

const USAGE = `Usage: pnpm demo:migrate [--to <url>] [--data-dir <dir>] [--namespace <name>]

Moves the players of the demo's PGlite database to another store with cagey-sessions migrate, then runs
cagey-sessions verify. Without --to: REDIS_URL, else a throwaway Redis started for the run.`;

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    'data-dir': { type: 'string', default: defaultDataDir() },
    namespace: { type: 'string', default: 'game' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const pgliteDir = join(resolve(values['data-dir']), 'pglite');
if (!existsSync(join(pgliteDir, 'PG_VERSION'))) {
  console.error(`No demo database in ${pgliteDir}: run \`pnpm demo\` first, then this again.`);
  process.exit(EXIT.usage);
}

const throwaway = (values.to ?? process.env.REDIS_URL) ? undefined : await startRedis();
const target = values.to ?? process.env.REDIS_URL ?? throwaway!.url;
const namespace = values.namespace;
const io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
const source = ['--from', `pglite:${pgliteDir}`, '--from-table', `${namespace}_players`];
const destination = ['--to', target, ...targetOptions(target)];

try {
  console.log(`Moving the demo's players from PGlite (${pgliteDir}) to ${describeUrl(target)}:\n`);
  console.log(`$ cagey-sessions migrate ${shown([...source, ...destination])}`);
  const migrated = await run(['migrate', ...source, ...destination], io);
  console.log(`\n$ cagey-sessions verify ${shown([...source, ...destination])}`);
  const verified = migrated === EXIT.ok ? await run(['verify', ...source, ...destination], io) : migrated;
  console.log(
    verified === EXIT.ok
      ? '\nEvery player is in the new store, with the same data and version.'
      : `\nThe migration did not verify (exit code ${verified}): see above.`,
  );
  process.exitCode = verified;
} finally {
  await throwaway?.stop();
}

/** The demo names its table, key prefix and collection after the namespace (see stores.ts). */
function targetOptions(url: string): string[] {
  if (/^rediss?(\+cluster)?:/.test(url)) return ['--to-prefix', `${namespace}:player:`];
  if (/^mongodb(\+srv)?:/.test(url)) return ['--to-collection', `${namespace}_players`];
  return ['--to-table', `${namespace}_players`];
}

function shown(args: string[]): string {
  return args.map((arg) => (arg.includes('://') ? describeUrl(arg) : arg)).join(' ');
}
