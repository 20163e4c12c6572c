import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../src/exit-codes.js';
import { run } from '../src/main.js';

// PGlite runs inside the process and answers without giving the event loop a turn: these runs prove the
// command still redraws its progress and handles Ctrl-C while it reads such a store.
const USERS = 2000;

const dirs: string[] = [];
function pgliteDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cli-pglite-turns-'));
  dirs.push(dir);
  return dir;
}

let source: string;
beforeAll(async () => {
  source = `pglite:${pgliteDir()}`;
  const lines = Array.from({ length: USERS }, (_, i) => `{"userId":"p${i}","version":1,"userData":{}}\n`);
  const seeded = await run(['import', '--to', source, '--quiet'], {
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    stdin: PassThrough.from([lines.join('')]),
  });
  expect(seeded).toBe(EXIT.ok);
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A terminal's stderr that presses Ctrl-C once a bar shows users copied while the total is still unknown. */
function terminalInterruptingMidCount(interrupt: AbortController) {
  const bars: string[] = [];
  const stderr = Object.assign(
    new Writable({
      write(chunk, _encoding, done) {
        for (const bar of String(chunk).split('\r\x1b[K').slice(1)) {
          bars.push(bar);
          if (/ [1-9][\d,]*\/… /.test(bar)) interrupt.abort();
        }
        done();
      },
    }),
    { isTTY: true, columns: 120 },
  );
  return { stderr, bars };
}

describe('a migration from a PGlite directory', () => {
  it('redraws its bar while it runs, and after Ctrl-C stopped the counting listing shows no (partial) total', async () => {
    const interrupt = new AbortController();
    const { stderr, bars } = terminalInterruptingMidCount(interrupt);
    const args = ['migrate', '--from', source, '--to', `pglite:${pgliteDir()}`, '--batch-size', '5'];
    const code = await run([...args, '--concurrency', '1'], {
      stdout: new PassThrough(),
      stderr,
      stdin: new PassThrough(),
      signal: interrupt.signal,
    });
    expect(interrupt.signal.aborted, `a bar showed users copied before the total was known: ${bars}`).toBe(
      true,
    );
    expect(code).toBe(EXIT.interrupted);
    const last = bars.at(-1) ?? '';
    expect(last).toMatch(/^migrate .* [1-9][\d,]*\/… /);
    expect(last).not.toMatch(/\d\/[\d,]+ \d+%/);
  });
});
