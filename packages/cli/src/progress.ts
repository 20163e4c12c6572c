import type { RunStats } from './stats.js';

/** Where progress goes: stderr, a terminal or not. */
export interface ProgressOutput {
  write(text: string): void;
  isTTY: boolean;
  columns?: number | undefined;
}

/** How often the display refreshes: a bar on a terminal, a line every few seconds in a log. */
const BAR_EVERY_MS = 200;
const LINE_EVERY_MS = 5_000;
const MAX_BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 8;

/**
 * Shows a run's progress while it goes: on a terminal one line redrawn in place with a bar (done/total, rate,
 * ETA, and what can go wrong in the command: conflicts and errors, or differences); otherwise a plain line every
 * 5 s, fit for logs. The timer never keeps the process alive.
 */
export class Progress {
  readonly #output: ProgressOutput;
  readonly #stats: RunStats;
  readonly #label: string;
  readonly #timer: NodeJS.Timeout;
  #drawn = false;
  note = '';

  constructor(label: string, stats: RunStats, output: ProgressOutput) {
    this.#label = label;
    this.#stats = stats;
    this.#output = output;
    this.#timer = setInterval(() => this.draw(), output.isTTY ? BAR_EVERY_MS : LINE_EVERY_MS);
    this.#timer.unref();
  }

  draw(): void {
    const line = this.#output.isTTY ? this.#bar() : this.#line();
    if (this.#output.isTTY) {
      this.#output.write(`\r\x1b[K${line.slice(0, (this.#output.columns ?? 80) - 1)}`);
      this.#drawn = true;
    } else {
      this.#output.write(`${line}\n`);
    }
  }

  /** Draws the final state and leaves the line. */
  stop(): void {
    clearInterval(this.#timer);
    if (this.#output.isTTY) {
      this.draw();
      if (this.#drawn) this.#output.write('\n');
    }
  }

  #bar(): string {
    const stats = this.#stats;
    const { total, done } = stats;
    const fraction = total ? Math.min(1, done / total) : 0;
    const count =
      total === undefined ? `${n(done)}/…` : `${n(done)}/${n(total)} ${Math.floor(fraction * 100)}%`;
    const rest = [
      count,
      `${n(Math.round(stats.rate()))}/s`,
      `ETA ${eta(stats)}`,
      ...this.#counters().map(([name, value]) => `${name} ${n(value)}`),
      this.note,
    ]
      .filter(Boolean)
      .join('  ');
    // The bar takes what the terminal leaves; on a narrow one it goes, the numbers stay.
    const room = (this.#output.columns ?? 80) - 1 - this.#label.length - rest.length - 2;
    const width = Math.min(MAX_BAR_WIDTH, room);
    if (width < MIN_BAR_WIDTH) return `${this.#label} ${rest}`;
    const filled = Math.round(fraction * width);
    const bar =
      total === undefined ? '·'.repeat(width) : `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    return `${this.#label} ${bar} ${rest}`;
  }

  #line(): string {
    const stats = this.#stats;
    const of =
      stats.total === undefined
        ? ''
        : ` of ${stats.total} (${Math.floor((stats.done / Math.max(1, stats.total)) * 100)}%)`;
    return [
      `${this.#label}: ${stats.done} users${of}`,
      `${Math.round(stats.rate())}/s`,
      `ETA ${eta(stats)}`,
      ...this.#counters().map(([name, value]) => `${name} ${value}`),
      this.note,
    ]
      .filter(Boolean)
      .join(', ');
  }

  /** What can go wrong in this command, to watch as it runs: a verify finds differences, a copy conflicts. */
  #counters(): [string, number][] {
    const stats = this.#stats;
    if (this.#label === 'verify') return [['differences', stats.differences]];
    if (this.#label === 'migrate' || this.#label === 'import')
      return [
        ['conflicts', stats.conflicts],
        ['errors', stats.errors],
      ];
    return [];
  }
}

function n(value: number): string {
  return value.toLocaleString('en-US');
}

function eta(stats: RunStats): string {
  const rate = stats.rate();
  if (stats.total === undefined || rate === 0) return '?';
  const seconds = Math.max(0, Math.round((stats.total - stats.done) / rate));
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, '0')}`;
}
