import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchRow {
  /** What was measured, e.g. `flush 10,000 dirty sessions: core + adapter`. */
  name: string;
  value: number;
  unit: string;
  /** A comparison or target, e.g. `32.1x faster than one upsert per session (target ≥ 30x)`. */
  note?: string;
}

/** Runs `fn` once and returns its wall time in milliseconds. */
export async function timeMs(fn: () => unknown): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * The median wall time of `runs` runs of `fn`, each after `prepare` (untimed). Medians resist the noise of a
 * shared machine better than means; run the things you compare interleaved, in one process, for the same reason.
 */
export async function medianMs(runs: number, fn: () => unknown, prepare?: () => unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    await prepare?.();
    times.push(await timeMs(fn));
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** Forces a garbage collection when node runs with `--expose-gc`; returns whether it could. */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  return gc !== undefined;
}

/** Prints the rows as a table and writes them, with `meta`, to `bench-results/<name>.json` in the working directory. */
export function report(name: string, rows: BenchRow[], meta: Record<string, unknown> = {}): string {
  const format = (value: number) =>
    value >= 100
      ? Math.round(value).toLocaleString('en-US')
      : value.toLocaleString('en-US', { maximumFractionDigits: 2 });
  // A row that could not be measured carries NaN: shown as a dash, with the reason in its note.
  const cells = rows.map((row) => [
    row.name,
    Number.isFinite(row.value) ? `${format(row.value)} ${row.unit}` : '—',
    row.note ?? '',
  ]);
  const widths = [0, 1, 2].map((i) =>
    Math.max(...cells.map((c) => c[i]!.length), ['benchmark', 'result', 'note'][i]!.length),
  );
  const line = (c: string[]) => `| ${c.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  const table = [
    line(['benchmark', 'result', 'note']),
    line(widths.map((w) => '-'.repeat(w))),
    ...cells.map(line),
  ].join('\n');
  console.log(`\n${name}\n${table}\n`);
  const dir = join(process.cwd(), 'bench-results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ name, date: new Date().toISOString(), node: process.version, ...meta, rows }, null, 2)}\n`,
  );
  return file;
}

/** User data shaped like a player's, about 1 KB as JSON: the payload every flush benchmark writes. */
export function playerData(i: number) {
  return {
    name: `player-${i}`,
    gold: i,
    xp: i * 10,
    level: 1 + (i % 50),
    guild: 'the-cagey-ones',
    inventory: Array.from({ length: 16 }, (_, k) => ({ id: `item-${k}`, qty: k, rarity: k % 4 })),
    settings: { sound: true, music: 0.7, language: 'en', keybinds: { jump: 'space', use: 'e' } },
    quests: Array.from({ length: 6 }, (_, k) => ({ id: `quest-${k}`, step: k, done: k % 2 === 0 })),
  };
}

export type PlayerData = ReturnType<typeof playerData>;
