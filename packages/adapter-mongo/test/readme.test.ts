import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { newClient, randomDatabase, serverUrl } from './helpers.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const url = serverUrl('adapter-mongo: README example');

describe.skipIf(url === null)('README', () => {
  it('the Usage example runs as printed and stores what it says', async () => {
    const readme = readFileSync(`${packageDir}README.md`, 'utf8');
    const usage = readme.slice(readme.indexOf('## Usage'));
    const code = /```ts\n([\s\S]*?)```/.exec(usage)?.[1];
    expect(code).toContain('new MongoAdapter');
    expect(code).toContain("database: 'game'");
    // A database of its own, so a MONGODB_URI server's data is never touched.
    const database = randomDatabase();
    const dir = `${packageDir}.cache`;
    mkdirSync(dir, { recursive: true });
    const file = `${dir}/readme-usage.ts`;
    writeFileSync(file, code!.replace("database: 'game'", `database: '${database}'`));
    const tsx = createRequire(import.meta.url).resolve('tsx');
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', tsx, file], {
        env: { ...process.env, MONGODB_URI: url!, TSX_TSCONFIG_PATH: `${packageDir}tsconfig.test.json` },
        timeout: 60_000,
      });
      expect(stdout).toContain("{ userData: { gold: 100, inventory: [ 'sword' ] }, version: 1 }");
    } finally {
      const client = newClient(url!);
      await client.db(database).dropDatabase();
      await client.close();
    }
  });
});
