import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SessionManager } from '@cagey-sessions/core';
import { describe, expect, it } from 'vitest';
import { PostgresAdapter, PostgresPresence } from '../src/index.js';
import { randomTable, serverUrl } from './helpers.js';

const url = serverUrl('adapter-postgres: presence with core');
const fixture = fileURLToPath(new URL('./fixtures/presence-node.ts', import.meta.url));
const tsconfig = fileURLToPath(new URL('../tsconfig.test.json', import.meta.url));
const tsx = createRequire(import.meta.url).resolve('tsx');

describe.skipIf(url === null)('PostgresPresence with core, on a real server', () => {
  it('hands a player over from node a to node b with their newest data, the first session kicked', async () => {
    const [table, presenceTable] = [randomTable('data'), randomTable('p')];
    // Each node as its own process would have it: its own pool for data and for the presence.
    const node = (nodeId: string) => {
      const adapter = new PostgresAdapter({ url: url!, table });
      const presence = new PostgresPresence({ url: url!, table: presenceTable });
      const manager = new SessionManager<{ gold: number }>({ adapter, presence, nodeId });
      return { adapter, presence, manager };
    };
    const a = node('a');
    const b = node('b');
    await a.adapter.setup();
    await a.presence.setup();
    try {
      const kicked: unknown[] = [];
      a.manager.on('kicked', (_session, info) => kicked.push(info));
      const onA = await a.manager.create();
      await onA.identify('hero', { defaults: { gold: 0 } });
      onA.userData!.gold = 50; // not stored yet
      expect(await b.presence.locate('hero')).toBe('a');

      const onB = await b.manager.create();
      expect(await onB.identify('hero')).toEqual({ gold: 50 });
      expect(onA.isDestroyed).toBe(true);
      expect(kicked).toEqual([{ reason: 'login-elsewhere', nodeId: 'b' }]);
      expect(await a.presence.locate('hero')).toBe('b');
      expect(await a.manager.locate('hero')).toBe('b');
    } finally {
      await Promise.all([a.manager.destroy(false), b.manager.destroy(false)]);
      await Promise.all([a.presence.close(), b.presence.close(), a.adapter.close(), b.adapter.close()]);
    }
  });

  it('a node killed while holding a player: another node takes the player over once the lease expires, with the stored data', async () => {
    const [table, presenceTable] = [randomTable('data'), randomTable('p')];
    const adapter = new PostgresAdapter({ url: url!, table });
    const presence = new PostgresPresence({ url: url!, table: presenceTable });
    await adapter.setup();
    await presence.setup();
    const child = spawn(process.execPath, ['--import', tsx, fixture, url!, table, presenceTable], {
      env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    const manager = new SessionManager<{ gold: number }>({ adapter, presence, nodeId: 'b', leaseTtl: '1s' });
    try {
      await expect.poll(() => output, { timeout: 30_000 }).toContain('ready\n');
      expect(await presence.locate('hero')).toBe('a');
      child.kill('SIGKILL');
      await once(child, 'exit');
      const session = await manager.create();
      // Node a never answers: the claim succeeds once its lease (3 s) has run out, within handoffTimeout (10 s).
      expect(await session.identify('hero')).toEqual({ gold: 7 });
      expect(await presence.locate('hero')).toBe('b');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await manager.destroy(false);
      await Promise.all([presence.close(), adapter.close()]);
    }
  });
});
