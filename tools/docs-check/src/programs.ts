/**
 * Turns a README's blocks into programs: a block and the blocks that continue it, written out as one module
 * with a map from its lines back to the README's.
 */
import type { Block, Language, Mode } from './markdown.js';

export interface DocProgram {
  readme: string;
  /** The blocks, first the one that starts the program, then those that continue it. */
  blocks: Block[];
  language: Language;
  mode: Mode;
  reason: string | undefined;
  /** The module's text: the blocks one after the other, then `export {}` so that it is always a module. */
  source: string;
  /** README line of each line of `source` (index 0 = line 1); 0 for the lines the docs check added. */
  lineMap: number[];
  /** `README.md:45` (the first block's fence), plus `+2` when blocks continue it. */
  label: string;
}

export function programsOf(blocks: readonly Block[]): {
  programs: DocProgram[];
  problems: { line: number; message: string }[];
} {
  const programs: DocProgram[] = [];
  const problems: { line: number; message: string }[] = [];
  for (const block of blocks) {
    const previous = programs.at(-1);
    if (block.continues) {
      if (previous === undefined || previous.readme !== block.readme) {
        problems.push({ line: block.line, message: 'continues, but no ts or js block comes before it' });
        continue;
      }
      if (previous.language !== block.language) {
        problems.push({
          line: block.line,
          message: `a ${block.language} block cannot continue a ${previous.language} block`,
        });
        continue;
      }
      if (previous.mode === 'skip') {
        problems.push({ line: block.line, message: 'continues a block that is skipped' });
        continue;
      }
      previous.blocks.push(block);
      continue;
    }
    programs.push({
      readme: block.readme,
      blocks: [block],
      language: block.language,
      mode: block.mode,
      reason: block.reason,
      source: '',
      lineMap: [],
      label: '',
    });
  }
  for (const program of programs) assemble(program);
  return { programs, problems };
}

function assemble(program: DocProgram): void {
  const lines: string[] = [];
  const lineMap: number[] = [];
  for (const block of program.blocks) {
    block.code.split('\n').forEach((text, index) => {
      lines.push(text);
      lineMap.push(block.line + 1 + index);
    });
  }
  lines.push('export {};');
  lineMap.push(0);
  const first = program.blocks[0]!;
  const more = program.blocks.length > 1 ? ` (+${program.blocks.length - 1} continuing)` : '';
  program.source = `${lines.join('\n')}\n`;
  program.lineMap = lineMap;
  program.label = `${first.readme}:${first.line}${more}`;
}

/** The README line of a 0-based line of a program's source, or its first block's fence line. */
export function readmeLine(program: DocProgram, sourceLine: number): number {
  return program.lineMap[sourceLine] || program.blocks[0]!.line;
}
