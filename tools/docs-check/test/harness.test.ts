/**
 * The docs check itself, on READMEs made up for the purpose: it must find what is wrong in them, at the right
 * README line, or it proves nothing about the real ones.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { namesInCell, parseReadme } from '../src/markdown.js';
import { type DocProgram, programsOf } from '../src/programs.js';
import { runProgram } from '../src/run.js';
import { formatDiagnostic, typecheck } from '../src/typecheck.js';
import { cacheDir, writePrograms } from '../src/workspace.js';

const fence = '```';

/** A directory of its own under `.cache/docs/` for each check, removed at the end. */
const runs: string[] = [];
function newRun(): string {
  const run = `harness-${Math.random().toString(36).slice(2)}`;
  runs.push(run);
  return run;
}
afterAll(() => {
  for (const run of runs) rmSync(join(cacheDir, run), { recursive: true, force: true });
});

function readme(path: string, lines: string[]) {
  const parsed = parseReadme(path, lines.join('\n'));
  const { programs, problems } = programsOf(parsed.blocks);
  return { ...parsed, programs, problems: [...parsed.problems, ...problems] };
}

function check(...readmes: ReturnType<typeof readme>[]): string[] {
  const files = writePrograms(
    readmes.flatMap((r) => r.programs),
    newRun(),
  );
  return typecheck(files).map(formatDiagnostic);
}

describe('blocks and directives', () => {
  it('takes ts and js blocks, with their directive, and leaves other blocks alone', () => {
    const parsed = readme('a/README.md', [
      '# A', // 1
      '', // 2
      `${fence}sh`, // 3
      'npm install x', // 4
      fence, // 5
      `${fence}ts`, // 6
      'const a = 1;', // 7
      fence, // 8
      '<!-- docs-check: typecheck (needs a server) -->', // 9
      `${fence}typescript`, // 10
      'const b = 2;', // 11
      fence, // 12
      '<!-- docs-check: test -->', // 13
      `${fence}js`, // 14
      'const c = 3;', // 15
      fence, // 16
      '<!-- docs-check: skip (output) -->', // 17
      `${fence}js`, // 18
      '{ a: 1 }', // 19
      fence, // 20
    ]);
    expect(parsed.problems).toEqual([]);
    expect(
      parsed.blocks.map(({ line, language, mode, reason, code }) => ({ line, language, mode, reason, code })),
    ).toEqual([
      { line: 6, language: 'ts', mode: 'run', reason: undefined, code: 'const a = 1;' },
      { line: 10, language: 'ts', mode: 'typecheck', reason: 'needs a server', code: 'const b = 2;' },
      { line: 14, language: 'js', mode: 'test', reason: undefined, code: 'const c = 3;' },
      { line: 18, language: 'js', mode: 'skip', reason: 'output', code: '{ a: 1 }' },
    ]);
  });

  it('refuses an unknown directive, a missing reason, and a directive not right before a ts or js block', () => {
    const parsed = readme('a/README.md', [
      '<!-- docs-check: runn -->', // 1
      `${fence}ts`, // 2
      'const a = 1;', // 3
      fence, // 4
      '<!-- docs-check: skip -->', // 5
      `${fence}ts`, // 6
      fence, // 7
      '<!-- docs-check: typecheck (a reason) -->', // 8
      'Some text in between.', // 9
      `${fence}ts`, // 10
      fence, // 11
      '<!-- docs-check: typecheck (a reason) -->', // 12
      `${fence}sh`, // 13
      fence, // 14
      '<!-- docs-check: continues -->', // 15
    ]);
    expect(parsed.problems.map((p) => p.line)).toEqual([1, 5, 8, 12, 15]);
    expect(parsed.problems[0]!.message).toMatch(/unknown docs-check directive/);
    expect(parsed.problems[1]!.message).toMatch(/skip needs a reason/);
  });

  it('does not read directives or fences inside a longer fence', () => {
    const parsed = readme('a/README.md', [
      '````md',
      '<!-- docs-check: skip -->',
      `${fence}ts`,
      'not code of this README',
      fence,
      '````',
    ]);
    expect(parsed.problems).toEqual([]);
    expect(parsed.blocks).toEqual([]);
  });

  it('joins a continuing block to the one before it, and maps every line back to the README', () => {
    const parsed = readme('a/README.md', [
      `${fence}ts`, // 1
      'const a = 1;', // 2
      fence, // 3
      'Then:', // 4
      '<!-- docs-check: continues -->', // 5
      `${fence}ts`, // 6
      'console.log(a);', // 7
      fence, // 8
    ]);
    expect(parsed.programs).toHaveLength(1);
    const [program] = parsed.programs as [DocProgram];
    expect(program.source).toBe('const a = 1;\nconsole.log(a);\nexport {};\n');
    expect(program.lineMap).toEqual([2, 7, 0]);
    expect(program.label).toBe('a/README.md:1 (+1 continuing)');
  });

  it('refuses a continuing block with nothing before it', () => {
    const parsed = readme('a/README.md', ['<!-- docs-check: continues -->', `${fence}ts`, fence]);
    expect(parsed.problems).toEqual([
      { line: 2, message: 'continues, but no ts or js block comes before it' },
    ]);
  });
});

