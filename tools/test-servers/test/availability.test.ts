import { afterEach, describe, expect, it, vi } from 'vitest';
import { INSTALL_HINT, ServerUnavailableError, startForTests } from '../src/index.js';

const unavailable = () => Promise.reject(new ServerUnavailableError('imaginary-db', ['imaginary-server']));

describe('startForTests', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('returns what start() resolves when the server can start', async () => {
    const server = { url: 'x://127.0.0.1:1' };
    expect(await startForTests('imaginary-db', async () => server)).toBe(server);
  });

  it('outside CI, a missing server is a loud warning naming what is missing and how to install it', async () => {
    vi.stubEnv('CI', '');
    const warnings: string[] = [];
    const result = await startForTests('imaginary-db', unavailable, {
      warn: (message) => warnings.push(message),
    });
    expect(result).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('imaginary-db');
    expect(warnings[0]).toContain('imaginary-server');
    expect(warnings[0]).toContain(INSTALL_HINT);
    expect(warnings[0]!.split('\n').length).toBeGreaterThan(4);
  });

  it('with CI=true, a missing server fails instead of skipping', async () => {
    vi.stubEnv('CI', 'true');
    const warn = vi.fn();
    await expect(startForTests('imaginary-db', unavailable, { warn })).rejects.toMatchObject({
      code: 'SERVER_UNAVAILABLE',
      kind: 'imaginary-db',
      missing: ['imaginary-server'],
    });
    expect(warn).not.toHaveBeenCalled();
  });

  it("the warning gives the start function's own install command when it names one", async () => {
    vi.stubEnv('CI', '');
    const warnings: string[] = [];
    const custom = () =>
      Promise.reject(new ServerUnavailableError('imaginary-db', ['imaginary'], 'make imaginary'));
    await startForTests('imaginary-db', custom, { warn: (message) => warnings.push(message) });
    expect(warnings[0]).toContain('make imaginary');
    expect(warnings[0]).not.toContain(INSTALL_HINT);
  });

  it('a server that is installed but fails to start is an error, not a skip', async () => {
    vi.stubEnv('CI', '');
    const broken = () => Promise.reject(new Error('exited during startup'));
    await expect(startForTests('imaginary-db', broken, { warn: vi.fn() })).rejects.toThrow(
      'exited during startup',
    );
  });
});
