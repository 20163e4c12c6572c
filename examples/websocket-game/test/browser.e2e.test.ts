import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authToken } from '../src/auth.js';
import type { Player } from '../src/game.js';
import { launchServer, type ServerProcess } from '../src/launch.js';
import { openStore } from '../src/stores.js';
import { storeEnv, temporaryDir } from './helpers.js';

/** Debian's package `chromium`; another browser with CHROMIUM_PATH. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Where the screenshot goes, kept after the run (ignored by git). */
const OUTPUT_DIR = fileURLToPath(new URL('../test-output', import.meta.url));
const SECRET = 'browser-test-secret-0123456789';

const available = existsSync(CHROMIUM);
if (!available) {
  if (process.env.CI === 'true') throw new Error(`browser test: no Chromium at ${CHROMIUM}, and CI=true.`);
  console.warn(
    `\n⚠ browser test SKIPPED: no Chromium at ${CHROMIUM}. Install it with: apt-get install -y chromium ` +
      '(or set CHROMIUM_PATH). CI fails instead of skipping.\n',
  );
}

interface Shown {
  gold: number;
  xp: number;
  level: number;
  items: number;
  status: string;
}

async function shown(page: Page): Promise<Shown> {
  const text = async (id: string) => (await page.getByTestId(id).textContent())?.trim() ?? '';
  return {
    gold: Number(await text('gold')),
    xp: Number(await text('xp')),
    level: Number(await text('level')),
    items: Number(await text('items')),
    status: await text('status'),
  };
}

/** The page's copy of the player (what it shows comes from it). */
async function pageState(page: Page): Promise<Player> {
  return page.evaluate(() =>
    structuredClone((globalThis as unknown as { game: { state: Player } }).game.state),
  );
}

describe.skipIf(!available)('the browser client', () => {
  const tmp = temporaryDir('browser');
  let browser: Browser;
  let server: ServerProcess | undefined;
  const launch = (port?: number) =>
    launchServer({
      store: 'pglite',
      dataDir: tmp.dir,
      // Nothing is written on an interval during the test: what survives the kill is what a purchase stored.
      intervalMs: 600_000,
      graceMs: 30_000,
      authSecret: SECRET,
      logFile: join(tmp.dir, 'server.log'),
      env: storeEnv('pglite', 'browser test')!,
      ...(port === undefined ? {} : { port }),
    });

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Chromium's sandbox refuses to run as root (CI containers).
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
    });
    server = await launch();
  });

  afterAll(async () => {
    await browser?.close();
    if (server !== undefined && server.child.exitCode === null && server.child.signalCode === null) {
      await server.stop('SIGTERM');
    }
    tmp.remove();
  });

  it('a person plays (mine, fight, buy), the server is killed and restarted, and the page shows the acknowledged state; a reload finds it intact', async () => {
    const page = await browser.newPage({ viewport: { width: 800, height: 720 } });
    const url = `http://127.0.0.1:${server!.port}/#user=ann&auth=${authToken(SECRET, 'ann')}`;
    await page.goto(url);
    await page.getByRole('button', { name: 'Play' }).click();
    await expect.poll(async () => (await shown(page)).status).toBe('connected');
    expect(await shown(page)).toMatchObject({ gold: 20, xp: 0, level: 1, items: 0 });

    // Play: mine until a shield is affordable, fight a little, buy.
    for (let i = 0; i < 60 && (await shown(page)).gold < 60; i++) {
      await page.getByRole('button', { name: 'Mine' }).click();
      await expect.poll(async () => page.getByTestId('log').textContent()).toContain('mined');
      await page.getByTestId('log').evaluate((log) => {
        log.textContent = '';
      });
    }
    await page.getByRole('button', { name: 'Fight' }).click();
    await expect.poll(async () => page.getByTestId('log').textContent()).toContain('fought');
    await page.getByRole('button', { name: /Buy shield/ }).click();
    await expect.poll(async () => page.getByTestId('log').textContent()).toContain('Purchased: shield');
    await page.getByRole('button', { name: /Buy potion/ }).click();
    await expect.poll(async () => page.getByTestId('log').textContent()).toContain('Purchased: potion');
    const acknowledged = await pageState(page);
    expect(acknowledged.inventory.map((owned) => owned.item)).toEqual(['shield', 'potion']);
    expect(await shown(page)).toMatchObject({ gold: acknowledged.gold, xp: acknowledged.xp, items: 2 });

    // The server dies outright; the page notices and keeps trying.
    const port = server!.port;
    await server!.stop('SIGKILL');
    await expect.poll(async () => (await shown(page)).status).toBe('reconnecting…');
    server = await launch(port);
    await expect.poll(async () => (await shown(page)).status, { timeout: 20_000 }).toBe('connected');
    // Everything up to the last purchase was stored by that purchase: the page shows exactly it.
    expect(await pageState(page)).toEqual(acknowledged);
    expect(await shown(page)).toMatchObject({
      gold: acknowledged.gold,
      xp: acknowledged.xp,
      level: acknowledged.level,
      items: 2,
    });
    expect(await page.getByTestId('log').textContent()).toContain('loaded from the store');

    // A reload logs in again by itself and resumes the session: still intact.
    await page.getByRole('button', { name: 'Mine' }).click();
    await expect.poll(async () => page.getByTestId('log').textContent()).toContain('mined');
    const afterMining = await pageState(page);
    await page.reload();
    await expect.poll(async () => (await shown(page)).status).toBe('connected');
    expect(await pageState(page)).toEqual(afterMining);
    expect(await page.getByTestId('log').textContent()).toContain('session was still here');

    mkdirSync(OUTPUT_DIR, { recursive: true });
    const screenshot = join(OUTPUT_DIR, 'browser-client.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`browser client screenshot: ${screenshot}`);

    // And the store agrees with the page, once the server has shut down.
    const exit = await server!.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const store = await openStore('pglite', { dataDir: tmp.dir });
    try {
      expect((await store.adapter.load('ann'))?.userData).toEqual(afterMining);
    } finally {
      await store.close();
    }
    await page.close();
  });
});
