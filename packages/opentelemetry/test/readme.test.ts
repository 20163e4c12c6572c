/**
 * The README shows code that runs and tables that match the source. tools/docs-check type-checks and runs every
 * block; two of them are also files of this directory, verbatim (`test/readme/*.ts`, named in the block's
 * docs-check directive), so that what they print is checked here and the test file runs with the other tests.
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { OPTION_KEYS } from '../src/instrument.js';
import { GAUGES, METRICS, SPANS } from '../src/names.js';

const packageDir = fileURLToPath(new URL('../', import.meta.url));
const readme = await readFile(`${packageDir}README.md`, 'utf8');

interface Block {
  line: number;
  /** The `test/readme/…` file named in the directive before the block, if any. */
  file: string | undefined;
  code: string;
}

function tsBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    const end = lines.indexOf('```', i + 1);
    if (end === -1) throw new Error(`the block on line ${i + 1} is never closed`);
    const directive = i > 0 ? lines[i - 1]! : '';
    const file = /^<!-- docs-check: .*\b(test\/readme\/[\w.-]+\.ts)\b.*-->$/.exec(directive)?.[1];
    blocks.push({ line: i + 1, file, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** The first-column code names of the table under `heading` (up to the next blank line after it). */
function firstColumn(heading: string, pattern: RegExp): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start === -1) throw new Error(`no ${heading} in the README`);
  const table = readme.slice(start).split('\n| ').slice(1);
  const names: string[] = [];
  for (const row of table) {
    const cell = row.split('|')[0]!;
    const name = pattern.exec(cell)?.[1];
    if (name !== undefined) names.push(name);
    if (row.includes('\n\n')) break;
  }
  return names;
}

describe('README', () => {
  const blocks = tsBlocks(readme);
  const fromFiles = blocks.filter((block) => block.file !== undefined);

  it('shows every file of test/readme in a block, verbatim', async () => {
    const files = (await readdir(`${packageDir}test/readme`)).map((name) => `test/readme/${name}`);
    expect(fromFiles.map((block) => block.file).sort()).toEqual(files.sort());
    for (const block of fromFiles) {
      const file = await readFile(`${packageDir}${block.file}`, 'utf8');
      expect(block.code, `README line ${block.line} differs from ${block.file}`).toBe(file.trimEnd());
    }
  });

  it('runs the console exporter program, which prints the spans and metrics', async () => {
    const printed: unknown[] = [];
    const dir = vi.spyOn(console, 'dir').mockImplementation((item) => void printed.push(item));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      await import('./readme/console.js');
    } finally {
      dir.mockRestore();
      log.mockRestore();
    }
    const spans = printed.map((item) => (item as { name?: unknown }).name).filter(Boolean);
    expect(spans).toEqual(expect.arrayContaining([SPANS.flush, SPANS.batch, SPANS.shutdown]));
    const metrics = printed.map((item) => (item as { descriptor?: { name?: unknown } }).descriptor?.name);
    expect(metrics).toEqual(
      expect.arrayContaining([
        'cagey_sessions.writes',
        'cagey_sessions.active_sessions',
        METRICS.persistDuration,
      ]),
    );
  });

  it('lists every metric, exactly once, in the Metrics table', () => {
    const listed = firstColumn('## Metrics', /^\s*`(cagey_sessions\.[\w.]+)`/);
    expect([...listed].sort()).toEqual([...Object.values(GAUGES), ...Object.values(METRICS)].sort());
  });

  it('lists every option, exactly once, in the Options table', () => {
    expect(firstColumn('## Options', /^\s*`(\w+)`/).sort()).toEqual([...OPTION_KEYS].sort());
  });

  it('lists every span in the Spans table', () => {
    expect(firstColumn('## Spans', /^\s*`(cagey_sessions\.\w+)`/).sort()).toEqual(
      Object.values(SPANS).sort(),
    );
  });
});
