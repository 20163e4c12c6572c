import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
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
  { find: /^@cagey-sessions\/opentelemetry$/, replacement: `${packagesDir}opentelemetry/src/index.ts` },
  { find: /^@cagey-sessions\/bench-kit$/, replacement: `${packagesDir}../tools/bench-kit/src/index.ts` },
  {
    find: /^@cagey-sessions\/core\/adapter-kit$/,
    replacement: `${packagesDir}core/src/adapter-kit/index.ts`,
  },
  { find: /^@cagey-sessions\/core$/, replacement: `${packagesDir}core/src/index.ts` },
];

/**
 * Runs an adapter's tests against another major of its driver. The driver's devDependency is its current
 * major; an older one is installed next to it under an npm alias (`"ioredis5": "npm:ioredis@^5.11.1"`), and
 * `CAGEY_DRIVER=ioredis5` makes every import of `ioredis` in the run (the adapter, its tests, the test servers)
 * load the alias, so there is one copy of the driver. A CAGEY_DRIVER naming another driver's alias is ignored.
 */
export function driverAliases(packageDir: string, driver: string): { find: RegExp; replacement: string }[] {
  const chosen = process.env.CAGEY_DRIVER;
  if (!chosen || chosen === driver) return [];
  const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  const spec: string | undefined = manifest.devDependencies?.[chosen];
  if (spec === undefined) {
    if (!chosen.startsWith(driver)) return [];
    throw new Error(`CAGEY_DRIVER=${chosen}: ${manifest.name} has no devDependency of that name.`);
  }
  if (!spec.startsWith(`npm:${driver}@`)) return [];
  const require = createRequire(join(packageDir, 'package.json'));
  const { version } = require(`${chosen}/package.json`) as { version: string };
  console.log(`${manifest.name}: tests run against ${driver} ${version} (CAGEY_DRIVER=${chosen})`);
  return [{ find: new RegExp(`^${driver}$`), replacement: require.resolve(chosen) }];
}
