/**
 * Reads a README: its TypeScript and JavaScript code blocks with their `docs-check` directives, and its tables.
 */

/** What the docs check does with a block (see the package README). */
export type Mode = 'run' | 'test' | 'typecheck' | 'skip';

export type Language = 'ts' | 'js';

export interface Block {
  /** The README, relative to the repository root (`packages/core/README.md`). */
  readme: string;
  /** 1-based README line of the opening fence. */
  line: number;
  language: Language;
  /** The block's text, without the fences. */
  code: string;
  /** From the directive before the block; `run` without one. A block that continues another has none. */
  mode: Mode;
  /** Why a `typecheck` or `skip` block is not run (the directive's parenthesised text). */
  reason: string | undefined;
  /** `<!-- docs-check: continues -->`: the block goes on from the previous TypeScript/JavaScript block. */
  continues: boolean;
}

export interface Table {
  /** 1-based README line of the header row. */
  line: number;
  /** The nearest heading above the table, without its `#`s. */
  heading: string;
  header: string[];
  rows: { line: number; cells: string[] }[];
}

export interface ParsedReadme {
  blocks: Block[];
  tables: Table[];
  /** Every directive that is not usable, with its line; the docs check fails on any. */
  problems: { line: number; message: string }[];
}

const LANGUAGES: Record<string, Language> = {
  ts: 'ts',
  typescript: 'ts',
  mts: 'ts',
  js: 'js',
  javascript: 'js',
  mjs: 'js',
};

const MODES: readonly string[] = ['run', 'test', 'typecheck', 'skip', 'continues'];

const DIRECTIVE = /^<!--\s*docs-check:\s*([a-z-]+)\s*(?:\((.*)\))?\s*-->$/;
const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/;

export function parseReadme(readme: string, text: string): ParsedReadme {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  const tables: Table[] = [];
  const problems: ParsedReadme['problems'] = [];
  let heading = '';
  let pending: { line: number; mode: string; reason: string | undefined } | undefined;
  let table: Table | undefined;

  const dropPending = () => {
    if (pending !== undefined) {
      problems.push({
        line: pending.line,
        message: 'a docs-check directive must be the line right before a ts or js code block',
      });
      pending = undefined;
    }
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    const fence = FENCE.exec(line);
    if (fence) {
      table = undefined;
      const [, indent, marker, info] = fence;
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length; i++) {
        const closing = lines[i]!;
        if (closing.trim().startsWith(marker!) && closing.trim().replace(/[`~]/g, '') === '') break;
        body.push(closing.startsWith(indent!) ? closing.slice(indent!.length) : closing);
      }
      const language = LANGUAGES[info!.toLowerCase()];
      const directive = pending;
      pending = undefined;
      if (language === undefined) {
        if (directive !== undefined)
          problems.push({
            line: directive.line,
            message: `a docs-check directive before a ${info || 'plain'} block`,
          });
        continue;
      }
      const block: Block = {
        readme,
        line: start + 1,
        language,
        code: body.join('\n'),
        mode: 'run',
        reason: undefined,
        continues: false,
      };
      if (directive !== undefined) {
        if (directive.mode === 'continues') {
          block.continues = true;
          if (directive.reason !== undefined)
            problems.push({ line: directive.line, message: 'continues takes no reason' });
        } else {
          block.mode = directive.mode as Mode;
          block.reason = directive.reason;
          if ((block.mode === 'typecheck' || block.mode === 'skip') && !directive.reason?.trim()) {
            problems.push({
              line: directive.line,
              message: `${block.mode} needs a reason: <!-- docs-check: ${block.mode} (why it is not run) -->`,
            });
          }
        }
      }
      blocks.push(block);
      continue;
    }

    if (trimmed.startsWith('<!--') && /docs-check/.test(trimmed)) {
      dropPending();
      const match = DIRECTIVE.exec(trimmed);
      if (!match || !MODES.includes(match[1]!)) {
        problems.push({
          line: i + 1,
          message: `unknown docs-check directive ${JSON.stringify(trimmed)}; expected one of ${MODES.join(', ')}`,
        });
      } else {
        pending = { line: i + 1, mode: match[1]!, reason: match[2] };
      }
      continue;
    }
    if (trimmed !== '') dropPending();

    const headingMatch = /^#{1,6}\s+(.*)$/.exec(line);
    if (headingMatch) {
      heading = headingMatch[1]!.trim();
      table = undefined;
      continue;
    }

    if (trimmed.startsWith('|')) {
      const cells = splitRow(trimmed);
      if (table === undefined) {
        table = { line: i + 1, heading, header: cells, rows: [] };
        tables.push(table);
      } else if (!cells.every((cell) => /^:?-+:?$/.test(cell))) {
        table.rows.push({ line: i + 1, cells });
      }
    } else {
      table = undefined;
    }
  }
  dropPending();
  return { blocks, tables, problems };
}

/** The cells of a table row; `\|` is a pipe inside a cell. */
function splitRow(row: string): string[] {
  const inner = row.replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, '|'));
}

/** The names in backticks at the start of a cell: `` `a`, `b` `` → `['a', 'b']`; `` `f(x)` `` → `['f']`. */
export function namesInCell(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!.replace(/[(?].*$/, '').trim());
}
