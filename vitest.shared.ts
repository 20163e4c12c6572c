import { fileURLToPath } from 'node:url';

const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));

/**
 * Workspace packages resolve to their TypeScript sources in tests, so a test run needs no build and every
 * package sees exactly one copy of core (error classes compare by identity).
 */
export const workspaceAliases = [
  { find: /^@cagey-sessions\/testing$/, replacement: `${packagesDir}testing/src/index.ts` },
  {
    find: /^@cagey-sessions\/testing\/conformance$/,
    replacement: `${packagesDir}testing/src/conformance/index.ts`,
  },
  {
    find: /^@cagey-sessions\/test-servers$/,
    replacement: `${packagesDir}../tools/test-servers/src/index.ts`,
  },
  {
    find: /^@cagey-sessions\/adapter-(postgres|redis|mongo)$/,
    replacement: `${packagesDir}adapter-$1/src/index.ts`,
  },
  { find: /^@cagey-sessions\/fault-proxy$/, replacement: `${packagesDir}../tools/fault-proxy/src/index.ts` },
  { find: /^@cagey-sessions\/bench-kit$/, replacement: `${packagesDir}../tools/bench-kit/src/index.ts` },
  {
    find: /^@cagey-sessions\/core\/adapter-kit$/,
    replacement: `${packagesDir}core/src/adapter-kit/index.ts`,
  },
  { find: /^@cagey-sessions\/core$/, replacement: `${packagesDir}core/src/index.ts` },
];
