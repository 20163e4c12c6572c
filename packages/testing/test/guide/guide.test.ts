/**
 * WRITING-AN-ADAPTER.md shows code that is tested, not code that looks tested: every ```ts block of the guide
 * names the file it comes from on its first line (`// test/guide/sqlite-adapter.ts`), and that file must
 * contain the rest of the block exactly, as whole lines. The adapter and its conformance test must be shown
 * entirely, so the guide is the complete adapter and not a simplified cousin of it.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const packageDir = fileURLToPath(new URL('../../', import.meta.url));
const guidePath = `${packageDir}WRITING-AN-ADAPTER.md`;
/** Files the guide must show in full, every line of them in some block. */
const shownInFull = ['test/guide/sqlite-adapter.ts', 'test/guide/sqlite.conformance.test.ts'];

interface Block {
  /** Line of the opening fence in the guide (1-based), for messages. */
  line: number;
  file: string | undefined;
  code: string;
}

function tsBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(`{3,})(\S*)/.exec(lines[i]!);
    if (fence === null) continue;
    const end = lines.findIndex((text, j) => j > i && text === fence[1]);
    if (end === -1) throw new Error(`The code block opened on line ${i + 1} of the guide is never closed.`);
    if (fence[2] === 'ts' || fence[2] === 'typescript') {
      const body = lines.slice(i + 1, end);
      const file = /^\/\/ (\S+\.ts)$/.exec(body[0] ?? '')?.[1];
      blocks.push({ line: i + 1, file, code: body.slice(file === undefined ? 0 : 1).join('\n') });
    }
    i = end;
  }
  return blocks;
}

/** The lines of `file` that `code` covers, or undefined when `code` is not a run of whole lines of it. */
function coveredLines(file: string, code: string): [number, number] | undefined {
  const fileLines = file.split('\n');
  const codeLines = code.split('\n');
  for (let start = 0; start + codeLines.length <= fileLines.length; start++) {
    if (codeLines.every((text, k) => fileLines[start + k] === text)) return [start, start + codeLines.length];
  }
  return undefined;
}

const guide = await readFile(guidePath, 'utf8');
const blocks = tsBlocks(guide);

describe('WRITING-AN-ADAPTER.md', () => {
  it('has TypeScript blocks, each naming the file it comes from', () => {
    expect(blocks.length).toBeGreaterThan(5);
    const unnamed = blocks.filter((block) => block.file === undefined).map((block) => block.line);
    expect(unnamed, 'lines of ts blocks without a `// test/guide/<file>.ts` first line').toEqual([]);
  });

  it.each(blocks.filter((block) => block.file !== undefined))(
    'the block on line $line is in $file, verbatim',
    async (block) => {
      const file = await readFile(`${packageDir}${block.file}`, 'utf8');
      expect(block.code.trim(), 'an empty block').not.toBe('');
      expect(
        coveredLines(file, block.code),
        `the block on line ${block.line} of the guide differs from ${block.file}; copy the file's lines into it`,
      ).toBeDefined();
    },
  );

  it.each(shownInFull)('shows every line of %s', async (name) => {
    const fileLines = (await readFile(`${packageDir}${name}`, 'utf8')).split('\n');
    const shown = new Array<boolean>(fileLines.length).fill(false);
    for (const block of blocks) {
      if (block.file !== name) continue;
      const range = coveredLines(fileLines.join('\n'), block.code);
      if (range !== undefined) shown.fill(true, range[0], range[1]);
    }
    const missing = fileLines
      .map((text, i) => ({ line: i + 1, text }))
      .filter(({ line, text }) => !shown[line - 1] && text.trim() !== '');
    expect(missing, `lines of ${name} the guide does not show`).toEqual([]);
  });
});
