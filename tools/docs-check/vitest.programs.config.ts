import { defineConfig } from 'vitest/config';
import { workspaceAliases } from '../../vitest.shared.ts';

/** For the README blocks marked `test`: vitest test files, run one at a time from `.cache/docs/`. */
export default defineConfig({
  resolve: { alias: workspaceAliases },
  test: { include: ['.cache/docs/**/*.test.{ts,js}'], testTimeout: 60_000 },
});
