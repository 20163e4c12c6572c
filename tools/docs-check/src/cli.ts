/**
 * `pnpm --filter @cagey-sessions/docs-check check [--run] [README ...]`: type-checks the READMEs' blocks (all,
 * or the READMEs named, relative to the repository root) and prints every problem with its README line;
 * with `--run`, also runs the programs. Exits with 1 when anything fails. The test does the same for CI.
 */
import { describeRun, runProgram } from './run.js';
import { formatDiagnostic, typecheck } from './typecheck.js';
import { findReadmes, readReadme, writePrograms } from './workspace.js';

const args = process.argv.slice(2);
const run = args.includes('--run');
const named = args.filter((arg) => !arg.startsWith('--'));
const readmes = (named.length > 0 ? named : findReadmes()).map((path) => readReadme(path));
const programs = readmes.flatMap((readme) => readme.programs);
let failures = 0;

for (const readme of readmes) {
  for (const { line, message } of readme.problems) {
    console.log(`${readme.path}:${line}: ${message}`);
    failures++;
  }
}
const files = writePrograms(programs, 'cli');
for (const diagnostic of typecheck(files)) {
  console.log(formatDiagnostic(diagnostic));
  failures++;
}
if (run) {
  for (const [program, file] of files) {
    if (program.mode !== 'run' && program.mode !== 'test') continue;
    const result = await runProgram(program, file);
    console.log(
      `${result.ok ? 'ok  ' : 'FAIL'} ${program.label} (${program.mode}, ${Math.round(result.ms)} ms)`,
    );
    if (!result.ok) {
      console.log(describeRun(program, result));
      failures++;
    }
  }
}
const counted = (mode: string) => programs.filter((program) => program.mode === mode).length;
console.log(
  `${readmes.length} READMEs, ${programs.length} programs: ${counted('run')} run, ${counted('test')} vitest, ` +
    `${counted('typecheck')} type-check only, ${counted('skip')} skipped; ${failures} problem(s)`,
);
process.exitCode = failures > 0 ? 1 : 0;
