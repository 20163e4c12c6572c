import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { standaloneUrl } from './helpers.js';

const url = standaloneUrl();
const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');

/** The first TypeScript block after a heading. */
function codeAfter(heading: string): string {
  const section = readme.slice(readme.indexOf(`\n${heading}\n`));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error(`README: no ts block after ${heading}`);
  return match[1]!;
}

describe.skipIf(!url)('README presence example', () => {
  const savedUrl = process.env.REDIS_URL;
  afterEach(() => {
    if (savedUrl === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = savedUrl;
    vi.restoreAllMocks();
  });

  it('runs as written, prints what the README says, and leaves no presence keys', async () => {
    // The example's prefixes, made unique: other test files use the same server (and `mygame:`) at once.
    const game = `readme_${randomBytes(4).toString('hex')}`;
    const raw = new Redis(url!);
    try {
      process.env.REDIS_URL = url!;
      const logged: unknown[] = [];
      vi.spyOn(console, 'log').mockImplementation((value: unknown) => {
        logged.push(value);
      });
      const file = fileURLToPath(
        new URL(`./.readme-presence-${randomBytes(4).toString('hex')}.ts`, import.meta.url),
      );
      const code = codeAfter('## Presence: one live session per user across game servers');
      expect(code).toContain("'mygame:presence:'");
      writeFileSync(file, code.replaceAll("'mygame:", `'${game}:`));
      try {
        await import(/* @vite-ignore */ file);
      } finally {
        rmSync(file, { force: true });
      }
      expect(logged).toEqual([
        'game-1: player-42 kicked (login-elsewhere, now on game-2)',
        { gold: 10 },
        'game-2',
      ]);
      expect(await raw.keys(`${game}:presence:*`)).toEqual([]);
      expect(await raw.get(`${game}:user:player-42`)).toMatch(/"gold":10/);
    } finally {
      await raw.quit();
    }
  });
});
