import type { ExitCode } from './exit-codes.js';
import type { RunStats } from './stats.js';

export interface Summary {
  command: string;
  /** How the run ended: `complete`, `interrupted` (Ctrl-C) or `failed` (a store unreachable, an error). */
  outcome: 'complete' | 'interrupted' | 'failed';
  exitCode: ExitCode;
  dryRun: boolean;
  seconds: number;
  counts: Record<string, number>;
  /** The first problems (at most `MAX_KEPT_PROBLEMS`); `problemCount` has them all. */
  problems: RunStats['problems'];
  problemCount: number;
  /** Why the run failed, when it did. */
  error?: string | undefined;
}

/** How many problems the human summary lists (all kept ones are in `--json`). */
const LISTED = 20;

export function renderSummary(summary: Summary): string {
  const lines: string[] = [];
  const what = summary.dryRun ? `${summary.command} (dry run: nothing written)` : summary.command;
  lines.push(`${what}: ${summary.outcome} in ${summary.seconds.toFixed(1)} s`);
  for (const [name, value] of Object.entries(summary.counts)) lines.push(`  ${name.padEnd(16)} ${value}`);
  for (const problem of summary.problems.slice(0, LISTED)) {
    lines.push(`  ${problem.kind.padEnd(8)} ${JSON.stringify(problem.userId)}: ${problem.message}`);
  }
  if (summary.problemCount > LISTED) lines.push(`  … and ${summary.problemCount - LISTED} more (see --json)`);
  if (summary.error) lines.push(`  error: ${summary.error}`);
  if (summary.outcome === 'interrupted')
    lines.push('  Run the same command again to go on where it stopped.');
  lines.push(`  exit code ${summary.exitCode}`);
  return `${lines.join('\n')}\n`;
}
