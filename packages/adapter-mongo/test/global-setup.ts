import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { redactCredentials } from '@cagey-sessions/core/adapter-kit';
import { ferretdbBinary, startFerretDB, startForTests } from '@cagey-sessions/test-servers';
import { MongoClient } from 'mongodb';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the MongoDB-compatible server for this run, or null when none could be started. */
    mongoUrl: string | null;
    /** Which server the URL names: FerretDB (started here, or named by MONGODB_URI) or MongoDB. */
    mongoServer: 'ferretdb' | 'mongodb' | null;
  }
}

const buildScript = fileURLToPath(new URL('../../../tools/test-servers/build-ferretdb.sh', import.meta.url));

/**
 * With MONGODB_URI set, the tests run against that server (a real MongoDB); otherwise one FerretDB is started
 * for the run (built first when the Go toolchain is there and the binary is not) and stopped afterwards.
 */
export default async function setup(project: TestProject) {
  const external = process.env.MONGODB_URI;
  if (external) {
    project.provide('mongoUrl', external);
    project.provide('mongoServer', (await isFerretDB(external)) ? 'ferretdb' : 'mongodb');
    return;
  }
  if (ferretdbBinary() === undefined && hasGo()) {
    console.warn(
      'adapter-mongo: building FerretDB once (a few minutes): bash tools/test-servers/build-ferretdb.sh',
    );
    const built = spawnSync('bash', [buildScript], {
      stdio: ['ignore', 'ignore', 'inherit'],
      timeout: 15 * 60_000,
    });
    if (built.status !== 0) console.warn(`adapter-mongo: building FerretDB failed (exit ${built.status})`);
  }
  const server = await startForTests('ferretdb', () => startFerretDB());
  project.provide('mongoUrl', server?.url ?? null);
  project.provide('mongoServer', server ? 'ferretdb' : null);
  return async () => {
    await server?.stop();
  };
}

/** FerretDB answers buildInfo with a `ferretdbVersion`; the tests then use the options it needs. */
async function isFerretDB(url: string): Promise<boolean> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
  try {
    const info = await client.db('admin').command({ buildInfo: 1 });
    return typeof info.ferretdbVersion === 'string';
  } catch (error) {
    throw new Error(
      `MONGODB_URI is set but its server did not answer buildInfo: ${redactCredentials((error as Error).message)}`,
    );
  } finally {
    await client.close();
  }
}

function hasGo(): boolean {
  if (existsSync('/usr/local/go/bin/go')) return true;
  return spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
}
