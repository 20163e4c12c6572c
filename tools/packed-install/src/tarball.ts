/**
 * What an unpacked tarball must hold: LICENSE and README; for every emitted .js and .d.ts a map whose sources
 * are in the tarball (so a stack trace or "go to definition" lands on the TypeScript source, and a build output
 * whose source is gone shows up); a manifest without devDependencies, scripts, `workspace:` ranges or private
 * workspace packages.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  files?: string[];
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  scripts?: Record<string, string>;
}

export interface TarballReport {
  name: string;
  summary: string;
  problems: string[];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Problems of one emitted file's map: missing, not referenced, or naming a source the tarball lacks. */
function mapProblems(packageDir: string, file: string): string[] {
  const where = relative(packageDir, file);
  const mapFile = `${file}.map`;
  if (!existsSync(mapFile)) return [`${where} has no ${where}.map`];
  const problems: string[] = [];
  const mapName = mapFile.split('/').pop()!;
  if (!readFileSync(file, 'utf8').trimEnd().endsWith(`sourceMappingURL=${mapName}`)) {
    problems.push(`${where} does not reference ${mapName}`);
  }
  const map = JSON.parse(readFileSync(mapFile, 'utf8')) as { sources: string[]; sourceRoot?: string };
  for (const source of map.sources) {
    const path = resolve(dirname(mapFile), map.sourceRoot ?? '', source);
    if (!path.startsWith(`${packageDir}/`) || !existsSync(path)) {
      problems.push(`${relative(packageDir, mapFile)} names ${source}, which is not in the tarball`);
    }
  }
  return problems;
}

export function checkTarball(packageDir: string, privateNames: ReadonlySet<string>): TarballReport {
  const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as Manifest;
  const files = filesUnder(packageDir);
  const problems: string[] = [];

  for (const required of ['LICENSE', 'README.md', 'package.json']) {
    if (!existsSync(join(packageDir, required))) problems.push(`no ${required}`);
  }

  const emitted = files.filter((file) => /\/dist\/.*(?<!\.d)\.js$/.test(file));
  const declarations = files.filter((file) => /\/dist\/.*\.d\.ts$/.test(file));
  if (emitted.length === 0) problems.push('no dist/**/*.js');
  for (const file of [...emitted, ...declarations]) problems.push(...mapProblems(packageDir, file));

  if (manifest.devDependencies) problems.push('the manifest lists devDependencies');
  if (manifest.scripts) problems.push('the manifest lists scripts');
  const ranges = {
    ...manifest.dependencies,
    ...manifest.peerDependencies,
    ...manifest.optionalDependencies,
  };
  for (const [name, range] of Object.entries(ranges)) {
    if (range.startsWith('workspace:')) problems.push(`${name} has the range ${range}`);
    if (privateNames.has(name)) problems.push(`depends on the private workspace package ${name}`);
  }

  return {
    name: manifest.name,
    summary:
      `${manifest.name}@${manifest.version}: ${files.length} files; ${emitted.length} .js and ` +
      `${declarations.length} .d.ts files, each with a map into src/`,
    problems,
  };
}
