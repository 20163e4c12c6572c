/**
 * The server's telemetry, end to end: `/metrics` (Prometheus text from the OpenTelemetry instrumentation) after
 * bots played through a store failure, and the live dashboard in headless Chromium while bots play, its numbers
 * compared with the server's own `stats()` (served at `/stats`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BotFleet, startBots } from '../src/bots.js';
import { launchServer, type ServerProcess } from '../src/launch.js';
import type { ServerStats } from '../src/server.js';
import { storeEnv, temporaryDir } from './helpers.js';

/** Debian's package `chromium`; another browser with CHROMIUM_PATH. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OUTPUT_DIR = fileURLToPath(new URL('../test-output', import.meta.url));
const SECRET = 'dashboard-test-secret-0123456789';
const browserAvailable = existsSync(CHROMIUM);
if (!browserAvailable && process.env.CI === 'true') {
  throw new Error(`dashboard test: no Chromium at ${CHROMIUM}, and CI=true.`);
}

/** The metrics `@cagey-sessions/opentelemetry` documents, as the Prometheus exporter names them. */
const GAUGES = [
  'cagey_sessions_active_sessions',
  'cagey_sessions_identified_sessions',
  'cagey_sessions_dirty_users',
  'cagey_sessions_in_flight_users',
  'cagey_sessions_queued_users',
  'cagey_sessions_retrying_users',
  'cagey_sessions_orphaned_users',
];
const COUNTERS = ['cagey_sessions_writes_total', 'cagey_sessions_retries_total'];
const HISTOGRAMS = [
  'cagey_sessions_flush_duration',
  'cagey_sessions_batch_duration',
  'cagey_sessions_batch_size',
  'cagey_sessions_persist_duration',
];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (match === null) throw new Error(`not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

const total = (
  samples: Sample[],
  name: string,
  keep: (labels: Record<string, string>) => boolean = () => true,
) => samples.filter((s) => s.name === name && keep(s.labels)).reduce((sum, s) => sum + s.value, 0);

async function get(server: ServerProcess, path: string): Promise<Response> {
  const response = await fetch(`http://127.0.0.1:${server.port}${path}`);
  expect(response.status, path).toBe(200);
  return response;
}
const serverStats = async (server: ServerProcess) =>
  (await (await get(server, '/stats')).json()) as ServerStats;
const scrape = async (server: ServerProcess) => parseMetrics(await (await get(server, '/metrics')).text());

/**
 * Waits until nothing is left to write and two reads of `/stats` a second apart agree: the bots have gone, so
 * from here on the numbers stay put and may be compared exactly.
 */
async function settled(server: ServerProcess): Promise<ServerStats> {
  let previous = await serverStats(server);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const now = await serverStats(server);
    const quiet =
      now.dirty === 0 &&
      now.inFlight === 0 &&
      now.retrying === 0 &&
      now.connections === 0 &&
      now.written === previous.written &&
      now.failed === previous.failed;
    if (quiet) return now;
    previous = now;
  }
}

