/**
 * Every TypeScript and JavaScript block of every README type-checks under the repository's strict compiler
 * options against the workspace's sources; every block that is a complete program runs; every block that is
 * a test file passes under vitest. What a block is comes from the `docs-check` directive before it (see
 * README.md); without one it is a complete program.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DocProgram } from '../src/programs.js';
import { describeRun, runProgram } from '../src/run.js';
import { type DocDiagnostic, formatDiagnostic, typecheck } from '../src/typecheck.js';
import { findReadmes, readReadme, writePrograms } from '../src/workspace.js';

const readmes = findReadmes().map((path) => readReadme(path));
const programs = readmes.flatMap((readme) => readme.programs);
const ran = new Set<DocProgram>();
let files: Map<DocProgram, string>;
let diagnostics: DocDiagnostic[];

beforeAll(() => {
  files = writePrograms(programs, 'readmes');
  diagnostics = typecheck(files);
});

it('finds the READMEs of the root, every package, example and tool', () => {
  expect(readmes.map((readme) => readme.path)).toEqual(
    expect.arrayContaining([
      'README.md',
      'packages/core/README.md',
      'packages/adapter-postgres/README.md',
      'packages/adapter-redis/README.md',
      'packages/adapter-mongo/README.md',
      'packages/testing/README.md',
      'tools/docs-check/README.md',
    ]),
  );
  expect(programs.length).toBeGreaterThan(10);
});

describe.each(readmes)('$path', (readme) => {
  it('has only usable docs-check directives', () => {
    expect(readme.problems.map(({ line, message }) => `${readme.path}:${line}: ${message}`)).toEqual([]);
  });

  const checked = readme.programs.filter((program) => program.mode !== 'skip');
  it.skipIf(checked.length === 0)(
    `type-checks its ${checked.length} program${checked.length === 1 ? '' : 's'} under strict TypeScript`,
    () => {
      const mine = diagnostics.filter((diagnostic) => diagnostic.program.readme === readme.path);
      expect(mine.map(formatDiagnostic)).toEqual([]);
    },
  );

  const runnable = readme.programs.filter((program) => program.mode === 'run' || program.mode === 'test');
  (runnable.length === 0 ? describe.skip : describe.concurrent)('runs', () => {
    for (const program of runnable) {
      const how = program.mode === 'test' ? 'passes as a vitest test file' : 'runs to completion';
      it(`${program.label} ${how}`, async () => {
        const result = await runProgram(program, files.get(program)!);
        ran.add(program);
        if (!result.ok) expect.fail(describeRun(program, result));
      });
    }
  });
});

afterAll(() => {
  const rows = readmes
    .filter((readme) => readme.blocks.length > 0)
    .map((readme) => {
      const count = (mode: DocProgram['mode']) => readme.programs.filter((p) => p.mode === mode).length;
      return {
        readme: readme.path,
        blocks: readme.blocks.length,
        programs: readme.programs.length,
        'type-checked': readme.programs.filter((p) => p.mode !== 'skip').length,
        run: count('run'),
        'vitest files': count('test'),
        'type-check only': count('typecheck'),
        skipped: count('skip'),
      };
    });
  console.log(`docs-check: ${ran.size} programs run`);
  console.table(rows);
});
