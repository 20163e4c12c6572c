/**
 * The published packages as a new user gets them. Each one is packed with `pnpm pack`; the tarballs are checked
 * (./tarball.ts) and run through @arethetypeswrong/cli; then they are installed with npm into an empty project
 * outside the repository, next to the drivers' current releases. There `npm ls` must be clean and a second
 * `npm install` must pass, and the READMEs' quick starts (core and adapter-postgres, verbatim) and the two
 * consumers in ../consumer (ES modules and CommonJS) are compiled against the packed declarations and run, and
 * the installed `cagey-sessions` command is run on PGlite directories (./cli-binary.ts).
 * No database is started: MemoryAdapter and PGlite store, the Redis and Mongo adapters get clients that never
 * connect.
 *
 *   pnpm packed-install                          # at the repository root
 *   CAGEY_KEEP_SCRATCH=1 pnpm packed-install     # keep the scratch project for a look
 */
import { type SpawnSyncOptions, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkCliBinary } from './cli-binary.js';
import { checkTarball, type Manifest } from './tarball.js';

const toolDir = fileURLToPath(new URL('../', import.meta.url));
const repoDir = resolve(toolDir, '../..');

/** The drivers a user installs next to the adapters: their current releases, whatever the peer ranges say. */
const DRIVERS = ['ioredis@latest', 'mongodb@latest', 'pg@latest', '@electric-sql/pglite@latest'];
/** Which README's quick start runs, by package directory: the first ```ts block under `## Usage`. */
const QUICK_STARTS = ['core', 'adapter-postgres'];
/**
 * attw's only ignored rule: from CommonJS the packages resolve to ES modules, which Node >= 20.19 (the engines
 * floor) loads with require(), and TypeScript >= 5.8 types under `module: nodenext`. attw's bundled TypeScript
 * predates that and still calls it "dynamic import only"; the CommonJS consumer below proves it both ways.
 */
const ATTW_ARGS = ['--ignore-rules', 'cjs-resolves-to-esm', '--format', 'table-flipped', '--no-color'];
const RUN_TIMEOUT_MS = 60_000;

const started = performance.now();
const problems: string[] = [];

function step(title: string): void {
  console.log(`\n=== packed-install: ${title}`);
}

interface Run {
  status: number | null;
  output: string;
}

