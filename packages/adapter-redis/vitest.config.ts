import { defineConfig } from 'vitest/config';
import { driverAliases, workspaceAliases } from '../../vitest.shared.ts';

export default defineConfig({
  // CAGEY_DRIVER=ioredis5 runs the tests against the previous major (see `test:ioredis5`).
  resolve: { alias: [...workspaceAliases, ...driverAliases(import.meta.dirname, 'ioredis')] },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
