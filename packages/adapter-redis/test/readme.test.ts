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

describe.skipIf(!url)('README', () => {
  const savedUrl = process.env.REDIS_URL;
  afterEach(() => {
    if (savedUrl === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = savedUrl;
    vi.restoreAllMocks();
  });

  it('the Usage example runs as written and prints what its comment says', async () => {
    const raw = new Redis(url!);
    await raw.del('mygame:user:player-42');
    await raw.quit();
    process.env.REDIS_URL = url!;
    const logged: unknown[] = [];
    vi.spyOn(console, 'log').mockImplementation((value: unknown) => {
      logged.push(value);
    });
    const file = fileURLToPath(
      new URL(`./.readme-usage-${randomBytes(4).toString('hex')}.ts`, import.meta.url),
    );
    writeFileSync(file, codeAfter('## Usage'));
    try {
      await import(/* @vite-ignore */ file);
    } finally {
      rmSync(file, { force: true });
    }
    expect(logged).toEqual([{ userData: { gold: 10 }, version: 1 }]);
  });
});
