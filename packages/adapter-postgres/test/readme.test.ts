import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

describe('README', () => {
  it('the Usage example runs as printed and stores what it says', async () => {
    const readme = readFileSync(`${packageDir}README.md`, 'utf8');
    const usage = readme.slice(readme.indexOf('## Usage'));
    const code = /```ts\n([\s\S]*?)```/.exec(usage)?.[1];
    expect(code).toContain('new PostgresAdapter');
    // Inside the package, so the example's imports resolve as they would for a user of the package.
    const dir = `${packageDir}.cache`;
    mkdirSync(dir, { recursive: true });
    const file = `${dir}/readme-usage.ts`;
    writeFileSync(file, code!);
    const tsx = createRequire(import.meta.url).resolve('tsx');
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', tsx, file], {
      env: { ...process.env, TSX_TSCONFIG_PATH: `${packageDir}tsconfig.test.json` },
      timeout: 60_000,
    });
    expect(stdout).toContain("{ userData: { gold: 100, inventory: [ 'sword' ] }, version: 1 }");
  });
});
