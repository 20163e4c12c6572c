import { describe, expect, it } from 'vitest';
import { Progress } from '../src/progress.js';
import { RunStats } from '../src/stats.js';

function drawn(label: string, stats: RunStats, isTTY: boolean): string {
  let text = '';
  const progress = new Progress(label, stats, { write: (t) => (text += t), isTTY, columns: 200 });
  progress.draw();
  progress.stop();
  return text;
}

describe('progress display', () => {
  it('shows the differences of a verify, not conflicts and errors it cannot have', () => {
    const stats = new RunStats();
    stats.done = 10;
    stats.problem({ userId: 'a', kind: 'data', message: 'differs' });
    for (const isTTY of [true, false]) {
      const text = drawn('verify', stats, isTTY);
      expect(text).toContain('differences 1');
      expect(text).not.toContain('conflicts');
    }
  });

  it('shows the conflicts and errors of a migrate or an import', () => {
    const stats = new RunStats();
    stats.problem({ userId: 'a', kind: 'conflict', message: 'newer' });
    for (const label of ['migrate', 'import']) {
      for (const isTTY of [true, false]) {
        const text = drawn(label, stats, isTTY);
        expect(text).toContain('conflicts 1');
        expect(text).toContain('errors 0');
        expect(text).not.toContain('differences');
      }
    }
  });

  it('shows only the count and rate of an export or a count', () => {
    const stats = new RunStats();
    stats.done = 5;
    for (const label of ['export', 'count']) {
      const text = drawn(label, stats, false);
      expect(text).toMatch(new RegExp(`^${label}: 5 users, \\d+/s, ETA \\?\\n$`));
    }
  });
});