describe('tables', () => {
  it('reads rows under their heading, with escaped pipes inside cells', () => {
    const parsed = readme('a/README.md', [
      '## Options',
      '',
      '| option | type |',
      '| ------ | ---- |',
      '| `a` | `number \\| string` |',
      '| `b.c` | `boolean` |',
    ]);
    expect(parsed.tables).toEqual([
      {
        line: 3,
        heading: 'Options',
        header: ['option', 'type'],
        rows: [
          { line: 5, cells: ['`a`', '`number | string`'] },
          { line: 6, cells: ['`b.c`', '`boolean`'] },
        ],
      },
    ]);
    expect(namesInCell('`async create([key])`')).toEqual(['async create']);
    expect(namesInCell('`userId`, `userData`')).toEqual(['userId', 'userData']);
  });
});

describe('type-checking', () => {
  it('reports an undefined name at its README line', () => {
    const diagnostics = check(
      readme('fixture-a/README.md', [
        'Intro.', // 1
        `${fence}ts`, // 2
        "import { create } from '@cagey-sessions/core';", // 3
        'const manager = create();', // 4
        'await manager.create(reconnectToken);', // 5
        fence, // 6
      ]),
    );
    expect(diagnostics).toEqual(["fixture-a/README.md:5: TS2304 Cannot find name 'reconnectToken'."]);
  });

  it('checks strictly: a user-data type that was not given is not invented', () => {
    const diagnostics = check(
      readme('fixture-b/README.md', [
        `${fence}ts`, // 1
        "import { create } from '@cagey-sessions/core';", // 2
        'const session = await create().create();', // 3
        "await session.identify('u');", // 4
        'session.userData!.gold += 1;', // 5
        fence, // 6
      ]),
    );
    expect(diagnostics).toEqual(["fixture-b/README.md:5: TS2571 Object is of type 'unknown'."]);
  });

  it('lets a continuing block use what the block before it declared, and no other README use it', () => {
    const first = readme('fixture-c/README.md', [
      `${fence}ts`, // 1
      'const gold = 1;', // 2
      fence, // 3
      '<!-- docs-check: continues -->', // 4
      `${fence}ts`, // 5
      'const more: number = gold + 1;', // 6
      'const wrong: string = gold;', // 7
      fence, // 8
    ]);
    const second = readme('fixture-d/README.md', [`${fence}ts`, 'console.log(gold);', fence]);
    expect(check(first, second)).toEqual([
      "fixture-c/README.md:7: TS2322 Type 'number' is not assignable to type 'string'.",
      "fixture-d/README.md:2: TS2304 Cannot find name 'gold'.",
    ]);
  });

  it('checks JavaScript blocks too', () => {
    const diagnostics = check(
      readme('fixture-e/README.md', [
        `${fence}js`,
        "import { create } from '@cagey-sessions/core';",
        'create().nope();',
        fence,
      ]),
    );
    expect(diagnostics).toEqual([
      expect.stringMatching(/^fixture-e\/README\.md:3: TS2339 Property 'nope' does not exist/),
    ]);
  });
});

describe('running', () => {
  function programOf(lines: string[]) {
    const parsed = readme('fixture-run/README.md', lines);
    const files = writePrograms(parsed.programs, newRun());
    const program = parsed.programs[0]!;
    return { program, file: files.get(program)! };
  }

  it('passes a program that runs to completion, against the workspace sources', async () => {
    const { program, file } = programOf([
      `${fence}ts`,
      "import { create } from '@cagey-sessions/core';",
      "import { MemoryAdapter } from '@cagey-sessions/testing';",
      'const manager = create({ adapter: new MemoryAdapter() });',
      'const session = await manager.create();',
      "await session.identify('u', { defaults: { gold: 1 } });",
      'await manager.destroy();',
      "console.log('done');",
      fence,
    ]);
    const result = await runProgram(program, file);
    expect(result).toMatchObject({ ok: true, exit: 0 });
    expect(result.stdout).toBe('done\n');
  });

  it('fails a program that throws', async () => {
    const { program, file } = programOf([`${fence}ts`, "throw new Error('broken example');", fence]);
    const result = await runProgram(program, file);
    expect(result.ok).toBe(false);
    expect(result.exit).toBe(1);
    expect(result.stderr).toContain('broken example');
  });

  it('fails a program that never ends (a handle left open)', async () => {
    const { program, file } = programOf([`${fence}ts`, 'setInterval(() => {}, 1000);', fence]);
    const result = await runProgram(program, file, 3000);
    expect(result).toMatchObject({ ok: false, exit: 'SIGKILL' });
  });

  it('does not hand the developer’s database URLs to a program', async () => {
    process.env.DATABASE_URL = 'postgres://developer@127.0.0.1/mine';
    try {
      const { program, file } = programOf([
        `${fence}ts`,
        'console.log(process.env.DATABASE_URL ?? "none");',
        fence,
      ]);
      expect((await runProgram(program, file)).stdout).toBe('none\n');
    } finally {
      delete process.env.DATABASE_URL;
    }
  });

  it('runs a test block with vitest, and fails it when a test fails', async () => {
    const passing = programOf([
      '<!-- docs-check: test -->',
      `${fence}ts`,
      "import { expect, it } from 'vitest';",
      "it('adds', () => expect(1 + 1).toBe(2));",
      fence,
    ]);
    expect(await runProgram(passing.program, passing.file)).toMatchObject({ ok: true });
    const failing = programOf([
      '<!-- docs-check: test -->',
      `${fence}ts`,
      "import { expect, it } from 'vitest';",
      "it('adds', () => expect(1 + 1).toBe(3));",
      fence,
    ]);
    const result = await runProgram(failing.program, failing.file);
    expect(result.ok).toBe(false);
    expect(result.stdout + result.stderr).toMatch(/expected 2 to be 3/);
  });
});
