import { defineConfig } from 'vitest/config';
import { driverAliases, workspaceAliases } from '../../vitest.shared.ts';

export default defineConfig({
  // CAGEY_DRIVER=mongodb6 runs the tests against the previous major (see `test:mongodb6`).
  resolve: { alias: [...workspaceAliases, ...driverAliases(import.meta.dirname, 'mongodb')] },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