/** Runs a command, echoing it; its output is printed as it comes, or returned with `capture`. */
function sh(command: string, args: string[], options: SpawnSyncOptions & { capture?: boolean } = {}): Run {
  const { capture = false, ...spawnOptions } = options;
  const cwd = typeof options.cwd === 'string' ? options.cwd : process.cwd();
  const where = cwd.startsWith(`${repoDir}/`) ? `(${relative(repoDir, cwd)}) ` : '';
  console.log(`${where}$ ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, {
    stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    encoding: 'utf8',
    timeout: 10 * 60_000,
    ...spawnOptions,
  });
  // A timeout leaves status null, reported by the caller; any other failure to run is fatal.
  if (result.error && (result.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw result.error;
  const output = capture ? `${result.stdout ?? ''}${result.stderr ?? ''}` : '';
  return { status: result.status, output };
}

function mustPass(run: Run, what: string): Run {
  if (run.status !== 0) {
    if (run.output) console.log(run.output.trimEnd());
    throw new Error(`${what} failed (exit ${run.status}).`);
  }
  return run;
}

/** npm as a new user runs it: without the npm_* settings pnpm puts in a script's environment. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
}

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
}

function workspaceManifests(): { dir: string; manifest: Manifest }[] {
  return ['packages', 'examples', 'tools'].flatMap((group) =>
    readdirSync(join(repoDir, group), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => join(repoDir, group, entry.name))
      .flatMap((dir) => {
        try {
          return [{ dir, manifest: readManifest(dir) }];
        } catch {
          return [];
        }
      }),
  );
}

/** The first ```ts block after a README's `## Usage` heading. */
function quickStart(readme: string): string | undefined {
  const usage = readme.indexOf('\n## Usage\n');
  if (usage === -1) return undefined;
  return /^```ts\n([\s\S]*?)^```$/m.exec(readme.slice(usage))?.[1];
}

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  console.error(
    `packed-install needs Node >= 20.19 (the packages' engines floor); this is ${process.version}.`,
  );
  process.exit(2);
}

const scratch = mkdtempSync(join(tmpdir(), 'cagey-packed-install-'));
const tarballDir = join(scratch, 'tarballs');
const appDir = join(scratch, 'app');
mkdirSync(tarballDir);
mkdirSync(appDir);
let failed = false;

try {
  const workspace = workspaceManifests();
  const published = workspace.filter(({ dir, manifest }) => dir.includes('/packages/') && !manifest.private);
  const privateNames = new Set(workspace.filter((p) => p.manifest.private).map((p) => p.manifest.name));

  step('build');
  mustPass(
    sh('pnpm', ['exec', 'turbo', 'run', 'build', '--filter=./packages/*', '--output-logs=errors-only'], {
      cwd: repoDir,
    }),
    'the build',
  );

  step(`pack ${published.map((p) => p.manifest.name).join(', ')}`);
  const tarballs: string[] = [];
  for (const { dir, manifest } of published) {
    const before = new Set(readdirSync(tarballDir));
    mustPass(
      sh('pnpm', ['pack', '--pack-destination', tarballDir], { cwd: dir, capture: true }),
      `pnpm pack of ${manifest.name}`,
    );
    const tarball = readdirSync(tarballDir).find((file) => file.endsWith('.tgz') && !before.has(file));
    if (tarball === undefined) throw new Error(`pnpm pack of ${manifest.name} wrote no tarball.`);
    tarballs.push(join(tarballDir, tarball));
  }

  step('tarballs: LICENSE, README, source maps and declaration maps, manifests');
  for (const tarball of tarballs) {
    const unpacked = join(
      scratch,
      'unpacked',
      tarball
        .split('/')
        .pop()!
        .replace(/\.tgz$/, ''),
    );
    mkdirSync(unpacked, { recursive: true });
    mustPass(sh('tar', ['-xzf', tarball, '-C', unpacked], { capture: true }), `unpacking ${tarball}`);
    const report = checkTarball(join(unpacked, 'package'), privateNames);
    problems.push(...report.problems.map((problem) => `${report.name}: ${problem}`));
    console.log(`${report.problems.length === 0 ? 'ok ' : 'BAD'} ${report.summary}`);
    for (const problem of report.problems) console.log(`    ${problem}`);
  }

  step('@arethetypeswrong/cli');
  const attw = join(toolDir, 'node_modules/.bin/attw');
  for (const tarball of tarballs) {
    const run = sh(attw, [tarball, ...ATTW_ARGS], { capture: true });
    console.log(run.output.trimEnd());
    if (run.status !== 0) problems.push(`attw reports problems in ${tarball.split('/').pop()}`);
  }

  step(`npm install into an empty project (${appDir})`);
  const rootManifest = readManifest(repoDir);
  const devTools = ['typescript', '@types/node'].map(
    (name) => `${name}@${rootManifest.devDependencies?.[name]}`,
  );
  writeFileSync(
    join(appDir, 'package.json'),
    `${JSON.stringify({ name: 'packed-install-app', private: true, version: '0.0.0' }, null, 2)}\n`,
  );
  const env = npmEnv();
  const npm = (args: string[], capture = true) => sh('npm', args, { cwd: appDir, env, capture });
  console.log(`node ${process.version}, npm ${npm(['--version']).output.trim()}`);
  const install = mustPass(
    npm(['install', '--no-audit', '--no-fund', ...tarballs, ...DRIVERS, ...devTools]),
    'npm install',
  );
  console.log(install.output.trimEnd());
  if (/ERESOLVE|peer dep/i.test(install.output)) problems.push('npm install warned about peer dependencies');

  step('npm ls');
  const ls = npm(['ls', '--all']);
  console.log(ls.output.trimEnd());
  if (ls.status !== 0) problems.push(`npm ls exited with ${ls.status}: the installed tree is not valid`);

  step('npm install again (a later install must not hit ERESOLVE)');
  const again = npm(['install', '--no-audit', '--no-fund']);
  console.log(again.output.trimEnd());
  if (again.status !== 0 || /ERESOLVE/.test(again.output)) problems.push('a second npm install failed');

  step('compile the quick starts and the consumers against the packed declarations');
  for (const file of readdirSync(join(toolDir, 'consumer'))) {
    copyFileSync(join(toolDir, 'consumer', file), join(appDir, file));
  }
  for (const name of QUICK_STARTS) {
    const code = quickStart(readFileSync(join(repoDir, 'packages', name, 'README.md'), 'utf8'));
    if (code === undefined) problems.push(`packages/${name}/README.md has no \`\`\`ts block under ## Usage`);
    else writeFileSync(join(appDir, `quickstart-${name}.mts`), code);
  }
  mustPass(sh(join(appDir, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: appDir }), 'tsc');

  const programs = [
    ...QUICK_STARTS.map((name) => `out/quickstart-${name}.mjs`),
    'out/esm.mjs',
    'out/cjs.cjs',
  ];
  for (const program of programs) {
    step(`node ${program}`);
    const run = sh('node', [program], { cwd: appDir, env, timeout: RUN_TIMEOUT_MS });
    console.log(`(exit ${run.status ?? `killed after ${RUN_TIMEOUT_MS / 1000} s`})`);
    if (run.status !== 0) problems.push(`node ${program} exited with ${run.status ?? 'a timeout'}`);
  }

  step('the cagey-sessions command (npx, on PGlite directories)');
  try {
    checkCliBinary(appDir, env);
    console.log('cagey-sessions: --help, count, export, import (twice), verify and export to stdout: ok');
  } catch (error) {
    problems.push(`cagey-sessions: ${error instanceof Error ? error.message : String(error)}`);
  }
} catch (error) {
  failed = true;
  console.error(`\npacked-install: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  if (process.env.CAGEY_KEEP_SCRATCH) console.log(`\nscratch project kept in ${scratch}`);
  else rmSync(scratch, { recursive: true, force: true });
}

const seconds = ((performance.now() - started) / 1000).toFixed(0);
if (failed || problems.length > 0) {
  console.error(`\npacked-install FAILED after ${seconds} s`);
  for (const problem of problems) console.error(`  - ${problem}`);
  process.exit(1);
}
console.log(`\npacked-install: every check passed (${seconds} s)`);