describe('telemetry of the game server', () => {
  const tmp = temporaryDir('telemetry');
  const cleanups: (() => Promise<unknown>)[] = [];
  const launch = (options: { faultControl?: boolean } = {}) =>
    launchServer({
      store: 'pglite',
      dataDir: join(tmp.dir, String(cleanups.length)),
      intervalMs: 1000,
      // Players who drop keep their session for the rest of the test, so the numbers settle once bots leave.
      graceMs: 600_000,
      callTimeoutMs: 2000,
      authSecret: SECRET,
      logFile: join(tmp.dir, `server-${cleanups.length}.log`),
      env: storeEnv('pglite', 'telemetry test')!,
      ...options,
    });
  const bots = (server: ServerProcess, durationMs: number, seed: number): BotFleet => {
    const fleet = startBots({
      url: server.url,
      players: 20,
      durationMs,
      graceMs: 600_000,
      seed,
      thinkMs: [20, 80],
      disconnectChance: 1 / 60,
      authSecret: SECRET,
    });
    cleanups.push(() => fleet.close());
    return fleet;
  };

  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    tmp.remove();
  });

  it('serves /metrics with every documented metric after play through a store failure, its totals equal to stats()', async () => {
    const server = await launch({ faultControl: true });
    cleanups.push(() => server.stop('SIGKILL'));
    const fleet = bots(server, 8000, 3);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    // Every store call fails for a moment: writes fail and are retried once the store is back.
    server.fault('fail');
    await expect.poll(async () => (await serverStats(server)).failed, { timeout: 20_000 }).toBeGreaterThan(0);
    server.fault('heal');
    await fleet.done;
    await fleet.close();
    const stats = await settled(server);
    const samples = await scrape(server);

    const names = new Set(samples.map((s) => s.name));
    for (const name of [...GAUGES, ...COUNTERS]) expect(names, name).toContain(name);
    for (const name of HISTOGRAMS) {
      for (const suffix of ['_bucket', '_sum', '_count'])
        expect(names, name + suffix).toContain(name + suffix);
    }
    // Every point names the store, and the write counters its adapter and database.
    expect(
      samples.filter((s) => s.name.startsWith('cagey_sessions_')).map((s) => s.labels.game_store),
    ).toEqual(samples.filter((s) => s.name.startsWith('cagey_sessions_')).map(() => 'pglite'));
    const writeLabels = samples.find((s) => s.name === 'cagey_sessions_writes_total')!.labels;
    expect(writeLabels).toMatchObject({
      cagey_sessions_adapter_name: 'faulty(postgres)',
      db_system: 'postgresql',
    });

    // The same numbers as the server's stats(), read while nothing moves.
    const outcome = (which: string) =>
      total(
        samples,
        'cagey_sessions_writes_total',
        (labels) => labels.cagey_sessions_write_outcome === which,
      );
    expect(outcome('ok')).toBe(stats.written);
    expect(outcome('error')).toBe(stats.failed);
    expect(outcome('conflict')).toBe(stats.conflicts);
    expect(total(samples, 'cagey_sessions_conflicts_total')).toBe(stats.conflicts);
    expect(total(samples, 'cagey_sessions_active_sessions')).toBe(stats.sessions);
    expect(total(samples, 'cagey_sessions_dirty_users')).toBe(0);
    expect(total(samples, 'cagey_sessions_retrying_users')).toBe(0);
    expect(total(samples, 'game_connections')).toBe(0);
    expect(total(samples, 'game_players_online')).toBe(stats.online);
    expect(stats.sessions).toBe(20);
    // Sane: some writes, failures each retried at least once (a write may fail again before the store heals),
    // histograms that counted what happened and whose buckets add up.
    expect(stats.written).toBeGreaterThan(20);
    expect(stats.failed).toBeGreaterThan(0);
    expect(total(samples, 'cagey_sessions_retries_total')).toBeGreaterThan(0);
    const errorTypes = samples
      .filter((s) => s.name === 'cagey_sessions_retries_total')
      .map((s) => s.labels.error_type);
    expect(errorTypes.every((type) => typeof type === 'string' && type.length > 0)).toBe(true);
    // Every acknowledged purchase waited for its persistNow(); failed ones were counted as well.
    expect(total(samples, 'cagey_sessions_persist_duration_count')).toBeGreaterThanOrEqual(stats.purchases);
    expect(total(samples, 'cagey_sessions_flush_duration_count')).toBeGreaterThan(0);
    expect(total(samples, 'cagey_sessions_batch_size_sum')).toBe(
      outcome('ok') + outcome('error') + outcome('conflict'),
    );
    for (const name of HISTOGRAMS) {
      const count = total(samples, `${name}_count`);
      const inf = total(samples, `${name}_bucket`, (labels) => labels.le === '+Inf');
      expect(inf, name).toBe(count);
      expect(total(samples, `${name}_sum`), name).toBeGreaterThan(0);
    }

    const exit = await server.stop('SIGTERM');
    expect(exit.code).toBe(0);
  });

  describe.skipIf(!browserAvailable)('the live dashboard', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // Chromium's sandbox refuses to run as root (CI containers).
        args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
      });
      cleanups.push(() => browser.close());
    });

    /** The numbers as the page shows them (thousands separators removed). */
    async function shown(page: Page) {
      const number = async (id: string) =>
        Number(((await page.getByTestId(id).textContent()) ?? '').replaceAll(',', ''));
      return {
        online: await number('online'),
        sessions: await number('sessions'),
        dirty: await number('dirty'),
        written: await number('written'),
        writesPerSecond: await number('writes-per-second'),
        failed: await number('failed'),
        conflicts: await number('conflicts'),
      };
    }
    const reads = (page: Page) =>
      page.evaluate(() => (globalThis as unknown as { dashboard: { reads: number } }).dashboard.reads);
    /** Waits until the page has shown a read of /metrics that began after this call. */
    async function freshRead(page: Page): Promise<void> {
      // The next read may have been asked for before this call; the one after it cannot have been.
      const target = (await reads(page)) + 2;
      await expect.poll(() => reads(page), { timeout: 10_000 }).toBeGreaterThanOrEqual(target);
    }

    it('shows the numbers moving while bots play, within what stats() says before and after each read, and exactly stats() once they stop', async () => {
      const server = await launch();
      cleanups.push(() => server.stop('SIGKILL'));
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      cleanups.push(() => page.close());
      await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
      await expect.poll(() => reads(page)).toBeGreaterThan(0);
      expect(await page.getByTestId('meta').textContent()).toContain('live');

      const fleet = bots(server, 12_000, 5);
      // While they play: each total on the page lies between stats() read just before and just after.
      const seen: Awaited<ReturnType<typeof shown>>[] = [];
      for (let i = 0; i < 4; i++) {
        const before = await serverStats(server);
        await freshRead(page);
        const onPage = await shown(page);
        const after = await serverStats(server);
        expect(onPage.written).toBeGreaterThanOrEqual(before.written);
        expect(onPage.written).toBeLessThanOrEqual(after.written);
        expect(onPage.failed).toBeGreaterThanOrEqual(before.failed);
        expect(onPage.failed).toBeLessThanOrEqual(after.failed);
        seen.push(onPage);
      }
      // They moved: more written at every look, players online, records stored per second.
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.written).toBeGreaterThan(seen[i - 1]!.written);
      expect(Math.max(...seen.map((s) => s.online))).toBeGreaterThan(0);
      expect(Math.max(...seen.map((s) => s.writesPerSecond))).toBeGreaterThan(0);
      // Latencies of the last 30 s, from the histograms: shown, and p50 no more than p99.
      const latency = async (id: string) => (await page.getByTestId(id).textContent()) ?? '';
      for (const which of ['persist', 'flush']) {
        const p50 = await latency(`${which}-p50`);
        const p99 = await latency(`${which}-p99`);
        expect(p50, which).toMatch(/^[\d.]+ m?s$/);
        expect(p99, which).toMatch(/^[\d.]+ m?s$/);
        const seconds = (text: string) => Number.parseFloat(text) / (text.endsWith(' ms') ? 1000 : 1);
        expect(seconds(p50)).toBeLessThanOrEqual(seconds(p99));
      }
      // The store, as the server was told it and as the adapter names itself.
      const storeRow = (await page.getByTestId('stores').textContent()) ?? '';
      expect(storeRow).toContain('pglite');
      expect(storeRow).toContain('adapter postgres');
      expect(storeRow).toContain('postgresql');

      mkdirSync(OUTPUT_DIR, { recursive: true });
      const screenshot = join(OUTPUT_DIR, 'dashboard.png');
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`dashboard screenshot: ${screenshot}`);

      // Once the bots have gone and everything is stored, the page shows exactly what stats() says.
      await fleet.done;
      await fleet.close();
      const stats = await settled(server);
      await freshRead(page);
      expect(await shown(page)).toEqual({
        online: 0,
        sessions: stats.sessions,
        dirty: 0,
        written: stats.written,
        writesPerSecond: 0,
        failed: stats.failed,
        conflicts: stats.conflicts,
      });
      expect(stats.sessions).toBe(20);

      const exit = await server.stop('SIGTERM');
      expect(exit.code).toBe(0);
    });
  });
});
