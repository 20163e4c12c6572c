import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FERRETDB_BUILD_HINT,
  type FerretDBServer,
  ferretdbBinary,
  isPortFree,
  pingOk,
  startFerretDB,
} from '../src/index.js';

/** Missing binary: a loud skip locally, a failure with CI=true (CI builds it with build-ferretdb.sh first). */
function ferretdbInstalled(): boolean {
  if (ferretdbBinary() !== undefined) return true;
  const message = `no FerretDB binary; build it with: ${FERRETDB_BUILD_HINT}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`\n!!! SKIPPING ferretdb tests: ${message}\n`);
  return false;
}

describe.skipIf(!ferretdbInstalled())('startFerretDB', () => {
  let server: FerretDBServer;

  beforeAll(async () => {
    server = await startFerretDB();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('answers ping on loopback at the URL it returns', async () => {
    expect(server.url).toBe(`mongodb://127.0.0.1:${server.port}/`);
    expect(server.host).toBe('127.0.0.1');
    expect(await pingOk(server.port)).toBe(true);
    expect(await isPortFree(server.port)).toBe(false);
  });

  it('keeps its SQLite data in its own temporary directory', async () => {
    expect(existsSync(server.dir)).toBe(true);
    expect(server.dir).toContain('cagey-test-server-ferretdb-');
    expect(readdirSync(server.dir)).toContain('state.json');
  });

  it('restart() comes back on the same port and answers ping', async () => {
    const port = server.port;
    await server.restart();
    expect(server.port).toBe(port);
    expect(await pingOk(port)).toBe(true);
  });

  it('stop() frees the port and removes the directory, and is idempotent', async () => {
    const other = await startFerretDB();
    expect(await pingOk(other.port)).toBe(true);
    await other.stop();
    await other.stop();
    expect(await pingOk(other.port)).toBe(false);
    expect(await isPortFree(other.port)).toBe(true);
    expect(existsSync(other.dir)).toBe(false);
    await expect(other.restart()).rejects.toThrow(/after stop/);
  });

  it('pingOk is false where nothing listens', async () => {
    const other = await startFerretDB();
    await other.stop();
    expect(await pingOk(other.port)).toBe(false);
  });

  it('a missing binary is reported as unavailable with the build command', async () => {
    await expect(startFerretDB({ binary: '/nonexistent/ferretdb' })).rejects.toMatchObject({
      code: 'SERVER_UNAVAILABLE',
      message: expect.stringContaining(FERRETDB_BUILD_HINT),
    });
  });
});
