/**
 * Where the READMEs are, and where their programs are written out: `tools/docs-check/.cache/docs/`, so that
 * a program's imports resolve as for a user who installed what this package's devDependencies list, and
 * `@cagey-sessions/*` resolves to the workspace's sources through `tsconfig.dev.json`'s paths.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParsedReadme, parseReadme } from './markdown.js';
import { type DocProgram, programsOf } from './programs.js';

export const packageDir = fileURLToPath(new URL('..', import.meta.url));
export const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
export const cacheDir = join(packageDir, '.cache', 'docs');
/** The compiler options the programs are checked with, and the paths `tsx` resolves when it runs them. */
export const tsconfigPath = join(repoRoot, 'tsconfig.dev.json');

/**
 * Markdown files whose code is checked elsewhere, with where. Everything else named README.md in the
 * repository root, `packages/*`, `examples/*` and `tools/*` is checked here.
 */
export const CHECKED_ELSEWHERE: Record<string, string> = {
  'packages/testing/WRITING-AN-ADAPTER.md':
    "packages/testing/test/guide.test.ts (every block is its files' code, verbatim)",
};

/** Every README of the repository, relative to its root, root first. */
export function findReadmes(root = repoRoot): string[] {
  const found = ['README.md'];
  for (const area of ['packages', 'examples', 'tools']) {
    for (const entry of readdirSync(join(root, area), { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      if (entry.isDirectory() && existsSync(join(root, area, entry.name, 'README.md')))
        found.push(`${area}/${entry.name}/README.md`);
    }
  }
  return found;
}

export interface Readme extends ParsedReadme {
  path: string;
  text: string;
  programs: DocProgram[];
}

export function readReadme(path: string, root = repoRoot): Readme {
  const text = readFileSync(join(root, path), 'utf8');
  const parsed = parseReadme(path, text);
  const { programs, problems } = programsOf(parsed.blocks);
  return { ...parsed, problems: [...parsed.problems, ...problems], path, text, programs };
}

/**
 * The file a program is written to, under `dir` (a directory of `cacheDir`): one directory per README, one
 * file per program, named by its first line.
 */
export function programFile(program: DocProgram, dir: string): string {
  const readmeDir = program.readme.replace(/\/?[^/]*\.md$/, '').replace(/\//g, '__') || 'root';
  const kind = program.mode === 'test' ? '.test' : '';
  return join(dir, readmeDir, `readme-line-${program.blocks[0]!.line}${kind}.${program.language}`);
}

/**
 * Writes every program that is not skipped to its file under `cacheDir/<run>`, after clearing what an earlier
 * run left there. Returns the files.
 */
export function writePrograms(programs: readonly DocProgram[], run: string): Map<DocProgram, string> {
  const dir = join(cacheDir, run);
  rmSync(dir, { recursive: true, force: true });
  const files = new Map<DocProgram, string>();
  for (const program of programs) {
    if (program.mode === 'skip') continue;
    const file = programFile(program, dir);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, program.source);
    files.set(program, file);
  }
  return files;
}

export function fromRoot(file: string): string {
  return relative(repoRoot, file);
}
